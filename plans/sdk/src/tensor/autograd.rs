//! The backward pass: walk the graph from the loss to the leaves in reverse
//! topological order, handing each operation its output's gradient.
//!
//! The order is a depth-first post-order from the loss over inputs in
//! argument order, so gradients are summed in the same order on every run.
//!
//! DP-SGD needs each sample's own gradient. In that mode every operation is
//! asked for per-sample gradients ([`Need::PerSample`]) of the leaves it uses
//! directly: `[batch, numel]`, sample `b`'s slice being the gradient of the
//! loss's share from sample `b`. Operations that mix samples (BatchNorm in
//! training) refuse; an operation that only knows summed gradients is an
//! error, never a silent wrong answer.

use std::collections::HashMap;

use super::Tensor;
use crate::error::{PlanResult, internal, invalid_state};

/// What backward asks an operation for, per input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No gradient flows into this input.
    Nothing,
    /// The gradient, summed over the batch, shaped like the input.
    Sum,
    /// Each sample's gradient: `[batch, numel]`, where the batch is the first
    /// dimension of the operation's output.
    PerSample(usize),
}

/// An input's gradient, in the form its [`Need`] asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Grad {
    /// Shaped like the input.
    Sum(Vec<f32>),
    /// `[batch, numel]`.
    PerSample(Vec<f32>),
}

/// An operation's backward function: given `∂L/∂output` (shaped like the
/// output) and what each input needs, return one entry per input (`None`
/// where nothing is needed).
pub trait BackwardFn: Fn(&[f32], &[Need]) -> PlanResult<Vec<Option<Grad>>> {}
impl<F: Fn(&[f32], &[Need]) -> PlanResult<Vec<Option<Grad>>>> BackwardFn for F {}

/// How a non-leaf tensor was computed.
pub(crate) struct Node {
    pub name: &'static str,
    pub inputs: Vec<Tensor>,
    pub backward: Box<dyn BackwardFn>,
}

/// Tensors that lead to `root` and need a gradient, inputs before outputs.
fn topological(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.key()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(node) = t.node() {
            for input in node.inputs.iter().rev() {
                if input.requires_grad() && !seen.contains(&input.key()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

fn add_into(map: &mut HashMap<usize, Vec<f32>>, key: usize, g: Vec<f32>) {
    match map.get_mut(&key) {
        Some(acc) => crate::kernels::simd::add_assign(acc, &g),
        None => {
            map.insert(key, g);
        }
    }
}

/// Run the graph backward from `root` with `seed` = ∂L/∂root. With
/// `per_sample = Some(batch)`, leaves get per-sample gradients returned by
/// key instead of accumulated into `grad`.
fn run(
    root: &Tensor,
    seed: Vec<f32>,
    per_sample: Option<usize>,
) -> PlanResult<HashMap<usize, Vec<f32>>> {
    if !root.requires_grad() {
        return Err(invalid_state(
            "backward(): the loss does not depend on any parameter (was it computed under no_grad?)",
        ));
    }
    let mut pending: HashMap<usize, Vec<f32>> = HashMap::new();
    let mut samples: HashMap<usize, Vec<f32>> = HashMap::new();
    pending.insert(root.key(), seed);
    for t in topological(root).iter().rev() {
        let Some(grad) = pending.remove(&t.key()) else {
            continue;
        };
        let Some(node) = t.node() else {
            t.accumulate_grad(grad);
            continue;
        };
        let needs: Vec<Need> = node
            .inputs
            .iter()
            .map(|i| match (i.requires_grad(), per_sample) {
                (false, _) => Need::Nothing,
                (true, Some(b)) if i.is_leaf() => Need::PerSample(b),
                (true, _) => Need::Sum,
            })
            .collect();
        let grads = (node.backward)(&grad, &needs)?;
        drop(grad);
        if grads.len() != node.inputs.len() {
            return Err(internal(format!(
                "{}: backward gave {} gradients for {} inputs",
                node.name,
                grads.len(),
                node.inputs.len()
            )));
        }
        for ((input, need), g) in node.inputs.iter().zip(&needs).zip(grads) {
            match (need, g) {
                (Need::Nothing, _) | (Need::Sum, None) => {}
                (Need::Sum, Some(Grad::Sum(g))) if g.len() == input.numel() => {
                    add_into(&mut pending, input.key(), g)
                }
                (Need::PerSample(b), Some(Grad::PerSample(g))) if g.len() == b * input.numel() => {
                    add_into(&mut samples, input.key(), g)
                }
                (Need::PerSample(_), Some(Grad::Sum(_)) | None) => {
                    return Err(invalid_state(format!(
                        "DP-SGD needs each sample's gradient, and `{}` cannot give one for the \
                         parameter it uses; use layers the SDK documents as DP-compatible",
                        node.name
                    )));
                }
                (_, Some(_)) => {
                    return Err(internal(format!(
                        "{}: backward gave a gradient of the wrong size or kind",
                        node.name
                    )));
                }
            }
        }
    }
    Ok(samples)
}

/// Accumulate `∂root/∂leaf`, scaled by `seed`, into every leaf's gradient.
pub(crate) fn backward(root: &Tensor, seed: Vec<f32>) -> PlanResult<()> {
    run(root, seed, None).map(|_| ())
}

/// Each sample's gradient of `root` for each of `params`: `[batch, numel]`
/// per parameter (zeros for a parameter `root` does not use). Leaves' own
/// gradients are left untouched.
pub(crate) fn per_sample_gradients(
    root: &Tensor,
    params: &[Tensor],
    batch: usize,
) -> PlanResult<Vec<Vec<f32>>> {
    let mut samples = run(root, vec![1.0; root.numel()], Some(batch))?;
    Ok(params
        .iter()
        .map(|p| {
            samples
                .remove(&p.key())
                .unwrap_or_else(|| vec![0.0; batch * p.numel()])
        })
        .collect())
}
