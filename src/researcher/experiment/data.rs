//! The training data: found by searching the nodes for tags, or given
//! explicitly as node → dataset id and checked against what each node lists.

use std::collections::{BTreeMap, BTreeSet};

use super::Experiment;
use crate::researcher::{ExperimentError, FederatedDataset};

impl Experiment {
    /// Set the training data, or with `None` and `from_tags`, search the
    /// nodes (restricted to `nodes`) for datasets carrying every tag.
    pub async fn set_training_data(
        &mut self,
        training_data: Option<FederatedDataset>,
        from_tags: bool,
    ) -> Result<(), ExperimentError> {
        self.training_data = match (training_data, from_tags) {
            (Some(fds), _) => Some(fds),
            (None, false) => None,
            (None, true) => match self.tags.clone() {
                None => None,
                Some(tags) => Some(self.search(&tags).await?),
            },
        };
        Ok(())
    }

    async fn search(&mut self, tags: &[String]) -> Result<FederatedDataset, ExperimentError> {
        let expected: Option<BTreeSet<String>> =
            self.nodes.as_ref().map(|n| n.iter().cloned().collect());
        let found = self
            .link
            .search(tags, expected.as_ref(), self.search_wait)
            .await?;
        let mut datasets = BTreeMap::new();
        for (node, reply) in found {
            match reply {
                Ok(list) => {
                    datasets.insert(node, list);
                }
                Err(message) => self.warn(format!("node {node} could not search: {message:?}")),
            }
        }
        let fds = FederatedDataset::from_search(datasets)?;
        if fds.is_empty() {
            self.warn(format!(
                "no node has a dataset carrying all of the tags {tags:?}"
            ));
        }
        Ok(fds)
    }

    pub(super) async fn resolve_training_data(
        &mut self,
        explicit: &BTreeMap<String, String>,
    ) -> Result<FederatedDataset, ExperimentError> {
        let nodes: BTreeSet<String> = explicit.keys().cloned().collect();
        let listed = self.link.list(Some(&nodes), self.search_wait).await?;
        let mut datasets = BTreeMap::new();
        for (node, dataset_id) in explicit {
            let summary = listed
                .get(node)
                .and_then(|r| r.as_ref().ok())
                .and_then(|list| list.iter().find(|d| &d.dataset_id == dataset_id))
                .ok_or_else(|| {
                    ExperimentError::Argument(format!(
                        "training_data: node `{node}` did not list a dataset `{dataset_id}`; `fedwasm datasets --nodes {node}` shows what it has"
                    ))
                })?;
            datasets.insert(node.clone(), summary.clone());
        }
        Ok(FederatedDataset::new(datasets))
    }
}
