//! `add`, `sub`, `mul` and `div` with NumPy broadcasting. The gradient of a
//! broadcast operand is summed over the dimensions it was stretched along; a
//! parameter broadcast over the batch gets per-sample gradients for DP-SGD.

use crate::error::PlanResult;
use crate::tensor::{
    Grad, HostGrad, Need, Tensor, broadcast_shape, for_each_pair, numel, strides_within,
};

use super::{per_sample_stride, shape_error};

#[derive(Clone, Copy, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Div => "div",
        }
    }

    #[inline(always)]
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div => a / b,
        }
    }

    /// ∂(a op b)/∂a and ∂(a op b)/∂b.
    #[inline(always)]
    fn partials(self, a: f32, b: f32) -> (f32, f32) {
        match self {
            Op::Add => (1.0, 1.0),
            Op::Sub => (1.0, -1.0),
            Op::Mul => (b, a),
            Op::Div => (1.0 / b, -a / (b * b)),
        }
    }
}

impl Tensor {
    /// `self + other` of one shape (a residual connection) on the backend:
    /// each operand's gradient is the output's, passed on as it is.
    fn add_same_shape(&self, other: &Tensor) -> PlanResult<Tensor> {
        let out = crate::backend::run(fedwasm_kernels::Op::Add, &[self, other])?;
        let (a, b) = (self.clone(), other.clone());
        Tensor::from_buf("add", out, self.shape(), &[self, other], move |g, need| {
            let mut grads = Vec::with_capacity(2);
            for (operand, n) in [(&a, need[0]), (&b, need[1])] {
                grads.push(match n {
                    Need::Nothing => None,
                    Need::Sum => Some(HostGrad::Sum(g.clone())),
                    // Sample s's gradient: its own rows of g, zero elsewhere.
                    Need::PerSample(batch) => {
                        let stride = per_sample_stride(operand.shape(), batch, "add")?;
                        let size = operand.numel();
                        let mut each = vec![0.0f32; batch * size];
                        for (o, &v) in g.values().iter().enumerate() {
                            each[(o / stride.max(1)) * size + o] = 0.0 + v;
                        }
                        Some(HostGrad::PerSample(Tensor::new(each, &[batch, size])?))
                    }
                    // Asked only of ghost operations (the linear map).
                    Need::SampleSquares(_) | Need::Clipped(_) => None,
                });
            }
            Ok(grads)
        })
    }

    fn binary(&self, other: &Tensor, op: Op) -> PlanResult<Tensor> {
        if matches!(op, Op::Add) && self.shape() == other.shape() {
            return self.add_same_shape(other);
        }
        let out = broadcast_shape(self.shape(), other.shape()).ok_or_else(|| {
            shape_error(
                op.name(),
                format!(
                    "shapes {:?} and {:?} do not broadcast",
                    self.shape(),
                    other.shape()
                ),
            )
        })?;
        let sa = strides_within(self.shape(), &out);
        let sb = strides_within(other.shape(), &out);
        let mut data = vec![0.0f32; numel(&out)];
        {
            let (av, bv) = (self.values(), other.values());
            if self.shape() == other.shape() {
                for ((o, &x), &y) in data.iter_mut().zip(av.iter()).zip(bv.iter()) {
                    *o = op.apply(x, y);
                }
            } else {
                for_each_pair(&out, &sa, &sb, |o, i, j| data[o] = op.apply(av[i], bv[j]));
            }
        }
        let (a, b) = (self.clone(), other.clone());
        let out_shape = out.clone();
        Tensor::from_op(op.name(), data, &out, &[self, other], move |g, need| {
            let (av, bv) = (a.values(), b.values());
            let mut grads = Vec::with_capacity(2);
            for (which, (operand, n)) in [(&a, need[0]), (&b, need[1])].into_iter().enumerate() {
                let size = operand.numel();
                let part = |i: usize, j: usize| {
                    let (da, db) = op.partials(av[i], bv[j]);
                    if which == 0 { da } else { db }
                };
                let grad = match n {
                    // Asked only of ghost operations (the linear map).
                    Need::SampleSquares(_) | Need::Clipped(_) => None,
                    Need::Nothing => None,
                    Need::Sum => {
                        let mut acc = vec![0.0f32; size];
                        for_each_pair(&out_shape, &sa, &sb, |o, i, j| {
                            acc[if which == 0 { i } else { j }] += g[o] * part(i, j);
                        });
                        Some(Grad::Sum(acc))
                    }
                    Need::PerSample(batch) => {
                        let stride = per_sample_stride(&out_shape, batch, op.name())?;
                        let mut acc = vec![0.0f32; batch * size];
                        for_each_pair(&out_shape, &sa, &sb, |o, i, j| {
                            let at = (o / stride) * size + if which == 0 { i } else { j };
                            acc[at] += g[o] * part(i, j);
                        });
                        Some(Grad::PerSample(acc))
                    }
                };
                grads.push(grad);
            }
            Ok(grads)
        })
    }

    /// self + other, broadcasting.
    pub fn add(&self, other: &Tensor) -> PlanResult<Tensor> {
        self.binary(other, Op::Add)
    }

    /// self − other, broadcasting.
    pub fn sub(&self, other: &Tensor) -> PlanResult<Tensor> {
        self.binary(other, Op::Sub)
    }

    /// self · other element-wise, broadcasting.
    pub fn mul(&self, other: &Tensor) -> PlanResult<Tensor> {
        self.binary(other, Op::Mul)
    }

    /// self / other element-wise, broadcasting.
    pub fn div(&self, other: &Tensor) -> PlanResult<Tensor> {
        self.binary(other, Op::Div)
    }
}
