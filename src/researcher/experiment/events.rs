//! Round events and the observers that watch them.
//!
//! The round engine says what happened ([`RoundEvent`]); what the researcher
//! sees of it — console bars and lines ([`Monitor`]), TensorBoard curves
//! ([`TensorboardSteps`]), or anything a library user adds with
//! [`Experiment::add_observer`](super::Experiment::add_observer) — is an
//! observer's business. An observer cannot change a round: it sees finished
//! facts, and its failure becomes a warning, never a failed round.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::researcher::history::{FinalValidation, NodeRound, RoundRecord};
use crate::researcher::monitor::Monitor;
use crate::researcher::tensorboard::TensorboardLog;

/// Something that happened in an experiment's rounds.
#[derive(Debug, Clone, Copy)]
pub enum RoundEvent<'a> {
    /// Round `round` sent its requests to `nodes`.
    RoundStarted {
        /// The round (1-based).
        round: u32,
        /// The round limit, if any.
        round_limit: Option<u32>,
        /// The nodes asked to train.
        nodes: &'a [String],
    },
    /// A node reported training progress.
    Progress {
        /// The node.
        node: &'a str,
        /// Updates done in this round so far.
        iteration: u64,
        /// Updates this round will run on the node.
        total: u64,
        /// The loss of the last update, unless the node withholds it.
        loss: Option<f64>,
    },
    /// A node's reply passed every check and joined the aggregate.
    NodeTrained {
        /// The node.
        node: &'a str,
        /// What it reported.
        record: &'a NodeRound,
    },
    /// A round completed; `record` is what the history keeps of it.
    RoundDone {
        /// The round's record.
        record: &'a RoundRecord,
        /// The round limit, if any.
        round_limit: Option<u32>,
    },
    /// A round failed; the experiment is as it was before it.
    RoundFailed {
        /// The round that failed.
        round: u32,
    },
    /// The validation after the last round finished.
    FinalValidation {
        /// Its record.
        record: &'a FinalValidation,
    },
    /// A warning for the researcher.
    Warning {
        /// The warning.
        text: &'a str,
    },
    /// The experiment is closing.
    Closing,
}

/// Watches an experiment's rounds.
pub trait RoundObserver: Send {
    /// React to `event`. An error is given to the researcher as a warning
    /// (once per distinct text) and the experiment goes on.
    fn observe(&mut self, event: &RoundEvent<'_>) -> Result<(), String>;
}

impl RoundObserver for Monitor {
    fn observe(&mut self, event: &RoundEvent<'_>) -> Result<(), String> {
        match *event {
            RoundEvent::RoundStarted {
                round,
                round_limit,
                nodes,
            } => self.start_round(round, round_limit, nodes),
            RoundEvent::Progress {
                node,
                iteration,
                total,
                loss,
            } => self.progress(node, iteration, total, loss),
            RoundEvent::NodeTrained { node, record } => {
                self.node_done(node, (!record.private).then_some(record.final_loss));
            }
            RoundEvent::RoundDone {
                record,
                round_limit,
            } => self.round_done(record, round_limit),
            RoundEvent::RoundFailed { .. } | RoundEvent::Closing => self.finish_round(),
            RoundEvent::FinalValidation { record } => self.final_validation(record),
            RoundEvent::Warning { text } => self.note(&format!("warning: {text}")),
        }
        Ok(())
    }
}

/// TensorBoard curves of an experiment: training loss and validation scores
/// per node, at cumulative steps (a node's updates over all rounds). It keeps
/// counting while switched off, so curves continue at the right step when it
/// is switched on, and its counts travel in breakpoints.
pub struct TensorboardSteps {
    enabled: bool,
    runs: PathBuf,
    log: Option<TensorboardLog>,
    /// Per node, the updates of completed rounds.
    done: BTreeMap<String, u64>,
}

impl TensorboardSteps {
    /// Curves written under `runs` (one folder per node) when `enabled`.
    pub fn new(runs: PathBuf, enabled: bool) -> Self {
        TensorboardSteps {
            enabled,
            runs,
            log: None,
            done: BTreeMap::new(),
        }
    }

    /// Whether event files are written.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Switch event files on or off.
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
    }

    /// The folder to point TensorBoard at.
    pub fn runs(&self) -> &std::path::Path {
        &self.runs
    }

    /// Per node, the updates of completed rounds (saved in breakpoints).
    pub fn steps_done(&self) -> &BTreeMap<String, u64> {
        &self.done
    }

    /// Continue from counts saved by [`TensorboardSteps::steps_done`].
    pub fn restore_steps(&mut self, done: BTreeMap<String, u64>) {
        self.done = done;
    }

    fn scalar(&mut self, node: &str, tag: &str, iteration: u64, value: f64) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let runs = self.runs.clone();
        let step = self.done.get(node).copied().unwrap_or(0) + iteration;
        self.log
            .get_or_insert_with(|| TensorboardLog::new(runs))
            .scalar(node, tag, step, value as f32)
            .map_err(|e| format!("cannot write TensorBoard events for {node}: {e}"))
    }
}

impl RoundObserver for TensorboardSteps {
    fn observe(&mut self, event: &RoundEvent<'_>) -> Result<(), String> {
        match *event {
            RoundEvent::Progress {
                node,
                iteration,
                loss: Some(loss),
                ..
            } => self.scalar(node, "TRAINING/Loss", iteration, loss),
            RoundEvent::NodeTrained { node, record } => {
                if let Some(v) = &record.validation_global {
                    let tag = format!("VALIDATION ON GLOBAL UPDATES/{}", v.metric);
                    self.scalar(node, &tag, 0, v.value)?;
                }
                if let Some(v) = &record.validation_local {
                    let tag = format!("VALIDATION ON LOCAL UPDATES/{}", v.metric);
                    self.scalar(node, &tag, record.updates, v.value)?;
                }
                Ok(())
            }
            RoundEvent::RoundDone { record, .. } => {
                for node in &record.nodes {
                    *self.done.entry(node.node_id.clone()).or_default() += node.updates;
                }
                Ok(())
            }
            RoundEvent::FinalValidation { record } => {
                for v in &record.nodes {
                    let tag = format!("VALIDATION ON GLOBAL UPDATES/{}", v.validation.metric);
                    self.scalar(&v.node_id, &tag, 0, v.validation.value)?;
                }
                Ok(())
            }
            RoundEvent::RoundStarted { .. }
            | RoundEvent::Progress { loss: None, .. }
            | RoundEvent::RoundFailed { .. }
            | RoundEvent::Warning { .. }
            | RoundEvent::Closing => Ok(()),
        }
    }
}

/// Every observer of one experiment: the console, TensorBoard, and those a
/// library user added, told of each event in that order.
pub(super) struct Observers {
    pub(super) monitor: Monitor,
    pub(super) tensorboard: TensorboardSteps,
    pub(super) added: Vec<Box<dyn RoundObserver>>,
}

impl Observers {
    /// Tell every observer of `event`; returns the failures.
    pub(super) fn notify(&mut self, event: &RoundEvent<'_>) -> Vec<String> {
        let mut failures = Vec::new();
        let builtin: [&mut dyn RoundObserver; 2] = [&mut self.monitor, &mut self.tensorboard];
        let added = self
            .added
            .iter_mut()
            .map(|o| o.as_mut() as &mut dyn RoundObserver);
        for observer in builtin.into_iter().chain(added) {
            if let Err(failure) = observer.observe(event) {
                failures.push(failure);
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::researcher::history::{FinalValidation, NodeValidation};
    use crate::researcher::tensorboard::read_scalars;
    use crate::wire::ValidationScore;

    fn node_round(node: &str, updates: u64, loss: f32) -> NodeRound {
        NodeRound {
            node_id: node.into(),
            dataset_id: "d".into(),
            training_samples: 10,
            updates,
            final_loss: loss,
            learning_rate: None,
            training_ms: 0.0,
            node_total_ms: 0.0,
            data_ms: 0.0,
            sandbox_ms: 0.0,
            transfer_ms: 0.0,
            round_trip_ms: 0.0,
            params_sha256: crate::digest::Sha256Digest::of(b""),
            validation_global: Some(score(0.5)),
            validation_local: Some(score(0.75)),
            privacy: None,
            private: false,
        }
    }

    fn score(value: f64) -> ValidationScore {
        ValidationScore {
            metric: "ACCURACY".into(),
            value,
            samples: 4,
            confusion: None,
        }
    }

    fn round(number: u32, nodes: Vec<NodeRound>) -> RoundRecord {
        RoundRecord {
            round: number,
            seed: 0,
            sampled: nodes.iter().map(|n| n.node_id.clone()).collect(),
            nodes,
            dropped: Vec::new(),
            global_sha256: crate::digest::Sha256Digest::of(b""),
            global_path: String::new(),
            duration_ms: 0.0,
            privacy: Vec::new(),
        }
    }

    fn scalars(runs: &std::path::Path, node: &str) -> Vec<(String, i64, f32)> {
        let dir = runs.join(node);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("node folder").flatten() {
            for e in read_scalars(&entry.path()).expect("readable events") {
                out.push((e.tag, e.step, e.value));
            }
        }
        out
    }

    #[test]
    fn curves_continue_at_cumulative_steps_and_count_while_off() {
        let dir = tempfile::tempdir().expect("temp dir");
        let runs = dir.path().join("runs");
        let mut steps = TensorboardSteps::new(runs.clone(), false);
        let first = node_round("a", 5, 0.9);
        // Round 1 while off: nothing written, but its 5 updates count.
        steps
            .observe(&RoundEvent::Progress {
                node: "a",
                iteration: 5,
                total: 5,
                loss: Some(0.9),
            })
            .expect("off");
        steps
            .observe(&RoundEvent::RoundDone {
                record: &round(1, vec![first]),
                round_limit: None,
            })
            .expect("counted");
        assert!(!runs.exists());
        steps.set_enabled(true);
        let second = node_round("a", 3, 0.5);
        for event in [
            RoundEvent::Progress {
                node: "a",
                iteration: 2,
                total: 3,
                loss: Some(0.6),
            },
            RoundEvent::NodeTrained {
                node: "a",
                record: &second,
            },
        ] {
            steps.observe(&event).expect("written");
        }
        steps
            .observe(&RoundEvent::RoundDone {
                record: &round(2, vec![second.clone()]),
                round_limit: None,
            })
            .expect("counted");
        let last = FinalValidation {
            round: 2,
            nodes: vec![NodeValidation {
                node_id: "a".into(),
                dataset_id: "d".into(),
                validation: score(0.875),
            }],
            failed: Vec::new(),
        };
        steps
            .observe(&RoundEvent::FinalValidation { record: &last })
            .expect("written");
        let mut got = scalars(&runs, "a");
        got.sort_by(|x, y| (x.1, &x.0).cmp(&(y.1, &y.0)));
        assert_eq!(
            got,
            vec![
                ("VALIDATION ON GLOBAL UPDATES/ACCURACY".to_string(), 5, 0.5),
                ("TRAINING/Loss".to_string(), 7, 0.6),
                (
                    "VALIDATION ON GLOBAL UPDATES/ACCURACY".to_string(),
                    8,
                    0.875
                ),
                ("VALIDATION ON LOCAL UPDATES/ACCURACY".to_string(), 8, 0.75),
            ]
        );
        assert_eq!(steps.steps_done().get("a"), Some(&8));
    }

    #[test]
    fn an_observer_failure_is_reported_and_the_others_still_hear() {
        struct Failing;
        impl RoundObserver for Failing {
            fn observe(&mut self, _: &RoundEvent<'_>) -> Result<(), String> {
                Err("disk full".into())
            }
        }
        struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl RoundObserver for Counting {
            fn observe(&mut self, _: &RoundEvent<'_>) -> Result<(), String> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        }
        let heard = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut observers = Observers {
            monitor: Monitor::new(false),
            tensorboard: TensorboardSteps::new(PathBuf::from("unused"), false),
            added: vec![Box::new(Failing), Box::new(Counting(heard.clone()))],
        };
        let failures = observers.notify(&RoundEvent::RoundFailed { round: 1 });
        assert_eq!(failures, vec!["disk full".to_string()]);
        assert_eq!(heard.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
