//! Changing how the same values are viewed: reshape, flatten, transpose.

use crate::error::PlanResult;
use crate::tensor::{Grad, Need, Tensor, numel};

use super::shape_error;

impl Tensor {
    /// The same values in a new shape of the same size.
    pub fn reshape(&self, shape: &[usize]) -> PlanResult<Tensor> {
        if numel(shape) != self.numel() {
            return Err(shape_error(
                "reshape",
                format!(
                    "cannot view {} values of shape {:?} as {shape:?}",
                    self.numel(),
                    self.shape()
                ),
            ));
        }
        Tensor::from_op("reshape", self.to_vec(), shape, &[self], |g, need| {
            Ok(vec![(need[0] == Need::Sum).then(|| Grad::Sum(g.to_vec()))])
        })
    }

    /// Dimensions from `start` on merged into one (`flatten(1)` turns
    /// `[N, C, H, W]` into `[N, C·H·W]`).
    pub fn flatten(&self, start: usize) -> PlanResult<Tensor> {
        if start >= self.ndim().max(1) {
            return Err(shape_error(
                "flatten",
                format!("start {start} out of range for shape {:?}", self.shape()),
            ));
        }
        let mut shape = self.shape()[..start].to_vec();
        shape.push(self.shape()[start..].iter().product());
        self.reshape(&shape)
    }

    /// The transpose of a 2-D tensor.
    pub fn t(&self) -> PlanResult<Tensor> {
        let [rows, cols] = *self.shape() else {
            return Err(shape_error(
                "t",
                format!("needs a 2-D tensor, got shape {:?}", self.shape()),
            ));
        };
        let transpose = move |src: &[f32], r: usize, c: usize| {
            let mut out = vec![0.0f32; r * c];
            for i in 0..r {
                for j in 0..c {
                    out[j * r + i] = src[i * c + j];
                }
            }
            out
        };
        let data = transpose(&self.values(), rows, cols);
        Tensor::from_op("t", data, &[cols, rows], &[self], move |g, need| {
            Ok(vec![
                (need[0] == Need::Sum).then(|| Grad::Sum(transpose(g, cols, rows))),
            ])
        })
    }
}
