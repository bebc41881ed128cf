//! Dropout: each element zeroed with probability `p` and the rest scaled by
//! 1/(1−p), the mask drawn from the host's seeded stream so a run repeats.

use crate::error::{PlanResult, invalid_argument};
use crate::random;
use crate::tensor::{Grad, Need, Tensor};

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
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = random::uniform(self.numel())
            .into_iter()
            .map(|u| if u < p { 0.0 } else { keep })
            .collect();
        let out: Vec<f32> = self
            .values()
            .iter()
            .zip(&mask)
            .map(|(x, m)| x * m)
            .collect();
        Tensor::from_op("dropout", out, self.shape(), &[self], move |g, need| {
            Ok(vec![(need[0] == Need::Sum).then(|| {
                Grad::Sum(g.iter().zip(&mask).map(|(g, m)| g * m).collect())
            })])
        })
    }
}
