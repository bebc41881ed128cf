//! What a training task reports: its progress while it runs and its
//! outcome, as plain data that crosses from a worker process to the node.

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::sandbox::PlanLogRecord;
use crate::training::Metric;
use crate::wire::{PrivacySpent, ValidationScore};

/// Progress of a running task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    /// The plan is initialised and the data prepared.
    Started {
        /// `describe().name`
        plan_name: String,
        /// Updates the task will run.
        total_updates: usize,
        /// Rows in the training split.
        training_samples: usize,
        /// Rows held out.
        test_samples: usize,
        /// Argument warnings (e.g. num_updates overriding epochs).
        warnings: Vec<String>,
    },
    /// The loss after an update, every `log_interval` updates and at the last one.
    Loss {
        /// 1-based update number.
        update: usize,
        /// 1-based epoch.
        epoch: usize,
        /// Samples processed so far.
        samples_seen: usize,
        /// Mean batch loss of this update.
        #[serde(with = "crate::wire::float::f32_any")]
        loss: f32,
    },
}

/// What a finished task reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingOutcome {
    /// `describe().name`
    pub plan_name: String,
    /// SHA-256 of the plan component.
    pub plan_digest: Sha256Digest,
    /// Updates run.
    pub updates: usize,
    /// Samples processed (with repetitions across epochs).
    pub samples_seen: usize,
    /// Rows in the training split: the weight of this node in FedAvg.
    pub training_samples: usize,
    /// Rows held out.
    pub test_samples: usize,
    /// Loss of the last update.
    #[serde(with = "crate::wire::float::f32_any")]
    pub final_loss: f32,
    /// Accuracy or MSE on the training split after training, with `report_split_metrics`.
    pub training_metric: Option<Metric>,
    /// The same on the held-out rows.
    pub test_metric: Option<Metric>,
    /// Score of the received parameters before training (`test_on_global_updates`).
    pub validation_global: Option<ValidationScore>,
    /// Score of the trained parameters (`test_on_local_updates`).
    pub validation_local: Option<ValidationScore>,
    /// The differential privacy applied, as accountant inputs.
    pub privacy: Option<PrivacySpent>,
    /// Learning rate the plan reported with its last update.
    #[serde(with = "crate::wire::float::opt_f32_any")]
    pub learning_rate: Option<f32>,
    /// Messages the plan logged.
    pub plan_logs: Vec<PlanLogRecord>,
    /// Wall time of the update loop, in milliseconds.
    pub training_ms: f64,
    /// Reading the dataset (or checking the cached copy), preparing it as
    /// the plan asks and building every training batch, in milliseconds.
    #[serde(default)]
    pub data_ms: f64,
    /// Inside the plan's `training-step` calls, in milliseconds.
    #[serde(default)]
    pub step_ms: f64,
    /// Wall time of the whole task, in milliseconds.
    pub total_ms: f64,
}
