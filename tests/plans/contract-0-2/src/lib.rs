//! A plan built for plan contract 0.2 (its WIT kept in `wit/` as it was):
//! a node of a later contract must refuse it by name and version, not with a
//! linker error. Every function does nothing useful; it is never run.

wit_bindgen::generate!({ path: "wit", world: "training-plan" });

use exports::fedwasm::plan::plan::Guest;
use fedwasm::plan::types::{
    Array, Batch, DataSpec, DatasetInfo, ErrorKind, PlanError, PlanInfo, StepReport, Tensor,
};

struct Old;

fn refused() -> PlanError {
    PlanError {
        kind: ErrorKind::Internal,
        message: "a contract 0.2 fixture".into(),
    }
}

impl Guest for Old {
    fn describe() -> PlanInfo {
        PlanInfo {
            name: "contract-0-2".into(),
            version: "0.2.0".into(),
            description: "built for plan contract 0.2".into(),
            model_args: Vec::new(),
            optimizer_args: Vec::new(),
        }
    }
    fn init_model(_: String) -> Result<(), PlanError> {
        Err(refused())
    }
    fn init_optimizer(_: String) -> Result<(), PlanError> {
        Err(refused())
    }
    fn training_data(_: DatasetInfo) -> Result<DataSpec, PlanError> {
        Err(refused())
    }
    fn training_step(_: Batch) -> Result<StepReport, PlanError> {
        Err(refused())
    }
    fn predict(_: Array) -> Result<Array, PlanError> {
        Err(refused())
    }
    fn get_parameters() -> Vec<Tensor> {
        Vec::new()
    }
    fn set_parameters(_: Vec<Tensor>) -> Result<(), PlanError> {
        Err(refused())
    }
    fn set_gradient_correction(_: Vec<Tensor>) -> Result<(), PlanError> {
        Err(refused())
    }
}

export!(Old);
