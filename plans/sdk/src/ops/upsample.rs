//! Nearest-neighbour upsampling, the decoder half of a U-Net.

use crate::error::PlanResult;
use crate::tensor::{Grad, Need, Tensor};

use super::shape_error;

impl Tensor {
    /// `[N, C, H, W]` → `[N, C, H·factor, W·factor]`, each pixel repeated
    /// into a `factor` × `factor` block (PyTorch's
    /// `F.interpolate(x, scale_factor=factor, mode="nearest")`); the
    /// gradient of a pixel is the sum over its block.
    pub fn upsample_nearest2d(&self, factor: usize) -> PlanResult<Tensor> {
        let [n, c, h, w] = *self.shape() else {
            return Err(shape_error(
                "upsample_nearest2d",
                format!("needs [N, C, H, W], got shape {:?}", self.shape()),
            ));
        };
        if factor == 0 {
            return Err(shape_error(
                "upsample_nearest2d",
                "the factor must be at least 1",
            ));
        }
        let (oh, ow) = (h * factor, w * factor);
        let planes = n * c;
        let mut data = vec![0.0f32; planes * oh * ow];
        {
            let x = self.values();
            for p in 0..planes {
                let src = &x[p * h * w..(p + 1) * h * w];
                let dst = &mut data[p * oh * ow..(p + 1) * oh * ow];
                for r in 0..oh {
                    let from = &src[(r / factor) * w..(r / factor + 1) * w];
                    for (col, out) in dst[r * ow..(r + 1) * ow].iter_mut().enumerate() {
                        *out = from[col / factor];
                    }
                }
            }
        }
        Tensor::from_op(
            "upsample_nearest2d",
            data,
            &[n, c, oh, ow],
            &[self],
            move |g, need| {
                if need[0] != Need::Sum {
                    return Ok(vec![None]);
                }
                let mut dx = vec![0.0f32; planes * h * w];
                for p in 0..planes {
                    let grad = &g[p * oh * ow..(p + 1) * oh * ow];
                    let dst = &mut dx[p * h * w..(p + 1) * h * w];
                    // Rows in order, each block's pixels in row order: a
                    // fixed summation order.
                    for r in 0..oh {
                        for col in 0..ow {
                            dst[(r / factor) * w + col / factor] += grad[r * ow + col];
                        }
                    }
                }
                Ok(vec![Some(Grad::Sum(dx))])
            },
        )
    }
}
