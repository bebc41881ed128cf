//! The validation-only exchange after the last round: every node of the
//! training data scores the final global parameters on its held-out rows.
//! It uses the round's dispatch and collection; a node that fails is
//! recorded with its reason, and the trained model stands either way.

use std::collections::BTreeMap;
use std::time::Instant;

use super::collect::{Collected, Pending};
use super::events::RoundEvent;
use super::{Experiment, checks};
use crate::researcher::ExperimentError;
use crate::researcher::history::{DroppedNode, FinalValidation, NodeValidation};
use crate::wire::{Message, ValidationReply};

impl Experiment {
    /// Score the global parameters after the last round on every node.
    pub(super) async fn final_validation(&mut self) -> Result<(), ExperimentError> {
        let round = self.round_current;
        let fds = self.training_data.clone().ok_or_else(|| {
            ExperimentError::NotDefined("no training data for the final validation".into())
        })?;
        let Some(global) = self.global.take() else {
            return Ok(());
        };
        let shared = self.round_request(round, round, &global, false).await;
        self.global = Some(global);
        let shared = shared?;
        let mut pending = Pending::new(&self.id, round);
        for (node, dataset) in fds.data() {
            self.send_train_request(&mut pending, node, &dataset.dataset_id, &shared, None)
                .await?;
        }
        let deadline = Instant::now() + self.round_deadline;
        let mut scores: BTreeMap<String, NodeValidation> = BTreeMap::new();
        let mut failed: BTreeMap<String, String> = BTreeMap::new();
        loop {
            match pending.next(&mut self.link, deadline).await {
                Collected::Complete => break,
                Collected::Progress { .. } => {}
                Collected::Silent { nodes } => {
                    for node in nodes {
                        failed.insert(node, "no answer within the round deadline".into());
                    }
                    break;
                }
                Collected::Failed { node, reason } => {
                    failed.insert(node, reason);
                }
                Collected::Reply { node, reply, .. } => match *reply {
                    Message::ValidationReply(ValidationReply {
                        node_id,
                        dataset_id,
                        validation,
                        ..
                    }) => match checks::check_validation_reply(
                        &node,
                        &fds,
                        &node_id,
                        &dataset_id,
                        &validation,
                    ) {
                        Ok(()) => {
                            scores.insert(
                                node,
                                NodeValidation {
                                    node_id,
                                    dataset_id,
                                    validation,
                                },
                            );
                        }
                        Err(reason) => {
                            failed.insert(node, reason);
                        }
                    },
                    other => {
                        failed.insert(
                            node,
                            format!("answered a validation request with {}", other.command()),
                        );
                    }
                },
            }
        }
        for (node, reason) in &failed {
            self.warn(format!("final validation: {node} failed: {reason}"));
        }
        let record = FinalValidation {
            round,
            nodes: scores.into_values().collect(),
            failed: failed
                .into_iter()
                .map(|(node_id, reason)| DroppedNode { node_id, reason })
                .collect(),
        };
        self.notify(&RoundEvent::FinalValidation { record: &record });
        self.history.final_validation = Some(record);
        self.write_history()
    }
}
