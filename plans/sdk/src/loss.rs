//! Losses with their gradients, and the output transform used by `predict`.
//!
//! Each loss takes the model's raw output (logits for classification) and the
//! targets, checks that the targets fit (class indices in range, 0/1 for binary),
//! and returns the mean loss over the batch with its gradient.

use ndarray::Array2;

use crate::error::{PlanResult, internal, invalid_data};
use crate::layers::sigmoid;

/// The training objective of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Multiclass: softmax over the outputs, then cross-entropy with the class index.
    SoftmaxCrossEntropy,
    /// Binary: a single logit, sigmoid, then cross-entropy with a 0/1 target.
    BinaryCrossEntropy,
    /// Regression: mean of (output − target)² over one output.
    MeanSquaredError,
}

fn class_index(target: f32, n_classes: usize, row: usize) -> PlanResult<usize> {
    if target.fract() != 0.0 || target < 0.0 || target >= n_classes as f32 {
        return Err(invalid_data(format!(
            "row {row}: target {target} is not a class index in 0..{n_classes}; \
             labels must be integers 0..n_classes-1"
        )));
    }
    Ok(target as usize)
}

impl Loss {
    /// Mean loss over the batch and its gradient with respect to `output`.
    pub fn forward_backward(
        self,
        output: &Array2<f32>,
        targets: &[f32],
    ) -> PlanResult<(f32, Array2<f32>)> {
        let rows = output.nrows();
        if targets.len() != rows {
            return Err(invalid_data(format!(
                "the batch has {rows} rows but {} targets",
                targets.len()
            )));
        }
        if rows == 0 {
            return Err(invalid_data("empty batch"));
        }
        let width = output.ncols();
        let scale = 1.0 / rows as f32;
        let mut grad = Array2::<f32>::zeros(output.raw_dim());
        let mut total = 0.0f64;
        match self {
            Loss::SoftmaxCrossEntropy => {
                for (r, (z, mut g)) in output.rows().into_iter().zip(grad.rows_mut()).enumerate() {
                    let class = class_index(targets[r], width, r)?;
                    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0f32;
                    for (gi, zi) in g.iter_mut().zip(z.iter()) {
                        *gi = libm::expf(zi - max);
                        sum += *gi;
                    }
                    total += (libm::logf(sum) + max - z[class]) as f64;
                    for gi in g.iter_mut() {
                        *gi = *gi / sum * scale;
                    }
                    g[class] -= scale;
                }
            }
            Loss::BinaryCrossEntropy => {
                if width != 1 {
                    return Err(invalid_data(format!(
                        "binary cross-entropy needs one output per sample, the model has {width}"
                    )));
                }
                for r in 0..rows {
                    let y = class_index(targets[r], 2, r)? as f32;
                    let z = output[[r, 0]];
                    total += (z.max(0.0) - z * y + libm::log1pf(libm::expf(-z.abs()))) as f64;
                    grad[[r, 0]] = (sigmoid(z) - y) * scale;
                }
            }
            Loss::MeanSquaredError => {
                if width != 1 {
                    return Err(invalid_data(format!(
                        "mean squared error needs one output per sample, the model has {width}"
                    )));
                }
                for r in 0..rows {
                    let diff = output[[r, 0]] - targets[r];
                    total += (diff * diff) as f64;
                    grad[[r, 0]] = 2.0 * diff * scale;
                }
            }
        }
        let loss = (total / rows as f64) as f32;
        if !loss.is_finite() {
            return Err(internal(format!(
                "the loss is {loss}; lower the learning rate or scale the features"
            )));
        }
        Ok((loss, grad))
    }

    /// Turn raw outputs into what `predict` returns: class probabilities
    /// (softmax), the probability of class 1 (sigmoid) or the prediction itself.
    pub fn output_transform(self, mut output: Array2<f32>) -> Array2<f32> {
        match self {
            Loss::SoftmaxCrossEntropy => {
                for mut row in output.rows_mut() {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0f32;
                    for v in row.iter_mut() {
                        *v = libm::expf(*v - max);
                        sum += *v;
                    }
                    for v in row.iter_mut() {
                        *v /= sum;
                    }
                }
                output
            }
            Loss::BinaryCrossEntropy => {
                output.mapv_inplace(sigmoid);
                output
            }
            Loss::MeanSquaredError => output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(loss: Loss, output: Array2<f32>, targets: &[f32]) {
        let (_, grad) = loss.forward_backward(&output, targets).unwrap();
        let eps = 1e-2f32;
        for idx in 0..output.len() {
            let (r, c) = (idx / output.ncols(), idx % output.ncols());
            let mut plus = output.clone();
            plus[[r, c]] += eps;
            let mut minus = output.clone();
            minus[[r, c]] -= eps;
            let lp = loss.forward_backward(&plus, targets).unwrap().0 as f64;
            let lm = loss.forward_backward(&minus, targets).unwrap().0 as f64;
            let numeric = (lp - lm) / (2.0 * eps as f64);
            let analytic = grad[[r, c]] as f64;
            assert!(
                (numeric - analytic).abs() < 1e-3 + 1e-2 * numeric.abs(),
                "{loss:?} [{r},{c}]: analytic {analytic}, numeric {numeric}"
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let logits = Array2::from_shape_vec(
            (3, 4),
            vec![
                0.1, -1.2, 2.0, 0.3, 1.5, 0.0, -0.5, 0.7, -2.0, 0.4, 0.9, 1.1,
            ],
        )
        .unwrap();
        check(Loss::SoftmaxCrossEntropy, logits, &[2.0, 0.0, 3.0]);
        let single = Array2::from_shape_vec((3, 1), vec![0.3, -1.7, 2.4]).unwrap();
        check(Loss::BinaryCrossEntropy, single.clone(), &[1.0, 0.0, 0.0]);
        check(Loss::MeanSquaredError, single, &[0.5, -1.0, 3.0]);
    }

    #[test]
    fn known_values() {
        let zeros = Array2::zeros((2, 4));
        let (ce, _) = Loss::SoftmaxCrossEntropy
            .forward_backward(&zeros, &[0.0, 3.0])
            .unwrap();
        assert!((ce - 4f32.ln()).abs() < 1e-6);
        let (bce, _) = Loss::BinaryCrossEntropy
            .forward_backward(&Array2::zeros((1, 1)), &[1.0])
            .unwrap();
        assert!((bce - 2f32.ln()).abs() < 1e-6);
        let out = Array2::from_shape_vec((2, 1), vec![1.0, 3.0]).unwrap();
        let (mse, _) = Loss::MeanSquaredError
            .forward_backward(&out, &[0.0, 1.0])
            .unwrap();
        assert_eq!(mse, 2.5);
    }

    #[test]
    fn bad_targets_are_named() {
        let err = Loss::SoftmaxCrossEntropy
            .forward_backward(&Array2::zeros((1, 3)), &[3.0])
            .unwrap_err();
        assert!(err.message.contains("not a class index in 0..3"), "{err}");
        let err = Loss::BinaryCrossEntropy
            .forward_backward(&Array2::zeros((1, 1)), &[0.5])
            .unwrap_err();
        assert!(err.message.contains("0..2"), "{err}");
        let err = Loss::MeanSquaredError
            .forward_backward(&Array2::zeros((2, 1)), &[0.5])
            .unwrap_err();
        assert!(err.message.contains("2 rows but 1 targets"), "{err}");
    }

    #[test]
    fn softmax_output_rows_sum_to_one() {
        let out = Loss::SoftmaxCrossEntropy
            .output_transform(Array2::from_shape_vec((1, 3), vec![1.0, 2.0, 3.0]).unwrap());
        assert!((out.sum() - 1.0).abs() < 1e-6);
    }
}
