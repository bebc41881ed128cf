//! `fedwasm demo`: a whole federation on one machine — embedded broker and
//! repository, nodes holding disjoint seeded shards of a shipped dataset, the
//! plan built and approved, FedAvg rounds, and the global model scored on rows
//! no node saw.
//!
//! The federation itself is a [`LocalFederation`]; `shards.rs` deals the
//! data to the nodes; this file builds the plan, runs the experiment and
//! scores the result.

mod shards;

use std::path::{Path, PathBuf};

use serde_json::json;

use self::shards::{Holdout, image_shards, mask_shards, table_shards};
pub use self::shards::{ShardSplit, deal_all, deal_rows};
use crate::digest::Sha256Digest;
use crate::local_federation::{LocalFederation, LocalFederationConfig, LocalNode};
use crate::researcher::{Experiment, ExperimentSettings, History, Tags};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::training::{Metric, ScoredData, ScoredRows, TrainingArgs};

/// Which example plan (and dataset) the demo trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoPlan {
    /// `plans/logistic-regression` on `data/breast_cancer.csv`.
    LogisticRegression,
    /// `plans/mlp` on `data/digits.csv`.
    Mlp,
    /// `plans/cnn` on the image folder `data/nuclei/train` (scored on
    /// `data/nuclei/test`).
    Cnn,
    /// `plans/unet` on the mask manifest `data/nuclei-masks/train.csv`
    /// (scored by Dice on `data/nuclei-masks/test.csv`).
    Unet,
    /// `plans/resnet` (ResNet-18, small-input stem, width 8) on the same
    /// image folders as [`DemoPlan::Cnn`].
    Resnet,
}
/// Everything the demo can vary.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// FedAvg rounds.
    pub rounds: u32,
    /// Plan and dataset.
    pub plan: DemoPlan,
    /// Seed of the shards and of training.
    pub seed: u64,
    /// How shards are drawn.
    pub split: ShardSplit,
    /// The repository checkout (holds `plans/` and `data/`).
    pub source_dir: PathBuf,
    /// Cargo target folder for building the plan.
    pub plan_target_dir: PathBuf,
    /// Scratch folder for node folders, shards and the repository.
    pub work_dir: PathBuf,
    /// Experiments directory (default: `$FEDWASM_DIR/var/experiments`).
    pub experiments_dir: Option<PathBuf>,
    /// The `fedwasm` executable the nodes start training workers with.
    pub worker_exe: PathBuf,
    /// `"fedavg"` or `"scaffold"`.
    pub aggregator: String,
    /// Replaces the plan's default optimizer arguments (e.g. `{"lr": 0.1}`).
    pub optimizer_args: Option<serde_json::Value>,
    /// Keys merged over the plan's demo model arguments (e.g. `{"hidden": [32]}`).
    pub model_args: Option<serde_json::Map<String, serde_json::Value>>,
    /// Local updates per round (default 50).
    pub num_updates: Option<usize>,
    /// Optimizer of the global model (none: plain FedAvg).
    pub agg_optimizer: Option<crate::researcher::ServerOptimizer>,
    /// Fraction of each node's rows held out for validation on the node; above
    /// 0 the nodes score the global model before training and their own
    /// after it, and a final validation round follows the last.
    pub test_ratio: f64,
    /// Train a random fraction of the nodes each round (sampling strategy).
    pub fraction: Option<f64>,
    /// Differential privacy on the nodes.
    pub dp: Option<crate::training::DpArgs>,
    /// Print progress.
    pub console: bool,
}

/// What the demo produced.
#[derive(Debug)]
pub struct DemoReport {
    /// Held-out metric of the final global model.
    pub holdout: Metric,
    /// The same metric for the global model after each round.
    pub holdout_by_round: Vec<f64>,
    /// Rows held out.
    pub holdout_rows: usize,
    /// The experiment's folder.
    pub experiment_path: PathBuf,
    /// Its TensorBoard event files.
    pub tensorboard_path: PathBuf,
    /// Every round.
    pub history: History,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Bad options.
    #[error("{0}")]
    Options(String),
    /// A step of setting up the federation failed.
    #[error("{what}: {reason}")]
    Setup {
        /// The step.
        what: String,
        /// Why.
        reason: String,
    },
    /// The experiment failed.
    #[error(transparent)]
    Experiment(#[from] crate::researcher::ExperimentError),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DemoError + '_ {
    move |e| DemoError::Setup {
        what: what.into(),
        reason: e.to_string(),
    }
}
/// The sandbox the demo's nodes' worker processes run, with a shared cache
/// of compiled plans in `cache_dir`.
fn node_sandbox(cache_dir: &Path) -> SandboxConfig {
    SandboxConfig {
        interruption: crate::sandbox::Interruption::External,
        cache_dir: Some(cache_dir.to_path_buf()),
        ..SandboxConfig::default()
    }
}

/// Run the demo.
pub async fn run_demo(options: DemoOptions) -> Result<DemoReport, DemoError> {
    let (plan_dir, data_file, target, model_args, training_args) = match options.plan {
        DemoPlan::LogisticRegression => (
            "logistic-regression",
            "breast_cancer.csv",
            "diagnosis",
            json!({"n_features": 30, "n_classes": 2}),
            json!({"num_updates": 50, "loader_args": {"batch_size": 32},
                   "optimizer_args": {"lr": 0.1}, "log_interval": 10,
                   "random_seed": options.seed, "seed_per_round": true}),
        ),
        DemoPlan::Mlp => (
            "mlp",
            "digits.csv",
            "digit",
            json!({"n_features": 64, "n_classes": 10, "hidden": [64]}),
            json!({"num_updates": 50, "loader_args": {"batch_size": 32},
                   "optimizer_args": {"lr": 0.1, "momentum": 0.9}, "log_interval": 10,
                   "random_seed": options.seed, "seed_per_round": true}),
        ),
        // 16×16 patches, normalized with the training patches' mean and std
        // (0.167, 0.120), flipped both ways at random: nuclei have no
        // orientation.
        DemoPlan::Cnn => (
            "cnn",
            "nuclei",
            "class",
            json!({"input_shape": [1, 16, 16], "n_classes": 2, "channels": [8, 16],
                   "hidden": [32], "dropout": 0.1, "mean": 0.167, "std": 0.12,
                   "horizontal_flip": true, "vertical_flip": true}),
            json!({"num_updates": 20, "loader_args": {"batch_size": 32},
                   "optimizer_args": {"lr": 0.05, "momentum": 0.9}, "log_interval": 5,
                   "random_seed": options.seed, "seed_per_round": true}),
        ),
        // A ResNet-18 on the same patches: the small-input stem (16×16 is
        // far below ImageNet's 224×224) and 8 channels in its first layer.
        DemoPlan::Resnet => (
            "resnet",
            "nuclei",
            "class",
            json!({"input_shape": [1, 16, 16], "n_classes": 2, "depth": 18, "width": 8,
                   "small_input": true, "mean": 0.167, "std": 0.12,
                   "horizontal_flip": true, "vertical_flip": true}),
            json!({"num_updates": 20, "loader_args": {"batch_size": 32},
                   "optimizer_args": {"lr": 0.05, "momentum": 0.9}, "log_interval": 5,
                   "random_seed": options.seed, "seed_per_round": true}),
        ),
        // 32×32 tiles and their masks, normalized as the patches are,
        // flipped both ways at random (the masks with them).
        DemoPlan::Unet => (
            "unet",
            "nuclei-masks",
            "mask",
            json!({"input_shape": [1, 32, 32], "n_classes": 2, "base_channels": 8, "depth": 2,
                   "mean": 0.167, "std": 0.12, "horizontal_flip": true, "vertical_flip": true}),
            json!({"num_updates": 20, "loader_args": {"batch_size": 16},
                   "optimizer_args": {"lr": 0.05, "momentum": 0.9}, "log_interval": 5,
                   "random_seed": options.seed, "seed_per_round": true}),
        ),
    };
    // Scaffold's control variates assume plain SGD on the nodes: momentum
    // would inflate each node's estimate of its gradient.
    let mut training_args = training_args;
    let mut model_args = model_args;
    for (key, value) in options.model_args.iter().flatten() {
        model_args[key] = value.clone();
    }
    if let Some(updates) = options.num_updates {
        training_args["num_updates"] = json!(updates);
    }
    if let Some(args) = &options.optimizer_args {
        training_args["optimizer_args"] = args.clone();
    } else if options.aggregator == "scaffold" {
        training_args["optimizer_args"] = json!({"lr": 0.1});
    }
    if options.test_ratio > 0.0 {
        training_args["test_ratio"] = json!(options.test_ratio);
        training_args["test_on_local_updates"] = json!(true);
        training_args["test_on_global_updates"] = json!(true);
    }
    if let Some(dp) = &options.dp {
        training_args["dp_args"] = serde_json::to_value(dp)
            .map_err(|e| DemoError::Options(format!("dp arguments: {e}")))?;
    }
    let tag = match options.plan {
        DemoPlan::LogisticRegression => "#breast-cancer",
        DemoPlan::Mlp => "#digits",
        DemoPlan::Cnn | DemoPlan::Resnet => "#nuclei",
        DemoPlan::Unet => "#nuclei-masks",
    };
    let say = |line: String| {
        if options.console {
            println!("{line}");
        }
    };

    // Data: shards for the nodes and a held-out part for the researcher.
    std::fs::create_dir_all(&options.work_dir).map_err(setup("creating the work folder"))?;
    let data = match options.plan {
        DemoPlan::Cnn | DemoPlan::Resnet => image_shards(&options, data_file, tag)?,
        DemoPlan::Unet => mask_shards(&options, data_file, tag)?,
        _ => table_shards(&options, data_file, target, tag)?,
    };
    // The plan, built and hashed.
    say(format!("building plans/{plan_dir} for wasm32-wasip2 …"));
    let built = crate::plan_build::build_plan(
        &options.source_dir.join("plans").join(plan_dir),
        Some(&options.work_dir.join(format!("{plan_dir}.wasm"))),
        Some(&options.plan_target_dir),
    )
    .map_err(setup("building the plan"))?;
    let digest = Sha256Digest::of_file(&built.path).map_err(setup("hashing the plan"))?;
    // The nodes share one cache of compiled plans, filled here while the
    // federation starts: otherwise every node compiles the plan at once in
    // the first round (on one machine, that was 0.4 s of a 1.1 s demo).
    let compiled = options.work_dir.join("compiled");
    let prewarm = {
        let (plan, cache_dir) = (built.path.clone(), compiled.clone());
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let sandbox = Sandbox::new(node_sandbox(&cache_dir)).map_err(|e| e.to_string())?;
            sandbox
                .load_file(&plan)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    };

    // The federation: broker, repository, one node per shard.
    let mut nodes = Vec::new();
    for (i, (dataset, samples)) in data.datasets.into_iter().enumerate() {
        let id = format!("node-{}", i + 1);
        say(format!("{id}: {samples} samples tagged {tag}"));
        nodes.push(LocalNode {
            id,
            datasets: vec![dataset],
        });
    }
    let mut config = LocalFederationConfig::new(
        options.work_dir.join("federation"),
        nodes,
        options.worker_exe.clone(),
    );
    config.approved_plans = vec![(digest, Some(plan_dir.to_string()))];
    config.compiled_plans = Some(compiled.clone());
    let federation = LocalFederation::start(config)
        .await
        .map_err(setup("starting the federation"))?;

    let mut settings = ExperimentSettings {
        tags: Some(Tags::One(tag.into())),
        training_plan: Some(built.path.clone()),
        model_args: model_args.as_object().cloned().unwrap_or_default(),
        training_args: serde_json::from_value::<TrainingArgs>(training_args)
            .map_err(setup("demo training arguments"))?,
        round_limit: Some(options.rounds),
        tensorboard: true,
        agg_optimizer: options.agg_optimizer.clone(),
        aggregator: options.aggregator.clone(),
        experiments_dir: options.experiments_dir.clone(),
        console: options.console,
        search_wait_secs: 30.0,
        compiler: Some(options.worker_exe.clone()),
        ..federation.experiment_settings()
    };
    if let Some(fraction) = options.fraction {
        settings.node_selection_strategy = "sampling".into();
        settings.sampling_fraction = fraction;
        settings.min_nodes = 1;
    }
    let mut experiment = Experiment::new(settings).await?;
    prewarm
        .await
        .map_err(setup("compiling the plan"))?
        .map_err(|reason| DemoError::Setup {
            what: "compiling the plan".into(),
            reason,
        })?;
    say(format!(
        "experiment {} with {} nodes, plan {} ({digest})",
        experiment.id(),
        experiment.training_data().map_or(0, |d| d.node_ids().len()),
        experiment.training_plan_name().unwrap_or_default(),
    ));
    let run = experiment.run(None, false).await;
    let stopped = federation.stop().await;
    run?;
    stopped.map_err(setup("stopping the federation"))?;

    // Score the global model on the held-out rows, in the same sandbox.
    let global = experiment
        .global_parameters()
        .map(<[_]>::to_vec)
        .ok_or_else(|| DemoError::Options("no round ran".into()))?;
    // The nodes' configuration: the plan is already compiled in their cache.
    let sandbox = Sandbox::new(node_sandbox(&compiled)).map_err(setup("starting the sandbox"))?;
    let loaded = sandbox
        .load_file(&built.path)
        .map_err(setup("loading the plan"))?;
    let scored = || match &data.holdout {
        Holdout::Images(images) => ScoredData::Images(images),
        Holdout::Table(table) => ScoredData::Rows(ScoredRows {
            table,
            target: Some(target),
            split_column: None,
        }),
    };
    let metric =
        crate::training::evaluate_parameters(&sandbox, &loaded, &model_args, &global, scored())
            .map_err(setup("evaluating the global model"))?
            .ok_or_else(|| DemoError::Options("no held-out rows".into()))?;
    // Every round's global model too, for learning curves.
    let mut by_round = Vec::new();
    for (_, path) in experiment.aggregated_params() {
        let (params, _) =
            crate::tensors::read_file(&path).map_err(setup("reading a round's model"))?;
        let params = crate::researcher::aggregators::align_parameters("round", &global, params)
            .map_err(setup("reading a round's model"))?;
        let value =
            crate::training::evaluate_parameters(&sandbox, &loaded, &model_args, &params, scored())
                .map_err(setup("evaluating a round's model"))?
                .map_or(f64::NAN, |m| m.value);
        by_round.push(value);
    }
    let report = DemoReport {
        holdout: metric,
        holdout_by_round: by_round,
        holdout_rows: data.holdout.len(),
        experiment_path: experiment.experimentation_path().to_path_buf(),
        tensorboard_path: experiment.tensorboard_path(),
        history: experiment.history().clone(),
    };
    experiment.close().await;
    Ok(report)
}
