//! Dropout: each element zeroed with probability `p` and the rest scaled by
//! 1/(1−p), the mask drawn from the host's seeded stream so a run repeats,
//! made and applied where the values are.

use fedwasm_kernels::{Binary, Broadcast, Op};

use crate::backend;
use crate::error::{PlanResult, invalid_argument};
use crate::tensor::{HostGrad, Need, Tensor};

impl Tensor {
    /// Dropout with probability `p` in [0, 1); the identity when `p` is 0.
    pub fn dropout(&self, p: f32) -> PlanResult<Tensor> {
        if !(0.0..1.0).contains(&p) {
            return Err(invalid_argument(format!(
                "dropout probability must be in [0, 1), got {p}"
            )));
        }
        if p == 0.0 {
            return Ok(self.clone());
        }
        let mask = Tensor::from_values(backend::dropout_mask(self.numel(), p)?, self.shape());
        let shapes = Broadcast::new(self.shape(), self.shape())
            .map_err(|e| invalid_argument(format!("dropout: {e}")))?;
        let times_mask = Op::Binary {
            op: Binary::Mul,
            shapes,
        };
        let out = backend::run_near(times_mask, &[self, &mask])?;
        Tensor::from_buf("dropout", out, self.shape(), &[self], move |g, need| {
            if need[0] != Need::Sum {
                return Ok(vec![None]);
            }
            let dx = backend::run_near(times_mask, &[g, &mask])?;
            Ok(vec![Some(HostGrad::Sum(Tensor::from_values(
                dx,
                mask.shape(),
            )))])
        })
    }
}
