//! The researcher's side.
//!
//! - `link`: [`NodeLink`], the connection to the nodes: send signed
//!   requests, gather the replies (only to requests it sent, only from
//!   pinned nodes), watch node status and monitoring.
//! - `experiment`: [`Experiment`], federated training round by round, in
//!   a folder whose files are the steps of a round; observers
//!   ([`RoundObserver`]) watch its [`RoundEvent`]s.
//! - `settings`: [`ExperimentSettings`], every argument with its default;
//!   `checked_settings`: [`CheckedSettings`] and the typed
//!   [`AggregatorConfig`] / [`StrategyConfig`] the names resolve to.
//! - `federated_dataset`: [`FederatedDataset`], node → dataset.
//! - [`aggregators`]: the [`Aggregator`] trait, [`FedAvg`], Scaffold and
//!   the robust rules (median, trimmed mean, clipped FedAvg).
//! - `optimizers`: [`ServerOptimizer`], optimizing the global model (FedOpt).
//! - `printable`: a node's free text without control characters.
//! - [`strategy`]: the [`Strategy`] trait and [`DefaultStrategy`].
//! - `history`: what each round did.
//! - `accountant`: the RDP accountant behind the ε each node has spent.
//! - `folder`: experimentation folder naming.
//! - `monitor`: console progress (an observer).
//! - [`tensorboard`]: TensorBoard event files (written by an observer).

pub(crate) mod accountant;
pub mod aggregators;
pub(crate) mod checked_settings;
mod error;
pub(crate) mod experiment;
pub(crate) mod federated_dataset;
pub(crate) mod folder;
pub(crate) mod history;
pub(crate) mod link;
pub(crate) mod monitor;
pub(crate) mod optimizers;
mod printable;
pub(crate) mod settings;
pub mod strategy;
pub mod tensorboard;

pub use aggregators::{Aggregator, FedAvg};
pub use checked_settings::{AggregatorConfig, CheckedSettings, NodeSelection, StrategyConfig};
pub use error::{ExperimentError, ResearcherError};
pub use experiment::{Experiment, ResumeOptions, RoundEvent, RoundObserver, TensorboardSteps};
pub use federated_dataset::FederatedDataset;
pub use history::{
    DroppedNode, FinalValidation, History, NodeEpsilon, NodeRound, NodeValidation, RoundRecord,
};
pub use link::{NodeLink, Reply};
pub use optimizers::{OptimizerState, ServerOptimizer};
pub use settings::{ExperimentSettings, RepositorySetting, Tags};
pub use strategy::{DefaultStrategy, FailurePolicy, SamplingStrategy, Strategy};
