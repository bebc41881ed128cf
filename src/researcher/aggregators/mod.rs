//! Aggregators: how nodes' parameters become the next global model.
//!
//! An [`Aggregator`] is streaming: the experiment folds each node's
//! parameters into it one reply at a time ([`Aggregator::fold`]), so researcher
//! memory is O(model), not O(nodes × model). [`OrderedFolder`] calls `fold` in
//! node-id order whatever the order replies arrive in — floating-point sums
//! depend on their order, and the same inputs must give the same bytes.
//!
//! Against a signed but dishonest or broken hospital (a huge update, a
//! claimed sample count as large as the rows it pinned): [`CoordinateWise`]
//! (coordinate-wise median, trimmed mean) and [`ClippedFedAvg`] (update
//! norms clipped to a bound each round).

mod clipped;
mod coordinate;
mod fedavg;
mod ordered;
mod scaffold;

pub use clipped::ClippedFedAvg;
pub use coordinate::{CoordinateRule, CoordinateWise};
pub use fedavg::FedAvg;
pub use ordered::OrderedFolder;
pub use scaffold::Scaffold;

use serde_json::Value;

use crate::sandbox::types::Tensor;
use crate::training::TrainingArgs;

/// Why an aggregation step failed.
#[derive(Debug, thiserror::Error)]
pub enum AggregationError {
    /// A node's parameters do not match the global model.
    #[error("node {node}: {reason}")]
    Mismatch {
        /// The node.
        node: String,
        /// What differs.
        reason: String,
    },
    /// Nothing to aggregate (no node, or zero samples in total).
    #[error("no training samples to aggregate: every node reported 0 samples")]
    Empty,
    /// Saved aggregator state that cannot be used.
    #[error("aggregator state: {0}")]
    State(String),
    /// A parameter file could not be read.
    #[error("{0}")]
    File(String),
}

/// Combines the nodes' parameters of a round into new global parameters.
/// Implement it for a custom aggregation; keep in `state` whatever must
/// survive a breakpoint.
pub trait Aggregator: Send {
    /// Name in history and breakpoints, e.g. `"fedavg"`.
    fn name(&self) -> String;

    /// Check the training arguments the nodes will get: an error for what
    /// this aggregator cannot work with, warnings for what it works poorly with.
    fn check_training_args(&self, _args: &TrainingArgs) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    /// What `node` must subtract from its gradients this round (Scaffold's
    /// correction), sent to it with the train request; none by default.
    fn correction(&self, _node: &str, _global: &[Tensor]) -> Option<Vec<Tensor>> {
        None
    }

    /// A node's reply was accepted: the learning rate its plan reported and
    /// the updates it ran. Called before its parameters are folded.
    fn note_reply(&mut self, _node: &str, _learning_rate: Option<f32>, _updates: u64) {}

    /// Begin a round on top of `global`; forgets any unfinished round.
    fn start_round(&mut self, global: &[Tensor]) -> Result<(), AggregationError>;

    /// Fold one node's trained parameters, trained on `samples` rows. Called
    /// once per node, in node-id order; `params` were checked against `global`.
    fn fold(&mut self, node: &str, samples: u64, params: &[Tensor])
    -> Result<(), AggregationError>;

    /// The new global parameters. Persistent state changes only here, so a
    /// round that fails before it leaves the aggregator as it was.
    fn finish(&mut self) -> Result<Vec<Tensor>, AggregationError>;

    /// What the last [`Aggregator::finish`] wants the researcher told (a
    /// bound, the nodes it clipped), taken once; none by default.
    fn notes(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// State to save in a breakpoint.
    fn state(&self) -> Value;

    /// Restore what [`Aggregator::state`] saved.
    fn load_state(&mut self, state: &Value) -> Result<(), AggregationError>;
}

/// Refuse `params` unless they are as many tensors as `model`'s, each of
/// the same size: what an aggregator folds must line up with what it
/// started the round on.
pub(super) fn same_sizes(
    node: &str,
    params: &[Tensor],
    model: &[Tensor],
) -> Result<(), AggregationError> {
    let fits = params.len() == model.len()
        && params
            .iter()
            .zip(model)
            .all(|(p, m)| p.data.len() == m.data.len());
    if fits {
        Ok(())
    } else {
        Err(AggregationError::Mismatch {
            node: node.into(),
            reason: "its tensors do not have the global model's sizes".into(),
        })
    }
}

/// `params` in the order of `global`'s tensors, after checking that they have
/// exactly its names and shapes and only finite values. Files list tensors in
/// their own order (safetensors sorts by name), so matching is by name.
pub fn align_parameters(
    node: &str,
    global: &[Tensor],
    params: Vec<Tensor>,
) -> Result<Vec<Tensor>, AggregationError> {
    let mismatch = |reason: String| AggregationError::Mismatch {
        node: node.into(),
        reason,
    };
    let mut by_name: std::collections::BTreeMap<String, Tensor> =
        params.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut aligned = Vec::with_capacity(global.len());
    for g in global {
        let p = by_name
            .remove(&g.name)
            .ok_or_else(|| mismatch(format!("has no tensor `{}`", g.name)))?;
        if g.shape != p.shape || g.data.len() != p.data.len() {
            return Err(mismatch(format!(
                "tensor `{}` has shape {:?}, the model's is {:?}",
                p.name, p.shape, g.shape
            )));
        }
        if let Some(i) = p.data.iter().position(|v| !v.is_finite()) {
            return Err(mismatch(format!(
                "tensor `{}` holds a non-finite value at index {i}",
                p.name
            )));
        }
        aligned.push(p);
    }
    if let Some(extra) = by_name.keys().next() {
        return Err(mismatch(format!(
            "has a tensor `{extra}`, which the model does not have"
        )));
    }
    Ok(aligned)
}

/// One tensor `w` holding `data`: the parameters of the aggregators' tests.
#[cfg(test)]
pub(super) fn vector(data: &[f32]) -> Vec<Tensor> {
    vec![Tensor {
        name: "w".into(),
        shape: vec![data.len() as u32],
        data: data.to_vec(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, data: &[f32]) -> Tensor {
        Tensor {
            name: name.into(),
            shape: vec![data.len() as u32],
            data: data.to_vec(),
        }
    }

    #[test]
    fn parameters_are_matched_by_name_and_checked() {
        let global = vec![t("w", &[0.0, 0.0]), t("b", &[0.0])];
        let aligned =
            align_parameters("n", &global, vec![t("b", &[1.0]), t("w", &[2.0, 3.0])]).unwrap();
        assert_eq!(aligned[0].name, "w");
        let err = |params| {
            align_parameters("n", &global, params)
                .unwrap_err()
                .to_string()
        };
        assert!(err(vec![t("w", &[0.0, 0.0])]).contains("has no tensor `b`"));
        assert!(err(vec![t("w", &[0.0]), t("b", &[0.0])]).contains("has shape [1]"));
        assert!(err(vec![t("w", &[0.0, f32::NAN]), t("b", &[0.0])]).contains("non-finite"));
        assert!(
            err(vec![t("w", &[0.0, 0.0]), t("b", &[0.0]), t("x", &[0.0])])
                .contains("has a tensor `x`")
        );
    }
}
