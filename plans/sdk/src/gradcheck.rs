//! Finite-difference gradient checks: the SDK checks every operation, layer
//! and loss with them, and a plan author checks a layer of their own the
//! same way.

use crate::error::{PlanResult, internal};
use crate::tensor::{Tensor, no_grad};

/// How closely autodiff must match central differences.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Step of the central difference.
    pub eps: f32,
    /// Absolute tolerance.
    pub atol: f32,
    /// Relative tolerance.
    pub rtol: f32,
    /// At most this many elements checked per tensor, spread evenly.
    pub samples: usize,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            eps: 1e-2,
            atol: 2e-3,
            rtol: 2e-2,
            samples: 48,
        }
    }
}

/// Check `∂f/∂t` for each tensor `t` in `wrt` (parameters) against
/// (f(t + ε) − f(t − ε)) / 2ε, where `f` recomputes a scalar from them.
pub fn check(wrt: &[Tensor], f: impl Fn() -> PlanResult<Tensor>, tol: Tolerance) -> PlanResult<()> {
    for t in wrt {
        t.set_grad(None);
    }
    f()?.backward()?;
    for (which, t) in wrt.iter().enumerate() {
        let analytic = t
            .grad()
            .map(|g| g.to_vec())
            .unwrap_or_else(|| vec![0.0; t.numel()]);
        let n = t.numel();
        let step = (n / tol.samples.max(1)).max(1);
        for k in (0..n).step_by(step) {
            let at = |delta: f32| -> PlanResult<f32> {
                let original = t.values()[k];
                t.values_mut()[k] = original + delta;
                let v = no_grad(&f).and_then(|l| l.item());
                t.values_mut()[k] = original;
                v
            };
            let numeric = (at(tol.eps)? - at(-tol.eps)?) / (2.0 * tol.eps);
            let a = analytic[k];
            if (a - numeric).abs() > tol.atol + tol.rtol * a.abs().max(numeric.abs()) {
                return Err(internal(format!(
                    "gradient check: tensor {which} element {k}: autodiff {a}, finite difference {numeric}"
                )));
            }
        }
    }
    Ok(())
}
