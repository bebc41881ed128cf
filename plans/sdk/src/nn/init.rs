//! Initial values, drawn from the host-seeded stream: PyTorch's defaults
//! (Kaiming-uniform with a = √5 for weights, i.e. U(±1/√fan_in), and the same
//! bound for biases) and the usual alternatives.

use crate::error::PlanResult;
use crate::random;
use crate::tensor::{Tensor, numel};

/// A parameter of `shape` uniform in [−bound, bound).
pub fn uniform(shape: &[usize], bound: f32) -> PlanResult<Tensor> {
    Tensor::parameter(random::uniform_range(numel(shape), -bound, bound), shape)
}

/// A parameter of `shape` normal with mean 0 and standard deviation `std`.
pub fn normal(shape: &[usize], std: f32) -> PlanResult<Tensor> {
    let values = random::normal(numel(shape))
        .into_iter()
        .map(|v| v * std)
        .collect();
    Tensor::parameter(values, shape)
}

/// A parameter of `shape`, every element `value`.
pub fn constant(shape: &[usize], value: f32) -> PlanResult<Tensor> {
    Tensor::parameter(vec![value; numel(shape)], shape)
}

/// PyTorch's default bound for a layer with `fan_in` inputs: 1/√fan_in.
pub fn default_bound(fan_in: usize) -> f32 {
    1.0 / libm::sqrtf(fan_in.max(1) as f32)
}

/// Kaiming (He) uniform for ReLU networks: U(±√(6/fan_in)).
pub fn kaiming_uniform(shape: &[usize], fan_in: usize) -> PlanResult<Tensor> {
    uniform(shape, libm::sqrtf(6.0 / fan_in.max(1) as f32))
}

/// Xavier (Glorot) uniform: U(±√(6/(fan_in + fan_out))).
pub fn xavier_uniform(shape: &[usize], fan_in: usize, fan_out: usize) -> PlanResult<Tensor> {
    uniform(shape, libm::sqrtf(6.0 / (fan_in + fan_out).max(1) as f32))
}
