//! Softmax and log-softmax along one dimension, and their gradients.
//!
//! Each lane (an `[outer, ·, inner]` position) is shifted by its maximum so
//! that no exponential overflows; its sums start from zero and run in index
//! order. Lanes are independent, so they are split over threads by rows of
//! `outer`.

use crate::parallel::for_each_chunk_mut;
use crate::reduce::Axis;

/// log Σ exp over the lane of `len` values spaced `inner` apart from `x[0]`.
fn log_sum_exp(x: &[f32], len: usize, inner: usize) -> f32 {
    let max = (0..len).fold(f32::NEG_INFINITY, |m, k| m.max(x[k * inner]));
    if max == f32::NEG_INFINITY {
        return max;
    }
    let sum = (0..len).fold(0.0f32, |s, k| s + libm::expf(x[k * inner] - max));
    max + libm::logf(sum)
}

/// Apply `lane(x_row, out_row, i)` to every lane, rows of `outer` split
/// over threads.
fn each_lane(axis: &Axis, out: &mut [f32], lane: impl Fn(usize, &mut [f32], usize) + Sync + Send) {
    let row = axis.size * axis.inner;
    if row == 0 {
        return;
    }
    for_each_chunk_mut(out, row, |o, out_row| {
        for i in 0..axis.inner {
            lane(o, out_row, i);
        }
    });
}

/// `out = exp(x − lse)` (softmax) or `x − lse` (log-softmax) along the axis.
pub fn softmax(axis: &Axis, log: bool, x: &[f32], out: &mut [f32]) {
    let (len, inner) = (axis.size, axis.inner);
    let row = len * inner;
    each_lane(axis, out, |o, out_row, i| {
        let x = &x[o * row + i..];
        let lse = log_sum_exp(x, len, inner);
        for k in 0..len {
            let v = x[k * inner] - lse;
            out_row[i + k * inner] = if log { v } else { libm::expf(v) };
        }
    });
}

/// The input gradient of [`softmax`] from its input `x` and the output
/// gradient `g`: `g − softmax·Σg` for log-softmax, `y·(g − Σ g·y)` for
/// softmax. The output `y` is recomputed lane by lane (the same bits as
/// keeping it, and no memory held between the passes).
pub fn softmax_grad(axis: &Axis, log: bool, x: &[f32], g: &[f32], dx: &mut [f32]) {
    let (len, inner) = (axis.size, axis.inner);
    let row = len * inner;
    each_lane(axis, dx, |o, dx_row, i| {
        let at = |k: usize| o * row + i + k * inner;
        let lse = log_sum_exp(&x[at(0)..], len, inner);
        // Softmax's value at k, as `softmax` gives it (its exponential for
        // log-softmax's output).
        let p = |k: usize| libm::expf(x[at(k)] - lse);
        if log {
            let total = (0..len).fold(0.0f32, |s, k| s + g[at(k)]);
            for k in 0..len {
                dx_row[i + k * inner] = g[at(k)] - p(k) * total;
            }
        } else {
            let dot = (0..len).fold(0.0f32, |s, k| s + g[at(k)] * p(k));
            for k in 0..len {
                dx_row[i + k * inner] = p(k) * (g[at(k)] - dot);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_sum_to_one_and_their_gradients_keep_the_sum() {
        let axis = Axis {
            outer: 3,
            size: 4,
            inner: 2,
        };
        let x: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        let mut y = vec![0.0; 24];
        softmax(&axis, false, &x, &mut y);
        for o in 0..3 {
            for i in 0..2 {
                let s: f32 = (0..4).map(|k| y[o * 8 + k * 2 + i]).sum();
                assert!((s - 1.0).abs() < 1e-6);
            }
        }
        let mut logy = vec![0.0; 24];
        softmax(&axis, true, &x, &mut logy);
        for (a, b) in y.iter().zip(&logy) {
            assert!((a.ln() - b).abs() < 1e-5);
        }
        // Log-softmax's input gradient sums to zero over each lane.
        let g: Vec<f32> = (0..24).map(|i| (i % 5) as f32 - 2.0).collect();
        let mut dx = vec![f32::NAN; 24];
        softmax_grad(&axis, true, &x, &g, &mut dx);
        for o in 0..3 {
            for i in 0..2 {
                let s: f32 = (0..4).map(|k| dx[o * 8 + k * 2 + i]).sum();
                assert!(s.abs() < 1e-5, "{dx:?}");
            }
        }
        // The same gradient on every member of a lane moves no softmax.
        let g = vec![1.5f32; 24];
        softmax_grad(&axis, false, &x, &g, &mut dx);
        assert!(dx.iter().all(|d| d.abs() < 1e-5), "{dx:?}");
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let axis = Axis {
            outer: 1,
            size: 2,
            inner: 1,
        };
        let mut out = vec![0.0; 2];
        softmax(&axis, false, &[1000.0, 0.0], &mut out);
        assert_eq!(out, [1.0, 0.0]);
        softmax(&axis, true, &[1000.0, 0.0], &mut out);
        assert_eq!(out, [0.0, -1000.0]);
    }
}
