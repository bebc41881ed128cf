//! Where a tensor's values live and where the heavy arithmetic runs.
//!
//! A plan in wasm keeps its model and graph, but the values of a tensor may
//! live on the node's host (a `compute.tensor` resource), where operations
//! such as matrix products and convolutions run natively on every core the
//! node gives the plan. Natively (the SDK's tests, a plan crate used as a
//! library) the same operations run in this process on the same kernels
//! (`fedwasm-kernels`), so both give the same bits.
//!
//! A [`Buf`] holds the values here, there, or both: an operation on the
//! host uploads what it has not got yet, and reading values in the plan
//! fetches them once. Changing them in the plan makes the host copy stale,
//! so it is dropped and uploaded again when an operation next needs it.

use fedwasm_kernels::{Op, Update};

use crate::error::{PlanResult, invalid_data};
use crate::tensor::Tensor;

#[cfg(target_arch = "wasm32")]
use crate::__bindings::fedwasm::plan::compute;

#[cfg(target_arch = "wasm32")]
mod host_call;
#[cfg(target_arch = "wasm32")]
use host_call::call;

/// A tensor's values: in the plan, on the host, or both.
pub(crate) struct Buf {
    local: Option<Vec<f32>>,
    #[cfg(target_arch = "wasm32")]
    remote: Option<compute::Tensor>,
    len: usize,
}

impl Buf {
    /// Values held in the plan.
    pub(crate) fn local(values: Vec<f32>) -> Buf {
        Buf {
            len: values.len(),
            local: Some(values),
            #[cfg(target_arch = "wasm32")]
            remote: None,
        }
    }

    /// Values held by the host (`len` of them).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn remote(tensor: compute::Tensor, len: usize) -> Buf {
        Buf {
            local: None,
            remote: Some(tensor),
            len,
        }
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the values are in the plan already.
    pub(crate) fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Make sure the values are in the plan (one copy from the host, once).
    pub(crate) fn fetch(&mut self) {
        #[cfg(target_arch = "wasm32")]
        if self.local.is_none() {
            let remote = self.remote.as_ref().expect("a buffer is held somewhere");
            self.local = Some(remote.read());
        }
    }

    /// The values, once [`Buf::fetch`]ed.
    pub(crate) fn values(&self) -> &[f32] {
        self.local
            .as_deref()
            .expect("values fetched before they are read")
    }

    /// The values, to change in the plan; the host's copy becomes stale and
    /// is dropped.
    pub(crate) fn values_mut(&mut self) -> &mut [f32] {
        self.fetch();
        #[cfg(target_arch = "wasm32")]
        {
            self.remote = None;
        }
        self.local
            .as_deref_mut()
            .expect("values fetched before they are changed")
    }

    /// Make sure the host has the values (wasm), uploading them once.
    #[cfg(target_arch = "wasm32")]
    fn upload(&mut self) -> PlanResult<()> {
        if self.remote.is_none() {
            let values = self.local.as_deref().expect("a buffer is held somewhere");
            self.remote = Some(compute::Tensor::upload(values)?);
        }
        Ok(())
    }

    /// The values `update` changed in place on the host: the plan's copy is
    /// stale and dropped (a no-op natively, where they were changed here).
    fn changed_remotely(&mut self) {
        #[cfg(target_arch = "wasm32")]
        {
            self.local = None;
        }
    }
}

/// Make sure the host holds `t`'s values, uploading them once (a borrow
/// only, when it has them already, so a tensor passed twice is fine).
#[cfg(target_arch = "wasm32")]
fn ensure_on_host(t: &Tensor) -> PlanResult<()> {
    if t.buf().remote.is_none() {
        t.buf_mut().upload()?;
    }
    Ok(())
}

/// `len` zeros, held where operations run: on the host in wasm (nothing
/// sent), here natively.
pub(crate) fn zeros(len: usize) -> PlanResult<Buf> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(Buf::remote(compute::Tensor::zeros(len as u64)?, len))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Ok(Buf::local(vec![0.0; len]))
    }
}

/// A copy of `t`'s values, made where they are (on the host when it has
/// them, so nothing crosses into the plan).
pub(crate) fn duplicate(t: &Tensor) -> PlanResult<Tensor> {
    #[cfg(target_arch = "wasm32")]
    if let Some(remote) = t.buf().remote.as_ref() {
        let copy = Buf::remote(remote.duplicate()?, t.numel());
        return Ok(Tensor::from_values(copy, t.shape()));
    }
    Ok(Tensor::from_values(Buf::local(t.to_vec()), t.shape()))
}

/// A dropout mask of `len` values (0 with probability `p`, `1/(1 − p)`
/// otherwise) from the plan's random stream: made on the node's host in
/// wasm, where it is used; here natively, from the same stream; the same
/// bits either way.
pub(crate) fn dropout_mask(len: usize, p: f32) -> PlanResult<Buf> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(Buf::remote(compute::dropout_mask(len as u64, p)?, len))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let keep = 1.0 / (1.0 - p);
        let mask = crate::random::uniform(len)
            .into_iter()
            .map(|u| if u < p { 0.0 } else { keep })
            .collect();
        Ok(Buf::local(mask))
    }
}

/// `t += std·n`, n standard normals from the plan's random stream
/// (DP-SGD's noise): on the node's host in wasm, where the gradient is, so
/// it never crosses into the plan; here natively, from the same stream;
/// the same bits either way.
pub(crate) fn add_normal(t: &Tensor, std: f32) -> PlanResult<()> {
    #[cfg(target_arch = "wasm32")]
    {
        ensure_on_host(t)?;
        {
            let held = t.buf();
            compute::add_normal(held.remote.as_ref().expect("uploaded above"), std)?;
        }
        t.buf_mut().changed_remotely();
        Ok(())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let noise = crate::random::normal(t.numel());
        for (v, n) in t.values_mut().iter_mut().zip(noise) {
            *v += std * n;
        }
        Ok(())
    }
}

/// The tensors of one optimizer update besides the parameter and its
/// gradient (`None` when the update does not use them).
#[derive(Default)]
pub(crate) struct UpdateOperands<'a> {
    /// Scaffold's correction.
    pub(crate) correction: Option<&'a Tensor>,
    /// FedProx's anchor.
    pub(crate) anchor: Option<&'a Tensor>,
    /// The rule's first state tensor (velocity or first moment).
    pub(crate) first: Option<&'a Tensor>,
    /// Adam's second moment.
    pub(crate) second: Option<&'a Tensor>,
}

/// One optimizer update of `w` from its gradient `g`, in place (with the
/// rule's state): on the node's host in wasm, where the gradient already
/// is, so neither it nor the parameter crosses into the plan; here
/// natively; the same kernel either way.
pub(crate) fn update(
    u: &Update,
    w: &Tensor,
    g: &Tensor,
    more: &UpdateOperands<'_>,
) -> PlanResult<()> {
    let len = |t: Option<&Tensor>| t.map(Tensor::numel);
    u.check(
        w.numel(),
        g.numel(),
        [len(more.correction), len(more.anchor)],
        [len(more.first), len(more.second)],
    )
    .map_err(|e| invalid_data(e.0))?;
    update_in_place(u, w, g, more)?;
    for t in [Some(w), more.first, more.second].into_iter().flatten() {
        t.buf_mut().changed_remotely();
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn update_in_place(
    u: &Update,
    w: &Tensor,
    g: &Tensor,
    more: &UpdateOperands<'_>,
) -> PlanResult<()> {
    use fedwasm_kernels::update::{Extras, State};
    let correction = more.correction.map(Tensor::values);
    let anchor = more.anchor.map(Tensor::values);
    let mut first = more.first.map(Tensor::values_mut);
    let mut second = more.second.map(Tensor::values_mut);
    let extras = Extras {
        correction: correction.as_deref(),
        anchor: anchor.as_deref(),
    };
    let state = State {
        first: first.as_deref_mut(),
        second: second.as_deref_mut(),
    };
    u.apply(&mut w.values_mut(), &g.values(), extras, state);
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn update_in_place(
    u: &Update,
    w: &Tensor,
    g: &Tensor,
    more: &UpdateOperands<'_>,
) -> PlanResult<()> {
    use fedwasm_kernels::update::Rule;
    let all = [
        Some(w),
        Some(g),
        more.correction,
        more.anchor,
        more.first,
        more.second,
    ];
    for t in all.into_iter().flatten() {
        ensure_on_host(t)?;
    }
    let held = all.map(|t| t.map(|t| t.buf()));
    let h: Vec<Option<&compute::Tensor>> = held
        .iter()
        .map(|b| {
            b.as_ref()
                .map(|b| b.remote.as_ref().expect("uploaded above"))
        })
        .collect();
    let rule = match u.rule {
        Rule::Sgd => compute::UpdateRule::Sgd,
        Rule::Momentum {
            momentum,
            nesterov,
            first_update,
        } => compute::UpdateRule::Momentum(compute::MomentumRule {
            momentum,
            nesterov,
            first_update,
        }),
        Rule::Adam {
            beta1,
            beta2,
            eps,
            c1,
            c2,
            decay,
        } => compute::UpdateRule::Adam(compute::AdamRule {
            beta1,
            beta2,
            eps,
            c1,
            c2,
            decay,
        }),
    };
    let step = compute::UpdateStep {
        lr: u.lr,
        scale: u.scale,
        prox_mu: u.prox_mu,
        l2: u.l2,
        rule,
    };
    let [w, g] = [h[0], h[1]].map(|h| h.expect("always given"));
    compute::update(step, w, g, h[2], h[3], h[4], h[5])?;
    Ok(())
}

/// `a + b` of two tensors of one length: in the plan when both are there
/// already, on the host otherwise (the same bits either way: one rounded
/// addition per element).
pub(crate) fn add(a: &Tensor, b: &Tensor) -> PlanResult<Tensor> {
    if a.numel() != b.numel() {
        return Err(invalid_data(format!(
            "adding gradients of {} and {} values",
            a.numel(),
            b.numel()
        )));
    }
    if a.buf().is_local() && b.buf().is_local() {
        let sum: Vec<f32> = a
            .values()
            .iter()
            .zip(b.values().iter())
            .map(|(x, y)| x + y)
            .collect();
        return Ok(Tensor::from_values(Buf::local(sum), a.shape()));
    }
    let sum = run(Op::Add, &[a, b])?;
    Ok(Tensor::from_values(sum, a.shape()))
}

/// Run `op` on the values of `inputs`, giving its output's values: on the
/// node's host in wasm, in this process natively, with the same kernels.
pub(crate) fn run(op: Op, inputs: &[&Tensor]) -> PlanResult<Buf> {
    let lens: Vec<usize> = inputs.iter().map(|t| t.numel()).collect();
    let out_len = op.output_len(&lens).map_err(|e| invalid_data(e.0))?;
    execute(op, inputs, out_len)
}

/// [`run`] for a light operation (one pass over its values): in the plan
/// when every input is there already — a loss's few values, a tensor the
/// plan built — since sending them would cost more than the pass; on the
/// host otherwise. The same kernel either way, so the same bits.
pub(crate) fn run_near(op: Op, inputs: &[&Tensor]) -> PlanResult<Buf> {
    let lens: Vec<usize> = inputs.iter().map(|t| t.numel()).collect();
    let out_len = op.output_len(&lens).map_err(|e| invalid_data(e.0))?;
    if inputs.iter().all(|t| t.buf().is_local()) {
        return Ok(run_here(op, inputs, out_len));
    }
    execute(op, inputs, out_len)
}

/// `op` on values held in this process.
fn run_here(op: Op, inputs: &[&Tensor], out_len: usize) -> Buf {
    let held: Vec<std::cell::Ref<'_, [f32]>> = inputs.iter().map(|t| t.values()).collect();
    let slices: Vec<&[f32]> = held.iter().map(|v| &**v).collect();
    let mut out = vec![0.0; out_len];
    op.run(&slices, &mut out);
    Buf::local(out)
}

#[cfg(not(target_arch = "wasm32"))]
fn execute(op: Op, inputs: &[&Tensor], out_len: usize) -> PlanResult<Buf> {
    Ok(run_here(op, inputs, out_len))
}

#[cfg(target_arch = "wasm32")]
fn execute(op: Op, inputs: &[&Tensor], out_len: usize) -> PlanResult<Buf> {
    for t in inputs {
        ensure_on_host(t)?;
    }
    let held: Vec<std::cell::Ref<'_, Buf>> = inputs.iter().map(|t| t.buf()).collect();
    let h: Vec<&compute::Tensor> = held
        .iter()
        .map(|b| b.remote.as_ref().expect("uploaded above"))
        .collect();
    Ok(Buf::remote(call(&op, &h)?, out_len))
}
