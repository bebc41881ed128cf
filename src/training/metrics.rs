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
    /// "accuracy" for classification, "dice" for segmentation, "mse" for
    /// regression.
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
    /// Dice of the foreground classes of masks (segmentation).
    Dice,
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name {
            MetricName::Accuracy => write!(f, "accuracy {:.4}", self.value),
            MetricName::Mse => write!(f, "mse {:.6}", self.value),
            MetricName::Dice => write!(f, "dice {:.4}", self.value),
        }
    }
}

/// The predicted class (or value) of each row of a `predict` output [rows,
/// width]; for multi-label, each label's yes (1) or no (0); for
/// segmentation (rows of `n` class planes), each pixel's most probable class.
pub fn decisions(task: &Task, width: usize, output: &[f32]) -> Vec<f32> {
    let argmax = |row: &[f32]| {
        let mut best = 0;
        for (i, v) in row.iter().enumerate() {
            if *v > row[best] {
                best = i;
            }
        }
        best as f32
    };
    match task {
        Task::BinaryClassification | Task::MultiLabelClassification(_) => output
            .iter()
            .map(|&p| if p >= 0.5 { 1.0 } else { 0.0 })
            .collect(),
        Task::MulticlassClassification(_) => output.chunks_exact(width).map(argmax).collect(),
        Task::Regression => output.to_vec(),
        Task::Segmentation(n) => {
            let n = (*n as usize).max(1);
            let plane = width / n;
            let mut decided = Vec::with_capacity(output.len() / n);
            let mut probs = vec![0.0f32; n];
            for row in output.chunks_exact(width.max(1)) {
                for p in 0..plane {
                    for (k, slot) in probs.iter_mut().enumerate() {
                        *slot = row[k * plane + p];
                    }
                    decided.push(argmax(&probs));
                }
            }
            decided
        }
    }
}

/// Most outputs per row kept for AUC; wider outputs keep decisions only.
const MAX_KEPT_WIDTH: usize = 1000;

/// The shape `predict` must give one row for `task`: one value for binary
/// classification and regression, one per class or label, or (segmentation)
/// one plane per class at the size of the samples' masks.
fn row_shape(task: &Task, samples: &Samples) -> Vec<u32> {
    match task {
        Task::MulticlassClassification(n) | Task::MultiLabelClassification(n) => vec![*n],
        Task::Segmentation(n) => [vec![*n], samples.target_shape.clone()].concat(),
        Task::BinaryClassification | Task::Regression => vec![1],
    }
}

/// The plan's predictions for every row of `samples`: its outputs (kept
/// when at most `MAX_KEPT_WIDTH` per row) and the decisions (class index or
/// value per row, or per pixel), asking `predict` for at most
/// `PREDICT_ROWS` rows at a time. Outputs must be one per row for binary
/// classification and regression, one per class otherwise, and a plane per
/// class for segmentation.
pub fn predictions(
    instance: &mut dyn PlanDriver,
    samples: &Samples,
    task: &Task,
) -> Result<Predicted, SandboxError> {
    let shape = row_shape(task, samples);
    let expected: usize = shape.iter().map(|&d| d as usize).product();
    let mut predicted = Predicted {
        outputs: Vec::new(),
        width: expected,
        decisions: Vec::with_capacity(samples.targets.len()),
    };
    // Images are large: a call carries at most PREDICT_BYTES of features,
    // and asks for at most as many bytes of outputs.
    let per_row = samples.n_features.max(expected).max(1) * 4;
    let per_call = (PREDICT_BYTES / per_row).clamp(1, PREDICT_ROWS);
    for start in (0..samples.len()).step_by(per_call) {
        let end = (start + per_call).min(samples.len());
        let out = instance.predict(samples.feature_rows(start, end))?;
        let rows = end - start;
        let fits = out.shape.first() == Some(&(rows as u32))
            && out.shape[1..] == shape[..]
            && rows * expected == out.data.len();
        if !fits {
            let mut wanted = vec![rows as u32];
            wanted.extend_from_slice(&shape);
            return Err(SandboxError::Plan {
                function: "predict",
                kind: "invalid-data",
                message: format!(
                    "returned shape {:?} for {rows} rows; expected {wanted:?}",
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

/// Accuracy, Dice (masks) or MSE of `instance` on `samples`; `None` when there are no samples.
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
        Task::Segmentation(_) => (MetricName::Dice, TestMetric::Dice),
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
        // Two samples of two classes over 1×2 pixels: per pixel, the class
        // whose plane holds the larger probability.
        assert_eq!(
            decisions(
                &Task::Segmentation(2),
                4,
                &[0.9, 0.2, 0.1, 0.8, 0.3, 0.6, 0.7, 0.4]
            ),
            [0.0, 1.0, 1.0, 0.0]
        );
    }
}
