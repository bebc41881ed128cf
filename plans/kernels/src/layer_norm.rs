//! Layer normalization: statistics per group (a sample's last dimensions,
//! `d` values), the output through a weight and bias of `d` values each,
//! and the gradients.
//!
//! Means and variances are summed in f64 in index order, and the backward
//! pass's two means likewise, exactly as the plan SDK always computed them;
//! groups are independent and split over threads. The weight's and bias's
//! gradients sum over groups, so they are split over the `d` columns, each
//! summed over the groups in order.

use crate::parallel::for_each_chunk_mut;

/// `groups` groups of `d` values each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerNorm {
    pub groups: usize,
    pub d: usize,
}

impl LayerNorm {
    /// The input's length, or `None` when it overflows.
    pub fn len(&self) -> Option<usize> {
        self.groups.checked_mul(self.d)
    }

    /// Whether there is nothing to normalize.
    pub fn is_empty(&self) -> bool {
        self.groups == 0 || self.d == 0
    }
}

/// Groups one task normalizes, at least.
const GROUPS_PER_TASK: usize = 16;

/// Apply `f(group, chunk)` to each group's `len` values of `out`, groups
/// split over threads.
fn each_group(out: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if len == 0 {
        return;
    }
    for_each_chunk_mut(out, len * GROUPS_PER_TASK, |c, chunk| {
        for (i, group) in chunk.chunks_exact_mut(len).enumerate() {
            f(c * GROUPS_PER_TASK + i, group);
        }
    });
}

/// `out = [mean; groups] ++ [1/√(var + eps); groups]`, the mean rounded to
/// f32 as the normalization uses it.
pub fn layer_norm_stats(ln: &LayerNorm, eps: f32, x: &[f32], out: &mut [f32]) {
    let (means, invstds) = out.split_at_mut(ln.groups);
    let d = ln.d;
    for (g, (m, s)) in means.iter_mut().zip(invstds.iter_mut()).enumerate() {
        let row = &x[g * d..(g + 1) * d];
        let mu = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row
            .iter()
            .map(|&v| (v as f64 - mu) * (v as f64 - mu))
            .sum::<f64>()
            / d as f64;
        *s = (1.0 / (var + eps as f64).sqrt()) as f32;
        *m = mu as f32;
    }
}

/// x̂ of group `g`'s value `v`.
#[inline]
fn normalized(stats: &[f32], groups: usize, g: usize, v: f32) -> f32 {
    (v - stats[g]) * stats[groups + g]
}

/// `out = x̂·weight + bias`.
pub fn layer_norm_apply(
    ln: &LayerNorm,
    x: &[f32],
    stats: &[f32],
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    each_group(out, ln.d, |g, row| {
        let src = &x[g * ln.d..(g + 1) * ln.d];
        for (((o, &v), w), b) in row.iter_mut().zip(src).zip(weight).zip(bias) {
            *o = normalized(stats, ln.groups, g, v) * w + b;
        }
    });
}

/// The input gradient from the output gradient `g`:
/// (1/σ)(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) within each group, dx̂ = g·weight.
pub fn layer_norm_input_grad(
    ln: &LayerNorm,
    x: &[f32],
    stats: &[f32],
    weight: &[f32],
    g: &[f32],
    dx: &mut [f32],
) {
    let d = ln.d;
    each_group(dx, d, |gi, row| {
        let r = gi * d..(gi + 1) * d;
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for ((&gv, &w), &v) in g[r.clone()].iter().zip(weight).zip(&x[r.clone()]) {
            let dh = gv * w;
            s1 += dh as f64;
            s2 += (dh * normalized(stats, ln.groups, gi, v)) as f64;
        }
        let (mean_d, mean_dx) = ((s1 / d as f64) as f32, (s2 / d as f64) as f32);
        let inv = stats[ln.groups + gi];
        for ((o, (&gv, &w)), &v) in row
            .iter_mut()
            .zip(g[r.clone()].iter().zip(weight))
            .zip(&x[r])
        {
            let xh = normalized(stats, ln.groups, gi, v);
            *o = inv * (gv * w - mean_d - xh * mean_dx);
        }
    });
}

/// `[Σ g·x̂; d] ++ [Σ g; d]` over the groups in order (the weight's and the
/// bias's gradients), or with `samples` > 1 each sample's own — its
/// `groups / samples` consecutive groups — as `[samples, d]` twice.
pub fn layer_norm_affine_grads(
    ln: &LayerNorm,
    samples: usize,
    x: &[f32],
    stats: &[f32],
    g: &[f32],
    out: &mut [f32],
) {
    let (weight, bias) = out.split_at_mut(out.len() / 2);
    let d = ln.d;
    let per = ln.groups / samples.max(1);
    weight.fill(0.0);
    bias.fill(0.0);
    for gi in 0..ln.groups {
        let at = (gi / per.max(1)) * d;
        for k in 0..d {
            let (gv, v) = (g[gi * d + k], x[gi * d + k]);
            weight[at + k] += gv * normalized(stats, ln.groups, gi, v);
            bias[at + k] += gv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_out_standardized_and_their_input_gradient_is_centred() {
        let ln = LayerNorm { groups: 3, d: 5 };
        let x: Vec<f32> = (0..15)
            .map(|i| (i as f32 * 0.7).sin() * 3.0 + i as f32)
            .collect();
        let mut stats = vec![0.0; 6];
        layer_norm_stats(&ln, 1e-5, &x, &mut stats);
        let (ones, zeros) = ([1.0f32; 5], [0.0f32; 5]);
        let mut y = vec![0.0; 15];
        layer_norm_apply(&ln, &x, &stats, &ones, &zeros, &mut y);
        for row in y.chunks(5) {
            let mean: f32 = row.iter().sum::<f32>() / 5.0;
            let var: f32 = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 5.0;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "{row:?}");
        }
        let g: Vec<f32> = (0..15).map(|i| (i % 4) as f32 - 1.5).collect();
        let mut dx = vec![f32::NAN; 15];
        layer_norm_input_grad(&ln, &x, &stats, &ones, &g, &mut dx);
        for row in dx.chunks(5) {
            assert!(row.iter().sum::<f32>().abs() < 1e-4, "{row:?}");
        }
        let mut sums = vec![f32::NAN; 10];
        layer_norm_affine_grads(&ln, 1, &x, &stats, &g, &mut sums);
        let bias: Vec<f32> = (0..5).map(|k| g[k] + g[5 + k] + g[10 + k]).collect();
        assert_eq!(&sums[5..], &bias[..]);
        let mut each = vec![f32::NAN; 30];
        layer_norm_affine_grads(&ln, 3, &x, &stats, &g, &mut each);
        assert_eq!(&each[15..20], &g[..5]);
    }
}
