//! One training task: arguments, the step loop, metrics, and the worker
//! process that runs it under a deadline.

pub mod args;
pub mod driver;
mod error;
pub mod file_cache;
pub mod holdout;
pub mod metrics;
pub mod privacy;
pub mod scores;
pub mod task;
pub mod validation;
pub mod worker;

pub use args::{LoaderArgs, TrainingArgs};
pub use driver::PlanDriver;
pub use error::{FailureCode, TrainingError};
pub use holdout::evaluate_parameters;
pub use metrics::{Metric, MetricName};
pub use privacy::{DpArgs, DpKind};
pub use task::{
    Progress, TaskCache, TrainingOutcome, TrainingTask, run_task, run_task_cached, train,
};
pub use worker::{WORKER_SUBCOMMAND, Worker, run_in_worker, run_in_worker_until, worker_main};
