//! Softmax cross-entropy against class indices, fused with its softmax, as
//! PyTorch's `F.cross_entropy` (class weights, label smoothing, a class per
//! position for segmentation).
//!
//! The forward pass gives the two sums the mean is made of — the weighted
//! loss and the targets' weights — so the plan reads two values, not the
//! logits. The backward pass recomputes each position's softmax from the
//! logits (the same bits as keeping it). Positions run in index order with
//! one running sum each, as the plan SDK always did.

use crate::parallel::for_each_chunk_mut;

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
}
