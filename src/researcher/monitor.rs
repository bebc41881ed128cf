//! [`Monitor`]: what the researcher sees while rounds run — a bar for the
//! round and one per node (on a terminal), and one line per finished round.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::history::{FinalValidation, RoundRecord, weighted_mean};

/// Console progress of an experiment. Silent unless enabled.
pub struct Monitor {
    enabled: bool,
    bars: Option<MultiProgress>,
    round_bar: Option<ProgressBar>,
    nodes: BTreeMap<String, ProgressBar>,
}

impl Monitor {
    /// A monitor that prints when `enabled`; bars only on a terminal.
    pub fn new(enabled: bool) -> Self {
        Monitor {
            enabled,
            bars: None,
            round_bar: None,
            nodes: BTreeMap::new(),
        }
    }

    /// Print a line above the bars (or plainly without them).
    pub fn note(&self, line: &str) {
        if !self.enabled {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(line);
            }
            None => println!("{line}"),
        }
    }

    /// A round started with `nodes`.
    pub fn start_round(&mut self, round: u32, limit: Option<u32>, nodes: &[String]) {
        if !self.enabled || !std::io::stderr().is_terminal() {
            return;
        }
        self.finish_round();
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{prefix:>12} {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let of = limit.map(|l| format!("/{l}")).unwrap_or_default();
        let rounds = bars.add(ProgressBar::new(u64::from(
            limit.unwrap_or(round).max(round),
        )));
        rounds.set_style(style.clone());
        rounds.set_prefix("rounds");
        rounds.set_position(u64::from(round - 1));
        rounds.set_message(format!("round {round}{of} running"));
        self.round_bar = Some(rounds);
        for node in nodes {
            let bar = bars.add(ProgressBar::new(1).with_style(style.clone()));
            bar.set_prefix(node.clone());
            bar.set_message(format!("round {round}{of}"));
            self.nodes.insert(node.clone(), bar);
        }
        self.bars = Some(bars);
    }

    /// A node reported `iteration` of `total` updates.
    pub fn progress(&mut self, node: &str, iteration: u64, total: u64, loss: Option<f64>) {
        if let Some(bar) = self.nodes.get(node) {
            bar.set_length(total.max(1));
            bar.set_position(iteration);
            if let Some(loss) = loss {
                bar.set_message(format!("loss {loss:.4}"));
            }
        }
    }

    /// A node's reply arrived.
    pub fn node_done(&mut self, node: &str, loss: Option<f32>) {
        if let Some(bar) = self.nodes.get(node) {
            bar.set_position(bar.length().unwrap_or(1));
            let loss = loss.map_or("withheld".to_string(), |l| format!("{l:.4}"));
            bar.finish_with_message(format!("done, loss {loss}"));
        }
    }

    /// Clear the bars.
    pub fn finish_round(&self) {
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }

    /// A round completed: one line with each node's loss and timing.
    pub fn round_done(&mut self, record: &RoundRecord, limit: Option<u32>) {
        self.finish_round();
        self.bars = None;
        self.round_bar = None;
        self.nodes.clear();
        if !self.enabled {
            return;
        }
        let of = limit.map(|l| format!("/{l}")).unwrap_or_default();
        let nodes: Vec<String> = record
            .nodes
            .iter()
            .map(|n| {
                let loss = if n.private {
                    "withheld".to_string()
                } else {
                    format!("{:.4}", n.final_loss)
                };
                format!(
                    "{} loss {loss} ({} samples, {:.0} ms)",
                    n.node_id, n.training_samples, n.round_trip_ms
                )
            })
            .collect();
        println!(
            "round {}{of} in {:.0} ms: {}",
            record.round,
            record.duration_ms,
            nodes.join("; ")
        );
        let kinds = [
            (
                "global",
                record
                    .nodes
                    .iter()
                    .filter_map(|n| n.validation_global.as_ref())
                    .collect::<Vec<_>>(),
            ),
            (
                "local",
                record
                    .nodes
                    .iter()
                    .filter_map(|n| n.validation_local.as_ref())
                    .collect(),
            ),
        ];
        for (kind, scores) in kinds {
            if let (Some(first), Some(mean)) =
                (scores.first(), weighted_mean(scores.iter().copied()))
            {
                println!(
                    "  validation on {kind} updates: {} {mean:.4} (mean over {} held-out rows of {} nodes)",
                    first.metric,
                    scores.iter().map(|s| s.samples).sum::<u64>(),
                    scores.len()
                );
            }
        }
        if let Some(worst) = record
            .privacy
            .iter()
            .max_by(|a, b| a.epsilon.total_cmp(&b.epsilon))
        {
            println!(
                "  privacy spent: ε = {:.3} for δ = {:e} (largest, {})",
                worst.epsilon, worst.delta, worst.node_id
            );
        }
    }

    /// The final validation round finished: the mean score and each node's.
    pub fn final_validation(&self, record: &FinalValidation) {
        if !self.enabled {
            return;
        }
        let scores: Vec<_> = record.nodes.iter().map(|n| &n.validation).collect();
        let per_node: Vec<String> = record
            .nodes
            .iter()
            .map(|n| format!("{} {:.4}", n.node_id, n.validation.value))
            .collect();
        match (scores.first(), weighted_mean(scores.iter().copied())) {
            (Some(first), Some(mean)) => println!(
                "final validation of round {}: {} {mean:.4} ({}){}",
                record.round,
                first.metric,
                per_node.join(", "),
                if record.failed.is_empty() {
                    String::new()
                } else {
                    format!("; {} node(s) failed", record.failed.len())
                }
            ),
            _ => println!(
                "final validation of round {}: no node answered",
                record.round
            ),
        }
    }
}
