//! One training round, step by step: pick the nodes, send the requests
//! (`dispatch.rs`), collect the replies (`collect.rs`), check each
//! (`checks.rs`) and fold it into the aggregate in node order, apply the
//! failure policy and quorum (`rules.rs`), aggregate, optimize the global
//! model, and persist (`persist.rs`). A failed round leaves the experiment
//! exactly as it was.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::collect::{Collected, Pending};
use super::events::RoundEvent;
use super::{Experiment, checks, io, rules};
use crate::researcher::accountant::Accountant;
use crate::researcher::aggregators::{OrderedFolder, align_parameters};
use crate::researcher::history::{DroppedNode, NodeEpsilon, NodeRound, RoundRecord};
use crate::researcher::optimizers::OptimizerState;
use crate::researcher::strategy::FailurePolicy;
use crate::researcher::{ExperimentError, FederatedDataset};
use crate::sandbox::types::Tensor;
use crate::wire::{BlobRef, Message, TrainReply};

/// What a successful round changes.
struct RoundResult {
    record: RoundRecord,
    global: Vec<Tensor>,
    optimizer_state: Option<OptimizerState>,
}

/// A checked reply, its parameters downloaded and aligned to the global ones.
struct Accepted {
    record: NodeRound,
    file: std::path::PathBuf,
    tensors: Vec<Tensor>,
}

/// The history's view of a train reply, before any check, and where its
/// parameters are.
fn node_round(reply: Message) -> Result<(NodeRound, BlobRef), String> {
    match reply {
        Message::TrainReply(TrainReply {
            node_id,
            dataset_id,
            params,
            training_samples,
            updates,
            final_loss,
            learning_rate,
            validation_global,
            validation_local,
            privacy,
            private,
            timings,
            ..
        }) => Ok((
            NodeRound {
                node_id,
                dataset_id,
                training_samples,
                updates,
                final_loss,
                learning_rate,
                training_ms: timings.training_ms,
                node_total_ms: timings.total_ms,
                data_ms: timings.data_ms,
                sandbox_ms: timings.sandbox_ms,
                transfer_ms: timings.transfer_ms,
                round_trip_ms: 0.0,
                params_sha256: params.sha256,
                validation_global,
                validation_local,
                privacy,
                private,
            },
            params,
        )),
        other => Err(format!(
            "node {} answered a train request with {}",
            other.sender_node().unwrap_or("?"),
            other.command()
        )),
    }
}

impl Experiment {
    /// Run the next round and record it.
    pub(super) async fn run_round(&mut self) -> Result<(), ExperimentError> {
        let round = self.round_current + 1;
        let fds = self.training_data.clone().ok_or_else(|| {
            ExperimentError::NotDefined(
                "no training data; set tags (and search) or training_data".into(),
            )
        })?;
        if self.plan.is_none() {
            return Err(ExperimentError::NotDefined(
                "no training plan; set training_plan".into(),
            ));
        }
        let nodes = self.strategy.sample_nodes(&fds, round)?;
        // Taken, not cloned: a model can be large. Put back if the round fails.
        let had_global = self.global.is_some();
        let global = match self.global.take() {
            Some(g) => g,
            None => self.initial_parameters()?,
        };
        let outcome = self.train_round(round, &fds, &nodes, &global).await;
        self.link.untrack_all();
        let done = match outcome {
            Ok(done) => done,
            Err(e) => {
                self.notify(&RoundEvent::RoundFailed { round });
                if had_global {
                    self.global = Some(global);
                }
                return Err(e);
            }
        };
        self.global = Some(done.global);
        if let Some(state) = done.optimizer_state {
            self.optimizer_state = state;
        }
        self.round_current = round;
        let mut record = done.record;
        record.privacy = self.privacy_spent(&record);
        self.notify(&RoundEvent::RoundDone {
            record: &record,
            round_limit: self.round_limit,
        });
        self.history.rounds.push(record);
        self.write_history()?;
        if self.save_breakpoints {
            self.save_breakpoint()?;
        }
        Ok(())
    }

    /// One round's exchange; touches nothing of the experiment's state
    /// except the plan's upload cache, so a failure leaves it as it was.
    async fn train_round(
        &mut self,
        round: u32,
        fds: &FederatedDataset,
        nodes: &[String],
        global: &[Tensor],
    ) -> Result<RoundResult, ExperimentError> {
        let started = Instant::now();
        let failed = |reason: String| ExperimentError::Round { round, reason };
        let shared = self.round_request(round, round - 1, global, true).await?;
        let mut pending = Pending::new(&self.id, round);
        for node in nodes {
            let dataset = fds.dataset(node).ok_or_else(|| {
                failed(format!("node {node} has no dataset in the training data"))
            })?;
            let dataset_id = dataset.dataset_id.clone();
            let correction = self.upload_correction(node, global).await?;
            self.send_train_request(&mut pending, node, &dataset_id, &shared, correction)
                .await?;
        }
        self.notify(&RoundEvent::RoundStarted {
            round,
            round_limit: self.round_limit,
            nodes,
        });

        let work = tempfile::tempdir_in(&self.folder).map_err(io(format!(
            "creating a work folder in {}",
            self.folder.display()
        )))?;
        self.aggregator.start_round(global)?;
        let mut folder = OrderedFolder::new(nodes.to_vec());
        let mut records: BTreeMap<String, NodeRound> = BTreeMap::new();
        let mut dropped: BTreeMap<String, String> = BTreeMap::new();
        let policy = self.strategy.failure_policy();
        let deadline = started + self.round_deadline;
        loop {
            let (node, outcome) = match pending.next(&mut self.link, deadline).await {
                Collected::Complete => break,
                Collected::Progress {
                    node,
                    iteration,
                    total,
                    loss,
                } => {
                    self.notify(&RoundEvent::Progress {
                        node: &node,
                        iteration,
                        total,
                        loss,
                    });
                    continue;
                }
                Collected::Silent { nodes: silent } => {
                    let wait = self.round_deadline.as_secs_f64();
                    if policy == FailurePolicy::Stop {
                        return Err(failed(format!(
                            "no answer from {} within the round deadline of {wait:.0} s",
                            silent.join(", "),
                        )));
                    }
                    for node in silent {
                        folder.skip(self.aggregator.as_mut(), global, &node)?;
                        dropped.insert(
                            node,
                            format!("no answer within the round deadline of {wait:.0} s"),
                        );
                    }
                    break;
                }
                Collected::Failed { node, reason } => (node, Err(reason)),
                Collected::Reply { node, sent, reply } => {
                    let accepted = self
                        .accept_train_reply(&node, *reply, fds, global, work.path())
                        .await
                        .map(|mut accepted| {
                            accepted.record.round_trip_ms = sent.elapsed().as_secs_f64() * 1e3;
                            accepted
                        });
                    (node, accepted)
                }
            };
            match outcome {
                Ok(Accepted {
                    record,
                    file,
                    tensors,
                }) => {
                    self.aggregator
                        .note_reply(&node, record.learning_rate, record.updates);
                    folder.offer(
                        self.aggregator.as_mut(),
                        global,
                        &node,
                        record.training_samples,
                        file,
                        Some(tensors),
                    )?;
                    self.notify(&RoundEvent::NodeTrained {
                        node: &node,
                        record: &record,
                    });
                    records.insert(node, record);
                }
                Err(reason) if policy == FailurePolicy::Stop => return Err(failed(reason)),
                Err(reason) => {
                    self.warn(format!("round {round}: dropping {node}: {reason}"));
                    folder.skip(self.aggregator.as_mut(), global, &node)?;
                    dropped.insert(node, reason);
                }
            }
        }
        rules::quorum(
            records.len(),
            nodes.len(),
            self.strategy.min_nodes(),
            &dropped,
        )
        .map_err(failed)?;
        debug_assert!(folder.complete());
        let aggregated = self.aggregator.finish()?;
        for note in self.aggregator.notes() {
            self.warn(format!("round {round}: {note}"));
        }
        let (new_global, optimizer_state) = match &self.agg_optimizer {
            Some(opt) => {
                let (params, state) = opt.step(&self.optimizer_state, global, aggregated);
                (params, Some(state))
            }
            None => (aggregated, None),
        };
        let saved = self.write_global(round, &new_global)?;
        Ok(RoundResult {
            record: RoundRecord {
                round,
                seed: self.training_args.seed(),
                sampled: nodes.to_vec(),
                nodes: records.into_values().collect(),
                dropped: dropped
                    .into_iter()
                    .map(|(node_id, reason)| DroppedNode { node_id, reason })
                    .collect(),
                global_sha256: saved.sha256,
                global_path: saved.relative,
                duration_ms: started.elapsed().as_secs_f64() * 1e3,
                privacy: Vec::new(),
            },
            global: new_global,
            optimizer_state,
        })
    }

    /// Check `node`'s train reply (`checks.rs`), then download its
    /// parameters into `work` and check the file's hash, tensor names,
    /// shapes and finite values; returns them aligned to `global`. The error
    /// says what is wrong.
    async fn accept_train_reply(
        &self,
        node: &str,
        reply: Message,
        fds: &FederatedDataset,
        global: &[Tensor],
        work: &Path,
    ) -> Result<Accepted, String> {
        let (record, params) = node_round(reply)?;
        checks::check_train_reply(node, fds, &record)?;
        let file = work.join(format!("{node}.safetensors"));
        let limit = crate::tensors::max_file_bytes(global);
        self.repository
            .download(&params, &file, limit)
            .await
            .map_err(|e| format!("parameters of node {node}: {e}"))?;
        let (tensors, _) = crate::tensors::read_file(&file)
            .map_err(|e| format!("parameters of node {node}: {e}"))?;
        let tensors = align_parameters(node, global, tensors).map_err(|e| e.to_string())?;
        Ok(Accepted {
            record,
            file,
            tensors,
        })
    }

    /// Each node's ε after `record`, composing every round of the history
    /// with it; empty when the experiment does not ask for DP.
    fn privacy_spent(&self, record: &RoundRecord) -> Vec<NodeEpsilon> {
        let Some(delta) = self.training_args.dp_args.as_ref().map(|d| d.delta) else {
            return Vec::new();
        };
        let mut accountants: BTreeMap<&str, Accountant> = BTreeMap::new();
        for node in self
            .history
            .rounds
            .iter()
            .chain([record])
            .flat_map(|r| &r.nodes)
        {
            if let Some(spent) = &node.privacy {
                accountants.entry(&node.node_id).or_default().add(spent);
            }
        }
        accountants
            .into_iter()
            .map(|(node_id, accountant)| NodeEpsilon {
                node_id: node_id.to_string(),
                epsilon: accountant.epsilon(delta),
                delta,
            })
            .collect()
    }
}
