//! Batch normalization (statistics per channel over the batch) and layer
//! normalization (statistics per sample over the last dimensions), with
//! optional affine weight and bias. Means and variances are summed in f64,
//! in index order.
//!
//! In training, batch normalization mixes the samples of a batch, so it
//! cannot give the per-sample gradients DP-SGD needs and says so (as Opacus
//! does); in evaluation it is a per-channel affine map and can.

use crate::error::{PlanResult, invalid_state};
use crate::tensor::{Grad, Need, Tensor};

use super::{per_sample_stride, shape_error};

/// What [`Tensor::batch_norm`] needs besides its input.
pub struct BatchNormArgs<'a> {
    /// Running mean per channel, updated in place in training.
    pub running_mean: &'a Tensor,
    /// Running (unbiased) variance per channel, updated in place in training.
    pub running_var: &'a Tensor,
    /// Scale per channel (γ), if affine.
    pub weight: Option<&'a Tensor>,
    /// Shift per channel (β), if affine.
    pub bias: Option<&'a Tensor>,
    /// Batch statistics (and running updates) when true, running statistics otherwise.
    pub training: bool,
    /// Weight of the new batch statistic in the running averages (PyTorch: 0.1).
    pub momentum: f32,
    /// Added to the variance (PyTorch: 1e-5).
    pub eps: f32,
}

/// The gradient of `x̂ = (x − μ)/σ` normalized over groups of `m` values,
/// given `dx̂`: (1/σ)(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) within each group.
fn normalized_backward(dxhat: &[f32], xhat: &[f32], m: usize) -> (f32, f32) {
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for (&d, &x) in dxhat.iter().zip(xhat) {
        s1 += d as f64;
        s2 += (d * x) as f64;
    }
    ((s1 / m as f64) as f32, (s2 / m as f64) as f32)
}

/// Σ f(v) over every value of `planes`, in f64, in four interleaved lanes
/// added in a fixed order: as reproducible as one running sum, and
/// vectorizable.
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

/// Append the gradients of the optional affine weight (`which` 0) and bias
/// (1), whose needs follow the input's in `need`.
fn push_affine(
    grads: &mut Vec<Option<Grad>>,
    need: &[Need],
    has_weight: bool,
    has_bias: bool,
    affine: impl Fn(usize, Need) -> PlanResult<Option<Grad>>,
) -> PlanResult<()> {
    let present = [(0, has_weight), (1, has_bias)];
    for ((which, _), &n) in present.iter().filter(|(_, has)| *has).zip(need) {
        grads.push(affine(*which, n)?);
    }
    Ok(())
}

/// Σ g·x̂ and Σ g over the given ranges (the affine parameters' gradients),
/// in f64, four interleaved lanes added in a fixed order.
fn affine_sums(
    g: &[f32],
    xhat: &[f32],
    ranges: impl Iterator<Item = std::ops::Range<usize>>,
) -> (f64, f64) {
    let (mut gx, mut gs) = ([0.0f64; 4], [0.0f64; 4]);
    for r in ranges {
        let (gr, xr) = (&g[r.clone()], &xhat[r]);
        let mut chunks = gr.chunks_exact(4).zip(xr.chunks_exact(4));
        for (gq, xq) in &mut chunks {
            for k in 0..4 {
                gx[k] += (gq[k] * xq[k]) as f64;
                gs[k] += gq[k] as f64;
            }
        }
        let tail = gr.len() / 4 * 4;
        for (k, (&gi, &xi)) in gr[tail..].iter().zip(&xr[tail..]).enumerate() {
            gx[k] += (gi * xi) as f64;
            gs[k] += gi as f64;
        }
    }
    (
        (gx[0] + gx[1]) + (gx[2] + gx[3]),
        (gs[0] + gs[1]) + (gs[2] + gs[3]),
    )
}

impl Tensor {
    /// Batch normalization over dimension 1 of `[N, C]`, `[N, C, L]` or
    /// `[N, C, H, W]`.
    pub fn batch_norm(&self, args: BatchNormArgs<'_>) -> PlanResult<Tensor> {
        let shape = self.shape().to_vec();
        if shape.len() < 2 {
            return Err(shape_error(
                "batch_norm",
                format!("needs [N, C, …], got {shape:?}"),
            ));
        }
        let (n, c) = (shape[0], shape[1]);
        let spatial: usize = shape[2..].iter().product();
        for (what, t) in [
            ("running_mean", Some(args.running_mean)),
            ("running_var", Some(args.running_var)),
            ("weight", args.weight),
            ("bias", args.bias),
        ] {
            if let Some(t) = t
                && t.shape() != [c]
            {
                return Err(shape_error(
                    "batch_norm",
                    format!("{what} must be [{c}], got {:?}", t.shape()),
                ));
            }
        }
        let m = n * spatial;
        if args.training && m < 2 {
            return Err(shape_error(
                "batch_norm",
                format!("training needs more than one value per channel, got input {shape:?}"),
            ));
        }
        let xv = self.values();
        let at = move |s: usize, ch: usize| (s * c + ch) * spatial;
        let mut mean = vec![0.0f32; c];
        let mut invstd = vec![0.0f32; c];
        if args.training {
            let mut rm = args.running_mean.values_mut();
            let mut rv = args.running_var.values_mut();
            for ch in 0..c {
                let planes = || (0..n).map(|s| &xv[at(s, ch)..at(s, ch) + spatial]);
                let mu = lane_sum(planes(), |v| v) / m as f64;
                let sq = lane_sum(planes(), |v| (v - mu) * (v - mu));
                let var = sq / m as f64;
                mean[ch] = mu as f32;
                invstd[ch] = (1.0 / (var + args.eps as f64).sqrt()) as f32;
                let unbiased = (sq / (m - 1) as f64) as f32;
                rm[ch] = (1.0 - args.momentum) * rm[ch] + args.momentum * mean[ch];
                rv[ch] = (1.0 - args.momentum) * rv[ch] + args.momentum * unbiased;
            }
        } else {
            let (rm, rv) = (args.running_mean.values(), args.running_var.values());
            for ch in 0..c {
                mean[ch] = rm[ch];
                invstd[ch] = 1.0 / libm::sqrtf(rv[ch].max(0.0) + args.eps);
            }
        }
        let gamma: Vec<f32> = args.weight.map_or(vec![1.0; c], |w| w.to_vec());
        let beta: Vec<f32> = args.bias.map_or(vec![0.0; c], |b| b.to_vec());
        // Written in index order, so the vectors are built without zeroing first.
        let mut xhat = Vec::with_capacity(xv.len());
        let mut out = Vec::with_capacity(xv.len());
        for s in 0..n {
            for ch in 0..c {
                let (mu, inv, ga, be) = (mean[ch], invstd[ch], gamma[ch], beta[ch]);
                let r = at(s, ch)..at(s, ch) + spatial;
                xhat.extend(xv[r.clone()].iter().map(|&v| (v - mu) * inv));
                out.extend(xhat[r].iter().map(|&h| h * ga + be));
            }
        }
        drop(xv);
        let training = args.training;
        let mut inputs = vec![self];
        inputs.extend(args.weight);
        inputs.extend(args.bias);
        let (has_weight, has_bias) = (args.weight.is_some(), args.bias.is_some());
        Tensor::from_op("batch_norm", out, &shape, &inputs, move |g, need| {
            if training && need.iter().any(|n| matches!(n, Need::PerSample(_))) {
                return Err(invalid_state(
                    "DP-SGD needs each sample's gradient, and BatchNorm in training mixes the \
                     samples of a batch; use LayerNorm, or a model without batch normalization",
                ));
            }
            let planes = |ch: usize| (0..n).map(move |s| at(s, ch)..at(s, ch) + spatial);
            // Σ g·x̂ and Σ g per channel: the affine gradients, and (times γ)
            // the two means the input gradient needs in training.
            let want_sums = (need[0] == Need::Sum && training) || need[1..].contains(&Need::Sum);
            let sums: Vec<(f64, f64)> = if want_sums {
                (0..c).map(|ch| affine_sums(g, &xhat, planes(ch))).collect()
            } else {
                Vec::new()
            };
            let mut grads = Vec::with_capacity(need.len());
            grads.push((need[0] == Need::Sum).then(|| {
                let mut dx = vec![0.0f32; g.len()];
                for ch in 0..c {
                    let (ga, inv) = (gamma[ch], invstd[ch]);
                    // mean(dx̂) and mean(dx̂·x̂) with dx̂ = g·γ (training only).
                    let (mean_d, mean_dx) = if training {
                        let (sgx, sg) = sums[ch];
                        (
                            (ga as f64 * sg / m as f64) as f32,
                            (ga as f64 * sgx / m as f64) as f32,
                        )
                    } else {
                        (0.0, 0.0)
                    };
                    for r in planes(ch) {
                        for ((o, &gi), &xi) in
                            dx[r.clone()].iter_mut().zip(&g[r.clone()]).zip(&xhat[r])
                        {
                            *o = inv * (gi * ga - mean_d - xi * mean_dx);
                        }
                    }
                }
                Grad::Sum(dx)
            }));
            let affine = |which: usize, n_need: Need| -> PlanResult<Option<Grad>> {
                let pick = |(gx, gs): (f64, f64)| (if which == 0 { gx } else { gs }) as f32;
                Ok(match n_need {
                    // Asked only of ghost operations (the linear map).
                    Need::SampleSquares(_) | Need::Clipped(_) => None,
                    Need::Nothing => None,
                    Need::Sum => Some(Grad::Sum(sums.iter().map(|&s| pick(s)).collect())),
                    Need::PerSample(batch) => {
                        per_sample_stride(&[n], batch, "batch_norm")?;
                        let mut d = vec![0.0f32; n * c];
                        for s in 0..n {
                            for ch in 0..c {
                                let r = at(s, ch)..at(s, ch) + spatial;
                                d[s * c + ch] = pick(affine_sums(g, &xhat, std::iter::once(r)));
                            }
                        }
                        Some(Grad::PerSample(d))
                    }
                })
            };
            push_affine(&mut grads, &need[1..], has_weight, has_bias, affine)?;
            Ok(grads)
        })
    }

    /// Layer normalization over the last dimensions, `normalized` being their
    /// shape; `weight` and `bias` (if any) have that shape.
    pub fn layer_norm(
        &self,
        normalized: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> PlanResult<Tensor> {
        let shape = self.shape().to_vec();
        if normalized.is_empty() || !shape.ends_with(normalized) {
            return Err(shape_error(
                "layer_norm",
                format!("input {shape:?} does not end in the normalized shape {normalized:?}"),
            ));
        }
        let d: usize = normalized.iter().product();
        for (what, t) in [("weight", weight), ("bias", bias)] {
            if let Some(t) = t
                && t.shape() != normalized
            {
                return Err(shape_error(
                    "layer_norm",
                    format!("{what} must be {normalized:?}, got {:?}", t.shape()),
                ));
            }
        }
        let groups = self.numel() / d.max(1);
        let xv = self.values();
        let mut xhat = vec![0.0f32; xv.len()];
        let mut invstd = vec![0.0f32; groups];
        for gi in 0..groups {
            let row = &xv[gi * d..(gi + 1) * d];
            let mu = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row
                .iter()
                .map(|&v| (v as f64 - mu) * (v as f64 - mu))
                .sum::<f64>()
                / d as f64;
            invstd[gi] = (1.0 / (var + eps as f64).sqrt()) as f32;
            let mu = mu as f32;
            for (o, &v) in xhat[gi * d..(gi + 1) * d].iter_mut().zip(row) {
                *o = (v - mu) * invstd[gi];
            }
        }
        drop(xv);
        let gamma: Vec<f32> = weight.map_or(vec![1.0; d], |w| w.to_vec());
        let beta: Vec<f32> = bias.map_or(vec![0.0; d], |b| b.to_vec());
        let mut out = xhat.clone();
        for row in out.chunks_exact_mut(d) {
            for ((v, g), b) in row.iter_mut().zip(&gamma).zip(&beta) {
                *v = *v * g + b;
            }
        }
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        let (has_weight, has_bias) = (weight.is_some(), bias.is_some());
        let out_shape = shape.clone();
        Tensor::from_op("layer_norm", out, &shape, &inputs, move |g, need| {
            let mut grads = Vec::with_capacity(need.len());
            grads.push((need[0] == Need::Sum).then(|| {
                let mut dx = vec![0.0f32; g.len()];
                for (gi, &inv) in invstd.iter().enumerate() {
                    let r = gi * d..(gi + 1) * d;
                    let dxhat: Vec<f32> = g[r.clone()]
                        .iter()
                        .zip(&gamma)
                        .map(|(a, b)| a * b)
                        .collect();
                    let (mean_d, mean_dx) = normalized_backward(&dxhat, &xhat[r.clone()], d);
                    for ((o, &dh), &xh) in dx[r.clone()].iter_mut().zip(&dxhat).zip(&xhat[r]) {
                        *o = inv * (dh - mean_d - xh * mean_dx);
                    }
                }
                Grad::Sum(dx)
            }));
            let affine = |which: usize, n_need: Need| -> PlanResult<Option<Grad>> {
                let term = |gv: f32, xh: f32| if which == 0 { gv * xh } else { gv };
                Ok(match n_need {
                    // Asked only of ghost operations (the linear map).
                    Need::SampleSquares(_) | Need::Clipped(_) => None,
                    Need::Nothing => None,
                    Need::Sum => {
                        let mut acc = vec![0.0f32; d];
                        for gi in 0..groups {
                            for (k, a) in acc.iter_mut().enumerate() {
                                *a += term(g[gi * d + k], xhat[gi * d + k]);
                            }
                        }
                        Some(Grad::Sum(acc))
                    }
                    Need::PerSample(batch) => {
                        let per = per_sample_stride(&out_shape, batch, "layer_norm")? / d;
                        let mut acc = vec![0.0f32; batch * d];
                        for gi in 0..groups {
                            let s = gi / per.max(1);
                            for k in 0..d {
                                acc[s * d + k] += term(g[gi * d + k], xhat[gi * d + k]);
                            }
                        }
                        Some(Grad::PerSample(acc))
                    }
                })
            };
            push_affine(&mut grads, &need[1..], has_weight, has_bias, affine)?;
            Ok(grads)
        })
    }
}
