//! The experiment's parts chosen by name in the settings: the aggregator
//! and the node selection strategy, and the checks between them and the
//! training arguments.

use std::time::Duration;

use crate::researcher::ExperimentError;
use crate::researcher::aggregators::{Aggregator, FedAvg, Scaffold};
use crate::researcher::settings::ExperimentSettings;
use crate::researcher::strategy::{DefaultStrategy, SamplingStrategy, Strategy};
use crate::training::TrainingArgs;

/// `value` seconds for the setting `name`: positive and finite.
pub(super) fn seconds(value: f64, name: &str) -> Result<Duration, ExperimentError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ExperimentError::Argument(format!(
                "{name} must be a positive number of seconds, not {value}"
            ))
        })
}

/// The aggregator the settings name.
pub fn aggregator_named(
    name: &str,
    server_lr: f32,
) -> Result<Box<dyn Aggregator>, ExperimentError> {
    match name {
        "fedavg" => Ok(Box::new(FedAvg::new())),
        "scaffold" => Ok(Box::new(Scaffold::new(server_lr)?)),
        other => Err(ExperimentError::Argument(format!(
            "unknown aggregator `{other}`; available: fedavg, scaffold"
        ))),
    }
}

/// What `aggregator` says of `args`: an error, or warnings to give.
pub(super) fn check_aggregator(
    aggregator: &dyn Aggregator,
    args: &TrainingArgs,
) -> Result<Vec<String>, ExperimentError> {
    aggregator
        .check_training_args(args)
        .map_err(ExperimentError::Argument)
}

/// The node selection strategy the settings describe.
pub fn strategy_from(settings: &ExperimentSettings) -> Result<Box<dyn Strategy>, ExperimentError> {
    if settings.min_nodes == 0 {
        return Err(ExperimentError::Argument(
            "min_nodes must be at least 1".into(),
        ));
    }
    match settings.node_selection_strategy.as_str() {
        "default" => Ok(Box::new(DefaultStrategy {
            failure_policy: settings.failure_policy,
            min_nodes: settings.min_nodes,
        })),
        "sampling" => {
            let strategy = SamplingStrategy {
                fraction: settings.sampling_fraction,
                min_nodes: settings.min_nodes,
                seed: settings.training_args.seed(),
                failure_policy: settings.failure_policy,
            };
            strategy.check()?;
            Ok(Box::new(strategy))
        }
        other => Err(ExperimentError::Argument(format!(
            "unknown node_selection_strategy `{other}`; available: default, sampling"
        ))),
    }
}
