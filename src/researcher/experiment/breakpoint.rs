//! Breakpoints: the experiment's state after a round, to continue it later,
//! in another process, even after moving the folder.
//!
//! `<experiment>/breakpoint_NNNN/` (NNNN = rounds completed) holds
//! `state.json` and `global.safetensors`. Every path inside is relative (the
//! plan is copied to `<experiment>/training_plan.wasm`), so an experiment
//! folder can be moved or copied to another machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Experiment;
use crate::researcher::AggregatorConfig;
use crate::researcher::folder::{default_experiments_dir, latest_folder};
use crate::researcher::history::History;
use crate::researcher::settings::{ExperimentSettings, RepositorySetting};
use crate::researcher::{ExperimentError, FederatedDataset};
use crate::training::TrainingArgs;
use crate::transport::BrokerConfig;

/// Version of the state file this build writes and reads.
const VERSION: u32 = 1;

/// Prefix of breakpoint folders.
const PREFIX: &str = "breakpoint_";

/// What a breakpoint records.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    breakpoint_version: u32,
    experiment_id: String,
    round_current: u32,
    round_limit: Option<u32>,
    tags: Option<Vec<String>>,
    nodes: Option<Vec<String>>,
    training_data: FederatedDataset,
    /// Relative to the breakpoint folder.
    training_plan: String,
    training_plan_name: String,
    plan_sha256: String,
    model_args: Map<String, Value>,
    training_args: TrainingArgs,
    aggregator: String,
    aggregator_state: Value,
    agg_optimizer: Option<crate::researcher::ServerOptimizer>,
    /// The optimizer's moments, relative to the breakpoint folder.
    optimizer_state: Option<String>,
    strategy: String,
    strategy_state: Value,
    tensorboard: bool,
    round_deadline_secs: f64,
    search_wait_secs: f64,
    researcher_id: Option<String>,
    /// The researcher's key file (never the key) and roster.
    #[serde(default)]
    identity_file: Option<std::path::PathBuf>,
    #[serde(default)]
    roster_file: Option<std::path::PathBuf>,
    broker: BrokerConfig,
    repository: RepositorySetting,
    history: History,
    iterations_done: BTreeMap<String, u64>,
    /// Relative to the breakpoint folder.
    global: String,
}

/// How to reconnect a loaded experiment; unset fields keep the saved values.
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    /// Where to look for the latest experiment when no path is given.
    pub experiments_dir: Option<PathBuf>,
    /// Another broker.
    pub broker: Option<BrokerConfig>,
    /// Another repository.
    pub repository: Option<RepositorySetting>,
    /// Print progress.
    pub console: bool,
    /// The `fedwasm` executable that compiles the plan under limits (see
    /// [`ExperimentSettings::compiler`]).
    pub compiler: Option<PathBuf>,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> ExperimentError {
    move |source| ExperimentError::Io { what, source }
}

fn breakpoint_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(PREFIX)?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The breakpoint folder `path` designates: a breakpoint folder itself, or
/// an experiment folder (its latest breakpoint).
fn resolve(path: &Path) -> Result<PathBuf, ExperimentError> {
    if path.join("state.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let latest = std::fs::read_dir(path)
        .map_err(io(format!("reading {}", path.display())))?
        .filter_map(Result::ok)
        .filter_map(|e| Some((breakpoint_number(e.file_name().to_str()?)?, e.path())))
        .filter(|(_, p)| p.join("state.json").is_file())
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p);
    latest.ok_or_else(|| {
        ExperimentError::Breakpoint(format!(
            "{} holds no breakpoint (breakpoint_NNNN/state.json); run with save_breakpoints = true",
            path.display()
        ))
    })
}

impl Experiment {
    /// Save a breakpoint of the state after the last completed round.
    pub fn save_breakpoint(&self) -> Result<PathBuf, ExperimentError> {
        let (global, plan) = match (&self.global, &self.plan) {
            (Some(global), Some(plan)) if self.round_current > 0 => (global, plan),
            _ => {
                return Err(ExperimentError::Breakpoint(
                    "nothing to save before the first completed round".into(),
                ));
            }
        };
        let training_data = self.training_data.clone().ok_or_else(|| {
            ExperimentError::Breakpoint("the experiment has no training data".into())
        })?;
        let plan_copy = self.folder.join("training_plan.wasm");
        // Copying a file onto itself would empty it: compare real paths.
        let same = match (plan.path.canonicalize(), plan_copy.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            std::fs::copy(&plan.path, &plan_copy)
                .map_err(io(format!("copying the plan to {}", plan_copy.display())))?;
        }
        let dir = self
            .folder
            .join(format!("{PREFIX}{:04}", self.round_current));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let latest = self.folder.join("global.safetensors");
        let global_file = dir.join("global.safetensors");
        match std::fs::copy(&latest, &global_file) {
            Ok(_) => {}
            Err(_) => {
                let bytes = crate::tensors::to_bytes(global, &BTreeMap::new())
                    .map_err(ExperimentError::Breakpoint)?;
                std::fs::write(&global_file, bytes)
                    .map_err(io(format!("writing {}", global_file.display())))?;
            }
        }
        let optimizer_state = if self.optimizer_state == Default::default() {
            None
        } else {
            let file = dir.join("optimizer.safetensors");
            crate::tensors::write_file(&file, &self.optimizer_state.to_tensors(), &BTreeMap::new())
                .map_err(|e| ExperimentError::Breakpoint(e.to_string()))?;
            Some("optimizer.safetensors".to_string())
        };
        let state = State {
            breakpoint_version: VERSION,
            experiment_id: self.id.clone(),
            round_current: self.round_current,
            round_limit: self.round_limit,
            tags: self.tags.clone(),
            nodes: self.nodes.clone(),
            training_data,
            training_plan: "../training_plan.wasm".into(),
            training_plan_name: plan.name.clone(),
            plan_sha256: plan.loaded.digest().to_hex(),
            model_args: self.model_args.clone(),
            training_args: self.training_args.clone(),
            aggregator: self.aggregator.name(),
            aggregator_state: self.aggregator.state(),
            agg_optimizer: self.agg_optimizer.clone(),
            optimizer_state,
            strategy: self.strategy.name(),
            strategy_state: self.strategy.state(),
            tensorboard: self.tensorboard(),
            round_deadline_secs: self.round_deadline.as_secs_f64(),
            search_wait_secs: self.search_wait.as_secs_f64(),
            researcher_id: self.origin.researcher_id.clone(),
            identity_file: self.origin.identity_file.clone(),
            roster_file: self.origin.roster_file.clone(),
            broker: self.origin.broker.clone(),
            repository: self.origin.repository.clone(),
            history: self.history.clone(),
            iterations_done: self.observers.tensorboard.steps_done().clone(),
            global: "global.safetensors".into(),
        };
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| ExperimentError::Breakpoint(e.to_string()))?;
        let state_file = dir.join("state.json");
        std::fs::write(&state_file, text)
            .map_err(io(format!("writing {}", state_file.display())))?;
        Ok(dir)
    }

    /// Load a breakpoint and reconnect: `path` is a breakpoint folder or an
    /// experiment folder (its latest breakpoint); `None` takes the latest
    /// `Experiment_NNNN` of the experiments directory. The experiment goes on
    /// with `run()`, saving breakpoints, as if it had never stopped.
    pub async fn load_breakpoint(
        path: Option<&Path>,
        options: ResumeOptions,
    ) -> Result<Experiment, ExperimentError> {
        let dir = match path {
            Some(path) => resolve(path)?,
            None => {
                let experiments = options
                    .experiments_dir
                    .clone()
                    .unwrap_or_else(default_experiments_dir);
                let latest = latest_folder(&experiments).ok_or_else(|| {
                    ExperimentError::Breakpoint(format!(
                        "no Experiment_NNNN folder in {}",
                        experiments.display()
                    ))
                })?;
                resolve(&latest)?
            }
        };
        let state_file = dir.join("state.json");
        let text = std::fs::read_to_string(&state_file)
            .map_err(io(format!("reading {}", state_file.display())))?;
        let version: Value = serde_json::from_str(&text)
            .map_err(|e| ExperimentError::Breakpoint(format!("{}: {e}", state_file.display())))?;
        let found = version["breakpoint_version"].as_u64();
        if found != Some(u64::from(VERSION)) {
            return Err(ExperimentError::Breakpoint(format!(
                "{} has breakpoint_version {found:?}; this build reads version {VERSION}",
                state_file.display()
            )));
        }
        let state: State = serde_json::from_str(&text)
            .map_err(|e| ExperimentError::Breakpoint(format!("{}: {e}", state_file.display())))?;
        let folder = dir.parent().ok_or_else(|| {
            ExperimentError::Breakpoint("a breakpoint needs its experiment folder".into())
        })?;
        let experiments_dir = folder.parent().map(Path::to_path_buf);
        let folder_name = folder
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&state.experiment_id)
            .to_string();
        let plan_path = dir.join(&state.training_plan);
        let plan_path = plan_path.canonicalize().unwrap_or(plan_path);
        let digest = crate::digest::Sha256Digest::of_file(&plan_path)
            .map_err(io(format!("reading {}", plan_path.display())))?;
        if digest.to_hex() != state.plan_sha256 {
            return Err(ExperimentError::Breakpoint(format!(
                "{} has SHA-256 {digest}, the breakpoint recorded {}",
                plan_path.display(),
                state.plan_sha256
            )));
        }
        let settings = ExperimentSettings {
            tags: None,
            nodes: state.nodes.clone(),
            training_data: None,
            training_plan: Some(plan_path),
            training_plan_name: Some(state.training_plan_name.clone()),
            model_args: state.model_args.clone(),
            training_args: state.training_args.clone(),
            aggregator: state.aggregator.clone(),
            agg_optimizer: state.agg_optimizer.clone(),
            node_selection_strategy: state.strategy.clone(),
            round_limit: state.round_limit,
            tensorboard: state.tensorboard,
            save_breakpoints: true,
            experimentation_folder: Some(folder_name),
            experiments_dir,
            round_deadline_secs: state.round_deadline_secs,
            search_wait_secs: state.search_wait_secs,
            researcher_id: state.researcher_id.clone(),
            identity_file: state.identity_file.clone(),
            roster_file: state.roster_file.clone(),
            broker: options.broker.unwrap_or(state.broker.clone()),
            repository: options.repository.unwrap_or(state.repository.clone()),
            console: options.console,
            compiler: options.compiler,
            // The strategy's own settings come back with its state below.
            ..ExperimentSettings::default()
        };
        AggregatorConfig::from_name(&state.aggregator, 1.0).map_err(|_| {
            ExperimentError::Breakpoint(format!(
                "the breakpoint used aggregator `{}`, which this build cannot rebuild",
                state.aggregator
            ))
        })?;
        let mut experiment = Experiment::new(settings).await?;
        let global_file = dir.join(&state.global);
        let (global, _) = crate::tensors::read_file(&global_file)
            .map_err(|e| ExperimentError::Breakpoint(e.to_string()))?;
        // In the plan's own tensor order, as the uninterrupted run had them,
        // so every file written from here on has the same bytes.
        let order = experiment.initial_parameters()?;
        let global =
            crate::researcher::aggregators::align_parameters("breakpoint", &order, global)?;
        experiment.tags = state.tags;
        experiment.training_data = Some(state.training_data);
        experiment.round_current = state.round_current;
        experiment.global = Some(global);
        experiment.aggregator.load_state(&state.aggregator_state)?;
        if let Some(file) = &state.optimizer_state {
            let (tensors, _) = crate::tensors::read_file(&dir.join(file))
                .map_err(|e| ExperimentError::Breakpoint(e.to_string()))?;
            experiment.optimizer_state =
                crate::researcher::optimizers::OptimizerState::from_tensors(tensors)?;
        }
        experiment.strategy.load_state(&state.strategy_state)?;
        experiment.history = state.history;
        experiment
            .observers
            .tensorboard
            .restore_steps(state.iterations_done);
        Ok(experiment)
    }
}
