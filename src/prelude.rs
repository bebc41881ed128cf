//! What a program driving fedwasm usually needs, in one
//! `use fedwasm::prelude::*;`: the experiment and its settings, the typed
//! configs and extension traits, the round events, and (in a full build)
//! a local federation to run it on. Each item is also at its own path.

pub use crate::digest::Sha256Digest;
pub use crate::repository::RepositoryLink;
pub use crate::training::TrainingArgs;
pub use crate::transport::BrokerConfig;

#[cfg(feature = "node")]
pub use crate::node::{NewDataset, NodeConfig};

#[cfg(feature = "researcher")]
pub use crate::researcher::{
    Aggregator, AggregatorConfig, CheckedSettings, Experiment, ExperimentError, ExperimentSettings,
    FailurePolicy, FederatedDataset, History, NodeSelection, RepositorySetting, ResumeOptions,
    RoundEvent, RoundObserver, ServerOptimizer, Strategy, StrategyConfig, Tags,
};

#[cfg(all(
    feature = "node",
    feature = "researcher",
    feature = "broker",
    feature = "repository-server"
))]
pub use crate::local_federation::{LocalFederation, LocalFederationConfig, LocalNode};
