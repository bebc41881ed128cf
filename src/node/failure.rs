//! [`Failure`]: why a train request failed, as the code and text of its
//! error reply, from each layer's error type.

use crate::repository::RepositoryError;
use crate::training::{FailureCode, TrainingError};
use crate::wire::ErrorCode;

/// Why a train request failed: the code and text of the error reply.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) code: ErrorCode,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Whether the text may carry a plan's words or a dataset's values,
    /// which privacy mode keeps on the node.
    pub(super) fn may_carry_data(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::Plan | ErrorCode::Dataset | ErrorCode::BadParameters | ErrorCode::Internal
        )
    }
}

impl From<RepositoryError> for Failure {
    fn from(e: RepositoryError) -> Self {
        let code = match e {
            RepositoryError::Corrupt => ErrorCode::HashMismatch,
            _ => ErrorCode::Repository,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<TrainingError> for Failure {
    fn from(e: TrainingError) -> Self {
        // Every kind named: a new one is a compile error here, not a guess.
        let code = match e.code() {
            FailureCode::BadTrainingArgs => ErrorCode::BadTrainingArgs,
            FailureCode::Dataset => ErrorCode::Dataset,
            FailureCode::Deadline => ErrorCode::Deadline,
            FailureCode::Parameters => ErrorCode::BadParameters,
            FailureCode::Cancelled => ErrorCode::ShuttingDown,
            FailureCode::Worker | FailureCode::Host => ErrorCode::Internal,
            FailureCode::NotAComponent
            | FailureCode::WrongWorld
            | FailureCode::Compile
            | FailureCode::MemoryLimit
            | FailureCode::StackOverflow
            | FailureCode::Trap
            | FailureCode::PlanError => ErrorCode::Plan,
        };
        Failure::new(code, e.to_string())
    }
}
