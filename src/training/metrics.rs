//! Training and validation metrics computed by the host from the plan's `predict`.

use serde::{Deserialize, Serialize};

use super::driver::PlanDriver;
use super::scores::{Predicted, TestMetric, score_task};
use crate::dataset::prepare::Samples;
use crate::sandbox::SandboxError;
use crate::sandbox::types::Task;

/// Rows per `predict` call: bounds the memory a prediction needs in the plan.
const PREDICT_ROWS: usize = 512;
/// Most feature bytes sent in one `predict` call (2 MiB: 10 RGB images of
/// 224×224), so the plan's copy fits its memory whatever the sample size.
const PREDICT_BYTES: usize = 2 << 20;

/// A named metric value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// "accuracy" for classification, "mse" for regression.
    pub name: MetricName,
    /// The value.
    #[serde(with = "crate::wire::float::f64_any")]
    pub value: f64,
}

/// Which metric a [`Metric`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    /// Fraction of samples whose predicted class is the target.
    Accuracy,
    /// Mean squared error.
    Mse,
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name {
            MetricName::Accuracy => write!(f, "accuracy {:.4}", self.value),
            MetricName::Mse => write!(f, "mse {:.6}", self.value),
        }
    }
}

/// The predicted class (or value) of each row of a `predict` output [rows,
/// width]; for multi-label, each label's yes (1) or no (0).
pub fn decisions(task: &Task, width: usize, output: &[f32]) -> Vec<f32> {
    match task {
        Task::BinaryClassification => output
            .iter()
            .map(|&p| if p >= 0.5 { 1.0 } else { 0.0 })
            .collect(),
        Task::MulticlassClassification(_) => output
            .chunks_exact(width)
            .map(|row| {
                let mut best = 0;
                for (i, v) in row.iter().enumerate() {
                    if *v > row[best] {
                        best = i;
                    }
                }
                best as f32
            })
            .collect(),
        Task::Regression => output.to_vec(),
        Task::MultiLabelClassification(_) => output
            .iter()
            .map(|&p| if p >= 0.5 { 1.0 } else { 0.0 })
            .collect(),
    }
}

/// Most outputs per row kept for AUC; wider outputs keep decisions only.
const MAX_KEPT_WIDTH: usize = 1000;

/// The plan's predictions for every row of `samples`: its outputs (kept
/// when at most `MAX_KEPT_WIDTH` per row) and the decision (class index or
/// value) for each row, asking `predict` for at most `PREDICT_ROWS` rows at
/// a time. Outputs must be one per row for binary classification and
/// regression, one per class otherwise.
pub fn predictions(
    instance: &mut dyn PlanDriver,
    samples: &Samples,
    task: &Task,
) -> Result<Predicted, SandboxError> {
    let expected = match task {
        Task::MulticlassClassification(n) | Task::MultiLabelClassification(n) => *n as usize,
        _ => 1,
    };
    let mut predicted = Predicted {
        outputs: Vec::new(),
        width: expected,
        decisions: Vec::with_capacity(samples.len()),
    };
    // Images are large: a call carries at most PREDICT_BYTES of features.
    let per_call = (PREDICT_BYTES / (samples.n_features.max(1) * 4)).clamp(1, PREDICT_ROWS);
    for start in (0..samples.len()).step_by(per_call) {
        let end = (start + per_call).min(samples.len());
        let out = instance.predict(&samples.feature_rows(start, end))?;
        let rows = end - start;
        let fits = matches!(out.shape[..], [r, w] if r as usize == rows && w as usize == expected)
            && rows * expected == out.data.len();
        if !fits {
            return Err(SandboxError::Plan {
                function: "predict",
                kind: "invalid-data",
                message: format!(
                    "returned shape {:?} for {rows} rows; expected [{rows}, {expected}]",
                    out.shape
                ),
            });
        }
        predicted
            .decisions
            .extend(decisions(task, expected, &out.data));
        if expected <= MAX_KEPT_WIDTH {
            predicted.outputs.extend_from_slice(&out.data);
        }
    }
    Ok(predicted)
}

/// Accuracy or MSE of `instance` on `samples`; `None` when there are no samples.
pub fn evaluate(
    instance: &mut dyn PlanDriver,
    samples: &Samples,
    task: &Task,
) -> Result<Option<Metric>, SandboxError> {
    if samples.is_empty() {
        return Ok(None);
    }
    let predicted = predictions(instance, samples, task)?;
    let (name, metric) = match task {
        Task::Regression => (MetricName::Mse, TestMetric::MeanSquareError),
        _ => (MetricName::Accuracy, TestMetric::Accuracy),
    };
    let value =
        score_task(task, metric, &predicted, &samples.targets, None).map_err(|message| {
            SandboxError::Plan {
                function: "predict",
                kind: "invalid-data",
                message,
            }
        })?;
    Ok(Some(Metric { name, value }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_per_task() {
        assert_eq!(
            decisions(&Task::BinaryClassification, 1, &[0.2, 0.5, 0.9]),
            [0.0, 1.0, 1.0]
        );
        assert_eq!(
            decisions(
                &Task::MulticlassClassification(3),
                3,
                &[0.1, 0.7, 0.2, 0.5, 0.2, 0.3]
            ),
            [1.0, 0.0]
        );
        assert_eq!(decisions(&Task::Regression, 1, &[1.5]), [1.5]);
    }
}
