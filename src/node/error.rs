//! Errors of the node's state.

use crate::dataset::DatasetError;

/// Why a node operation failed; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The SQLite database failed.
    #[error("node database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The dataset file is unusable.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A new dataset's tags would make searches ambiguous.
    #[error(
        "tags {new:?} conflict with dataset `{existing}` tagged {existing_tags:?}: one tag set contains the other, so a search could match both; choose tags that tell them apart"
    )]
    TagConflict {
        /// The new dataset's tags.
        new: Vec<String>,
        /// The conflicting dataset's id.
        existing: String,
        /// Its tags.
        existing_tags: Vec<String>,
    },
    /// A dataset needs at least one tag.
    #[error("a dataset needs at least one non-empty tag")]
    NoTags,
    /// No dataset with this id.
    #[error("no dataset `{0}` on this node; `fedwasm node dataset list` shows the ids")]
    UnknownDataset(String),
    /// node.toml is missing, unreadable or invalid.
    #[error("node configuration: {0}")]
    Config(String),
    /// The node's key or roster cannot be used.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The broker connection could not be set up.
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    /// Too many plans already wait for the operator's decision.
    #[error(
        "{0} plans already wait for this node operator's decision; ask the operator to approve or reject them before requesting another"
    )]
    TooManyPending(usize),
    /// A stored value could not be read back.
    #[error("node database holds an unreadable value: {0}")]
    Corrupt(String),
}
