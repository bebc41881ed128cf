//! Which samples a node trains on and which it holds out: the dataset's
//! designated test part, or a seeded `test_ratio` sample that stays the same
//! every round.

use rand_core::RngCore;

use super::DatasetError;
use crate::sandbox::random::StreamSeed;

/// How to split off validation rows: the dataset's designated test part, or
/// a fraction and the seed that picks them; and how much host memory the
/// prepared rows may take.
#[derive(Debug, Clone)]
pub struct Split {
    /// Fraction of rows held out, in [0, 1), when the dataset has no
    /// designated test part.
    pub test_ratio: f64,
    /// The dataset's own test part (a row is `true` when it is a test row):
    /// held out instead of a `test_ratio` sample, and never trained on.
    pub designated_test: Option<Vec<bool>>,
    /// Seed of the permutation that picks them.
    pub seed: StreamSeed,
    /// Bytes the prepared features and targets may take: the plan's memory
    /// budget, since the plan chooses how many columns to ask for and the
    /// host builds them before the plan's own cap could apply.
    pub max_bytes: usize,
}

/// Indices 0..n in a seeded order (Fisher–Yates). Written out rather than taken
/// from `rand` because a crate's shuffle may change between versions, and a
/// node's split must stay the same for a given seed.
pub fn permutation(n: usize, rng: &mut impl RngCore) -> Vec<usize> {
    let mut items: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}

/// The training and held-out sample indices of `n` samples, each sorted:
/// the designated test part when there is one, otherwise a seeded
/// `test_ratio` sample. At least one training sample must remain.
pub fn split_rows(n: usize, split: &Split) -> Result<(Vec<usize>, Vec<usize>), DatasetError> {
    if !(0.0..1.0).contains(&split.test_ratio) {
        return Err(DatasetError::Invalid(format!(
            "test_ratio must be in [0, 1), got {}",
            split.test_ratio
        )));
    }
    let (train_rows, test_rows) = match &split.designated_test {
        Some(test) if test.len() == n => {
            let (test, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|&r| test[r]);
            (train, test)
        }
        Some(test) => {
            return Err(DatasetError::Invalid(format!(
                "the test part marks {} rows of a {n}-row table",
                test.len()
            )));
        }
        None => {
            let n_test = (n as f64 * split.test_ratio).floor() as usize;
            let mut order = permutation(n, &mut split.seed.rng());
            let mut test_rows = order.split_off(n - n_test);
            let mut train_rows = order;
            train_rows.sort_unstable();
            test_rows.sort_unstable();
            (train_rows, test_rows)
        }
    };
    if train_rows.is_empty() {
        return Err(DatasetError::Invalid(
            "no training rows left after the validation split".into(),
        ));
    }
    Ok((train_rows, test_rows))
}
