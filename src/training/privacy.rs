//! Differential privacy on a node (`training_args.dp_args`).
//!
//! Two mechanisms, as in Fed-BioMed, with the noise drawn from a stream the
//! researcher cannot replay:
//!
//! - **local**: DP-SGD inside the plan. Every sample's gradient is clipped to
//!   norm `clip`, the clipped gradients are summed, Gaussian noise of standard
//!   deviation `sigma·clip` is added to the sum and the result divided by the
//!   batch size (the plan SDK does this; the node checks the plan declares it).
//! - **central**: the node clips its whole update `w_local − w_global` to norm
//!   `clip` and adds N(0, (sigma·clip)²) to every parameter it sends. Fed-BioMed
//!   clips per sample and noises the parameters; clipping the update (as in
//!   DP-FedAvg) is what bounds the sensitivity of what leaves the node.
//!
//! Why the noise needs a secret: the researcher chooses `random_seed`, so noise
//! drawn from a stream seeded by it could be regenerated and subtracted. When
//! `dp_args` is set, the node seeds the plan's stream (local) and its own
//! noise (central) from its private noise key as well
//! ([`crate::sandbox::random::StreamSeed::for_private_plan`]); runs on the
//! same node stay reproducible, and noise is fresh in every round.
//!
//! What the node reports ([`crate::wire::PrivacySpent`]) are the inputs of an
//! RDP accountant: for local DP, `updates` sampled Gaussian mechanisms with
//! noise multiplier `sigma` and sampling rate `batch_size / training rows`
//! (the usual approximation of shuffled batches by Poisson sampling); for
//! central DP, one Gaussian mechanism per round whose sensitivity is `2·clip`
//! (one changed row can move a clipped update anywhere in the ball of radius
//! `clip`), hence noise multiplier `sigma / 2` at sampling rate 1.

use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::TrainingError;
use crate::sandbox::types::Tensor;
use crate::wire::PrivacySpent;

/// Which mechanism `dp_args.type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpKind {
    /// DP-SGD in the plan: per-sample clipping and noise at every step.
    Local,
    /// Noise on the node's clipped update, once per round (Fed-BioMed's default).
    #[default]
    Central,
}

/// `training_args.dp_args`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpArgs {
    /// `local` or `central` (the default).
    #[serde(rename = "type", default)]
    pub kind: DpKind,
    /// Noise multiplier: noise standard deviation in units of `clip`.
    pub sigma: f64,
    /// Clipping bound: of each sample's gradient (local) or of the update (central).
    pub clip: f64,
    /// The δ for which ε is reported; 1e-5 unless given.
    #[serde(default = "default_delta")]
    pub delta: f64,
}

fn default_delta() -> f64 {
    1e-5
}

impl DpArgs {
    /// Refuse values that are not a usable mechanism, naming the key.
    pub fn check(&self) -> Result<(), TrainingError> {
        let bad = |key: &str, rule: &str, value: f64| {
            Err(TrainingError::Args(format!(
                "dp_args.{key} must be {rule}, not {value}"
            )))
        };
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return bad("sigma", "a number > 0", self.sigma);
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return bad("clip", "a number > 0", self.clip);
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return bad("delta", "in (0, 1)", self.delta);
        }
        Ok(())
    }

    /// What one round with `updates` steps over `training_rows` rows in
    /// batches of `batch_size` spends, as accountant inputs.
    pub fn spent(&self, updates: usize, batch_size: usize, training_rows: usize) -> PrivacySpent {
        match self.kind {
            DpKind::Local => PrivacySpent {
                mode: "local".into(),
                noise_multiplier: self.sigma,
                sampling_rate: (batch_size as f64 / training_rows.max(1) as f64).min(1.0),
                steps: updates as u64,
            },
            DpKind::Central => PrivacySpent {
                mode: "central".into(),
                noise_multiplier: self.sigma / 2.0,
                sampling_rate: 1.0,
                steps: 1,
            },
        }
    }
}

/// Central DP: clip `local − global` to norm `clip` and add Gaussian noise of
/// standard deviation `sigma·clip` to every value of `local`, in place.
/// Returns the update's norm before clipping.
pub fn privatize_update(
    global: &[Tensor],
    local: &mut [Tensor],
    args: &DpArgs,
    rng: &mut ChaCha8Rng,
) -> Result<f64, TrainingError> {
    // Pair tensors by name: a parameter file need not list them in model order.
    let pairs: Vec<(&Tensor, usize)> = local
        .iter()
        .enumerate()
        .map(|(i, l)| {
            global
                .iter()
                .find(|g| g.name == l.name && g.data.len() == l.data.len())
                .map(|g| (g, i))
        })
        .collect::<Option<_>>()
        .filter(|p: &Vec<_>| p.len() == global.len())
        .ok_or_else(|| {
            TrainingError::Parameters(
                "the trained parameters do not match the received ones, so the update cannot be clipped"
                    .into(),
            )
        })?;
    let norm = pairs
        .iter()
        .flat_map(|(g, i)| g.data.iter().zip(&local[*i].data))
        .map(|(g, l)| (f64::from(*l) - f64::from(*g)).powi(2))
        .sum::<f64>()
        .sqrt();
    let scale = if norm > args.clip {
        args.clip / norm
    } else {
        1.0
    };
    let noise = Normal::new(0.0, args.sigma * args.clip)
        .map_err(|e| TrainingError::Args(format!("dp_args: {e}")))?;
    for (g, i) in pairs {
        for (gv, lv) in g.data.iter().zip(local[i].data.iter_mut()) {
            let update = (f64::from(*lv) - f64::from(*gv)) * scale;
            *lv = (f64::from(*gv) + update + noise.sample(rng)) as f32;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng;

    use super::*;

    fn tensor(name: &str, data: Vec<f32>) -> Tensor {
        Tensor {
            name: name.into(),
            shape: vec![data.len() as u32],
            data,
        }
    }

    fn dp(sigma: f64, clip: f64) -> DpArgs {
        DpArgs {
            kind: DpKind::Central,
            sigma,
            clip,
            delta: 1e-5,
        }
    }

    #[test]
    fn arguments_are_checked_by_name() {
        let parsed: DpArgs = serde_json::from_str(r#"{"sigma": 1.0, "clip": 0.5}"#).unwrap();
        assert_eq!(parsed.kind, DpKind::Central);
        assert_eq!(parsed.delta, 1e-5);
        let err = serde_json::from_str::<DpArgs>(r#"{"type": "global", "sigma": 1, "clip": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `global`"), "{err}");
        let err = serde_json::from_str::<DpArgs>(r#"{"type": "local", "clip": 1.0}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `sigma`"), "{err}");
        let err = serde_json::from_str::<DpArgs>(r#"{"sigma": "1", "clip": 1.0}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid type"), "{err}");
        let err = dp(1.0, -1.0).check().unwrap_err().to_string();
        assert!(err.contains("dp_args.clip must be a number > 0"), "{err}");
        let err = dp(0.0, 1.0).check().unwrap_err().to_string();
        assert!(err.contains("dp_args.sigma"), "{err}");
    }

    #[test]
    fn a_large_update_is_clipped_to_the_bound() {
        let global = vec![tensor("w", vec![1.0, 1.0]), tensor("b", vec![0.0])];
        let mut local = vec![tensor("w", vec![4.0, 5.0]), tensor("b", vec![12.0])];
        // Tiny noise: the clipped update must have norm ≈ clip = 2.
        let mut rng = ChaCha8Rng::from_seed([3; 32]);
        let norm = privatize_update(&global, &mut local, &dp(1e-9, 2.0), &mut rng).unwrap();
        assert!(
            (norm - 13.0).abs() < 1e-9,
            "3-4-12 update has norm 13, got {norm}"
        );
        let clipped: f64 = global
            .iter()
            .zip(&local)
            .flat_map(|(g, l)| g.data.iter().zip(&l.data))
            .map(|(g, l)| f64::from(l - g).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((clipped - 2.0).abs() < 1e-5, "{clipped}");
        // Direction kept: (3, 4, 12)/13 · 2.
        assert!((local[0].data[0] - (1.0 + 6.0 / 13.0)).abs() < 1e-5);
    }

    #[test]
    fn noise_has_the_promised_spread() {
        let global = vec![tensor("w", vec![0.0; 20_000])];
        let mut local = global.clone();
        let mut rng = ChaCha8Rng::from_seed([5; 32]);
        privatize_update(&global, &mut local, &dp(1.5, 0.2), &mut rng).unwrap();
        let values = &local[0].data;
        let mean = values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len() as f64;
        let std = (values
            .iter()
            .map(|v| (f64::from(*v) - mean).powi(2))
            .sum::<f64>()
            / values.len() as f64)
            .sqrt();
        assert!(mean.abs() < 0.01, "{mean}");
        assert!(
            (std - 0.3).abs() < 0.01,
            "std {std}, expected sigma·clip = 0.3"
        );
    }

    #[test]
    fn tensors_pair_by_name_in_any_order() {
        let global = vec![tensor("b", vec![0.0]), tensor("w", vec![1.0, 1.0])];
        let mut local = vec![tensor("w", vec![1.0, 4.0]), tensor("b", vec![4.0])];
        let mut rng = ChaCha8Rng::from_seed([1; 32]);
        let norm = privatize_update(&global, &mut local, &dp(1e-9, 10.0), &mut rng).unwrap();
        assert!((norm - 5.0).abs() < 1e-9, "{norm}");
    }

    #[test]
    fn mismatched_parameters_are_refused() {
        let global = vec![tensor("w", vec![0.0; 2])];
        let mut local = vec![tensor("v", vec![0.0; 2])];
        let mut rng = ChaCha8Rng::from_seed([0; 32]);
        assert!(privatize_update(&global, &mut local, &dp(1.0, 1.0), &mut rng).is_err());
    }

    #[test]
    fn spending_per_mechanism() {
        let local = DpArgs {
            kind: DpKind::Local,
            ..dp(1.1, 1.0)
        };
        let s = local.spent(50, 32, 320);
        assert_eq!(
            (s.noise_multiplier, s.sampling_rate, s.steps),
            (1.1, 0.1, 50)
        );
        let s = dp(1.0, 1.0).spent(50, 32, 320);
        assert_eq!(
            (s.noise_multiplier, s.sampling_rate, s.steps),
            (0.5, 1.0, 1)
        );
    }
}
