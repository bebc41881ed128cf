//! Table lookup: integer indices select rows of a `[num, dim]` weight, on
//! the kernels where the table is; the indices are checked in the plan
//! first, so a bad one is named.

use fedwasm_kernels::{Embedding, Op};

use crate::backend;
use crate::error::PlanResult;
use crate::tensor::{HostGrad, Need, Tensor};

use super::{per_sample_stride, shape_error};

impl Tensor {
    /// Rows of `weight` (`[num, dim]`) at the indices held in `self` (whole
    /// numbers stored as f32, any shape `[…]`), giving `[…, dim]`.
    pub fn embedding(&self, weight: &Tensor) -> PlanResult<Tensor> {
        let [num, dim] = *weight.shape() else {
            return Err(shape_error(
                "embedding",
                format!("weight must be [num, dim], got {:?}", weight.shape()),
            ));
        };
        for (i, &v) in self.values().iter().enumerate() {
            if !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < num) {
                return Err(shape_error(
                    "embedding",
                    format!("index {v} at position {i} is not a whole number in 0..{num}"),
                ));
            }
        }
        let e = Embedding {
            num,
            dim,
            count: self.numel(),
        };
        let out = backend::run_near(Op::Embedding(e), &[self, weight])?;
        let mut shape = self.shape().to_vec();
        shape.push(dim);
        let out_shape = shape.clone();
        let indices = self.clone();
        Tensor::from_buf("embedding", out, &shape, &[self, weight], move |g, need| {
            let samples = match need[1] {
                // Asked only of ghost operations (the linear map).
                Need::SampleSquares(_) | Need::Clipped(_) | Need::Nothing => {
                    return Ok(vec![None, None]);
                }
                Need::Sum => 1,
                Need::PerSample(batch) => {
                    per_sample_stride(&out_shape, batch, "embedding")?;
                    batch
                }
            };
            let dw = backend::run_near(Op::EmbeddingGrad { e, samples }, &[&indices, g])?;
            let dw = Tensor::from_values(dw, &[samples, num * dim]);
            // Indices are not differentiable.
            Ok(vec![
                None,
                Some(if samples == 1 {
                    HostGrad::Sum(Tensor::from_values(dw.into_buf(), &[num, dim]))
                } else {
                    HostGrad::PerSample(dw)
                }),
            ])
        })
    }
}
