//! What a node's reply must satisfy before the researcher believes it.
//!
//! Pure functions of the reply and what the researcher already knows (the
//! node asked, its dataset and row count from the search): a node is a
//! stranger on the network, and a number it sends decides weights, ε and
//! what the history says. Downloading and reading the parameters is the
//! round's job; these say whether the reply is worth downloading.

use crate::researcher::FederatedDataset;
use crate::researcher::history::NodeRound;
use crate::wire::ValidationScore;

/// The most samples any node may claim: more rows than any dataset a node
/// could hold, yet small enough that sums over millions of nodes cannot
/// overflow, nor lose their integer exactness as f64 weights.
pub const MAX_SAMPLES: u64 = 1 << 40;

/// The rows of `node`'s dataset as its search reply gave them, capped by
/// [`MAX_SAMPLES`]: the most samples a reply may claim.
pub(super) fn dataset_rows(fds: &FederatedDataset, node: &str) -> u64 {
    fds.dataset(node)
        .and_then(|d| d.shape.first().copied())
        .filter(|rows| *rows > 0)
        .map_or(MAX_SAMPLES, |rows| rows.min(MAX_SAMPLES))
}

/// The rows `node` validates on at most: its designated test part when it
/// has one, otherwise its rows (a `test_ratio` sample of them).
pub(super) fn validation_rows(fds: &FederatedDataset, node: &str) -> u64 {
    fds.dataset(node)
        .and_then(|d| d.test_rows)
        .filter(|rows| *rows > 0)
        .map_or_else(|| dataset_rows(fds, node), |rows| rows.min(MAX_SAMPLES))
}

/// A train reply to `node`'s request: from that node, on its dataset, with
/// a sample count and numbers in range.
pub(super) fn check_train_reply(
    node: &str,
    fds: &FederatedDataset,
    record: &NodeRound,
) -> Result<(), String> {
    if record.node_id != node {
        return Err(format!(
            "a reply to {node}'s request came from {}",
            record.node_id
        ));
    }
    let expected = fds
        .dataset(node)
        .map(|d| d.dataset_id.as_str())
        .unwrap_or_default();
    if record.dataset_id != expected {
        return Err(format!(
            "node {node} trained on dataset {}, not {expected}",
            record.dataset_id
        ));
    }
    let rows = dataset_rows(fds, node);
    if record.training_samples == 0 || record.training_samples > rows {
        return Err(format!(
            "node {node} reported {} training samples; a node's dataset has between 1 and {rows} rows",
            record.training_samples
        ));
    }
    check_reported_numbers(node, validation_rows(fds, node), record)
}

/// A validation reply to `node`'s request: from that node, on its dataset,
/// with a score on at most its rows.
pub(super) fn check_validation_reply(
    node: &str,
    fds: &FederatedDataset,
    from: &str,
    dataset_id: &str,
    score: &ValidationScore,
) -> Result<(), String> {
    if from != node || fds.dataset(node).map(|d| d.dataset_id.as_str()) != Some(dataset_id) {
        return Err(format!(
            "a validation reply from {from} on {dataset_id} does not match the request"
        ));
    }
    check_score(node, validation_rows(fds, node), score)
}

/// A validation score must be computed on at most `rows` samples, and its
/// confusion matrix, if any, be square (at most 100 classes) and count
/// exactly those samples, or (segmentation) the same number of pixels of
/// each, at most 4096 × 4096. Its value may be infinite: a diverged model
/// honestly scores so.
/// The most pixels of one mask a confusion matrix counts: plan specs ask
/// for at most 4096 × 4096.
const MAX_PIXELS_PER_SAMPLE: u64 = 4096 * 4096;

fn check_score(node: &str, rows: u64, score: &ValidationScore) -> Result<(), String> {
    if score.samples == 0 || score.samples > rows {
        return Err(format!(
            "node {node} reported a score on {} samples; its dataset has between 1 and {rows} rows",
            score.samples
        ));
    }
    if let Some(matrix) = &score.confusion {
        let n = matrix.len();
        let square =
            n <= crate::training::MAX_CONFUSION_CLASSES && matrix.iter().all(|r| r.len() == n);
        let total = matrix
            .iter()
            .flatten()
            .try_fold(0u64, |sum, &c| sum.checked_add(c));
        let per_sample = total
            .filter(|t| t % score.samples == 0)
            .map(|t| t / score.samples);
        if !square || !per_sample.is_some_and(|p| (1..=MAX_PIXELS_PER_SAMPLE).contains(&p)) {
            return Err(format!(
                "node {node} reported a confusion matrix that is not square (at most {} classes) or does not count its {} samples (or as many pixels of each)",
                crate::training::MAX_CONFUSION_CLASSES,
                score.samples
            ));
        }
    }
    Ok(())
}

/// The numbers of a train reply besides its sample count are in range: its
/// updates, learning rate, loss, scores (on at most `validation_rows`) and
/// privacy figures.
fn check_reported_numbers(
    node: &str,
    validation_rows: u64,
    record: &NodeRound,
) -> Result<(), String> {
    if record.updates > MAX_SAMPLES {
        return Err(format!(
            "node {node} reported {} updates, more than any round runs",
            record.updates
        ));
    }
    if record.learning_rate.is_some_and(|lr| !lr.is_finite()) {
        return Err(format!("node {node} reported a non-finite learning rate"));
    }
    for score in [&record.validation_global, &record.validation_local]
        .into_iter()
        .flatten()
    {
        check_score(node, validation_rows, score)?;
    }
    if let Some(p) = &record.privacy {
        let valid = p.noise_multiplier.is_finite()
            && p.noise_multiplier > 0.0
            && (0.0..=1.0).contains(&p.sampling_rate)
            && p.steps <= MAX_SAMPLES;
        if !valid {
            return Err(format!(
                "node {node} reported privacy figures out of range (noise multiplier {}, sampling rate {}, {} steps)",
                p.noise_multiplier, p.sampling_rate, p.steps
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::digest::Sha256Digest;
    use crate::wire::{DatasetSummary, PrivacySpent};

    fn fds() -> FederatedDataset {
        let summary = DatasetSummary {
            dataset_id: "ds-a".into(),
            name: "a".into(),
            tags: vec!["t".into()],
            description: String::new(),
            data_type: "csv".into(),
            shape: vec![100, 5],
            columns: Vec::new(),
            dtypes: Vec::new(),
            target: None,
            test_rows: None,
            classes: Vec::new(),
            image_target: None,
        };
        FederatedDataset::new(BTreeMap::from([("node-a".to_string(), summary)]))
    }

    fn reply() -> NodeRound {
        NodeRound {
            node_id: "node-a".into(),
            dataset_id: "ds-a".into(),
            training_samples: 80,
            updates: 10,
            final_loss: 0.5,
            private: false,
            learning_rate: Some(0.1),
            training_ms: 1.0,
            node_total_ms: 2.0,
            data_ms: 0.0,
            sandbox_ms: 0.0,
            transfer_ms: 0.0,
            round_trip_ms: 0.0,
            params_sha256: Sha256Digest::of(b"p"),
            validation_global: None,
            validation_local: None,
            privacy: None,
        }
    }

    fn score(samples: u64) -> ValidationScore {
        ValidationScore {
            metric: "ACCURACY".into(),
            value: f64::INFINITY,
            samples,
            confusion: None,
        }
    }

    #[test]
    fn an_honest_train_reply_passes() {
        assert_eq!(check_train_reply("node-a", &fds(), &reply()), Ok(()));
    }

    #[test]
    fn each_lie_in_a_train_reply_is_named() {
        type Lie = fn(&mut NodeRound);
        let cases: Vec<(Lie, &str)> = vec![
            (|r| r.node_id = "node-b".into(), "came from node-b"),
            (
                |r| r.dataset_id = "ds-z".into(),
                "trained on dataset ds-z, not ds-a",
            ),
            (|r| r.training_samples = 0, "reported 0 training samples"),
            (|r| r.training_samples = 101, "between 1 and 100 rows"),
            (
                |r| r.updates = MAX_SAMPLES + 1,
                "updates, more than any round runs",
            ),
            (
                |r| r.learning_rate = Some(f32::NAN),
                "non-finite learning rate",
            ),
            (
                |r| r.validation_local = Some(score(101)),
                "a score on 101 samples",
            ),
            (
                |r| {
                    r.privacy = Some(PrivacySpent {
                        mode: "local".into(),
                        noise_multiplier: 1.0,
                        sampling_rate: 1.5,
                        steps: 3,
                    })
                },
                "privacy figures out of range",
            ),
        ];
        for (lie, expected) in cases {
            let mut record = reply();
            lie(&mut record);
            let err = check_train_reply("node-a", &fds(), &record).expect_err(expected);
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
    }

    #[test]
    fn a_validation_reply_must_match_its_request_and_rows() {
        let fds = fds();
        assert_eq!(
            check_validation_reply("node-a", &fds, "node-a", "ds-a", &score(100)),
            Ok(())
        );
        for (from, dataset, samples, expected) in [
            ("node-b", "ds-a", 1, "does not match the request"),
            ("node-a", "ds-b", 1, "does not match the request"),
            ("node-a", "ds-a", 0, "a score on 0 samples"),
            ("node-a", "ds-a", 101, "a score on 101 samples"),
        ] {
            let err = check_validation_reply("node-a", &fds, from, dataset, &score(samples))
                .expect_err(expected);
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
    }

    #[test]
    fn a_designated_test_part_bounds_the_validation_samples() {
        let mut summary = fds().dataset("node-a").cloned().expect("node-a");
        summary.test_rows = Some(300);
        let fds = FederatedDataset::new(BTreeMap::from([("node-a".to_string(), summary)]));
        assert_eq!(validation_rows(&fds, "node-a"), 300);
        let mut record = reply();
        record.validation_global = Some(score(300));
        assert_eq!(check_train_reply("node-a", &fds, &record), Ok(()));
        record.validation_global = Some(score(301));
        assert!(check_train_reply("node-a", &fds, &record).is_err());
        record.validation_global = None;
        record.training_samples = 101;
        assert!(check_train_reply("node-a", &fds, &record).is_err());
    }

    #[test]
    fn a_confusion_matrix_must_be_square_and_count_the_samples() {
        let with = |matrix: Vec<Vec<u64>>| {
            let mut score = score(4);
            score.value = 0.5;
            score.confusion = Some(matrix);
            let mut record = reply();
            record.validation_local = Some(score);
            check_train_reply("node-a", &fds(), &record)
        };
        assert_eq!(with(vec![vec![2, 1], vec![0, 1]]), Ok(()));
        // Segmentation: 4 masks of 3 pixels each.
        assert_eq!(with(vec![vec![6, 1], vec![2, 3]]), Ok(()));
        for bad in [
            vec![vec![2, 1], vec![0, 2]],
            vec![vec![0, 0], vec![0, 0]],
            vec![vec![2, 1, 0], vec![1]],
            vec![vec![u64::MAX, 5], vec![0, 0]],
        ] {
            assert!(with(bad).unwrap_err().contains("confusion matrix"));
        }
    }

    #[test]
    fn a_dataset_without_rows_is_capped_at_the_largest_claim() {
        let mut fds = fds();
        assert_eq!(dataset_rows(&fds, "node-a"), 100);
        assert_eq!(dataset_rows(&fds, "node-z"), MAX_SAMPLES);
        fds = FederatedDataset::new(BTreeMap::new());
        assert_eq!(dataset_rows(&fds, "node-a"), MAX_SAMPLES);
    }
}
