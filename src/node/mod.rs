//! The node: its persistent state (datasets and plan approvals).
//!
//! - [`store`]: [`NodeStore`], the SQLite database that survives restarts.

mod error;
pub mod store;

pub use error::NodeError;
pub use store::{DatasetRecord, NewDataset, NodeStore, PlanRecord};
