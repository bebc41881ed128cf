//! Errors of a training task.

use crate::dataset::DatasetError;
use crate::sandbox::SandboxError;

/// Why a training task failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    /// Training arguments that cannot be used.
    #[error("bad training arguments: {0}")]
    Args(String),
    /// The dataset could not be loaded or prepared.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The plan failed, trapped or hit a limit.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// A parameter file could not be read or written.
    #[error("parameters: {0}")]
    Parameters(String),
    /// The task ran past its deadline; its worker was killed.
    #[error("training ran past its deadline of {seconds:.1} s and its worker process was stopped")]
    Deadline {
        /// The deadline.
        seconds: f64,
    },
    /// The task was stopped from outside (the node is shutting down).
    #[error("training was stopped because the node is shutting down; send the request again later")]
    Cancelled,
    /// The worker process could not be started or died without an answer.
    #[error("training worker failed: {0}")]
    Worker(String),
    /// A failure the worker process reported, with its code.
    #[error("{message}")]
    Reported {
        /// Stable code (see [`TrainingError::code`]).
        code: String,
        /// The worker's message.
        message: String,
    },
}

impl TrainingError {
    /// A short stable code for error replies and tests.
    pub fn code(&self) -> String {
        match self {
            TrainingError::Args(_) => "bad-training-args".into(),
            TrainingError::Dataset(_) => "dataset".into(),
            TrainingError::Sandbox(e) => e.code().into(),
            TrainingError::Parameters(_) => "parameters".into(),
            TrainingError::Deadline { .. } => "deadline".into(),
            TrainingError::Worker(_) => "worker".into(),
            TrainingError::Cancelled => "cancelled".into(),
            TrainingError::Reported { code, .. } => code.clone(),
        }
    }
}
