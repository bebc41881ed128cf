//! [`PlanDriver`]: the plan calls a training task makes, whatever runs the plan.
//!
//! A sandboxed [`PlanInstance`] implements it; so can a plan compiled natively
//! (tests and benchmarks do this), which is how fedwasm shows that a plan gives
//! the same bits in wasm and natively, and measures what the sandbox costs.

use crate::sandbox::types::{Array, Batch, DataSpec, DatasetInfo, PlanInfo, StepReport, Tensor};
use crate::sandbox::{PlanInstance, PlanLogRecord, SandboxError};

/// The plan functions of the WIT world, as a training task calls them.
pub trait PlanDriver {
    /// `describe`
    fn describe(&mut self) -> Result<PlanInfo, SandboxError>;
    /// `init-model`
    fn init_model(&mut self, model_args: &str) -> Result<(), SandboxError>;
    /// `init-optimizer`
    fn init_optimizer(&mut self, optimizer_args: &str) -> Result<(), SandboxError>;
    /// `training-data`
    fn training_data(&mut self, info: &DatasetInfo) -> Result<DataSpec, SandboxError>;
    /// `training-step`, on a batch the plan then owns (no copy of it is made).
    fn training_step(&mut self, batch: Batch) -> Result<StepReport, SandboxError>;
    /// `predict`, on features the plan then owns.
    fn predict(&mut self, features: Array) -> Result<Array, SandboxError>;
    /// `get-parameters`
    fn get_parameters(&mut self) -> Result<Vec<Tensor>, SandboxError>;
    /// `set-parameters`
    fn set_parameters(&mut self, parameters: &[Tensor]) -> Result<(), SandboxError>;
    /// `set-gradient-correction`
    fn set_gradient_correction(&mut self, correction: &[Tensor]) -> Result<(), SandboxError>;
    /// Messages the plan logged so far.
    fn take_logs(&mut self) -> Vec<PlanLogRecord> {
        Vec::new()
    }
}

impl PlanDriver for PlanInstance {
    fn describe(&mut self) -> Result<PlanInfo, SandboxError> {
        PlanInstance::describe(self)
    }
    fn init_model(&mut self, model_args: &str) -> Result<(), SandboxError> {
        PlanInstance::init_model(self, model_args)
    }
    fn init_optimizer(&mut self, optimizer_args: &str) -> Result<(), SandboxError> {
        PlanInstance::init_optimizer(self, optimizer_args)
    }
    fn training_data(&mut self, info: &DatasetInfo) -> Result<DataSpec, SandboxError> {
        PlanInstance::training_data(self, info)
    }
    fn training_step(&mut self, batch: Batch) -> Result<StepReport, SandboxError> {
        PlanInstance::training_step(self, batch)
    }
    fn predict(&mut self, features: Array) -> Result<Array, SandboxError> {
        PlanInstance::predict(self, features)
    }
    fn get_parameters(&mut self) -> Result<Vec<Tensor>, SandboxError> {
        PlanInstance::get_parameters(self)
    }
    fn set_parameters(&mut self, parameters: &[Tensor]) -> Result<(), SandboxError> {
        PlanInstance::set_parameters(self, parameters)
    }
    fn set_gradient_correction(&mut self, correction: &[Tensor]) -> Result<(), SandboxError> {
        PlanInstance::set_gradient_correction(self, correction)
    }
    fn take_logs(&mut self) -> Vec<PlanLogRecord> {
        PlanInstance::take_logs(self).0
    }
}
