//! Losses: softmax cross-entropy against class indices, fused with its
//! softmax, as PyTorch's `F.cross_entropy` (class weights, label smoothing,
//! a class per position for segmentation); and the losses of each output
//! against its target ([`Pointwise`]: BCE with logits, MSE, L1, Huber).
//!
//! The forward pass gives the two sums the mean is made of — the weighted
//! loss and the targets' weights — so the plan reads two values, not the
//! logits. The backward pass recomputes each position's softmax from the
//! logits (the same bits as keeping it). Positions run in index order with
//! one running sum each, as the plan SDK always did.

use crate::elementwise::sigmoid;
use crate::parallel::for_each_chunk_mut;

/// Elements one task differentiates.
const CHUNK: usize = 1 << 14;

/// Logits `[batch, classes, inner]` (`inner` the positions per sample: 1
/// for a classifier, H·W for segmentation) and targets `[batch, inner]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropy {
    pub batch: usize,
    pub classes: usize,
    pub inner: usize,
    /// ε in [0, 1): the target distribution is (1−ε)·one-hot + ε/C.
    pub label_smoothing: f32,
}

impl CrossEntropy {
    /// `(logits, targets)` lengths, or `None` when they overflow.
    pub fn lens(&self) -> Option<(usize, usize)> {
        let positions = self.batch.checked_mul(self.inner)?;
        Some((positions.checked_mul(self.classes)?, positions))
    }

    /// The class a target value names, if it is one.
    fn class(&self, v: f32) -> Option<usize> {
        (v >= 0.0 && v.fract() == 0.0 && (v as usize) < self.classes).then_some(v as usize)
    }

    /// The weight of log p_k in the loss of a position of class y.
    fn coef(&self, weights: Option<&[f32]>, y: usize, k: usize) -> f32 {
        let eps = self.label_smoothing;
        let hot = if k == y { 1.0 - eps } else { 0.0 };
        weights.map_or(1.0, |w| w[k]) * (hot + eps / self.classes as f32)
    }

    /// Logit k of position p.
    fn at(&self, p: usize, k: usize) -> usize {
        (p / self.inner) * self.classes * self.inner + k * self.inner + p % self.inner
    }

    /// log Σ exp of position p's logits, gathered into `row`.
    fn gather(&self, logits: &[f32], p: usize, row: &mut [f32]) -> f32 {
        for (k, slot) in row.iter_mut().enumerate() {
            *slot = logits[self.at(p, k)];
        }
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let sum = row.iter().fold(0.0f32, |s, &v| s + libm::expf(v - max));
        max + libm::logf(sum)
    }
}

/// `out = [Σ loss, Σ weight of the targets]` over every position: the mean
/// loss is their quotient. A target that is no class index makes both NaN
/// (the SDK checks targets before; a hostile plan gets a NaN, not a panic).
pub fn cross_entropy(
    ce: &CrossEntropy,
    logits: &[f32],
    targets: &[f32],
    weights: Option<&[f32]>,
    out: &mut [f32],
) {
    let mut row = vec![0.0f32; ce.classes];
    let (mut total, mut denominator) = (0.0f32, 0.0f32);
    for (p, &t) in targets.iter().enumerate() {
        let Some(y) = ce.class(t) else {
            out.copy_from_slice(&[f32::NAN, f32::NAN]);
            return;
        };
        let lse = ce.gather(logits, p, &mut row);
        let mut loss = 0.0f32;
        for (k, &v) in row.iter().enumerate() {
            loss -= ce.coef(weights, y, k) * (v - lse);
        }
        total += loss;
        denominator += weights.map_or(1.0, |w| w[y]);
    }
    out.copy_from_slice(&[total, denominator]);
}

/// The logits' gradient of [`cross_entropy`]'s sum times `scale` (the
/// output gradient over the denominator): `scale·(mass·softmax − coef)`.
pub fn cross_entropy_grad(
    ce: &CrossEntropy,
    scale: f32,
    logits: &[f32],
    targets: &[f32],
    weights: Option<&[f32]>,
    dx: &mut [f32],
) {
    let sample = ce.classes * ce.inner;
    if sample == 0 {
        return;
    }
    for_each_chunk_mut(dx, sample, |n, dx| {
        let mut row = vec![0.0f32; ce.classes];
        for p in n * ce.inner..(n + 1) * ce.inner {
            let Some(y) = ce.class(targets[p]) else {
                for k in 0..ce.classes {
                    dx[ce.at(p, k) - n * sample] = f32::NAN;
                }
                continue;
            };
            let lse = ce.gather(logits, p, &mut row);
            let mass = (0..ce.classes).fold(0.0f32, |s, k| s + ce.coef(weights, y, k));
            for (k, &v) in row.iter().enumerate() {
                let softmax = libm::expf(v - lse);
                dx[ce.at(p, k) - n * sample] = scale * (mass * softmax - ce.coef(weights, y, k));
            }
        }
    });
}

/// A loss of each output against its target, averaged (PyTorch's default
/// reduction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pointwise {
    /// Binary cross-entropy with logits; each target in [0, 1], the
    /// positive term weighted by the `pos_weight` of the element's position
    /// in the last dimension (1 without).
    Bce,
    /// (o − t)².
    Mse,
    /// |o − t| (derivative 0 at 0).
    L1,
    /// ½d² for |d| ≤ δ, δ(|d| − ½δ) beyond.
    Huber(f32),
}

/// `ln(1 + e^z)` without overflow.
fn softplus(z: f32) -> f32 {
    z.max(0.0) + libm::log1pf(libm::expf(-z.abs()))
}

impl Pointwise {
    /// A short name, as in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Pointwise::Bce => "binary_cross_entropy_with_logits",
            Pointwise::Mse => "mse",
            Pointwise::L1 => "l1",
            Pointwise::Huber(_) => "huber",
        }
    }

    /// One element's loss: output `o`, target `t`, positive weight `p`.
    #[inline]
    fn value(self, o: f32, t: f32, p: f32) -> f32 {
        let d = o - t;
        match self {
            Pointwise::Bce => p * t * softplus(-o) + (1.0 - t) * softplus(o),
            Pointwise::Mse => d * d,
            Pointwise::L1 => d.abs(),
            Pointwise::Huber(delta) => {
                if d.abs() <= delta {
                    0.5 * d * d
                } else {
                    delta * (d.abs() - 0.5 * delta)
                }
            }
        }
    }

    /// One element's gradient of the mean over `n` values, for the output
    /// gradient `g`: `(f'(d)/n)·g` for the regressions, `(σ(o)(p·t + 1 − t)
    /// − p·t)·(g/n)` for BCE.
    #[inline]
    fn gradient(self, o: f32, t: f32, p: f32, n: f32, g: f32) -> f32 {
        let d = o - t;
        match self {
            Pointwise::Bce => (sigmoid(o) * (p * t + 1.0 - t) - p * t) * (g / n),
            Pointwise::Mse => (2.0 * d / n) * g,
            Pointwise::L1 => {
                let sign = if d > 0.0 {
                    1.0
                } else if d < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                (sign / n) * g
            }
            Pointwise::Huber(delta) => (d.clamp(-delta, delta) / n) * g,
        }
    }

    /// The count the mean divides by: the regressions never divide by 0.
    fn count(self, len: usize) -> f32 {
        match self {
            Pointwise::Bce => len as f32,
            _ => len.max(1) as f32,
        }
    }
}

/// `out[0] = Σ loss / n` over every element, summed in index order from
/// zero; `pos_weight` (BCE only) repeats along the last dimension.
pub fn pointwise_loss(
    loss: Pointwise,
    output: &[f32],
    target: &[f32],
    pos_weight: Option<&[f32]>,
    out: &mut [f32],
) {
    let p = |i: usize| pos_weight.map_or(1.0, |w| w[i % w.len()]);
    let total = output
        .iter()
        .zip(target)
        .enumerate()
        .fold(0.0f32, |s, (i, (&o, &t))| s + loss.value(o, t, p(i)));
    out[0] = total / loss.count(output.len());
}

/// The outputs' gradient of [`pointwise_loss`] for the output gradient `g`.
pub fn pointwise_loss_grad(
    loss: Pointwise,
    g: f32,
    output: &[f32],
    target: &[f32],
    pos_weight: Option<&[f32]>,
    dx: &mut [f32],
) {
    let n = loss.count(output.len());
    for_each_chunk_mut(dx, CHUNK, |c, chunk| {
        for (j, d) in chunk.iter_mut().enumerate() {
            let i = c * CHUNK + j;
            let p = pos_weight.map_or(1.0, |w| w[i % w.len()]);
            *d = loss.gradient(output[i], target[i], p, n, g);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_of_uniform_logits_is_log_c_and_its_gradient_points_at_the_target() {
        let ce = CrossEntropy {
            batch: 2,
            classes: 4,
            inner: 1,
            label_smoothing: 0.0,
        };
        let logits = [0.0f32; 8];
        let mut out = [0.0; 2];
        cross_entropy(&ce, &logits, &[1.0, 3.0], None, &mut out);
        assert!((out[0] - 2.0 * 4f32.ln()).abs() < 1e-6);
        assert_eq!(out[1], 2.0);
        let mut dx = [0.0; 8];
        cross_entropy_grad(&ce, 0.5, &logits, &[1.0, 3.0], None, &mut dx);
        assert_eq!(
            dx,
            [0.125, -0.375, 0.125, 0.125, 0.125, 0.125, 0.125, -0.375]
        );
    }

    #[test]
    fn a_target_that_is_no_class_gives_nan_not_a_panic() {
        let ce = CrossEntropy {
            batch: 1,
            classes: 2,
            inner: 2,
            label_smoothing: 0.1,
        };
        let mut out = [0.0; 2];
        for bad in [2.0, -1.0, 0.5, f32::NAN, 1e30] {
            cross_entropy(&ce, &[0.0; 4], &[0.0, bad], Some(&[1.0, 2.0]), &mut out);
            assert!(out[0].is_nan() && out[1].is_nan(), "{bad}");
            let mut dx = [0.0; 4];
            cross_entropy_grad(&ce, 1.0, &[0.0; 4], &[0.0, bad], None, &mut dx);
            assert!(
                dx[0].is_finite() && dx[1].is_nan() && dx[3].is_nan(),
                "{dx:?}"
            );
        }
    }

    #[test]
    fn pointwise_losses_take_the_mean_and_their_gradients_scale_by_g() {
        let (o, t) = ([1.0f32, -2.0, 0.5], [0.0f32, 1.0, 0.5]);
        let mut out = [f32::NAN];
        pointwise_loss(Pointwise::Mse, &o, &t, None, &mut out);
        assert_eq!(out[0], (1.0 + 9.0 + 0.0) / 3.0);
        pointwise_loss(Pointwise::Huber(1.0), &o, &t, None, &mut out);
        assert_eq!(out[0], (0.5 + 2.5 + 0.0) / 3.0);
        let mut dx = [f32::NAN; 3];
        pointwise_loss_grad(Pointwise::L1, 3.0, &o, &t, None, &mut dx);
        assert_eq!(dx, [1.0, -1.0, 0.0]);
        // BCE of logit 0: ln 2 whatever the target; positive weights scale
        // the positive term.
        pointwise_loss(
            Pointwise::Bce,
            &[0.0, 0.0],
            &[1.0, 0.0],
            Some(&[2.0, 5.0]),
            &mut out,
        );
        assert!((out[0] - 1.5 * 2f32.ln()).abs() < 1e-6, "{out:?}");
        let mut dx = [f32::NAN; 2];
        pointwise_loss_grad(
            Pointwise::Bce,
            1.0,
            &[0.0, 0.0],
            &[1.0, 0.0],
            Some(&[2.0, 5.0]),
            &mut dx,
        );
        assert_eq!(dx, [-0.5, 0.25]);
    }
}
