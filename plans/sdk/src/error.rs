//! Plan errors: the WIT `plan-error` record with constructors that read well.

use crate::types::ErrorKind;

/// The error every plan function returns; crosses the component boundary as is.
pub type PlanError = crate::types::PlanError;

/// Result of a plan operation.
pub type PlanResult<T> = Result<T, PlanError>;

/// A missing, ill-typed or out-of-range model or optimizer argument.
pub fn invalid_argument(message: impl Into<String>) -> PlanError {
    PlanError {
        kind: ErrorKind::InvalidArgument,
        message: message.into(),
    }
}

/// Data, a batch or a parameter list that does not fit the model.
pub fn invalid_data(message: impl Into<String>) -> PlanError {
    PlanError {
        kind: ErrorKind::InvalidData,
        message: message.into(),
    }
}

/// A call made out of order.
pub fn invalid_state(message: impl Into<String>) -> PlanError {
    PlanError {
        kind: ErrorKind::InvalidState,
        message: message.into(),
    }
}

/// Anything else, such as a loss that became infinite.
pub fn internal(message: impl Into<String>) -> PlanError {
    PlanError {
        kind: ErrorKind::Internal,
        message: message.into(),
    }
}
