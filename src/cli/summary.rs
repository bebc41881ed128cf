//! What `fedwasm run`, `resume` and `demo` print once the rounds are done:
//! the final validation and the privacy each node has spent.

use fedwasm::researcher::History;

/// Print the final validation scores and each node's ε, when the history has them.
pub fn print_summary(history: &History) {
    if let Some(v) = &history.final_validation {
        let scores: Vec<String> = v
            .nodes
            .iter()
            .map(|n| format!("{} {:.4}", n.node_id, n.validation.value))
            .collect();
        let metric = v
            .nodes
            .first()
            .map_or("score", |n| n.validation.metric.as_str());
        println!(
            "validation of round {}'s model on the nodes' held-out rows ({metric}): {}",
            v.round,
            scores.join(", ")
        );
        for failed in &v.failed {
            println!("  {} could not validate: {}", failed.node_id, failed.reason);
        }
    }
    if let Some(last) = history.rounds.last() {
        for spent in &last.privacy {
            println!(
                "privacy spent by {}: ε = {:.3} for δ = {:e}",
                spent.node_id, spent.epsilon, spent.delta
            );
        }
    }
}
