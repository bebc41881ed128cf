//! # fedwasm-plan: write a fedwasm training plan in Rust
//!
//! A training plan is one struct and one `impl TrainingPlan`; the model is
//! written like a PyTorch `nn.Module`: layers from [`nn`] (or your own), a
//! forward pass of [`Tensor`] operations, and automatic differentiation does
//! the backward pass. The SDK supplies the rest: the component glue for the
//! `fedwasm:plan/training-plan` world (see `wit/plan.wit`), losses,
//! optimizers that honour Scaffold's correction and FedProx, DP-SGD with
//! per-sample clipping, parameter exchange by `state_dict` name and
//! randomness from the host's seeded stream.
//!
//! ```ignore
//! use fedwasm_plan::prelude::*;
//!
//! pub struct MyPlan { model: Sequential, head: Classifier }
//!
//! impl TrainingPlan for MyPlan { /* init_model, training_data, model, loss, predict */ }
//!
//! fedwasm_plan::export_plan!(MyPlan);
//! ```
//!
//! Everything here is deterministic: no clocks, no randomly seeded hash map
//! is iterated, and transcendental functions come from the pure-Rust `libm`
//! crate. Matrix products and convolutions run on the node's host, on every
//! core it gives the plan, in `fedwasm-kernels` (fused multiply-adds, each
//! output summed in one order whatever the thread count); natively they run
//! in this process on the same kernels. The operations still computed in
//! the plan sum in a fixed order and never fuse a multiply-add. So the same
//! plan gives the same bits natively and in wasm, on any node.
//!
//! # Layout
//! - [`tensor`]: [`Tensor`] and reverse-mode autodiff.
//! - [`ops`]: the differentiable operations (as `Tensor` methods).
//! - [`nn`]: [`Module`](nn::Module), layers and initialisation.
//! - [`loss`]: cross-entropy, BCE, MSE, L1, Huber, soft Dice.
//! - [`optim`]: SGD, Adam, AdamW and learning-rate schedules.
//! - [`privacy`]: DP-SGD, per-sample clipping and noise.
//! - [`plan`]: the [`TrainingPlan`] trait a plan implements.
//! - [`trainer`]: [`Trainer`], which runs a plan the way the WIT functions ask.
//! - [`args`]: JSON model/optimizer arguments checked against the plan's declaration.
//! - [`params`]: named tensors in and out of the model.
//! - [`kernels`]: the plan-side numerical kernels (GEMM) of the
//!   operations that still run in the plan; matrix products and
//!   convolutions run on the node's host (`fedwasm-kernels`, see `backend`).
//! - [`gradcheck`]: finite-difference gradient checks, for layers of your own.
//! - [`random`]: the host-seeded random stream.
//! - [`log`]: messages into the node's log.

// A plan compiled for wasm without 128-bit SIMD trains to the same
// parameters about three times slower: refuse it here rather than let it
// pass unnoticed.
#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
compile_error!(
    "fedwasm-plan needs 128-bit SIMD in wasm: build the plan with `fedwasm plan build <crate folder>`, \
     or add `[target.wasm32-wasip2] rustflags = [\"-C\", \"target-feature=+simd128\"]` \
     to the plan crate's .cargo/config.toml"
);

pub mod args;
mod backend;
pub mod error;
pub mod gradcheck;
pub mod kernels;
pub mod log;
pub mod loss;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod params;
pub mod plan;
pub mod privacy;
pub mod random;
pub mod tensor;
pub mod trainer;

#[doc(hidden)]
pub mod export;

/// Bindings generated from `wit/plan.wit`; plans use the re-exports instead.
#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "training-plan",
        pub_export_macro: true,
        export_macro_name: "__export_training_plan",
        default_bindings_module: "fedwasm_plan::__bindings",
    });
}

/// The WIT record and enum types, as a plan sees them.
pub mod types {
    pub use crate::__bindings::fedwasm::plan::types::*;
}

pub use args::{ArgSpec, Args};
pub use error::{PlanError, PlanResult};
pub use optim::Optimizer;
pub use plan::{
    Classifier, ImageArgs, Minibatch, Regressor, Segmenter, TrainingPlan, image_data,
    no_augmentation, standardized_tabular,
};
pub use tensor::Tensor;
pub use trainer::{Step, Trainer};

/// Everything a plan usually needs, in one `use`.
pub mod prelude {
    pub use crate::args::{ArgSpec, ArgType, Args};
    pub use crate::error::{PlanError, PlanResult, invalid_argument, invalid_data};
    pub use crate::loss;
    pub use crate::nn::{self, Module, Sequential, Visitor};
    pub use crate::ops::conv::Conv2dOptions;
    pub use crate::optim::{Optimizer, optimizer_args};
    pub use crate::plan::{
        Classifier, ImageArgs, Minibatch, Regressor, Segmenter, TrainingPlan, image_data,
        no_augmentation, standardized_tabular,
    };
    pub use crate::tensor::{Tensor, is_training, no_grad};
    pub use crate::trainer::Step;
    pub use crate::types::{
        Augmentation, DataSpec, DatasetInfo, FeatureSelection, ImageFit, ImageInfo, ImageSpec,
        ImageTargetKind, PlanInfo, Scaling, Task,
    };
}
