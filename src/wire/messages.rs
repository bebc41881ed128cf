//! The messages: one struct each, and [`Message`], the enum over them whose
//! variant names are the `command` on the wire. A function that handles one
//! kind of message takes its struct, not the enum.
//!
//! Over 500 lines and whole on purpose: every field that crosses the wire is
//! read in one place, and a third of the file is the test that builds one of
//! every message against its snapshot (which proves the JSON unchanged by
//! any refactoring).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Sha256Digest;
use crate::identity::Role;

/// A file in the repository, named by its content. There is no URL: a
/// receiver fetches the blob by digest from the repository *it* trusts (a
/// node's configured one, the researcher's own), so a message cannot point a
/// node, or its repository token, at another server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobRef {
    /// SHA-256 of the bytes; the blob's address in the repository.
    pub sha256: Sha256Digest,
    /// Its size in bytes: a receiver refuses it before downloading when it is
    /// over its limit, and stops a download that runs past it.
    pub size: u64,
}

/// What a node tells researchers about one of its datasets. Never its path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSummary {
    /// Stable id on the node, used in train requests.
    pub dataset_id: String,
    /// Short name.
    pub name: String,
    /// Tags a search matches.
    pub tags: Vec<String>,
    /// Free text.
    pub description: String,
    /// "csv", "npy" or "images".
    pub data_type: String,
    /// Samples first: `[rows, columns]`, or `[images, C, H, W]`.
    pub shape: Vec<u64>,
    /// Column names (CSV) — empty for arrays.
    pub columns: Vec<String>,
    /// Column types ("integer" / "float"), parallel to `columns`.
    pub dtypes: Vec<String>,
    /// The target column, when the operator registered one.
    pub target: Option<String>,
    /// Rows of the dataset's designated test part, when it has one: its
    /// validation scores are computed on them (not on a `test_ratio`
    /// sample), and `shape` counts the training rows only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_rows: Option<u64>,
    /// An image dataset's classes, sorted (a label is an index into them);
    /// empty for tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// How an image dataset is labelled: `class`, `multi-label` (one flag
    /// per name in `classes`) or `mask` (`classes` are the mask values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_target: Option<String>,
}

/// Approval state of a plan on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// The operator approved this hash.
    Approved,
    /// The operator refused it.
    Rejected,
    /// Seen (requested) but not yet decided.
    Pending,
    /// Never seen.
    Unknown,
}

/// Stable error codes of [`Message::Error`]; the message text says the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The payload was not JSON or not a message.
    MalformedMessage,
    /// A command this node does not know.
    UnknownCommand,
    /// The sender speaks another major protocol version.
    ProtocolVersion,
    /// No dataset with that id.
    UnknownDataset,
    /// The plan's hash is not approved here.
    PlanNotApproved,
    /// A downloaded file did not have the announced SHA-256.
    HashMismatch,
    /// The repository could not be reached or refused.
    Repository,
    /// Training arguments that cannot be used.
    BadTrainingArgs,
    /// The dataset could not be loaded or does not fit the plan.
    Dataset,
    /// The plan returned an error, trapped or hit a limit.
    Plan,
    /// The task ran past its deadline.
    Deadline,
    /// The parameters sent could not be read or do not fit the plan.
    BadParameters,
    /// The node is shutting down; the request was not run.
    ShuttingDown,
    /// The node's training queue is full (for everyone, or for this
    /// researcher); the request was not queued: send it again later.
    Busy,
    /// The signer's key is not in the node's roster: the node does not
    /// serve this researcher (the text names the key to have added).
    UnknownKey,
    /// Anything else on the node.
    Internal,
}

/// Which request an error answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRef {
    /// The command of the request.
    pub command: String,
    /// Its request id, when it had one that could be read.
    pub request_id: Option<String>,
}

/// Node-side wall times of a training task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainTimings {
    /// Time in the training loop, ms.
    pub training_ms: f64,
    /// From request received to reply sent (downloads, training, upload), ms.
    pub total_ms: f64,
    /// Reading the dataset (or checking the worker's copy), preparing it as
    /// the plan asks and building every batch, ms.
    #[serde(default)]
    pub data_ms: f64,
    /// Inside the plan's training steps, ms: the sandboxed compute.
    #[serde(default)]
    pub sandbox_ms: f64,
    /// Downloading the plan and parameters and uploading the result, ms.
    #[serde(default)]
    pub transfer_ms: f64,
}

/// A validation score a node computed on its held-out rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationScore {
    /// Metric name as in `training_args.test_metric`, upper case, e.g. `F1_SCORE`.
    pub metric: String,
    /// Its value (infinite or NaN for a diverged model).
    #[serde(with = "super::float::f64_any")]
    pub value: f64,
    /// Held-out rows it was computed on: the node's weight in a federated mean.
    pub samples: u64,
    /// For classification, counts of (true class, decided class) over those
    /// rows (row = true class), or for segmentation over every pixel of
    /// their masks; at most 100 classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Vec<Vec<u64>>>,
}

/// The differential privacy a node applied in one round, as the inputs of
/// an RDP accountant: `steps` Gaussian mechanisms, each with this noise
/// multiplier (noise std / sensitivity), on samples drawn at `sampling_rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpent {
    /// `local` (DP-SGD in the plan) or `central` (noise on the node's update).
    pub mode: String,
    /// Noise standard deviation divided by the mechanism's sensitivity.
    pub noise_multiplier: f64,
    /// Probability that a given row takes part in one step.
    pub sampling_rate: f64,
    /// Noisy releases this round.
    pub steps: u64,
}

/// Researcher → nodes: which datasets carry all these tags?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Who asks; replies go to the researcher topic with this id.
    pub researcher_id: String,
    /// Correlates replies.
    pub request_id: String,
    /// A dataset matches when it carries every one of these.
    pub tags: Vec<String>,
}

/// Node → researcher: the matching datasets (possibly none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchReply {
    /// Who asked.
    pub researcher_id: String,
    /// The request answered.
    pub request_id: String,
    /// The answering node.
    pub node_id: String,
    /// Matches.
    pub datasets: Vec<DatasetSummary>,
}

/// Researcher → nodes: list every dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    /// Who asks.
    pub researcher_id: String,
    /// Correlates replies.
    pub request_id: String,
}

/// Node → researcher: all datasets of the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListReply {
    /// Who asked.
    pub researcher_id: String,
    /// The request answered.
    pub request_id: String,
    /// The answering node.
    pub node_id: String,
    /// Everything registered.
    pub datasets: Vec<DatasetSummary>,
}

/// Researcher → nodes: are you there?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// Who asks.
    pub researcher_id: String,
    /// Echoed in the pong.
    pub sequence: u64,
}

/// Node → researcher: yes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pong {
    /// Who asked.
    pub researcher_id: String,
    /// The ping's sequence.
    pub sequence: u64,
    /// The answering node.
    pub node_id: String,
    /// Whether a training task is running now.
    pub busy: bool,
}

/// Researcher → one node: train this plan on this dataset for one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// Who asks.
    pub researcher_id: String,
    /// The experiment.
    pub experiment_id: String,
    /// Correlates the reply.
    pub request_id: String,
    /// Round number, 1-based.
    pub round: u32,
    /// The node's dataset.
    pub dataset_id: String,
    /// The plan component.
    pub plan: BlobRef,
    /// Global parameters to start from (safetensors).
    pub params: BlobRef,
    /// Scaffold's gradient correction (safetensors), if any.
    pub gradient_correction: Option<BlobRef>,
    /// Passed to `init-model`.
    pub model_args: Value,
    /// Local training arguments; checked by the node.
    pub training_args: Value,
    /// The seed of this round's randomness on the node.
    pub seed: u64,
    /// `false` asks for validation of `params` only (the final validation
    /// round): no training, answered by a [`Message::ValidationReply`].
    pub training: bool,
}

/// Node → researcher: training succeeded; the new parameters are uploaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainReply {
    /// Who asked.
    pub researcher_id: String,
    /// The experiment.
    pub experiment_id: String,
    /// The request answered.
    pub request_id: String,
    /// The round trained.
    pub round: u32,
    /// The answering node.
    pub node_id: String,
    /// The dataset trained on.
    pub dataset_id: String,
    /// The trained parameters (safetensors).
    pub params: BlobRef,
    /// Rows in the training split: the node's weight in FedAvg.
    pub training_samples: u64,
    /// Optimizer updates run.
    pub updates: u64,
    /// Loss of the last update.
    #[serde(with = "super::float::f32_any")]
    pub final_loss: f32,
    /// Learning rate the plan reported, if single.
    #[serde(with = "super::float::opt_f32_any")]
    pub learning_rate: Option<f32>,
    /// Score of the received global parameters before training, with
    /// `test_on_global_updates`.
    pub validation_global: Option<ValidationScore>,
    /// Score of the trained parameters, with `test_on_local_updates`.
    pub validation_local: Option<ValidationScore>,
    /// Differential privacy the node applied, when `dp_args` asked for it.
    pub privacy: Option<PrivacySpent>,
    /// Privacy mode: the node withheld everything its plan could encode
    /// data in besides the parameters — the loss (`final_loss` is NaN),
    /// the plan's learning rate (the one in `optimizer_args` is sent),
    /// the training time (0), logs, scalars and error details.
    pub private: bool,
    /// Node-side times.
    pub timings: TrainTimings,
}

/// Node → researcher: the answer to a validation-only train request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationReply {
    /// Who asked.
    pub researcher_id: String,
    /// The experiment.
    pub experiment_id: String,
    /// The request answered.
    pub request_id: String,
    /// The round whose global parameters were scored.
    pub round: u32,
    /// The answering node.
    pub node_id: String,
    /// The dataset scored on.
    pub dataset_id: String,
    /// The score.
    pub validation: ValidationScore,
    /// Node-side times.
    pub timings: TrainTimings,
}

/// Node → researcher: a request failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorMessage {
    /// Who sent the failed request, when known.
    pub researcher_id: Option<String>,
    /// The node that failed.
    pub node_id: String,
    /// Stable code.
    pub code: ErrorCode,
    /// What went wrong and what to do about it.
    pub message: String,
    /// The request it answers.
    pub request: Option<RequestRef>,
}

/// Node → researcher: a log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLog {
    /// The node.
    pub node_id: String,
    /// "info", "warn", "error".
    pub level: String,
    /// The text.
    pub message: String,
}

/// Node → researcher: training progress for monitoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scalar {
    /// Who asked for the training.
    pub researcher_id: String,
    /// The experiment.
    pub experiment_id: String,
    /// The node.
    pub node_id: String,
    /// The round.
    pub round: u32,
    /// 1-based update number in this round.
    pub iteration: u64,
    /// 1-based epoch.
    pub epoch: u64,
    /// Samples processed in this round so far.
    pub samples_seen: u64,
    /// Updates this round will run.
    pub total_updates: u64,
    /// Named values, e.g. `{"loss": 0.12}`.
    #[serde(with = "super::float::map_f64_any")]
    pub values: BTreeMap<String, f64>,
}

/// Researcher → nodes: please consider approving this plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanApprovalRequest {
    /// Who asks.
    pub researcher_id: String,
    /// Correlates replies.
    pub request_id: String,
    /// The plan component.
    pub plan: BlobRef,
    /// Why, for the node operator.
    pub description: String,
}

/// Researcher → nodes: what is the status of this plan?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStatusRequest {
    /// Who asks.
    pub researcher_id: String,
    /// Correlates replies.
    pub request_id: String,
    /// The plan's hash.
    pub plan_sha256: Sha256Digest,
}

/// Node → researcher: the plan's status here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStatusReply {
    /// Who asked.
    pub researcher_id: String,
    /// The request answered.
    pub request_id: String,
    /// The node.
    pub node_id: String,
    /// The plan's hash.
    pub plan_sha256: Sha256Digest,
    /// Its status.
    pub status: PlanStatus,
    /// Whether this node requires approval at all.
    pub approval_required: bool,
}

/// Node → researcher: the node came online (retained) or went away (last will).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStatus {
    /// The node.
    pub node_id: String,
    /// true when online.
    pub online: bool,
}

/// Every message of the protocol, tagged by `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// Researcher → nodes: which datasets carry all these tags?
    SearchRequest(SearchRequest),
    /// Node → researcher: the matching datasets (possibly none).
    SearchReply(SearchReply),
    /// Researcher → nodes: list every dataset.
    ListRequest(ListRequest),
    /// Node → researcher: all datasets of the node.
    ListReply(ListReply),
    /// Researcher → nodes: are you there?
    Ping(Ping),
    /// Node → researcher: yes.
    Pong(Pong),
    /// Researcher → one node: train this plan on this dataset for one round.
    TrainRequest(TrainRequest),
    /// Node → researcher: training succeeded; the new parameters are uploaded.
    TrainReply(TrainReply),
    /// Node → researcher: the answer to a validation-only train request.
    ValidationReply(ValidationReply),
    /// Node → researcher: a request failed.
    Error(ErrorMessage),
    /// Node → researcher: a log record.
    Log(NodeLog),
    /// Node → researcher: training progress for monitoring.
    Scalar(Scalar),
    /// Researcher → nodes: please consider approving this plan.
    PlanApprovalRequest(PlanApprovalRequest),
    /// Researcher → nodes: what is the status of this plan?
    PlanStatusRequest(PlanStatusRequest),
    /// Node → researcher: the plan's status here.
    PlanStatusReply(PlanStatusReply),
    /// Node → researcher: the node came online (retained) or went away (last will).
    NodeStatus(NodeStatus),
}

/// What a reply answers: a request by its id, or a ping by its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// The `request_id` of the request answered.
    Request(&'a str),
    /// The `sequence` of the ping answered.
    Ping(u64),
}

impl Message {
    /// The node a node → researcher message comes from.
    pub fn sender_node(&self) -> Option<&str> {
        match self.sender() {
            (Role::Node, node) => Some(node),
            (Role::Researcher, _) => None,
        }
    }

    /// Who sends this message: the node for a node → researcher message,
    /// the researcher for a request. Its signature must be that party's.
    /// Every variant is named, so a new message must say who sends it.
    pub fn sender(&self) -> (Role, &str) {
        match self {
            Message::SearchReply(SearchReply { node_id, .. })
            | Message::ListReply(ListReply { node_id, .. })
            | Message::Pong(Pong { node_id, .. })
            | Message::TrainReply(TrainReply { node_id, .. })
            | Message::ValidationReply(ValidationReply { node_id, .. })
            | Message::Error(ErrorMessage { node_id, .. })
            | Message::Log(NodeLog { node_id, .. })
            | Message::Scalar(Scalar { node_id, .. })
            | Message::PlanStatusReply(PlanStatusReply { node_id, .. })
            | Message::NodeStatus(NodeStatus { node_id, .. }) => (Role::Node, node_id),
            Message::SearchRequest(SearchRequest { researcher_id, .. })
            | Message::ListRequest(ListRequest { researcher_id, .. })
            | Message::Ping(Ping { researcher_id, .. })
            | Message::TrainRequest(TrainRequest { researcher_id, .. })
            | Message::PlanApprovalRequest(PlanApprovalRequest { researcher_id, .. })
            | Message::PlanStatusRequest(PlanStatusRequest { researcher_id, .. }) => {
                (Role::Researcher, researcher_id)
            }
        }
    }

    /// The request this message answers, if it is a reply (an error reply
    /// names one when it can). Every variant is named, so a new message must
    /// say whether it answers one.
    pub fn answers(&self) -> Option<Answer<'_>> {
        match self {
            Message::SearchReply(SearchReply { request_id, .. })
            | Message::ListReply(ListReply { request_id, .. })
            | Message::TrainReply(TrainReply { request_id, .. })
            | Message::ValidationReply(ValidationReply { request_id, .. })
            | Message::PlanStatusReply(PlanStatusReply { request_id, .. }) => {
                Some(Answer::Request(request_id))
            }
            Message::Pong(Pong { sequence, .. }) => Some(Answer::Ping(*sequence)),
            Message::Error(ErrorMessage { request, .. }) => request
                .as_ref()
                .and_then(|r| r.request_id.as_deref())
                .map(Answer::Request),
            Message::SearchRequest(SearchRequest { .. })
            | Message::ListRequest(ListRequest { .. })
            | Message::Ping(Ping { .. })
            | Message::TrainRequest(TrainRequest { .. })
            | Message::Log(NodeLog { .. })
            | Message::Scalar(Scalar { .. })
            | Message::PlanApprovalRequest(PlanApprovalRequest { .. })
            | Message::PlanStatusRequest(PlanStatusRequest { .. })
            | Message::NodeStatus(NodeStatus { .. }) => None,
        }
    }

    /// The id of a request (none for pings, which carry a sequence, and
    /// for replies).
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Message::SearchRequest(SearchRequest { request_id, .. })
            | Message::ListRequest(ListRequest { request_id, .. })
            | Message::TrainRequest(TrainRequest { request_id, .. })
            | Message::PlanApprovalRequest(PlanApprovalRequest { request_id, .. })
            | Message::PlanStatusRequest(PlanStatusRequest { request_id, .. }) => Some(request_id),
            _ => None,
        }
    }

    /// The researcher a node → researcher message is for, when it says.
    pub fn addressee(&self) -> Option<&str> {
        match self {
            Message::SearchReply(SearchReply { researcher_id, .. })
            | Message::ListReply(ListReply { researcher_id, .. })
            | Message::Pong(Pong { researcher_id, .. })
            | Message::TrainReply(TrainReply { researcher_id, .. })
            | Message::ValidationReply(ValidationReply { researcher_id, .. })
            | Message::PlanStatusReply(PlanStatusReply { researcher_id, .. })
            | Message::Scalar(Scalar { researcher_id, .. }) => Some(researcher_id),
            Message::Error(ErrorMessage { researcher_id, .. }) => researcher_id.as_deref(),
            _ => None,
        }
    }

    /// The `command` tag of this message.
    pub fn command(&self) -> &'static str {
        match self {
            Message::SearchRequest(SearchRequest { .. }) => "search_request",
            Message::SearchReply(SearchReply { .. }) => "search_reply",
            Message::ListRequest(ListRequest { .. }) => "list_request",
            Message::ListReply(ListReply { .. }) => "list_reply",
            Message::Ping(Ping { .. }) => "ping",
            Message::Pong(Pong { .. }) => "pong",
            Message::TrainRequest(TrainRequest { .. }) => "train_request",
            Message::TrainReply(TrainReply { .. }) => "train_reply",
            Message::ValidationReply(ValidationReply { .. }) => "validation_reply",
            Message::Error(ErrorMessage { .. }) => "error",
            Message::Log(NodeLog { .. }) => "log",
            Message::Scalar(Scalar { .. }) => "scalar",
            Message::PlanApprovalRequest(PlanApprovalRequest { .. }) => "plan_approval_request",
            Message::PlanStatusRequest(PlanStatusRequest { .. }) => "plan_status_request",
            Message::PlanStatusReply(PlanStatusReply { .. }) => "plan_status_reply",
            Message::NodeStatus(NodeStatus { .. }) => "node_status",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_name_what_they_answer_and_who_sent_them() {
        let pong = Message::Pong(Pong {
            researcher_id: "r".into(),
            sequence: 7,
            node_id: "n1".into(),
            busy: false,
        });
        assert_eq!(pong.answers(), Some(Answer::Ping(7)));
        assert_eq!(pong.sender_node(), Some("n1"));
        let error = Message::Error(ErrorMessage {
            researcher_id: Some("r".into()),
            node_id: "n2".into(),
            code: ErrorCode::Busy,
            message: "busy".into(),
            request: Some(RequestRef {
                command: "train_request".into(),
                request_id: Some("q1".into()),
            }),
        });
        assert_eq!(error.answers(), Some(Answer::Request("q1")));
        assert_eq!(error.sender_node(), Some("n2"));
        let ping = Message::Ping(Ping {
            researcher_id: "r".into(),
            sequence: 7,
        });
        assert_eq!((ping.answers(), ping.sender_node()), (None, None));
    }
    use crate::wire::{decode, encode};

    fn blob(name: &str) -> BlobRef {
        BlobRef {
            sha256: Sha256Digest::of(name.as_bytes()),
            size: name.len() as u64,
        }
    }

    fn dataset() -> DatasetSummary {
        DatasetSummary {
            dataset_id: "ds-1".into(),
            name: "breast cancer shard".into(),
            tags: vec!["#breast-cancer".into()],
            description: "site A".into(),
            data_type: "csv".into(),
            shape: vec![151, 31],
            columns: vec!["mean_radius".into(), "diagnosis".into()],
            dtypes: vec!["float".into(), "integer".into()],
            target: Some("diagnosis".into()),
            test_rows: None,
            classes: Vec::new(),
            image_target: None,
        }
    }

    /// One of every message, with representative values.
    fn every_message() -> Vec<Message> {
        let r = || "researcher-1".to_string();
        let q = || "req-7".to_string();
        let n = || "node-a".to_string();
        vec![
            Message::SearchRequest(SearchRequest {
                researcher_id: r(),
                request_id: q(),
                tags: vec!["#breast-cancer".into()],
            }),
            Message::SearchReply(SearchReply {
                researcher_id: r(),
                request_id: q(),
                node_id: n(),
                datasets: vec![dataset()],
            }),
            Message::ListRequest(ListRequest {
                researcher_id: r(),
                request_id: q(),
            }),
            Message::ListReply(ListReply {
                researcher_id: r(),
                request_id: q(),
                node_id: n(),
                datasets: vec![],
            }),
            Message::Ping(Ping {
                researcher_id: r(),
                sequence: 1,
            }),
            Message::Pong(Pong {
                researcher_id: r(),
                sequence: 1,
                node_id: n(),
                busy: false,
            }),
            Message::TrainRequest(TrainRequest {
                researcher_id: r(),
                experiment_id: "Experiment_0001".into(),
                request_id: q(),
                round: 3,
                dataset_id: "ds-1".into(),
                plan: blob("plan"),
                params: blob("params"),
                gradient_correction: None,
                model_args: serde_json::json!({"n_features": 30, "n_classes": 2}),
                training_args: serde_json::json!({"num_updates": 50, "loader_args": {"batch_size": 32}}),
                seed: 42,
                training: true,
            }),
            Message::TrainReply(TrainReply {
                researcher_id: r(),
                experiment_id: "Experiment_0001".into(),
                request_id: q(),
                round: 3,
                node_id: n(),
                dataset_id: "ds-1".into(),
                params: blob("trained"),
                training_samples: 151,
                updates: 50,
                final_loss: 0.125,
                learning_rate: Some(0.1),
                validation_global: Some(ValidationScore {
                    metric: "ACCURACY".into(),
                    value: 0.875,
                    samples: 16,
                    confusion: None,
                }),
                validation_local: Some(ValidationScore {
                    metric: "ACCURACY".into(),
                    value: 0.9375,
                    samples: 16,
                    confusion: None,
                }),
                privacy: Some(PrivacySpent {
                    mode: "local".into(),
                    noise_multiplier: 1.1,
                    sampling_rate: 0.25,
                    steps: 50,
                }),
                private: false,
                timings: TrainTimings {
                    training_ms: 12.5,
                    total_ms: 40.0,
                    data_ms: 2.5,
                    sandbox_ms: 10.0,
                    transfer_ms: 6.0,
                },
            }),
            Message::ValidationReply(ValidationReply {
                researcher_id: r(),
                experiment_id: "Experiment_0001".into(),
                request_id: q(),
                round: 3,
                node_id: n(),
                dataset_id: "ds-1".into(),
                validation: ValidationScore {
                    metric: "F1_SCORE".into(),
                    value: 0.75,
                    samples: 16,
                    confusion: None,
                },
                timings: TrainTimings {
                    training_ms: 0.0,
                    total_ms: 3.5,
                    data_ms: 0.5,
                    sandbox_ms: 0.0,
                    transfer_ms: 1.0,
                },
            }),
            Message::Error(ErrorMessage {
                researcher_id: Some(r()),
                node_id: n(),
                code: ErrorCode::PlanNotApproved,
                message: "plan 1234… is not approved on this node".into(),
                request: Some(RequestRef {
                    command: "train_request".into(),
                    request_id: Some(q()),
                }),
            }),
            Message::Log(NodeLog {
                node_id: n(),
                level: "info".into(),
                message: "training round 3".into(),
            }),
            Message::Scalar(Scalar {
                researcher_id: r(),
                experiment_id: "Experiment_0001".into(),
                node_id: n(),
                round: 3,
                iteration: 10,
                epoch: 1,
                samples_seen: 320,
                total_updates: 50,
                values: BTreeMap::from([("loss".to_string(), 0.25)]),
            }),
            Message::PlanApprovalRequest(PlanApprovalRequest {
                researcher_id: r(),
                request_id: q(),
                plan: blob("plan"),
                description: "logistic regression for the breast cancer study".into(),
            }),
            Message::PlanStatusRequest(PlanStatusRequest {
                researcher_id: r(),
                request_id: q(),
                plan_sha256: Sha256Digest::of(b"plan"),
            }),
            Message::PlanStatusReply(PlanStatusReply {
                researcher_id: r(),
                request_id: q(),
                node_id: n(),
                plan_sha256: Sha256Digest::of(b"plan"),
                status: PlanStatus::Pending,
                approval_required: true,
            }),
            Message::NodeStatus(NodeStatus {
                node_id: n(),
                online: false,
            }),
        ]
    }

    #[test]
    fn every_message_round_trips_and_matches_its_snapshot() {
        for message in every_message() {
            let bytes = encode(&message);
            assert_eq!(decode(&bytes).unwrap(), message);
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["command"], message.command());
            insta::assert_json_snapshot!(message.command(), json);
        }
    }
}
