//! Softmax and log-softmax along one dimension, shifted by the maximum so
//! that no exponential overflows, where the values are
//! ([`backend::run_near`]).

use fedwasm_kernels::{Axis, Op};

use crate::backend;
use crate::error::PlanResult;
use crate::tensor::{HostGrad, Need, Tensor};

use super::reduce::split_at;
use super::shape_error;

impl Tensor {
    fn softmax_like(&self, dim: usize, log: bool) -> PlanResult<Tensor> {
        let name = if log { "log_softmax" } else { "softmax" };
        if dim >= self.ndim() {
            return Err(shape_error(
                name,
                format!("dimension {dim} out of range for shape {:?}", self.shape()),
            ));
        }
        let (outer, size, inner) = split_at(self.shape(), dim);
        let axis = Axis { outer, size, inner };
        let out = backend::run_near(Op::Softmax { axis, log }, &[self])?;
        let input = self.clone();
        Tensor::from_buf(name, out, self.shape(), &[self], move |g, need| {
            if need[0] != Need::Sum {
                return Ok(vec![None]);
            }
            let dx = backend::run_near(Op::SoftmaxGrad { axis, log }, &[&input, g])?;
            Ok(vec![Some(HostGrad::Sum(Tensor::from_values(
                dx,
                input.shape(),
            )))])
        })
    }

    /// exp(x) / Σ exp(x) along `dim`.
    pub fn softmax(&self, dim: usize) -> PlanResult<Tensor> {
        self.softmax_like(dim, false)
    }

    /// x − log Σ exp(x) along `dim`.
    pub fn log_softmax(&self, dim: usize) -> PlanResult<Tensor> {
        self.softmax_like(dim, true)
    }
}
