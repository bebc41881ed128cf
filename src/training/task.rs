//! One training task, run in-process: the loop a node runs for a train
//! request and `fedwasm plan check` runs for a plan author.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::driver::PlanDriver;
use super::file_cache::FileCache;
use super::metrics::evaluate;
pub use super::outcome::{Progress, TrainingOutcome};
use super::privacy::{DpKind, privatize_update};
use super::validation::validate;
use super::{TrainingArgs, TrainingError};
use crate::dataset::Split;
use crate::dataset::prepare::{PreparedData, dataset_info, prepare};
use crate::dataset::{
    BatchSchedule, ImageLimits, ImageSource, LoadedImages, Table, image_files, image_info,
    load_images, manifest_split, prepare_images,
};
use crate::digest::Sha256Digest;
use crate::sandbox::random::StreamSeed;
use crate::sandbox::{LoadedPlan, Sandbox, SandboxConfig};
use crate::tensors;

/// Everything a training task needs, as plain data so it can cross into a worker process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingTask {
    /// The plan component.
    pub plan: PathBuf,
    /// The dataset: a CSV or NPY table, or an image folder or manifest
    /// (then `images` is set).
    pub dataset: PathBuf,
    /// Set for an image dataset: how it was registered.
    #[serde(default)]
    pub images: Option<ImageSource>,
    /// The dataset's registered target column.
    pub target: Option<String>,
    /// The dataset's split column (1 marks its designated test rows): not a
    /// feature, and its test rows are the held-out rows instead of a
    /// `test_ratio` sample.
    #[serde(default)]
    pub split_column: Option<String>,
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
    /// `false`: only score `initial_parameters` on the held-out rows (the
    /// final validation round); nothing is trained or written.
    #[serde(default = "yes")]
    pub training: bool,
    /// Also score the training split, and the held-out rows by the task's
    /// default metric, after training (for `fedwasm plan check`).
    #[serde(default)]
    pub report_split_metrics: bool,
    /// The node's private noise key, which seeds differential-privacy noise
    /// so the researcher cannot replay it; a fresh random key when absent.
    #[serde(default)]
    pub noise_key: Option<[u8; 32]>,
}

fn yes() -> bool {
    true
}

impl TrainingTask {
    /// The seed of the plan's random stream: public (from `random_seed`,
    /// round and node) unless `dp_args` is set, in which case it is keyed
    /// with the node's noise key (see `privacy`).
    pub fn plan_seed(&self) -> Result<StreamSeed, TrainingError> {
        let args = &self.training_args;
        let round = args.seed_round(self.round);
        Ok(if args.dp_args.is_some() {
            StreamSeed::for_private_plan(&self.noise_key()?, args.seed(), round, &self.node_id)
        } else {
            StreamSeed::for_plan(args.seed(), round, &self.node_id)
        })
    }

    fn noise_key(&self) -> Result<[u8; 32], TrainingError> {
        match self.noise_key {
            Some(key) => Ok(key),
            None => {
                let mut key = [0; 32];
                getrandom::fill(&mut key).map_err(|e| {
                    TrainingError::Worker(format!(
                        "no operating-system randomness for a noise key: {e}"
                    ))
                })?;
                Ok(key)
            }
        }
    }
}

/// The tensors of a parameter file, refused before decoding when they would
/// take more host memory than the plan's budget.
fn read_tensors(
    path: &std::path::Path,
    budget: usize,
) -> Result<Vec<crate::sandbox::types::Tensor>, TrainingError> {
    tensors::read_file_within(path, budget)
        .map(|(t, _)| t)
        .map_err(|e| TrainingError::Parameters(e.to_string()))
}

/// Ask the plan what it wants of `data` and prepare it: a table's columns
/// selected, split and scaled; images fitted, split, and augmented per
/// batch from the task's augmentation seed.
fn prepare_data(
    plan: &mut dyn PlanDriver,
    data: TaskData<'_>,
    task: &TrainingTask,
) -> Result<PreparedData, TrainingError> {
    let args = &task.training_args;
    let split = |designated_test| Split {
        test_ratio: args.test_ratio,
        designated_test,
        seed: StreamSeed::for_split(args.seed(), &task.node_id),
        max_bytes: task.sandbox.memory_bytes(),
    };
    match data {
        TaskData::Table(table) => {
            let target = task.target.as_deref();
            let (table, designated_test) = match &task.split_column {
                Some(column) => {
                    let (rest, test) = table.split_by_column(column)?;
                    (std::borrow::Cow::Owned(rest), Some(test))
                }
                None => (std::borrow::Cow::Borrowed(table), None),
            };
            let table = table.as_ref();
            let spec = plan.training_data(&dataset_info(table, target))?;
            Ok(prepare(table, &spec, target, &split(designated_test))?)
        }
        TaskData::Images(images) => {
            let spec = plan.training_data(&image_info(&images.set))?;
            let seed = StreamSeed::for_augmentation(
                args.seed(),
                args.seed_round(task.round),
                &task.node_id,
            );
            let designated_test = match &task.split_column {
                Some(column) => Some(image_test_part(&task.dataset, column, images)?),
                None => None,
            };
            Ok(prepare_images(
                images,
                &spec,
                &split(designated_test),
                seed,
            )?)
        }
    }
}

/// The designated test part a manifest's split column marks, one flag per
/// image of `images` (read from the manifest the images were loaded from).
pub fn image_test_part(
    manifest: &std::path::Path,
    column: &str,
    images: &LoadedImages,
) -> Result<Vec<bool>, TrainingError> {
    let test = manifest_split(manifest, column, &ImageLimits::default())?;
    if test.len() != images.set.items.len() {
        return Err(crate::dataset::DatasetError::Invalid(format!(
            "the manifest now lists {} rows for {} registered images; register the dataset again",
            test.len(),
            images.set.items.len()
        ))
        .into());
    }
    Ok(test)
}

/// Run `task` on `sandbox`, calling `on_progress` as it goes.
pub fn run_task(
    sandbox: &Sandbox,
    task: &TrainingTask,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainingOutcome, TrainingError> {
    run_task_cached(sandbox, &mut TaskCache::default(), task, on_progress)
}

/// What a process running task after task on one sandbox keeps between them:
/// the last parsed table, the last decoded image dataset and the last few
/// loaded plans (see `FileCache`).
pub struct TaskCache {
    tables: FileCache<Table>,
    images: FileCache<LoadedImages>,
    plans: FileCache<Arc<LoadedPlan>>,
}

impl Default for TaskCache {
    fn default() -> Self {
        TaskCache {
            tables: FileCache::new(1),
            images: FileCache::new(1),
            plans: FileCache::new(4),
        }
    }
}

/// The data a task trains on, as read from the node's files.
#[derive(Debug, Clone, Copy)]
pub enum TaskData<'a> {
    /// A CSV or NPY table.
    Table(&'a Table),
    /// A folder or manifest of images, decoded.
    Images(&'a LoadedImages),
}

impl<'a> From<&'a Table> for TaskData<'a> {
    fn from(table: &'a Table) -> Self {
        TaskData::Table(table)
    }
}

impl<'a> From<&'a LoadedImages> for TaskData<'a> {
    fn from(images: &'a LoadedImages) -> Self {
        TaskData::Images(images)
    }
}

/// [`run_task`] reusing what `cache` holds from earlier tasks on `sandbox`.
pub fn run_task_cached(
    sandbox: &Sandbox,
    cache: &mut TaskCache,
    task: &TrainingTask,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainingOutcome, TrainingError> {
    let started = Instant::now();
    task.training_args.check()?;
    let plan = cache
        .plans
        .get_or_load(&task.plan, |p| sandbox.load_file(p))?;
    let seed = task.plan_seed()?;
    let build_warnings = plan.build_warnings();
    let on_progress = &mut |p: Progress| on_progress(with_warnings(p, &build_warnings));
    let reading = Instant::now();
    let mut outcome = match &task.images {
        None => {
            let table = cache.tables.get_or_load(&task.dataset, Table::open)?;
            let read_ms = reading.elapsed().as_secs_f64() * 1e3;
            let mut instance = sandbox.instantiate(&plan, &seed)?;
            let mut outcome = train(&mut instance, plan.digest(), &*table, task, on_progress)?;
            outcome.data_ms += read_ms;
            outcome
        }
        Some(source) => {
            let manifest = source.manifest.is_some();
            let images = cache.images.get_or_load_watching(
                &task.dataset,
                |loaded| image_files(&task.dataset, loaded, manifest),
                |path| load_images(path, source, task.sandbox.memory_bytes()),
            )?;
            let read_ms = reading.elapsed().as_secs_f64() * 1e3;
            let mut instance = sandbox.instantiate(&plan, &seed)?;
            let mut outcome = train(&mut instance, plan.digest(), &*images, task, on_progress)?;
            outcome.data_ms += read_ms;
            outcome
        }
    };
    outcome.total_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(outcome)
}

/// `progress`, with `extra` warnings first when it is the start of training.
fn with_warnings(progress: Progress, extra: &[String]) -> Progress {
    match progress {
        Progress::Started {
            plan_name,
            total_updates,
            training_samples,
            test_samples,
            warnings,
        } => Progress::Started {
            plan_name,
            total_updates,
            training_samples,
            test_samples,
            warnings: extra.iter().cloned().chain(warnings).collect(),
        },
        other => other,
    }
}

/// The task's training loop on any [`PlanDriver`] whose random stream was
/// seeded with [`TrainingTask::plan_seed`]: initialise, load parameters,
/// prepare the data, validate the received parameters, run the updates, add
/// central DP noise, write the parameters, validate them.
pub fn train<'a>(
    plan: &mut dyn PlanDriver,
    plan_digest: Sha256Digest,
    data: impl Into<TaskData<'a>>,
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
    let dp = args.dp_args.as_ref();
    if dp.is_some_and(|d| d.kind == DpKind::Local)
        && !["dp_clip", "dp_sigma"]
            .iter()
            .all(|k| info.optimizer_args.iter().any(|a| a.name == *k))
    {
        return Err(TrainingError::Args(format!(
            "plan {} does not implement local differential privacy (its optimizer arguments have no dp_clip and dp_sigma); rebuild it with the fedwasm plan SDK or use dp_args.type = \"central\"",
            info.name
        )));
    }
    let (metric, average) = args.validation()?;
    plan.init_model(&task.model_args.to_string())?;
    plan.init_optimizer(&Value::Object(args.plan_optimizer_args()).to_string())?;
    let received = match &task.initial_parameters {
        Some(path) => {
            let tensors = read_tensors(path, task.sandbox.memory_bytes())?;
            plan.set_parameters(&tensors)?;
            Some(tensors)
        }
        None => None,
    };
    if let Some(path) = &task.gradient_correction {
        plan.set_gradient_correction(&read_tensors(path, task.sandbox.memory_bytes())?)?;
    }
    let preparing = Instant::now();
    let data = prepare_data(plan, data.into(), task)?;
    let mut data_ms = preparing.elapsed().as_secs_f64() * 1e3;
    let validation_global = if args.test_on_global_updates || !task.training {
        Some(validate(plan, &data.test, &data.task, metric, average)?)
    } else {
        None
    };
    if !task.training {
        return Ok(TrainingOutcome {
            plan_name: info.name,
            plan_digest,
            updates: 0,
            samples_seen: 0,
            training_samples: data.train.len(),
            test_samples: data.test.len(),
            final_loss: 0.0,
            training_metric: None,
            test_metric: None,
            validation_global,
            validation_local: None,
            privacy: None,
            learning_rate: None,
            plan_logs: plan.take_logs(),
            training_ms: 0.0,
            data_ms,
            step_ms: 0.0,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        });
    }
    // Central DP measures the update from the parameters training starts at.
    let start = match (dp, received) {
        (Some(d), Some(tensors)) if d.kind == DpKind::Central => Some(tensors),
        (Some(d), None) if d.kind == DpKind::Central => Some(plan.get_parameters()?),
        _ => None,
    };

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
    // Samples drawn so far: each draw of an image takes its own
    // augmentation stream, numbered by this count.
    let mut drawn = 0u64;
    let mut step_ms = 0.0;
    while let Some(indices) = schedule.next_batch() {
        let building = Instant::now();
        let batch = data.train.batch(&indices, drawn)?;
        drawn += indices.len() as u64;
        let stepping = Instant::now();
        data_ms += (stepping - building).as_secs_f64() * 1e3;
        let report = plan.training_step(batch)?;
        step_ms += stepping.elapsed().as_secs_f64() * 1e3;
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

    let mut parameters = plan.get_parameters()?;
    if let (Some(dp), Some(start)) = (dp, &start) {
        let key = task.noise_key()?;
        let mut rng = StreamSeed::for_update_noise(&key, seed, task.round, &task.node_id).rng();
        privatize_update(start, &mut parameters, dp, &mut rng)?;
    }
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
            ("model_args".to_string(), task.model_args.to_string()),
        ]);
        if let Some(experiment) = &task.experiment_id {
            metadata.insert("experiment_id".to_string(), experiment.clone());
        }
        tensors::write_file(path, &parameters, &metadata)
            .map_err(|e| TrainingError::Parameters(e.to_string()))?;
    }
    let (training_metric, test_metric) = if task.report_split_metrics {
        (
            evaluate(plan, &data.train, &data.task)?,
            evaluate(plan, &data.test, &data.task)?,
        )
    } else {
        (None, None)
    };
    let validation_local = if args.test_on_local_updates {
        // Central noise was added to the copy that leaves the node: score
        // what the researcher receives.
        if start.is_some() {
            plan.set_parameters(&parameters)?;
        }
        Some(validate(plan, &data.test, &data.task, metric, average)?)
    } else {
        None
    };
    let privacy = dp.map(|d| d.spent(update, loader.batch_size, data.train.len()));
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
        validation_global,
        validation_local,
        privacy,
        learning_rate,
        plan_logs: plan.take_logs(),
        training_ms,
        data_ms,
        step_ms,
        total_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}
