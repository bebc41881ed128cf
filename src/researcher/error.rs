//! Errors of the researcher side.

use crate::transport::TransportError;

/// Why a researcher operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ResearcherError {
    /// The broker connection failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A researcher id that cannot be part of a topic.
    #[error("researcher id `{0}` must be 1–64 characters of letters, digits, `-`, `_` or `.`")]
    BadId(String),
}
