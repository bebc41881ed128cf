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
use crate::backend::Buf;
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

/// An input's gradient as a tensor, which stays on the node's host when
/// the operation computed it there.
pub(crate) enum HostGrad {
    /// Shaped like the input.
    Sum(Tensor),
    /// `[batch, numel]`.
    PerSample(Tensor),
    /// `[batch]` squared norms.
    SampleSquares(Vec<f64>),
}

/// The SDK's own backward functions: [`BackwardFn`] on tensors rather than
/// plan-side values.
pub(crate) trait HostBackwardFn:
    Fn(&Tensor, &[Need]) -> PlanResult<Vec<Option<HostGrad>>>
{
}
impl<F: Fn(&Tensor, &[Need]) -> PlanResult<Vec<Option<HostGrad>>>> HostBackwardFn for F {}

/// A node's backward function, of either kind.
pub(crate) enum Backward {
    /// An author's (or a plan-side) operation: values in, values out.
    Values(Box<dyn BackwardFn>),
    /// An operation on the backend: tensors in, tensors out.
    Host(Box<dyn HostBackwardFn>),
}

impl Backward {
    /// The inputs' gradients for the output gradient `g`.
    fn call(
        &self,
        g: &Tensor,
        needs: &[Need],
        inputs: &[Tensor],
    ) -> PlanResult<Vec<Option<HostGrad>>> {
        match self {
            Backward::Host(f) => f(g, needs),
            Backward::Values(f) => {
                let grads = f(&g.values(), needs)?;
                Ok(grads
                    .into_iter()
                    .zip(inputs)
                    .map(|(grad, input)| {
                        grad.map(|grad| match grad {
                            Grad::Sum(v) => {
                                let shape = if v.len() == input.numel() {
                                    input.shape().to_vec()
                                } else {
                                    vec![v.len()]
                                };
                                HostGrad::Sum(Tensor::from_values(Buf::local(v), &shape))
                            }
                            Grad::PerSample(v) => {
                                let len = v.len();
                                HostGrad::PerSample(Tensor::from_values(Buf::local(v), &[len]))
                            }
                            Grad::SampleSquares(sq) => HostGrad::SampleSquares(sq),
                        })
                    })
                    .collect())
            }
        }
    }
}

/// How a non-leaf tensor was computed.
pub(crate) struct Node {
    pub name: &'static str,
    /// Whether the operation answers [`Need::SampleSquares`] and [`Need::Clipped`].
    pub ghost: bool,
    pub inputs: Vec<Tensor>,
    pub backward: Backward,
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

fn add_into(map: &mut HashMap<usize, Tensor>, key: usize, g: Tensor) -> PlanResult<()> {
    let sum = match map.remove(&key) {
        Some(acc) => crate::backend::add(&acc, &g)?,
        None => g,
    };
    map.insert(key, sum);
    Ok(())
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
    full: Option<Tensor>,
    squares: Vec<Vec<f64>>,
}

fn run(root: &Tensor, seed: Vec<f32>, mode: Mode<'_>) -> PlanResult<HashMap<usize, Found>> {
    let seed = Tensor::from_values(Buf::local(seed), root.shape());
    if !root.requires_grad() {
        return Err(invalid_state(
            "backward(): the loss does not depend on any parameter (was it computed under no_grad?)",
        ));
    }
    let mut pending: HashMap<usize, Tensor> = HashMap::new();
    let mut found: HashMap<usize, Found> = HashMap::new();
    pending.insert(root.key(), seed);
    for t in topological(root).iter().rev() {
        let Some(grad) = pending.remove(&t.key()) else {
            continue;
        };
        let Some(node) = t.node() else {
            t.accumulate_grad(grad)?;
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
        let grads = node.backward.call(&grad, &needs, &node.inputs)?;
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
                (Need::Sum, Some(HostGrad::Sum(g))) if g.numel() == size => {
                    add_into(&mut pending, input.key(), g)?
                }
                (Need::Clipped(_), Some(HostGrad::Sum(g))) if g.numel() == size => {
                    input.accumulate_grad(g)?
                }
                (Need::PerSample(b) | Need::SampleSquares(b), Some(HostGrad::PerSample(g)))
                    if g.numel() == b * size =>
                {
                    let entry = found.entry(input.key()).or_default();
                    entry.full = Some(match entry.full.take() {
                        Some(acc) => crate::backend::add(&acc, &g)?,
                        None => g,
                    });
                }
                (Need::SampleSquares(b), Some(HostGrad::SampleSquares(sq))) if sq.len() == *b => {
                    found.entry(input.key()).or_default().squares.push(sq)
                }
                (
                    Need::PerSample(_) | Need::SampleSquares(_) | Need::Clipped(_),
                    Some(HostGrad::Sum(_)) | None,
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
            let full = full.values();
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
            for (share, &c) in full.values().chunks_exact(p.numel().max(1)).zip(&factors) {
                crate::kernels::simd::axpy(c, share, &mut sum);
            }
            p.accumulate_grad(Tensor::from_values(Buf::local(sum), p.shape()))?;
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
