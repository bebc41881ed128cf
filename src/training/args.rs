//! Training arguments: what the researcher sets for local training, with
//! Fed-BioMed's names and defaults. Unknown keys and wrong types are refused
//! with a message that lists what is allowed.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TrainingError;
use crate::dataset::batches::Budget;

/// Arguments of the data loader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderArgs {
    /// Samples per mini-batch.
    pub batch_size: usize,
    /// Reshuffle the training rows every epoch.
    pub shuffle: bool,
    /// Drop the last, smaller batch of each epoch.
    pub drop_last: bool,
}

impl Default for LoaderArgs {
    fn default() -> Self {
        LoaderArgs {
            batch_size: 32,
            shuffle: true,
            drop_last: false,
        }
    }
}

/// Arguments of one round of local training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingArgs {
    /// Passed to the plan's `init-optimizer` as a JSON object.
    pub optimizer_args: Map<String, Value>,
    /// Batching.
    pub loader_args: LoaderArgs,
    /// Passes over the data; used when `num_updates` is not set.
    pub epochs: Option<usize>,
    /// Optimizer updates; wins over `epochs`.
    pub num_updates: Option<usize>,
    /// With `epochs`, cap on batches per epoch.
    pub batch_maxnum: Option<usize>,
    /// Stop after the first batch.
    pub dry_run: bool,
    /// Seed of the plan's randomness and of the loader.
    pub random_seed: Option<u64>,
    /// Fraction of rows held out for validation, in [0, 1).
    pub test_ratio: f64,
    /// Report the loss every this many updates.
    pub log_interval: usize,
    /// Derive each round's randomness (shuffling, plan randomness) from
    /// `random_seed` and the round, rather than repeating the same stream
    /// every round as Fed-BioMed does.
    pub seed_per_round: bool,
    /// Validate the model after local training (reserved: refused until nodes implement it).
    pub test_on_local_updates: bool,
    /// Validate the received global model before training (reserved: refused until nodes implement it).
    pub test_on_global_updates: bool,
    /// Validation metric name (reserved).
    pub test_metric: Option<String>,
    /// Arguments of the validation metric (reserved).
    pub test_metric_args: Map<String, Value>,
    /// Differential privacy settings (reserved: refused until nodes implement it).
    pub dp_args: Option<Value>,
    /// FedProx: adds (μ/2)·‖w − w_global‖² to the local objective; passed to
    /// the plan's optimizer as `optimizer_args.fedprox_mu`.
    pub fedprox_mu: Option<f64>,
}

impl Default for TrainingArgs {
    fn default() -> Self {
        TrainingArgs {
            optimizer_args: Map::new(),
            loader_args: LoaderArgs::default(),
            epochs: None,
            num_updates: None,
            batch_maxnum: None,
            dry_run: false,
            random_seed: None,
            test_ratio: 0.0,
            log_interval: 10,
            seed_per_round: false,
            test_on_local_updates: false,
            test_on_global_updates: false,
            test_metric: None,
            test_metric_args: Map::new(),
            dp_args: None,
            fedprox_mu: None,
        }
    }
}

impl TrainingArgs {
    /// Parse from a JSON object.
    pub fn from_json(text: &str) -> Result<Self, TrainingError> {
        // serde's message names the bad key or type and lists the accepted keys.
        serde_json::from_str(text).map_err(|e| TrainingError::Args(e.to_string()))
    }

    /// Refuse settings this version accepts in the scheme but cannot run yet,
    /// and values out of range, naming the key.
    pub fn check(&self) -> Result<(), TrainingError> {
        let reserved = [
            ("test_on_local_updates", self.test_on_local_updates),
            ("test_on_global_updates", self.test_on_global_updates),
            ("test_metric", self.test_metric.is_some()),
            ("test_metric_args", !self.test_metric_args.is_empty()),
            ("dp_args", self.dp_args.is_some()),
        ];
        if let Some((key, _)) = reserved.iter().find(|(_, set)| *set) {
            return Err(TrainingError::Args(format!(
                "`{key}` is not supported by this version of fedwasm yet; remove it from training_args"
            )));
        }
        if let Some(mu) = self.fedprox_mu
            && !(mu.is_finite() && mu >= 0.0)
        {
            return Err(TrainingError::Args(format!(
                "fedprox_mu must be a number ≥ 0, not {mu}"
            )));
        }
        if !(0.0..1.0).contains(&self.test_ratio) {
            return Err(TrainingError::Args(format!(
                "test_ratio must be in [0, 1), not {}",
                self.test_ratio
            )));
        }
        if self.loader_args.batch_size == 0 {
            return Err(TrainingError::Args(
                "loader_args.batch_size must be at least 1".into(),
            ));
        }
        self.budget().map(|_| ())
    }

    /// The arguments of the plan's `init-optimizer`: `optimizer_args`, plus
    /// `fedprox_mu` when set.
    pub fn plan_optimizer_args(&self) -> Map<String, Value> {
        let mut args = self.optimizer_args.clone();
        if let Some(mu) = self.fedprox_mu {
            args.insert("fedprox_mu".into(), Value::from(mu));
        }
        args
    }

    /// The round number that seeds randomness: the round itself with
    /// `seed_per_round`, else 0 so every round repeats the same stream.
    pub fn seed_round(&self, round: u32) -> u32 {
        if self.seed_per_round { round } else { 0 }
    }

    /// How many updates to run; a warning when `num_updates` overrides `epochs`
    /// or makes `batch_maxnum` irrelevant.
    pub fn budget(&self) -> Result<(Budget, Option<String>), TrainingError> {
        match (self.num_updates, self.epochs) {
            (Some(u), epochs) => {
                let warning = match (epochs, self.batch_maxnum) {
                    (Some(_), _) => {
                        Some("both epochs and num_updates are set: num_updates wins".to_string())
                    }
                    (None, Some(_)) => {
                        Some("batch_maxnum is ignored when num_updates is set".to_string())
                    }
                    _ => None,
                };
                Ok((Budget::Updates(u), warning))
            }
            (None, Some(e)) => Ok((
                Budget::Epochs {
                    epochs: e,
                    batch_maxnum: self.batch_maxnum,
                },
                None,
            )),
            (None, None) => Err(TrainingError::Args(
                "training_args must set num_updates or epochs".to_string(),
            )),
        }
    }

    /// The seed used when none is given: fixed, so runs are reproducible by default.
    pub fn seed(&self) -> u64 {
        self.random_seed.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_budget() {
        let args = TrainingArgs::from_json(r#"{"num_updates": 5, "epochs": 2}"#).unwrap();
        assert_eq!(args.loader_args.batch_size, 32);
        let (budget, warning) = args.budget().unwrap();
        assert_eq!(budget, Budget::Updates(5));
        assert!(warning.unwrap().contains("num_updates wins"));
        let none = TrainingArgs::from_json("{}")
            .unwrap()
            .budget()
            .unwrap_err()
            .to_string();
        assert!(none.contains("num_updates or epochs"), "{none}");
    }

    #[test]
    fn unknown_and_mistyped_keys_are_refused() {
        let err = TrainingArgs::from_json(r#"{"num_update": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `num_update`"), "{err}");
        let err = TrainingArgs::from_json(r#"{"num_updates": "5"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid type"), "{err}");
        let err = TrainingArgs::from_json(r#"{"loader_args": {"batchsize": 5}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `batchsize`"), "{err}");
    }
}
