//! The plan-side kernels of the operations that still compute in the plan
//! (DP-SGD's per-sample products, gradient sums), with a fixed order of
//! floating-point operations and no fused multiply-add, so that a plan
//! computes the same bits natively and in wasm. Products, convolutions and
//! the other host operations use `fedwasm-kernels` (see [`crate::backend`]),
//! whose `Window` describes convolution and pooling windows.
//!
//! - [`simd`]: the four-lane vector type (simd128 in wasm, SSE natively).
//! - [`gemm`]: packed, blocked matrix products.

pub mod gemm;
pub mod simd;

pub use fedwasm_kernels::Window;
pub use gemm::{MatRef, gemm};
