//! Errors of the researcher side.

use crate::repository::RepositoryError;
use crate::sandbox::SandboxError;
use crate::transport::TransportError;

use super::aggregators::AggregationError;

/// Why a researcher link operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ResearcherError {
    /// The broker connection failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A researcher id that cannot be part of a topic.
    #[error(
        "researcher id `{0}` must be 1–64 characters of letters, digits, `-`, `_` or `.`, and not `anonymous`"
    )]
    BadId(String),
}

/// Why an experiment operation failed; each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// Talking to the nodes failed.
    #[error(transparent)]
    Link(#[from] ResearcherError),
    /// The file repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// The researcher's key or roster cannot be used.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The plan could not be loaded or run on the researcher side.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Aggregation failed.
    #[error(transparent)]
    Aggregation(#[from] AggregationError),
    /// A node has more than one dataset matching the tags.
    #[error(
        "node `{node}` has {} datasets matching the tags: {}; use tags that select one, or give training_data explicitly",
        datasets.len(),
        datasets.join(", ")
    )]
    AmbiguousDatasets {
        /// The node.
        node: String,
        /// Its matching datasets.
        datasets: Vec<String>,
    },
    /// An argument that cannot be used.
    #[error("bad experiment argument: {0}")]
    Argument(String),
    /// Something the experiment needs is not set.
    #[error("the experiment is not fully defined: {0}")]
    NotDefined(String),
    /// A round failed; the experiment is as it was before the round.
    #[error("round {round} failed: {reason}")]
    Round {
        /// The round (1-based).
        round: u32,
        /// Which node failed and how.
        reason: String,
    },
    /// Files of the experiment folder.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A breakpoint that cannot be loaded.
    #[error("breakpoint: {0}")]
    Breakpoint(String),
}
