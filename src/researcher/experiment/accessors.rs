//! The experiment's getters and setters, named as in Fed-BioMed's
//! `Experiment` (`round_current`, `set_round_limit`, `set_test_ratio`, …).
//! A setter checks its value and leaves the experiment unchanged on error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::Experiment;
use super::events::RoundObserver;
use super::initial::starting_parameters;
use super::plan::Plan;
use crate::digest::Sha256Digest;
use crate::researcher::aggregators::Aggregator;
use crate::researcher::checked_settings::check_aggregator;
use crate::researcher::history::History;
use crate::researcher::optimizers::{OptimizerState, ServerOptimizer};
use crate::researcher::strategy::Strategy;
use crate::researcher::{ExperimentError, FederatedDataset, NodeLink};
use crate::sandbox::types::Tensor;
use crate::training::TrainingArgs;

impl Experiment {
    /// The experiment's id: its folder name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Tags the search uses.
    pub fn tags(&self) -> Option<&[String]> {
        self.tags.as_deref()
    }

    /// Nodes the search is restricted to.
    pub fn nodes(&self) -> Option<&[String]> {
        self.nodes.as_deref()
    }

    /// Node → dataset the experiment trains on.
    pub fn training_data(&self) -> Option<&FederatedDataset> {
        self.training_data.as_ref()
    }

    /// The plan component's path.
    pub fn training_plan_path(&self) -> Option<&Path> {
        self.plan.as_ref().map(|p| p.path.as_path())
    }

    /// The plan's `describe().name`.
    pub fn training_plan_name(&self) -> Option<&str> {
        self.plan.as_ref().map(|p| p.name.as_str())
    }

    /// The plan's SHA-256: what node operators approve.
    pub fn training_plan_digest(&self) -> Option<Sha256Digest> {
        self.plan.as_ref().map(|p| p.loaded.digest())
    }

    /// Arguments of `init-model`.
    pub fn model_args(&self) -> &Map<String, Value> {
        &self.model_args
    }

    /// Local training arguments.
    pub fn training_args(&self) -> &TrainingArgs {
        &self.training_args
    }

    /// The aggregator.
    pub fn aggregator(&self) -> &dyn Aggregator {
        self.aggregator.as_ref()
    }

    /// The optimizer of the global model, if any.
    pub fn agg_optimizer(&self) -> Option<&ServerOptimizer> {
        self.agg_optimizer.as_ref()
    }

    /// The node selection strategy.
    pub fn strategy(&self) -> &dyn Strategy {
        self.strategy.as_ref()
    }

    /// Most rounds the experiment runs.
    pub fn round_limit(&self) -> Option<u32> {
        self.round_limit
    }

    /// Rounds completed (also the 0-based index of the next round).
    pub fn round_current(&self) -> u32 {
        self.round_current
    }

    /// Whether TensorBoard files are written.
    pub fn tensorboard(&self) -> bool {
        self.observers.tensorboard.enabled()
    }

    /// Whether a breakpoint is saved after every round.
    pub fn save_breakpoints(&self) -> bool {
        self.save_breakpoints
    }

    /// Folder name of the experiment.
    pub fn experimentation_folder(&self) -> &str {
        &self.id
    }

    /// Full path of the experiment's folder.
    pub fn experimentation_path(&self) -> &Path {
        &self.folder
    }

    /// The global parameters after the last completed round (or the
    /// initial ones once a round has started).
    pub fn global_parameters(&self) -> Option<&[Tensor]> {
        self.global.as_deref()
    }

    /// Messages refused so far for who signed them: from keys the roster
    /// does not pin, forged signatures, signers speaking for others.
    pub fn refused_messages(&self) -> u64 {
        self.link.refused_messages()
    }

    /// Completed rounds.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Aggregated parameter files per round, as (round, path).
    pub fn aggregated_params(&self) -> BTreeMap<u32, PathBuf> {
        self.history
            .rounds
            .iter()
            .map(|r| (r.round, self.folder.join(&r.global_path)))
            .collect()
    }

    /// Warnings given since the last call (also logged as they happen).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The link to the nodes, e.g. to ping them.
    pub fn link(&mut self) -> &mut NodeLink {
        &mut self.link
    }

    /// Where TensorBoard event files go: `<experiment folder>/runs`.
    pub fn tensorboard_path(&self) -> PathBuf {
        self.observers.tensorboard.runs().to_path_buf()
    }

    /// Change the tags. The training data stays until
    /// `set_training_data(None, true)` searches again.
    pub fn set_tags(&mut self, tags: Option<Vec<String>>) {
        self.tags = tags;
    }

    /// Change the nodes filter. The training data stays until
    /// `set_training_data(None, true)` searches again.
    pub fn set_nodes(&mut self, nodes: Option<Vec<String>>) {
        self.nodes = nodes;
    }

    /// Use the plan at `path`: a component file, or a plan crate folder that
    /// is built first. With `name`, the plan's `describe().name` must match.
    pub fn set_training_plan(
        &mut self,
        path: &Path,
        name: Option<&str>,
    ) -> Result<(), ExperimentError> {
        let built = self.folder.join("training_plan.wasm");
        self.plan = Some(Plan::load(&self.sandbox, path, name, &built)?);
        self.global = None;
        if self.initial.is_some() {
            self.initial_parameters()?;
        }
        Ok(())
    }

    /// Start from the parameters in `file` (safetensors) instead of the
    /// plan's `init-model`, or with `None` from the plan's own again. Only
    /// before the first round; checked now against the plan when it is set.
    pub fn set_initial_parameters(&mut self, file: Option<&Path>) -> Result<(), ExperimentError> {
        if self.round_current > 0 {
            return Err(ExperimentError::Argument(format!(
                "initial_parameters apply before the first round; {} rounds already ran",
                self.round_current
            )));
        }
        self.initial = match file {
            None => None,
            Some(file) => {
                let ((tensors, _), casts) =
                    crate::tensors::read_file_casting(file).map_err(|e| {
                        ExperimentError::Argument(format!(
                            "initial_parameters {}: {e}",
                            file.display()
                        ))
                    })?;
                for note in casts {
                    self.warn(format!("initial_parameters {}: {note}", file.display()));
                }
                Some((file.to_path_buf(), tensors))
            }
        };
        self.global = None;
        if self.plan.is_some() {
            for note in self.starting_parameters()?.1 {
                self.warn(note);
            }
        }
        Ok(())
    }

    /// The initial global parameters: the given ones in the plan's order,
    /// or the plan's own from `init-model`.
    pub(super) fn initial_parameters(&self) -> Result<Vec<Tensor>, ExperimentError> {
        Ok(self.starting_parameters()?.0)
    }

    /// [`Self::initial_parameters`], and what `reinitialize` replaced.
    fn starting_parameters(&self) -> Result<(Vec<Tensor>, Vec<String>), ExperimentError> {
        let plan = self.plan.as_ref().ok_or_else(|| {
            ExperimentError::NotDefined("no training plan; set training_plan".into())
        })?;
        let own =
            plan.initial_parameters(&self.sandbox, self.training_args.seed(), &self.model_args)?;
        let Some((file, given)) = &self.initial else {
            return Ok((own, Vec::new()));
        };
        starting_parameters(&own, given, &self.reinitialize).map_err(|reason| {
            ExperimentError::Argument(format!(
                "initial_parameters {} does not fit the plan `{}` with these model_args: {reason}",
                file.display(),
                plan.name
            ))
        })
    }

    /// Change the model arguments (new initial parameters if no round ran yet).
    pub fn set_model_args(&mut self, model_args: Map<String, Value>) {
        self.model_args = model_args;
        if self.round_current == 0 {
            self.global = None;
        }
    }

    /// Change the training arguments; they apply from the next round.
    pub fn set_training_args(
        &mut self,
        training_args: TrainingArgs,
    ) -> Result<(), ExperimentError> {
        training_args
            .check()
            .map_err(|e| ExperimentError::Argument(e.to_string()))?;
        for warning in check_aggregator(self.aggregator.as_ref(), &training_args)? {
            self.warn(warning);
        }
        self.training_args = training_args;
        Ok(())
    }

    /// Change one part of the training arguments, as the guide's
    /// `set_test_*` methods do: checked as a whole, unchanged on error.
    fn update_training_args(
        &mut self,
        change: impl FnOnce(&mut TrainingArgs),
    ) -> Result<(), ExperimentError> {
        let mut args = self.training_args.clone();
        change(&mut args);
        self.set_training_args(args)
    }

    /// Fraction of each node's rows held out for validation, in [0, 1).
    pub fn set_test_ratio(&mut self, ratio: f64) -> Result<(), ExperimentError> {
        self.update_training_args(|a| a.test_ratio = ratio)
    }

    /// The validation metric by name (`None`: the task's default) and its
    /// arguments (`average` for F1_SCORE, PRECISION, RECALL).
    pub fn set_test_metric(
        &mut self,
        metric: Option<&str>,
        metric_args: Map<String, Value>,
    ) -> Result<(), ExperimentError> {
        self.update_training_args(|a| {
            a.test_metric = metric.map(str::to_string);
            a.test_metric_args = metric_args;
        })
    }

    /// Score each node's own model after its training.
    pub fn set_test_on_local_updates(&mut self, on: bool) -> Result<(), ExperimentError> {
        self.update_training_args(|a| a.test_on_local_updates = on)
    }

    /// Score the global model on each node before training, and once more
    /// after the last round.
    pub fn set_test_on_global_updates(&mut self, on: bool) -> Result<(), ExperimentError> {
        self.update_training_args(|a| a.test_on_global_updates = on)
    }

    /// Replace the aggregator (e.g. a custom one).
    pub fn set_aggregator(
        &mut self,
        aggregator: Box<dyn Aggregator>,
    ) -> Result<(), ExperimentError> {
        for warning in check_aggregator(aggregator.as_ref(), &self.training_args)? {
            self.warn(warning);
        }
        self.aggregator = aggregator;
        Ok(())
    }

    /// Set (or remove) the optimizer of the global model; its moments restart.
    pub fn set_agg_optimizer(
        &mut self,
        optimizer: Option<ServerOptimizer>,
    ) -> Result<(), ExperimentError> {
        if let Some(opt) = &optimizer {
            opt.check().map_err(ExperimentError::Argument)?;
        }
        self.agg_optimizer = optimizer;
        self.optimizer_state = OptimizerState::default();
        Ok(())
    }

    /// Replace the node selection strategy.
    pub fn set_strategy(&mut self, strategy: Box<dyn Strategy>) {
        self.strategy = strategy;
    }

    /// Change the round limit; it cannot be below the rounds already run.
    pub fn set_round_limit(&mut self, round_limit: Option<u32>) -> Result<(), ExperimentError> {
        if let Some(limit) = round_limit
            && limit < self.round_current
        {
            return Err(ExperimentError::Argument(format!(
                "round_limit {limit} is below the {} rounds already run",
                self.round_current
            )));
        }
        self.round_limit = round_limit;
        Ok(())
    }

    /// Switch TensorBoard files on or off.
    pub fn set_tensorboard(&mut self, on: bool) {
        self.observers.tensorboard.set_enabled(on);
    }

    /// Switch breakpoints on or off; on, one is saved after each later round.
    pub fn set_save_breakpoints(&mut self, on: bool) {
        self.save_breakpoints = on;
    }

    /// Change the round deadline.
    pub fn set_round_deadline(&mut self, deadline: Duration) {
        self.round_deadline = deadline;
    }

    /// Watch the rounds with `observer` too (after the console and
    /// TensorBoard); see [`RoundEvent`](super::RoundEvent).
    pub fn add_observer(&mut self, observer: Box<dyn RoundObserver>) {
        self.observers.added.push(observer);
    }
}
