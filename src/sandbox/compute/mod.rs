//! The `compute` import: tensors the host holds for a plan, and the
//! operations that run on them natively, on the node's cores.
//!
//! Everything a plan passes here is hostile. A handle is checked by
//! wasmtime's resource table (a dropped or foreign one traps); an
//! operation's dimensions are checked against its inputs' lengths by
//! [`Op::output_len`] before anything is allocated; every byte of a host
//! tensor, and of the scratch an operation needs on each of its threads,
//! is taken from the same memory budget as the plan's linear memory, and a
//! request past it stops the call as a memory-limit breach. A kernel that
//! runs past a training deadline is stopped with its worker process, as any
//! plan code is.

mod update;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use fedwasm_kernels::layout::Upsample;
use fedwasm_kernels::{
    Adaptive, Axis, BatchNorm, Binary, Broadcast, Conv2d, CrossEntropy, Elementwise, Embedding,
    LayerNorm, MatMul, Op, Operand, Pointwise, Pool2d, Window,
};
use wasmtime::component::Resource;

use super::bindings::compute;
use super::bindings::types::{ErrorKind, PlanError};
use super::host::HostState;

/// Room a compute thread's stack keeps for the host's frames besides the
/// plan's wasm stack (`stack_kib`): plan calls run on these threads.
const HOST_FRAMES: usize = 32 << 20;

/// Operations doing less than this many multiply-adds (or element visits)
/// run on the plan's thread: handing them to the pool and waiting costs
/// more than they take.
const PARALLEL_WORK: usize = 1 << 16;

/// A flat array of f32 a plan asked the host to hold.
pub struct HostTensor {
    data: Vec<f32>,
    /// Made by an operation (its buffer is kept for the next output of its
    /// length when it drops), not uploaded or handed in.
    output: bool,
}

/// Bytes of the host's own bookkeeping each tensor is charged besides its
/// values (its table entry and allocation): without it, a plan uploading
/// empty tensors in a loop would grow the host's memory outside its budget.
const TENSOR_OVERHEAD: usize = 64;

impl HostTensor {
    /// Bytes a tensor of `len` values takes from the plan's memory budget.
    pub(crate) fn bytes(len: usize) -> usize {
        len.saturating_mul(4).saturating_add(TENSOR_OVERHEAD)
    }
}

/// The rayon pool of `threads` threads with room for a wasm stack of
/// `wasm_stack` bytes, made once per process and shared by every instance
/// that asks for the same; an error says why the threads could not start.
pub(crate) fn pool(threads: usize, wasm_stack: usize) -> Result<Arc<rayon::ThreadPool>, String> {
    type Pools = HashMap<(usize, usize), Arc<rayon::ThreadPool>>;
    static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let stack = wasm_stack.saturating_add(HOST_FRAMES);
    if let Some(pool) = pools.get(&(threads, stack)) {
        return Ok(pool.clone());
    }
    // Plan calls run on these threads (see `PlanInstance::call`): room for
    // the wasm stack and the host's frames below it.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(stack)
        .thread_name(|i| format!("fedwasm-compute-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| format!("cannot start {threads} compute threads: {e}"))?;
    pools.insert((threads, stack), pool.clone());
    Ok(pool)
}

fn invalid_data(message: String) -> PlanError {
    PlanError {
        kind: ErrorKind::InvalidData,
        message,
    }
}

fn conv(c: &compute::Conv2dGeometry) -> Conv2d {
    Conv2d {
        batch: c.batch as usize,
        window: Window {
            channels: c.channels as usize,
            input: [c.height as usize, c.width as usize],
            kernel: [c.kernel_height as usize, c.kernel_width as usize],
            stride: [c.stride_height as usize, c.stride_width as usize],
            padding: [c.padding_height as usize, c.padding_width as usize],
            dilation: [c.dilation_height as usize, c.dilation_width as usize],
        },
        out_channels: c.out_channels as usize,
    }
}

fn pooling(p: &compute::Pool2dWindow) -> Pool2d {
    Pool2d {
        planes: p.planes as usize,
        window: Window {
            channels: 1,
            input: [p.height as usize, p.width as usize],
            kernel: [p.kernel_height as usize, p.kernel_width as usize],
            stride: [p.stride_height as usize, p.stride_width as usize],
            padding: [p.padding_height as usize, p.padding_width as usize],
            dilation: [p.dilation_height as usize, p.dilation_width as usize],
        },
    }
}

fn batch_norm(d: &compute::BatchNormDims) -> BatchNorm {
    BatchNorm {
        batch: d.batch as usize,
        channels: d.channels as usize,
        spatial: d.spatial as usize,
    }
}

fn upsample(d: &compute::UpsampleDims) -> Upsample {
    Upsample {
        planes: d.planes as usize,
        height: d.height as usize,
        width: d.width as usize,
        factor: d.factor as usize,
    }
}

fn activation(a: compute::Activation) -> Elementwise {
    match a {
        compute::Activation::Relu => Elementwise::Relu,
        compute::Activation::LeakyRelu(slope) => Elementwise::LeakyRelu(slope),
        compute::Activation::Sigmoid => Elementwise::Sigmoid,
        compute::Activation::Tanh => Elementwise::Tanh,
        compute::Activation::Gelu => Elementwise::Gelu,
    }
}

fn elementwise(f: compute::ElementwiseFn) -> Elementwise {
    use compute::ElementwiseFn as F;
    match f {
        F::Exp => Elementwise::Exp,
        F::Log => Elementwise::Log,
        F::Sqrt => Elementwise::Sqrt,
        F::Abs => Elementwise::Abs,
        F::Square => Elementwise::Square,
        F::Pow(p) => Elementwise::Pow(p),
        F::Scale(a) => Elementwise::Scale(a),
        F::AddScalar(c) => Elementwise::AddScalar(c),
        F::Clamp(r) => Elementwise::Clamp(r.low, r.high),
    }
}

fn binary(op: compute::BinaryOp) -> Binary {
    match op {
        compute::BinaryOp::Add => Binary::Add,
        compute::BinaryOp::Sub => Binary::Sub,
        compute::BinaryOp::Mul => Binary::Mul,
        compute::BinaryOp::Div => Binary::Div,
    }
}

/// Two operands' shapes, simplified for the kernels, or a plan error
/// naming why they do not broadcast.
fn broadcast(op: Binary, a: &[u32], b: &[u32]) -> Result<Broadcast, PlanError> {
    let dims = |s: &[u32]| s.iter().map(|&d| d as usize).collect::<Vec<_>>();
    Broadcast::new(&dims(a), &dims(b)).map_err(|e| invalid_data(format!("{}: {e}", op.name())))
}

fn adaptive(d: &compute::AdaptiveDims) -> Adaptive {
    Adaptive {
        planes: d.planes as usize,
        input: [d.height as usize, d.width as usize],
        output: [d.out_height as usize, d.out_width as usize],
    }
}

fn layer_norm(d: &compute::LayerNormDims) -> LayerNorm {
    LayerNorm {
        groups: d.groups as usize,
        d: d.d as usize,
    }
}

fn pointwise(kind: compute::PointwiseLossKind) -> Pointwise {
    match kind {
        compute::PointwiseLossKind::Bce => Pointwise::Bce,
        compute::PointwiseLossKind::Mse => Pointwise::Mse,
        compute::PointwiseLossKind::L1 => Pointwise::L1,
        compute::PointwiseLossKind::Huber(delta) => Pointwise::Huber(delta),
    }
}

fn embedding(d: &compute::EmbeddingDims) -> Embedding {
    Embedding {
        num: d.num as usize,
        dim: d.dim as usize,
        count: d.count as usize,
    }
}

fn axis(a: &compute::Axis) -> Axis {
    Axis {
        outer: a.outer as usize,
        size: a.size as usize,
        inner: a.inner as usize,
    }
}

fn cross_entropy(d: &compute::CrossEntropyDims) -> CrossEntropy {
    CrossEntropy {
        batch: d.batch as usize,
        classes: d.classes as usize,
        inner: d.inner as usize,
        label_smoothing: d.label_smoothing,
    }
}

impl HostState {
    /// Hold `data` for the plan, its bytes taken from the budget.
    pub(crate) fn hold(
        &mut self,
        what: &str,
        data: Vec<f32>,
    ) -> wasmtime::Result<Resource<HostTensor>> {
        self.memory.take_host(what, HostTensor::bytes(data.len()))?;
        Ok(self.table.push(HostTensor {
            data,
            output: false,
        })?)
    }

    fn tensor(&self, handle: &Resource<HostTensor>) -> wasmtime::Result<&HostTensor> {
        Ok(self.table.get(handle)?)
    }

    /// Hold an output buffer whose bytes were taken from the budget.
    fn push_output(&mut self, data: Vec<f32>) -> wasmtime::Result<Resource<HostTensor>> {
        Ok(self.table.push(HostTensor { data, output: true })?)
    }
}

impl compute::HostTensor for HostState {
    fn upload(
        &mut self,
        data: Vec<f32>,
    ) -> wasmtime::Result<Result<Resource<HostTensor>, PlanError>> {
        self.hold("compute.tensor.upload", data).map(Ok)
    }

    fn len(&mut self, tensor: Resource<HostTensor>) -> wasmtime::Result<u64> {
        Ok(self.tensor(&tensor)?.data.len() as u64)
    }

    fn read(&mut self, tensor: Resource<HostTensor>) -> wasmtime::Result<Vec<f32>> {
        let len = self.tensor(&tensor)?.data.len();
        // The copy lives on the host while the plan receives its own.
        self.memory
            .check_transient("compute.tensor.read", len.saturating_mul(4))?;
        Ok(self.tensor(&tensor)?.data.clone())
    }

    fn zeros(&mut self, len: u64) -> Made {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.memory
            .take_host("compute.tensor.zeros", HostTensor::bytes(len))?;
        let mut data = self.memory.output_buffer(len);
        data.fill(0.0);
        self.push_output(data).map(Ok)
    }

    fn duplicate(&mut self, tensor: Resource<HostTensor>) -> Made {
        let len = self.tensor(&tensor)?.data.len();
        self.memory
            .take_host("compute.tensor.duplicate", HostTensor::bytes(len))?;
        let mut data = self.memory.output_buffer(len);
        data.copy_from_slice(&self.tensor(&tensor)?.data);
        self.push_output(data).map(Ok)
    }

    fn drop(&mut self, tensor: Resource<HostTensor>) -> wasmtime::Result<()> {
        let held = self.table.delete(tensor)?;
        self.memory.give_back_host(held.data, held.output);
        Ok(())
    }
}

impl HostState {
    /// Run `op` on `inputs` (handles the plan lent): checked, budgeted, then
    /// computed on the pool. The path every `compute` function takes.
    pub(crate) fn run_op(
        &mut self,
        op: Op,
        inputs: &[&Resource<HostTensor>],
    ) -> wasmtime::Result<Result<Resource<HostTensor>, PlanError>> {
        let lens = inputs
            .iter()
            .map(|t| Ok(self.tensor(t)?.data.len()))
            .collect::<wasmtime::Result<Vec<usize>>>()?;
        let out_len = match op.output_len(&lens) {
            Ok(len) => len,
            Err(e) => return Ok(Err(invalid_data(e.0))),
        };
        let what = format!("compute.{}", op.name());
        let scratch = op
            .scratch(self.pool.current_num_threads())
            .saturating_mul(4);
        self.memory.check_transient(&what, scratch)?;
        self.memory.take_host(&what, HostTensor::bytes(out_len))?;
        let mut out = self.memory.output_buffer(out_len);
        {
            let slices = inputs
                .iter()
                .map(|t| Ok(self.tensor(t)?.data.as_slice()))
                .collect::<wasmtime::Result<Vec<&[f32]>>>()?;
            // The plan call runs on a thread of the pool (`PlanInstance::call`).
            // A kernel's bug stops this call, never the process serving it.
            let small = op.work(&lens) < PARALLEL_WORK;
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if small {
                    fedwasm_kernels::parallel::serial(|| op.run(&slices, &mut out));
                } else {
                    self.pool.install(|| op.run(&slices, &mut out));
                }
            }));
            if ran.is_err() {
                wasmtime::bail!("compute.{}: the host's kernel failed", op.name());
            }
        }
        self.push_output(out).map(Ok)
    }
}

/// A `compute` function's result.
type Made = wasmtime::Result<Result<Resource<HostTensor>, PlanError>>;

impl compute::Host for HostState {
    fn matmul(
        &mut self,
        dims: compute::MatmulDims,
        a: Resource<HostTensor>,
        b: Resource<HostTensor>,
        bias: Option<Resource<HostTensor>>,
    ) -> Made {
        let op = Op::MatMul(MatMul {
            m: dims.m as usize,
            k: dims.k as usize,
            n: dims.n as usize,
            transpose_a: dims.transpose_a,
            transpose_b: dims.transpose_b,
        });
        let mut inputs = vec![&a, &b];
        inputs.extend(bias.as_ref());
        self.run_op(op, &inputs)
    }

    fn conv2d(
        &mut self,
        geometry: compute::Conv2dGeometry,
        x: Resource<HostTensor>,
        weight: Resource<HostTensor>,
        bias: Option<Resource<HostTensor>>,
    ) -> Made {
        let mut inputs = vec![&x, &weight];
        inputs.extend(bias.as_ref());
        self.run_op(Op::Conv2d(conv(&geometry)), &inputs)
    }

    fn conv2d_input_grad(
        &mut self,
        geometry: compute::Conv2dGeometry,
        g: Resource<HostTensor>,
        weight: Resource<HostTensor>,
    ) -> Made {
        self.run_op(Op::Conv2dInputGrad(conv(&geometry)), &[&g, &weight])
    }

    fn conv2d_weight_grad(
        &mut self,
        geometry: compute::Conv2dGeometry,
        per_sample: bool,
        g: Resource<HostTensor>,
        x: Resource<HostTensor>,
    ) -> Made {
        let op = Op::Conv2dWeightGrad {
            conv: conv(&geometry),
            per_sample,
        };
        self.run_op(op, &[&g, &x])
    }

    fn channel_sums(
        &mut self,
        batch: u32,
        channels: u32,
        plane: u32,
        per_sample: bool,
        g: Resource<HostTensor>,
    ) -> Made {
        let op = Op::ChannelSums {
            batch: batch as usize,
            channels: channels as usize,
            plane: plane as usize,
            per_sample,
        };
        self.run_op(op, &[&g])
    }

    fn add(&mut self, a: Resource<HostTensor>, b: Resource<HostTensor>) -> Made {
        self.run_op(Op::Add, &[&a, &b])
    }

    fn activate(&mut self, f: compute::Activation, x: Resource<HostTensor>) -> Made {
        self.run_op(Op::Map(activation(f)), &[&x])
    }

    fn activate_grad(
        &mut self,
        f: compute::Activation,
        x: Resource<HostTensor>,
        g: Resource<HostTensor>,
    ) -> Made {
        self.run_op(Op::MapGrad(activation(f)), &[&x, &g])
    }

    fn elementwise(&mut self, f: compute::ElementwiseFn, x: Resource<HostTensor>) -> Made {
        self.run_op(Op::Map(elementwise(f)), &[&x])
    }

    fn elementwise_grad(
        &mut self,
        f: compute::ElementwiseFn,
        x: Resource<HostTensor>,
        g: Resource<HostTensor>,
    ) -> Made {
        self.run_op(Op::MapGrad(elementwise(f)), &[&x, &g])
    }

    fn binary(
        &mut self,
        op: compute::BinaryOp,
        a_shape: Vec<u32>,
        b_shape: Vec<u32>,
        a: Resource<HostTensor>,
        b: Resource<HostTensor>,
    ) -> Made {
        let op = binary(op);
        let shapes = match broadcast(op, &a_shape, &b_shape) {
            Ok(shapes) => shapes,
            Err(e) => return Ok(Err(e)),
        };
        self.run_op(Op::Binary { op, shapes }, &[&a, &b])
    }

    #[allow(clippy::too_many_arguments)]
    fn binary_grad(
        &mut self,
        op: compute::BinaryOp,
        a_shape: Vec<u32>,
        b_shape: Vec<u32>,
        which: compute::Operand,
        a: Resource<HostTensor>,
        b: Resource<HostTensor>,
        g: Resource<HostTensor>,
    ) -> Made {
        let op = binary(op);
        let shapes = match broadcast(op, &a_shape, &b_shape) {
            Ok(shapes) => shapes,
            Err(e) => return Ok(Err(e)),
        };
        let which = Operand {
            second: which.second,
            samples: which.samples as usize,
        };
        self.run_op(Op::BinaryGrad { op, shapes, which }, &[&a, &b, &g])
    }

    fn pointwise_loss(
        &mut self,
        loss: compute::PointwiseLossKind,
        output: Resource<HostTensor>,
        target: Resource<HostTensor>,
        pos_weight: Option<Resource<HostTensor>>,
    ) -> Made {
        let mut inputs = vec![&output, &target];
        inputs.extend(pos_weight.as_ref());
        self.run_op(Op::PointwiseLoss(pointwise(loss)), &inputs)
    }

    fn pointwise_loss_grad(
        &mut self,
        loss: compute::PointwiseLossKind,
        g: f32,
        output: Resource<HostTensor>,
        target: Resource<HostTensor>,
        pos_weight: Option<Resource<HostTensor>>,
    ) -> Made {
        let mut inputs = vec![&output, &target];
        inputs.extend(pos_weight.as_ref());
        let op = Op::PointwiseLossGrad {
            loss: pointwise(loss),
            g,
        };
        self.run_op(op, &inputs)
    }

    fn dropout_mask(&mut self, len: u64, p: f32) -> Made {
        if !(0.0..1.0).contains(&p) {
            return Ok(Err(invalid_data(format!(
                "dropout-mask: the probability must be in [0, 1), got {p}"
            ))));
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.memory
            .take_host("compute.dropout-mask", HostTensor::bytes(len))?;
        let mut mask = self.memory.output_buffer(len);
        self.fill_dropout_mask(p, 1.0 / (1.0 - p), &mut mask);
        self.push_output(mask).map(Ok)
    }

    fn add_normal(
        &mut self,
        t: Resource<HostTensor>,
        std: f32,
    ) -> wasmtime::Result<Result<(), PlanError>> {
        // Out of the table while the stream is drawn, then back.
        let mut data = std::mem::take(&mut self.table.get_mut(&t)?.data);
        self.add_normals(std, &mut data);
        self.table.get_mut(&t)?.data = data;
        Ok(Ok(()))
    }

    fn sum_of_squares(&mut self, x: Resource<HostTensor>) -> Made {
        self.run_op(Op::SumOfSquares, &[&x])
    }

    fn row_squares(&mut self, rows: u32, width: u32, x: Resource<HostTensor>) -> Made {
        let op = Op::RowSquares {
            rows: rows as usize,
            width: width as usize,
        };
        self.run_op(op, &[&x])
    }

    fn embedding(
        &mut self,
        dims: compute::EmbeddingDims,
        indices: Resource<HostTensor>,
        table: Resource<HostTensor>,
    ) -> Made {
        self.run_op(Op::Embedding(embedding(&dims)), &[&indices, &table])
    }

    fn embedding_grad(
        &mut self,
        dims: compute::EmbeddingDims,
        samples: u32,
        indices: Resource<HostTensor>,
        g: Resource<HostTensor>,
    ) -> Made {
        let op = Op::EmbeddingGrad {
            e: embedding(&dims),
            samples: samples as usize,
        };
        self.run_op(op, &[&indices, &g])
    }

    fn sum_axis(&mut self, a: compute::Axis, x: Resource<HostTensor>) -> Made {
        self.run_op(Op::SumAxis(axis(&a)), &[&x])
    }

    fn expand_axis(&mut self, a: compute::Axis, g: Resource<HostTensor>) -> Made {
        self.run_op(Op::ExpandAxis(axis(&a)), &[&g])
    }

    fn softmax(&mut self, a: compute::Axis, log: bool, x: Resource<HostTensor>) -> Made {
        let op = Op::Softmax {
            axis: axis(&a),
            log,
        };
        self.run_op(op, &[&x])
    }

    fn softmax_grad(
        &mut self,
        a: compute::Axis,
        log: bool,
        x: Resource<HostTensor>,
        g: Resource<HostTensor>,
    ) -> Made {
        let op = Op::SoftmaxGrad {
            axis: axis(&a),
            log,
        };
        self.run_op(op, &[&x, &g])
    }

    fn cross_entropy(
        &mut self,
        dims: compute::CrossEntropyDims,
        logits: Resource<HostTensor>,
        targets: Resource<HostTensor>,
        weights: Option<Resource<HostTensor>>,
    ) -> Made {
        let op = Op::CrossEntropy(cross_entropy(&dims));
        let mut inputs = vec![&logits, &targets];
        inputs.extend(weights.as_ref());
        self.run_op(op, &inputs)
    }

    fn cross_entropy_grad(
        &mut self,
        dims: compute::CrossEntropyDims,
        scale: f32,
        logits: Resource<HostTensor>,
        targets: Resource<HostTensor>,
        weights: Option<Resource<HostTensor>>,
    ) -> Made {
        let op = Op::CrossEntropyGrad {
            ce: cross_entropy(&dims),
            scale,
        };
        let mut inputs = vec![&logits, &targets];
        inputs.extend(weights.as_ref());
        self.run_op(op, &inputs)
    }

    fn max_pool2d(&mut self, window: compute::Pool2dWindow, x: Resource<HostTensor>) -> Made {
        self.run_op(Op::MaxPool2d(pooling(&window)), &[&x])
    }

    fn max_pool2d_grad(
        &mut self,
        window: compute::Pool2dWindow,
        x: Resource<HostTensor>,
        g: Resource<HostTensor>,
    ) -> Made {
        self.run_op(Op::MaxPool2dGrad(pooling(&window)), &[&x, &g])
    }

    fn avg_pool2d(&mut self, window: compute::Pool2dWindow, x: Resource<HostTensor>) -> Made {
        self.run_op(Op::AvgPool2d(pooling(&window)), &[&x])
    }

    fn avg_pool2d_grad(&mut self, window: compute::Pool2dWindow, g: Resource<HostTensor>) -> Made {
        self.run_op(Op::AvgPool2dGrad(pooling(&window)), &[&g])
    }

    fn adaptive_avg_pool2d(
        &mut self,
        dims: compute::AdaptiveDims,
        x: Resource<HostTensor>,
    ) -> Made {
        self.run_op(Op::AdaptiveAvgPool2d(adaptive(&dims)), &[&x])
    }

    fn adaptive_avg_pool2d_grad(
        &mut self,
        dims: compute::AdaptiveDims,
        g: Resource<HostTensor>,
    ) -> Made {
        self.run_op(Op::AdaptiveAvgPool2dGrad(adaptive(&dims)), &[&g])
    }

    fn batch_norm_stats(
        &mut self,
        dims: compute::BatchNormDims,
        eps: f32,
        x: Resource<HostTensor>,
    ) -> Made {
        let op = Op::BatchNormStats {
            bn: batch_norm(&dims),
            eps,
        };
        self.run_op(op, &[&x])
    }

    fn batch_norm(
        &mut self,
        dims: compute::BatchNormDims,
        x: Resource<HostTensor>,
        stats: Resource<HostTensor>,
        weight: Resource<HostTensor>,
        bias: Resource<HostTensor>,
    ) -> Made {
        let op = Op::BatchNormApply(batch_norm(&dims));
        self.run_op(op, &[&x, &stats, &weight, &bias])
    }

    fn batch_norm_input_grad(
        &mut self,
        dims: compute::BatchNormDims,
        training: bool,
        x: Resource<HostTensor>,
        stats: Resource<HostTensor>,
        weight: Resource<HostTensor>,
        g: Resource<HostTensor>,
    ) -> Made {
        let op = Op::BatchNormInputGrad {
            bn: batch_norm(&dims),
            training,
        };
        self.run_op(op, &[&x, &stats, &weight, &g])
    }

    fn batch_norm_affine_grads(
        &mut self,
        dims: compute::BatchNormDims,
        x: Resource<HostTensor>,
        stats: Resource<HostTensor>,
        g: Resource<HostTensor>,
    ) -> Made {
        let op = Op::BatchNormAffineGrads(batch_norm(&dims));
        self.run_op(op, &[&x, &stats, &g])
    }

    fn layer_norm_stats(
        &mut self,
        dims: compute::LayerNormDims,
        eps: f32,
        x: Resource<HostTensor>,
    ) -> Made {
        let op = Op::LayerNormStats {
            ln: layer_norm(&dims),
            eps,
        };
        self.run_op(op, &[&x])
    }

    fn layer_norm(
        &mut self,
        dims: compute::LayerNormDims,
        x: Resource<HostTensor>,
        stats: Resource<HostTensor>,
        weight: Resource<HostTensor>,
        bias: Resource<HostTensor>,
    ) -> Made {
        let op = Op::LayerNormApply(layer_norm(&dims));
        self.run_op(op, &[&x, &stats, &weight, &bias])
    }

    fn layer_norm_input_grad(
        &mut self,
        dims: compute::LayerNormDims,
        x: Resource<HostTensor>,
        stats: Resource<HostTensor>,
        weight: Resource<HostTensor>,
        g: Resource<HostTensor>,
    ) -> Made {
        let op = Op::LayerNormInputGrad(layer_norm(&dims));
        self.run_op(op, &[&x, &stats, &weight, &g])
    }

    fn layer_norm_affine_grads(
        &mut self,
        dims: compute::LayerNormDims,
        samples: u32,
        x: Resource<HostTensor>,
        stats: Resource<HostTensor>,
        g: Resource<HostTensor>,
    ) -> Made {
        let op = Op::LayerNormAffineGrads {
            ln: layer_norm(&dims),
            samples: samples as usize,
        };
        self.run_op(op, &[&x, &stats, &g])
    }

    fn upsample_nearest2d(&mut self, dims: compute::UpsampleDims, x: Resource<HostTensor>) -> Made {
        self.run_op(Op::Upsample2d(upsample(&dims)), &[&x])
    }

    fn upsample_nearest2d_grad(
        &mut self,
        dims: compute::UpsampleDims,
        g: Resource<HostTensor>,
    ) -> Made {
        self.run_op(Op::Upsample2dGrad(upsample(&dims)), &[&g])
    }

    fn cat(&mut self, outer: u32, a: Resource<HostTensor>, b: Resource<HostTensor>) -> Made {
        let op = Op::Cat {
            outer: outer as usize,
        };
        self.run_op(op, &[&a, &b])
    }

    fn cat_part(
        &mut self,
        outer: u32,
        inner: u32,
        start: u32,
        len: u32,
        x: Resource<HostTensor>,
    ) -> Made {
        let op = Op::CatPart {
            outer: outer as usize,
            inner: inner as usize,
            start: start as usize,
            len: len as usize,
        };
        self.run_op(op, &[&x])
    }

    fn update(
        &mut self,
        step: compute::UpdateStep,
        w: Resource<HostTensor>,
        g: Resource<HostTensor>,
        correction: Option<Resource<HostTensor>>,
        anchor: Option<Resource<HostTensor>>,
        first: Option<Resource<HostTensor>>,
        second: Option<Resource<HostTensor>>,
    ) -> wasmtime::Result<Result<(), PlanError>> {
        let operands = update::Operands {
            w,
            g,
            correction,
            anchor,
            first,
            second,
        };
        self.run_update(&step, &operands)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::sandbox::SandboxConfig;
    use crate::sandbox::random::StreamSeed;
    use compute::{Host, HostTensor as _};

    pub(in crate::sandbox) fn state(memory_mib: u64) -> HostState {
        let config = SandboxConfig {
            memory_mib,
            compute_threads: 2,
            ..SandboxConfig::default()
        };
        HostState::new(&config, &StreamSeed([1; 32])).unwrap()
    }

    pub(in crate::sandbox) fn borrow(t: &Resource<HostTensor>) -> Resource<HostTensor> {
        Resource::new_borrow(t.rep())
    }

    #[test]
    fn a_product_runs_on_held_tensors_and_its_bytes_are_counted() {
        let mut s = state(16);
        let a = s
            .upload(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .unwrap()
            .unwrap();
        let b = s
            .upload(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
            .unwrap()
            .unwrap();
        let dims = compute::MatmulDims {
            m: 2,
            k: 3,
            n: 2,
            transpose_a: false,
            transpose_b: false,
        };
        let out = s
            .matmul(dims, borrow(&a), borrow(&b), None)
            .unwrap()
            .unwrap();
        let held = [6, 6, 4].map(HostTensor::bytes);
        assert_eq!(s.memory.host, held.iter().sum::<usize>());
        let c = s.read(borrow(&out)).unwrap();
        assert_eq!(c, vec![4.0, 5.0, 10.0, 11.0]);
        for t in [a, b, out] {
            s.drop(t).unwrap();
        }
        assert_eq!(s.memory.host, 0);
    }

    #[test]
    fn misfits_are_plan_errors_and_budget_breaches_stop_the_call() {
        let mut s = state(1);
        let a = s.upload(vec![0.0; 6]).unwrap().unwrap();
        let misfit = s.upload(vec![0.0; 5]).unwrap().unwrap();
        let err = s.add(borrow(&a), borrow(&misfit)).unwrap().unwrap_err();
        assert!(
            err.message.contains("add: b should hold 6 values"),
            "{}",
            err.message
        );
        let breach = s.upload(vec![0.0; 1 << 20]).unwrap_err();
        assert!(breach.to_string().contains("memory budget"), "{breach}");
        assert!(s.memory.hit);
        let forged = Resource::<HostTensor>::new_borrow(999);
        assert!(s.add(borrow(&a), forged).is_err());
    }

    /// Empty tensors are not free: each is charged the host's bookkeeping,
    /// so a plan uploading them in a loop meets its budget.
    #[test]
    fn dropout_masks_follow_the_uniform_stream_and_refuse_a_certain_drop() {
        use crate::sandbox::random::{StreamSeed, unit_f32};
        use rand_core::RngCore;
        let mut s = state(8);
        let mask = s.dropout_mask(1000, 0.25).unwrap().unwrap();
        let mask = s.read(borrow(&mask)).unwrap();
        let mut rng = StreamSeed([1; 32]).rng();
        let want: Vec<f32> = (0..1000)
            .map(|_| {
                if unit_f32(rng.next_u64()) < 0.25 {
                    0.0
                } else {
                    1.0 / 0.75
                }
            })
            .collect();
        assert_eq!(mask, want);
        for p in [1.0, -0.1, f32::NAN] {
            let err = s.dropout_mask(4, p).unwrap().unwrap_err();
            assert!(err.message.contains("[0, 1)"), "{}", err.message);
        }
        let huge = s.dropout_mask(1 << 40, 0.5).unwrap_err();
        assert!(huge.to_string().contains("memory budget"), "{huge}");
    }

    #[test]
    fn empty_tensors_are_charged_their_bookkeeping() {
        let mut s = state(1);
        let mut held = Vec::new();
        let err = loop {
            match s.upload(Vec::new()) {
                Ok(t) => held.push(t.unwrap()),
                Err(e) => break e,
            }
            assert!(held.len() <= 1 << 20, "empty tensors never met the budget");
        };
        assert_eq!(held.len(), (1 << 20) / TENSOR_OVERHEAD);
        assert!(err.to_string().contains("memory budget"), "{err}");
    }

    /// A dropped tensor's buffer serves the next output of its length;
    /// spares never make the plan fail: they are freed first.
    #[test]
    fn spares_are_reused_and_freed_before_the_budget_refuses() {
        let mut s = state(1);
        // Floats of a tensor charged a quarter of the 1 MiB budget.
        let quarter = ((1 << 18) - TENSOR_OVERHEAD) / 4;
        let a = s.upload(vec![1.0; quarter]).unwrap().unwrap();
        let b = s.upload(vec![2.0; quarter]).unwrap().unwrap();
        let sum = s.add(borrow(&a), borrow(&b)).unwrap().unwrap();
        s.drop(sum).unwrap();
        assert_eq!(s.memory.spares.bytes(), HostTensor::bytes(quarter));
        let again = s.add(borrow(&a), borrow(&b)).unwrap().unwrap();
        assert_eq!(s.memory.spares.bytes(), 0, "the spare was reused");
        assert_eq!(s.read(borrow(&again)).unwrap(), vec![3.0; quarter]);
        let third = s.add(borrow(&a), borrow(&b)).unwrap().unwrap();
        s.drop(again).unwrap();
        s.drop(third).unwrap();
        s.drop(b).unwrap();
        // Two outputs kept; the uploaded `b` freed, not kept.
        assert_eq!(s.memory.spares.bytes(), 2 * HostTensor::bytes(quarter));
        // A half of the budget fits only once the spares are freed.
        let half = s.upload(vec![0.0; 2 * quarter]).unwrap().unwrap();
        assert_eq!(s.memory.spares.bytes(), 0);
        assert!(!s.memory.hit && s.memory.within_budget());
        s.drop(half).unwrap();
        s.drop(a).unwrap();
    }
}
