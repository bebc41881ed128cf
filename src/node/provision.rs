//! [`provision`]: a ready node folder in one call — what `node init`,
//! `node dataset add` and `node plan approve` do, for programs that set up
//! nodes themselves (the demo, benchmarks).

use std::path::Path;

use super::{DatasetRecord, NewDataset, NodeConfig, NodeError, NodeStore};
use crate::digest::Sha256Digest;
use crate::wire::PlanStatus;

/// Create the node `id` in `dir` for `broker` and `repository`, register
/// `dataset`, and approve the plan `approved` (digest and name).
pub fn provision(
    dir: &Path,
    id: &str,
    broker: String,
    repository: String,
    dataset: NewDataset,
    approved: (&Sha256Digest, Option<&str>),
) -> Result<DatasetRecord, NodeError> {
    NodeConfig::init(dir, Some(id.to_string()), None, broker, repository)?;
    let mut store = NodeStore::open(&NodeConfig::store_path(dir))?;
    let record = store.add_dataset(dataset)?;
    store.set_plan_status(approved.0, PlanStatus::Approved, approved.1)?;
    Ok(record)
}
