//! The `compute` functions a plan calls: each turns its records into a
//! kernel [`Op`] ([`super::dims`]) and runs it on held tensors
//! ([`HostState::run_op`]); `update`, `dropout-mask` and `add-normal`
//! change or make tensors in place.

use fedwasm_kernels::{MatMul, Op, Operand};
use wasmtime::component::Resource;

use super::dims::*;
use super::update::Operands;
use super::{HostTensor, invalid_data};
use crate::sandbox::bindings::compute;
use crate::sandbox::bindings::types::PlanError;
use crate::sandbox::host::HostState;

/// A `compute` function's result.
pub(super) type Made = wasmtime::Result<Result<Resource<HostTensor>, PlanError>>;

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
        let operands = Operands {
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
