//! Batch normalization over `[N, C, …]`: statistics per channel over the
//! batch, the normalized and scaled output, and the gradients.
//!
//! Sums run in f64 over each channel's planes in index order, in four
//! interleaved lanes added in a fixed order, exactly as the plan SDK summed
//! them; channels (and planes) are split over threads, never one sum. The
//! normalized input `x̂ = (x − μ)·σ⁻¹` is recomputed where a gradient needs
//! it (the same bits as keeping it, and no memory).

use crate::parallel::for_each_chunk_mut;

/// The layout of a batch normalization's input: `[batch, channels, spatial…]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchNorm {
    /// Samples.
    pub batch: usize,
    /// Channels (normalized separately).
    pub channels: usize,
    /// Values per sample and channel (H·W, L, or 1).
    pub spatial: usize,
}

impl BatchNorm {
    /// Values of the input, or `None` when it overflows.
    pub fn len(&self) -> Option<usize> {
        self.batch
            .checked_mul(self.channels)?
            .checked_mul(self.spatial)
    }

    /// Whether the input is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Values per channel.
    fn per_channel(&self) -> usize {
        self.batch * self.spatial
    }

    /// The planes of channel `ch`, in sample order.
    fn planes<'a>(&self, x: &'a [f32], ch: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (c, l) = (self.channels, self.spatial);
        (0..self.batch).map(move |s| &x[(s * c + ch) * l..(s * c + ch + 1) * l])
    }
}

/// Σ f(v) over every value of `planes`, in f64, four interleaved lanes
/// added in a fixed order.
fn lane_sum<'a>(planes: impl Iterator<Item = &'a [f32]>, f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; 4];
    for plane in planes {
        let mut chunks = plane.chunks_exact(4);
        for q in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(q) {
                *a += f(v as f64);
            }
        }
        for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
            *a += f(v as f64);
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// Per channel: mean, σ⁻¹ = 1/√(var + eps) (the biased variance) and the
/// unbiased variance, as `[mean; C] ++ [σ⁻¹; C] ++ [var; C]`.
pub fn batch_norm_stats(bn: &BatchNorm, x: &[f32], eps: f32, out: &mut [f32]) {
    let (c, m) = (bn.channels, bn.per_channel());
    let mut each = vec![[0.0f32; 3]; c];
    for_each_chunk_mut(&mut each, 1, |ch, slot| {
        let mu = lane_sum(bn.planes(x, ch), |v| v) / m as f64;
        let sq = lane_sum(bn.planes(x, ch), |v| (v - mu) * (v - mu));
        let var = sq / m as f64;
        slot[0] = [
            mu as f32,
            (1.0 / (var + eps as f64).sqrt()) as f32,
            (sq / (m.max(2) - 1) as f64) as f32,
        ];
    });
    for (ch, [mean, inv, unbiased]) in each.into_iter().enumerate() {
        out[ch] = mean;
        out[c + ch] = inv;
        out[2 * c + ch] = unbiased;
    }
}

/// `out = x̂·γ + β` per channel, from `stats` (`[mean; C] ++ [σ⁻¹; C] ++ …`).
pub fn batch_norm_apply(
    bn: &BatchNorm,
    x: &[f32],
    stats: &[f32],
    gamma: &[f32],
    beta: &[f32],
    out: &mut [f32],
) {
    let (c, l) = (bn.channels, bn.spatial);
    for_each_chunk_mut(out, l.max(1), |p, dst| {
        let ch = p % c;
        let (mu, inv, ga, be) = (stats[ch], stats[c + ch], gamma[ch], beta[ch]);
        for (o, &v) in dst.iter_mut().zip(&x[p * l..]) {
            let h = (v - mu) * inv;
            *o = h * ga + be;
        }
    });
}

/// Per channel, Σ g·x̂ and Σ g over `ranges` of one channel, in f64.
fn affine_sums<'a>(
    planes: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    mu: f32,
    inv: f32,
) -> (f64, f64) {
    let (mut gx, mut gs) = ([0.0f64; 4], [0.0f64; 4]);
    for (gr, xr) in planes {
        let mut chunks = gr.chunks_exact(4).zip(xr.chunks_exact(4));
        for (gq, xq) in &mut chunks {
            for k in 0..4 {
                gx[k] += (gq[k] * ((xq[k] - mu) * inv)) as f64;
                gs[k] += gq[k] as f64;
            }
        }
        let tail = gr.len() / 4 * 4;
        for (k, (&gi, &xi)) in gr[tail..].iter().zip(&xr[tail..]).enumerate() {
            gx[k] += (gi * ((xi - mu) * inv)) as f64;
            gs[k] += gi as f64;
        }
    }
    (
        (gx[0] + gx[1]) + (gx[2] + gx[3]),
        (gs[0] + gs[1]) + (gs[2] + gs[3]),
    )
}

/// Per channel (Σ g·x̂, Σ g) over the whole batch, in f64.
fn channel_affine_sums(bn: &BatchNorm, x: &[f32], stats: &[f32], g: &[f32]) -> Vec<(f64, f64)> {
    let c = bn.channels;
    let mut sums = vec![(0.0f64, 0.0f64); c];
    for_each_chunk_mut(&mut sums, 1, |ch, slot| {
        let planes = bn.planes(g, ch).zip(bn.planes(x, ch));
        slot[0] = affine_sums(planes, stats[ch], stats[c + ch]);
    });
    sums
}

/// The affine parameters' gradients: `[Σ g·x̂; C] ++ [Σ g; C]`.
pub fn batch_norm_affine_grads(
    bn: &BatchNorm,
    x: &[f32],
    stats: &[f32],
    g: &[f32],
    out: &mut [f32],
) {
    let c = bn.channels;
    for (ch, (gx, gs)) in channel_affine_sums(bn, x, stats, g).into_iter().enumerate() {
        out[ch] = gx as f32;
        out[c + ch] = gs as f32;
    }
}

/// The input gradient `σ⁻¹·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂))` in training
/// (batch statistics), `σ⁻¹·g·γ` in evaluation (running ones).
pub fn batch_norm_input_grad(
    bn: &BatchNorm,
    training: bool,
    x: &[f32],
    stats: &[f32],
    gamma: &[f32],
    g: &[f32],
    dx: &mut [f32],
) {
    let (c, l, m) = (bn.channels, bn.spatial, bn.per_channel());
    let means: Vec<(f32, f32)> = if training {
        channel_affine_sums(bn, x, stats, g)
            .into_iter()
            .zip(gamma)
            .map(|((sgx, sg), &ga)| {
                (
                    (ga as f64 * sg / m as f64) as f32,
                    (ga as f64 * sgx / m as f64) as f32,
                )
            })
            .collect()
    } else {
        vec![(0.0, 0.0); c]
    };
    for_each_chunk_mut(dx, l.max(1), |p, dst| {
        let ch = p % c;
        let (mu, inv, ga) = (stats[ch], stats[c + ch], gamma[ch]);
        let (mean_d, mean_dx) = means[ch];
        let (gp, xp) = (&g[p * l..], &x[p * l..]);
        for ((o, &gi), &v) in dst.iter_mut().zip(gp).zip(xp) {
            let xi = (v - mu) * inv;
            *o = inv * (gi * ga - mean_d - xi * mean_dx);
        }
    });
}
