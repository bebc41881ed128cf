//! What happened in each round, kept by the experiment and written to
//! `history.json` in its folder.

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;

/// One node's part in a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRound {
    /// The node.
    pub node_id: String,
    /// Its dataset.
    pub dataset_id: String,
    /// Rows it trained on: its FedAvg weight.
    pub training_samples: u64,
    /// Updates it ran.
    pub updates: u64,
    /// Loss of its last update.
    pub final_loss: f32,
    /// Learning rate its plan reported.
    pub learning_rate: Option<f32>,
    /// Its training loop, ms.
    pub training_ms: f64,
    /// Its whole task (downloads, training, upload), ms.
    pub node_total_ms: f64,
    /// From request sent to parameters downloaded, measured by the researcher, ms.
    pub round_trip_ms: f64,
    /// SHA-256 of the parameters it sent.
    pub params_sha256: Sha256Digest,
}

/// A node dropped from a round under the `discard` failure policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroppedNode {
    /// The node.
    pub node_id: String,
    /// Why: its error, a bad reply, or no answer by the deadline.
    pub reason: String,
}

/// One completed round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// 1-based round number.
    pub round: u32,
    /// The seed sent to the nodes.
    pub seed: u64,
    /// The nodes the strategy picked for the round.
    pub sampled: Vec<String>,
    /// Each aggregated node's reply, in node order.
    pub nodes: Vec<NodeRound>,
    /// Nodes dropped under the `discard` policy, and why.
    pub dropped: Vec<DroppedNode>,
    /// SHA-256 of the aggregated parameters.
    pub global_sha256: Sha256Digest,
    /// Aggregated parameters of this round, relative to the experiment folder.
    pub global_path: String,
    /// Wall time of the round, ms.
    pub duration_ms: f64,
}

/// Every completed round, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The rounds.
    pub rounds: Vec<RoundRecord>,
}
