//! Optimizers: SGD (momentum, weight decay) and Adam, both honouring the
//! gradient correction Scaffold sends (grad ← grad − correction) and
//! FedProx's proximal term: with `fedprox_mu` = μ the objective gains
//! (μ/2)·‖w − w₀‖², w₀ the parameters at the first step (the global model
//! the node received), so μ·(w − w₀) is added to every gradient.
//!
//! State (momentum buffers, Adam moments, the step count) lives in the
//! optimizer and starts fresh in every training task, as in Fed-BioMed.

use crate::args::{ArgSpec, ArgType, Args};
use crate::error::{PlanResult, invalid_argument};

/// Arguments every SDK optimizer understands, with SGD at learning rate 0.01 by default.
pub const OPTIMIZER_ARGS: &[ArgSpec] = &optimizer_args("0.01");

/// The optimizer argument list with a plan-specific default learning rate.
pub const fn optimizer_args(default_lr: &'static str) -> [ArgSpec; 10] {
    [
        ArgSpec::optional("optimizer", ArgType::Text, "\"sgd\"", "\"sgd\" or \"adam\""),
        ArgSpec::optional("lr", ArgType::Number, default_lr, "learning rate"),
        ArgSpec::optional(
            "momentum",
            ArgType::Number,
            "0.0",
            "SGD momentum (PyTorch convention)",
        ),
        ArgSpec::optional(
            "weight_decay",
            ArgType::Number,
            "0.0",
            "L2 penalty added to the gradient",
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
    ]
}

/// Stochastic gradient descent with optional momentum and weight decay.
#[derive(Debug, Clone)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 disables it).
    pub momentum: f32,
    /// L2 penalty factor.
    pub weight_decay: f32,
    prox: Prox,
    velocity: Vec<Vec<f32>>,
    steps: u64,
}

/// Adam (Kingma & Ba), bias-corrected, with L2 weight decay added to the gradient.
#[derive(Debug, Clone)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// L2 penalty factor.
    pub weight_decay: f32,
    prox: Prox,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    beta1_power: f32,
    beta2_power: f32,
}

/// The optimizer a plan trains with.
#[derive(Debug, Clone)]
pub enum Optimizer {
    /// See [`Sgd`].
    Sgd(Sgd),
    /// See [`Adam`].
    Adam(Adam),
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
        let weight_decay = in_range(args, "weight_decay", 0.0, f32::INFINITY)?;
        let prox = Prox {
            mu: in_range(args, "fedprox_mu", 0.0, f32::INFINITY)?,
            anchor: Vec::new(),
        };
        match args.text("optimizer")?.to_ascii_lowercase().as_str() {
            "sgd" => Ok(Optimizer::Sgd(Sgd {
                lr,
                momentum: in_range(args, "momentum", 0.0, 1.0)?,
                weight_decay,
                prox,
                velocity: Vec::new(),
                steps: 0,
            })),
            "adam" => Ok(Optimizer::Adam(Adam {
                lr,
                beta1: in_range(args, "beta1", 0.0, 1.0)?,
                beta2: in_range(args, "beta2", 0.0, 1.0)?,
                eps: in_range(args, "eps", 0.0, f32::INFINITY)?,
                weight_decay,
                prox,
                m: Vec::new(),
                v: Vec::new(),
                beta1_power: 1.0,
                beta2_power: 1.0,
            })),
            other => Err(invalid_argument(format!(
                "optimizer_args.optimizer must be \"sgd\" or \"adam\", got \"{other}\""
            ))),
        }
    }

    /// The learning rate, reported with every step.
    pub fn learning_rate(&self) -> f32 {
        match self {
            Optimizer::Sgd(s) => s.lr,
            Optimizer::Adam(a) => a.lr,
        }
    }

    /// One update of every parameter from its gradient, after subtracting the
    /// matching `correction` tensor when one is set.
    pub fn step(&mut self, params: Vec<(&mut [f32], &[f32])>, correction: Option<&[Vec<f32>]>) {
        match self {
            Optimizer::Sgd(s) => s.step(params, correction),
            Optimizer::Adam(a) => a.step(params, correction),
        }
    }
}

/// FedProx's proximal term.
#[derive(Debug, Clone)]
struct Prox {
    mu: f32,
    /// The parameters at the first step.
    anchor: Vec<Vec<f32>>,
}

impl Prox {
    /// Remember the parameters on the first step (when μ > 0).
    fn anchor(&mut self, params: &[(&mut [f32], &[f32])]) {
        if self.mu != 0.0 && self.anchor.len() != params.len() {
            self.anchor = params.iter().map(|(p, _)| p.to_vec()).collect();
        }
    }

    /// μ·(w − w₀) for element `k` of parameter `i`.
    fn term(&self, i: usize, k: usize, w: f32) -> f32 {
        if self.mu == 0.0 {
            return 0.0;
        }
        self.mu * (w - self.anchor[i][k])
    }
}

/// Zeroed state buffers shaped like the parameters, made on the first step.
fn ensure_buffers(buffers: &mut Vec<Vec<f32>>, params: &[(&mut [f32], &[f32])]) {
    if buffers.len() != params.len() {
        *buffers = params.iter().map(|(p, _)| vec![0.0; p.len()]).collect();
    }
}

/// The gradient of parameter `i` minus its correction (written into
/// `scratch`), or the gradient itself when there is no correction.
fn corrected<'a>(
    grad: &'a [f32],
    correction: Option<&[Vec<f32>]>,
    i: usize,
    scratch: &'a mut Vec<f32>,
) -> &'a [f32] {
    let Some(c) = correction.and_then(|c| c.get(i)) else {
        return grad;
    };
    scratch.clear();
    scratch.extend(grad.iter().zip(c).map(|(g, c)| g - c));
    scratch
}

impl Sgd {
    fn step(&mut self, params: Vec<(&mut [f32], &[f32])>, correction: Option<&[Vec<f32>]>) {
        ensure_buffers(&mut self.velocity, &params);
        self.prox.anchor(&params);
        let first = self.steps == 0;
        self.steps += 1;
        let mut scratch = Vec::new();
        for (i, (p, g)) in params.into_iter().enumerate() {
            let g = corrected(g, correction, i, &mut scratch);
            for (k, ((w, gi), v)) in p
                .iter_mut()
                .zip(g)
                .zip(self.velocity[i].iter_mut())
                .enumerate()
            {
                let mut d = *gi + self.weight_decay * *w + self.prox.term(i, k, *w);
                if self.momentum != 0.0 {
                    // PyTorch's convention: the first step seeds the buffer with d.
                    *v = if first { d } else { self.momentum * *v + d };
                    d = *v;
                }
                *w -= self.lr * d;
            }
        }
    }
}

impl Adam {
    fn step(&mut self, params: Vec<(&mut [f32], &[f32])>, correction: Option<&[Vec<f32>]>) {
        ensure_buffers(&mut self.m, &params);
        ensure_buffers(&mut self.v, &params);
        self.prox.anchor(&params);
        // Powers by repeated multiplication: exact to reproduce anywhere, unlike powf.
        self.beta1_power *= self.beta1;
        self.beta2_power *= self.beta2;
        let c1 = 1.0 - self.beta1_power;
        let c2 = 1.0 - self.beta2_power;
        let mut scratch = Vec::new();
        for (i, (p, g)) in params.into_iter().enumerate() {
            let g = corrected(g, correction, i, &mut scratch);
            for (k, (((w, gi), m), v)) in p
                .iter_mut()
                .zip(g)
                .zip(self.m[i].iter_mut())
                .zip(self.v[i].iter_mut())
                .enumerate()
            {
                let d = *gi + self.weight_decay * *w + self.prox.term(i, k, *w);
                *m = self.beta1 * *m + (1.0 - self.beta1) * d;
                *v = self.beta2 * *v + (1.0 - self.beta2) * d * d;
                *w -= self.lr * (*m / c1) / ((*v / c2).sqrt() + self.eps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str) -> Optimizer {
        Optimizer::from_args(&Args::parse("optimizer_args", json, OPTIMIZER_ARGS).unwrap()).unwrap()
    }

    #[test]
    fn sgd_with_momentum_and_correction() {
        let mut opt = build(r#"{"lr": 0.5, "momentum": 0.5}"#);
        let mut w = vec![1.0f32, 2.0];
        let g = vec![1.0f32, -1.0];
        let correction = vec![vec![0.5f32, 0.5]];
        opt.step(vec![(&mut w, &g)], Some(&correction));
        // corrected gradient (0.5, -1.5); first momentum step uses it as is.
        assert_eq!(w, vec![0.75, 2.75]);
        opt.step(vec![(&mut w, &g)], Some(&correction));
        // velocity = 0.5 * (0.5, -1.5) + (0.5, -1.5) = (0.75, -2.25)
        assert_eq!(w, vec![0.375, 3.875]);
    }

    #[test]
    fn fedprox_pulls_back_towards_the_first_parameters() {
        let mut opt = build(r#"{"lr": 0.5, "fedprox_mu": 2.0}"#);
        let mut w = vec![1.0f32, 2.0];
        // First step: w0 = (1, 2) is the anchor, the proximal term is 0.
        opt.step(vec![(&mut w, &[1.0, 1.0])], None);
        assert_eq!(w, vec![0.5, 1.5]);
        // Zero gradient: d = μ·(w − w0) = 2·(−0.5, −0.5) = (−1, −1); w += 0.5.
        opt.step(vec![(&mut w, &[0.0, 0.0])], None);
        assert_eq!(w, vec![1.0, 2.0]);
        // Without μ nothing pulls.
        let mut plain = build(r#"{"lr": 0.5}"#);
        let mut w = vec![1.0f32];
        plain.step(vec![(&mut w, &[1.0])], None);
        plain.step(vec![(&mut w, &[0.0])], None);
        assert_eq!(w, vec![0.5]);
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        let mut opt = build(r#"{"optimizer": "adam", "lr": 0.1}"#);
        let mut w = vec![0.0f32, 0.0];
        let g = vec![3.0f32, -0.01];
        opt.step(vec![(&mut w, &g)], None);
        assert!(
            (w[0] + 0.1).abs() < 1e-6 && (w[1] - 0.1).abs() < 1e-5,
            "{w:?}"
        );
    }

    #[test]
    fn weight_decay_pulls_towards_zero() {
        let mut opt = build(r#"{"lr": 0.1, "weight_decay": 1.0}"#);
        let mut w = vec![2.0f32];
        opt.step(vec![(&mut w, &[0.0])], None);
        assert!((w[0] - 1.8).abs() < 1e-6);
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
        assert!(err.message.contains("\"sgd\" or \"adam\""), "{err}");
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
