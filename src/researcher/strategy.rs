//! Node selection strategies: which nodes train in a round, and what a
//! failed or silent node does to the round.

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ExperimentError, FederatedDataset};

/// What a node's failure (an error reply, bad parameters, or no answer by
/// the round deadline) does to the round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// The round fails, naming the node (Fed-BioMed's behaviour).
    #[default]
    Stop,
    /// The node is dropped from the round, with the reason in the history;
    /// the round aggregates the others if at least `min_nodes` succeeded.
    Discard,
}

/// Picks the nodes of each round. Implement it for a custom selection;
/// keep in `state` whatever must survive a breakpoint.
pub trait Strategy: Send {
    /// Name in history and breakpoints.
    fn name(&self) -> String;

    /// The nodes that train in `round` (1-based).
    fn sample_nodes(
        &mut self,
        training_data: &FederatedDataset,
        round: u32,
    ) -> Result<Vec<String>, ExperimentError>;

    /// What a failed node does to the round.
    fn failure_policy(&self) -> FailurePolicy {
        FailurePolicy::Stop
    }

    /// Fewest successful nodes a round may aggregate (with `Discard`).
    fn min_nodes(&self) -> usize {
        1
    }

    /// State to save in a breakpoint.
    fn state(&self) -> Value;

    /// Restore what [`Strategy::state`] saved.
    fn load_state(&mut self, state: &Value) -> Result<(), ExperimentError>;
}

fn no_nodes() -> ExperimentError {
    ExperimentError::NotDefined(
        "the training data has no node; search with other tags or nodes".into(),
    )
}

fn restore<T: serde::de::DeserializeOwned>(state: &Value) -> Result<T, ExperimentError> {
    serde_json::from_value(state.clone())
        .map_err(|e| ExperimentError::Breakpoint(format!("strategy state: {e}")))
}

/// Every node of the federated dataset, every round (Fed-BioMed's
/// `DefaultStrategy`), with a failure policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultStrategy {
    /// What a failed node does to the round.
    pub failure_policy: FailurePolicy,
    /// Fewest successful nodes a round may aggregate.
    pub min_nodes: usize,
}

impl Default for DefaultStrategy {
    fn default() -> Self {
        DefaultStrategy {
            failure_policy: FailurePolicy::Stop,
            min_nodes: 1,
        }
    }
}

impl Strategy for DefaultStrategy {
    fn name(&self) -> String {
        "default".into()
    }

    fn sample_nodes(
        &mut self,
        training_data: &FederatedDataset,
        _round: u32,
    ) -> Result<Vec<String>, ExperimentError> {
        let nodes = training_data.node_ids();
        if nodes.is_empty() {
            return Err(no_nodes());
        }
        Ok(nodes)
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.failure_policy
    }

    fn min_nodes(&self) -> usize {
        self.min_nodes
    }

    fn state(&self) -> Value {
        json!(self)
    }

    fn load_state(&mut self, state: &Value) -> Result<(), ExperimentError> {
        *self = restore(state)?;
        Ok(())
    }
}

/// A seeded random fraction of the nodes each round, at least `min_nodes`.
/// The sample of a round depends only on the seed, the round and the node
/// ids, so a resumed experiment samples as the uninterrupted one would.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingStrategy {
    /// Fraction of the nodes per round, in (0, 1].
    pub fraction: f64,
    /// Fewest nodes sampled, and fewest successes a round may aggregate.
    pub min_nodes: usize,
    /// Seed of the sampling.
    pub seed: u64,
    /// What a failed node does to the round.
    pub failure_policy: FailurePolicy,
}

impl SamplingStrategy {
    /// Check the settings.
    pub fn check(&self) -> Result<(), ExperimentError> {
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(ExperimentError::Argument(format!(
                "sampling fraction must be in (0, 1], not {}",
                self.fraction
            )));
        }
        if self.min_nodes == 0 {
            return Err(ExperimentError::Argument(
                "min_nodes must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Strategy for SamplingStrategy {
    fn name(&self) -> String {
        "sampling".into()
    }

    fn sample_nodes(
        &mut self,
        training_data: &FederatedDataset,
        round: u32,
    ) -> Result<Vec<String>, ExperimentError> {
        let nodes = training_data.node_ids();
        if nodes.is_empty() {
            return Err(no_nodes());
        }
        if nodes.len() < self.min_nodes {
            return Err(ExperimentError::Argument(format!(
                "min_nodes is {} but the training data has {} nodes",
                self.min_nodes,
                nodes.len()
            )));
        }
        let wanted = ((self.fraction * nodes.len() as f64).ceil() as usize)
            .clamp(self.min_nodes, nodes.len());
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (u64::from(round) << 32));
        let order = crate::dataset::split::permutation(nodes.len(), &mut rng);
        let mut sample: Vec<String> = order[..wanted].iter().map(|&i| nodes[i].clone()).collect();
        sample.sort();
        Ok(sample)
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.failure_policy
    }

    fn min_nodes(&self) -> usize {
        self.min_nodes
    }

    fn state(&self) -> Value {
        json!(self)
    }

    fn load_state(&mut self, state: &Value) -> Result<(), ExperimentError> {
        *self = restore(state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::wire::DatasetSummary;

    fn fds(n: usize) -> FederatedDataset {
        FederatedDataset::new(
            (0..n)
                .map(|i| {
                    (
                        format!("node-{i}"),
                        DatasetSummary {
                            dataset_id: format!("d{i}"),
                            name: String::new(),
                            tags: vec![],
                            description: String::new(),
                            data_type: "csv".into(),
                            shape: vec![10, 2],
                            columns: vec![],
                            dtypes: vec![],
                            target: None,
                            test_rows: None,
                            classes: Vec::new(),
                            image_target: None,
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn sampling_is_seeded_sized_and_restorable() {
        let mut s = SamplingStrategy {
            fraction: 0.3,
            min_nodes: 2,
            seed: 7,
            failure_policy: FailurePolicy::Discard,
        };
        let data = fds(10);
        let rounds: Vec<Vec<String>> = (1..=5).map(|r| s.sample_nodes(&data, r).unwrap()).collect();
        assert!(rounds.iter().all(|r| r.len() == 3));
        assert!(
            rounds.windows(2).any(|w| w[0] != w[1]),
            "samples change across rounds"
        );
        let mut again = SamplingStrategy {
            seed: 0,
            ..s.clone()
        };
        again.load_state(&s.state()).unwrap();
        assert_eq!(again.sample_nodes(&data, 3).unwrap(), rounds[2]);
        s.fraction = 0.01;
        assert_eq!(
            s.sample_nodes(&data, 1).unwrap().len(),
            2,
            "at least min_nodes"
        );
        assert!(
            SamplingStrategy {
                fraction: 0.0,
                ..s.clone()
            }
            .check()
            .is_err()
        );
        assert!(s.sample_nodes(&fds(1), 1).is_err());
    }
}
