//! [`Op::output_len`]'s checks, one function per family of operations:
//! every dimension, length and count a plan passes, against overflow and
//! against the inputs' lengths, before anything is allocated.

use std::fmt;

use super::{MatMul, Op, OpError};
use crate::avg_pool::Adaptive;
use crate::broadcast::Broadcast;
use crate::conv::Conv2d;
use crate::embedding::Embedding;
use crate::layer_norm::LayerNorm;
use crate::loss::{CrossEntropy, Pointwise};
use crate::norm::BatchNorm;
use crate::pool::Pool2d;

pub(super) fn refuse(op: &str, detail: impl fmt::Display) -> OpError {
    OpError(format!("{op}: {detail}"))
}

/// `a·b·…`, or an error naming the operation when it overflows.
pub(super) fn product(op: &str, dims: &[usize]) -> Result<usize, OpError> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| refuse(op, format!("the sizes {dims:?} overflow")))
}

/// Check that `inputs` has one of the `counts` lengths.
pub(super) fn arity(op: &str, inputs: &[usize], counts: &[usize]) -> Result<(), OpError> {
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
pub(super) fn length(op: &str, name: &str, got: usize, expected: usize) -> Result<(), OpError> {
    if got == expected {
        Ok(())
    } else {
        Err(refuse(
            op,
            format!("{name} should hold {expected} values, it holds {got}"),
        ))
    }
}

/// [`Op::output_len`] of a matrix product: a, b and an optional bias.
pub(super) fn matmul_len(op: &str, mm: &MatMul, inputs: &[usize]) -> Result<usize, OpError> {
    arity(op, inputs, &[2, 3])?;
    length(op, "a", inputs[0], product(op, &[mm.m, mm.k])?)?;
    length(op, "b", inputs[1], product(op, &[mm.k, mm.n])?)?;
    if let Some(&bias) = inputs.get(2) {
        length(op, "the bias", bias, mm.n)?;
    }
    product(op, &[mm.m, mm.n])
}

/// [`Op::output_len`] of a convolution or one of its gradients.
pub(super) fn conv_len(op: &str, which: &Op, inputs: &[usize]) -> Result<usize, OpError> {
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
pub(super) fn layout_len(op: &str, which: &Op, inputs: &[usize]) -> Result<usize, OpError> {
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
pub(super) fn axis_len(op: &str, which: &Op, inputs: &[usize]) -> Result<usize, OpError> {
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
pub(super) fn cross_entropy_len(
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
pub(super) fn pointwise_len(
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
pub(super) fn embedding_len(
    op: &str,
    which: &Op,
    e: &Embedding,
    inputs: &[usize],
) -> Result<usize, OpError> {
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
pub(super) fn binary_len(
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
pub(super) fn pool_len(
    op: &str,
    which: &Op,
    pool: &Pool2d,
    inputs: &[usize],
) -> Result<usize, OpError> {
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
pub(super) fn layer_norm_len(
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
pub(super) fn adaptive_len(
    op: &str,
    which: &Op,
    a: &Adaptive,
    inputs: &[usize],
) -> Result<usize, OpError> {
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
pub(super) fn batch_norm_len(
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
pub(super) fn at_least(op: &str, name: &str, got: usize, expected: usize) -> Result<(), OpError> {
    if got >= expected {
        Ok(())
    } else {
        Err(refuse(
            op,
            format!("{name} should hold at least {expected} values, it holds {got}"),
        ))
    }
}

pub(super) fn bn_len(op: &str, bn: &BatchNorm) -> Result<usize, OpError> {
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

pub(super) fn pool_sizes(op: &str, pool: &Pool2d) -> Result<([usize; 2], usize, usize), OpError> {
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

pub(super) fn conv_sizes(op: &str, conv: &Conv2d) -> Result<crate::conv::ConvSizes, OpError> {
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
