//! Host bindings generated from `wit/plan.wit`, kept private behind the
//! sandbox's own API; only the WIT data types are re-exported.

mod gen_ {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "training-plan",
        imports: { default: trappable },
    });
}

pub(crate) use gen_::fedwasm::plan::{log, random};
pub(crate) use gen_::{TrainingPlan, TrainingPlanPre};

/// The WIT data types exchanged with a plan.
pub mod types {
    pub(crate) use super::gen_::fedwasm::plan::types::Host;
    pub use super::gen_::fedwasm::plan::types::{
        ArgInfo, Array, Augmentation, Batch, ColumnInfo, ColumnType, DataSpec, DatasetInfo,
        ErrorKind, FeatureSelection, ImageFit, ImageInfo, ImageSpec, ImageTargetKind, PlanError,
        PlanInfo, Scaling, StepReport, Task, Tensor,
    };
}

/// Short name of a plan error kind, as written in the WIT.
pub fn error_kind_name(kind: types::ErrorKind) -> &'static str {
    match kind {
        types::ErrorKind::InvalidArgument => "invalid-argument",
        types::ErrorKind::InvalidData => "invalid-data",
        types::ErrorKind::InvalidState => "invalid-state",
        types::ErrorKind::Internal => "internal",
    }
}
