//! Differentiable operations on [`Tensor`](crate::tensor::Tensor), as
//! methods (`x.relu()`, `x.matmul(&w)?`, `x.conv2d(&w, Some(&b), opts)?`).
//! Each computes its output with the deterministic kernels and records a
//! backward function; those that use a parameter directly (linear,
//! convolution, normalization, embedding, element-wise with broadcasting) can
//! also give per-sample gradients for DP-SGD.
//!
//! - [`elementwise`]: activations and other functions of one tensor.
//! - [`binary`]: `add`, `sub`, `mul`, `div` with broadcasting.
//! - [`reduce`]: sums and means.
//! - [`layout`]: reshape, flatten, transpose, concatenation.
//! - [`linear`]: matrix product and the fused affine map.
//! - [`conv`]: 2-D convolution.
//! - [`pool`]: max, average and adaptive average pooling.
//! - [`upsample`]: nearest-neighbour upsampling.
//! - [`norm`]: batch and layer normalization.
//! - [`softmax`]: softmax and log-softmax.
//! - [`embedding`]: table lookup.
//! - [`dropout`]: dropout from the host's random stream.

pub mod binary;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod layout;
pub mod linear;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod softmax;
pub mod upsample;

use crate::error::{PlanResult, invalid_data, invalid_state};

/// Elements per sample of an output of `shape` whose first dimension must be
/// the batch of `batch` samples, for per-sample gradients.
pub(crate) fn per_sample_stride(shape: &[usize], batch: usize, op: &str) -> PlanResult<usize> {
    match shape.first() {
        Some(&b) if b == batch && b > 0 => Ok(shape.iter().skip(1).product()),
        _ => Err(invalid_state(format!(
            "DP-SGD: `{op}` has output shape {shape:?}, whose first dimension is not the batch \
             of {batch} samples"
        ))),
    }
}

/// `Err` naming `op` and the shapes when a check fails.
pub(crate) fn shape_error(op: &str, detail: impl std::fmt::Display) -> crate::error::PlanError {
    invalid_data(format!("{op}: {detail}"))
}
