//! Sums and means, over everything or along one dimension, where the
//! values are ([`backend::run_near`]). Each sum starts from zero and adds
//! its terms in index order, so it gives the same bits everywhere.

use fedwasm_kernels::{Axis, Op};

use crate::backend;
use crate::error::PlanResult;
use crate::tensor::{HostGrad, Need, Tensor};

use super::shape_error;

/// (outer, size, inner) of `shape` around dimension `dim`.
pub(crate) fn split_at(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    let outer = shape[..dim].iter().product();
    let inner = shape[dim + 1..].iter().product();
    (outer, shape[dim], inner)
}

impl Tensor {
    /// Sums along `axis`, shaped `shape`; the gradient is the output's,
    /// repeated along the axis.
    fn sum_along(&self, name: &'static str, axis: Axis, shape: &[usize]) -> PlanResult<Tensor> {
        let out = backend::run_near(Op::SumAxis(axis), &[self])?;
        let input_shape = self.shape().to_vec();
        Tensor::from_buf(name, out, shape, &[self], move |g, need| {
            if need[0] != Need::Sum {
                return Ok(vec![None]);
            }
            let dx = backend::run_near(Op::ExpandAxis(axis), &[g])?;
            Ok(vec![Some(HostGrad::Sum(Tensor::from_values(
                dx,
                &input_shape,
            )))])
        })
    }

    /// The sum of every element, as a 0-dimensional tensor.
    pub fn sum(&self) -> Tensor {
        let axis = Axis {
            outer: 1,
            size: self.numel(),
            inner: 1,
        };
        self.sum_along("sum", axis, &[])
            .expect("a sum of everything fits its input")
    }

    /// The mean of every element (NaN for an empty tensor).
    pub fn mean(&self) -> Tensor {
        self.sum().scale(1.0 / self.numel() as f32)
    }

    /// Sum along `dim`, which is removed unless `keepdim`.
    pub fn sum_dim(&self, dim: usize, keepdim: bool) -> PlanResult<Tensor> {
        if dim >= self.ndim() {
            return Err(shape_error(
                "sum_dim",
                format!("dimension {dim} out of range for shape {:?}", self.shape()),
            ));
        }
        let (outer, size, inner) = split_at(self.shape(), dim);
        let mut shape = self.shape().to_vec();
        if keepdim {
            shape[dim] = 1;
        } else {
            shape.remove(dim);
        }
        self.sum_along("sum_dim", Axis { outer, size, inner }, &shape)
    }

    /// Mean along `dim`, which is removed unless `keepdim`.
    pub fn mean_dim(&self, dim: usize, keepdim: bool) -> PlanResult<Tensor> {
        let n = self.shape().get(dim).copied().unwrap_or(1);
        Ok(self.sum_dim(dim, keepdim)?.scale(1.0 / n as f32))
    }
}
