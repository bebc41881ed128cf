//! Batch normalization (statistics per channel over the batch) and layer
//! normalization (statistics per sample over the last dimensions), with
//! optional affine weight and bias, on the kernels (layer normalization
//! where its input is). Means and variances are summed in f64, in index
//! order.
//!
//! In training, batch normalization mixes the samples of a batch, so it
//! cannot give the per-sample gradients DP-SGD needs and says so (as Opacus
//! does); in evaluation it is a per-channel affine map and can.

use fedwasm_kernels::{BatchNorm, LayerNorm, Op};

use crate::backend;
use crate::error::{PlanResult, invalid_state};
use crate::tensor::{HostGrad, Need, Tensor};

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

/// `[mean; C] ++ [σ⁻¹; C] ++ …` for the batch: the batch's own (on the
/// host), which also move the running averages, in training; the running
/// ones in evaluation.
fn batch_statistics(x: &Tensor, bn: BatchNorm, args: &BatchNormArgs<'_>) -> PlanResult<Tensor> {
    let c = bn.channels;
    if args.training {
        let op = Op::BatchNormStats { bn, eps: args.eps };
        let stats = Tensor::from_values(backend::run(op, &[x])?, &[3 * c]);
        {
            let s = stats.values();
            let mut rm = args.running_mean.values_mut();
            let mut rv = args.running_var.values_mut();
            for ch in 0..c {
                rm[ch] = (1.0 - args.momentum) * rm[ch] + args.momentum * s[ch];
                rv[ch] = (1.0 - args.momentum) * rv[ch] + args.momentum * s[2 * c + ch];
            }
        }
        return Ok(stats);
    }
    let (rm, rv) = (args.running_mean.values(), args.running_var.values());
    let mut stats = vec![0.0f32; 3 * c];
    for ch in 0..c {
        stats[ch] = rm[ch];
        stats[c + ch] = 1.0 / libm::sqrtf(rv[ch].max(0.0) + args.eps);
    }
    Tensor::new(stats, &[3 * c])
}

/// Each sample's gradient of the weight (`which` 0: Σ g·x̂) or the bias
/// (1: Σ g), `[N, C]`, computed in the plan (DP-SGD in evaluation mode).
fn per_sample_affine(bn: BatchNorm, x: &[f32], stats: &[f32], g: &[f32], which: usize) -> Vec<f32> {
    let (n, c, l) = (bn.batch, bn.channels, bn.spatial);
    let mut d = vec![0.0f32; n * c];
    for s in 0..n {
        for ch in 0..c {
            let r = (s * c + ch) * l..(s * c + ch + 1) * l;
            let (mu, inv) = (stats[ch], stats[c + ch]);
            let xhat: Vec<f32> = x[r.clone()].iter().map(|&v| (v - mu) * inv).collect();
            let (gx, gs) = affine_sums(&g[r.clone()], &xhat, std::iter::once(0..r.len()));
            d[s * c + ch] = (if which == 0 { gx } else { gs }) as f32;
        }
    }
    d
}

/// Append the gradients of the optional affine weight (`which` 0) and bias
/// (1), whose needs follow the input's in `need`.
fn push_affine<G>(
    grads: &mut Vec<Option<G>>,
    need: &[Need],
    has_weight: bool,
    has_bias: bool,
    affine: impl Fn(usize, Need) -> PlanResult<Option<G>>,
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
        let bn = BatchNorm {
            batch: n,
            channels: c,
            spatial,
        };
        let stats = batch_statistics(self, bn, &args)?;
        let gamma = args
            .weight
            .cloned()
            .unwrap_or_else(|| Tensor::full(&[c], 1.0));
        let beta = args.bias.cloned().unwrap_or_else(|| Tensor::zeros(&[c]));
        let out = backend::run(Op::BatchNormApply(bn), &[self, &stats, &gamma, &beta])?;
        let training = args.training;
        let mut inputs = vec![self];
        inputs.extend(args.weight);
        inputs.extend(args.bias);
        let (has_weight, has_bias) = (args.weight.is_some(), args.bias.is_some());
        let x = self.clone();
        Tensor::from_buf("batch_norm", out, &shape, &inputs, move |g, need| {
            if training && need.iter().any(|n| matches!(n, Need::PerSample(_))) {
                return Err(invalid_state(
                    "DP-SGD needs each sample's gradient, and BatchNorm in training mixes the \
                     samples of a batch; use LayerNorm, or a model without batch normalization",
                ));
            }
            let mut grads = Vec::with_capacity(need.len());
            grads.push(if need[0] == Need::Sum {
                let op = Op::BatchNormInputGrad { bn, training };
                let dx = backend::run(op, &[&x, &stats, &gamma, g])?;
                Some(HostGrad::Sum(Tensor::from_values(dx, x.shape())))
            } else {
                None
            });
            // [Σ g·x̂; C] ++ [Σ g; C]: the weight's and the bias's gradients.
            let sums = if need[1..].contains(&Need::Sum) {
                let op = Op::BatchNormAffineGrads(bn);
                let both = backend::run(op, &[&x, &stats, g])?;
                Tensor::from_values(both, &[2 * c]).to_vec()
            } else {
                Vec::new()
            };
            let affine = |which: usize, n_need: Need| -> PlanResult<Option<HostGrad>> {
                Ok(match n_need {
                    // Asked only of ghost operations (the linear map).
                    Need::SampleSquares(_) | Need::Clipped(_) => None,
                    Need::Nothing => None,
                    Need::Sum => Some(HostGrad::Sum(Tensor::new(
                        sums[which * c..(which + 1) * c].to_vec(),
                        &[c],
                    )?)),
                    Need::PerSample(batch) => {
                        per_sample_stride(&[n], batch, "batch_norm")?;
                        let d =
                            per_sample_affine(bn, &x.values(), &stats.values(), &g.values(), which);
                        Some(HostGrad::PerSample(Tensor::new(d, &[n, c])?))
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
        let ln = LayerNorm { groups, d };
        let stats = Tensor::from_values(
            backend::run_near(Op::LayerNormStats { ln, eps }, &[self])?,
            &[2 * groups],
        );
        let gamma = weight.cloned().unwrap_or_else(|| Tensor::full(&[d], 1.0));
        let beta = bias.cloned().unwrap_or_else(|| Tensor::zeros(&[d]));
        let out = backend::run_near(Op::LayerNormApply(ln), &[self, &stats, &gamma, &beta])?;
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        let (has_weight, has_bias) = (weight.is_some(), bias.is_some());
        let x = self.clone();
        let normalized = normalized.to_vec();
        Tensor::from_buf("layer_norm", out, &shape, &inputs, move |g, need| {
            let mut grads = Vec::with_capacity(need.len());
            grads.push(if need[0] == Need::Sum {
                let op = Op::LayerNormInputGrad(ln);
                let dx = backend::run_near(op, &[&x, &stats, &gamma, g])?;
                Some(HostGrad::Sum(Tensor::from_values(dx, x.shape())))
            } else {
                None
            });
            let affine = |which: usize, n_need: Need| -> PlanResult<Option<HostGrad>> {
                let samples = match n_need {
                    // Asked only of ghost operations (the linear map).
                    Need::SampleSquares(_) | Need::Clipped(_) | Need::Nothing => return Ok(None),
                    Need::Sum => 1,
                    Need::PerSample(batch) => {
                        per_sample_stride(x.shape(), batch, "layer_norm")?;
                        batch
                    }
                };
                // [weight's; samples·d] ++ [bias's; samples·d], on the host.
                let op = Op::LayerNormAffineGrads { ln, samples };
                let both = Tensor::from_values(
                    backend::run_near(op, &[&x, &stats, g])?,
                    &[2 * samples * d],
                );
                let part = Op::CatPart {
                    outer: 1,
                    inner: 2 * samples * d,
                    start: which * samples * d,
                    len: samples * d,
                };
                let mine = backend::run_near(part, &[&both])?;
                Ok(Some(if samples == 1 {
                    HostGrad::Sum(Tensor::from_values(mine, &normalized))
                } else {
                    HostGrad::PerSample(Tensor::from_values(mine, &[samples, d]))
                }))
            };
            push_affine(&mut grads, &need[1..], has_weight, has_bias, affine)?;
            Ok(grads)
        })
    }
}
