//! Evaluate given parameters on a whole table: how the researcher scores a
//! global model on data no node trained on.

use serde_json::Value;

use super::TrainingError;
use super::metrics::{Metric, evaluate};
use crate::dataset::Table;
use crate::dataset::prepare::{Split, dataset_info, prepare};
use crate::sandbox::random::StreamSeed;
use crate::sandbox::types::Tensor;
use crate::sandbox::{LoadedPlan, Sandbox};

/// Accuracy (or MSE) of `parameters` on every row of `table`, with the
/// plan's own feature selection and scaling (statistics of `table` itself).
pub fn evaluate_parameters(
    sandbox: &Sandbox,
    plan: &LoadedPlan,
    model_args: &Value,
    parameters: &[Tensor],
    table: &Table,
    target: Option<&str>,
) -> Result<Option<Metric>, TrainingError> {
    let mut instance = sandbox.instantiate(plan, &StreamSeed::for_plan(0, 0, "evaluation"))?;
    instance.init_model(&model_args.to_string())?;
    instance.set_parameters(parameters)?;
    let spec = instance.training_data(&dataset_info(table, target))?;
    let split = Split {
        test_ratio: 0.0,
        seed: StreamSeed::for_split(0, "evaluation"),
        max_bytes: sandbox.config().memory_bytes(),
    };
    let data = prepare(table, &spec, target, &split)?;
    Ok(evaluate(&mut instance, &data.train, &data.task)?)
}
