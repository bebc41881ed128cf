//! DP-SGD (local differential privacy): what `dp_clip` and `dp_sigma` in
//! `optimizer_args` turn on, and what the node passes for
//! `dp_args = {type = "local", …}`.
//!
//! For each batch of B rows: every row's gradient is scaled down to L2 norm
//! at most `clip`, the clipped gradients are summed,
//! Gaussian noise of standard deviation `sigma·clip` is added to every
//! coordinate of the sum (drawn from the host's random stream, which the
//! node keys with its private noise key), and the sum is divided by B. The
//! optimizer then steps with that gradient, after Scaffold's correction and
//! FedProx's term, which depend on no row. This is Abadi et al.'s algorithm
//! as Opacus implements it.

use ndarray::Array2;

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

    /// Leave the private gradient of the batch in the model's gradients:
    /// the sum of every row's gradient clipped to `clip`, plus noise, divided
    /// by the rows. Returns the mean loss.
    ///
    /// Clipping costs one extra pass over the layers, not one backward pass
    /// per row: the rows' gradient norms come from
    /// [`Sequential::per_sample_gradient_norms`], each row of the loss
    /// gradient is scaled by its clipping factor, and one ordinary backward
    /// pass then sums the clipped gradients (backward is linear in the loss
    /// gradient).
    pub fn private_gradient(
        &self,
        model: &mut Sequential,
        loss: Loss,
        x: Array2<f32>,
        targets: &[f32],
    ) -> PlanResult<f32> {
        let rows = x.nrows().max(1) as f32;
        model.zero_grad();
        let output = model.forward(x)?;
        // The gradient of the mean loss: row r is ∂ℓ_r/∂output_r / rows.
        let (mean_loss, mut grad) = loss.forward_backward(&output, targets)?;
        let norms = model.per_sample_gradient_norms(&grad)?;
        for (mut row, norm) in grad.rows_mut().into_iter().zip(norms) {
            let own = norm * rows;
            if own > self.clip {
                let factor = self.clip / own;
                row.iter_mut().for_each(|g| *g *= factor);
            }
        }
        model.backward(grad)?;
        let std = self.sigma * self.clip;
        if std > 0.0 {
            for grad in model.gradients_mut() {
                let noise = random::normal(grad.len());
                for (g, n) in grad.iter_mut().zip(noise) {
                    *g += std * n / rows;
                }
            }
        }
        Ok(mean_loss)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::s;

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

    /// Each row's own gradient, by one backward pass per row (the slow way).
    fn row_gradients(x: &Array2<f32>, t: &[f32]) -> Vec<Vec<f32>> {
        let mut m = model();
        (0..x.nrows())
            .map(|r| {
                m.zero_grad();
                let out = m.forward(x.slice(s![r..r + 1, ..]).to_owned()).unwrap();
                let (_, g) = Loss::SoftmaxCrossEntropy
                    .forward_backward(&out, &t[r..r + 1])
                    .unwrap();
                m.backward(g).unwrap();
                m.gradients().into_iter().flatten().copied().collect()
            })
            .collect()
    }

    fn norm(v: &[f32]) -> f32 {
        libm::sqrtf(v.iter().map(|x| x * x).sum())
    }

    #[test]
    fn ghost_norms_equal_each_rows_gradient_norm() {
        let (x, t) = batch();
        let mut m = model();
        let out = m.forward(x.clone()).unwrap();
        let (_, g) = Loss::SoftmaxCrossEntropy
            .forward_backward(&out, &t)
            .unwrap();
        let ghost = m.per_sample_gradient_norms(&g).unwrap();
        for (r, row) in row_gradients(&x, &t).iter().enumerate() {
            // The batch gradient is the mean: each row's share is 1/4 of its own.
            let expected = norm(row);
            assert!(
                (ghost[r] * 4.0 - expected).abs() <= 1e-4 * expected.max(1.0),
                "row {r}: {} vs {expected}",
                ghost[r] * 4.0
            );
        }
    }

    #[test]
    fn every_sample_is_clipped_to_the_bound() {
        let (x, t) = batch();
        let clip = 0.05;
        let rows = row_gradients(&x, &t);
        let norms: Vec<f32> = rows.iter().map(|r| norm(r)).collect();
        assert!(
            norms.iter().filter(|n| **n > clip).count() >= 3,
            "{norms:?}"
        );
        // The reference: clip each row's gradient, then average.
        let clipped: Vec<Vec<f32>> = rows
            .iter()
            .map(|r| {
                let f = (clip / norm(r)).min(1.0);
                r.iter().map(|v| v * f).collect()
            })
            .collect();
        assert!(clipped.iter().all(|r| norm(r) <= clip * (1.0 + 1e-5)));
        let mean: Vec<f32> = (0..clipped[0].len())
            .map(|k| clipped.iter().map(|r| r[k]).sum::<f32>() / 4.0)
            .collect();
        let mut m = model();
        let dp = DpSgd { clip, sigma: 0.0 };
        dp.private_gradient(&mut m, Loss::SoftmaxCrossEntropy, x, &t)
            .unwrap();
        let got: Vec<f32> = m.gradients().into_iter().flatten().copied().collect();
        for (a, b) in got.iter().zip(&mean) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
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
            .private_gradient(&mut private, Loss::SoftmaxCrossEntropy, x, &t)
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
        dp.private_gradient(&mut m, Loss::MeanSquaredError, x, &[0.0, 0.0])
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
