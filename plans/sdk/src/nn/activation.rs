//! Activations as modules, for [`super::Sequential`].

use super::{Module, Visitor};
use crate::error::PlanResult;
use crate::tensor::Tensor;

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, |$x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Module for $name {
            fn forward(&self, $x: &Tensor) -> PlanResult<Tensor> {
                Ok($body)
            }

            fn visit(&self, _: &mut Visitor<'_>) {}
        }
    };
}

activation!(
    /// max(0, x).
    Relu, |x| x.relu()
);
activation!(
    /// PyTorch's exact GELU.
    Gelu, |x| x.gelu()
);
activation!(
    /// 1 / (1 + e^−x).
    Sigmoid, |x| x.sigmoid()
);
activation!(
    /// tanh(x).
    Tanh, |x| x.tanh()
);

/// x for x ≥ 0, slope·x otherwise (PyTorch's default slope is 0.01).
#[derive(Debug, Clone, Copy)]
pub struct LeakyRelu(pub f32);

impl Default for LeakyRelu {
    fn default() -> Self {
        LeakyRelu(0.01)
    }
}

impl Module for LeakyRelu {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        Ok(x.leaky_relu(self.0))
    }

    fn visit(&self, _: &mut Visitor<'_>) {}
}

/// Softmax along a dimension.
#[derive(Debug, Clone, Copy)]
pub struct Softmax(pub usize);

impl Module for Softmax {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        x.softmax(self.0)
    }

    fn visit(&self, _: &mut Visitor<'_>) {}
}

/// Log-softmax along a dimension.
#[derive(Debug, Clone, Copy)]
pub struct LogSoftmax(pub usize);

impl Module for LogSoftmax {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        x.log_softmax(self.0)
    }

    fn visit(&self, _: &mut Visitor<'_>) {}
}
