//! A plan of the current contract written without the SDK, whose code holds
//! no 128-bit vector: what a plan compiled without simd128 looks like to the
//! node, which must warn its author and operator (and still load it).
//! Every function but `describe` refuses; it is never trained.

wit_bindgen::generate!({ path: "../../../wit", world: "training-plan" });

use exports::fedwasm::plan::plan::{Batch, Guest};
use fedwasm::plan::compute::Tensor as HostTensor;
use fedwasm::plan::types::{
    Array, DataSpec, DatasetInfo, ErrorKind, PlanError, PlanInfo, StepReport, Tensor,
};

struct Scalar;

fn refused() -> PlanError {
    PlanError {
        kind: ErrorKind::Internal,
        message: "a fixture without SIMD code".into(),
    }
}

impl Guest for Scalar {
    fn describe() -> PlanInfo {
        PlanInfo {
            name: "hostile-scalar".into(),
            version: "0.1.0".into(),
            description: "compiled without 128-bit SIMD".into(),
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
    fn predict(_: HostTensor, _: Vec<u32>) -> Result<Array, PlanError> {
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

export!(Scalar);
