//! Numerical kernels with a fixed order of floating-point operations, so that
//! a plan computes the same bits natively and in wasm, on every host.
//!
//! - [`simd`]: the four-lane vector type (simd128 in wasm, SSE natively).
//! - [`gemm`]: packed, blocked matrix products.
//! - [`im2col`]: convolution windows laid out as matrix columns.

pub mod gemm;
pub mod im2col;
pub mod simd;

pub use gemm::{MatRef, gemm};
pub use im2col::Window;
