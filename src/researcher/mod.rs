//! The researcher's side.
//!
//! - [`link`]: [`NodeLink`], the connection to the nodes: send requests,
//!   gather the replies, watch node status and monitoring.
//! - [`experiment`]: [`Experiment`], federated training round by round, in
//!   a folder whose files are the steps of a round; observers
//!   ([`RoundObserver`]) watch its [`RoundEvent`]s.
//! - [`settings`]: [`ExperimentSettings`], every argument with its default.
//! - [`federated_dataset`]: [`FederatedDataset`], node → dataset.
//! - [`aggregators`]: the [`Aggregator`] trait and [`FedAvg`].
//! - [`optimizers`]: [`ServerOptimizer`], optimizing the global model (FedOpt).
//! - [`strategy`]: the [`Strategy`] trait and [`DefaultStrategy`].
//! - [`history`]: what each round did.
//! - [`accountant`]: the RDP accountant behind the ε each node has spent.
//! - [`folder`]: experimentation folder naming.
//! - [`monitor`]: console progress (an observer).
//! - [`tensorboard`]: TensorBoard event files (written by an observer).

pub mod accountant;
pub mod aggregators;
mod error;
pub mod experiment;
pub mod federated_dataset;
pub mod folder;
pub mod history;
pub mod link;
pub mod monitor;
pub mod optimizers;
pub mod settings;
pub mod strategy;
pub mod tensorboard;

pub use aggregators::{Aggregator, FedAvg};
pub use error::{ExperimentError, ResearcherError};
pub use experiment::{Experiment, ResumeOptions, RoundEvent, RoundObserver};
pub use federated_dataset::FederatedDataset;
pub use history::History;
pub use link::{NodeLink, Reply};
pub use optimizers::ServerOptimizer;
pub use settings::{ExperimentSettings, RepositorySetting, Tags};
pub use strategy::{DefaultStrategy, Strategy};
