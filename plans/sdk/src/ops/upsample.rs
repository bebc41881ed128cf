//! Nearest-neighbour upsampling, the decoder half of a U-Net.

use fedwasm_kernels::Op;
use fedwasm_kernels::layout::Upsample;

use crate::backend;
use crate::error::PlanResult;
use crate::tensor::{HostGrad, Need, Tensor};

use super::shape_error;

impl Tensor {
    /// `[N, C, H, W]` → `[N, C, H·factor, W·factor]`, each pixel repeated
    /// into a `factor` × `factor` block (PyTorch's
    /// `F.interpolate(x, scale_factor=factor, mode="nearest")`), on the
    /// node's host; the gradient of a pixel is the sum over its block.
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
        let up = Upsample {
            planes: n * c,
            height: h,
            width: w,
            factor,
        };
        let out = backend::run(Op::Upsample2d(up), &[self])?;
        let shape = self.shape().to_vec();
        Tensor::from_buf(
            "upsample_nearest2d",
            out,
            &[n, c, h * factor, w * factor],
            &[self],
            move |g, need| {
                if need[0] != Need::Sum {
                    return Ok(vec![None]);
                }
                let dx = backend::run(Op::Upsample2dGrad(up), &[g])?;
                Ok(vec![Some(HostGrad::Sum(Tensor::from_values(dx, &shape)))])
            },
        )
    }
}
