//! [`FederatedDataset`]: which dataset of which node an experiment trains on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ExperimentError;
use crate::wire::DatasetSummary;

/// Node id → the one dataset of that node the experiment uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FederatedDataset {
    datasets: BTreeMap<String, DatasetSummary>,
}

impl FederatedDataset {
    /// From one dataset per node.
    pub fn new(datasets: BTreeMap<String, DatasetSummary>) -> Self {
        FederatedDataset { datasets }
    }

    /// From search results: each node must have exactly one matching dataset.
    /// Nodes with none are left out; a node with several is an error naming
    /// the node and its datasets, since training on an arbitrary one of them
    /// would be a silent choice made for the researcher.
    pub fn from_search(
        found: BTreeMap<String, Vec<DatasetSummary>>,
    ) -> Result<Self, ExperimentError> {
        let mut datasets = BTreeMap::new();
        for (node, mut matches) in found {
            match matches.len() {
                0 => {}
                1 => {
                    datasets.insert(node, matches.remove(0));
                }
                _ => {
                    return Err(ExperimentError::AmbiguousDatasets {
                        node,
                        datasets: matches
                            .iter()
                            .map(|d| format!("{} ({}: {})", d.dataset_id, d.name, d.tags.join(",")))
                            .collect(),
                    });
                }
            }
        }
        Ok(FederatedDataset { datasets })
    }

    /// Node ids, sorted.
    pub fn node_ids(&self) -> Vec<String> {
        self.datasets.keys().cloned().collect()
    }

    /// The dataset of `node`.
    pub fn dataset(&self, node: &str) -> Option<&DatasetSummary> {
        self.datasets.get(node)
    }

    /// Every node's dataset.
    pub fn data(&self) -> &BTreeMap<String, DatasetSummary> {
        &self.datasets
    }

    /// Rows of each node's dataset, as registered.
    pub fn sample_sizes(&self) -> BTreeMap<String, u64> {
        self.datasets
            .iter()
            .map(|(n, d)| (n.clone(), d.shape.first().copied().unwrap_or(0)))
            .collect()
    }

    /// Whether no node has a dataset.
    pub fn is_empty(&self) -> bool {
        self.datasets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: &str, tags: &[&str]) -> DatasetSummary {
        DatasetSummary {
            dataset_id: id.into(),
            name: id.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            description: String::new(),
            data_type: "csv".into(),
            shape: vec![10, 3],
            columns: vec![],
            dtypes: vec![],
            target: None,
            test_rows: None,
            classes: Vec::new(),
            image_target: None,
        }
    }

    #[test]
    fn one_dataset_per_node_or_an_error_naming_the_node() {
        let found = BTreeMap::from([
            ("a".to_string(), vec![summary("d1", &["#x"])]),
            ("b".to_string(), vec![]),
        ]);
        let fds = FederatedDataset::from_search(found).unwrap();
        assert_eq!(fds.node_ids(), ["a"]);
        assert_eq!(fds.sample_sizes()["a"], 10);
        let found = BTreeMap::from([(
            "a".to_string(),
            vec![summary("d1", &["#x", "#y"]), summary("d2", &["#x", "#z"])],
        )]);
        let err = FederatedDataset::from_search(found)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("node `a` has 2 datasets") && err.contains("d1") && err.contains("d2"),
            "{err}"
        );
    }
}
