//! [`Op`]: one operation a plan asks for on tensors the host holds, checked
//! before anything is allocated, then run on the kernels.
//!
//! Host tensors are flat arrays of f32; shapes are the plan's business, so
//! every operation carries the dimensions it works with and [`Op::output_len`]
//! checks them against the inputs' lengths (and against overflow) before a
//! byte is allocated. The node's host and the SDK's in-process backend call
//! the same two functions, which is what makes them agree.
//!
//! - this file: the operations, their families, and how each runs;
//! - `checks`: [`Op::output_len`]'s checks, one function per family.

use std::fmt;

mod checks;

use checks::*;

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

/// A group of operations, for dispatchers that hand each group to its own
/// function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Products, convolutions, activations, max pooling, batch
    /// normalization and layouts.
    Core,
    /// Sums, softmaxes, losses and sums of squares.
    Reduction,
    /// Layer normalization, average pooling, lookups and broadcasts.
    Pass,
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
        match self.family() {
            Family::Core => self.run_core(inputs, out),
            Family::Reduction => self.run_reduction(inputs, out),
            Family::Pass => self.run_pass(inputs, out),
        }
    }

    /// Which [`Family`] the operation is in: one exhaustive list, which
    /// every dispatcher (here, and the plan SDK's calls to the host) splits
    /// on.
    pub fn family(&self) -> Family {
        match self {
            Op::MatMul(_)
            | Op::Conv2d(_)
            | Op::Conv2dInputGrad(_)
            | Op::Conv2dWeightGrad { .. }
            | Op::ChannelSums { .. }
            | Op::Add
            | Op::Map(_)
            | Op::MapGrad(_)
            | Op::MaxPool2d(_)
            | Op::MaxPool2dGrad(_)
            | Op::BatchNormStats { .. }
            | Op::BatchNormApply(_)
            | Op::BatchNormInputGrad { .. }
            | Op::BatchNormAffineGrads(_)
            | Op::Upsample2d(_)
            | Op::Upsample2dGrad(_)
            | Op::Cat { .. }
            | Op::CatPart { .. } => Family::Core,
            Op::SumAxis(_)
            | Op::ExpandAxis(_)
            | Op::Softmax { .. }
            | Op::SoftmaxGrad { .. }
            | Op::CrossEntropy(_)
            | Op::CrossEntropyGrad { .. }
            | Op::PointwiseLoss(_)
            | Op::PointwiseLossGrad { .. }
            | Op::SumOfSquares
            | Op::RowSquares { .. } => Family::Reduction,
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
            | Op::BinaryGrad { .. } => Family::Pass,
        }
    }

    /// [`Op::run`] of products, convolutions, activations, max pooling,
    /// batch normalization and layouts.
    fn run_core(&self, inputs: &[&[f32]], out: &mut [f32]) {
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
            _ => unreachable!("run_core is called for products, convolutions and layers only"),
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

#[cfg(test)]
mod tests;
