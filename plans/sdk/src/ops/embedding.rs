//! Table lookup: integer indices select rows of a `[num, dim]` weight.

use crate::error::PlanResult;
use crate::tensor::{Grad, Need, Tensor};

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
        let indices: Vec<usize> = self
            .values()
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if v >= 0.0 && v.fract() == 0.0 && (v as usize) < num {
                    Ok(v as usize)
                } else {
                    Err(shape_error(
                        "embedding",
                        format!("index {v} at position {i} is not a whole number in 0..{num}"),
                    ))
                }
            })
            .collect::<PlanResult<_>>()?;
        let wv = weight.values();
        let mut out = Vec::with_capacity(indices.len() * dim);
        for &i in &indices {
            out.extend_from_slice(&wv[i * dim..(i + 1) * dim]);
        }
        drop(wv);
        let mut shape = self.shape().to_vec();
        shape.push(dim);
        let out_shape = shape.clone();
        Tensor::from_op("embedding", out, &shape, &[self, weight], move |g, need| {
            let dw = match need[1] {
                // Asked only of ghost operations (the linear map).
                Need::SampleSquares(_) | Need::Clipped(_) => None,
                Need::Nothing => None,
                Need::Sum => {
                    let mut dw = vec![0.0f32; num * dim];
                    for (k, &i) in indices.iter().enumerate() {
                        crate::kernels::simd::add_assign(
                            &mut dw[i * dim..(i + 1) * dim],
                            &g[k * dim..(k + 1) * dim],
                        );
                    }
                    Some(Grad::Sum(dw))
                }
                Need::PerSample(batch) => {
                    let per = per_sample_stride(&out_shape, batch, "embedding")? / dim.max(1);
                    let mut dw = vec![0.0f32; batch * num * dim];
                    for (k, &i) in indices.iter().enumerate() {
                        let at = (k / per.max(1)) * num * dim + i * dim;
                        crate::kernels::simd::add_assign(
                            &mut dw[at..at + dim],
                            &g[k * dim..(k + 1) * dim],
                        );
                    }
                    Some(Grad::PerSample(dw))
                }
            };
            // Indices are not differentiable.
            Ok(vec![None, dw])
        })
    }
}
