//! Evaluate given parameters on a whole table or image dataset: how the
//! researcher scores a global model on data no node trained on.

use serde_json::Value;

use super::TrainingError;
use super::metrics::{Metric, evaluate, predictions};
use super::scores::{Average, TestMetric, score_task, task_confusion};
use crate::dataset::Split;
use crate::dataset::prepare::{PreparedData, dataset_info, prepare};
use crate::dataset::{LoadedImages, Table, image_info, prepare_images};
use crate::sandbox::random::StreamSeed;
use crate::sandbox::types::Task;
use crate::sandbox::types::Tensor;
use crate::sandbox::{LoadedPlan, PlanInstance, Sandbox};
use crate::wire::ValidationScore;

/// Accuracy (or MSE) of `parameters` on every sample of `data`, with the
/// plan's own feature selection and scaling (statistics of the table
/// itself) or image preparation (never augmented).
pub fn evaluate_parameters(
    sandbox: &Sandbox,
    plan: &LoadedPlan,
    model_args: &Value,
    parameters: &[Tensor],
    data: ScoredData<'_>,
) -> Result<Option<Metric>, TrainingError> {
    let mut instance = sandbox.instantiate(plan, &StreamSeed::for_plan(0, 0, "evaluation"))?;
    instance.init_model(&model_args.to_string())?;
    instance.set_parameters(parameters)?;
    let (data, scored) = prepare_scored(&mut instance, data, sandbox.config().memory_bytes())?;
    let rows = if scored { &data.test } else { &data.train };
    Ok(evaluate(&mut instance, rows, &data.task)?)
}

/// The metrics a task is scored with when none is named: every one that
/// applies to it.
pub fn task_metrics(task: &Task) -> Vec<TestMetric> {
    match task {
        Task::Regression => vec![
            TestMetric::MeanSquareError,
            TestMetric::MeanAbsoluteError,
            TestMetric::ExplainedVariance,
        ],
        Task::Segmentation(_) => vec![
            TestMetric::Dice,
            TestMetric::Accuracy,
            TestMetric::F1Score,
            TestMetric::Precision,
            TestMetric::Recall,
        ],
        _ => vec![
            TestMetric::Accuracy,
            TestMetric::F1Score,
            TestMetric::Precision,
            TestMetric::Recall,
            TestMetric::Auc,
        ],
    }
}

/// The rows a saved model is scored on.
#[derive(Debug, Clone, Copy)]
pub struct ScoredRows<'a> {
    /// The table.
    pub table: &'a Table,
    /// Its target column, unless the plan names one.
    pub target: Option<&'a str>,
    /// A column marking the designated test rows (1): only those are
    /// scored, scaled from the others; `None` scores every row.
    pub split_column: Option<&'a str>,
}

/// The data a saved model is scored on: rows of a table, or every image
/// of an image dataset.
#[derive(Debug, Clone, Copy)]
pub enum ScoredData<'a> {
    /// Rows of a table.
    Rows(ScoredRows<'a>),
    /// Decoded images, prepared as the plan asks but never augmented.
    Images(&'a LoadedImages),
    /// The designated test part of decoded images: those `test` marks
    /// (one flag per image, from a manifest's split column).
    ImageTestPart {
        /// Every image of the manifest.
        images: &'a LoadedImages,
        /// Whether each image is in the test part.
        test: &'a [bool],
    },
}

impl<'a> From<ScoredRows<'a>> for ScoredData<'a> {
    fn from(rows: ScoredRows<'a>) -> Self {
        ScoredData::Rows(rows)
    }
}

/// `data` prepared as the plan in `instance` asks, and whether the samples
/// to score are the held-out part (a designated test part) rather than all.
fn prepare_scored(
    instance: &mut PlanInstance,
    data: ScoredData<'_>,
    max_bytes: usize,
) -> Result<(PreparedData, bool), TrainingError> {
    let split = |designated_test| Split {
        test_ratio: 0.0,
        designated_test,
        seed: StreamSeed::for_split(0, "evaluation"),
        max_bytes,
    };
    match data {
        ScoredData::Rows(rows) => {
            let (table, target) = (rows.table, rows.target);
            let (table, designated_test) = match rows.split_column {
                Some(column) => {
                    let (rest, test) = table.split_by_column(column)?;
                    (std::borrow::Cow::Owned(rest), Some(test))
                }
                None => (std::borrow::Cow::Borrowed(table), None),
            };
            let designated = designated_test.is_some();
            let spec = instance.training_data(&dataset_info(&table, target))?;
            Ok((
                prepare(&table, &spec, target, &split(designated_test))?,
                designated,
            ))
        }
        ScoredData::Images(images) => {
            let spec = instance.training_data(&image_info(&images.set))?;
            let seed = StreamSeed::for_augmentation(0, 0, "evaluation");
            Ok((prepare_images(images, &spec, &split(None), seed)?, false))
        }
        ScoredData::ImageTestPart { images, test } => {
            let spec = instance.training_data(&image_info(&images.set))?;
            let seed = StreamSeed::for_augmentation(0, 0, "evaluation");
            let part = split(Some(test.to_vec()));
            Ok((prepare_images(images, &spec, &part, seed)?, true))
        }
    }
}

/// Scores of `parameters` on `data` by `metric` (with its `average`) or
/// every metric of the plan's task, computed by the host from the plan's
/// predictions as a node validates: what `fedwasm evaluate` prints for a
/// saved model.
pub fn score_parameters(
    sandbox: &Sandbox,
    plan: &LoadedPlan,
    model_args: &Value,
    parameters: &[Tensor],
    data: ScoredData<'_>,
    metric: Option<(TestMetric, Option<Average>)>,
) -> Result<Vec<ValidationScore>, TrainingError> {
    let mut instance = sandbox.instantiate(plan, &StreamSeed::for_plan(0, 0, "evaluation"))?;
    instance.init_model(&model_args.to_string())?;
    instance.set_parameters(parameters)?;
    let (data, designated) = prepare_scored(&mut instance, data, sandbox.config().memory_bytes())?;
    let rows = if designated { &data.test } else { &data.train };
    if rows.is_empty() {
        return Err(TrainingError::Args("the data has no row to score".into()));
    }
    let chosen = match metric {
        Some((metric, average)) => {
            if metric.is_classification() && matches!(data.task, Task::Regression) {
                return Err(TrainingError::Args(format!(
                    "{} scores classes, but the plan does regression; use MEAN_SQUARE_ERROR, MEAN_ABSOLUTE_ERROR or EXPLAINED_VARIANCE",
                    metric.tag()
                )));
            }
            vec![(metric, average)]
        }
        None => task_metrics(&data.task)
            .into_iter()
            .map(|m| (m, None))
            .collect(),
    };
    let predicted = predictions(&mut instance, rows, &data.task)?;
    let confusion = task_confusion(&data.task, &predicted, &rows.targets);
    chosen
        .into_iter()
        .map(|(metric, average)| {
            let value = score_task(&data.task, metric, &predicted, &rows.targets, average)
                .map_err(|e| TrainingError::Args(format!("{}: {e}", metric.tag())))?;
            Ok(ValidationScore {
                metric: metric.tag().to_string(),
                value,
                samples: rows.len() as u64,
                confusion: confusion.clone(),
            })
        })
        .collect()
}
