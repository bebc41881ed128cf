//! Validation metrics by name, as Fed-BioMed's `test_metric` offers them
//! (scikit-learn's definitions): computed by the host from the plan's
//! predictions, so a plan cannot report a score it did not earn.

use serde::{Deserialize, Serialize};

/// A validation metric (`training_args.test_metric`, case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TestMetric {
    /// Fraction of correct predictions.
    Accuracy,
    /// Harmonic mean of precision and recall.
    F1Score,
    /// Of the predicted positives, the fraction that are.
    Precision,
    /// Of the actual positives, the fraction found.
    Recall,
    /// Mean of squared errors.
    MeanSquareError,
    /// Mean of absolute errors.
    MeanAbsoluteError,
    /// 1 − Var(y − ŷ) / Var(y).
    ExplainedVariance,
}

/// How per-class precision, recall and F1 are combined for more than two classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Average {
    /// Class 1 of a two-class problem only (scikit-learn's default for binary targets).
    Binary,
    /// Unweighted mean over classes.
    Macro,
    /// Mean weighted by each class's number of true samples (Fed-BioMed's multiclass default).
    Weighted,
    /// From the pooled counts of all classes.
    Micro,
}

const NAMES: [(&str, TestMetric); 7] = [
    ("ACCURACY", TestMetric::Accuracy),
    ("F1_SCORE", TestMetric::F1Score),
    ("PRECISION", TestMetric::Precision),
    ("RECALL", TestMetric::Recall),
    ("MEAN_SQUARE_ERROR", TestMetric::MeanSquareError),
    ("MEAN_ABSOLUTE_ERROR", TestMetric::MeanAbsoluteError),
    ("EXPLAINED_VARIANCE", TestMetric::ExplainedVariance),
];

impl TestMetric {
    /// From a name in any case; the error lists the valid names.
    pub fn parse(name: &str) -> Result<Self, String> {
        let upper = name.to_ascii_uppercase();
        NAMES
            .iter()
            .find(|(n, _)| *n == upper)
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                let valid: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                format!("unknown test_metric `{name}`; valid: {}", valid.join(", "))
            })
    }

    /// The name used in TensorBoard tags and the history, e.g. `F1_SCORE`.
    pub fn tag(&self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, m)| m == self)
            .map_or("ACCURACY", |(n, _)| n)
    }

    /// Whether it scores class predictions (rather than values).
    pub fn is_classification(&self) -> bool {
        matches!(
            self,
            TestMetric::Accuracy | TestMetric::F1Score | TestMetric::Precision | TestMetric::Recall
        )
    }
}

/// Per-class counts: (label, true positives, false positives, false negatives, support).
fn per_class(predicted: &[f32], targets: &[f32]) -> Vec<(i64, u64, u64, u64, u64)> {
    let mut labels: Vec<i64> = predicted
        .iter()
        .chain(targets)
        .map(|&v| v.round() as i64)
        .collect();
    labels.sort_unstable();
    labels.dedup();
    labels
        .into_iter()
        .map(|label| {
            let (mut tp, mut fp, mut fn_, mut support) = (0, 0, 0, 0);
            for (&p, &t) in predicted.iter().zip(targets) {
                let (p, t) = (p.round() as i64 == label, t.round() as i64 == label);
                tp += u64::from(p && t);
                fp += u64::from(p && !t);
                fn_ += u64::from(!p && t);
                support += u64::from(t);
            }
            (label, tp, fp, fn_, support)
        })
        .collect()
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

/// `metric` of `predicted` against `targets`. `average` applies to
/// precision, recall and F1; `None` means binary for targets in {0, 1},
/// weighted otherwise. Empty input is an error.
pub fn score(
    metric: TestMetric,
    predicted: &[f32],
    targets: &[f32],
    average: Option<Average>,
) -> Result<f64, String> {
    if predicted.len() != targets.len() {
        return Err(format!(
            "{} predictions for {} targets",
            predicted.len(),
            targets.len()
        ));
    }
    if targets.is_empty() {
        return Err("no samples to score".into());
    }
    let n = targets.len() as f64;
    let pairs = || {
        predicted
            .iter()
            .zip(targets)
            .map(|(&p, &t)| (f64::from(p), f64::from(t)))
    };
    match metric {
        TestMetric::Accuracy => {
            Ok(pairs().filter(|(p, t)| p.round() == t.round()).count() as f64 / n)
        }
        TestMetric::MeanSquareError => Ok(pairs().map(|(p, t)| (p - t).powi(2)).sum::<f64>() / n),
        TestMetric::MeanAbsoluteError => Ok(pairs().map(|(p, t)| (p - t).abs()).sum::<f64>() / n),
        TestMetric::ExplainedVariance => {
            let variance = |values: &mut dyn Iterator<Item = f64>| {
                let v: Vec<f64> = values.collect();
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64
            };
            let residual = variance(&mut pairs().map(|(p, t)| t - p));
            let total = variance(&mut pairs().map(|(_, t)| t));
            Ok(if total == 0.0 {
                if residual == 0.0 { 1.0 } else { 0.0 }
            } else {
                1.0 - residual / total
            })
        }
        TestMetric::F1Score | TestMetric::Precision | TestMetric::Recall => {
            let classes = per_class(predicted, targets);
            let binary_targets = targets.iter().all(|&t| t == 0.0 || t == 1.0);
            let average = average.unwrap_or(if binary_targets {
                Average::Binary
            } else {
                Average::Weighted
            });
            let pick = |tp: u64, fp: u64, fn_: u64| {
                let (p, r) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
                match metric {
                    TestMetric::Precision => p,
                    TestMetric::Recall => r,
                    _ => f1(p, r),
                }
            };
            match average {
                Average::Binary => {
                    if !binary_targets {
                        return Err(
                            "average \"binary\" needs targets in {0, 1}; use macro, weighted or micro"
                                .into(),
                        );
                    }
                    let (_, tp, fp, fn_, _) = classes
                        .iter()
                        .copied()
                        .find(|c| c.0 == 1)
                        .unwrap_or((1, 0, 0, 0, 0));
                    Ok(pick(tp, fp, fn_))
                }
                Average::Macro => Ok(classes
                    .iter()
                    .map(|&(_, tp, fp, fn_, _)| pick(tp, fp, fn_))
                    .sum::<f64>()
                    / classes.len() as f64),
                Average::Weighted => Ok(classes
                    .iter()
                    .map(|&(_, tp, fp, fn_, support)| pick(tp, fp, fn_) * support as f64)
                    .sum::<f64>()
                    / n),
                Average::Micro => {
                    let (tp, fp, fn_) = classes
                        .iter()
                        .fold((0, 0, 0), |(a, b, c), &(_, tp, fp, fn_, _)| {
                            (a + tp, b + fp, c + fn_)
                        });
                    Ok(pick(tp, fp, fn_))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn multiclass_scores_from_a_known_confusion_matrix() {
        // Per class: 0 → P .5 R .5; 1 → P 2/3 R 2/3; 2 → P 1 R 1; supports 2, 3, 1.
        let y = [0.0, 0.0, 1.0, 1.0, 1.0, 2.0];
        let p = [0.0, 1.0, 1.0, 1.0, 0.0, 2.0];
        let s = |m, a| score(m, &p, &y, a).unwrap();
        close(s(TestMetric::Accuracy, None), 4.0 / 6.0);
        close(
            s(TestMetric::F1Score, Some(Average::Macro)),
            (0.5 + 2.0 / 3.0 + 1.0) / 3.0,
        );
        close(
            s(TestMetric::F1Score, None),
            (0.5 * 2.0 + 2.0 / 3.0 * 3.0 + 1.0) / 6.0,
        );
        close(s(TestMetric::Precision, Some(Average::Micro)), 4.0 / 6.0);
        close(s(TestMetric::Recall, Some(Average::Weighted)), 4.0 / 6.0);
        assert!(score(TestMetric::F1Score, &p, &y, Some(Average::Binary)).is_err());
    }

    #[test]
    fn binary_scores_count_class_one() {
        // tp 2, fp 1, fn 1.
        let y = [1.0, 1.0, 0.0, 0.0, 1.0];
        let p = [1.0, 0.0, 0.0, 1.0, 1.0];
        for m in [
            TestMetric::F1Score,
            TestMetric::Precision,
            TestMetric::Recall,
        ] {
            close(score(m, &p, &y, None).unwrap(), 2.0 / 3.0);
        }
        // No positive predicted: precision 0 rather than a division by zero.
        close(
            score(TestMetric::Precision, &[0.0; 5], &y, None).unwrap(),
            0.0,
        );
    }

    #[test]
    fn regression_scores_match_scikit_learn() {
        let y = [3.0, -0.5, 2.0, 7.0];
        let p = [2.5, 0.0, 2.0, 8.0];
        close(
            score(TestMetric::MeanSquareError, &p, &y, None).unwrap(),
            0.375,
        );
        close(
            score(TestMetric::MeanAbsoluteError, &p, &y, None).unwrap(),
            0.5,
        );
        // scikit-learn's documented example: 0.957…
        close(
            score(TestMetric::ExplainedVariance, &p, &y, None).unwrap(),
            0.957_173_447_537_473_2,
        );
    }

    #[test]
    fn names_parse_in_any_case_and_unknown_ones_list_the_valid() {
        assert_eq!(TestMetric::parse("f1_score").unwrap(), TestMetric::F1Score);
        assert_eq!(TestMetric::F1Score.tag(), "F1_SCORE");
        let err = TestMetric::parse("auc").unwrap_err();
        assert!(
            err.contains("ACCURACY") && err.contains("EXPLAINED_VARIANCE"),
            "{err}"
        );
        assert!(score(TestMetric::Accuracy, &[], &[], None).is_err());
    }
}
