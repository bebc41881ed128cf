//! Softmax and log-softmax along one dimension, shifted by the maximum so
//! that no exponential overflows.

use crate::error::PlanResult;
use crate::tensor::{Grad, Need, Tensor};

use super::reduce::split_at;
use super::{shape_error, tracking};

/// log Σ exp over `len` values spaced `inner` apart, starting at `x[start]`.
fn log_sum_exp(x: &[f32], start: usize, len: usize, inner: usize) -> f32 {
    let max = (0..len).fold(f32::NEG_INFINITY, |m, k| m.max(x[start + k * inner]));
    if max == f32::NEG_INFINITY {
        return max;
    }
    let sum = (0..len).fold(0.0f32, |s, k| s + libm::expf(x[start + k * inner] - max));
    max + libm::logf(sum)
}

impl Tensor {
    fn softmax_like(&self, dim: usize, log: bool) -> PlanResult<Tensor> {
        let name = if log { "log_softmax" } else { "softmax" };
        if dim >= self.ndim() {
            return Err(shape_error(
                name,
                format!("dimension {dim} out of range for shape {:?}", self.shape()),
            ));
        }
        let (outer, len, inner) = split_at(self.shape(), dim);
        let xv = self.values();
        let mut out = vec![0.0f32; xv.len()];
        for o in 0..outer {
            for i in 0..inner {
                let start = o * len * inner + i;
                let lse = log_sum_exp(&xv, start, len, inner);
                for k in 0..len {
                    let at = start + k * inner;
                    out[at] = if log {
                        xv[at] - lse
                    } else {
                        libm::expf(xv[at] - lse)
                    };
                }
            }
        }
        drop(xv);
        let saved = if tracking(&[self]) {
            out.clone()
        } else {
            Vec::new()
        };
        Tensor::from_op(name, out, self.shape(), &[self], move |g, need| {
            if need[0] != Need::Sum {
                return Ok(vec![None]);
            }
            let mut dx = vec![0.0f32; g.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let start = o * len * inner + i;
                    let idx = |k: usize| start + k * inner;
                    if log {
                        // dx = g − softmax · Σ g
                        let total = (0..len).fold(0.0f32, |s, k| s + g[idx(k)]);
                        for k in 0..len {
                            dx[idx(k)] = g[idx(k)] - libm::expf(saved[idx(k)]) * total;
                        }
                    } else {
                        // dx = y · (g − Σ g·y)
                        let dot = (0..len).fold(0.0f32, |s, k| s + g[idx(k)] * saved[idx(k)]);
                        for k in 0..len {
                            dx[idx(k)] = saved[idx(k)] * (g[idx(k)] - dot);
                        }
                    }
                }
            }
            Ok(vec![Some(Grad::Sum(dx))])
        })
    }

    /// exp(x) / Σ exp(x) along `dim`.
    pub fn softmax(&self, dim: usize) -> PlanResult<Tensor> {
        self.softmax_like(dim, false)
    }

    /// x − log Σ exp(x) along `dim`.
    pub fn log_softmax(&self, dim: usize) -> PlanResult<Tensor> {
        self.softmax_like(dim, true)
    }
}
