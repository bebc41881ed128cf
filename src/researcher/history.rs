//! What happened in each round, kept by the experiment and written to
//! `history.json` in its folder.

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::wire::{PrivacySpent, ValidationScore};

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
    /// Loss of its last update (NaN when withheld: `private`).
    #[serde(with = "crate::wire::float::f32_any")]
    pub final_loss: f32,
    /// The node ran in privacy mode: loss, the plan's learning rate and
    /// timing, logs and error details stayed on the node.
    #[serde(default)]
    pub private: bool,
    /// Learning rate its plan reported.
    #[serde(with = "crate::wire::float::opt_f32_any")]
    pub learning_rate: Option<f32>,
    /// Its training loop, ms.
    pub training_ms: f64,
    /// Its whole task (downloads, training, upload), ms.
    pub node_total_ms: f64,
    /// Of which reading and preparing its data and building batches, ms.
    #[serde(default)]
    pub data_ms: f64,
    /// Of which inside the plan's training steps (sandbox compute), ms.
    #[serde(default)]
    pub sandbox_ms: f64,
    /// Of which downloading the plan and parameters and uploading its own, ms.
    #[serde(default)]
    pub transfer_ms: f64,
    /// From request sent to parameters downloaded, measured by the researcher, ms.
    pub round_trip_ms: f64,
    /// SHA-256 of the parameters it sent.
    pub params_sha256: Sha256Digest,
    /// Its score of the global parameters it received (`test_on_global_updates`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_global: Option<ValidationScore>,
    /// Its score of the parameters it trained (`test_on_local_updates`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_local: Option<ValidationScore>,
    /// The differential privacy it applied (`dp_args`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacySpent>,
}

/// A node's privacy budget spent so far in the experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEpsilon {
    /// The node.
    pub node_id: String,
    /// ε of every round so far, composed by the RDP accountant.
    pub epsilon: f64,
    /// The δ it holds for.
    pub delta: f64,
}

/// One node's score in the final validation round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeValidation {
    /// The node.
    pub node_id: String,
    /// Its dataset.
    pub dataset_id: String,
    /// Its score of the final global parameters.
    pub validation: ValidationScore,
}

/// The validation-only round `run` adds after the last round when
/// `test_on_global_updates` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalValidation {
    /// The round whose global parameters were scored.
    pub round: u32,
    /// Every node that answered, in node order.
    pub nodes: Vec<NodeValidation>,
    /// Nodes that failed or did not answer, and why.
    pub failed: Vec<DroppedNode>,
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
    /// Privacy spent by each node so far, when `dp_args` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privacy: Vec<NodeEpsilon>,
}

/// Every completed round, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The rounds.
    pub rounds: Vec<RoundRecord>,
    /// The final validation round, once the last round has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_validation: Option<FinalValidation>,
}

/// A sample-weighted mean of scores, for one line on the console.
pub fn weighted_mean<'a>(scores: impl Iterator<Item = &'a ValidationScore>) -> Option<f64> {
    let (sum, n) = scores.fold((0.0, 0u64), |(sum, n), s| {
        (sum + s.value * s.samples as f64, n + s.samples)
    });
    (n > 0).then(|| sum / n as f64)
}
