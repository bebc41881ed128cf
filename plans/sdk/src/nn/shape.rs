//! Layers without parameters that reshape or drop: Flatten, Reshape, Dropout.

use super::{Module, Visitor};
use crate::error::{PlanResult, invalid_argument};
use crate::tensor::{Tensor, is_training};

/// Merge the dimensions from `start` on (PyTorch's `nn.Flatten()` is `Flatten(1)`).
#[derive(Debug, Clone, Copy)]
pub struct Flatten(pub usize);

impl Default for Flatten {
    fn default() -> Self {
        Flatten(1)
    }
}

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        x.flatten(self.0)
    }

    fn visit(&self, _: &mut Visitor<'_>) {}
}

/// View each sample as `shape`: `[N, …]` → `[N, shape…]` (e.g. table rows of
/// 64 pixels as `[1, 8, 8]` images).
#[derive(Debug, Clone)]
pub struct Reshape(pub Vec<usize>);

impl Module for Reshape {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        let mut shape = vec![x.shape().first().copied().unwrap_or(1)];
        shape.extend(&self.0);
        x.reshape(&shape)
    }

    fn visit(&self, _: &mut Visitor<'_>) {}
}

/// Dropout with probability `p` in training, the identity in evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    p: f32,
}

impl Dropout {
    /// Dropout with probability `p` in [0, 1).
    pub fn new(p: f32) -> PlanResult<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(invalid_argument(format!(
                "dropout probability must be in [0, 1), got {p}"
            )));
        }
        Ok(Dropout { p })
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        if is_training() {
            x.dropout(self.p)
        } else {
            Ok(x.clone())
        }
    }

    fn visit(&self, _: &mut Visitor<'_>) {}
}
