//! Errors of a training task, and [`FailureCode`], the kind of failure as
//! one closed set that crosses the worker protocol and reaches the node's
//! error replies without ever being parsed back from text.

use serde::{Deserialize, Serialize};

use crate::dataset::DatasetError;
use crate::sandbox::SandboxError;

/// What kind of failure ended a training task. The kebab-case names are
/// what the worker process reports and what tests and messages show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureCode {
    /// Training arguments that cannot be used.
    BadTrainingArgs,
    /// The dataset could not be loaded or prepared.
    Dataset,
    /// A parameter file could not be read or written.
    Parameters,
    /// The task or the plan ran past its deadline.
    Deadline,
    /// The node stopped the task.
    Cancelled,
    /// The worker process could not be started or died without an answer.
    Worker,
    /// The plan is not a WebAssembly component.
    NotAComponent,
    /// The component does not implement the plan world.
    WrongWorld,
    /// The component did not compile.
    Compile,
    /// The plan exceeded its memory.
    MemoryLimit,
    /// The plan overflowed its stack.
    StackOverflow,
    /// The plan trapped.
    Trap,
    /// The plan returned an error.
    PlanError,
    /// The engine itself failed.
    Host,
}

impl FailureCode {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::BadTrainingArgs => "bad-training-args",
            FailureCode::Dataset => "dataset",
            FailureCode::Parameters => "parameters",
            FailureCode::Deadline => "deadline",
            FailureCode::Cancelled => "cancelled",
            FailureCode::Worker => "worker",
            FailureCode::NotAComponent => "not-a-component",
            FailureCode::WrongWorld => "wrong-world",
            FailureCode::Compile => "compile",
            FailureCode::MemoryLimit => "memory-limit",
            FailureCode::StackOverflow => "stack-overflow",
            FailureCode::Trap => "trap",
            FailureCode::PlanError => "plan-error",
            FailureCode::Host => "host",
        }
    }

    /// The code of a sandbox failure.
    pub fn of_sandbox(e: &SandboxError) -> Self {
        match e {
            SandboxError::NotAComponent { .. } => FailureCode::NotAComponent,
            SandboxError::WrongWorld { .. } => FailureCode::WrongWorld,
            SandboxError::Compile { .. } => FailureCode::Compile,
            SandboxError::MemoryLimit { .. } => FailureCode::MemoryLimit,
            SandboxError::StackOverflow { .. } => FailureCode::StackOverflow,
            SandboxError::Deadline { .. } => FailureCode::Deadline,
            SandboxError::Trap { .. } => FailureCode::Trap,
            SandboxError::Plan { .. } | SandboxError::Output { .. } => FailureCode::PlanError,
            SandboxError::Host { .. } => FailureCode::Host,
        }
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'a> PartialEq<&'a str> for FailureCode {
    fn eq(&self, other: &&'a str) -> bool {
        self.as_str() == *other
    }
}

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
        /// What kind of failure.
        code: FailureCode,
        /// The worker's message.
        message: String,
    },
}

impl TrainingError {
    /// What kind of failure, for error replies and tests.
    pub fn code(&self) -> FailureCode {
        match self {
            TrainingError::Args(_) => FailureCode::BadTrainingArgs,
            TrainingError::Dataset(_) => FailureCode::Dataset,
            TrainingError::Sandbox(e) => FailureCode::of_sandbox(e),
            TrainingError::Parameters(_) => FailureCode::Parameters,
            TrainingError::Deadline { .. } => FailureCode::Deadline,
            TrainingError::Worker(_) => FailureCode::Worker,
            TrainingError::Cancelled => FailureCode::Cancelled,
            TrainingError::Reported { code, .. } => *code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FailureCode; 14] = [
        FailureCode::BadTrainingArgs,
        FailureCode::Dataset,
        FailureCode::Parameters,
        FailureCode::Deadline,
        FailureCode::Cancelled,
        FailureCode::Worker,
        FailureCode::NotAComponent,
        FailureCode::WrongWorld,
        FailureCode::Compile,
        FailureCode::MemoryLimit,
        FailureCode::StackOverflow,
        FailureCode::Trap,
        FailureCode::PlanError,
        FailureCode::Host,
    ];

    #[test]
    fn codes_cross_the_worker_protocol_under_their_names() {
        for code in ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<FailureCode>(&json).unwrap(), code);
            assert_eq!(code, code.as_str());
        }
        // A name the parent does not know is unreadable, never guessed.
        assert!(serde_json::from_str::<FailureCode>("\"oops\"").is_err());
    }
}
