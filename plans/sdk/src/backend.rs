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

use fedwasm_kernels::Op;

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

    /// The values, taken out.
    pub(crate) fn into_vec(mut self) -> Vec<f32> {
        self.fetch();
        self.local.take().unwrap_or_default()
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
}

impl From<Vec<f32>> for Buf {
    fn from(values: Vec<f32>) -> Buf {
        Buf::local(values)
    }
}

/// Run `op` on the values of `inputs`, giving its outputs' values: on the
/// node's host in wasm, in this process natively, with the same kernels.
pub(crate) fn run(op: Op, inputs: &[&Tensor]) -> PlanResult<Vec<Buf>> {
    let lens: Vec<usize> = inputs.iter().map(|t| t.numel()).collect();
    let out_lens = op.outputs(&lens).map_err(|e| invalid_data(e.0))?;
    execute(op, inputs, &out_lens)
}

#[cfg(not(target_arch = "wasm32"))]
fn execute(op: Op, inputs: &[&Tensor], out_lens: &[usize]) -> PlanResult<Vec<Buf>> {
    let held: Vec<std::cell::Ref<'_, [f32]>> = inputs.iter().map(|t| t.values()).collect();
    let slices: Vec<&[f32]> = held.iter().map(|v| &**v).collect();
    let mut outputs: Vec<Vec<f32>> = out_lens.iter().map(|&n| vec![0.0; n]).collect();
    op.run(&slices, &mut outputs);
    Ok(outputs.into_iter().map(Buf::local).collect())
}

#[cfg(target_arch = "wasm32")]
fn execute(op: Op, inputs: &[&Tensor], out_lens: &[usize]) -> PlanResult<Vec<Buf>> {
    for t in inputs {
        t.buf_mut().upload()?;
    }
    let held: Vec<std::cell::Ref<'_, Buf>> = inputs.iter().map(|t| t.buf()).collect();
    let handles: Vec<&compute::Tensor> = held
        .iter()
        .map(|b| b.remote.as_ref().expect("uploaded above"))
        .collect();
    let outputs = compute::run(wit_op(&op), &handles)?;
    Ok(outputs
        .into_iter()
        .zip(out_lens)
        .map(|(t, &len)| Buf::remote(t, len))
        .collect())
}

/// The WIT operation for the kernels' one (dimensions the SDK checked).
#[cfg(target_arch = "wasm32")]
fn wit_op(op: &Op) -> compute::Op {
    let d = |v: usize| v as u32;
    let conv = |c: &fedwasm_kernels::Conv2d| compute::Conv2d {
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
    match op {
        Op::MatMul(m) => compute::Op::Matmul(compute::Matmul {
            m: d(m.m),
            k: d(m.k),
            n: d(m.n),
            transpose_a: m.transpose_a,
            transpose_b: m.transpose_b,
        }),
        Op::Conv2d(c) => compute::Op::Conv2d(conv(c)),
        Op::Conv2dInputGrad(c) => compute::Op::Conv2dInputGrad(conv(c)),
        Op::Conv2dWeightGrad {
            conv: c,
            per_sample,
        } => compute::Op::Conv2dWeightGrad(compute::Conv2dWeightGrad {
            conv: conv(c),
            per_sample: *per_sample,
        }),
        Op::ChannelSums {
            batch,
            channels,
            plane,
            per_sample,
        } => compute::Op::ChannelSums(compute::ChannelSums {
            batch: d(*batch),
            channels: d(*channels),
            plane: d(*plane),
            per_sample: *per_sample,
        }),
        Op::Add => compute::Op::Add,
    }
}
