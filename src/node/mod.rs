//! The node: its persistent state (datasets and plan approvals).
//!
//! - [`config`]: [`NodeConfig`], the node's `node.toml`.
//! - [`store`]: [`NodeStore`], the SQLite database that survives restarts.

pub mod config;
mod error;
pub mod store;

pub use config::NodeConfig;
pub use error::NodeError;
pub use store::{DatasetRecord, NewDataset, NodeStore, PlanRecord};
