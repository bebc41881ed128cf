//! Training and validation metrics computed by the host from the plan's `predict`.

use serde::{Deserialize, Serialize};

use super::driver::PlanDriver;
use super::scores::{TestMetric, score};
use crate::dataset::prepare::Samples;
use crate::sandbox::SandboxError;
use crate::sandbox::types::Task;

/// Rows per `predict` call: bounds the memory a prediction needs in the plan.
const PREDICT_ROWS: usize = 512;

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

/// The predicted class (or value) of each row of a `predict` output [rows, width].
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
    }
}

/// The plan's decision for every row of `samples` (class index or value),
/// asking `predict` for at most `PREDICT_ROWS` rows at a time.
pub fn predictions(
    instance: &mut dyn PlanDriver,
    samples: &Samples,
    task: &Task,
) -> Result<Vec<f32>, SandboxError> {
    let mut predicted = Vec::with_capacity(samples.len());
    for start in (0..samples.len()).step_by(PREDICT_ROWS) {
        let end = (start + PREDICT_ROWS).min(samples.len());
        let out = instance.predict(&samples.feature_rows(start, end))?;
        let rows = end - start;
        let width = match out.shape[..] {
            [r, w] if r as usize == rows && (r as usize) * (w as usize) == out.data.len() => {
                w as usize
            }
            _ => {
                return Err(SandboxError::Plan {
                    function: "predict",
                    kind: "invalid-data",
                    message: format!("returned shape {:?} for {rows} rows", out.shape),
                });
            }
        };
        predicted.extend(decisions(task, width, &out.data));
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
    let value = score(metric, &predicted, &samples.targets, None).map_err(|message| {
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
