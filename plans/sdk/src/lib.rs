//! # fedwasm-plan: write a fedwasm training plan in Rust
//!
//! A training plan is one struct and one `impl TrainingPlan`. The SDK supplies the
//! rest: the component glue for the `fedwasm:plan/training-plan` world (see
//! `wit/plan.wit`), dense layers with hand-written backward passes, losses,
//! optimizers that honour Scaffold's gradient correction, parameter exchange by
//! name and randomness from the host's seeded stream.
//!
//! ```ignore
//! use fedwasm_plan::prelude::*;
//!
//! pub struct MyPlan { model: Sequential }
//!
//! impl TrainingPlan for MyPlan { /* describe, init_model, model, loss, training_data */ }
//!
//! fedwasm_plan::export_plan!(MyPlan);
//! ```
//!
//! Everything here is deterministic: no clocks, no threads, no randomly seeded
//! hash maps, matrix kernels with a fixed summation order and no fused
//! multiply-add, and transcendental functions from the pure-Rust `libm` crate,
//! so the same plan gives the same bits natively and in wasm.
//!
//! # Layout
//! - [`plan`]: the [`TrainingPlan`] trait a plan implements.
//! - [`trainer`]: [`Trainer`], which runs a plan the way the WIT functions ask.
//! - [`args`]: JSON model/optimizer arguments checked against the plan's declaration.
//! - [`kernels`], [`layers`], [`loss`], [`optim`]: the numerical building blocks.
//! - [`privacy`]: DP-SGD, per-sample clipping and noise (local differential privacy).
//! - [`params`]: named parameter tensors in and out of the model.
//! - [`random`]: the host-seeded random stream.
//! - [`log`]: messages into the node's log.

pub mod args;
pub mod error;
pub mod kernels;
pub mod layers;
pub mod log;
pub mod loss;
pub mod optim;
pub mod params;
pub mod plan;
pub mod privacy;
pub mod random;
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
pub use layers::{Activation, Linear, Sequential};
pub use loss::Loss;
pub use optim::Optimizer;
pub use plan::{Classifier, TrainingPlan, standardized_tabular};
pub use trainer::Trainer;

/// Everything a plan usually needs, in one `use`.
pub mod prelude {
    pub use crate::args::{ArgSpec, Args};
    pub use crate::error::{PlanError, PlanResult};
    pub use crate::layers::{Activation, Linear, Sequential};
    pub use crate::loss::Loss;
    pub use crate::optim::Optimizer;
    pub use crate::plan::{Classifier, TrainingPlan, standardized_tabular};
    pub use crate::types::{DataSpec, DatasetInfo, FeatureSelection, PlanInfo, Scaling, Task};
}
