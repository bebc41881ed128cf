//! One training task: arguments, the step loop, metrics, and the worker
//! process that runs it under a deadline.

pub(crate) mod args;
pub(crate) mod dice;
pub(crate) mod driver;
mod error;
pub(crate) mod file_cache;
pub(crate) mod holdout;
pub(crate) mod metrics;
pub(crate) mod multilabel;
pub(crate) mod outcome;
pub(crate) mod privacy;
pub(crate) mod scores;
pub(crate) mod task;
pub(crate) mod validation;
pub(crate) mod worker;

pub use args::{LoaderArgs, TrainingArgs};
pub use driver::PlanDriver;
pub use error::{FailureCode, TrainingError};
pub use holdout::{ScoredData, ScoredRows, evaluate_parameters, score_parameters, task_metrics};
pub use metrics::{Metric, MetricName};
pub use privacy::{DpArgs, DpKind};
pub use scores::{Average, MAX_CONFUSION_CLASSES, TestMetric};
pub use task::{
    Progress, TaskCache, TrainingOutcome, TrainingTask, image_test_part, run_task, run_task_cached,
    train,
};
pub use worker::{WORKER_SUBCOMMAND, Worker, run_in_worker, run_in_worker_until, worker_main};
