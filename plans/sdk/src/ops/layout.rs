//! Changing how the same values are viewed: reshape, flatten, transpose,
//! and joining tensors (concatenation, as U-Net's skip connections need);
//! a copy or a join happens on the node's host when the values are there.

use fedwasm_kernels::Op;

use crate::backend;
use crate::error::{PlanError, PlanResult};
use crate::tensor::{Grad, HostGrad, Need, Tensor, numel};

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
        // A copy made where the values are: on the host, nothing crosses
        // into the plan.
        let values = backend::duplicate(self)?.into_buf();
        let input = self.shape().to_vec();
        Tensor::from_buf("reshape", values, shape, &[self], move |g, need| {
            if need[0] != Need::Sum {
                return Ok(vec![None]);
            }
            let dx = backend::duplicate(g)?.into_buf();
            Ok(vec![Some(HostGrad::Sum(Tensor::from_values(dx, &input)))])
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
        let out = backend::run(Op::Cat { outer }, &[self, other])?;
        let mut shape = a.clone();
        shape[dim] += b[dim];
        let part = move |g: &Tensor, start: usize, len: usize, shape: &[usize]| {
            let op = Op::CatPart {
                outer,
                inner: left + right,
                start,
                len,
            };
            Ok::<_, PlanError>(HostGrad::Sum(Tensor::from_values(
                backend::run(op, &[g])?,
                shape,
            )))
        };
        Tensor::from_buf("cat", out, &shape, &[self, other], move |g, need| {
            Ok(vec![
                (need[0] == Need::Sum)
                    .then(|| part(g, 0, left, &a))
                    .transpose()?,
                (need[1] == Need::Sum)
                    .then(|| part(g, left, right, &b))
                    .transpose()?,
            ])
        })
    }
}
