//! Validation metrics by name, as Fed-BioMed's `test_metric` offers them
//! (scikit-learn's definitions): computed by the host from the plan's
//! predictions, so a plan cannot report a score it did not earn.

use serde::{Deserialize, Serialize};

use crate::sandbox::types::Task;

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
    /// Area under the ROC curve of the plan's probabilities: binary, or
    /// one-vs-rest averaged over the classes present (macro).
    Auc,
    /// Of segmentation masks: 2·|P∩T| / (|P| + |T|) over every held-out
    /// pixel, per class but the background (class 0), averaged over them.
    Dice,
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

const NAMES: [(&str, TestMetric); 9] = [
    ("ACCURACY", TestMetric::Accuracy),
    ("F1_SCORE", TestMetric::F1Score),
    ("PRECISION", TestMetric::Precision),
    ("RECALL", TestMetric::Recall),
    ("MEAN_SQUARE_ERROR", TestMetric::MeanSquareError),
    ("MEAN_ABSOLUTE_ERROR", TestMetric::MeanAbsoluteError),
    ("EXPLAINED_VARIANCE", TestMetric::ExplainedVariance),
    ("AUC", TestMetric::Auc),
    ("DICE", TestMetric::Dice),
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
            TestMetric::Accuracy
                | TestMetric::F1Score
                | TestMetric::Precision
                | TestMetric::Recall
                | TestMetric::Auc
                | TestMetric::Dice
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

/// A plan's predictions of some rows: its `predict` outputs, `width` per
/// row (probabilities for classification), and the decision taken from them.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicted {
    /// Row-major `[rows, width]`.
    pub outputs: Vec<f32>,
    /// Outputs per row.
    pub width: usize,
    /// The class index (or value) chosen for each row.
    pub decisions: Vec<f32>,
}

/// `metric` of `predicted` against `targets`: AUC from the probabilities,
/// every other metric from the decisions (see [`score`]).
pub fn score_predicted(
    metric: TestMetric,
    predicted: &Predicted,
    targets: &[f32],
    average: Option<Average>,
) -> Result<f64, String> {
    match metric {
        TestMetric::Auc if predicted.outputs.is_empty() && !targets.is_empty() => Err(format!(
            "AUC is computed for plans of at most 1000 classes, not {}",
            predicted.width
        )),
        TestMetric::Auc => auc(&predicted.outputs, predicted.width, targets),
        other => score(other, &predicted.decisions, targets, average),
    }
}

/// Area under the ROC curve of `scores` for the rows whose `positive` is
/// true: the probability that a positive row scores above a negative one,
/// ties counting half (mid-ranks), as scikit-learn's `roc_auc_score`.
fn binary_auc(scores: &[f32], positive: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // Ranks start..end (1-based start+1..=end) share their mean.
        let mid = (start + 1 + end) as f64 / 2.0;
        rank_sum += mid * order[start..end].iter().filter(|&&i| positive[i]).count() as f64;
        start = end;
    }
    let p = positive.iter().filter(|&&x| x).count() as f64;
    let n = positive.len() as f64 - p;
    (p > 0.0 && n > 0.0).then(|| (rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// AUC of `outputs` (`width` per row) against class-index `targets`: binary
/// for one output per row, one-vs-rest averaged over the classes present
/// otherwise. Needs at least two classes among the targets.
pub fn auc(outputs: &[f32], width: usize, targets: &[f32]) -> Result<f64, String> {
    if width == 0 || outputs.len() != targets.len() * width {
        return Err(format!(
            "{} outputs for {} rows of {width}",
            outputs.len(),
            targets.len()
        ));
    }
    if let Some(bad) = outputs.iter().find(|v| !v.is_finite()) {
        return Err(format!("the plan predicted {bad}; AUC needs finite scores"));
    }
    let too_few = || "AUC needs rows of at least two classes".to_string();
    if width == 1 {
        let positive: Vec<bool> = targets.iter().map(|&t| t == 1.0).collect();
        return binary_auc(outputs, &positive).ok_or_else(too_few);
    }
    let per_class: Vec<f64> = (0..width)
        .filter_map(|class| {
            let scores: Vec<f32> = outputs.chunks_exact(width).map(|row| row[class]).collect();
            let positive: Vec<bool> = targets.iter().map(|&t| t == class as f32).collect();
            binary_auc(&scores, &positive)
        })
        .collect();
    if per_class.is_empty() {
        return Err(too_few());
    }
    Ok(per_class.iter().sum::<f64>() / per_class.len() as f64)
}

/// The most classes a confusion matrix is kept for (it travels in replies).
pub const MAX_CONFUSION_CLASSES: usize = 100;

/// The confusion matrix of `predicted` for a classification `task`.
pub fn task_confusion(
    task: &Task,
    predicted: &Predicted,
    targets: &[f32],
) -> Option<Vec<Vec<u64>>> {
    let classes = match task {
        Task::BinaryClassification => 2,
        Task::MulticlassClassification(n) | Task::Segmentation(n) => *n as usize,
        Task::Regression | Task::MultiLabelClassification(_) => return None,
    };
    confusion(&predicted.decisions, targets, classes)
}

/// `metric` of `predicted` against `targets` for the plan's `task`: a
/// multi-label task is scored label by label from the probabilities
/// ([`super::multilabel::score_labels`]), any other as [`score_predicted`].
pub fn score_task(
    task: &Task,
    metric: TestMetric,
    predicted: &Predicted,
    targets: &[f32],
    average: Option<Average>,
) -> Result<f64, String> {
    match (task, metric) {
        (Task::Segmentation(n), TestMetric::Dice) => {
            super::dice::dice(&predicted.decisions, targets, *n as usize)
        }
        (Task::Segmentation(_), TestMetric::Auc) => Err(
            "AUC ranks one probability per sample; score masks by DICE, or pixel by pixel by ACCURACY, F1_SCORE, PRECISION or RECALL".into(),
        ),
        (_, TestMetric::Dice) => Err(DICE_ON_CLASSES.into()),
        (Task::MultiLabelClassification(labels), _) => super::multilabel::score_labels(
            metric,
            &predicted.outputs,
            *labels as usize,
            targets,
            average,
        ),
        _ => score_predicted(metric, predicted, targets, average),
    }
}

/// Why DICE is refused for a task of classes per sample.
const DICE_ON_CLASSES: &str = "DICE scores segmentation masks; for classes per sample use F1_SCORE (the same formula over samples)";

/// Counts of (true class, decided class) over the rows, `classes` × `classes`;
/// `None` above [`MAX_CONFUSION_CLASSES`] or for labels outside the classes.
pub fn confusion(decisions: &[f32], targets: &[f32], classes: usize) -> Option<Vec<Vec<u64>>> {
    if classes > MAX_CONFUSION_CLASSES {
        return None;
    }
    let mut matrix = vec![vec![0u64; classes]; classes];
    let index = |v: f32| (v >= 0.0 && v.fract() == 0.0).then_some(v as usize);
    for (&d, &t) in decisions.iter().zip(targets) {
        *matrix.get_mut(index(t)?)?.get_mut(index(d)?)? += 1;
    }
    Some(matrix)
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
        TestMetric::Auc => Err(
            "AUC scores the plan's probabilities, not its decisions; use score_predicted".into(),
        ),
        TestMetric::Dice => Err(DICE_ON_CLASSES.into()),
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
    fn auc_matches_scikit_learn_binary_with_ties_and_one_vs_rest() {
        // roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        close(
            auc(&[0.1, 0.4, 0.35, 0.8], 1, &[0.0, 0.0, 1.0, 1.0]).unwrap(),
            0.75,
        );
        // A tie between a positive and a negative counts half.
        close(auc(&[0.5, 0.5, 0.9], 1, &[0.0, 1.0, 1.0]).unwrap(), 0.75);
        // One-vs-rest, macro (roc_auc_score(y, p, multi_class="ovr")):
        // classes 0 and 2 rank their row first (1.0); class 1's row beats
        // row 0 and ties row 2, (1 + 0.5) / 2 = 0.75.
        let y = [0.0, 1.0, 2.0];
        let p = [0.8, 0.1, 0.1, 0.3, 0.4, 0.3, 0.1, 0.4, 0.5];
        close(auc(&p, 3, &y).unwrap(), (1.0 + 0.75 + 1.0) / 3.0);
        assert!(
            auc(&[0.2, 0.3], 1, &[1.0, 1.0])
                .unwrap_err()
                .contains("two classes")
        );
        assert!(
            auc(&[f32::NAN, 0.3], 1, &[0.0, 1.0])
                .unwrap_err()
                .contains("finite")
        );
        assert!(score(TestMetric::Auc, &[1.0], &[1.0], None).is_err());
        let predicted = Predicted {
            outputs: vec![0.1, 0.4, 0.35, 0.8],
            width: 1,
            decisions: vec![0.0, 0.0, 0.0, 1.0],
        };
        let targets = [0.0, 0.0, 1.0, 1.0];
        close(
            score_predicted(TestMetric::Auc, &predicted, &targets, None).unwrap(),
            0.75,
        );
        close(
            score_predicted(TestMetric::Accuracy, &predicted, &targets, None).unwrap(),
            0.75,
        );
    }

    #[test]
    fn the_confusion_matrix_counts_true_by_decided_class() {
        let m = confusion(&[0.0, 1.0, 1.0, 2.0], &[0.0, 1.0, 2.0, 2.0], 3).unwrap();
        assert_eq!(m, vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 1]]);
        assert_eq!(
            confusion(&[0.0], &[3.0], 3),
            None,
            "a label outside the classes"
        );
        assert_eq!(confusion(&[0.0], &[0.0], MAX_CONFUSION_CLASSES + 1), None);
    }

    #[test]
    fn names_parse_in_any_case_and_unknown_ones_list_the_valid() {
        assert_eq!(TestMetric::parse("f1_score").unwrap(), TestMetric::F1Score);
        assert_eq!(TestMetric::F1Score.tag(), "F1_SCORE");
        assert_eq!(TestMetric::parse("auc").unwrap(), TestMetric::Auc);
        let err = TestMetric::parse("roc").unwrap_err();
        assert!(
            err.contains("ACCURACY") && err.contains("EXPLAINED_VARIANCE"),
            "{err}"
        );
        assert!(score(TestMetric::Accuracy, &[], &[], None).is_err());
    }

    #[test]
    fn masks_are_scored_by_dice_and_refuse_auc_and_classes_refuse_dice() {
        let t = [0.0, 1.0, 1.0, 0.0, 1.0];
        let p = [0.0, 1.0, 0.0, 1.0, 1.0];
        let seg = Task::Segmentation(2);
        let predicted = Predicted {
            outputs: Vec::new(),
            width: 2,
            decisions: p.to_vec(),
        };
        let f1 = score(TestMetric::F1Score, &p, &t, None).unwrap();
        let dice = score_task(&seg, TestMetric::Dice, &predicted, &t, None).unwrap();
        assert!(
            (dice - f1).abs() < 1e-12,
            "two classes: Dice is F1 of class 1"
        );
        assert!(
            score_task(&seg, TestMetric::Auc, &predicted, &t, None)
                .unwrap_err()
                .contains("DICE")
        );
        let err = score_task(
            &Task::BinaryClassification,
            TestMetric::Dice,
            &predicted,
            &t,
            None,
        )
        .unwrap_err();
        assert!(err.contains("F1_SCORE"), "{err}");
        assert_eq!(
            task_confusion(&seg, &predicted, &t),
            Some(vec![vec![1, 1], vec![1, 2]])
        );
    }
}
