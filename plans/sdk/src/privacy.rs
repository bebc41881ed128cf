//! DP-SGD (local differential privacy): what `dp_clip` and `dp_sigma` in
//! `optimizer_args` turn on, and what the node passes for
//! `dp_args = {type = "local", …}`.
//!
//! For each batch of B rows: every row's gradient is computed on its own and
//! scaled down to L2 norm at most `clip`, the clipped gradients are summed,
//! Gaussian noise of standard deviation `sigma·clip` is added to every
//! coordinate of the sum (drawn from the host's random stream, which the
//! node keys with its private noise key), and the sum is divided by B. The
//! optimizer then steps with that gradient, after Scaffold's correction and
//! FedProx's term, which depend on no row. This is Abadi et al.'s algorithm
//! as Opacus implements it.

use ndarray::{Array2, s};

use crate::args::Args;
use crate::error::{PlanResult, invalid_argument};
use crate::layers::Sequential;
use crate::loss::Loss;
use crate::random;

/// Per-sample clipping bound and noise multiplier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpSgd {
    /// Largest L2 norm of one row's gradient.
    pub clip: f32,
    /// Noise standard deviation in units of `clip`.
    pub sigma: f32,
}

impl DpSgd {
    /// From `dp_clip` / `dp_sigma` in optimizer arguments; `None` when
    /// `dp_clip` is 0 or the plan does not declare the keys.
    pub fn from_args(args: &Args) -> PlanResult<Option<Self>> {
        let (Ok(clip), Ok(sigma)) = (args.number("dp_clip"), args.number("dp_sigma")) else {
            return Ok(None);
        };
        if clip == 0.0 {
            return Ok(None);
        }
        if !(clip.is_finite() && clip > 0.0 && sigma.is_finite() && sigma >= 0.0) {
            return Err(invalid_argument(format!(
                "dp_clip must be > 0 and dp_sigma ≥ 0, got {clip} and {sigma}"
            )));
        }
        Ok(Some(DpSgd { clip, sigma }))
    }

    /// Call `visit` with every row's clipped gradient, in row order; returns
    /// the mean loss of the rows. Leaves the model's gradients of the last row.
    pub fn for_each_clipped(
        &self,
        model: &mut Sequential,
        loss: Loss,
        x: &Array2<f32>,
        targets: &[f32],
        mut visit: impl FnMut(&[Vec<f32>]),
    ) -> PlanResult<f32> {
        let mut total = 0.0f64;
        let mut grads: Vec<Vec<f32>> = Vec::new();
        for row in 0..x.nrows() {
            model.zero_grad();
            let output = model.forward(x.slice(s![row..row + 1, ..]).to_owned())?;
            let (value, grad) = loss.forward_backward(&output, &targets[row..row + 1])?;
            model.backward(grad)?;
            total += f64::from(value);
            grads.clear();
            grads.extend(model.gradients().into_iter().map(<[f32]>::to_vec));
            let norm = libm::sqrtf(grads.iter().flatten().map(|g| g * g).sum::<f32>());
            if norm > self.clip {
                let scale = self.clip / norm;
                grads.iter_mut().flatten().for_each(|g| *g *= scale);
            }
            visit(&grads);
        }
        Ok((total / x.nrows().max(1) as f64) as f32)
    }

    /// Leave the private gradient of the batch in the model's gradients:
    /// the sum of clipped per-row gradients plus noise, divided by the rows.
    /// Returns the mean loss.
    pub fn private_gradient(
        &self,
        model: &mut Sequential,
        loss: Loss,
        x: &Array2<f32>,
        targets: &[f32],
    ) -> PlanResult<f32> {
        let mut sum: Vec<Vec<f32>> = model
            .gradients()
            .iter()
            .map(|g| vec![0.0; g.len()])
            .collect();
        let mean_loss = self.for_each_clipped(model, loss, x, targets, |grads| {
            for (acc, g) in sum.iter_mut().zip(grads) {
                acc.iter_mut().zip(g).for_each(|(a, v)| *a += v);
            }
        })?;
        let std = self.sigma * self.clip;
        let rows = x.nrows().max(1) as f32;
        for (acc, grad) in sum.iter().zip(model.gradients_mut()) {
            let noise = if std > 0.0 {
                random::normal(acc.len())
            } else {
                vec![0.0; acc.len()]
            };
            for ((g, a), n) in grad.iter_mut().zip(acc).zip(noise) {
                *g = (a + std * n) / rows;
            }
        }
        Ok(mean_loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Activation, Linear};

    fn model() -> Sequential {
        random::seed_native([4; 32]);
        Sequential::new()
            .linear(Linear::uniform("fc1", 3, 4))
            .activation(Activation::Tanh)
            .linear(Linear::uniform("fc2", 4, 3))
    }

    /// Rows of very different scales, so some gradients are far above the bound.
    fn batch() -> (Array2<f32>, Vec<f32>) {
        let x = Array2::from_shape_vec(
            (4, 3),
            vec![
                0.1, -0.2, 0.3, 50.0, -80.0, 20.0, 0.0, 0.0, 0.0, -5.0, 9.0, 2.0,
            ],
        )
        .unwrap();
        (x, vec![0.0, 2.0, 1.0, 2.0])
    }

    #[test]
    fn every_clipped_gradient_is_within_the_bound() {
        let mut m = model();
        let (x, t) = batch();
        let dp = DpSgd {
            clip: 0.05,
            sigma: 0.0,
        };
        let mut norms = Vec::new();
        dp.for_each_clipped(&mut m, Loss::SoftmaxCrossEntropy, &x, &t, |g| {
            norms.push(libm::sqrtf(g.iter().flatten().map(|v| v * v).sum::<f32>()));
        })
        .unwrap();
        assert_eq!(norms.len(), 4);
        assert!(norms.iter().all(|n| *n <= 0.05 * (1.0 + 1e-5)), "{norms:?}");
        assert!(
            norms.iter().any(|n| *n > 0.049),
            "some row must hit the bound: {norms:?}"
        );
    }

    #[test]
    fn without_clipping_or_noise_it_is_the_batch_gradient() {
        let (x, t) = batch();
        let mut plain = model();
        plain.zero_grad();
        let out = plain.forward(x.clone()).unwrap();
        let (loss, grad) = Loss::SoftmaxCrossEntropy
            .forward_backward(&out, &t)
            .unwrap();
        plain.backward(grad).unwrap();
        let mut private = model();
        let dp = DpSgd {
            clip: 1e30,
            sigma: 0.0,
        };
        let mean = dp
            .private_gradient(&mut private, Loss::SoftmaxCrossEntropy, &x, &t)
            .unwrap();
        assert!(
            (mean - loss).abs() < 1e-4 * loss.abs().max(1.0),
            "{mean} vs {loss}"
        );
        for (a, b) in plain.gradients().iter().zip(private.gradients()) {
            for (u, v) in a.iter().zip(b) {
                assert!((u - v).abs() < 1e-5, "{u} vs {v}");
            }
        }
    }

    #[test]
    fn noise_has_std_sigma_clip_over_rows() {
        // Zero inputs, outputs and targets: every gradient is 0, what is left is noise.
        let mut m = Sequential::new().linear(Linear::zeros("fc", 4000, 1));
        let x = Array2::zeros((2, 4000));
        random::seed_native([9; 32]);
        let dp = DpSgd {
            clip: 0.5,
            sigma: 8.0,
        };
        dp.private_gradient(&mut m, Loss::MeanSquaredError, &x, &[0.0, 0.0])
            .unwrap();
        let values: Vec<f32> = m.gradients().into_iter().flatten().copied().collect();
        let n = values.len() as f32;
        let mean = values.iter().sum::<f32>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        // σ·clip / rows = 8 · 0.5 / 2 = 2.
        assert!((var.sqrt() - 2.0).abs() < 0.1, "std {}", var.sqrt());
        assert!(mean.abs() < 0.1, "mean {mean}");
    }

    #[test]
    fn arguments() {
        let specs = crate::optim::OPTIMIZER_ARGS;
        let parse =
            |json: &str| DpSgd::from_args(&Args::parse("optimizer_args", json, specs).unwrap());
        assert_eq!(parse("{}").unwrap(), None);
        assert_eq!(
            parse(r#"{"dp_clip": 0.5, "dp_sigma": 1.1}"#).unwrap(),
            Some(DpSgd {
                clip: 0.5,
                sigma: 1.1
            })
        );
        assert!(parse(r#"{"dp_clip": -1.0, "dp_sigma": 1.0}"#).is_err());
    }
}
