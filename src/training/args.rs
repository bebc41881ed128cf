//! Training arguments: what the researcher sets for local training, with
//! Fed-BioMed's names and defaults. Unknown keys and wrong types are refused
//! with a message that lists what is allowed.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TrainingError;
use super::privacy::{DpArgs, DpKind};
use super::scores::{Average, TestMetric};
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
    /// Score the trained parameters on the node's held-out rows.
    pub test_on_local_updates: bool,
    /// Score the received global parameters on the node's held-out rows
    /// before training; also asks `run` for a final validation-only round.
    pub test_on_global_updates: bool,
    /// Validation metric name (case-insensitive): ACCURACY (the default for
    /// classification), F1_SCORE, PRECISION, RECALL, MEAN_SQUARE_ERROR (the
    /// default for regression), MEAN_ABSOLUTE_ERROR, EXPLAINED_VARIANCE.
    pub test_metric: Option<String>,
    /// Arguments of the validation metric: `average` (binary, macro,
    /// weighted, micro) for F1_SCORE, PRECISION and RECALL.
    pub test_metric_args: Map<String, Value>,
    /// Differential privacy on the nodes (see `privacy`).
    pub dp_args: Option<DpArgs>,
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

    /// Refuse values out of range and combinations that cannot work, naming the key.
    pub fn check(&self) -> Result<(), TrainingError> {
        if (self.test_on_local_updates || self.test_on_global_updates) && self.test_ratio == 0.0 {
            return Err(TrainingError::Args(
                "test_on_local_updates and test_on_global_updates score held-out rows: set test_ratio above 0 (e.g. 0.2)".into(),
            ));
        }
        self.validation()?;
        if let Some(dp) = &self.dp_args {
            dp.check()?;
            if self.test_on_local_updates || self.test_on_global_updates {
                return Err(TrainingError::Args(
                    "with dp_args the nodes run in privacy mode, where validation scores, which are not noised, do not leave them: drop test_on_local_updates and test_on_global_updates, or dp_args".into(),
                ));
            }
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

    /// The validation metric and its averaging, parsed from `test_metric`
    /// and `test_metric_args`; `None` metric means the task's default.
    pub fn validation(&self) -> Result<(Option<TestMetric>, Option<Average>), TrainingError> {
        let metric = self
            .test_metric
            .as_deref()
            .map(TestMetric::parse)
            .transpose()
            .map_err(TrainingError::Args)?;
        let mut average = None;
        for (key, value) in &self.test_metric_args {
            match key.as_str() {
                "average" => {
                    average = Some(serde_json::from_value::<Average>(value.clone()).map_err(
                        |_| {
                            TrainingError::Args(format!(
                                "test_metric_args.average must be \"binary\", \"macro\", \"weighted\" or \"micro\", not {value}"
                            ))
                        },
                    )?);
                }
                other => {
                    return Err(TrainingError::Args(format!(
                        "unknown test_metric_args key `{other}`; accepted: average"
                    )));
                }
            }
        }
        if average.is_some()
            && !matches!(
                metric,
                Some(TestMetric::F1Score | TestMetric::Precision | TestMetric::Recall)
            )
        {
            return Err(TrainingError::Args(
                "test_metric_args.average applies to F1_SCORE, PRECISION and RECALL only".into(),
            ));
        }
        Ok((metric, average))
    }

    /// The arguments of the plan's `init-optimizer`: `optimizer_args`, plus
    /// `fedprox_mu` when set and `dp_clip` / `dp_sigma` for local DP.
    pub fn plan_optimizer_args(&self) -> Map<String, Value> {
        let mut args = self.optimizer_args.clone();
        if let Some(mu) = self.fedprox_mu {
            args.insert("fedprox_mu".into(), Value::from(mu));
        }
        if let Some(dp) = self.dp_args.as_ref().filter(|d| d.kind == DpKind::Local) {
            args.insert("dp_clip".into(), Value::from(dp.clip));
            args.insert("dp_sigma".into(), Value::from(dp.sigma));
        }
        args
    }

    /// The round number that seeds randomness: the round itself with
    /// `seed_per_round` or `dp_args` (noise must be fresh every round), else
    /// 0 so every round repeats the same stream, as in Fed-BioMed.
    pub fn seed_round(&self, round: u32) -> u32 {
        if self.seed_per_round || self.dp_args.is_some() {
            round
        } else {
            0
        }
    }

    /// How many updates to run; a warning when `num_updates` overrides `epochs`
    /// or makes `batch_maxnum` irrelevant.
    pub fn budget(&self) -> Result<(Budget, Option<String>), TrainingError> {
        if self.num_updates == Some(0) || (self.num_updates.is_none() && self.epochs == Some(0)) {
            return Err(TrainingError::Args(
                "num_updates and epochs must be at least 1".to_string(),
            ));
        }
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
        let zero = TrainingArgs::from_json(r#"{"num_updates": 0}"#)
            .unwrap()
            .check()
            .unwrap_err()
            .to_string();
        assert!(zero.contains("at least 1"), "{zero}");
    }

    #[test]
    fn validation_settings_are_checked() {
        let args = TrainingArgs::from_json(
            r#"{"num_updates": 1, "test_ratio": 0.2, "test_on_local_updates": true,
                "test_metric": "f1_score", "test_metric_args": {"average": "macro"}}"#,
        )
        .unwrap();
        args.check().unwrap();
        assert_eq!(
            args.validation().unwrap(),
            (Some(TestMetric::F1Score), Some(Average::Macro))
        );
        let refused = |json: &str| {
            TrainingArgs::from_json(json)
                .unwrap()
                .check()
                .unwrap_err()
                .to_string()
        };
        let err = refused(r#"{"num_updates": 1, "test_on_global_updates": true}"#);
        assert!(err.contains("set test_ratio above 0"), "{err}");
        let err = refused(r#"{"num_updates": 1, "test_metric": "ROC"}"#);
        assert!(err.contains("unknown test_metric `ROC`"), "{err}");
        let err = refused(
            r#"{"num_updates": 1, "test_metric": "RECALL", "test_metric_args": {"average": "samples"}}"#,
        );
        assert!(err.contains("must be \"binary\""), "{err}");
        let err = refused(r#"{"num_updates": 1, "test_metric_args": {"normalize": true}}"#);
        assert!(
            err.contains("unknown test_metric_args key `normalize`"),
            "{err}"
        );
        let err = refused(
            r#"{"num_updates": 1, "test_metric": "ACCURACY", "test_metric_args": {"average": "macro"}}"#,
        );
        assert!(err.contains("F1_SCORE, PRECISION and RECALL only"), "{err}");
    }

    #[test]
    fn dp_args_reach_the_plan_and_refresh_the_seed() {
        let args = TrainingArgs::from_json(
            r#"{"num_updates": 1, "dp_args": {"type": "local", "sigma": 1.0, "clip": 0.5}}"#,
        )
        .unwrap();
        args.check().unwrap();
        let opt = args.plan_optimizer_args();
        assert_eq!(opt["dp_clip"], 0.5);
        assert_eq!(opt["dp_sigma"], 1.0);
        assert_eq!(args.seed_round(3), 3);
        let central = TrainingArgs::from_json(
            r#"{"num_updates": 1, "dp_args": {"sigma": 1.0, "clip": 0.5}}"#,
        )
        .unwrap();
        assert!(!central.plan_optimizer_args().contains_key("dp_clip"));
        let err =
            TrainingArgs::from_json(r#"{"dp_args": {"type": "both", "sigma": 1.0, "clip": 1.0}}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown variant `both`"), "{err}");
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
