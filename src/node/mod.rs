//! The node: its persistent state (datasets and plan approvals) and the
//! daemon that answers researchers.
//!
//! - `config`: [`NodeConfig`], the node's `node.toml`.
//! - `store`: [`NodeStore`], the SQLite database that survives restarts.
//! - `daemon`: [`run`], the long-running node (`fedwasm node start`).
//! - [`provision`]: a ready node folder in one call.
//! - `noise_key`: the private key that seeds differential-privacy noise.
//! - `queue`: the bounded train-request queue, fair between researchers.
//! - `recent`: requests in hand or answered, so a re-sent one runs once.
//! - `approval_limit`: how often one researcher key may ask for an approval.
//! - `trainer`: works through that queue, one request at a time.
//! - `context`: what the daemon and the trainer share; `job`: a queued train
//!   request. Dependencies point one way: daemon → trainer → context → job.

mod approval_limit;
pub(crate) mod config;
mod context;
pub(crate) mod daemon;
mod error;
mod failure;
mod job;
pub(crate) mod noise_key;
mod provision;
pub(crate) mod queue;
pub(crate) mod recent;
pub(crate) mod store;
mod trainer;

pub use daemon::{NodeRuntime, run};
pub use provision::provision;

pub use config::NodeConfig;
pub use error::NodeError;
pub use store::{DatasetRecord, NewDataset, NodeStore, PlanRecord};
