//! Validation on a node's held-out rows (`test_on_global_updates`,
//! `test_on_local_updates`): the host asks the plan to `predict` and scores
//! the predictions itself with [`super::scores`], so a plan cannot report a
//! score it did not earn.

use super::TrainingError;
use super::driver::PlanDriver;
use super::metrics::predictions;
use super::scores::{Average, TestMetric, score_task, task_confusion};
use crate::dataset::prepare::Samples;
use crate::sandbox::types::Task;
use crate::wire::ValidationScore;

/// The metric a task is scored with when `test_metric` is not set:
/// accuracy for classification, Dice for segmentation, mean squared error
/// for regression.
pub fn default_metric(task: &Task) -> TestMetric {
    match task {
        Task::Regression => TestMetric::MeanSquareError,
        Task::Segmentation(_) => TestMetric::Dice,
        _ => TestMetric::Accuracy,
    }
}

/// Score the plan's current parameters on `held_out` with `metric` (or the
/// task's default). A classification metric on a regression plan and an
/// empty held-out set are refused with what to change.
pub fn validate(
    plan: &mut dyn PlanDriver,
    held_out: &Samples,
    task: &Task,
    metric: Option<TestMetric>,
    average: Option<Average>,
) -> Result<ValidationScore, TrainingError> {
    let metric = metric.unwrap_or_else(|| default_metric(task));
    if metric.is_classification() && matches!(task, Task::Regression) {
        return Err(TrainingError::Args(format!(
            "test_metric {} scores classes, but the plan does regression; use MEAN_SQUARE_ERROR, MEAN_ABSOLUTE_ERROR or EXPLAINED_VARIANCE",
            metric.tag()
        )));
    }
    if held_out.is_empty() {
        return Err(TrainingError::Args(
            "test_ratio holds out no row of this dataset; raise test_ratio".into(),
        ));
    }
    let predicted = predictions(plan, held_out, task)?;
    let value = score_task(task, metric, &predicted, &held_out.targets, average)
        .map_err(|e| TrainingError::Args(format!("test_metric {}: {e}", metric.tag())))?;
    Ok(ValidationScore {
        metric: metric.tag().to_string(),
        value,
        samples: held_out.len() as u64,
        confusion: task_confusion(task, &predicted, &held_out.targets),
    })
}
