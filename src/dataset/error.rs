//! Errors of loading and preparing data; each says what to fix.

use std::path::PathBuf;

/// Why a dataset could not be loaded or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be opened or read.
    #[error("cannot read dataset {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O or parser message.
        reason: String,
    },
    /// The file is not a table fedwasm can use.
    #[error("dataset {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        reason: String,
    },
    /// A column the plan or the operator named does not exist.
    #[error("no column `{column}` in the dataset; its columns are: {available}")]
    UnknownColumn {
        /// The missing name.
        column: String,
        /// Comma-separated list of actual names.
        available: String,
    },
    /// Neither the plan nor the dataset says which column is the target.
    #[error("no target column: register the dataset with a target column or pass --target")]
    NoTarget,
    /// A target value that does not fit the plan's task.
    #[error("row {row}: target `{column}` = {value} {reason}")]
    BadTarget {
        /// 1-based data row (header excluded).
        row: usize,
        /// Target column.
        column: String,
        /// The value found.
        value: f64,
        /// Why it does not fit.
        reason: String,
    },
    /// Settings that cannot produce any batch.
    #[error("{0}")]
    Invalid(String),
}
