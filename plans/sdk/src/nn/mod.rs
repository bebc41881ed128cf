//! Modules: layers with named parameters, as in PyTorch's `torch.nn`.
//!
//! A [`Module`] has a forward pass and says what it holds through
//! [`Module::visit`]: its trainable parameters, its buffers (state that is
//! not trained but travels with the model, like BatchNorm's running
//! statistics) and its sub-modules, each under a name. Names are joined with
//! dots into PyTorch `state_dict` names (`features.conv1.weight`,
//! `bn1.running_mean`); parameters and buffers together are what a node
//! sends and the researcher averages.
//!
//! A plan author writes a layer outside the SDK the same way the SDK's
//! layers are written: a struct of [`Tensor`]s and sub-modules, a `forward`
//! made of tensor operations (backward comes for free) and a `visit`.
//! Layers that behave differently in training read
//! [`crate::tensor::is_training`].

mod activation;
mod conv;
pub mod init;
mod linear;
mod norm;
mod pool;
mod sequential;
mod shape;

pub use activation::{Gelu, LeakyRelu, LogSoftmax, Relu, Sigmoid, Softmax, Tanh};
pub use conv::Conv2d;
pub use linear::{Embedding, Linear};
pub use norm::{BatchNorm, LayerNorm};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
pub use sequential::Sequential;
pub use shape::{Dropout, Flatten, Reshape};

use crate::error::PlanResult;
use crate::tensor::Tensor;

/// What a visited tensor is to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Trained by the optimizer.
    Parameter,
    /// Not trained, but saved, exchanged and averaged with the parameters.
    Buffer,
}

/// A named tensor of a model.
#[derive(Debug, Clone)]
pub struct Named {
    /// Dotted `state_dict` name.
    pub name: String,
    /// The tensor itself (shared with the model).
    pub tensor: Tensor,
    /// Parameter or buffer.
    pub role: Role,
}

/// A layer or a whole model.
pub trait Module {
    /// The output for `input`.
    fn forward(&self, input: &Tensor) -> PlanResult<Tensor>;

    /// Show every parameter, buffer and sub-module to `v`, in a stable order.
    fn visit(&self, v: &mut Visitor<'_>);
}

/// Collects a module's named tensors; handed to [`Module::visit`].
pub struct Visitor<'a> {
    prefix: String,
    out: &'a mut Vec<Named>,
}

impl Visitor<'_> {
    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// A trainable tensor called `name`.
    pub fn parameter(&mut self, name: &str, t: &Tensor) {
        let name = self.full(name);
        self.out.push(Named {
            name,
            tensor: t.clone(),
            role: Role::Parameter,
        });
    }

    /// A buffer called `name`.
    pub fn buffer(&mut self, name: &str, t: &Tensor) {
        let name = self.full(name);
        self.out.push(Named {
            name,
            tensor: t.clone(),
            role: Role::Buffer,
        });
    }

    /// A sub-module whose tensors are named `name.…`.
    pub fn module(&mut self, name: &str, m: &dyn Module) {
        let mut inner = Visitor {
            prefix: self.full(name),
            out: self.out,
        };
        m.visit(&mut inner);
    }
}

/// Every parameter and buffer of `m`, in visiting order.
pub fn named_tensors(m: &dyn Module) -> Vec<Named> {
    let mut out = Vec::new();
    m.visit(&mut Visitor {
        prefix: String::new(),
        out: &mut out,
    });
    out
}

/// The trainable parameters of `m`, in visiting order.
pub fn parameters(m: &dyn Module) -> Vec<Tensor> {
    named_tensors(m)
        .into_iter()
        .filter(|n| n.role == Role::Parameter)
        .map(|n| n.tensor)
        .collect()
}
