//! Optimizers: SGD (momentum, Nesterov, weight decay), Adam and AdamW, with
//! a learning-rate [`Schedule`], all honouring the gradient correction
//! Scaffold sends (grad ← grad − correction) and FedProx's proximal term:
//! with `fedprox_mu` = μ the objective gains (μ/2)·‖w − w₀‖², w₀ the
//! parameters at the first update (the global model the node received), so
//! μ·(w − w₀) is added to every gradient.
//!
//! State (momentum buffers, Adam moments, the update count) lives in the
//! optimizer and starts fresh in every training task, as in Fed-BioMed.

mod schedule;

pub use schedule::Schedule;

use fedwasm_kernels::Op;
use fedwasm_kernels::squares::words_to_f64;
use fedwasm_kernels::update::{self, Update};

use crate::args::{ArgSpec, ArgType, Args};
use crate::backend::{self, UpdateOperands};
use crate::error::{PlanResult, invalid_argument, invalid_data};
use crate::tensor::Tensor;

/// Arguments every SDK optimizer understands, with SGD at learning rate 0.01 by default.
pub const OPTIMIZER_ARGS: &[ArgSpec] = &optimizer_args("0.01");

/// The optimizer argument list with a plan-specific default learning rate.
pub const fn optimizer_args(default_lr: &'static str) -> [ArgSpec; 17] {
    [
        ArgSpec::optional(
            "optimizer",
            ArgType::Text,
            "\"sgd\"",
            "\"sgd\", \"adam\" or \"adamw\"",
        ),
        ArgSpec::optional("lr", ArgType::Number, default_lr, "learning rate"),
        ArgSpec::optional(
            "momentum",
            ArgType::Number,
            "0.0",
            "SGD momentum (PyTorch convention)",
        ),
        ArgSpec::optional(
            "nesterov",
            ArgType::Boolean,
            "false",
            "SGD: Nesterov momentum",
        ),
        ArgSpec::optional(
            "weight_decay",
            ArgType::Number,
            "0.0",
            "L2 penalty added to the gradient (AdamW: decoupled decay of the weights)",
        ),
        ArgSpec::optional(
            "beta1",
            ArgType::Number,
            "0.9",
            "Adam: decay of the first moment",
        ),
        ArgSpec::optional(
            "beta2",
            ArgType::Number,
            "0.999",
            "Adam: decay of the second moment",
        ),
        ArgSpec::optional(
            "eps",
            ArgType::Number,
            "1e-8",
            "Adam: term added to the denominator",
        ),
        ArgSpec::optional(
            "lr_schedule",
            ArgType::Text,
            "\"constant\"",
            "\"constant\", \"step\" (lr_step_size, lr_gamma) or \"cosine\" (lr_t_max, lr_min), counted in updates",
        ),
        ArgSpec::optional(
            "lr_step_size",
            ArgType::Count,
            "1",
            "step schedule: updates between decays",
        ),
        ArgSpec::optional(
            "lr_gamma",
            ArgType::Number,
            "0.1",
            "step schedule: decay factor",
        ),
        ArgSpec::optional(
            "lr_t_max",
            ArgType::Count,
            "100",
            "cosine schedule: updates to reach lr_min",
        ),
        ArgSpec::optional(
            "lr_min",
            ArgType::Number,
            "0.0",
            "cosine schedule: final learning rate",
        ),
        ArgSpec::optional(
            "fedprox_mu",
            ArgType::Number,
            "0.0",
            "FedProx: weight of (mu/2)·‖w − w_global‖²",
        ),
        ArgSpec::optional(
            "dp_clip",
            ArgType::Number,
            "0.0",
            "DP-SGD: bound on each sample's gradient norm (0 = off); set by the node from dp_args",
        ),
        ArgSpec::optional(
            "dp_sigma",
            ArgType::Number,
            "0.0",
            "DP-SGD: noise standard deviation in units of dp_clip; set by the node from dp_args",
        ),
        ArgSpec::optional(
            "max_grad_norm",
            ArgType::Number,
            "0.0",
            "clip the whole gradient to this L2 norm before the update (0 = off)",
        ),
    ]
}

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// SGD with PyTorch's momentum convention (no dampening).
    Sgd {
        /// Momentum factor (0 disables it).
        momentum: f32,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Adam (Kingma & Ba), weight decay added to the gradient (L2).
    Adam {
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Added to the denominator.
        eps: f32,
    },
    /// AdamW (Loshchilov & Hutter): decay applied to the weights, not the gradient.
    AdamW {
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Added to the denominator.
        eps: f32,
    },
}

/// The optimizer a plan trains with: a rule, a schedule and their state.
#[derive(Debug, Clone)]
pub struct Optimizer {
    /// Base learning rate.
    pub lr: f32,
    /// Update rule.
    pub rule: Rule,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// L2 penalty (SGD, Adam) or decoupled decay (AdamW).
    pub weight_decay: f32,
    /// Clip the whole gradient to this norm before the update (0 = off).
    pub max_grad_norm: f32,
    prox_mu: f32,
    anchor: Vec<Tensor>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    beta1_power: f32,
    beta2_power: f32,
    updates: u64,
}

/// A zero state tensor for each parameter, held where updates run.
fn zeros_like(params: &[Tensor]) -> PlanResult<Vec<Tensor>> {
    params
        .iter()
        .map(|p| Ok(Tensor::from_values(backend::zeros(p.numel())?, p.shape())))
        .collect()
}

fn in_range(args: &Args, name: &str, low: f32, high: f32) -> PlanResult<f32> {
    let v = args.number(name)?;
    if !(low..high).contains(&v) {
        return Err(invalid_argument(format!(
            "optimizer_args.{name} must be in [{low}, {high}), got {v}"
        )));
    }
    Ok(v)
}

impl Optimizer {
    /// Build from arguments parsed against [`optimizer_args`].
    pub fn from_args(args: &Args) -> PlanResult<Self> {
        let lr = args.number("lr")?;
        if lr.is_nan() || lr <= 0.0 {
            return Err(invalid_argument(format!(
                "optimizer_args.lr must be > 0, got {lr}"
            )));
        }
        let adam = |args: &Args| -> PlanResult<(f32, f32, f32)> {
            Ok((
                in_range(args, "beta1", 0.0, 1.0)?,
                in_range(args, "beta2", 0.0, 1.0)?,
                in_range(args, "eps", 0.0, f32::INFINITY)?,
            ))
        };
        let rule = match args.text("optimizer")?.to_ascii_lowercase().as_str() {
            "sgd" => Rule::Sgd {
                momentum: in_range(args, "momentum", 0.0, 1.0)?,
                nesterov: args.boolean("nesterov")?,
            },
            "adam" => {
                let (beta1, beta2, eps) = adam(args)?;
                Rule::Adam { beta1, beta2, eps }
            }
            "adamw" => {
                let (beta1, beta2, eps) = adam(args)?;
                Rule::AdamW { beta1, beta2, eps }
            }
            other => {
                return Err(invalid_argument(format!(
                    "optimizer_args.optimizer must be \"sgd\", \"adam\" or \"adamw\", got \"{other}\""
                )));
            }
        };
        if let Rule::Sgd {
            momentum,
            nesterov: true,
        } = rule
            && momentum == 0.0
        {
            return Err(invalid_argument(
                "optimizer_args.nesterov needs a momentum > 0",
            ));
        }
        Ok(Optimizer {
            lr,
            rule,
            schedule: Schedule::from_args(args)?,
            weight_decay: in_range(args, "weight_decay", 0.0, f32::INFINITY)?,
            max_grad_norm: in_range(args, "max_grad_norm", 0.0, f32::INFINITY)?,
            prox_mu: in_range(args, "fedprox_mu", 0.0, f32::INFINITY)?,
            anchor: Vec::new(),
            first: Vec::new(),
            second: Vec::new(),
            beta1_power: 1.0,
            beta2_power: 1.0,
            updates: 0,
        })
    }

    /// The learning rate the next update applies.
    pub fn learning_rate(&self) -> f32 {
        self.schedule.rate(self.lr, self.updates)
    }

    /// One update of every parameter from its gradient (a parameter without
    /// one is left alone), after subtracting the matching `correction`.
    /// Returns the learning rate applied. The arithmetic runs where the
    /// gradients are (the node's host, for a plan in wasm), by one kernel.
    pub fn step(&mut self, params: &[Tensor], correction: Option<&[Tensor]>) -> PlanResult<f32> {
        let lr = self.learning_rate();
        let moments = self.kernel_rule(lr, false).moments();
        if moments >= 1 && self.first.len() != params.len() {
            self.first = zeros_like(params)?;
        }
        if moments == 2 && self.second.len() != params.len() {
            self.second = zeros_like(params)?;
        }
        if self.prox_mu != 0.0 && self.anchor.len() != params.len() {
            self.anchor = params
                .iter()
                .map(backend::duplicate)
                .collect::<PlanResult<_>>()?;
        }
        let scale = self.clip_factor(params)?;
        let first_update = self.updates == 0;
        self.updates += 1;
        if let Rule::Adam { beta1, beta2, .. } | Rule::AdamW { beta1, beta2, .. } = self.rule {
            // Powers by repeated multiplication: exact to reproduce anywhere, unlike powf.
            self.beta1_power *= beta1;
            self.beta2_power *= beta2;
        }
        let update = Update {
            lr,
            scale,
            prox_mu: self.prox_mu,
            l2: if matches!(self.rule, Rule::AdamW { .. }) {
                0.0
            } else {
                self.weight_decay
            },
            rule: self.kernel_rule(lr, first_update),
        };
        for (i, p) in params.iter().enumerate() {
            let Some(grad) = p.take_grad() else {
                continue;
            };
            let more = UpdateOperands {
                correction: correction.and_then(|c| c.get(i)),
                anchor: self.anchor.get(i),
                first: self.first.get(i),
                second: self.second.get(i),
            };
            let done = backend::update(&update, p, &grad, &more);
            p.put_grad(grad);
            done?;
        }
        Ok(lr)
    }

    /// The kernel's rule for this update, with its step's constants.
    fn kernel_rule(&self, lr: f32, first_update: bool) -> update::Rule {
        match self.rule {
            Rule::Sgd { momentum: 0.0, .. } => update::Rule::Sgd,
            Rule::Sgd { momentum, nesterov } => update::Rule::Momentum {
                momentum,
                nesterov,
                first_update,
            },
            Rule::Adam { beta1, beta2, eps } | Rule::AdamW { beta1, beta2, eps } => {
                update::Rule::Adam {
                    beta1,
                    beta2,
                    eps,
                    c1: 1.0 - self.beta1_power,
                    c2: 1.0 - self.beta2_power,
                    decay: if matches!(self.rule, Rule::AdamW { .. }) {
                        1.0 - lr * self.weight_decay
                    } else {
                        1.0
                    },
                }
            }
        }
    }

    /// The factor bringing the whole gradient's norm down to `max_grad_norm`:
    /// each gradient's sum of squares is taken where it is (on the node's
    /// host, four values read back), exact in f64, added in parameter order.
    fn clip_factor(&self, params: &[Tensor]) -> PlanResult<f32> {
        if self.max_grad_norm == 0.0 {
            return Ok(1.0);
        }
        let mut sq = 0.0f64;
        for p in params {
            let Some(g) = p.take_grad() else {
                continue;
            };
            let words = backend::run_near(Op::SumOfSquares, &[&g]);
            p.put_grad(g);
            let words = Tensor::from_values(words?, &[4]).to_vec();
            sq += words_to_f64(&words)
                .ok_or_else(|| invalid_data("a gradient's sum of squares came back malformed"))?;
        }
        let norm = sq.sqrt() as f32;
        Ok(if norm > self.max_grad_norm {
            self.max_grad_norm / norm
        } else {
            1.0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str) -> Optimizer {
        Optimizer::from_args(&Args::parse("optimizer_args", json, OPTIMIZER_ARGS).unwrap()).unwrap()
    }

    fn param(w: &[f32]) -> Tensor {
        Tensor::parameter(w.to_vec(), &[w.len()]).unwrap()
    }

    fn step(opt: &mut Optimizer, p: &Tensor, g: &[f32], correction: Option<&[Tensor]>) -> Vec<f32> {
        p.set_grad(Some(g.to_vec()));
        opt.step(std::slice::from_ref(p), correction).unwrap();
        p.to_vec()
    }

    #[test]
    fn sgd_with_momentum_and_correction() {
        let mut opt = build(r#"{"lr": 0.5, "momentum": 0.5}"#);
        let w = param(&[1.0, 2.0]);
        let correction = vec![Tensor::new(vec![0.5f32, 0.5], &[2]).unwrap()];
        // corrected gradient (0.5, -1.5); first momentum step uses it as is.
        assert_eq!(
            step(&mut opt, &w, &[1.0, -1.0], Some(&correction)),
            vec![0.75, 2.75]
        );
        // velocity = 0.5 * (0.5, -1.5) + (0.5, -1.5) = (0.75, -2.25)
        assert_eq!(
            step(&mut opt, &w, &[1.0, -1.0], Some(&correction)),
            vec![0.375, 3.875]
        );
    }

    #[test]
    fn nesterov_looks_ahead() {
        let mut opt = build(r#"{"lr": 1.0, "momentum": 0.5, "nesterov": true}"#);
        let w = param(&[0.0]);
        // v = 1; step = 1 + 0.5·1
        assert_eq!(step(&mut opt, &w, &[1.0], None), vec![-1.5]);
        // v = 0.5·1 + 1 = 1.5; step = 1 + 0.5·1.5 = 1.75
        assert_eq!(step(&mut opt, &w, &[1.0], None), vec![-3.25]);
        let args = Args::parse("optimizer_args", r#"{"nesterov": true}"#, OPTIMIZER_ARGS).unwrap();
        assert!(
            Optimizer::from_args(&args)
                .unwrap_err()
                .message
                .contains("nesterov")
        );
    }

    #[test]
    fn fedprox_pulls_back_towards_the_first_parameters() {
        let mut opt = build(r#"{"lr": 0.5, "fedprox_mu": 2.0}"#);
        let w = param(&[1.0, 2.0]);
        // First step: w0 = (1, 2) is the anchor, the proximal term is 0.
        assert_eq!(step(&mut opt, &w, &[1.0, 1.0], None), vec![0.5, 1.5]);
        // Zero gradient: d = μ·(w − w0) = 2·(−0.5, −0.5) = (−1, −1); w += 0.5.
        assert_eq!(step(&mut opt, &w, &[0.0, 0.0], None), vec![1.0, 2.0]);
        // Without μ nothing pulls.
        let mut plain = build(r#"{"lr": 0.5}"#);
        let w = param(&[1.0]);
        step(&mut plain, &w, &[1.0], None);
        assert_eq!(step(&mut plain, &w, &[0.0], None), vec![0.5]);
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        let mut opt = build(r#"{"optimizer": "adam", "lr": 0.1}"#);
        let w = step(&mut opt, &param(&[0.0, 0.0]), &[3.0, -0.01], None);
        assert!(
            (w[0] + 0.1).abs() < 1e-6 && (w[1] - 0.1).abs() < 1e-5,
            "{w:?}"
        );
    }

    #[test]
    fn adamw_decays_the_weights_not_the_gradient() {
        // A zero gradient leaves Adam's step at 0; only the decoupled decay moves w.
        let mut opt = build(r#"{"optimizer": "adamw", "lr": 0.1, "weight_decay": 0.5}"#);
        assert_eq!(step(&mut opt, &param(&[2.0]), &[0.0], None), vec![1.9]);
        let mut l2 = build(r#"{"optimizer": "adam", "lr": 0.1, "weight_decay": 0.5}"#);
        let w = step(&mut l2, &param(&[2.0]), &[0.0], None);
        assert!(
            (w[0] - 1.9).abs() < 1e-6,
            "Adam's L2 term is normalized away: {w:?}"
        );
    }

    #[test]
    fn weight_decay_pulls_towards_zero() {
        let mut opt = build(r#"{"lr": 0.1, "weight_decay": 1.0}"#);
        let w = step(&mut opt, &param(&[2.0]), &[0.0], None);
        assert!((w[0] - 1.8).abs() < 1e-6);
    }

    #[test]
    fn schedules_and_gradient_clipping_apply() {
        let mut opt = build(
            r#"{"lr": 1.0, "lr_schedule": "step", "lr_step_size": 1, "lr_gamma": 0.5, "max_grad_norm": 1.0}"#,
        );
        let w = param(&[0.0, 0.0]);
        // The gradient (3, 4) has norm 5, clipped to (0.6, 0.8); lr 1 then 0.5.
        assert_eq!(step(&mut opt, &w, &[3.0, 4.0], None), vec![-0.6, -0.8]);
        assert_eq!(opt.learning_rate(), 0.5);
        let args = Args::parse(
            "optimizer_args",
            r#"{"lr_schedule": "linear"}"#,
            OPTIMIZER_ARGS,
        )
        .unwrap();
        assert!(
            Optimizer::from_args(&args)
                .unwrap_err()
                .message
                .contains("lr_schedule")
        );
    }

    #[test]
    fn bad_values_are_named() {
        let args = Args::parse(
            "optimizer_args",
            r#"{"optimizer": "rmsprop"}"#,
            OPTIMIZER_ARGS,
        )
        .unwrap();
        let err = Optimizer::from_args(&args).unwrap_err();
        assert!(
            err.message.contains("\"sgd\", \"adam\" or \"adamw\""),
            "{err}"
        );
        let args = Args::parse("optimizer_args", r#"{"lr": -1}"#, OPTIMIZER_ARGS).unwrap();
        assert!(
            Optimizer::from_args(&args)
                .unwrap_err()
                .message
                .contains("lr must be > 0")
        );
        let args = Args::parse("optimizer_args", r#"{"momentum": 1.5}"#, OPTIMIZER_ARGS).unwrap();
        assert!(
            Optimizer::from_args(&args)
                .unwrap_err()
                .message
                .contains("momentum")
        );
    }
}
