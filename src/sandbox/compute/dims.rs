//! The contract's records turned into the kernels' dimensions: one
//! function per record or variant, so each `compute` function reads as
//! "these dimensions, this operation".

use fedwasm_kernels::layout::Upsample;
use fedwasm_kernels::{
    Adaptive, Axis, BatchNorm, Binary, Broadcast, Conv2d, CrossEntropy, Elementwise, Embedding,
    LayerNorm, Pointwise, Pool2d, Window,
};

use super::invalid_data;
use crate::sandbox::bindings::compute;
use crate::sandbox::bindings::types::PlanError;

pub(super) fn conv(c: &compute::Conv2dGeometry) -> Conv2d {
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

pub(super) fn pooling(p: &compute::Pool2dWindow) -> Pool2d {
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

pub(super) fn batch_norm(d: &compute::BatchNormDims) -> BatchNorm {
    BatchNorm {
        batch: d.batch as usize,
        channels: d.channels as usize,
        spatial: d.spatial as usize,
    }
}

pub(super) fn upsample(d: &compute::UpsampleDims) -> Upsample {
    Upsample {
        planes: d.planes as usize,
        height: d.height as usize,
        width: d.width as usize,
        factor: d.factor as usize,
    }
}

pub(super) fn activation(a: compute::Activation) -> Elementwise {
    match a {
        compute::Activation::Relu => Elementwise::Relu,
        compute::Activation::LeakyRelu(slope) => Elementwise::LeakyRelu(slope),
        compute::Activation::Sigmoid => Elementwise::Sigmoid,
        compute::Activation::Tanh => Elementwise::Tanh,
        compute::Activation::Gelu => Elementwise::Gelu,
    }
}

pub(super) fn elementwise(f: compute::ElementwiseFn) -> Elementwise {
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

pub(super) fn binary(op: compute::BinaryOp) -> Binary {
    match op {
        compute::BinaryOp::Add => Binary::Add,
        compute::BinaryOp::Sub => Binary::Sub,
        compute::BinaryOp::Mul => Binary::Mul,
        compute::BinaryOp::Div => Binary::Div,
    }
}

/// Two operands' shapes, simplified for the kernels, or a plan error
/// naming why they do not broadcast.
pub(super) fn broadcast(op: Binary, a: &[u32], b: &[u32]) -> Result<Broadcast, PlanError> {
    let dims = |s: &[u32]| s.iter().map(|&d| d as usize).collect::<Vec<_>>();
    Broadcast::new(&dims(a), &dims(b)).map_err(|e| invalid_data(format!("{}: {e}", op.name())))
}

pub(super) fn adaptive(d: &compute::AdaptiveDims) -> Adaptive {
    Adaptive {
        planes: d.planes as usize,
        input: [d.height as usize, d.width as usize],
        output: [d.out_height as usize, d.out_width as usize],
    }
}

pub(super) fn layer_norm(d: &compute::LayerNormDims) -> LayerNorm {
    LayerNorm {
        groups: d.groups as usize,
        d: d.d as usize,
    }
}

pub(super) fn pointwise(kind: compute::PointwiseLossKind) -> Pointwise {
    match kind {
        compute::PointwiseLossKind::Bce => Pointwise::Bce,
        compute::PointwiseLossKind::Mse => Pointwise::Mse,
        compute::PointwiseLossKind::L1 => Pointwise::L1,
        compute::PointwiseLossKind::Huber(delta) => Pointwise::Huber(delta),
    }
}

pub(super) fn embedding(d: &compute::EmbeddingDims) -> Embedding {
    Embedding {
        num: d.num as usize,
        dim: d.dim as usize,
        count: d.count as usize,
    }
}

pub(super) fn axis(a: &compute::Axis) -> Axis {
    Axis {
        outer: a.outer as usize,
        size: a.size as usize,
        inner: a.inner as usize,
    }
}

pub(super) fn cross_entropy(d: &compute::CrossEntropyDims) -> CrossEntropy {
    CrossEntropy {
        batch: d.batch as usize,
        classes: d.classes as usize,
        inner: d.inner as usize,
        label_smoothing: d.label_smoothing,
    }
}
