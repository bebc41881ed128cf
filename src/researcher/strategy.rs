//! Node selection strategies: which nodes train in a round.

use serde_json::{Value, json};

use super::{ExperimentError, FederatedDataset};

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

    /// State to save in a breakpoint.
    fn state(&self) -> Value;

    /// Restore what [`Strategy::state`] saved.
    fn load_state(&mut self, state: &Value) -> Result<(), ExperimentError>;
}

/// Every node of the federated dataset, every round; a round fails if any of
/// them fails (Fed-BioMed's `DefaultStrategy`).
#[derive(Debug, Default, Clone)]
pub struct DefaultStrategy;

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
            return Err(ExperimentError::NotDefined(
                "the training data has no node; search with other tags or nodes".into(),
            ));
        }
        Ok(nodes)
    }

    fn state(&self) -> Value {
        json!({})
    }

    fn load_state(&mut self, _state: &Value) -> Result<(), ExperimentError> {
        Ok(())
    }
}
