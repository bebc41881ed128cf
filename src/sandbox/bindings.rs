//! Host bindings generated from `wit/plan.wit`, kept private behind the
//! sandbox's own API; only the WIT data types are re-exported.

mod gen_ {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "training-plan",
        imports: { default: trappable },
        with: { "fedwasm:plan/compute.tensor": crate::sandbox::compute::HostTensor },
    });
}

pub(crate) use gen_::exports::fedwasm::plan::plan::Batch as WitBatch;
pub(crate) use gen_::fedwasm::plan::{compute, log, random};
pub(crate) use gen_::{TrainingPlan, TrainingPlanPre};

/// The WIT data types exchanged with a plan.
pub mod types {
    pub(crate) use super::gen_::fedwasm::plan::types::Host;
    pub use super::gen_::fedwasm::plan::types::{
        ArgInfo, Array, Augmentation, ColumnInfo, ColumnType, DataSpec, DatasetInfo, ErrorKind,
        FeatureSelection, ImageFit, ImageInfo, ImageSpec, ImageTargetKind, PlanError, PlanInfo,
        Scaling, StepReport, Task, Tensor,
    };

    /// One mini-batch as the node prepares it. The plan receives it as two
    /// host tensors (`compute.tensor`) and their shapes, never copied into
    /// its memory.
    #[derive(Debug, Clone)]
    pub struct Batch {
        /// Features, samples first.
        pub features: Array,
        /// Targets, samples first.
        pub targets: Array,
    }
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
