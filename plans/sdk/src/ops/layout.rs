//! Changing how the same values are viewed: reshape, flatten, transpose,
//! and joining tensors (concatenation, as U-Net's skip connections need).

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

    /// `self` and `other` joined along dimension `dim` (PyTorch's
    /// `torch.cat([self, other], dim)`): every other extent must agree,
    /// e.g. `[N, C1, H, W]` and `[N, C2, H, W]` along 1 give `[N, C1+C2, H, W]`.
    pub fn cat(&self, other: &Tensor, dim: usize) -> PlanResult<Tensor> {
        let (a, b) = (self.shape().to_vec(), other.shape().to_vec());
        let agree = a.len() == b.len()
            && dim < a.len()
            && a.iter()
                .zip(&b)
                .enumerate()
                .all(|(d, (x, y))| d == dim || x == y);
        if !agree {
            return Err(shape_error(
                "cat",
                format!("cannot join {a:?} and {b:?} along dimension {dim}"),
            ));
        }
        let outer: usize = a[..dim].iter().product();
        let inner: usize = a[dim + 1..].iter().product();
        let (left, right) = (a[dim] * inner, b[dim] * inner);
        let mut data = Vec::with_capacity(self.numel() + other.numel());
        {
            let (x, y) = (self.values(), other.values());
            for o in 0..outer {
                data.extend_from_slice(&x[o * left..(o + 1) * left]);
                data.extend_from_slice(&y[o * right..(o + 1) * right]);
            }
        }
        let mut shape = a.clone();
        shape[dim] += b[dim];
        Tensor::from_op("cat", data, &shape, &[self, other], move |g, need| {
            let mut gx = Vec::with_capacity(outer * left);
            let mut gy = Vec::with_capacity(outer * right);
            for o in 0..outer {
                let row = &g[o * (left + right)..(o + 1) * (left + right)];
                gx.extend_from_slice(&row[..left]);
                gy.extend_from_slice(&row[left..]);
            }
            Ok(vec![
                (need[0] == Need::Sum).then_some(Grad::Sum(gx)),
                (need[1] == Need::Sum).then_some(Grad::Sum(gy)),
            ])
        })
    }
}
