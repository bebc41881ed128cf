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
    waiting: BTreeMap<String, (u64, PathBuf)>,
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
    /// aligned to `global`'s.
    pub fn offer(
        &mut self,
        aggregator: &mut dyn Aggregator,
        global: &[Tensor],
        node: &str,
        samples: u64,
        params: PathBuf,
    ) -> Result<(), AggregationError> {
        self.waiting.insert(node.to_string(), (samples, params));
        while let Some(node) = self.order.get(self.next) {
            let Some((samples, path)) = self.waiting.remove(node) else {
                break;
            };
            let (tensors, _) = crate::tensors::read_file(&path)
                .map_err(|e| AggregationError::File(e.to_string()))?;
            let tensors = align_parameters(node, global, tensors)?;
            aggregator.fold(node, samples, &tensors)?;
            self.next += 1;
        }
        Ok(())
    }

    /// Whether every node's reply has been folded.
    pub fn complete(&self) -> bool {
        self.next == self.order.len()
    }
}
