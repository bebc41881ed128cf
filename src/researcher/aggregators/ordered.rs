//! [`OrderedFolder`]: fold replies in a fixed order as they arrive.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{AggregationError, Aggregator, align_parameters};
use crate::sandbox::types::Tensor;

/// Feeds a round's replies to an [`Aggregator`] in node-id order. A reply
/// that arrives before its predecessors waits — as its file on disk, not in
/// memory — and is folded as soon as every node before it has been.
#[derive(Debug)]
pub struct OrderedFolder {
    order: Vec<String>,
    next: usize,
    waiting: BTreeMap<String, Option<(u64, PathBuf)>>,
}

impl OrderedFolder {
    /// Fold replies of `nodes` (any order; they are sorted).
    pub fn new(mut nodes: Vec<String>) -> Self {
        nodes.sort();
        nodes.dedup();
        OrderedFolder {
            order: nodes,
            next: 0,
            waiting: BTreeMap::new(),
        }
    }

    /// Offer `node`'s parameter file (already verified) trained on `samples`
    /// rows; folds every reply that is now next in order, its tensors
    /// aligned to `global`'s. `loaded`, the file's tensors already aligned,
    /// spares reading it again when this reply is next; a reply that must
    /// wait keeps only its file.
    pub fn offer(
        &mut self,
        aggregator: &mut dyn Aggregator,
        global: &[Tensor],
        node: &str,
        samples: u64,
        params: PathBuf,
        loaded: Option<Vec<Tensor>>,
    ) -> Result<(), AggregationError> {
        match loaded {
            Some(tensors) if self.order.get(self.next).is_some_and(|n| n == node) => {
                aggregator.fold(node, samples, &tensors)?;
                self.next += 1;
            }
            _ => {
                self.waiting
                    .insert(node.to_string(), Some((samples, params)));
            }
        }
        self.advance(aggregator, global)
    }

    /// `node` was dropped from the round: fold the others without it.
    pub fn skip(
        &mut self,
        aggregator: &mut dyn Aggregator,
        global: &[Tensor],
        node: &str,
    ) -> Result<(), AggregationError> {
        self.waiting.insert(node.to_string(), None);
        self.advance(aggregator, global)
    }

    fn advance(
        &mut self,
        aggregator: &mut dyn Aggregator,
        global: &[Tensor],
    ) -> Result<(), AggregationError> {
        while let Some(node) = self.order.get(self.next) {
            let Some(entry) = self.waiting.remove(node) else {
                break;
            };
            if let Some((samples, path)) = entry {
                let (tensors, _) = crate::tensors::read_file(&path)
                    .map_err(|e| AggregationError::File(e.to_string()))?;
                let tensors = align_parameters(node, global, tensors)?;
                aggregator.fold(node, samples, &tensors)?;
            }
            self.next += 1;
        }
        Ok(())
    }

    /// Whether every node's reply has been folded.
    pub fn complete(&self) -> bool {
        self.next == self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    use super::*;
    use crate::researcher::aggregators::FedAvg;

    fn tensors(rng: &mut ChaCha8Rng, sizes: &[usize]) -> Vec<Tensor> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Tensor {
                name: format!("t{i}"),
                shape: vec![n as u32],
                // Values of very different magnitudes, where summation order shows.
                data: (0..n)
                    .map(|_| {
                        let scale = [1e-6f32, 1.0, 1e4][(rng.next_u32() % 3) as usize];
                        (rng.next_u32() as f32 / u32::MAX as f32 - 0.5) * scale
                    })
                    .collect(),
            })
            .collect()
    }

    /// FedAvg bytes of the same replies, offered in `order`, on `threads` threads.
    fn aggregate(
        dir: &std::path::Path,
        global: &[Tensor],
        replies: &[(String, u64)],
        order: &[usize],
        threads: usize,
    ) -> Vec<u8> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut agg = FedAvg::new();
            agg.start_round(global).unwrap();
            let mut folder = OrderedFolder::new(replies.iter().map(|(n, _)| n.clone()).collect());
            for &i in order {
                let (node, samples) = &replies[i];
                // As a round does: the reply is read and checked on arrival.
                let path = dir.join(format!("{node}.safetensors"));
                let (tensors, _) = crate::tensors::read_file(&path).unwrap();
                let loaded = align_parameters(node, global, tensors).unwrap();
                folder
                    .offer(&mut agg, global, node, *samples, path, Some(loaded))
                    .unwrap();
            }
            assert!(folder.complete());
            crate::tensors::to_bytes(&agg.finish().unwrap(), &BTreeMap::new()).unwrap()
        })
    }

    #[test]
    fn same_replies_give_the_same_bytes_in_any_order_on_any_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let sizes = [200_000, 3, 70_001];
        let global = tensors(&mut rng, &sizes);
        let mut replies = Vec::new();
        for i in 0..6 {
            let node = format!("node-{i}");
            let mut params = tensors(&mut rng, &sizes);
            // Files list tensors in their own order; the folder aligns them.
            params.reverse();
            std::fs::write(
                dir.path().join(format!("{node}.safetensors")),
                crate::tensors::to_bytes(&params, &BTreeMap::new()).unwrap(),
            )
            .unwrap();
            replies.push((node, 10 + rng.next_u32() as u64 % 1000));
        }
        let reference = aggregate(dir.path(), &global, &replies, &[0, 1, 2, 3, 4, 5], 1);
        for (order, threads) in [
            (vec![5, 4, 3, 2, 1, 0], 1),
            (vec![2, 5, 0, 3, 1, 4], 4),
            (vec![0, 1, 2, 3, 4, 5], 4),
            (vec![3, 0, 4, 1, 5, 2], 2),
        ] {
            assert!(
                aggregate(dir.path(), &global, &replies, &order, threads) == reference,
                "order {order:?} on {threads} threads"
            );
        }
    }
}
