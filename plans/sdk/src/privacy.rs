//! DP-SGD (local differential privacy): what `dp_clip` and `dp_sigma` in
//! `optimizer_args` turn on, and what the node passes for
//! `dp_args = {type = "local", …}`.
//!
//! For each batch of B samples: every sample's gradient (over all
//! parameters) is scaled down to L2 norm at most `clip`, the clipped
//! gradients are summed, Gaussian noise of standard deviation `sigma·clip`
//! is added to every coordinate of the sum (drawn from the host's random
//! stream, which the node keys with its private noise key), and the sum is
//! divided by B. The optimizer then steps with that gradient, after
//! Scaffold's correction and FedProx's term, which depend on no sample. This
//! is Abadi et al.'s algorithm as Opacus implements it.
//!
//! Per-sample gradients come from one backward pass in which every
//! operation that uses a parameter gives its per-sample contribution
//! ([`crate::tensor::Need::PerSample`]), for every layer of the SDK; the
//! loss must be the batch mean of per-sample losses (the SDK's losses are).
//! BatchNorm in training mixes samples and is refused.

use crate::args::Args;
use crate::backend;
use crate::error::{PlanResult, invalid_argument};
use crate::tensor::{Tensor, dp_backward};

/// Per-sample clipping bound and noise multiplier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpSgd {
    /// Largest L2 norm of one sample's gradient.
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

    /// Each sample's own gradient norm (of its loss, not its 1/B share), for
    /// a `loss` that is the mean over `batch` samples.
    pub fn sample_norms(loss: &Tensor, params: &[Tensor], batch: usize) -> PlanResult<Vec<f32>> {
        dp_backward(loss, params, batch, None)
    }

    /// Add the clipped per-sample gradients of `loss` (the mean over `batch`
    /// samples), divided by the batch, to every parameter's gradient.
    pub fn backward(&self, loss: &Tensor, params: &[Tensor], batch: usize) -> PlanResult<()> {
        dp_backward(loss, params, batch, Some(self.clip)).map(|_| ())
    }

    /// Add N(0, (σ·clip/B)²) to every coordinate of every gradient, where
    /// the gradient is (on the node's host in wasm).
    pub fn add_noise(&self, params: &[Tensor], batch: usize) -> PlanResult<()> {
        let std = self.sigma * self.clip / batch.max(1) as f32;
        if std == 0.0 {
            return Ok(());
        }
        for p in params {
            let g = match p.take_grad() {
                Some(g) => g,
                None => Tensor::from_values(backend::zeros(p.numel())?, p.shape()),
            };
            let noised = backend::add_normal(&g, std);
            p.put_grad(g);
            noised?;
        }
        Ok(())
    }
}
