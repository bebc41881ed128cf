//! Linear (fully connected) and Embedding layers.

use super::{Module, Visitor, init};
use crate::error::{PlanResult, invalid_argument};
use crate::tensor::Tensor;

/// y = x·Wᵀ + b over the last dimension, PyTorch's `nn.Linear` (weight
/// `[out, in]`).
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`, if any.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// PyTorch's default initialisation: weight and bias U(±1/√in).
    pub fn new(n_in: usize, n_out: usize) -> PlanResult<Self> {
        if n_in == 0 || n_out == 0 {
            return Err(invalid_argument(format!(
                "a linear layer needs at least one input and one output, got {n_in} → {n_out}"
            )));
        }
        let bound = init::default_bound(n_in);
        Ok(Linear {
            weight: init::uniform(&[n_out, n_in], bound)?,
            bias: Some(init::uniform(&[n_out], bound)?),
        })
    }

    /// Every parameter zero (linear models, as scikit-learn starts them).
    pub fn zeros(n_in: usize, n_out: usize) -> PlanResult<Self> {
        Ok(Linear {
            weight: init::constant(&[n_out, n_in], 0.0)?,
            bias: Some(init::constant(&[n_out], 0.0)?),
        })
    }

    /// Drop the bias.
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        v.parameter("weight", &self.weight);
        if let Some(b) = &self.bias {
            v.parameter("bias", b);
        }
    }
}

/// A lookup table of `num` vectors of size `dim`, PyTorch's `nn.Embedding`
/// (weight N(0, 1)).
#[derive(Debug, Clone)]
pub struct Embedding {
    /// `[num, dim]`.
    pub weight: Tensor,
}

impl Embedding {
    /// PyTorch's default initialisation: N(0, 1).
    pub fn new(num: usize, dim: usize) -> PlanResult<Self> {
        Ok(Embedding {
            weight: init::normal(&[num, dim], 1.0)?,
        })
    }
}

impl Module for Embedding {
    fn forward(&self, indices: &Tensor) -> PlanResult<Tensor> {
        indices.embedding(&self.weight)
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        v.parameter("weight", &self.weight);
    }
}
