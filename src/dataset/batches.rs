//! The seeded order of mini-batches for one training task.
//!
//! Fed-BioMed's accounting: with `num_updates`, batches run epoch after epoch
//! (a fresh shuffle each epoch) until that many updates are done, the last
//! epoch partial; with `epochs`, each epoch runs all its batches, or the first
//! `batch_maxnum` of them. `dry_run` stops after one batch. The last batch of
//! an epoch may be smaller unless `drop_last`.

use rand_chacha::ChaCha8Rng;

use super::DatasetError;
use super::split::permutation;

/// How many updates to run and how to cut batches.
#[derive(Debug, Clone)]
pub struct BatchSchedule {
    n: usize,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    total: usize,
    per_epoch: usize,
    rng: ChaCha8Rng,
    order: Vec<usize>,
    epoch: usize,
    in_epoch: usize,
    done: usize,
}

/// The number of updates a task performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Exactly this many optimizer updates.
    Updates(usize),
    /// This many passes, each of at most `batch_maxnum` batches when set.
    Epochs {
        /// Passes over the data.
        epochs: usize,
        /// Cap on batches per pass.
        batch_maxnum: Option<usize>,
    },
}

impl BatchSchedule {
    /// A schedule over `n` samples.
    pub fn new(
        n: usize,
        batch_size: usize,
        shuffle: bool,
        drop_last: bool,
        budget: Budget,
        dry_run: bool,
        rng: ChaCha8Rng,
    ) -> Result<Self, DatasetError> {
        if batch_size == 0 {
            return Err(DatasetError::Invalid(
                "loader_args.batch_size must be at least 1".into(),
            ));
        }
        let batches = if drop_last {
            n / batch_size
        } else {
            n.div_ceil(batch_size)
        };
        if batches == 0 {
            return Err(DatasetError::Invalid(format!(
                "{n} training samples make no batch of {batch_size} with drop_last; lower batch_size"
            )));
        }
        let (per_epoch, total) = match budget {
            Budget::Updates(u) => (batches, u),
            Budget::Epochs {
                epochs,
                batch_maxnum,
            } => {
                let per = batch_maxnum
                    .filter(|&m| m > 0)
                    .map_or(batches, |m| m.min(batches));
                (per, epochs * per)
            }
        };
        let total = if dry_run { total.min(1) } else { total };
        Ok(BatchSchedule {
            n,
            batch_size,
            shuffle,
            drop_last,
            total,
            per_epoch,
            rng,
            order: Vec::new(),
            epoch: 0,
            in_epoch: per_epoch,
            done: 0,
        })
    }

    /// Number of updates the schedule yields.
    pub fn total(&self) -> usize {
        self.total
    }

    /// 1-based epoch of the last batch yielded.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// The next batch's sample indices, or `None` when the budget is spent.
    pub fn next_batch(&mut self) -> Option<Vec<usize>> {
        if self.done == self.total {
            return None;
        }
        if self.in_epoch == self.per_epoch {
            self.order = if self.shuffle {
                permutation(self.n, &mut self.rng)
            } else {
                (0..self.n).collect()
            };
            self.epoch += 1;
            self.in_epoch = 0;
        }
        let start = self.in_epoch * self.batch_size;
        let end = (start + self.batch_size).min(self.n);
        debug_assert!(!self.drop_last || end - start == self.batch_size);
        self.in_epoch += 1;
        self.done += 1;
        Some(self.order[start..end].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::from_seed([4; 32])
    }

    fn all(mut s: BatchSchedule) -> Vec<Vec<usize>> {
        std::iter::from_fn(|| s.next_batch()).collect()
    }

    #[test]
    fn updates_cross_epochs_and_reshuffle() {
        let batches =
            all(BatchSchedule::new(10, 4, true, false, Budget::Updates(5), false, rng()).unwrap());
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [4, 4, 2, 4, 4]
        );
        let mut first: Vec<usize> = batches[..3].concat();
        first.sort_unstable();
        assert_eq!(
            first,
            (0..10).collect::<Vec<_>>(),
            "an epoch covers every sample once"
        );
        assert_ne!(batches[0], batches[3], "the second epoch is shuffled anew");
    }

    #[test]
    fn epochs_with_batch_maxnum_drop_last_and_dry_run() {
        let budget = Budget::Epochs {
            epochs: 2,
            batch_maxnum: Some(2),
        };
        let s = BatchSchedule::new(10, 3, false, true, budget, false, rng()).unwrap();
        assert_eq!(s.total(), 4);
        assert_eq!(all(s)[2], vec![0, 1, 2]);
        let budget = Budget::Epochs {
            epochs: 3,
            batch_maxnum: None,
        };
        assert_eq!(
            BatchSchedule::new(10, 3, false, true, budget, true, rng())
                .unwrap()
                .total(),
            1
        );
        assert!(BatchSchedule::new(2, 3, false, true, budget, false, rng()).is_err());
        assert!(BatchSchedule::new(2, 0, false, false, budget, false, rng()).is_err());
    }
}
