//! [`Sequential`]: modules applied one after the other.

use super::{Module, Visitor};
use crate::error::PlanResult;
use crate::tensor::Tensor;

/// Modules in order, each named (PyTorch's `nn.Sequential`, whose children
/// are named `0`, `1`, … unless given names).
#[derive(Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    /// An empty stack.
    pub fn new() -> Self {
        Sequential::default()
    }

    /// Append `module` named by its position, as in PyTorch.
    pub fn push(mut self, module: impl Module + 'static) -> Self {
        let name = self.layers.len().to_string();
        self.layers.push((name, Box::new(module)));
        self
    }

    /// Append `module` under `name` (its tensors become `name.…`).
    pub fn add(mut self, name: &str, module: impl Module + 'static) -> Self {
        self.layers.push((name.to_string(), Box::new(module)));
        self
    }

    /// Number of modules.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, input: &Tensor) -> PlanResult<Tensor> {
        let mut x = input.clone();
        for (_, layer) in &self.layers {
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        for (name, layer) in &self.layers {
            v.module(name, layer.as_ref());
        }
    }
}
