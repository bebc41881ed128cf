//! Collecting the replies to one exchange: a training round's requests or
//! the final validation's.
//!
//! [`Pending`] knows which request went to which node; each call of
//! [`Pending::next`] returns the next thing that matters — progress, a reply
//! to one of its requests, a node's error — until every node is settled or
//! the deadline passes. A node settles once: a second reply, a reply for
//! another experiment or round, or for a request it never sent, is ignored.
//! What a reply is worth is the caller's business.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::researcher::NodeLink;
use crate::wire::{Answer, ErrorMessage, Message, NodeLog, Scalar, TrainReply, ValidationReply};

/// The requests of one exchange awaiting their answers.
pub(super) struct Pending {
    experiment_id: String,
    round: u32,
    /// Request id → (node, when sent).
    sent: BTreeMap<String, (String, Instant)>,
    /// Every node asked.
    asked: BTreeSet<String>,
    /// Nodes answered or given up on.
    settled: BTreeSet<String>,
}

/// The next thing an exchange heard.
#[derive(Debug)]
pub(super) enum Collected {
    /// A node reported training progress.
    Progress {
        node: String,
        iteration: u64,
        total: u64,
        loss: Option<f64>,
    },
    /// A node answered its request; the node is now settled.
    Reply {
        node: String,
        sent: Instant,
        reply: Box<Message>,
    },
    /// A node answered its request with an error; the node is now settled.
    Failed { node: String, reason: String },
    /// The deadline passed; these nodes (now settled) never answered.
    Silent { nodes: Vec<String> },
    /// Every node is settled.
    Complete,
}

impl Pending {
    /// An exchange of `experiment_id`'s round `round`, with no request yet.
    pub(super) fn new(experiment_id: &str, round: u32) -> Self {
        Pending {
            experiment_id: experiment_id.to_string(),
            round,
            sent: BTreeMap::new(),
            asked: BTreeSet::new(),
            settled: BTreeSet::new(),
        }
    }

    /// `request_id` went to `node` just now.
    pub(super) fn sent(&mut self, request_id: String, node: &str) {
        self.sent
            .insert(request_id, (node.to_string(), Instant::now()));
        self.asked.insert(node.to_string());
    }

    fn unsettled(&self) -> Vec<String> {
        self.asked.difference(&self.settled).cloned().collect()
    }

    /// The node and send time of an unsettled request `request_id`.
    fn open_request(&self, request_id: &str) -> Option<(String, Instant)> {
        self.sent
            .get(request_id)
            .filter(|(node, _)| !self.settled.contains(node))
            .cloned()
    }

    /// What `message` means to this exchange, if anything; settles a node
    /// that answered.
    fn classify(&mut self, message: Message) -> Option<Collected> {
        match message {
            Message::Scalar(Scalar {
                experiment_id,
                node_id,
                round,
                iteration,
                total_updates,
                values,
                ..
            }) if experiment_id == self.experiment_id
                && round == self.round
                && self.asked.contains(&node_id) =>
            {
                Some(Collected::Progress {
                    loss: values.get("loss").copied(),
                    node: node_id,
                    iteration,
                    total: total_updates,
                })
            }
            Message::Log(NodeLog {
                node_id, message, ..
            }) => {
                tracing::info!("{node_id}: {message}");
                None
            }
            Message::Error(ErrorMessage {
                ref node_id,
                code,
                message: ref text,
                ..
            }) => {
                let Some(Answer::Request(id)) = message.answers() else {
                    return None;
                };
                let (node, _) = self.open_request(id)?;
                self.settled.insert(node.clone());
                Some(Collected::Failed {
                    reason: format!("node {node_id} answered with an error ({code:?}): {text}"),
                    node,
                })
            }
            Message::TrainReply(TrainReply {
                ref experiment_id,
                round,
                ..
            })
            | Message::ValidationReply(ValidationReply {
                ref experiment_id,
                round,
                ..
            }) => {
                if *experiment_id != self.experiment_id || round != self.round {
                    return None;
                }
                let Some(Answer::Request(id)) = message.answers() else {
                    return None;
                };
                let (node, sent) = self.open_request(id)?;
                self.settled.insert(node.clone());
                Some(Collected::Reply {
                    node,
                    sent,
                    reply: Box::new(message),
                })
            }
            _ => None,
        }
    }

    /// The next thing that matters to this exchange, waiting for the link
    /// until `deadline`.
    pub(super) async fn next(&mut self, link: &mut NodeLink, deadline: Instant) -> Collected {
        loop {
            if self.settled.len() == self.asked.len() {
                return Collected::Complete;
            }
            let Some(message) = link.next_message(deadline).await else {
                let silent = self.unsettled();
                self.settled.extend(silent.iter().cloned());
                return Collected::Silent { nodes: silent };
            };
            if let Some(collected) = self.classify(message) {
                return collected;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ErrorCode, RequestRef, TrainTimings, ValidationScore};

    fn validation_reply(request_id: &str, node: &str, round: u32, experiment: &str) -> Message {
        Message::ValidationReply(ValidationReply {
            researcher_id: "r".into(),
            experiment_id: experiment.into(),
            request_id: request_id.into(),
            round,
            node_id: node.into(),
            dataset_id: "d".into(),
            validation: ValidationScore {
                metric: "ACCURACY".into(),
                value: 1.0,
                samples: 1,
                confusion: None,
            },
            timings: TrainTimings {
                training_ms: 0.0,
                total_ms: 0.0,
                data_ms: 0.0,
                sandbox_ms: 0.0,
                transfer_ms: 0.0,
            },
        })
    }

    fn error(request_id: &str, node: &str) -> Message {
        Message::Error(ErrorMessage {
            researcher_id: Some("r".into()),
            node_id: node.into(),
            code: ErrorCode::PlanNotApproved,
            message: "approve it".into(),
            request: Some(RequestRef {
                command: "train_request".into(),
                request_id: Some(request_id.into()),
            }),
        })
    }

    fn scalar(node: &str, round: u32) -> Message {
        Message::Scalar(Scalar {
            researcher_id: "r".into(),
            experiment_id: "exp".into(),
            node_id: node.into(),
            round,
            iteration: 2,
            epoch: 1,
            samples_seen: 8,
            total_updates: 4,
            values: BTreeMap::from([("loss".to_string(), 0.25)]),
        })
    }

    fn pending() -> Pending {
        let mut pending = Pending::new("exp", 3);
        pending.sent("req-a".into(), "node-a");
        pending.sent("req-b".into(), "node-b");
        pending
    }

    #[test]
    fn replies_to_other_requests_rounds_and_experiments_are_ignored() {
        let mut pending = pending();
        for stray in [
            validation_reply("req-z", "node-a", 3, "exp"),
            validation_reply("req-a", "node-a", 2, "exp"),
            validation_reply("req-a", "node-a", 3, "other"),
            error("req-z", "node-a"),
            scalar("node-a", 2),
            scalar("node-z", 3),
        ] {
            assert!(pending.classify(stray).is_none());
        }
        assert_eq!(pending.unsettled(), vec!["node-a", "node-b"]);
    }

    #[test]
    fn a_node_settles_once_whatever_it_sends_next() {
        let mut pending = pending();
        assert!(matches!(
            pending.classify(scalar("node-a", 3)),
            Some(Collected::Progress { ref node, iteration: 2, total: 4, loss: Some(l) })
                if node == "node-a" && l == 0.25
        ));
        assert!(matches!(
            pending.classify(validation_reply("req-a", "node-a", 3, "exp")),
            Some(Collected::Reply { ref node, .. }) if node == "node-a"
        ));
        assert!(
            pending
                .classify(validation_reply("req-a", "node-a", 3, "exp"))
                .is_none()
        );
        assert!(pending.classify(error("req-a", "node-a")).is_none());
        assert!(matches!(
            pending.classify(error("req-b", "node-b")),
            Some(Collected::Failed { ref node, ref reason })
                if node == "node-b"
                    && reason == "node node-b answered with an error (PlanNotApproved): approve it"
        ));
        assert!(pending.unsettled().is_empty());
    }

    #[test]
    fn a_reply_is_credited_to_the_node_asked_not_the_one_claimed() {
        let mut pending = pending();
        match pending.classify(validation_reply("req-b", "node-a", 3, "exp")) {
            Some(Collected::Reply { node, reply, .. }) => {
                assert_eq!(node, "node-b");
                assert_eq!(reply.sender_node(), Some("node-a"));
            }
            other => panic!("expected a reply, got {other:?}"),
        }
        assert_eq!(pending.unsettled(), vec!["node-a"]);
    }
}
