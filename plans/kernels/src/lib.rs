//! # fedwasm-kernels: the arithmetic of fedwasm plans, with the same bits everywhere
//!
//! A plan keeps its model, its autodiff graph and every decision inside the
//! wasm sandbox; the arithmetic runs here, natively, on every core the node
//! gives it. The node's host calls these kernels on the tensors a plan
//! holds; the plan SDK calls the very same functions when a plan is built
//! natively (its tests, `plan check --in-process`). One crate, so one
//! answer.
//!
//! Every kernel promises **the same bits whatever the thread count, the
//! tiling and the CPU**:
//! - work is split over *outputs* (tiles of a matrix, rows, chunks of an
//!   elementwise map), never over the terms one output sums, so each
//!   element is reduced in one fixed order;
//! - a sum that needs a tree (a loss, a batch statistic) uses one fixed tree
//!   of fixed lane count ([`sum`]), independent of the vector width;
//! - every multiply-add is **fused** (one rounding), with the hardware's FMA
//!   where the CPU has one and a correctly rounded software `fma` where it
//!   does not ([`isa`]), so a node's hardware never changes a result.
//!
//! # Layout
//! - [`isa`]: which instruction set the kernels use, and the switch that
//!   forces the portable path (for tests that compare the two).
//! - [`gemm`]: matrix products with transposes, on packed panels and
//!   register tiles, split over output tiles.
//! - [`micro`]: the register tiles themselves, one per instruction set.
//! - `pack`: operands copied into the panels register tiles read.
//! - [`broadcast`]: add, sub, mul and div with broadcasting, and their
//!   gradients.
//! - [`elementwise`]: activations and other functions of each element,
//!   with their derivatives.
//! - [`embedding`]: table lookups and the table's gradient.
//! - [`im2col`]: convolution windows laid out as matrix columns, and back.
//! - [`layout`]: upsampling and joining tensors, which move values.
//! - [`conv`]: 2-D convolution forward, input and weight gradients.
//! - `direct`: the forward pass read in place from a padded image.
//! - [`dots`]: many dot products of long rows, each in eight fixed lanes.
//! - [`norm`]: batch normalization: statistics, output and gradients.
//! - [`layer_norm`]: layer normalization, likewise.
//! - [`pool`]: max pooling and its gradient.
//! - [`avg_pool`]: average pooling, by a window and adaptive.
//! - [`reduce`]: sums along one dimension, and their gradient.
//! - [`softmax`]: softmax and log-softmax, and their gradients.
//! - [`loss`]: the cross-entropy fused with its softmax, and the losses of
//!   each output against its target.
//! - [`squares`]: a gradient's sum of squares in f64, and how an f64
//!   crosses the contract.
//! - [`sum`]: sums in the fixed tree.
//! - [`op`]: [`Op`], an operation on host tensors: checked, then run.
//! - [`update`]: optimizer updates of a parameter in place.
//! - [`parallel`]: how work is handed to rayon (or run inline without it).

pub mod avg_pool;
pub mod broadcast;
pub mod conv;
mod direct;
pub mod dots;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
pub mod im2col;
pub mod isa;
pub mod layer_norm;
pub mod layout;
pub mod loss;
pub mod micro;
pub mod norm;
pub mod op;
mod pack;
pub mod parallel;
pub mod pool;
pub mod reduce;
pub mod softmax;
pub mod squares;
pub mod sum;
pub mod update;

pub use avg_pool::Adaptive;
pub use broadcast::{Binary, Broadcast, Operand};
pub use conv::Conv2d;
pub use elementwise::Elementwise;
pub use embedding::Embedding;
pub use gemm::{MatRef, gemm, gemm_into};
pub use im2col::Window;
pub use layer_norm::LayerNorm;
pub use loss::{CrossEntropy, Pointwise};
pub use norm::BatchNorm;
pub use op::{Family, MatMul, Op, OpError};
pub use pool::Pool2d;
pub use reduce::Axis;
pub use update::Update;
