//! Sums and means, over everything or along one dimension. Sums run in index
//! order, so they give the same bits everywhere.

use crate::error::PlanResult;
use crate::tensor::{Grad, Need, Tensor};

use super::shape_error;

/// (outer, size, inner) of `shape` around dimension `dim`.
pub(crate) fn split_at(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    let outer = shape[..dim].iter().product();
    let inner = shape[dim + 1..].iter().product();
    (outer, shape[dim], inner)
}

impl Tensor {
    /// The sum of every element, as a 0-dimensional tensor.
    pub fn sum(&self) -> Tensor {
        let total = self.values().iter().fold(0.0f32, |s, &x| s + x);
        let n = self.numel();
        Tensor::from_op("sum", vec![total], &[], &[self], move |g, need| {
            Ok(vec![
                (need[0] == Need::Sum).then(|| Grad::Sum(vec![g[0]; n])),
            ])
        })
        .expect("one value")
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
        let mut out = vec![0.0f32; outer * inner];
        {
            let x = self.values();
            for o in 0..outer {
                for k in 0..size {
                    let src = &x[(o * size + k) * inner..(o * size + k + 1) * inner];
                    crate::kernels::simd::add_assign(&mut out[o * inner..(o + 1) * inner], src);
                }
            }
        }
        let mut shape = self.shape().to_vec();
        if keepdim {
            shape[dim] = 1;
        } else {
            shape.remove(dim);
        }
        Tensor::from_op("sum_dim", out, &shape, &[self], move |g, need| {
            if need[0] != Need::Sum {
                return Ok(vec![None]);
            }
            let mut dx = vec![0.0f32; outer * size * inner];
            for o in 0..outer {
                for k in 0..size {
                    dx[(o * size + k) * inner..(o * size + k + 1) * inner]
                        .copy_from_slice(&g[o * inner..(o + 1) * inner]);
                }
            }
            Ok(vec![Some(Grad::Sum(dx))])
        })
    }

    /// Mean along `dim`, which is removed unless `keepdim`.
    pub fn mean_dim(&self, dim: usize, keepdim: bool) -> PlanResult<Tensor> {
        let n = self.shape().get(dim).copied().unwrap_or(1);
        Ok(self.sum_dim(dim, keepdim)?.scale(1.0 / n as f32))
    }
}
