//! [`Experiment`]: the researcher's federated training, round by round.
//!
//! Semantics follow Fed-BioMed's `Experiment` (see `README.md`): creation with
//! tags searches the nodes; `round_current` counts completed rounds;
//! `run(rounds, increase)` and `run_once(increase)` respect `round_limit`
//! with the same warnings. Unlike Fed-BioMed, a round never waits forever (a
//! deadline fails it, naming the silent nodes) and a failed round leaves the
//! experiment exactly as it was.
//!
//! # Layout
//!
//! The files are the steps of a round, in order:
//! - `rules`: how many rounds a call runs, when the final validation is
//!   due, whether a round with lost nodes aggregates (pure functions);
//! - `dispatch`: the plan and global parameters to the repository, one
//!   train request per node;
//! - `collect`: the replies of one exchange, until every node is settled
//!   or the deadline passes (training rounds and the final validation);
//! - `checks`: what a reply must satisfy (pure functions);
//! - `round`: a training round from the above, folding each reply into
//!   the aggregate and optimizing the global model;
//! - `final_validation`: the validation-only exchange after the last round;
//! - `persist`: history and parameter files; `breakpoint`: save, resume;
//! - `events`: what observers (console, TensorBoard, yours) are told.
//!
//! Around them: `plan`, `data` (search or explicit training data),
//! `embedded_repository`, `accessors`; the settings arrive checked
//! (`checked_settings.rs`, one level up).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Map;
use tokio::sync::oneshot;

mod accessors;
mod breakpoint;
mod checks;
mod collect;
mod data;
mod dispatch;
mod embedded_repository;
mod events;
mod final_validation;
mod initial;
mod persist;
mod plan;
mod round;
mod rules;

pub use breakpoint::ResumeOptions;
pub use events::{RoundEvent, RoundObserver, TensorboardSteps};

use self::events::Observers;
use self::plan::Plan;
use super::aggregators::Aggregator;
use super::checked_settings::CheckedSettings;
use super::folder::{default_experiments_dir, next_folder_name, sanitize_folder_name};
use super::history::History;
use super::monitor::Monitor;
use super::optimizers::{OptimizerState, ServerOptimizer};
use super::settings::{ExperimentSettings, RepositorySetting};
use super::strategy::Strategy;
use super::{ExperimentError, FederatedDataset, NodeLink};
use crate::repository::RepositoryClient;
use crate::sandbox::types::Tensor;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::training::TrainingArgs;

/// A federated training experiment.
pub struct Experiment {
    id: String,
    tags: Option<Vec<String>>,
    nodes: Option<Vec<String>>,
    training_data: Option<FederatedDataset>,
    plan: Option<Plan>,
    /// Given initial parameters (file, tensors), instead of `init-model`'s.
    initial: Option<(PathBuf, Vec<Tensor>)>,
    /// Tensors of the given initial parameters the plan initialises instead.
    reinitialize: Vec<String>,
    model_args: Map<String, serde_json::Value>,
    training_args: TrainingArgs,
    aggregator: Box<dyn Aggregator>,
    agg_optimizer: Option<ServerOptimizer>,
    optimizer_state: OptimizerState,
    strategy: Box<dyn Strategy>,
    round_limit: Option<u32>,
    round_current: u32,
    save_breakpoints: bool,
    folder: PathBuf,
    round_deadline: Duration,
    search_wait: Duration,
    global: Option<Vec<Tensor>>,
    history: History,
    warnings: Vec<String>,
    /// The settings it was created with: connections for breakpoints.
    origin: ExperimentSettings,
    sandbox: Sandbox,
    link: NodeLink,
    repository: RepositoryClient,
    observers: Observers,
    _repository_server: Option<oneshot::Sender<()>>,
}

/// The researcher's sandbox: default limits, the plan compiled under the
/// settings' compile limits in a child process when a compiler is given
/// (a plan received from someone else is as hostile on this side).
fn researcher_sandbox(settings: &ExperimentSettings) -> SandboxConfig {
    let config = SandboxConfig {
        compile_timeout_secs: settings.compile_timeout_secs,
        compile_memory_mib: settings.compile_memory_mib,
        ..SandboxConfig::default()
    };
    match &settings.compiler {
        Some(exe) => config.compiling_with(exe.clone()),
        None => config,
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExperimentError {
    let what = what.into();
    move |source| ExperimentError::Io { what, source }
}

impl Experiment {
    /// Create an experiment: connect to the broker, start or reach the
    /// repository, load (or build) the plan, create the experimentation
    /// folder and, with tags and no explicit training data, search the nodes.
    pub async fn new(settings: ExperimentSettings) -> Result<Experiment, ExperimentError> {
        Experiment::from_checked(settings.check()?).await
    }

    /// Create an experiment from settings already checked.
    pub async fn from_checked(checked: CheckedSettings) -> Result<Experiment, ExperimentError> {
        let settings = checked.settings();
        let aggregator = checked.aggregator().init()?;
        let strategy = checked.strategy().init(settings.training_args.seed())?;
        let experiments_dir = settings
            .experiments_dir
            .clone()
            .unwrap_or_else(default_experiments_dir);
        let mut warnings = Vec::new();
        let name = match &settings.experimentation_folder {
            Some(given) => {
                let (name, changed) = sanitize_folder_name(given)?;
                if changed {
                    warnings.push(format!(
                        "experimentation folder `{given}` was renamed `{name}` to be a safe folder name"
                    ));
                }
                name
            }
            None => next_folder_name(&experiments_dir)?,
        };
        let folder = experiments_dir.join(&name);
        let runs = folder.join("runs");
        std::fs::create_dir_all(&folder).map_err(io(format!("creating {}", folder.display())))?;

        let (repository, server) = match &settings.repository {
            RepositorySetting::Remote(link) => (link.client(), None),
            RepositorySetting::Embedded { bind } => {
                let (client, stop) =
                    embedded_repository::start(bind, folder.join("repository")).await?;
                (client, Some(stop))
            }
        };
        let credentials = crate::identity::Credentials::researcher(
            settings.identity_file.as_deref(),
            settings.roster_file.as_deref(),
            settings.researcher_id.as_deref(),
        )?;
        let link = NodeLink::connect(&settings.broker, &credentials).await?;
        let sandbox = Sandbox::new(researcher_sandbox(settings))?;

        warnings.extend(checked.warnings().iter().cloned());
        // Later warnings are logged as they are given (`Experiment::warn`).
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        let mut experiment = Experiment {
            id: name,
            tags: settings.tags.as_ref().map(|t| t.to_vec()),
            nodes: settings.nodes.clone(),
            training_data: None,
            plan: None,
            initial: None,
            reinitialize: settings.reinitialize.clone(),
            model_args: settings.model_args.clone(),
            training_args: settings.training_args.clone(),
            aggregator,
            agg_optimizer: settings.agg_optimizer.clone(),
            optimizer_state: OptimizerState::default(),
            strategy,
            round_limit: settings.round_limit,
            round_current: 0,
            save_breakpoints: settings.save_breakpoints,
            folder,
            round_deadline: checked.round_deadline(),
            search_wait: checked.search_wait(),
            global: None,
            history: History::default(),
            warnings,
            origin: settings.clone(),
            sandbox,
            link,
            repository,
            observers: Observers {
                monitor: Monitor::new(settings.console),
                tensorboard: TensorboardSteps::new(runs, settings.tensorboard),
                added: Vec::new(),
            },
            _repository_server: server,
        };
        if let Some(plan) = &settings.training_plan {
            experiment.set_training_plan(plan, settings.training_plan_name.as_deref())?;
        }
        if let Some(file) = &settings.initial_parameters {
            experiment.set_initial_parameters(Some(file))?;
        }
        match &settings.training_data {
            Some(explicit) => {
                let fds = experiment.resolve_training_data(explicit).await?;
                experiment.training_data = Some(fds);
            }
            None if experiment.tags.is_some() => {
                experiment.set_training_data(None, true).await?;
            }
            None => {}
        }
        Ok(experiment)
    }

    /// Give `warning` to the researcher: logged, told to the observers, and
    /// kept for [`Experiment::take_warnings`].
    fn warn(&mut self, warning: String) {
        tracing::warn!("{warning}");
        for failure in self
            .observers
            .notify(&RoundEvent::Warning { text: &warning })
        {
            tracing::warn!("{failure}");
        }
        self.warnings.push(warning);
    }

    /// Tell the observers of `event`; each distinct failure becomes one
    /// warning.
    fn notify(&mut self, event: &RoundEvent<'_>) {
        for failure in self.observers.notify(event) {
            if !self.warnings.contains(&failure) {
                self.warn(failure);
            }
        }
    }

    /// Apply what [`rules`] decided for a call: the new limit, its warning.
    fn follow(&mut self, plan: rules::RunPlan) -> u32 {
        self.round_limit = plan.round_limit;
        if let Some(warning) = plan.warning {
            self.warn(warning);
        }
        plan.rounds
    }

    /// Run `rounds` rounds, or with `None` every round up to the limit. With
    /// `increase`, a limit too low for `rounds` is raised; otherwise the
    /// rounds are clipped to it, with a warning. Returns the rounds run.
    pub async fn run(
        &mut self,
        rounds: Option<u32>,
        increase: bool,
    ) -> Result<u32, ExperimentError> {
        let plan = rules::rounds_to_run(rounds, self.round_limit, self.round_current, increase)?;
        let count = self.follow(plan);
        if count == 0 {
            return Ok(0);
        }
        for _ in 0..count {
            self.run_round().await?;
        }
        if rules::final_validation_due(
            self.training_args.test_on_global_updates,
            self.round_limit,
            self.round_current,
        ) {
            let validated = self.final_validation().await;
            self.link.untrack_all();
            validated?;
        }
        Ok(count)
    }

    /// Run one round. At the limit, with `increase` the limit is raised by
    /// one; otherwise nothing runs and 0 is returned, with a warning.
    pub async fn run_once(&mut self, increase: bool) -> Result<u32, ExperimentError> {
        let plan = rules::one_more_round(self.round_limit, self.round_current, increase);
        if self.follow(plan) == 0 {
            return Ok(0);
        }
        self.run_round().await?;
        Ok(1)
    }

    /// Disconnect from the broker and stop the embedded repository.
    pub async fn close(mut self) {
        self.notify(&RoundEvent::Closing);
        self.link.disconnect().await;
    }
}
