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
//!
//! Materializing `[batch, numel]` is costly for large dense layers, so
//! operations built with [`Tensor::from_ghost_buf`] (the linear map) may
//! answer with each sample's squared norm only ([`Need::SampleSquares`],
//! "ghost clipping"); a second backward pass then asks them for the clipped
//! sum directly ([`Need::Clipped`], the factors read from
//! [`clip_factors`]). A parameter used by more than one operation falls
//! back to materialized gradients, since squared norms do not add up.

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
    /// Each sample's squared gradient norm (`[batch]`), or, failing that, its
    /// gradient as for `PerSample`. Only asked of ghost operations.
    SampleSquares(usize),
    /// The sum over samples of each sample's gradient times its clipping
    /// factor ([`clip_factors`]), shaped like the input. Only asked of ghost
    /// operations, in the second DP-SGD pass.
    Clipped(usize),
}

/// An input's gradient, in the form its [`Need`] asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Grad {
    /// Shaped like the input.
    Sum(Vec<f32>),
    /// `[batch, numel]`.
    PerSample(Vec<f32>),
    /// `[batch]` squared norms.
    SampleSquares(Vec<f64>),
}

thread_local! {
    static CLIP_FACTORS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The per-sample clipping factors of the DP-SGD pass under way.
pub(crate) fn clip_factors() -> Vec<f32> {
    CLIP_FACTORS.with(|f| f.borrow().clone())
}

/// An operation's backward function: given `∂L/∂output` (shaped like the
/// output) and what each input needs, return one entry per input (`None`
/// where nothing is needed).
pub trait BackwardFn: Fn(&[f32], &[Need]) -> PlanResult<Vec<Option<Grad>>> {}
impl<F: Fn(&[f32], &[Need]) -> PlanResult<Vec<Option<Grad>>>> BackwardFn for F {}

/// How a non-leaf tensor was computed.
pub(crate) struct Node {
    pub name: &'static str,
    /// Whether the operation answers [`Need::SampleSquares`] and [`Need::Clipped`].
    pub ghost: bool,
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

/// How a backward pass treats the leaves (parameters).
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// Gradients accumulate into each leaf.
    Plain,
    /// Per-sample gradients (or squared norms from ghost operations) are
    /// collected instead.
    PerSample { batch: usize, ghost: bool },
    /// Ghost operations add the clipped sum for the leaves in `keys` into
    /// their gradients; other leaves get nothing.
    Clipped { batch: usize, keys: &'a [usize] },
}

/// What a per-sample pass found for one parameter.
#[derive(Default)]
struct Found {
    full: Option<Vec<f32>>,
    squares: Vec<Vec<f64>>,
}

fn run(root: &Tensor, seed: Vec<f32>, mode: Mode<'_>) -> PlanResult<HashMap<usize, Found>> {
    if !root.requires_grad() {
        return Err(invalid_state(
            "backward(): the loss does not depend on any parameter (was it computed under no_grad?)",
        ));
    }
    let mut pending: HashMap<usize, Vec<f32>> = HashMap::new();
    let mut found: HashMap<usize, Found> = HashMap::new();
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
            .map(|i| match (i.requires_grad(), i.is_leaf(), mode) {
                (false, _, _) => Need::Nothing,
                (true, false, _) | (true, true, Mode::Plain) => Need::Sum,
                (true, true, Mode::PerSample { batch, ghost }) if ghost && node.ghost => {
                    Need::SampleSquares(batch)
                }
                (true, true, Mode::PerSample { batch, .. }) => Need::PerSample(batch),
                (true, true, Mode::Clipped { batch, keys })
                    if node.ghost && keys.contains(&i.key()) =>
                {
                    Need::Clipped(batch)
                }
                (true, true, Mode::Clipped { .. }) => Need::Nothing,
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
            let size = input.numel();
            match (need, g) {
                (Need::Nothing, _) | (Need::Sum, None) => {}
                (Need::Sum, Some(Grad::Sum(g))) if g.len() == size => {
                    add_into(&mut pending, input.key(), g)
                }
                (Need::Clipped(_), Some(Grad::Sum(g))) if g.len() == size => {
                    input.accumulate_grad(g)
                }
                (Need::PerSample(b) | Need::SampleSquares(b), Some(Grad::PerSample(g)))
                    if g.len() == b * size =>
                {
                    let entry = found.entry(input.key()).or_default();
                    match entry.full.as_mut() {
                        Some(acc) => crate::kernels::simd::add_assign(acc, &g),
                        None => entry.full = Some(g),
                    }
                }
                (Need::SampleSquares(b), Some(Grad::SampleSquares(sq))) if sq.len() == *b => {
                    found.entry(input.key()).or_default().squares.push(sq)
                }
                (
                    Need::PerSample(_) | Need::SampleSquares(_) | Need::Clipped(_),
                    Some(Grad::Sum(_)) | None,
                ) => {
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
    Ok(found)
}

/// Accumulate `∂root/∂leaf`, scaled by `seed`, into every leaf's gradient.
pub(crate) fn backward(root: &Tensor, seed: Vec<f32>) -> PlanResult<()> {
    run(root, seed, Mode::Plain).map(|_| ())
}

/// DP-SGD's backward: each sample's gradient norm of `root` (the mean of
/// `batch` samples' losses) over `params`, scaled by the batch (the norm of
/// the sample's own loss gradient); with `clip`, each sample's gradient is
/// then scaled to norm at most `clip`, and the sum of the shares (÷ batch
/// included) is added to every parameter's gradient.
pub(crate) fn dp_backward(
    root: &Tensor,
    params: &[Tensor],
    batch: usize,
    clip: Option<f32>,
) -> PlanResult<Vec<f32>> {
    let seed = vec![1.0; root.numel()];
    let mut found = run(root, seed.clone(), Mode::PerSample { batch, ghost: true })?;
    let additive = found
        .values()
        .all(|f| f.squares.len() + usize::from(f.full.is_some()) <= 1);
    if !additive {
        found = run(
            root,
            seed.clone(),
            Mode::PerSample {
                batch,
                ghost: false,
            },
        )?;
    }
    let mut sq = vec![0.0f64; batch];
    for p in params {
        let Some(f) = found.get(&p.key()) else {
            continue;
        };
        for squares in &f.squares {
            sq.iter_mut().zip(squares).for_each(|(a, b)| *a += b);
        }
        if let Some(full) = &f.full {
            for (a, share) in sq.iter_mut().zip(full.chunks_exact(p.numel().max(1))) {
                *a += share.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
            }
        }
    }
    let norms: Vec<f32> = sq
        .iter()
        .map(|s| (s.sqrt() * batch as f64) as f32)
        .collect();
    let Some(clip) = clip else {
        return Ok(norms);
    };
    let factors: Vec<f32> = norms
        .iter()
        .map(|&n| if n > clip { clip / n } else { 1.0 })
        .collect();
    let mut ghost_keys = Vec::new();
    for p in params {
        let Some(f) = found.remove(&p.key()) else {
            continue;
        };
        if let Some(full) = f.full {
            let mut sum = vec![0.0f32; p.numel()];
            for (share, &c) in full.chunks_exact(p.numel().max(1)).zip(&factors) {
                crate::kernels::simd::axpy(c, share, &mut sum);
            }
            p.accumulate_grad(sum);
        } else if !f.squares.is_empty() {
            ghost_keys.push(p.key());
        }
    }
    if !ghost_keys.is_empty() {
        CLIP_FACTORS.with(|f| *f.borrow_mut() = factors);
        let result = run(
            root,
            seed,
            Mode::Clipped {
                batch,
                keys: &ghost_keys,
            },
        );
        CLIP_FACTORS.with(|f| f.borrow_mut().clear());
        result?;
    }
    Ok(norms)
}
