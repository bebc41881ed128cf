//! Optimizing the global model (FedOpt, Reddi et al., "Adaptive Federated
//! Optimization", ICLR 2021): the aggregated parameters are not taken as the
//! new global model; instead the pseudo-gradient `g = global − aggregated`
//! drives a server-side optimizer. Plain SGD with `lr = 1` gives back the
//! aggregated model exactly (FedAvg).
//!
//! Update rules (per parameter, no bias correction, as in the paper):
//! - `sgd`:        `x ← x − lr·g`
//! - `fedavgm`:    `m ← momentum·m + g`, `x ← x − lr·m`
//! - `fedadagrad`: `m ← β1·m + (1−β1)·g`, `v ← v + g²`, `x ← x − lr·m/(√v + τ)`
//! - `fedadam`:    `m` as above, `v ← β2·v + (1−β2)·g²`, same step
//! - `fedyogi`:    `m` as above, `v ← v − (1−β2)·g²·sign(v − g²)`, same step
//!
//! Defaults follow the paper's setup: β1 = 0.9, β2 = 0.99, τ = 10⁻³; server
//! learning rates are problem-dependent (the paper tunes them on a grid), so
//! the adaptive ones default to a conservative 0.1. Arithmetic is f32 in a
//! fixed order, so the same inputs give the same bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::aggregators::AggregationError;
use crate::sandbox::types::Tensor;

fn one() -> f32 {
    1.0
}
fn tenth() -> f32 {
    0.1
}
fn beta1() -> f32 {
    0.9
}
fn beta2() -> f32 {
    0.99
}
fn tau() -> f32 {
    1e-3
}

/// Which server optimizer, with its hyper-parameters (TOML: `agg_optimizer = { name = "fedadam", lr = 0.05 }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase", deny_unknown_fields)]
pub enum ServerOptimizer {
    /// `x ← x − lr·g`; lr 1 is FedAvg.
    Sgd {
        /// Server learning rate.
        #[serde(default = "one")]
        lr: f32,
    },
    /// Server momentum (FedAvgM).
    Fedavgm {
        /// Server learning rate.
        #[serde(default = "one")]
        lr: f32,
        /// Momentum.
        #[serde(default = "beta1")]
        momentum: f32,
    },
    /// FedAdagrad.
    Fedadagrad {
        /// Server learning rate.
        #[serde(default = "tenth")]
        lr: f32,
        /// First-moment decay (0 disables the moving average).
        #[serde(default = "beta1")]
        beta1: f32,
        /// Adaptivity (added to √v).
        #[serde(default = "tau")]
        tau: f32,
    },
    /// FedAdam.
    Fedadam {
        /// Server learning rate.
        #[serde(default = "tenth")]
        lr: f32,
        /// First-moment decay.
        #[serde(default = "beta1")]
        beta1: f32,
        /// Second-moment decay.
        #[serde(default = "beta2")]
        beta2: f32,
        /// Adaptivity (added to √v).
        #[serde(default = "tau")]
        tau: f32,
    },
    /// FedYogi.
    Fedyogi {
        /// Server learning rate.
        #[serde(default = "tenth")]
        lr: f32,
        /// First-moment decay.
        #[serde(default = "beta1")]
        beta1: f32,
        /// Second-moment decay.
        #[serde(default = "beta2")]
        beta2: f32,
        /// Adaptivity (added to √v).
        #[serde(default = "tau")]
        tau: f32,
    },
}

/// The optimizer's moments, tensor name → values (empty before the first step).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptimizerState {
    /// First moment (momentum).
    pub m: BTreeMap<String, Vec<f32>>,
    /// Second moment.
    pub v: BTreeMap<String, Vec<f32>>,
}

impl OptimizerState {
    /// As tensors named `m.<name>` and `v.<name>`, for a breakpoint file.
    pub fn to_tensors(&self) -> Vec<Tensor> {
        let one = |prefix: &str, map: &BTreeMap<String, Vec<f32>>| {
            map.iter()
                .map(|(name, data)| Tensor {
                    name: format!("{prefix}.{name}"),
                    shape: vec![data.len() as u32],
                    data: data.clone(),
                })
                .collect::<Vec<_>>()
        };
        let mut out = one("m", &self.m);
        out.extend(one("v", &self.v));
        out
    }

    /// Back from [`OptimizerState::to_tensors`].
    pub fn from_tensors(tensors: Vec<Tensor>) -> Result<Self, AggregationError> {
        let mut state = OptimizerState::default();
        for t in tensors {
            match t.name.split_once('.') {
                Some(("m", name)) => {
                    state.m.insert(name.to_string(), t.data);
                }
                Some(("v", name)) => {
                    state.v.insert(name.to_string(), t.data);
                }
                _ => {
                    return Err(AggregationError::State(format!(
                        "unexpected tensor `{}` in the optimizer state",
                        t.name
                    )));
                }
            }
        }
        Ok(state)
    }
}

impl ServerOptimizer {
    /// Check the hyper-parameters.
    pub fn check(&self) -> Result<(), String> {
        let (lr, others): (f32, Vec<(&str, f32)>) = match *self {
            ServerOptimizer::Sgd { lr } => (lr, vec![]),
            ServerOptimizer::Fedavgm { lr, momentum } => (lr, vec![("momentum", momentum)]),
            ServerOptimizer::Fedadagrad { lr, beta1, tau } => {
                (lr, vec![("beta1", beta1), ("tau", tau)])
            }
            ServerOptimizer::Fedadam {
                lr,
                beta1,
                beta2,
                tau,
            }
            | ServerOptimizer::Fedyogi {
                lr,
                beta1,
                beta2,
                tau,
            } => (lr, vec![("beta1", beta1), ("beta2", beta2), ("tau", tau)]),
        };
        if !(lr.is_finite() && lr > 0.0) {
            return Err(format!(
                "agg_optimizer lr must be a positive number, not {lr}"
            ));
        }
        for (name, value) in others {
            let ok = if name == "tau" {
                value.is_finite() && value > 0.0
            } else {
                (0.0..1.0).contains(&value)
            };
            if !ok {
                return Err(format!(
                    "agg_optimizer {name} = {value} is out of range ({})",
                    if name == "tau" { "> 0" } else { "[0, 1)" }
                ));
            }
        }
        Ok(())
    }

    /// One server step: the new global model from the current one and the
    /// aggregate, and the moments after it. `state` is not changed, so a
    /// round that fails later keeps the old moments.
    pub fn step(
        &self,
        state: &OptimizerState,
        global: &[Tensor],
        aggregated: Vec<Tensor>,
    ) -> (Vec<Tensor>, OptimizerState) {
        let mut next = OptimizerState::default();
        let out = aggregated
            .into_iter()
            .zip(global)
            .map(|(mut agg, g)| {
                let n = g.data.len();
                let mut m = state
                    .m
                    .get(&g.name)
                    .cloned()
                    .unwrap_or_else(|| vec![0.0; n]);
                let mut v = state
                    .v
                    .get(&g.name)
                    .cloned()
                    .unwrap_or_else(|| vec![0.0; n]);
                for i in 0..n {
                    let x = g.data[i];
                    let grad = x - agg.data[i];
                    agg.data[i] = match *self {
                        ServerOptimizer::Sgd { lr } => x - lr * grad,
                        ServerOptimizer::Fedavgm { lr, momentum } => {
                            m[i] = momentum * m[i] + grad;
                            x - lr * m[i]
                        }
                        ServerOptimizer::Fedadagrad { lr, beta1, tau } => {
                            m[i] = beta1 * m[i] + (1.0 - beta1) * grad;
                            v[i] += grad * grad;
                            x - lr * m[i] / (v[i].sqrt() + tau)
                        }
                        ServerOptimizer::Fedadam {
                            lr,
                            beta1,
                            beta2,
                            tau,
                        } => {
                            m[i] = beta1 * m[i] + (1.0 - beta1) * grad;
                            v[i] = beta2 * v[i] + (1.0 - beta2) * grad * grad;
                            x - lr * m[i] / (v[i].sqrt() + tau)
                        }
                        ServerOptimizer::Fedyogi {
                            lr,
                            beta1,
                            beta2,
                            tau,
                        } => {
                            m[i] = beta1 * m[i] + (1.0 - beta1) * grad;
                            let g2 = grad * grad;
                            let sign = if v[i] > g2 {
                                1.0
                            } else if v[i] < g2 {
                                -1.0
                            } else {
                                0.0
                            };
                            v[i] -= (1.0 - beta2) * g2 * sign;
                            x - lr * m[i] / (v[i].sqrt() + tau)
                        }
                    };
                }
                if matches!(self, ServerOptimizer::Sgd { .. }) {
                    return agg;
                }
                next.m.insert(g.name.clone(), m);
                if !matches!(self, ServerOptimizer::Fedavgm { .. }) {
                    next.v.insert(g.name.clone(), v);
                }
                agg
            })
            .collect();
        (out, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(data: &[f32]) -> Vec<Tensor> {
        vec![Tensor {
            name: "w".into(),
            shape: vec![data.len() as u32],
            data: data.to_vec(),
        }]
    }

    fn step(
        opt: &ServerOptimizer,
        state: &OptimizerState,
        x: &[f32],
        agg: &[f32],
    ) -> (Vec<f32>, OptimizerState) {
        let (out, next) = opt.step(state, &t(x), t(agg));
        (out[0].data.clone(), next)
    }

    fn close(a: &[f32], b: &[f32]) {
        assert!(
            a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-5),
            "{a:?} vs {b:?}"
        );
    }

    #[test]
    fn sgd_with_lr_one_is_fedavg() {
        let (out, _) = step(
            &ServerOptimizer::Sgd { lr: 1.0 },
            &OptimizerState::default(),
            &[1.0, -2.0],
            &[0.25, 3.0],
        );
        assert_eq!(out, [0.25, 3.0]);
    }

    #[test]
    fn one_step_of_each_by_hand() {
        // x = 1, aggregate = 0.5: g = 0.5.
        let s0 = OptimizerState::default();
        // FedAvgM lr 1, momentum 0.9: m = 0.5, x = 0.5; then g = 0.5 again: m = 0.95, x = 0.05.
        let avgm = ServerOptimizer::Fedavgm {
            lr: 1.0,
            momentum: 0.9,
        };
        let (x1, s1) = step(&avgm, &s0, &[1.0], &[0.5]);
        close(&x1, &[0.5]);
        let (x2, _) = step(&avgm, &s1, &[1.0], &[0.5]);
        close(&x2, &[0.05]);
        // FedAdam lr 0.1, β1 0.9, β2 0.99, τ 1e-3: m = 0.05, v = 0.0025,
        // x = 1 − 0.1·0.05/(0.05 + 0.001) = 0.9019608.
        let adam = ServerOptimizer::Fedadam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            tau: 1e-3,
        };
        let (x, s) = step(&adam, &s0, &[1.0], &[0.5]);
        close(&x, &[1.0 - 0.1 * 0.05 / (0.05 + 0.001)]);
        close(&s.v["w"], &[0.0025]);
        // FedYogi from v = 0: sign(0 − 0.25) = −1: v = 0.01·0.25 = 0.0025, same first step as Adam;
        // second step with v = 0.0025 < g² = 0.25: v = 0.0025 + 0.0025 = 0.005.
        let yogi = ServerOptimizer::Fedyogi {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            tau: 1e-3,
        };
        let (y1, t1) = step(&yogi, &s0, &[1.0], &[0.5]);
        close(&y1, &x);
        let (_, t2) = step(&yogi, &t1, &[1.0], &[0.5]);
        close(&t2.v["w"], &[0.005]);
        // FedAdagrad β1 0: v = 0.25, x = 1 − 0.1·0.5/(0.5 + 0.001).
        let adagrad = ServerOptimizer::Fedadagrad {
            lr: 0.1,
            beta1: 0.0,
            tau: 1e-3,
        };
        let (x, _) = step(&adagrad, &s0, &[1.0], &[0.5]);
        close(&x, &[1.0 - 0.1 * 0.5 / 0.501]);
    }

    #[test]
    fn settings_parse_with_defaults_and_are_checked() {
        let opt: ServerOptimizer = toml::from_str("name = \"fedadam\"\nlr = 0.05").unwrap();
        assert_eq!(
            opt,
            ServerOptimizer::Fedadam {
                lr: 0.05,
                beta1: 0.9,
                beta2: 0.99,
                tau: 1e-3
            }
        );
        assert!(toml::from_str::<ServerOptimizer>("name = \"adamw\"").is_err());
        assert!(
            ServerOptimizer::Fedyogi {
                lr: 0.1,
                beta1: 1.5,
                beta2: 0.99,
                tau: 1e-3
            }
            .check()
            .unwrap_err()
            .contains("beta1")
        );
        let state = OptimizerState {
            m: BTreeMap::from([("w".into(), vec![1.0])]),
            v: BTreeMap::from([("w".into(), vec![2.0])]),
        };
        assert_eq!(
            OptimizerState::from_tensors(state.to_tensors()).unwrap(),
            state
        );
    }
}
