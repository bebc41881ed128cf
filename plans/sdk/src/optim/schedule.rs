//! Learning-rate schedules over the optimizer updates of one training task:
//! constant, step decay and cosine annealing (PyTorch's `StepLR` and
//! `CosineAnnealingLR`, counted in updates rather than epochs).

use crate::args::Args;
use crate::error::{PlanResult, invalid_argument};

/// How the learning rate evolves with the update count `t` (0 for the first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// lr.
    Constant,
    /// lr · γ^⌊t / step_size⌋.
    Step {
        /// Updates between decays.
        step_size: u64,
        /// Factor of each decay.
        gamma: f32,
    },
    /// lr_min + (lr − lr_min)(1 + cos(π·min(t, T)/T))/2.
    Cosine {
        /// Updates to reach `lr_min`.
        t_max: u64,
        /// Floor of the learning rate.
        lr_min: f32,
    },
}

impl Schedule {
    /// From `lr_schedule` and its companions in optimizer arguments.
    pub fn from_args(args: &Args) -> PlanResult<Self> {
        match args.text("lr_schedule")? {
            "constant" => Ok(Schedule::Constant),
            "step" => {
                let step_size = args.count_at_least("lr_step_size", 1)? as u64;
                let gamma = args.number("lr_gamma")?;
                if gamma.is_nan() || gamma <= 0.0 || gamma > 1.0 {
                    return Err(invalid_argument(format!(
                        "optimizer_args.lr_gamma must be in (0, 1], got {gamma}"
                    )));
                }
                Ok(Schedule::Step { step_size, gamma })
            }
            "cosine" => {
                let t_max = args.count_at_least("lr_t_max", 1)? as u64;
                let lr_min = args.number("lr_min")?;
                if lr_min.is_nan() || lr_min < 0.0 {
                    return Err(invalid_argument(format!(
                        "optimizer_args.lr_min must be ≥ 0, got {lr_min}"
                    )));
                }
                Ok(Schedule::Cosine { t_max, lr_min })
            }
            other => Err(invalid_argument(format!(
                "optimizer_args.lr_schedule must be \"constant\", \"step\" or \"cosine\", got \"{other}\""
            ))),
        }
    }

    /// The learning rate of update `t` for a base rate `lr`. Powers are
    /// repeated products and the cosine is `libm`'s, so every build agrees.
    pub fn rate(&self, lr: f32, t: u64) -> f32 {
        match *self {
            Schedule::Constant => lr,
            Schedule::Step { step_size, gamma } => {
                let mut rate = lr;
                for _ in 0..t / step_size {
                    rate *= gamma;
                }
                rate
            }
            Schedule::Cosine { t_max, lr_min } => {
                let phase = t.min(t_max) as f64 / t_max as f64;
                let factor = (1.0 + libm::cos(std::f64::consts::PI * phase)) / 2.0;
                lr_min + ((lr - lr_min) as f64 * factor) as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_pytorch_formulas() {
        let step = Schedule::Step {
            step_size: 2,
            gamma: 0.5,
        };
        let rates: Vec<f32> = (0..5).map(|t| step.rate(0.8, t)).collect();
        assert_eq!(rates, vec![0.8, 0.8, 0.4, 0.4, 0.2]);
        let cosine = Schedule::Cosine {
            t_max: 4,
            lr_min: 0.0,
        };
        assert_eq!(cosine.rate(1.0, 0), 1.0);
        assert!((cosine.rate(1.0, 2) - 0.5).abs() < 1e-7);
        assert_eq!(cosine.rate(1.0, 4), 0.0);
        assert_eq!(cosine.rate(1.0, 9), 0.0);
    }
}
