//! Normalization layers: BatchNorm1d/2d and LayerNorm.

use super::{Module, Visitor, init};
use crate::error::{PlanResult, invalid_argument};
use crate::ops::conv::nchw;
use crate::ops::norm::BatchNormArgs;
use crate::tensor::{Tensor, is_training, no_grad};

/// PyTorch's `nn.BatchNorm1d` / `nn.BatchNorm2d`: per-channel statistics of
/// the batch in training (running averages updated), running statistics in
/// evaluation. Buffers `running_mean`, `running_var` and
/// `num_batches_tracked` travel with the parameters.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// γ, `[C]`, starts at 1.
    pub weight: Tensor,
    /// β, `[C]`, starts at 0.
    pub bias: Tensor,
    /// Buffer `[C]`, starts at 0.
    pub running_mean: Tensor,
    /// Buffer `[C]`, starts at 1.
    pub running_var: Tensor,
    /// Buffer `[]`: training batches seen (kept as f32, like every exchanged tensor).
    pub num_batches_tracked: Tensor,
    /// Weight of a new batch in the running averages (0.1).
    pub momentum: f32,
    /// Added to the variance (1e-5).
    pub eps: f32,
    image: bool,
}

impl BatchNorm {
    fn new(channels: usize, image: bool) -> PlanResult<Self> {
        if channels == 0 {
            return Err(invalid_argument(
                "batch normalization needs at least one channel",
            ));
        }
        Ok(BatchNorm {
            weight: init::constant(&[channels], 1.0)?,
            bias: init::constant(&[channels], 0.0)?,
            running_mean: Tensor::zeros(&[channels]),
            running_var: Tensor::full(&[channels], 1.0),
            num_batches_tracked: Tensor::scalar(0.0),
            momentum: 0.1,
            eps: 1e-5,
            image,
        })
    }

    /// Over `[N, C]` or `[N, C, L]` inputs.
    pub fn new_1d(channels: usize) -> PlanResult<Self> {
        BatchNorm::new(channels, false)
    }

    /// Over `[N, C, H, W]` inputs.
    pub fn new_2d(channels: usize) -> PlanResult<Self> {
        BatchNorm::new(channels, true)
    }
}

impl Module for BatchNorm {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        if self.image {
            nchw(x, "BatchNorm2d")?;
        } else if !matches!(x.ndim(), 2 | 3) {
            return Err(invalid_argument(format!(
                "BatchNorm1d needs [N, C] or [N, C, L], got {:?}",
                x.shape()
            )));
        }
        let training = is_training();
        if training {
            no_grad(|| self.num_batches_tracked.values_mut()[0] += 1.0);
        }
        x.batch_norm(BatchNormArgs {
            running_mean: &self.running_mean,
            running_var: &self.running_var,
            weight: Some(&self.weight),
            bias: Some(&self.bias),
            training,
            momentum: self.momentum,
            eps: self.eps,
        })
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        v.parameter("weight", &self.weight);
        v.parameter("bias", &self.bias);
        v.buffer("running_mean", &self.running_mean);
        v.buffer("running_var", &self.running_var);
        v.buffer("num_batches_tracked", &self.num_batches_tracked);
    }
}

/// PyTorch's `nn.LayerNorm` over the last dimensions, with affine weight and bias.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// γ, starts at 1.
    pub weight: Tensor,
    /// β, starts at 0.
    pub bias: Tensor,
    /// Added to the variance (1e-5).
    pub eps: f32,
    normalized: Vec<usize>,
}

impl LayerNorm {
    /// Normalizing over trailing dimensions of shape `normalized`.
    pub fn new(normalized: &[usize]) -> PlanResult<Self> {
        if normalized.is_empty() || normalized.contains(&0) {
            return Err(invalid_argument(format!(
                "layer normalization needs a non-empty shape, got {normalized:?}"
            )));
        }
        Ok(LayerNorm {
            weight: init::constant(normalized, 1.0)?,
            bias: init::constant(normalized, 0.0)?,
            eps: 1e-5,
            normalized: normalized.to_vec(),
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        x.layer_norm(
            &self.normalized,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
        )
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        v.parameter("weight", &self.weight);
        v.parameter("bias", &self.bias);
    }
}
