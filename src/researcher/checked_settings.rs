//! Settings checked once: [`ExperimentSettings::check`] resolves every name
//! of the TOML file (`aggregator = "scaffold"`,
//! `node_selection_strategy = "sampling"`) to a typed config, checks every
//! number, and returns a [`CheckedSettings`] that an experiment is built
//! from without checking anything again. A library user can skip the names
//! and build the typed configs directly; `.init()` makes the runtime object.

use std::time::Duration;

use super::ExperimentError;
use super::aggregators::{
    Aggregator, ClippedFedAvg, CoordinateRule, CoordinateWise, FedAvg, Scaffold,
};
use super::settings::{ExperimentSettings, RepositorySetting};
use super::strategy::{DefaultStrategy, FailurePolicy, SamplingStrategy, Strategy};
use crate::training::TrainingArgs;

/// An aggregator with its arguments (`aggregator`, `server_lr`,
/// `trim_fraction`, `clip_norm` in settings).
#[derive(Debug, Clone, PartialEq)]
pub enum AggregatorConfig {
    /// `"fedavg"`: the sample-weighted mean of the nodes' parameters.
    FedAvg,
    /// `"scaffold"`: control variates corrected local steps.
    Scaffold {
        /// The server learning rate, positive.
        server_lr: f32,
    },
    /// `"median"` or `"trimmed_mean"`: a robust statistic of each coordinate.
    Coordinate(CoordinateRule),
    /// `"clipped_fedavg"`: FedAvg of updates clipped to a norm bound.
    Clipped {
        /// The bound; `None` for each round's median update norm.
        clip_norm: Option<f32>,
    },
}

/// Every aggregator name, for error messages.
const AGGREGATORS: &str = "fedavg, scaffold, median, trimmed_mean, clipped_fedavg";

impl AggregatorConfig {
    /// The aggregator the settings name, with its arguments.
    pub fn from_settings(settings: &ExperimentSettings) -> Result<Self, ExperimentError> {
        let config = match settings.aggregator.as_str() {
            "median" => AggregatorConfig::Coordinate(CoordinateRule::Median),
            "trimmed_mean" => AggregatorConfig::Coordinate(CoordinateRule::TrimmedMean {
                fraction: settings.trim_fraction,
            }),
            "clipped_fedavg" => AggregatorConfig::Clipped {
                clip_norm: settings.clip_norm,
            },
            name => return AggregatorConfig::from_name(name, settings.server_lr),
        };
        config.init()?;
        Ok(config)
    }

    /// The aggregator `name` with its default arguments, and `server_lr`
    /// for Scaffold.
    pub fn from_name(name: &str, server_lr: f32) -> Result<Self, ExperimentError> {
        let config = match name {
            "fedavg" => AggregatorConfig::FedAvg,
            "median" | "trimmed_mean" | "clipped_fedavg" => {
                return AggregatorConfig::from_settings(&ExperimentSettings {
                    aggregator: name.into(),
                    ..ExperimentSettings::default()
                });
            }
            "scaffold" if server_lr.is_finite() && server_lr > 0.0 => {
                AggregatorConfig::Scaffold { server_lr }
            }
            "scaffold" => {
                return Err(ExperimentError::Argument(format!(
                    "server_lr must be a positive number, not {server_lr}"
                )));
            }
            other => {
                return Err(ExperimentError::Argument(format!(
                    "unknown aggregator `{other}`; available: {AGGREGATORS}"
                )));
            }
        };
        config.init()?;
        Ok(config)
    }

    /// Its name in settings, history and breakpoints.
    pub fn name(&self) -> &'static str {
        match self {
            AggregatorConfig::FedAvg => "fedavg",
            AggregatorConfig::Scaffold { .. } => "scaffold",
            AggregatorConfig::Coordinate(rule) => rule.name(),
            AggregatorConfig::Clipped { .. } => "clipped_fedavg",
        }
    }

    /// A fresh aggregator.
    pub fn init(&self) -> Result<Box<dyn Aggregator>, ExperimentError> {
        Ok(match *self {
            AggregatorConfig::FedAvg => Box::new(FedAvg::new()),
            AggregatorConfig::Scaffold { server_lr } => Box::new(Scaffold::new(server_lr)?),
            AggregatorConfig::Coordinate(rule) => Box::new(
                CoordinateWise::new(rule).map_err(|e| ExperimentError::Argument(e.to_string()))?,
            ),
            AggregatorConfig::Clipped { clip_norm } => Box::new(
                ClippedFedAvg::new(clip_norm)
                    .map_err(|e| ExperimentError::Argument(e.to_string()))?,
            ),
        })
    }
}

/// Which nodes a round trains (`node_selection_strategy` in settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NodeSelection {
    /// `"default"`: every node of the training data.
    All,
    /// `"sampling"`: a seeded fraction of them (`sampling_fraction`).
    Sampling {
        /// In (0, 1].
        fraction: f64,
    },
}

/// The node selection strategy with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyConfig {
    /// Which nodes train.
    pub selection: NodeSelection,
    /// Fewest nodes a round samples and (with `Discard`) aggregates; ≥ 1.
    pub min_nodes: usize,
    /// What a failed node does to the round.
    pub failure_policy: FailurePolicy,
}

impl StrategyConfig {
    /// The strategy the settings describe.
    pub fn from_settings(settings: &ExperimentSettings) -> Result<Self, ExperimentError> {
        let selection = match settings.node_selection_strategy.as_str() {
            "default" => NodeSelection::All,
            "sampling" => NodeSelection::Sampling {
                fraction: settings.sampling_fraction,
            },
            other => {
                return Err(ExperimentError::Argument(format!(
                    "unknown node_selection_strategy `{other}`; available: default, sampling"
                )));
            }
        };
        let config = StrategyConfig {
            selection,
            min_nodes: settings.min_nodes,
            failure_policy: settings.failure_policy,
        };
        config.init(0)?;
        Ok(config)
    }

    /// Its name in settings, history and breakpoints.
    pub fn name(&self) -> &'static str {
        match self.selection {
            NodeSelection::All => "default",
            NodeSelection::Sampling { .. } => "sampling",
        }
    }

    /// A fresh strategy; sampling draws from `seed`.
    pub fn init(&self, seed: u64) -> Result<Box<dyn Strategy>, ExperimentError> {
        if self.min_nodes == 0 {
            return Err(ExperimentError::Argument(
                "min_nodes must be at least 1".into(),
            ));
        }
        Ok(match self.selection {
            NodeSelection::All => Box::new(DefaultStrategy {
                failure_policy: self.failure_policy,
                min_nodes: self.min_nodes,
            }),
            NodeSelection::Sampling { fraction } => {
                let strategy = SamplingStrategy {
                    fraction,
                    min_nodes: self.min_nodes,
                    seed,
                    failure_policy: self.failure_policy,
                };
                strategy.check()?;
                Box::new(strategy)
            }
        })
    }
}

/// `value` seconds for the setting `name`: positive and finite.
fn seconds(value: f64, name: &str) -> Result<Duration, ExperimentError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ExperimentError::Argument(format!(
                "{name} must be a positive number of seconds, not {value}"
            ))
        })
}

/// What `aggregator` says of `args`: an error, or warnings to give.
pub(crate) fn check_aggregator(
    aggregator: &dyn Aggregator,
    args: &TrainingArgs,
) -> Result<Vec<String>, ExperimentError> {
    aggregator
        .check_training_args(args)
        .map_err(ExperimentError::Argument)
}

/// Experiment settings in which every name is resolved and every number
/// checked; made by [`ExperimentSettings::check`].
#[derive(Debug, Clone)]
pub struct CheckedSettings {
    settings: ExperimentSettings,
    aggregator: AggregatorConfig,
    strategy: StrategyConfig,
    round_deadline: Duration,
    search_wait: Duration,
    warnings: Vec<String>,
}

impl CheckedSettings {
    /// The settings as given.
    pub fn settings(&self) -> &ExperimentSettings {
        &self.settings
    }

    /// The aggregator.
    pub fn aggregator(&self) -> &AggregatorConfig {
        &self.aggregator
    }

    /// The node selection strategy.
    pub fn strategy(&self) -> &StrategyConfig {
        &self.strategy
    }

    /// How long a round waits for its nodes.
    pub fn round_deadline(&self) -> Duration {
        self.round_deadline
    }

    /// How long a search waits for answers.
    pub fn search_wait(&self) -> Duration {
        self.search_wait
    }

    /// What is allowed but probably not meant (e.g. Scaffold with momentum).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl ExperimentSettings {
    /// Check every argument once: training arguments, names, numbers,
    /// the server optimizer and the embedded repository's address. The
    /// error names the setting and what it accepts.
    pub fn check(self) -> Result<CheckedSettings, ExperimentError> {
        self.training_args
            .check()
            .map_err(|e| ExperimentError::Argument(e.to_string()))?;
        let round_deadline = seconds(self.round_deadline_secs, "round_deadline_secs")?;
        let search_wait = seconds(self.search_wait_secs, "search_wait_secs")?;
        let aggregator = AggregatorConfig::from_settings(&self)?;
        let warnings = check_aggregator(aggregator.init()?.as_ref(), &self.training_args)?;
        if let Some(optimizer) = &self.agg_optimizer {
            optimizer.check().map_err(ExperimentError::Argument)?;
        }
        let strategy = StrategyConfig::from_settings(&self)?;
        if let RepositorySetting::Embedded { bind } = &self.repository
            && bind.ends_with(":0")
        {
            return Err(ExperimentError::Argument(format!(
                "the embedded repository cannot bind `{bind}`: nodes fetch files only from the repository in their node.toml, so it needs the fixed address they are configured with (e.g. 0.0.0.0:8844), or use [repository.remote]"
            )));
        }
        Ok(CheckedSettings {
            settings: self,
            aggregator,
            strategy,
            round_deadline,
            search_wait,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::researcher::ServerOptimizer;

    /// The defaults plus the one training argument they leave to the user.
    fn valid() -> ExperimentSettings {
        ExperimentSettings {
            training_args: serde_json::from_value(serde_json::json!({"num_updates": 5}))
                .expect("training args"),
            ..ExperimentSettings::default()
        }
    }

    fn refused(change: impl FnOnce(&mut ExperimentSettings), expected: &str) {
        let mut settings = valid();
        change(&mut settings);
        match settings.check() {
            Err(ExperimentError::Argument(message)) => {
                assert!(message.contains(expected), "{message} lacks {expected}")
            }
            Err(other) => panic!("{expected}: wrong error {other}"),
            Ok(_) => panic!("{expected}: accepted"),
        }
    }

    #[test]
    fn the_defaults_check_to_fedavg_over_every_node() {
        refused(
            |s| s.training_args = TrainingArgs::default(),
            "num_updates or epochs",
        );
        let checked = valid().check().expect("defaults");
        assert_eq!(checked.aggregator(), &AggregatorConfig::FedAvg);
        assert_eq!(checked.strategy().selection, NodeSelection::All);
        assert_eq!(checked.round_deadline(), Duration::from_secs(600));
        assert!(checked.warnings().is_empty());
    }

    #[test]
    fn every_bad_setting_is_named() {
        refused(
            |s| s.aggregator = "fedmedian".into(),
            "unknown aggregator `fedmedian`",
        );
        refused(
            |s| {
                s.aggregator = "scaffold".into();
                s.server_lr = 0.0;
            },
            "server_lr must be a positive number",
        );
        refused(
            |s| s.node_selection_strategy = "best".into(),
            "available: default, sampling",
        );
        refused(|s| s.min_nodes = 0, "min_nodes must be at least 1");
        refused(
            |s| {
                s.node_selection_strategy = "sampling".into();
                s.sampling_fraction = 1.5;
            },
            "sampling fraction must be in (0, 1]",
        );
        refused(
            |s| s.round_deadline_secs = 0.0,
            "round_deadline_secs must be a positive",
        );
        refused(
            |s| s.search_wait_secs = f64::NAN,
            "search_wait_secs must be a positive",
        );
        refused(
            |s| s.agg_optimizer = Some(ServerOptimizer::Sgd { lr: -1.0 }),
            "lr",
        );
        refused(
            |s| {
                s.repository = RepositorySetting::Embedded {
                    bind: "127.0.0.1:0".into(),
                }
            },
            "cannot bind `127.0.0.1:0`",
        );
    }

    #[test]
    fn typed_configs_build_what_their_names_say() {
        for (name, config) in [
            ("fedavg", AggregatorConfig::FedAvg),
            ("scaffold", AggregatorConfig::Scaffold { server_lr: 0.5 }),
        ] {
            assert_eq!(AggregatorConfig::from_name(name, 0.5).expect(name), config);
            assert_eq!(config.name(), name);
            assert_eq!(config.init().expect(name).name(), name);
        }
        let sampling = StrategyConfig {
            selection: NodeSelection::Sampling { fraction: 0.5 },
            min_nodes: 2,
            failure_policy: FailurePolicy::Discard,
        };
        let strategy = sampling.init(7).expect("sampling");
        assert_eq!(strategy.name(), sampling.name());
        assert_eq!(strategy.min_nodes(), 2);
        assert_eq!(strategy.failure_policy(), FailurePolicy::Discard);
    }
}
