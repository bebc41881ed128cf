//! One training task, run in-process: the loop a node runs for a train
//! request and `fedwasm plan check` runs for a plan author.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::driver::PlanDriver;
use super::metrics::{Metric, evaluate};
use super::{TrainingArgs, TrainingError};
use crate::dataset::prepare::{Split, dataset_info, prepare};
use crate::dataset::{BatchSchedule, Table};
use crate::digest::Sha256Digest;
use crate::sandbox::random::StreamSeed;
use crate::sandbox::{PlanLogRecord, Sandbox, SandboxConfig};
use crate::tensors;

/// Everything a training task needs, as plain data so it can cross into a worker process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingTask {
    /// The plan component.
    pub plan: PathBuf,
    /// The CSV dataset.
    pub dataset: PathBuf,
    /// The dataset's registered target column.
    pub target: Option<String>,
    /// JSON object for `init-model`.
    pub model_args: Value,
    /// Local training arguments.
    pub training_args: TrainingArgs,
    /// The experiment this task belongs to, recorded in the parameter file.
    #[serde(default)]
    pub experiment_id: Option<String>,
    /// Round number (0 for a dry run), part of the random seed.
    pub round: u32,
    /// Node id, part of the random seed.
    pub node_id: String,
    /// Parameters to start from (safetensors); the plan's own initial values otherwise.
    pub initial_parameters: Option<PathBuf>,
    /// Scaffold's gradient correction (safetensors).
    pub gradient_correction: Option<PathBuf>,
    /// Where to write the trained parameters (safetensors).
    pub output_parameters: Option<PathBuf>,
    /// Limits of the sandbox that runs the plan.
    pub sandbox: SandboxConfig,
}

/// Progress of a running task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    /// The plan is initialised and the data prepared.
    Started {
        /// `describe().name`
        plan_name: String,
        /// Updates the task will run.
        total_updates: usize,
        /// Rows in the training split.
        training_samples: usize,
        /// Rows held out.
        test_samples: usize,
        /// Argument warnings (e.g. num_updates overriding epochs).
        warnings: Vec<String>,
    },
    /// The loss after an update, every `log_interval` updates and at the last one.
    Loss {
        /// 1-based update number.
        update: usize,
        /// 1-based epoch.
        epoch: usize,
        /// Samples processed so far.
        samples_seen: usize,
        /// Mean batch loss of this update.
        loss: f32,
    },
}

/// What a finished task reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingOutcome {
    /// `describe().name`
    pub plan_name: String,
    /// SHA-256 of the plan component.
    pub plan_digest: Sha256Digest,
    /// Updates run.
    pub updates: usize,
    /// Samples processed (with repetitions across epochs).
    pub samples_seen: usize,
    /// Rows in the training split: the weight of this node in FedAvg.
    pub training_samples: usize,
    /// Rows held out.
    pub test_samples: usize,
    /// Loss of the last update.
    pub final_loss: f32,
    /// Accuracy or MSE on the training split after training.
    pub training_metric: Option<Metric>,
    /// The same on the held-out rows.
    pub test_metric: Option<Metric>,
    /// Learning rate the plan reported with its last update.
    pub learning_rate: Option<f32>,
    /// Messages the plan logged.
    pub plan_logs: Vec<PlanLogRecord>,
    /// Wall time of the update loop, in milliseconds.
    pub training_ms: f64,
    /// Wall time of the whole task, in milliseconds.
    pub total_ms: f64,
}

fn read_tensors(
    path: &std::path::Path,
) -> Result<Vec<crate::sandbox::types::Tensor>, TrainingError> {
    tensors::read_file(path)
        .map(|(t, _)| t)
        .map_err(|e| TrainingError::Parameters(e.to_string()))
}

/// Run `task` on `sandbox`, calling `on_progress` as it goes.
pub fn run_task(
    sandbox: &Sandbox,
    task: &TrainingTask,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainingOutcome, TrainingError> {
    let started = Instant::now();
    task.training_args.check()?;
    let plan = sandbox.load_file(&task.plan)?;
    let table = Table::open(&task.dataset)?;
    let args = &task.training_args;
    let seed = StreamSeed::for_plan(args.seed(), args.seed_round(task.round), &task.node_id);
    let mut instance = sandbox.instantiate(&plan, &seed)?;
    let mut outcome = train(&mut instance, plan.digest(), &table, task, on_progress)?;
    outcome.total_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(outcome)
}

/// The task's training loop on any [`PlanDriver`] whose random stream was
/// seeded with [`StreamSeed::for_plan`]: initialise, load parameters, prepare
/// the data, run the updates, write the parameters, evaluate.
pub fn train(
    plan: &mut dyn PlanDriver,
    plan_digest: Sha256Digest,
    table: &Table,
    task: &TrainingTask,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainingOutcome, TrainingError> {
    let started = Instant::now();
    let args = &task.training_args;
    args.check()?;
    let (budget, warning) = args.budget()?;
    if !task.model_args.is_object() {
        return Err(TrainingError::Args(
            "model_args must be a JSON object".into(),
        ));
    }
    let seed = args.seed();
    let info = plan.describe()?;
    plan.init_model(&task.model_args.to_string())?;
    plan.init_optimizer(&Value::Object(args.plan_optimizer_args()).to_string())?;
    if let Some(path) = &task.initial_parameters {
        plan.set_parameters(&read_tensors(path)?)?;
    }
    if let Some(path) = &task.gradient_correction {
        plan.set_gradient_correction(&read_tensors(path)?)?;
    }
    let target = task.target.as_deref();
    let spec = plan.training_data(&dataset_info(table, target))?;
    let split = Split {
        test_ratio: args.test_ratio,
        seed: StreamSeed::for_split(seed, &task.node_id),
    };
    let data = prepare(table, &spec, target, &split)?;

    let loader = &args.loader_args;
    let mut schedule = BatchSchedule::new(
        data.train.len(),
        loader.batch_size,
        loader.shuffle,
        loader.drop_last,
        budget,
        args.dry_run,
        StreamSeed::for_loader(seed, args.seed_round(task.round), &task.node_id).rng(),
    )?;
    on_progress(Progress::Started {
        plan_name: info.name.clone(),
        total_updates: schedule.total(),
        training_samples: data.train.len(),
        test_samples: data.test.len(),
        warnings: warning.into_iter().collect(),
    });

    let loop_start = Instant::now();
    let log_interval = args.log_interval.max(1);
    let (mut update, mut samples_seen, mut final_loss, mut learning_rate) = (0, 0, f32::NAN, None);
    while let Some(indices) = schedule.next_batch() {
        let report = plan.training_step(&data.train.batch(&indices))?;
        update += 1;
        samples_seen += report.samples as usize;
        final_loss = report.loss;
        learning_rate = report.learning_rate;
        if update % log_interval == 0 || update == schedule.total() {
            on_progress(Progress::Loss {
                update,
                epoch: schedule.epoch(),
                samples_seen,
                loss: report.loss,
            });
        }
    }
    let training_ms = loop_start.elapsed().as_secs_f64() * 1e3;

    let parameters = plan.get_parameters()?;
    if let Some(t) = parameters
        .iter()
        .find(|t| t.data.iter().any(|v| !v.is_finite()))
    {
        return Err(TrainingError::Parameters(format!(
            "training made `{}` non-finite; lower the learning rate",
            t.name
        )));
    }
    if let Some(path) = &task.output_parameters {
        let mut metadata = BTreeMap::from([
            ("plan_sha256".to_string(), plan_digest.to_hex()),
            ("plan_name".to_string(), info.name.clone()),
            ("round".to_string(), task.round.to_string()),
            ("node_id".to_string(), task.node_id.clone()),
        ]);
        if let Some(experiment) = &task.experiment_id {
            metadata.insert("experiment_id".to_string(), experiment.clone());
        }
        tensors::write_file(path, &parameters, &metadata)
            .map_err(|e| TrainingError::Parameters(e.to_string()))?;
    }
    let training_metric = evaluate(plan, &data.train, &data.task)?;
    let test_metric = evaluate(plan, &data.test, &data.task)?;
    Ok(TrainingOutcome {
        plan_name: info.name,
        plan_digest,
        updates: update,
        samples_seen,
        training_samples: data.train.len(),
        test_samples: data.test.len(),
        final_loss,
        training_metric,
        test_metric,
        learning_rate,
        plan_logs: plan.take_logs(),
        training_ms,
        total_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}
