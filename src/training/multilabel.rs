//! Validation metrics for multi-label classification, as scikit-learn defines
//! them for a label-indicator matrix: every sample carries `labels` yes/no
//! targets, the plan predicts each label's probability, and a label is
//! decided yes at 0.5.

use super::scores::{Average, TestMetric};

/// (true positives, false positives, false negatives, support) of label `l`.
fn counts(decided: &[bool], targets: &[f32], labels: usize, l: usize) -> (u64, u64, u64, u64) {
    let (mut tp, mut fp, mut fn_, mut support) = (0, 0, 0, 0);
    for (row, truth) in decided
        .chunks_exact(labels)
        .zip(targets.chunks_exact(labels))
    {
        let (p, t) = (row[l], truth[l] == 1.0);
        tp += u64::from(p && t);
        fp += u64::from(p && !t);
        fn_ += u64::from(!p && t);
        support += u64::from(t);
    }
    (tp, fp, fn_, support)
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Precision, recall or F1 from one label's (or the pooled) counts.
fn from_counts(metric: TestMetric, (tp, fp, fn_, _): (u64, u64, u64, u64)) -> f64 {
    let (precision, recall) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
    match metric {
        TestMetric::Precision => precision,
        TestMetric::Recall => recall,
        _ if precision + recall == 0.0 => 0.0,
        _ => 2.0 * precision * recall / (precision + recall),
    }
}

/// `metric` of the probabilities `outputs` (`[rows, labels]`) against 0/1
/// `targets` of the same shape. ACCURACY is the fraction of samples whose
/// every label is right (scikit-learn's subset accuracy); F1_SCORE,
/// PRECISION and RECALL average over labels (`macro` by default, `micro`
/// from pooled counts, `weighted` by each label's positives); AUC is the
/// mean over the labels that have both values among the targets.
pub fn score_labels(
    metric: TestMetric,
    outputs: &[f32],
    labels: usize,
    targets: &[f32],
    average: Option<Average>,
) -> Result<f64, String> {
    if labels == 0 || outputs.len() != targets.len() || !targets.len().is_multiple_of(labels) {
        return Err(format!(
            "{} outputs for {} targets of {labels} labels",
            outputs.len(),
            targets.len()
        ));
    }
    if targets.is_empty() {
        return Err("no samples to score".into());
    }
    if let Some(bad) = outputs.iter().find(|v| !v.is_finite()) {
        return Err(format!(
            "the plan predicted {bad}; label probabilities must be finite"
        ));
    }
    let decided: Vec<bool> = outputs.iter().map(|&p| p >= 0.5).collect();
    let rows = targets.len() / labels;
    match metric {
        TestMetric::Accuracy => {
            let right = decided
                .chunks_exact(labels)
                .zip(targets.chunks_exact(labels))
                .filter(|(d, t)| d.iter().zip(*t).all(|(&d, &t)| d == (t == 1.0)))
                .count();
            Ok(right as f64 / rows as f64)
        }
        TestMetric::F1Score | TestMetric::Precision | TestMetric::Recall => {
            let per_label: Vec<(u64, u64, u64, u64)> = (0..labels)
                .map(|l| counts(&decided, targets, labels, l))
                .collect();
            match average.unwrap_or(Average::Macro) {
                Average::Binary => Err(
                    "average `binary` scores one label; a multi-label plan is averaged `macro`, `micro` or `weighted`"
                        .into(),
                ),
                Average::Macro => Ok(per_label
                    .iter()
                    .map(|&c| from_counts(metric, c))
                    .sum::<f64>()
                    / labels as f64),
                Average::Micro => {
                    let pooled = per_label.iter().fold((0, 0, 0, 0), |a, c| {
                        (a.0 + c.0, a.1 + c.1, a.2 + c.2, a.3 + c.3)
                    });
                    Ok(from_counts(metric, pooled))
                }
                Average::Weighted => {
                    let total: u64 = per_label.iter().map(|c| c.3).sum();
                    Ok(per_label
                        .iter()
                        .map(|&c| from_counts(metric, c) * ratio(c.3, total))
                        .sum())
                }
            }
        }
        TestMetric::Auc => {
            let per_label: Vec<f64> = (0..labels)
                .filter_map(|l| {
                    let scores: Vec<f32> = outputs.chunks_exact(labels).map(|r| r[l]).collect();
                    let truth: Vec<f32> = targets.chunks_exact(labels).map(|r| r[l]).collect();
                    super::scores::auc(&scores, 1, &truth).ok()
                })
                .collect();
            if per_label.is_empty() {
                return Err("AUC needs a label with both values among the samples".into());
            }
            Ok(per_label.iter().sum::<f64>() / per_label.len() as f64)
        }
        other => Err(format!(
            "{} scores values; a multi-label plan is scored by ACCURACY, F1_SCORE, PRECISION, RECALL or AUC",
            other.tag()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scikit-learn 1.x on y_true = [[1,0,1],[0,1,0],[1,1,0],[0,0,1]] and
    /// the probabilities below (decided at 0.5: [[1,0,0],[0,1,0],[1,0,0],
    /// [1,0,1]]): accuracy_score 0.25; f1_score macro 0.7111…, micro
    /// 0.7272…, weighted 0.7111…; precision micro 0.8; recall micro 0.6666…;
    /// roc_auc_score (macro) 0.9166….
    #[test]
    fn matches_scikit_learn_on_a_small_example() {
        let targets = [1., 0., 1., 0., 1., 0., 1., 1., 0., 0., 0., 1.];
        let outputs = [0.9, 0.2, 0.25, 0.1, 0.8, 0.3, 0.7, 0.45, 0.2, 0.6, 0.1, 0.9];
        let s = |m, a| score_labels(m, &outputs, 3, &targets, a).unwrap();
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        close(s(TestMetric::Accuracy, None), 0.25);
        close(s(TestMetric::F1Score, None), 32.0 / 45.0);
        close(s(TestMetric::F1Score, Some(Average::Micro)), 8.0 / 11.0);
        close(s(TestMetric::F1Score, Some(Average::Weighted)), 32.0 / 45.0);
        close(s(TestMetric::Precision, Some(Average::Micro)), 0.8);
        close(s(TestMetric::Recall, Some(Average::Micro)), 2.0 / 3.0);
        close(s(TestMetric::Auc, None), 11.0 / 12.0);
        let err = score_labels(
            TestMetric::F1Score,
            &outputs,
            3,
            &targets,
            Some(Average::Binary),
        );
        assert!(err.unwrap_err().contains("macro"));
        let err = score_labels(TestMetric::MeanSquareError, &outputs, 3, &targets, None);
        assert!(err.unwrap_err().contains("scores values"));
        assert!(score_labels(TestMetric::Accuracy, &outputs[..11], 3, &targets, None).is_err());
    }
}
