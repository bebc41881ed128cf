//! [`Op`]: one operation a plan asks for on tensors the host holds, checked
//! before anything is allocated, then run on the kernels.
//!
//! Host tensors are flat arrays of f32; shapes are the plan's business, so
//! every operation carries the dimensions it works with and [`Op::output_len`]
//! checks them against the inputs' lengths (and against overflow) before a
//! byte is allocated. The node's host and the SDK's in-process backend call
//! the same two functions, which is what makes them agree.

use std::fmt;

use crate::avg_pool::{
    Adaptive, adaptive_avg_pool2d, adaptive_avg_pool2d_grad, avg_pool2d, avg_pool2d_grad,
};
use crate::broadcast::{Binary, Broadcast, Operand, binary, binary_grad};
use crate::conv::{Conv2d, channel_sums, conv2d, conv2d_input_grad, conv2d_weight_grad};
use crate::elementwise::{Elementwise, map, map_grad};
use crate::embedding::{Embedding, embedding, embedding_grad};
use crate::gemm::{MatRef, gemm};
use crate::layer_norm::{
    LayerNorm, layer_norm_affine_grads, layer_norm_apply, layer_norm_input_grad, layer_norm_stats,
};
use crate::layout::{Upsample, cat, cat_part, upsample_nearest2d, upsample_nearest2d_grad};
use crate::loss::{
    CrossEntropy, Pointwise, cross_entropy, cross_entropy_grad, pointwise_loss, pointwise_loss_grad,
};
use crate::norm::{
    BatchNorm, batch_norm_affine_grads, batch_norm_apply, batch_norm_input_grad, batch_norm_stats,
};
use crate::pool::{Pool2d, max_pool2d, max_pool2d_grad};
use crate::reduce::{Axis, expand_axis, sum_axis};
use crate::softmax::{softmax, softmax_grad};
use crate::squares::{f64_to_words, row_squares, sum_of_squares};

/// The dimensions of a matrix product `op(A)·op(B)`: A is `[m, k]` (stored
/// `[k, m]` when `transpose_a`), B is `[k, n]` (stored `[n, k]` when
/// `transpose_b`), the output `[m, n]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatMul {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub transpose_a: bool,
    pub transpose_b: bool,
}

/// An operation on host tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// Inputs `a`, `b` and optionally a bias `[n]` every output row starts
    /// from; one output `[m, n]`.
    MatMul(MatMul),
    /// Inputs `x` `[N, C, H, W]`, `w` `[O, C, kh, kw]` and optionally a bias
    /// `[O]`; one output `[N, O, oh, ow]`.
    Conv2d(Conv2d),
    /// Inputs the output gradient `[N, O, oh, ow]` and `w`; one output, the
    /// input gradient `[N, C, H, W]`.
    Conv2dInputGrad(Conv2d),
    /// Inputs the output gradient and `x`; one output, the weight gradient
    /// `[O, C, kh, kw]`, or each image's own `[N, O, C, kh, kw]` when `per_sample`.
    Conv2dWeightGrad { conv: Conv2d, per_sample: bool },
    /// Input `g` `[N, C, L]`; one output, per channel the sum over images and
    /// positions `[C]`, or per image `[N, C]` when `per_sample`.
    ChannelSums {
        batch: usize,
        channels: usize,
        plane: usize,
        per_sample: bool,
    },
    /// Inputs `a` and `b` of one length; one output `a + b`.
    Add,
    /// Input `x`; one output `f(x)`.
    Map(Elementwise),
    /// Inputs `x` and the output gradient `g`, of one length; one output
    /// `g · f'(x)`.
    MapGrad(Elementwise),
    /// Input `x` `[planes, H, W]`; one output, each window's maximum.
    MaxPool2d(Pool2d),
    /// Inputs `x` and the output gradient; one output, the input gradient.
    MaxPool2dGrad(Pool2d),
    /// Input `x`; one output `[mean; C] ++ [σ⁻¹; C] ++ [unbiased var; C]`.
    BatchNormStats { bn: BatchNorm, eps: f32 },
    /// Inputs `x`, the statistics (at least `2C`), γ and β (`C` each); one
    /// output `x̂·γ + β`.
    BatchNormApply(BatchNorm),
    /// Inputs `x`, the statistics, γ and the output gradient; one output,
    /// the input gradient (batch statistics' when `training`).
    BatchNormInputGrad { bn: BatchNorm, training: bool },
    /// Inputs `x`, the statistics and the output gradient; one output
    /// `[Σ g·x̂; C] ++ [Σ g; C]` (γ's and β's gradients).
    BatchNormAffineGrads(BatchNorm),
    /// Input `x` `[planes, H, W]`; one output `[planes, H·f, W·f]`.
    Upsample2d(Upsample),
    /// Input the output gradient; one output, the input gradient.
    Upsample2dGrad(Upsample),
    /// Inputs `a` `[outer, ·]` and `b` `[outer, ·]`; one output, their rows
    /// joined.
    Cat { outer: usize },
    /// Input `x` `[outer, inner]`; one output, its columns
    /// `start..start + len`.
    CatPart {
        outer: usize,
        inner: usize,
        start: usize,
        len: usize,
    },
    /// Input `x` `[outer, size, inner]`; one output, its sums over `size`
    /// `[outer, inner]`.
    SumAxis(Axis),
    /// Input `g` `[outer, inner]`; one output, `g` repeated along `size`
    /// `[outer, size, inner]` (the gradient of a sum).
    ExpandAxis(Axis),
    /// Input `x` `[outer, size, inner]`; one output, its softmax (or
    /// log-softmax) over `size`.
    Softmax { axis: Axis, log: bool },
    /// Inputs the softmax's input `x` and the output gradient; one output,
    /// the input gradient.
    SoftmaxGrad { axis: Axis, log: bool },
    /// Inputs logits, targets and optionally a weight per class; one
    /// output `[Σ loss, Σ target weight]`.
    CrossEntropy(CrossEntropy),
    /// Inputs as [`Op::CrossEntropy`]; one output, the logits' gradient of
    /// the loss sum times `scale`.
    CrossEntropyGrad { ce: CrossEntropy, scale: f32 },
    /// Input `x` `[groups, d]`; one output `[mean; groups] ++ [σ⁻¹; groups]`.
    LayerNormStats { ln: LayerNorm, eps: f32 },
    /// Inputs `x`, the statistics, the weight and bias (`d` each); one
    /// output `x̂·weight + bias`.
    LayerNormApply(LayerNorm),
    /// Inputs `x`, the statistics, the weight and the output gradient; one
    /// output, the input gradient.
    LayerNormInputGrad(LayerNorm),
    /// Inputs `x`, the statistics and the output gradient; one output
    /// `[Σ g·x̂; d] ++ [Σ g; d]`, each sample's own (`[samples, d]` twice)
    /// when `samples` > 1.
    LayerNormAffineGrads { ln: LayerNorm, samples: usize },
    /// Input `x` `[planes, H, W]`; one output, each window's mean (padding
    /// counted).
    AvgPool2d(Pool2d),
    /// Input the output gradient; one output, the input gradient.
    AvgPool2dGrad(Pool2d),
    /// Input `x` `[planes, H, W]`; one output, each adaptive window's mean.
    AdaptiveAvgPool2d(Adaptive),
    /// Input the output gradient; one output, the input gradient.
    AdaptiveAvgPool2dGrad(Adaptive),
    /// Inputs outputs, targets of the same length and (BCE only)
    /// optionally a weight per position of the last dimension; one output,
    /// the mean loss.
    PointwiseLoss(Pointwise),
    /// Inputs as [`Op::PointwiseLoss`]; one output, the outputs' gradient
    /// for the loss's output gradient `g`.
    PointwiseLossGrad { loss: Pointwise, g: f32 },
    /// Input `x`; one output, the bits of Σ x² (f64, fixed blocks and
    /// lanes) as four 16-bit words ([`crate::squares::f64_to_words`]).
    SumOfSquares,
    /// Input `x` `[rows, width]`; one output, each row's Σ x² (f64, index
    /// order) as four words.
    RowSquares { rows: usize, width: usize },
    /// Inputs the indices `[count]` and the table `[num, dim]`; one output,
    /// the rows looked up `[count, dim]`.
    Embedding(Embedding),
    /// Inputs the indices and the output gradient; one output, the table's
    /// gradient (each sample's own, `[samples, num·dim]`, for `samples` > 1).
    EmbeddingGrad { e: Embedding, samples: usize },
    /// Inputs `a` and `b`, broadcast; one output `a op b`.
    Binary { op: Binary, shapes: Broadcast },
    /// Inputs `a`, `b` and the output gradient; one output, one operand's
    /// gradient (each sample's own when `which.samples` > 1).
    BinaryGrad {
        op: Binary,
        shapes: Broadcast,
        which: Operand,
    },
}

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError(pub String);

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpError {}

fn refuse(op: &str, detail: impl fmt::Display) -> OpError {
    OpError(format!("{op}: {detail}"))
}

/// `a·b·…`, or an error naming the operation when it overflows.
fn product(op: &str, dims: &[usize]) -> Result<usize, OpError> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| refuse(op, format!("the sizes {dims:?} overflow")))
}

/// Check that `inputs` has one of the `counts` lengths.
fn arity(op: &str, inputs: &[usize], counts: &[usize]) -> Result<(), OpError> {
    if counts.contains(&inputs.len()) {
        Ok(())
    } else {
        Err(refuse(
            op,
            format!("takes {counts:?} inputs, got {}", inputs.len()),
        ))
    }
}

/// Check that input `name` holds `expected` values.
fn length(op: &str, name: &str, got: usize, expected: usize) -> Result<(), OpError> {
    if got == expected {
        Ok(())
    } else {
        Err(refuse(
            op,
            format!("{name} should hold {expected} values, it holds {got}"),
        ))
    }
}

impl Op {
    /// A short name, as in error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::MatMul(_) => "matmul",
            Op::Conv2d(_) => "conv2d",
            Op::Conv2dInputGrad(_) => "conv2d-input-grad",
            Op::Conv2dWeightGrad { .. } => "conv2d-weight-grad",
            Op::ChannelSums { .. } => "channel-sums",
            Op::Add => "add",
            Op::Map(f) | Op::MapGrad(f) => f.name(),
            Op::MaxPool2d(_) => "max_pool2d",
            Op::MaxPool2dGrad(_) => "max_pool2d-grad",
            Op::BatchNormStats { .. } => "batch_norm-stats",
            Op::BatchNormApply(_) => "batch_norm",
            Op::BatchNormInputGrad { .. } => "batch_norm-input-grad",
            Op::BatchNormAffineGrads(_) => "batch_norm-affine-grads",
            Op::Upsample2d(_) => "upsample_nearest2d",
            Op::Upsample2dGrad(_) => "upsample_nearest2d-grad",
            Op::Cat { .. } => "cat",
            Op::CatPart { .. } => "cat-part",
            Op::SumAxis(_) => "sum-axis",
            Op::ExpandAxis(_) => "expand-axis",
            Op::Softmax { log: false, .. } => "softmax",
            Op::Softmax { log: true, .. } => "log_softmax",
            Op::SoftmaxGrad { .. } => "softmax-grad",
            Op::CrossEntropy(_) => "cross_entropy",
            Op::CrossEntropyGrad { .. } => "cross_entropy-grad",
            Op::LayerNormStats { .. } => "layer_norm-stats",
            Op::LayerNormApply(_) => "layer_norm",
            Op::LayerNormInputGrad(_) => "layer_norm-input-grad",
            Op::LayerNormAffineGrads { .. } => "layer_norm-affine-grads",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::AvgPool2dGrad(_) => "avg_pool2d-grad",
            Op::AdaptiveAvgPool2d(_) => "adaptive_avg_pool2d",
            Op::AdaptiveAvgPool2dGrad(_) => "adaptive_avg_pool2d-grad",
            Op::PointwiseLoss(loss) => loss.name(),
            Op::PointwiseLossGrad { .. } => "loss-grad",
            Op::SumOfSquares => "sum-of-squares",
            Op::RowSquares { .. } => "row-squares",
            Op::Embedding(_) => "embedding",
            Op::EmbeddingGrad { .. } => "embedding-grad",
            Op::Binary { op, .. } => op.name(),
            Op::BinaryGrad { .. } => "broadcast-grad",
        }
    }

    /// The length of the output, given the inputs' lengths: every
    /// dimension, length and count checked, nothing allocated.
    pub fn output_len(&self, inputs: &[usize]) -> Result<usize, OpError> {
        let op = self.name();
        match *self {
            Op::MatMul(mm) => matmul_len(op, &mm, inputs),
            Op::Conv2d(_) | Op::Conv2dInputGrad(_) | Op::Conv2dWeightGrad { .. } => {
                conv_len(op, self, inputs)
            }
            Op::ChannelSums {
                batch,
                channels,
                plane,
                per_sample,
            } => {
                arity(op, inputs, &[1])?;
                length(op, "g", inputs[0], product(op, &[batch, channels, plane])?)?;
                let copies = if per_sample { batch } else { 1 };
                product(op, &[copies, channels])
            }
            Op::Add => {
                arity(op, inputs, &[2])?;
                length(op, "b", inputs[1], inputs[0])?;
                Ok(inputs[0])
            }
            Op::Map(_) => {
                arity(op, inputs, &[1])?;
                Ok(inputs[0])
            }
            Op::MapGrad(_) => {
                arity(op, inputs, &[2])?;
                length(op, "the output gradient", inputs[1], inputs[0])?;
                Ok(inputs[0])
            }
            Op::MaxPool2d(pool)
            | Op::MaxPool2dGrad(pool)
            | Op::AvgPool2d(pool)
            | Op::AvgPool2dGrad(pool) => pool_len(op, self, &pool, inputs),
            Op::AdaptiveAvgPool2d(a) | Op::AdaptiveAvgPool2dGrad(a) => {
                adaptive_len(op, self, &a, inputs)
            }
            Op::LayerNormStats { ln, .. }
            | Op::LayerNormApply(ln)
            | Op::LayerNormInputGrad(ln)
            | Op::LayerNormAffineGrads { ln, .. } => layer_norm_len(op, self, &ln, inputs),
            Op::BatchNormStats { bn, .. }
            | Op::BatchNormApply(bn)
            | Op::BatchNormInputGrad { bn, .. }
            | Op::BatchNormAffineGrads(bn) => batch_norm_len(op, self, &bn, inputs),
            Op::Upsample2d(_) | Op::Upsample2dGrad(_) | Op::Cat { .. } | Op::CatPart { .. } => {
                layout_len(op, self, inputs)
            }
            Op::SumAxis(_) | Op::ExpandAxis(_) | Op::Softmax { .. } | Op::SoftmaxGrad { .. } => {
                axis_len(op, self, inputs)
            }
            Op::CrossEntropy(ce) | Op::CrossEntropyGrad { ce, .. } => {
                cross_entropy_len(op, self, &ce, inputs)
            }
            Op::Binary { shapes, .. } | Op::BinaryGrad { shapes, .. } => {
                binary_len(op, self, &shapes, inputs)
            }
            Op::PointwiseLoss(loss) | Op::PointwiseLossGrad { loss, .. } => {
                pointwise_len(op, self, loss, inputs)
            }
            Op::SumOfSquares => {
                arity(op, inputs, &[1])?;
                Ok(4)
            }
            Op::Embedding(e) | Op::EmbeddingGrad { e, .. } => embedding_len(op, self, &e, inputs),
            Op::RowSquares { rows, width } => {
                arity(op, inputs, &[1])?;
                length(op, "the input", inputs[0], product(op, &[rows, width])?)?;
                product(op, &[rows, 4])
            }
        }
    }

    /// Roughly how many multiply-adds (or element visits) the operation
    /// does, to decide whether handing it to other threads pays.
    pub fn work(&self, inputs: &[usize]) -> usize {
        let elements = inputs.iter().fold(0usize, |a, &n| a.saturating_add(n));
        match *self {
            Op::MatMul(mm) => mm.m.saturating_mul(mm.k).saturating_mul(mm.n),
            Op::Conv2d(c) | Op::Conv2dInputGrad(c) | Op::Conv2dWeightGrad { conv: c, .. } => c
                .sizes()
                .map_or(usize::MAX, |s| s.output_len.saturating_mul(s.patch)),
            _ => elements,
        }
    }

    /// Floats of scratch the operation needs besides its outputs when it
    /// runs on `threads` threads (im2col columns per thread, packed
    /// operands of matrix products), for the memory budget.
    pub fn scratch(&self, threads: usize) -> usize {
        match self {
            Op::MatMul(mm) => crate::gemm::scratch(mm.m, mm.k, mm.n),
            Op::Conv2d(c) | Op::Conv2dInputGrad(c) | Op::Conv2dWeightGrad { conv: c, .. } => c
                .scratch()
                .map_or(usize::MAX, |per_thread| per_thread.saturating_mul(threads)),
            _ => 0,
        }
    }

    /// Run the operation. `inputs` and `out` must have the lengths
    /// [`Op::output_len`] accepted (`out` zero-filled or not: every value
    /// is written).
    ///
    /// # Panics
    /// When they do not (a caller's bug).
    pub fn run(&self, inputs: &[&[f32]], out: &mut [f32]) {
        match *self {
            Op::MatMul(mm) => run_matmul(&mm, inputs, out),
            Op::Conv2d(conv) => conv2d(&conv, inputs[0], inputs[1], inputs.get(2).copied(), out),
            Op::Conv2dInputGrad(conv) => conv2d_input_grad(&conv, inputs[0], inputs[1], out),
            Op::Conv2dWeightGrad { conv, per_sample } => {
                conv2d_weight_grad(&conv, inputs[0], inputs[1], out, per_sample)
            }
            Op::ChannelSums {
                batch,
                channels,
                plane,
                per_sample,
            } => channel_sums(inputs[0], batch, channels, plane, per_sample, out),
            Op::Add => {
                let (a, b) = (inputs[0], inputs[1]);
                crate::parallel::for_each_chunk_mut(out, 1 << 16, |i, chunk| {
                    let at = i << 16;
                    for (j, v) in chunk.iter_mut().enumerate() {
                        *v = a[at + j] + b[at + j];
                    }
                });
            }
            Op::Map(f) => map(f, inputs[0], out),
            Op::MapGrad(f) => map_grad(f, inputs[0], inputs[1], out),
            Op::MaxPool2d(pool) => max_pool2d(&pool, inputs[0], out),
            Op::MaxPool2dGrad(pool) => max_pool2d_grad(&pool, inputs[0], inputs[1], out),
            Op::BatchNormStats { bn, eps } => batch_norm_stats(&bn, inputs[0], eps, out),
            Op::BatchNormApply(bn) => {
                batch_norm_apply(&bn, inputs[0], inputs[1], inputs[2], inputs[3], out)
            }
            Op::BatchNormInputGrad { bn, training } => batch_norm_input_grad(
                &bn, training, inputs[0], inputs[1], inputs[2], inputs[3], out,
            ),
            Op::BatchNormAffineGrads(bn) => {
                batch_norm_affine_grads(&bn, inputs[0], inputs[1], inputs[2], out)
            }
            Op::Upsample2d(u) => upsample_nearest2d(&u, inputs[0], out),
            Op::Upsample2dGrad(u) => upsample_nearest2d_grad(&u, inputs[0], out),
            Op::Cat { outer } => cat(outer, inputs[0], inputs[1], out),
            Op::CatPart {
                outer,
                inner,
                start,
                ..
            } => cat_part(outer, inner, start, inputs[0], out),
            Op::SumAxis(_)
            | Op::ExpandAxis(_)
            | Op::Softmax { .. }
            | Op::SoftmaxGrad { .. }
            | Op::CrossEntropy(_)
            | Op::CrossEntropyGrad { .. }
            | Op::PointwiseLoss(_)
            | Op::PointwiseLossGrad { .. }
            | Op::SumOfSquares
            | Op::RowSquares { .. } => self.run_reduction(inputs, out),
            Op::LayerNormStats { .. }
            | Op::LayerNormApply(_)
            | Op::LayerNormInputGrad(_)
            | Op::LayerNormAffineGrads { .. }
            | Op::AvgPool2d(_)
            | Op::AvgPool2dGrad(_)
            | Op::AdaptiveAvgPool2d(_)
            | Op::AdaptiveAvgPool2dGrad(_)
            | Op::Embedding(_)
            | Op::EmbeddingGrad { .. }
            | Op::Binary { .. }
            | Op::BinaryGrad { .. } => self.run_pass(inputs, out),
        }
    }

    /// [`Op::run`] of the sums, softmaxes and losses.
    fn run_reduction(&self, inputs: &[&[f32]], out: &mut [f32]) {
        match *self {
            Op::SumAxis(axis) => sum_axis(&axis, inputs[0], out),
            Op::ExpandAxis(axis) => expand_axis(&axis, inputs[0], out),
            Op::Softmax { axis, log } => softmax(&axis, log, inputs[0], out),
            Op::SoftmaxGrad { axis, log } => softmax_grad(&axis, log, inputs[0], inputs[1], out),
            Op::CrossEntropy(ce) => {
                cross_entropy(&ce, inputs[0], inputs[1], inputs.get(2).copied(), out)
            }
            Op::CrossEntropyGrad { ce, scale } => cross_entropy_grad(
                &ce,
                scale,
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
                out,
            ),
            Op::PointwiseLoss(loss) => {
                pointwise_loss(loss, inputs[0], inputs[1], inputs.get(2).copied(), out)
            }
            Op::PointwiseLossGrad { loss, g } => {
                pointwise_loss_grad(loss, g, inputs[0], inputs[1], inputs.get(2).copied(), out)
            }
            Op::SumOfSquares => out.copy_from_slice(&f64_to_words(sum_of_squares(inputs[0]))),
            Op::RowSquares { width, .. } => row_squares(inputs[0], width, out),
            _ => unreachable!("run_reduction is called for reductions only"),
        }
    }

    /// [`Op::run`] of the other passes over values: normalization, average
    /// pooling, lookups and broadcasts.
    fn run_pass(&self, inputs: &[&[f32]], out: &mut [f32]) {
        match *self {
            Op::LayerNormStats { ln, eps } => layer_norm_stats(&ln, eps, inputs[0], out),
            Op::LayerNormApply(ln) => {
                layer_norm_apply(&ln, inputs[0], inputs[1], inputs[2], inputs[3], out)
            }
            Op::LayerNormInputGrad(ln) => {
                layer_norm_input_grad(&ln, inputs[0], inputs[1], inputs[2], inputs[3], out)
            }
            Op::LayerNormAffineGrads { ln, samples } => {
                layer_norm_affine_grads(&ln, samples, inputs[0], inputs[1], inputs[2], out)
            }
            Op::AvgPool2d(pool) => avg_pool2d(&pool, inputs[0], out),
            Op::AvgPool2dGrad(pool) => avg_pool2d_grad(&pool, inputs[0], out),
            Op::AdaptiveAvgPool2d(a) => adaptive_avg_pool2d(&a, inputs[0], out),
            Op::AdaptiveAvgPool2dGrad(a) => adaptive_avg_pool2d_grad(&a, inputs[0], out),
            Op::Embedding(e) => embedding(&e, inputs[0], inputs[1], out),
            Op::EmbeddingGrad { e, samples } => {
                embedding_grad(&e, samples, inputs[0], inputs[1], out)
            }
            Op::Binary { op, shapes } => binary(op, &shapes, inputs[0], inputs[1], out),
            Op::BinaryGrad { op, shapes, which } => {
                binary_grad(op, &shapes, which, inputs[0], inputs[1], inputs[2], out)
            }
            _ => unreachable!("run_pass is called for passes over values only"),
        }
    }
}

/// [`Op::run`] of a matrix product: each row starts from the bias, when
/// there is one.
fn run_matmul(mm: &MatMul, inputs: &[&[f32]], out: &mut [f32]) {
    let a = if mm.transpose_a {
        MatRef::row_major(inputs[0], mm.k, mm.m).t()
    } else {
        MatRef::row_major(inputs[0], mm.m, mm.k)
    };
    let b = if mm.transpose_b {
        MatRef::row_major(inputs[1], mm.n, mm.k).t()
    } else {
        MatRef::row_major(inputs[1], mm.k, mm.n)
    };
    match inputs.get(2) {
        Some(bias) => {
            for row in out.chunks_exact_mut(mm.n.max(1)) {
                row.copy_from_slice(bias);
            }
            gemm(a, b, out, true);
        }
        None => gemm(a, b, out, false),
    }
}

/// [`Op::output_len`] of a matrix product: a, b and an optional bias.
fn matmul_len(op: &str, mm: &MatMul, inputs: &[usize]) -> Result<usize, OpError> {
    arity(op, inputs, &[2, 3])?;
    length(op, "a", inputs[0], product(op, &[mm.m, mm.k])?)?;
    length(op, "b", inputs[1], product(op, &[mm.k, mm.n])?)?;
    if let Some(&bias) = inputs.get(2) {
        length(op, "the bias", bias, mm.n)?;
    }
    product(op, &[mm.m, mm.n])
}

/// [`Op::output_len`] of a convolution or one of its gradients.
fn conv_len(op: &str, which: &Op, inputs: &[usize]) -> Result<usize, OpError> {
    let (Op::Conv2d(conv) | Op::Conv2dInputGrad(conv) | Op::Conv2dWeightGrad { conv, .. }) = which
    else {
        unreachable!("conv_len is called for convolutions only");
    };
    let s = conv_sizes(op, conv)?;
    match *which {
        Op::Conv2d(_) => {
            arity(op, inputs, &[2, 3])?;
            length(op, "the input", inputs[0], s.input_len)?;
            length(op, "the weight", inputs[1], s.weight_len)?;
            if let Some(&bias) = inputs.get(2) {
                length(op, "the bias", bias, conv.out_channels)?;
            }
            Ok(s.output_len)
        }
        Op::Conv2dInputGrad(_) => {
            arity(op, inputs, &[2])?;
            length(op, "the output gradient", inputs[0], s.output_len)?;
            length(op, "the weight", inputs[1], s.weight_len)?;
            Ok(s.input_len)
        }
        _ => {
            arity(op, inputs, &[2])?;
            length(op, "the output gradient", inputs[0], s.output_len)?;
            length(op, "the input", inputs[1], s.input_len)?;
            let per_sample = matches!(
                which,
                Op::Conv2dWeightGrad {
                    per_sample: true,
                    ..
                }
            );
            let copies = if per_sample { conv.batch } else { 1 };
            product(op, &[copies, s.weight_len])
        }
    }
}

/// [`Op::output_len`] of upsampling, joining and taking a part back.
fn layout_len(op: &str, which: &Op, inputs: &[usize]) -> Result<usize, OpError> {
    match *which {
        Op::Upsample2d(u) | Op::Upsample2dGrad(u) => {
            arity(op, inputs, &[1])?;
            let (input, output) = u.sizes().ok_or_else(|| {
                refuse(
                    op,
                    format!(
                        "{} planes of {}×{} by a factor of {}: the factor must be at least 1 and the sizes must not overflow",
                        u.planes, u.height, u.width, u.factor
                    ),
                )
            })?;
            if matches!(which, Op::Upsample2d(_)) {
                length(op, "the input", inputs[0], input)?;
                Ok(output)
            } else {
                length(op, "the output gradient", inputs[0], output)?;
                Ok(input)
            }
        }
        Op::Cat { outer } => {
            arity(op, inputs, &[2])?;
            for (name, len) in [("a", inputs[0]), ("b", inputs[1])] {
                if outer == 0 || len % outer != 0 {
                    return Err(refuse(
                        op,
                        format!("{name} holds {len} values, not rows of {outer}"),
                    ));
                }
            }
            inputs[0]
                .checked_add(inputs[1])
                .ok_or_else(|| refuse(op, "the sizes overflow"))
        }
        Op::CatPart {
            outer,
            inner,
            start,
            len,
        } => {
            arity(op, inputs, &[1])?;
            length(op, "the input", inputs[0], product(op, &[outer, inner])?)?;
            if start.checked_add(len).is_none_or(|end| end > inner) {
                return Err(refuse(
                    op,
                    format!("columns {start}..{start}+{len} are not within rows of {inner}"),
                ));
            }
            product(op, &[outer, len])
        }
        _ => unreachable!("layout_len is called for layout operations only"),
    }
}

/// [`Op::output_len`] of a sum along an axis, its expansion back, a
/// softmax (x) and its gradient (x, g).
fn axis_len(op: &str, which: &Op, inputs: &[usize]) -> Result<usize, OpError> {
    let (Op::SumAxis(axis)
    | Op::ExpandAxis(axis)
    | Op::Softmax { axis, .. }
    | Op::SoftmaxGrad { axis, .. }) = *which
    else {
        unreachable!("axis_len is called for operations along an axis only");
    };
    let (full, reduced) = axis.lens().ok_or_else(|| {
        refuse(
            op,
            format!("[{}, {}, {}] overflows", axis.outer, axis.size, axis.inner),
        )
    })?;
    match which {
        Op::SumAxis(_) => {
            arity(op, inputs, &[1])?;
            length(op, "the input", inputs[0], full)?;
            Ok(reduced)
        }
        Op::ExpandAxis(_) => {
            arity(op, inputs, &[1])?;
            length(op, "the output gradient", inputs[0], reduced)?;
            Ok(full)
        }
        Op::Softmax { .. } => {
            arity(op, inputs, &[1])?;
            length(op, "the input", inputs[0], full)?;
            Ok(full)
        }
        _ => {
            arity(op, inputs, &[2])?;
            length(op, "the input", inputs[0], full)?;
            length(op, "the output gradient", inputs[1], full)?;
            Ok(full)
        }
    }
}

/// [`Op::output_len`] of cross-entropy or its gradient: logits, targets,
/// an optional weight per class.
fn cross_entropy_len(
    op: &str,
    which: &Op,
    ce: &CrossEntropy,
    inputs: &[usize],
) -> Result<usize, OpError> {
    arity(op, inputs, &[2, 3])?;
    let (logits, targets) = ce.lens().ok_or_else(|| {
        refuse(
            op,
            format!("[{}, {}, {}] overflows", ce.batch, ce.classes, ce.inner),
        )
    })?;
    if !(0.0..1.0).contains(&ce.label_smoothing) {
        return Err(refuse(
            op,
            format!(
                "label smoothing must be in [0, 1), got {}",
                ce.label_smoothing
            ),
        ));
    }
    length(op, "the logits", inputs[0], logits)?;
    length(op, "the targets", inputs[1], targets)?;
    if let Some(&weights) = inputs.get(2) {
        length(op, "the class weights", weights, ce.classes)?;
    }
    Ok(if matches!(which, Op::CrossEntropy(_)) {
        2
    } else {
        logits
    })
}

/// [`Op::output_len`] of a loss of each output against its target, or its
/// gradient: outputs, targets and (BCE only) optional positive weights.
fn pointwise_len(
    op: &str,
    which: &Op,
    loss: Pointwise,
    inputs: &[usize],
) -> Result<usize, OpError> {
    let counts: &[usize] = if loss == Pointwise::Bce {
        &[2, 3]
    } else {
        &[2]
    };
    arity(op, inputs, counts)?;
    length(op, "the targets", inputs[1], inputs[0])?;
    if let Some(&weights) = inputs.get(2)
        && (weights == 0 || !inputs[0].is_multiple_of(weights))
    {
        return Err(refuse(
            op,
            format!(
                "{weights} positive weights do not divide {} outputs into rows",
                inputs[0]
            ),
        ));
    }
    if let Pointwise::Huber(delta) = loss
        && (delta.is_nan() || delta <= 0.0)
    {
        return Err(refuse(op, format!("delta must be > 0, got {delta}")));
    }
    Ok(if matches!(which, Op::PointwiseLoss(_)) {
        1
    } else {
        inputs[0]
    })
}

/// [`Op::output_len`] of a table lookup (indices, table) or the table's
/// gradient (indices, g).
fn embedding_len(op: &str, which: &Op, e: &Embedding, inputs: &[usize]) -> Result<usize, OpError> {
    let (table, output) = e.lens().ok_or_else(|| refuse(op, "the sizes overflow"))?;
    arity(op, inputs, &[2])?;
    length(op, "the indices", inputs[0], e.count)?;
    match *which {
        Op::Embedding(_) => {
            length(op, "the table", inputs[1], table)?;
            Ok(output)
        }
        Op::EmbeddingGrad { samples, .. } => {
            length(op, "the output gradient", inputs[1], output)?;
            if samples == 0 || !e.count.is_multiple_of(samples) {
                return Err(refuse(
                    op,
                    format!(
                        "{} lookups are not {samples} samples' equal shares",
                        e.count
                    ),
                ));
            }
            product(op, &[samples, table])
        }
        _ => unreachable!("embedding_len is called for lookups only"),
    }
}

/// [`Op::output_len`] of a broadcast operation (a, b) or an operand's
/// gradient (a, b, g).
fn binary_len(
    op: &str,
    which: &Op,
    shapes: &Broadcast,
    inputs: &[usize],
) -> Result<usize, OpError> {
    let (la, lb, lo) = shapes
        .lens()
        .ok_or_else(|| refuse(op, "the sizes overflow"))?;
    let grad = match which {
        Op::BinaryGrad { which, .. } => Some(*which),
        _ => None,
    };
    arity(op, inputs, if grad.is_some() { &[3] } else { &[2] })?;
    length(op, "a", inputs[0], la)?;
    length(op, "b", inputs[1], lb)?;
    let Some(which) = grad else {
        return Ok(lo);
    };
    length(op, "the output gradient", inputs[2], lo)?;
    if which.samples == 0 || !lo.is_multiple_of(which.samples) {
        return Err(refuse(
            op,
            format!(
                "{lo} outputs are not {} samples' equal shares",
                which.samples
            ),
        ));
    }
    product(op, &[which.samples, if which.second { lb } else { la }])
}

/// [`Op::output_len`] of max pooling (x) or its gradient (x, g).
fn pool_len(op: &str, which: &Op, pool: &Pool2d, inputs: &[usize]) -> Result<usize, OpError> {
    let (_, input, output) = pool_sizes(op, pool)?;
    match which {
        Op::MaxPool2d(_) | Op::AvgPool2d(_) => {
            arity(op, inputs, &[1])?;
            length(op, "the input", inputs[0], input)?;
            Ok(output)
        }
        Op::AvgPool2dGrad(_) => {
            arity(op, inputs, &[1])?;
            length(op, "the output gradient", inputs[0], output)?;
            Ok(input)
        }
        _ => {
            arity(op, inputs, &[2])?;
            length(op, "the input", inputs[0], input)?;
            length(op, "the output gradient", inputs[1], output)?;
            Ok(input)
        }
    }
}

/// [`Op::output_len`] of layer normalization's operations: each takes x
/// first, then (except the statistics) the statistics, then its own.
fn layer_norm_len(
    op: &str,
    which: &Op,
    ln: &LayerNorm,
    inputs: &[usize],
) -> Result<usize, OpError> {
    let len = ln
        .len()
        .ok_or_else(|| refuse(op, format!("{} groups of {} overflow", ln.groups, ln.d)))?;
    let stats = product(op, &[2, ln.groups])?;
    let (count, tail): (usize, &[(&str, usize)]) = match which {
        Op::LayerNormStats { .. } => (1, &[]),
        Op::LayerNormApply(_) => (4, &[("the weight", ln.d), ("the bias", ln.d)]),
        Op::LayerNormInputGrad(_) => (4, &[("the weight", ln.d), ("the output gradient", len)]),
        _ => (3, &[("the output gradient", len)]),
    };
    arity(op, inputs, &[count])?;
    length(op, "the input", inputs[0], len)?;
    if count > 1 {
        length(op, "the statistics", inputs[1], stats)?;
    }
    for (&(name, expected), &got) in tail.iter().zip(inputs.iter().skip(2)) {
        length(op, name, got, expected)?;
    }
    match *which {
        Op::LayerNormStats { .. } => Ok(stats),
        Op::LayerNormAffineGrads { samples, .. } => {
            if samples == 0 || !ln.groups.is_multiple_of(samples) {
                return Err(refuse(
                    op,
                    format!(
                        "{} groups are not {samples} samples' equal shares",
                        ln.groups
                    ),
                ));
            }
            product(op, &[2, samples, ln.d])
        }
        _ => Ok(len),
    }
}

/// [`Op::output_len`] of adaptive average pooling (x) or its gradient (g).
fn adaptive_len(op: &str, which: &Op, a: &Adaptive, inputs: &[usize]) -> Result<usize, OpError> {
    let (input, output) = a.sizes().ok_or_else(|| {
        refuse(
            op,
            format!(
                "{} planes of {:?} pooled to {:?}: sizes must be non-zero and must not overflow",
                a.planes, a.input, a.output
            ),
        )
    })?;
    arity(op, inputs, &[1])?;
    if matches!(which, Op::AdaptiveAvgPool2d(_)) {
        length(op, "the input", inputs[0], input)?;
        Ok(output)
    } else {
        length(op, "the output gradient", inputs[0], output)?;
        Ok(input)
    }
}

/// [`Op::output_len`] of batch normalization's operations: each takes x
/// first, then (except the statistics) the statistics, then its own.
fn batch_norm_len(
    op: &str,
    which: &Op,
    bn: &BatchNorm,
    inputs: &[usize],
) -> Result<usize, OpError> {
    let len = bn_len(op, bn)?;
    let c = bn.channels;
    let (count, rest): (usize, &[(&str, usize)]) = match which {
        Op::BatchNormStats { .. } => (1, &[]),
        Op::BatchNormApply(_) => (4, &[("the weight", c), ("the bias", c)]),
        Op::BatchNormInputGrad { .. } => (4, &[("the weight", c), ("the output gradient", len)]),
        _ => (3, &[("the output gradient", len)]),
    };
    arity(op, inputs, &[count])?;
    length(op, "the input", inputs[0], len)?;
    if matches!(which, Op::BatchNormStats { .. }) {
        return product(op, &[3, c]);
    }
    at_least(op, "the statistics", inputs[1], product(op, &[2, c])?)?;
    for (&got, &(name, expected)) in inputs[2..].iter().zip(rest) {
        length(op, name, got, expected)?;
    }
    if matches!(which, Op::BatchNormAffineGrads(_)) {
        product(op, &[2, c])
    } else {
        Ok(len)
    }
}

/// Check that input `name` holds at least `expected` values.
fn at_least(op: &str, name: &str, got: usize, expected: usize) -> Result<(), OpError> {
    if got >= expected {
        Ok(())
    } else {
        Err(refuse(
            op,
            format!("{name} should hold at least {expected} values, it holds {got}"),
        ))
    }
}

fn bn_len(op: &str, bn: &BatchNorm) -> Result<usize, OpError> {
    match bn.len() {
        Some(len) if bn.batch * bn.spatial >= 1 => Ok(len),
        _ => Err(refuse(
            op,
            format!(
                "[{}, {}, {}] has no value per channel or overflows",
                bn.batch, bn.channels, bn.spatial
            ),
        )),
    }
}

fn pool_sizes(op: &str, pool: &Pool2d) -> Result<([usize; 2], usize, usize), OpError> {
    pool.sizes().ok_or_else(|| {
        refuse(
            op,
            format!(
                "a {:?} window with stride {:?}, padding {:?} (at most half the window) and dilation {:?} does not fit a {:?} plane, or a size overflows",
                pool.window.kernel,
                pool.window.stride,
                pool.window.padding,
                pool.window.dilation,
                pool.window.input
            ),
        )
    })
}

fn conv_sizes(op: &str, conv: &Conv2d) -> Result<crate::conv::ConvSizes, OpError> {
    conv.sizes().ok_or_else(|| {
        refuse(
            op,
            format!(
                "a {:?} kernel with stride {:?}, padding {:?} and dilation {:?} does not fit a {:?} input (or a size is zero or overflows)",
                conv.window.kernel,
                conv.window.stride,
                conv.window.padding,
                conv.window.dilation,
                conv.window.input
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Window;

    #[test]
    fn scratch_counts_packed_operands_once_and_columns_per_thread() {
        let mm = |m: usize, k: usize, n: usize| {
            Op::MatMul(MatMul {
                m,
                k,
                n,
                transpose_a: false,
                transpose_b: false,
            })
        };
        // One depth block of both operands, whatever the thread count.
        assert_eq!(mm(1000, 300, 40).scratch(1), (1024 + 64) * 256);
        assert_eq!(mm(1000, 300, 40).scratch(8), (1024 + 64) * 256);
        assert_eq!(mm(4, 10, 5000).scratch(2), (32 + 512) * 10);
        let conv = Op::Conv2d(Conv2d {
            batch: 4,
            window: Window {
                channels: 3,
                input: [32, 32],
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, 1],
                dilation: [1, 1],
            },
            out_channels: 8,
        });
        let one = conv.scratch(1);
        assert!(one >= 27 * 1024, "at least one image's columns: {one}");
        assert_eq!(conv.scratch(3), 3 * one);
        let absurd = Conv2d {
            batch: 1,
            window: Window {
                channels: 1 << 30,
                input: [1 << 20, 1 << 20],
                kernel: [1, 1],
                stride: [1, 1],
                padding: [0, 0],
                dilation: [1, 1],
            },
            out_channels: 1,
        };
        assert_eq!(Op::Conv2d(absurd).scratch(2), usize::MAX);
        // A tall stride over a huge padding: 11 × 16 outputs, but the image
        // read in place is padded to 10,001 × 16, and that is charged.
        let tall = Conv2d {
            batch: 1,
            window: Window {
                channels: 1,
                input: [1, 16],
                kernel: [1, 1],
                stride: [1000, 1],
                padding: [5000, 0],
                dilation: [1, 1],
            },
            out_channels: 1,
        };
        assert_eq!(tall.sizes().unwrap().output, [11, 16]);
        assert!(Op::Conv2d(tall).scratch(1) >= 10_001 * 16);
    }

    /// A plan chooses how many tensors it passes: every count gets an
    /// answer, never a panic (the fuzz target checks random ones too).
    #[test]
    fn any_input_count_is_answered_without_a_panic() {
        for (op, lens) in every_op() {
            for count in 0..=6 {
                let lens: Vec<usize> = (0..count)
                    .map(|i| lens.get(i).copied().unwrap_or(usize::MAX - i))
                    .collect();
                let fits = op.output_len(&lens).is_ok();
                assert!(!fits || count <= 4, "{op:?} took {count} inputs");
            }
        }
    }

    #[test]
    fn hostile_sizes_are_refused_before_anything_is_allocated() {
        let huge = MatMul {
            m: 1 << 40,
            k: 1 << 40,
            n: 1,
            transpose_a: false,
            transpose_b: false,
        };
        let err = Op::MatMul(huge).output_len(&[4, 4]).unwrap_err();
        assert!(
            err.0.contains("overflow") || err.0.contains("should hold"),
            "{err}"
        );
        let small = MatMul {
            m: 2,
            k: 3,
            n: 4,
            ..huge
        };
        assert_eq!(Op::MatMul(small).output_len(&[6, 12]).unwrap(), 8);
        assert!(
            Op::MatMul(small)
                .output_len(&[6, 11])
                .unwrap_err()
                .0
                .contains("b should hold 12")
        );
        assert!(
            Op::MatMul(small)
                .output_len(&[6])
                .unwrap_err()
                .0
                .contains("inputs")
        );
        assert!(
            Op::MatMul(small)
                .output_len(&[6, 12, 3])
                .unwrap_err()
                .0
                .contains("bias")
        );
        let conv = Conv2d {
            batch: 1,
            window: Window {
                channels: 1,
                input: [2, 2],
                kernel: [3, 3],
                stride: [1, 1],
                padding: [0, 0],
                dilation: [1, 1],
            },
            out_channels: 1,
        };
        assert!(
            Op::Conv2d(conv)
                .output_len(&[4, 9])
                .unwrap_err()
                .0
                .contains("does not fit")
        );
        assert!(Op::Add.output_len(&[3, 4]).is_err());
    }

    #[test]
    fn a_bias_starts_every_row() {
        let mm = MatMul {
            m: 2,
            k: 1,
            n: 2,
            transpose_a: false,
            transpose_b: false,
        };
        let mut out = vec![0.0; 4];
        Op::MatMul(mm).run(&[&[1.0, 2.0], &[3.0, 4.0], &[0.5, -0.5]], &mut out);
        assert_eq!(out, vec![3.5, 3.5, 6.5, 7.5]);
    }

    #[test]
    fn misfit_layouts_are_refused_by_name() {
        let err = |op: Op, lens: &[usize]| op.output_len(lens).unwrap_err().0;
        assert_eq!(
            err(Op::Cat { outer: 4 }, &[8, 6]),
            "cat: b holds 6 values, not rows of 4"
        );
        assert!(err(Op::Cat { outer: 0 }, &[0, 0]).contains("not rows of 0"));
        let part = Op::CatPart {
            outer: 2,
            inner: 5,
            start: 3,
            len: 3,
        };
        assert!(err(part, &[10]).contains("columns 3..3+3 are not within rows of 5"));
        let up = crate::layout::Upsample {
            planes: 1,
            height: 2,
            width: 2,
            factor: 0,
        };
        assert!(err(Op::Upsample2d(up), &[4]).contains("the factor must be at least 1"));
        let huge = crate::layout::Upsample {
            factor: 1 << 40,
            ..up
        };
        assert!(err(Op::Upsample2dGrad(huge), &[4]).contains("overflow"));
    }

    /// Every kind of operation with the lengths of its inputs, in shapes
    /// that exercise padding, strides, biases and both batch-norm modes:
    /// products and convolutions here, the rest from [`pass_ops`].
    fn every_op() -> Vec<(Op, Vec<usize>)> {
        let window = Window {
            channels: 3,
            input: [7, 6],
            kernel: [3, 3],
            stride: [2, 1],
            padding: [1, 1],
            dilation: [1, 1],
        };
        let conv = Conv2d {
            batch: 2,
            window,
            out_channels: 5,
        };
        let (x, w) = (2 * 3 * 7 * 6, 5 * 3 * 9);
        let g = conv.sizes().unwrap().output_len;
        let mm = |transpose_a, transpose_b| {
            Op::MatMul(MatMul {
                m: 7,
                k: 19,
                n: 13,
                transpose_a,
                transpose_b,
            })
        };
        vec![
            (mm(false, false), vec![7 * 19, 19 * 13]),
            (mm(true, true), vec![7 * 19, 19 * 13, 13]),
            (Op::Conv2d(conv), vec![x, w]),
            (Op::Conv2d(conv), vec![x, w, 5]),
            (Op::Conv2dInputGrad(conv), vec![g, w]),
            (
                Op::Conv2dWeightGrad {
                    conv,
                    per_sample: false,
                },
                vec![g, x],
            ),
            (
                Op::Conv2dWeightGrad {
                    conv,
                    per_sample: true,
                },
                vec![g, x],
            ),
            (
                Op::ChannelSums {
                    batch: 2,
                    channels: 3,
                    plane: 42,
                    per_sample: false,
                },
                vec![x],
            ),
            (
                Op::ChannelSums {
                    batch: 2,
                    channels: 3,
                    plane: 42,
                    per_sample: true,
                },
                vec![x],
            ),
        ]
        .into_iter()
        .chain(pass_ops(window, x))
        .collect()
    }

    /// Operations that visit each value a few times (elementwise, pooling,
    /// batch normalization, layouts) on an input of `x` values shaped
    /// `[2, 3, 7, 6]` like `window`'s.
    fn pass_ops(window: Window, x: usize) -> Vec<(Op, Vec<usize>)> {
        let pool = Pool2d {
            planes: 6,
            window: Window {
                channels: 1,
                kernel: [3, 3],
                stride: [2, 2],
                ..window
            },
        };
        let pooled = pool.sizes().unwrap().2;
        let bn = BatchNorm {
            batch: 2,
            channels: 3,
            spatial: 42,
        };
        let up = crate::layout::Upsample {
            planes: 6,
            height: 6,
            width: 7,
            factor: 2,
        };
        vec![
            (Op::Add, vec![x, x]),
            (Op::Map(Elementwise::Gelu), vec![x]),
            (Op::MapGrad(Elementwise::LeakyRelu(0.1)), vec![x, x]),
            (Op::MaxPool2d(pool), vec![x]),
            (Op::MaxPool2dGrad(pool), vec![x, pooled]),
            (Op::BatchNormStats { bn, eps: 1e-5 }, vec![x]),
            (Op::BatchNormApply(bn), vec![x, 9, 3, 3]),
            (
                Op::BatchNormInputGrad { bn, training: true },
                vec![x, 9, 3, x],
            ),
            (
                Op::BatchNormInputGrad {
                    bn,
                    training: false,
                },
                vec![x, 9, 3, x],
            ),
            (Op::BatchNormAffineGrads(bn), vec![x, 9, x]),
            (Op::Upsample2d(up), vec![x]),
            (Op::Upsample2dGrad(up), vec![4 * x]),
            (Op::Cat { outer: 6 }, vec![x, 12]),
            (
                Op::CatPart {
                    outer: 6,
                    inner: 21,
                    start: 5,
                    len: 9,
                },
                vec![126],
            ),
        ]
        .into_iter()
        .chain(averaging_ops(pool, x, pooled))
        .chain(reduction_ops())
        .collect()
    }

    /// Layer normalization and average pooling, on the same input.
    fn averaging_ops(pool: Pool2d, x: usize, pooled: usize) -> Vec<(Op, Vec<usize>)> {
        vec![
            (
                Op::LayerNormStats {
                    ln: LayerNorm { groups: 6, d: 42 },
                    eps: 1e-5,
                },
                vec![x],
            ),
            (
                Op::LayerNormApply(LayerNorm { groups: 6, d: 42 }),
                vec![x, 12, 42, 42],
            ),
            (
                Op::LayerNormInputGrad(LayerNorm { groups: 6, d: 42 }),
                vec![x, 12, 42, x],
            ),
            (
                Op::LayerNormAffineGrads {
                    ln: LayerNorm { groups: 6, d: 42 },
                    samples: 2,
                },
                vec![x, 12, x],
            ),
            (Op::AvgPool2d(pool), vec![x]),
            (Op::AvgPool2dGrad(pool), vec![pooled]),
            (
                Op::AdaptiveAvgPool2d(Adaptive {
                    planes: 6,
                    input: [7, 6],
                    output: [3, 4],
                }),
                vec![x],
            ),
            (
                Op::AdaptiveAvgPool2dGrad(Adaptive {
                    planes: 6,
                    input: [7, 6],
                    output: [1, 1],
                }),
                vec![6],
            ),
        ]
    }

    /// Sums, softmaxes and the cross-entropy, on `[6, 7, 6]` values.
    fn reduction_ops() -> Vec<(Op, Vec<usize>)> {
        let axis = Axis {
            outer: 6,
            size: 7,
            inner: 6,
        };
        let ce = CrossEntropy {
            batch: 6,
            classes: 7,
            inner: 6,
            label_smoothing: 0.1,
        };
        vec![
            (Op::SumAxis(axis), vec![252]),
            (Op::ExpandAxis(axis), vec![36]),
            (Op::Softmax { axis, log: true }, vec![252]),
            (Op::SoftmaxGrad { axis, log: false }, vec![252, 252]),
            (Op::CrossEntropy(ce), vec![252, 36]),
            (Op::CrossEntropyGrad { ce, scale: 0.5 }, vec![252, 36, 7]),
            (
                Op::Binary {
                    op: Binary::Div,
                    shapes: Broadcast::new(&[6, 7, 6], &[7, 1]).unwrap(),
                },
                vec![252, 7],
            ),
            (Op::PointwiseLoss(Pointwise::Bce), vec![252, 252, 6]),
            (
                Op::PointwiseLossGrad {
                    loss: Pointwise::Mse,
                    g: 2.0,
                },
                vec![252, 252],
            ),
            (Op::SumOfSquares, vec![252]),
            (Op::RowSquares { rows: 42, width: 6 }, vec![252]),
            (
                Op::Embedding(Embedding {
                    num: 7,
                    dim: 6,
                    count: 36,
                }),
                vec![36, 42],
            ),
            (
                Op::EmbeddingGrad {
                    e: Embedding {
                        num: 7,
                        dim: 6,
                        count: 36,
                    },
                    samples: 6,
                },
                vec![36, 216],
            ),
            (
                Op::BinaryGrad {
                    op: Binary::Mul,
                    shapes: Broadcast::new(&[6, 7, 6], &[7, 1]).unwrap(),
                    which: Operand {
                        second: true,
                        samples: 6,
                    },
                },
                vec![252, 7, 252],
            ),
        ]
    }

    /// Sums, softmaxes and the loss split over threads by output rows or
    /// chunks; none of the splits may move a bit.
    #[cfg(feature = "parallel")]
    #[test]
    fn reductions_give_the_same_bits_on_any_thread_count() {
        let axis = Axis {
            outer: 37,
            size: 10,
            inner: 300,
        };
        let ce = CrossEntropy {
            batch: 37,
            classes: 10,
            inner: 300,
            label_smoothing: 0.05,
        };
        let x = crate::gemm::tests::values(37 * 10 * 300, 9);
        let g = crate::gemm::tests::values(37 * 10 * 300, 10);
        let targets: Vec<f32> = (0..37 * 300).map(|i| ((i * 7) % 10) as f32).collect();
        let weights = crate::gemm::tests::values(10, 11);
        let cases: Vec<(Op, Vec<&[f32]>)> = vec![
            (Op::SumAxis(axis), vec![&x]),
            (
                Op::SumAxis(Axis {
                    outer: 1,
                    size: 111_000,
                    inner: 1,
                }),
                vec![&x],
            ),
            (Op::ExpandAxis(axis), vec![&g[..37 * 300]]),
            (Op::Softmax { axis, log: false }, vec![&x]),
            (Op::SoftmaxGrad { axis, log: true }, vec![&x, &g]),
            (Op::CrossEntropy(ce), vec![&x, &targets, &weights]),
            (
                Op::CrossEntropyGrad { ce, scale: 0.25 },
                vec![&x, &targets, &weights],
            ),
            (
                Op::Binary {
                    op: Binary::Sub,
                    shapes: Broadcast::new(&[37, 10, 300], &[37, 1, 300]).unwrap(),
                },
                vec![&x, &g[..37 * 300]],
            ),
            (Op::SumOfSquares, vec![&x]),
            (
                Op::RowSquares {
                    rows: 3700,
                    width: 30,
                },
                vec![&x],
            ),
            (
                Op::PointwiseLossGrad {
                    loss: Pointwise::Huber(0.5),
                    g: 0.3,
                },
                vec![&x, &g],
            ),
        ];
        for (op, inputs) in cases {
            let lens: Vec<usize> = inputs.iter().map(|v| v.len()).collect();
            let n = op.output_len(&lens).unwrap();
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut out = vec![f32::NAN; n];
                pool.install(|| op.run(&inputs, &mut out));
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            let one = run(1);
            assert!(one.iter().all(|&b| !f32::from_bits(b).is_nan()), "{op:?}");
            for threads in [2, 3, 8] {
                assert_eq!(run(threads), one, "{op:?} on {threads} threads");
            }
        }
    }

    /// `Op::run` writes every value of its output and reads none, so the
    /// host may hand it a buffer holding anything (a spare of the plan's).
    #[test]
    fn every_operation_writes_its_whole_output_and_reads_none_of_it() {
        for (i, (op, lens)) in every_op().into_iter().enumerate() {
            let n = op
                .output_len(&lens)
                .unwrap_or_else(|e| panic!("{op:?}: {e}"));
            let inputs: Vec<Vec<f32>> = lens
                .iter()
                .enumerate()
                .map(|(j, &len)| crate::gemm::tests::values(len, (i * 7 + j) as u32 + 1))
                .collect();
            let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            let run = |fill: f32| {
                let mut out = vec![fill; n];
                op.run(&slices, &mut out);
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(run(0.0), run(f32::NAN), "{op:?} reads or skips its output");
        }
    }
}
