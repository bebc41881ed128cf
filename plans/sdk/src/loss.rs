//! Loss functions, each the mean over the batch (PyTorch's default
//! reduction), so DP-SGD's per-sample gradients are the loss's shares.
//!
//! Classification losses are fused with their softmax/sigmoid for stability;
//! Dice is written with tensor operations (autodiff does its backward).

use fedwasm_kernels::{Op, Pointwise};

use crate::backend::{self, Buf};
use crate::error::{PlanResult, invalid_argument, invalid_data};
use crate::tensor::{HostGrad, Need, Tensor};

/// Options of [`cross_entropy`], as PyTorch's `F.cross_entropy`.
#[derive(Debug, Clone, Default)]
pub struct CrossEntropy {
    /// A weight per class; the mean divides by the weights of the targets.
    pub class_weights: Option<Vec<f32>>,
    /// ε in [0, 1): the target distribution is (1−ε)·one-hot + ε/C.
    pub label_smoothing: f32,
}

fn class_index(v: f32, row: usize, classes: usize) -> PlanResult<usize> {
    if v >= 0.0 && v.fract() == 0.0 && (v as usize) < classes {
        Ok(v as usize)
    } else {
        Err(invalid_data(format!(
            "target {v} in row {row} is not a class index in 0..{classes}"
        )))
    }
}

fn same_shape(what: &str, output: &Tensor, target: &Tensor) -> PlanResult<()> {
    if output.shape() == target.shape() {
        Ok(())
    } else {
        Err(invalid_data(format!(
            "{what}: output {:?} and target {:?} differ in shape",
            output.shape(),
            target.shape()
        )))
    }
}

/// Softmax cross-entropy of `logits` `[N, C]` against class indices `[N]`,
/// or, as PyTorch's `F.cross_entropy` for K-dimensional outputs, of
/// `[N, C, d1, …]` (a class per pixel: segmentation) against `[N, d1, …]`,
/// the mean over every position.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, opts: &CrossEntropy) -> PlanResult<Tensor> {
    let shape = logits.shape().to_vec();
    let (n, c) = match shape[..] {
        [n, c, ..] => (n, c),
        _ => {
            return Err(invalid_data(format!(
                "cross_entropy needs logits [N, C] or [N, C, d1, …], got {shape:?}"
            )));
        }
    };
    // Positions per sample: 1 for [N, C], d1·d2·… beyond it.
    let inner: usize = shape[2..].iter().product();
    let expected: Vec<usize> = [&shape[..1], &shape[2..]].concat();
    let fits = if inner == 1 && shape.len() == 2 {
        targets.numel() == n
    } else {
        targets.shape() == expected.as_slice()
    };
    if !fits {
        return Err(invalid_data(format!(
            "cross_entropy: logits {shape:?} need targets {expected:?}, got {:?}",
            targets.shape()
        )));
    }
    let eps = opts.label_smoothing;
    if !(0.0..1.0).contains(&eps) {
        return Err(invalid_argument(format!(
            "label_smoothing must be in [0, 1), got {eps}"
        )));
    }
    if let Some(w) = &opts.class_weights
        && w.len() != c
    {
        return Err(invalid_argument(format!(
            "class weights: {} given for {c} classes",
            w.len()
        )));
    }
    for (r, &v) in targets.values().iter().enumerate() {
        class_index(v, r, c)?;
    }
    let ce = fedwasm_kernels::CrossEntropy {
        batch: n,
        classes: c,
        inner,
        label_smoothing: eps,
    };
    let weights = match &opts.class_weights {
        Some(w) => Some(Tensor::new(w.clone(), &[c])?),
        None => None,
    };
    let mut inputs = vec![logits, targets];
    inputs.extend(weights.as_ref());
    let sums = backend::run_near(Op::CrossEntropy(ce), &inputs)?;
    let [total, denominator] = Tensor::from_values(sums, &[2]).to_vec()[..] else {
        unreachable!("the cross-entropy gives two sums");
    };
    if denominator <= 0.0 {
        return Err(invalid_data(
            "cross_entropy: the targets' class weights sum to zero",
        ));
    }
    let value = Buf::local(vec![total / denominator]);
    let (x, t) = (logits.clone(), targets.clone());
    Tensor::from_buf("cross_entropy", value, &[], &[logits], move |g, need| {
        if need[0] != Need::Sum {
            return Ok(vec![None]);
        }
        let scale = g.item()? / denominator;
        let mut inputs = vec![&x, &t];
        inputs.extend(weights.as_ref());
        let dx = backend::run_near(Op::CrossEntropyGrad { ce, scale }, &inputs)?;
        Ok(vec![Some(HostGrad::Sum(Tensor::from_values(
            dx,
            x.shape(),
        )))])
    })
}

/// Binary cross-entropy of `logits` against `targets` in [0, 1] of the same
/// shape, `pos_weight` (one per element of the last dimension) weighting the
/// positive term, as PyTorch's `F.binary_cross_entropy_with_logits`.
pub fn binary_cross_entropy_with_logits(
    logits: &Tensor,
    targets: &Tensor,
    pos_weight: Option<&[f32]>,
) -> PlanResult<Tensor> {
    same_shape("binary_cross_entropy_with_logits", logits, targets)?;
    let last = logits.shape().last().copied().unwrap_or(1);
    if let Some(p) = pos_weight
        && p.len() != last
    {
        return Err(invalid_argument(format!(
            "pos_weight: {} values for a last dimension of {last}",
            p.len()
        )));
    }
    if let Some(i) = targets
        .values()
        .iter()
        .position(|v| !(0.0..=1.0).contains(v))
    {
        return Err(invalid_data(format!(
            "binary targets must be in [0, 1]; element {i} is {}",
            targets.values()[i]
        )));
    }
    let weights = pos_weight
        .map(|p| Tensor::new(p.to_vec(), &[p.len()]))
        .transpose()?;
    pointwise(Pointwise::Bce, logits, targets, weights)
}

/// The mean of `loss` over every element of `output` against `target`,
/// where the values are, its gradient likewise.
fn pointwise(
    loss: Pointwise,
    output: &Tensor,
    target: &Tensor,
    weights: Option<Tensor>,
) -> PlanResult<Tensor> {
    let mut inputs = vec![output, target];
    inputs.extend(weights.as_ref());
    let value = backend::run_near(Op::PointwiseLoss(loss), &inputs)?;
    let (o, t) = (output.clone(), target.clone());
    Tensor::from_buf(loss.name(), value, &[], &[output], move |g, need| {
        if need[0] != Need::Sum {
            return Ok(vec![None]);
        }
        let op = Op::PointwiseLossGrad { loss, g: g.item()? };
        let mut inputs = vec![&o, &t];
        inputs.extend(weights.as_ref());
        let dx = backend::run_near(op, &inputs)?;
        Ok(vec![Some(HostGrad::Sum(Tensor::from_values(
            dx,
            o.shape(),
        )))])
    })
}

/// Mean squared error.
pub fn mse(output: &Tensor, target: &Tensor) -> PlanResult<Tensor> {
    same_shape("mse", output, target)?;
    pointwise(Pointwise::Mse, output, target, None)
}

/// Mean absolute error (derivative 0 at 0).
pub fn l1(output: &Tensor, target: &Tensor) -> PlanResult<Tensor> {
    same_shape("l1", output, target)?;
    pointwise(Pointwise::L1, output, target, None)
}

/// Huber loss: ½d² for |d| ≤ δ, δ(|d| − ½δ) beyond (PyTorch's `HuberLoss`).
pub fn huber(output: &Tensor, target: &Tensor, delta: f32) -> PlanResult<Tensor> {
    if delta.is_nan() || delta <= 0.0 {
        return Err(invalid_argument(format!(
            "huber delta must be > 0, got {delta}"
        )));
    }
    same_shape("huber", output, target)?;
    pointwise(Pointwise::Huber(delta), output, target, None)
}

/// Soft Dice loss for segmentation: per sample 1 − (2·Σpt + s)/(Σp + Σt + s)
/// over everything but the batch dimension, averaged over the batch;
/// `probs` are probabilities (apply a sigmoid or softmax first) and
/// `targets` masks of the same shape.
pub fn soft_dice(probs: &Tensor, targets: &Tensor, smooth: f32) -> PlanResult<Tensor> {
    same_shape("soft_dice", probs, targets)?;
    if probs.ndim() < 2 {
        return Err(invalid_data(format!(
            "soft_dice needs [N, …] inputs, got {:?}",
            probs.shape()
        )));
    }
    let p = probs.flatten(1)?;
    let t = targets.flatten(1)?;
    let intersection = p.mul(&t)?.sum_dim(1, false)?.scale(2.0).add_scalar(smooth);
    let sizes = p
        .sum_dim(1, false)?
        .add(&t.sum_dim(1, false)?)?
        .add_scalar(smooth);
    Ok(intersection.div(&sizes)?.neg().add_scalar(1.0).mean())
}
