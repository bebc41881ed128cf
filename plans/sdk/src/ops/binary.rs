//! `add`, `sub`, `mul` and `div` with NumPy broadcasting, where the values
//! are ([`backend::run_near`]). The gradient of a broadcast operand is
//! summed over the dimensions it was stretched along; a parameter broadcast
//! over the batch gets per-sample gradients for DP-SGD.

use fedwasm_kernels::{Binary, Broadcast, Op, Operand};

use crate::backend;
use crate::error::PlanResult;
use crate::tensor::{HostGrad, Need, Tensor, broadcast_shape};

use super::{per_sample_stride, shape_error};

impl Tensor {
    /// `self + other` of one shape (a residual connection) on the backend:
    /// each operand's gradient is the output's, passed on as it is.
    fn add_same_shape(&self, other: &Tensor) -> PlanResult<Tensor> {
        let out = crate::backend::run(Op::Add, &[self, other])?;
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

    fn binary(&self, other: &Tensor, op: Binary) -> PlanResult<Tensor> {
        if op == Binary::Add && self.shape() == other.shape() {
            return self.add_same_shape(other);
        }
        let shapes = Broadcast::new(self.shape(), other.shape())
            .map_err(|why| shape_error(op.name(), why))?;
        let out = broadcast_shape(self.shape(), other.shape())
            .ok_or_else(|| shape_error(op.name(), "the shapes do not broadcast"))?;
        let data = backend::run_near(Op::Binary { op, shapes }, &[self, other])?;
        let (a, b) = (self.clone(), other.clone());
        let out_shape = out.clone();
        Tensor::from_buf(op.name(), data, &out, &[self, other], move |g, need| {
            let mut grads = Vec::with_capacity(2);
            for (second, (operand, n)) in [(false, (&a, need[0])), (true, (&b, need[1]))] {
                let samples = match n {
                    // Asked only of ghost operations (the linear map).
                    Need::Nothing | Need::SampleSquares(_) | Need::Clipped(_) => {
                        grads.push(None);
                        continue;
                    }
                    Need::Sum => 1,
                    Need::PerSample(batch) => {
                        per_sample_stride(&out_shape, batch, op.name())?;
                        batch
                    }
                };
                let which = Operand { second, samples };
                let grad = backend::run_near(Op::BinaryGrad { op, shapes, which }, &[&a, &b, g])?;
                grads.push(Some(if samples == 1 {
                    HostGrad::Sum(Tensor::from_values(grad, operand.shape()))
                } else {
                    HostGrad::PerSample(Tensor::from_values(grad, &[samples, operand.numel()]))
                }));
            }
            Ok(grads)
        })
    }

    /// self + other, broadcasting.
    pub fn add(&self, other: &Tensor) -> PlanResult<Tensor> {
        self.binary(other, Binary::Add)
    }

    /// self − other, broadcasting.
    pub fn sub(&self, other: &Tensor) -> PlanResult<Tensor> {
        self.binary(other, Binary::Sub)
    }

    /// self · other element-wise, broadcasting.
    pub fn mul(&self, other: &Tensor) -> PlanResult<Tensor> {
        self.binary(other, Binary::Mul)
    }

    /// self / other element-wise, broadcasting.
    pub fn div(&self, other: &Tensor) -> PlanResult<Tensor> {
        self.binary(other, Binary::Div)
    }
}
