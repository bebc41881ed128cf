//! How each kernel operation is asked of the node's host: the `compute`
//! import that runs it, with its dimensions in the contract's records.

use fedwasm_kernels::{Family, Op};

use crate::__bindings::fedwasm::plan::compute;
use crate::error::PlanResult;

/// A dimension as the contract carries it.
fn d(v: usize) -> u32 {
    v as u32
}

fn conv(c: &fedwasm_kernels::Conv2d) -> compute::Conv2dGeometry {
    compute::Conv2dGeometry {
        batch: d(c.batch),
        channels: d(c.window.channels),
        height: d(c.window.input[0]),
        width: d(c.window.input[1]),
        out_channels: d(c.out_channels),
        kernel_height: d(c.window.kernel[0]),
        kernel_width: d(c.window.kernel[1]),
        stride_height: d(c.window.stride[0]),
        stride_width: d(c.window.stride[1]),
        padding_height: d(c.window.padding[0]),
        padding_width: d(c.window.padding[1]),
        dilation_height: d(c.window.dilation[0]),
        dilation_width: d(c.window.dilation[1]),
    }
}

fn pool(p: &fedwasm_kernels::Pool2d) -> compute::Pool2dWindow {
    compute::Pool2dWindow {
        planes: d(p.planes),
        height: d(p.window.input[0]),
        width: d(p.window.input[1]),
        kernel_height: d(p.window.kernel[0]),
        kernel_width: d(p.window.kernel[1]),
        stride_height: d(p.window.stride[0]),
        stride_width: d(p.window.stride[1]),
        padding_height: d(p.window.padding[0]),
        padding_width: d(p.window.padding[1]),
        dilation_height: d(p.window.dilation[0]),
        dilation_width: d(p.window.dilation[1]),
    }
}

fn adaptive(a: &fedwasm_kernels::Adaptive) -> compute::AdaptiveDims {
    compute::AdaptiveDims {
        planes: d(a.planes),
        height: d(a.input[0]),
        width: d(a.input[1]),
        out_height: d(a.output[0]),
        out_width: d(a.output[1]),
    }
}

fn ln(l: &fedwasm_kernels::LayerNorm) -> compute::LayerNormDims {
    compute::LayerNormDims {
        groups: d(l.groups),
        d: d(l.d),
    }
}

fn pointwise(loss: fedwasm_kernels::Pointwise) -> compute::PointwiseLossKind {
    use fedwasm_kernels::Pointwise;
    match loss {
        Pointwise::Bce => compute::PointwiseLossKind::Bce,
        Pointwise::Mse => compute::PointwiseLossKind::Mse,
        Pointwise::L1 => compute::PointwiseLossKind::L1,
        Pointwise::Huber(delta) => compute::PointwiseLossKind::Huber(delta),
    }
}

fn lookups(e: &fedwasm_kernels::Embedding) -> compute::EmbeddingDims {
    compute::EmbeddingDims {
        num: d(e.num),
        dim: d(e.dim),
        count: d(e.count),
    }
}

fn bn(b: &fedwasm_kernels::BatchNorm) -> compute::BatchNormDims {
    compute::BatchNormDims {
        batch: d(b.batch),
        channels: d(b.channels),
        spatial: d(b.spatial),
    }
}

fn upsample(u: &fedwasm_kernels::layout::Upsample) -> compute::UpsampleDims {
    compute::UpsampleDims {
        planes: d(u.planes),
        height: d(u.height),
        width: d(u.width),
        factor: d(u.factor),
    }
}

/// The `compute` function for `op`, on the handles `h` (as many as
/// [`Op::output_len`] accepted).
pub(super) fn call(op: &Op, h: &[&compute::Tensor]) -> PlanResult<compute::Tensor> {
    match op.family() {
        Family::Core => call_core(op, h),
        Family::Reduction => call_reduction(op, h),
        Family::Pass => call_pass(op, h),
    }
}

/// [`call`] for products, convolutions, activations, max pooling, batch
/// normalization and layouts.
fn call_core(op: &Op, h: &[&compute::Tensor]) -> PlanResult<compute::Tensor> {
    match op {
        Op::MatMul(m) => {
            let dims = compute::MatmulDims {
                m: d(m.m),
                k: d(m.k),
                n: d(m.n),
                transpose_a: m.transpose_a,
                transpose_b: m.transpose_b,
            };
            compute::matmul(dims, h[0], h[1], h.get(2).copied())
        }
        Op::Conv2d(c) => compute::conv2d(conv(c), h[0], h[1], h.get(2).copied()),
        Op::Conv2dInputGrad(c) => compute::conv2d_input_grad(conv(c), h[0], h[1]),
        Op::Conv2dWeightGrad {
            conv: c,
            per_sample,
        } => compute::conv2d_weight_grad(conv(c), *per_sample, h[0], h[1]),
        Op::ChannelSums {
            batch,
            channels,
            plane,
            per_sample,
        } => compute::channel_sums(d(*batch), d(*channels), d(*plane), *per_sample, h[0]),
        Op::Add => compute::add(h[0], h[1]),
        Op::Map(f) => match wit_function(*f) {
            Function::Activation(a) => compute::activate(a, h[0]),
            Function::Other(f) => compute::elementwise(f, h[0]),
        },
        Op::MapGrad(f) => match wit_function(*f) {
            Function::Activation(a) => compute::activate_grad(a, h[0], h[1]),
            Function::Other(f) => compute::elementwise_grad(f, h[0], h[1]),
        },
        Op::MaxPool2d(p) => compute::max_pool2d(pool(p), h[0]),
        Op::MaxPool2dGrad(p) => compute::max_pool2d_grad(pool(p), h[0], h[1]),
        Op::BatchNormStats { bn: b, eps } => compute::batch_norm_stats(bn(b), *eps, h[0]),
        Op::BatchNormApply(b) => compute::batch_norm(bn(b), h[0], h[1], h[2], h[3]),
        Op::BatchNormInputGrad { bn: b, training } => {
            compute::batch_norm_input_grad(bn(b), *training, h[0], h[1], h[2], h[3])
        }
        Op::BatchNormAffineGrads(b) => compute::batch_norm_affine_grads(bn(b), h[0], h[1], h[2]),
        Op::Upsample2d(u) => compute::upsample_nearest2d(upsample(u), h[0]),
        Op::Upsample2dGrad(u) => compute::upsample_nearest2d_grad(upsample(u), h[0]),
        Op::Cat { outer } => compute::cat(d(*outer), h[0], h[1]),
        Op::CatPart {
            outer,
            inner,
            start,
            len,
        } => compute::cat_part(d(*outer), d(*inner), d(*start), d(*len), h[0]),
        _ => unreachable!("call_core is called for the core family only"),
    }
}

/// [`call`] for normalization, average pooling, lookups and broadcasts.
fn call_pass(op: &Op, h: &[&compute::Tensor]) -> PlanResult<compute::Tensor> {
    match op {
        Op::LayerNormStats { ln: l, eps } => compute::layer_norm_stats(ln(l), *eps, h[0]),
        Op::LayerNormApply(l) => compute::layer_norm(ln(l), h[0], h[1], h[2], h[3]),
        Op::LayerNormInputGrad(l) => compute::layer_norm_input_grad(ln(l), h[0], h[1], h[2], h[3]),
        Op::LayerNormAffineGrads { ln: l, samples } => {
            compute::layer_norm_affine_grads(ln(l), d(*samples), h[0], h[1], h[2])
        }
        Op::AvgPool2d(p) => compute::avg_pool2d(pool(p), h[0]),
        Op::AvgPool2dGrad(p) => compute::avg_pool2d_grad(pool(p), h[0]),
        Op::AdaptiveAvgPool2d(a) => compute::adaptive_avg_pool2d(adaptive(a), h[0]),
        Op::AdaptiveAvgPool2dGrad(a) => compute::adaptive_avg_pool2d_grad(adaptive(a), h[0]),
        Op::Binary { op, shapes } => {
            let (a, b) = dims(shapes);
            compute::binary(binary(*op), &a, &b, h[0], h[1])
        }
        Op::BinaryGrad { op, shapes, which } => {
            let (a, b) = dims(shapes);
            let which = compute::Operand {
                second: which.second,
                samples: d(which.samples),
            };
            compute::binary_grad(binary(*op), &a, &b, which, h[0], h[1], h[2])
        }
        Op::Embedding(e) => compute::embedding(lookups(e), h[0], h[1]),
        Op::EmbeddingGrad { e, samples } => {
            compute::embedding_grad(lookups(e), d(*samples), h[0], h[1])
        }
        _ => unreachable!("call_pass is called for passes over values only"),
    }
}

/// [`call`] for sums, softmaxes, losses and sums of squares.
fn call_reduction(op: &Op, h: &[&compute::Tensor]) -> PlanResult<compute::Tensor> {
    match op {
        Op::PointwiseLoss(loss) => {
            compute::pointwise_loss(pointwise(*loss), h[0], h[1], h.get(2).copied())
        }
        Op::PointwiseLossGrad { loss, g } => {
            compute::pointwise_loss_grad(pointwise(*loss), *g, h[0], h[1], h.get(2).copied())
        }
        Op::SumOfSquares => compute::sum_of_squares(h[0]),
        Op::RowSquares { rows, width } => compute::row_squares(d(*rows), d(*width), h[0]),
        Op::SumAxis(a) => compute::sum_axis(axis(a), h[0]),
        Op::ExpandAxis(a) => compute::expand_axis(axis(a), h[0]),
        Op::Softmax { axis: a, log } => compute::softmax(axis(a), *log, h[0]),
        Op::SoftmaxGrad { axis: a, log } => compute::softmax_grad(axis(a), *log, h[0], h[1]),
        Op::CrossEntropy(c) => compute::cross_entropy(ce(c), h[0], h[1], h.get(2).copied()),
        Op::CrossEntropyGrad { ce: c, scale } => {
            compute::cross_entropy_grad(ce(c), *scale, h[0], h[1], h.get(2).copied())
        }
        _ => unreachable!("call_reduction is called for reductions only"),
    }
}

fn binary(op: fedwasm_kernels::Binary) -> compute::BinaryOp {
    use fedwasm_kernels::Binary;
    match op {
        Binary::Add => compute::BinaryOp::Add,
        Binary::Sub => compute::BinaryOp::Sub,
        Binary::Mul => compute::BinaryOp::Mul,
        Binary::Div => compute::BinaryOp::Div,
    }
}

/// The operands' simplified extents, as the contract passes them.
fn dims(shapes: &fedwasm_kernels::Broadcast) -> (Vec<u32>, Vec<u32>) {
    let (a, b) = shapes.operand_shapes();
    let list = |s: &[usize]| s.iter().map(|&v| v as u32).collect();
    (list(a), list(b))
}

fn axis(a: &fedwasm_kernels::Axis) -> compute::Axis {
    compute::Axis {
        outer: a.outer as u32,
        size: a.size as u32,
        inner: a.inner as u32,
    }
}

fn ce(c: &fedwasm_kernels::CrossEntropy) -> compute::CrossEntropyDims {
    compute::CrossEntropyDims {
        batch: c.batch as u32,
        classes: c.classes as u32,
        inner: c.inner as u32,
        label_smoothing: c.label_smoothing,
    }
}

/// An element-wise function as the contract names it: an activation, or
/// one of the others.
enum Function {
    Activation(compute::Activation),
    Other(compute::ElementwiseFn),
}

fn wit_function(f: fedwasm_kernels::Elementwise) -> Function {
    use compute::{Activation as A, ElementwiseFn as F};
    use fedwasm_kernels::Elementwise as E;
    match f {
        E::Relu => Function::Activation(A::Relu),
        E::LeakyRelu(slope) => Function::Activation(A::LeakyRelu(slope)),
        E::Sigmoid => Function::Activation(A::Sigmoid),
        E::Tanh => Function::Activation(A::Tanh),
        E::Gelu => Function::Activation(A::Gelu),
        E::Exp => Function::Other(F::Exp),
        E::Log => Function::Other(F::Log),
        E::Sqrt => Function::Other(F::Sqrt),
        E::Abs => Function::Other(F::Abs),
        E::Square => Function::Other(F::Square),
        E::Pow(p) => Function::Other(F::Pow(p)),
        E::Scale(a) => Function::Other(F::Scale(a)),
        E::AddScalar(c) => Function::Other(F::AddScalar(c)),
        E::Clamp(low, high) => Function::Other(F::Clamp(compute::ClampRange { low, high })),
    }
}
