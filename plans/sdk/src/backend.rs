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
        if t.buf().remote.is_none() {
            t.buf_mut().upload()?;
        }
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

#[cfg(not(target_arch = "wasm32"))]
fn execute(op: Op, inputs: &[&Tensor], out_len: usize) -> PlanResult<Buf> {
    let held: Vec<std::cell::Ref<'_, [f32]>> = inputs.iter().map(|t| t.values()).collect();
    let slices: Vec<&[f32]> = held.iter().map(|v| &**v).collect();
    let mut out = vec![0.0; out_len];
    op.run(&slices, &mut out);
    Ok(Buf::local(out))
}

#[cfg(target_arch = "wasm32")]
fn execute(op: Op, inputs: &[&Tensor], out_len: usize) -> PlanResult<Buf> {
    for t in inputs {
        if t.buf().remote.is_none() {
            t.buf_mut().upload()?;
        }
    }
    let held: Vec<std::cell::Ref<'_, Buf>> = inputs.iter().map(|t| t.buf()).collect();
    let h: Vec<&compute::Tensor> = held
        .iter()
        .map(|b| b.remote.as_ref().expect("uploaded above"))
        .collect();
    Ok(Buf::remote(call(&op, &h)?, out_len))
}

/// The `compute` function for `op`, on the handles `h` (as many as
/// [`Op::output_len`] accepted).
#[cfg(target_arch = "wasm32")]
fn call(op: &Op, h: &[&compute::Tensor]) -> PlanResult<compute::Tensor> {
    let d = |v: usize| v as u32;
    let conv = |c: &fedwasm_kernels::Conv2d| compute::Conv2dGeometry {
        batch: d(c.batch),
        channels: d(c.window.channels),
        height: d(c.window.input[0]),
        width: d(c.window.input[1]),
        out_channels: d(c.out_channels),
        kernel_height: d(c.window.kernel[0]),
        kernel_width: d(c.window.kernel[1]),
        stride_height: d(c.window.stride[0]),
        stride_width: d(c.window.stride[1]),
        padding_height: d(c.window.padding[0]),
        padding_width: d(c.window.padding[1]),
        dilation_height: d(c.window.dilation[0]),
        dilation_width: d(c.window.dilation[1]),
    };
    let pool = |p: &fedwasm_kernels::Pool2d| compute::Pool2dWindow {
        planes: d(p.planes),
        height: d(p.window.input[0]),
        width: d(p.window.input[1]),
        kernel_height: d(p.window.kernel[0]),
        kernel_width: d(p.window.kernel[1]),
        stride_height: d(p.window.stride[0]),
        stride_width: d(p.window.stride[1]),
        padding_height: d(p.window.padding[0]),
        padding_width: d(p.window.padding[1]),
        dilation_height: d(p.window.dilation[0]),
        dilation_width: d(p.window.dilation[1]),
    };
    let bn = |b: &fedwasm_kernels::BatchNorm| compute::BatchNormDims {
        batch: d(b.batch),
        channels: d(b.channels),
        spatial: d(b.spatial),
    };
    let upsample = |u: &fedwasm_kernels::layout::Upsample| compute::UpsampleDims {
        planes: d(u.planes),
        height: d(u.height),
        width: d(u.width),
        factor: d(u.factor),
    };
    match op {
        Op::MatMul(m) => {
            let dims = compute::MatmulDims {
                m: d(m.m),
                k: d(m.k),
                n: d(m.n),
                transpose_a: m.transpose_a,
                transpose_b: m.transpose_b,
            };
            compute::matmul(dims, h[0], h[1], h.get(2).copied())
        }
        Op::Conv2d(c) => compute::conv2d(conv(c), h[0], h[1], h.get(2).copied()),
        Op::Conv2dInputGrad(c) => compute::conv2d_input_grad(conv(c), h[0], h[1]),
        Op::Conv2dWeightGrad {
            conv: c,
            per_sample,
        } => compute::conv2d_weight_grad(conv(c), *per_sample, h[0], h[1]),
        Op::ChannelSums {
            batch,
            channels,
            plane,
            per_sample,
        } => compute::channel_sums(d(*batch), d(*channels), d(*plane), *per_sample, h[0]),
        Op::Add => compute::add(h[0], h[1]),
        Op::Activate(a) => compute::activate(wit_activation(*a), h[0]),
        Op::ActivateGrad(a) => compute::activate_grad(wit_activation(*a), h[0], h[1]),
        Op::MaxPool2d(p) => compute::max_pool2d(pool(p), h[0]),
        Op::MaxPool2dGrad(p) => compute::max_pool2d_grad(pool(p), h[0], h[1]),
        Op::BatchNormStats { bn: b, eps } => compute::batch_norm_stats(bn(b), *eps, h[0]),
        Op::BatchNormApply(b) => compute::batch_norm(bn(b), h[0], h[1], h[2], h[3]),
        Op::BatchNormInputGrad { bn: b, training } => {
            compute::batch_norm_input_grad(bn(b), *training, h[0], h[1], h[2], h[3])
        }
        Op::BatchNormAffineGrads(b) => compute::batch_norm_affine_grads(bn(b), h[0], h[1], h[2]),
        Op::Upsample2d(u) => compute::upsample_nearest2d(upsample(u), h[0]),
        Op::Upsample2dGrad(u) => compute::upsample_nearest2d_grad(upsample(u), h[0]),
        Op::Cat { outer } => compute::cat(d(*outer), h[0], h[1]),
        Op::CatPart {
            outer,
            inner,
            start,
            len,
        } => compute::cat_part(d(*outer), d(*inner), d(*start), d(*len), h[0]),
    }
}

#[cfg(target_arch = "wasm32")]
fn wit_activation(a: fedwasm_kernels::Activation) -> compute::Activation {
    use fedwasm_kernels::Activation;
    match a {
        Activation::Relu => compute::Activation::Relu,
        Activation::LeakyRelu(slope) => compute::Activation::LeakyRelu(slope),
        Activation::Sigmoid => compute::Activation::Sigmoid,
        Activation::Tanh => compute::Activation::Tanh,
        Activation::Gelu => compute::Activation::Gelu,
    }
}
