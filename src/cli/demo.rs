//! `fedwasm demo`: a whole federation on this machine, in one command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use fedwasm::demo::{DemoOptions, DemoPlan, ShardSplit, run_demo};
use fedwasm::researcher::ServerOptimizer;
use fedwasm::training::{DpArgs, DpKind};

/// Plans the demo can train.
#[derive(Clone, Copy, ValueEnum)]
enum PlanChoice {
    /// Logistic regression on breast cancer (data/breast_cancer.csv).
    LogisticRegression,
    /// A multi-layer perceptron on handwritten digits (data/digits.csv).
    Mlp,
    /// A CNN on image patches of stained nuclei (data/nuclei/, an image folder).
    Cnn,
    /// A U-Net segmenting nuclei in image tiles (data/nuclei-masks/, mask manifests).
    Unet,
    /// A ResNet-18 (torchvision's names; small-input stem, width 8) on the nuclei patches.
    Resnet,
}

/// How shards are drawn.
#[derive(Clone, Copy, ValueEnum)]
enum SplitChoice {
    /// Uniformly at random.
    Iid,
    /// Label-skewed, Dirichlet(alpha) per label.
    Dirichlet,
}

/// Aggregators.
#[derive(Clone, Copy, ValueEnum)]
enum AggregatorChoice {
    /// Sample-weighted averaging.
    Fedavg,
    /// Scaffold (control variates; server_lr 1).
    Scaffold,
    /// Coordinate-wise median (robust; every node weighs the same).
    Median,
    /// Coordinate-wise mean without the top and bottom 20% (robust).
    TrimmedMean,
    /// FedAvg of updates clipped to the round's median norm (robust).
    ClippedFedavg,
}

/// Optimizers of the global model.
#[derive(Clone, Copy, ValueEnum)]
enum ServerOptimizerChoice {
    /// Server SGD (lr 1 is plain FedAvg).
    Sgd,
    /// Server momentum.
    Fedavgm,
    /// FedAdagrad.
    Fedadagrad,
    /// FedAdam.
    Fedadam,
    /// FedYogi.
    Fedyogi,
}

/// Differential privacy mechanisms.
#[derive(Clone, Copy, ValueEnum)]
enum DpChoice {
    /// DP-SGD in the plan: per-sample clipping and noise at every step.
    Local,
    /// The node clips its update and adds noise once per round.
    Central,
}

/// Options of `fedwasm demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// FedAvg rounds.
    #[arg(long, default_value_t = 10)]
    rounds: u32,
    /// The plan (and its dataset).
    #[arg(long, value_enum, default_value = "logistic-regression")]
    plan: PlanChoice,
    /// Seed of the shards and of training.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How rows are dealt to nodes.
    #[arg(long, value_enum, default_value = "iid")]
    split: SplitChoice,
    /// Dirichlet concentration for --split dirichlet (smaller = more skewed).
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// Experiments directory (default: $FEDWASM_DIR/var/experiments).
    #[arg(long)]
    experiments_dir: Option<PathBuf>,
    /// The aggregator.
    #[arg(long, value_enum, default_value = "fedavg")]
    aggregator: AggregatorChoice,
    /// Optimizer arguments for the nodes, as JSON (default: the plan's demo settings;
    /// plain SGD lr 0.1 with Scaffold).
    #[arg(long)]
    optimizer_args: Option<String>,
    /// Model arguments merged over the plan's demo defaults, as JSON
    /// (e.g. '{"hidden": [32], "scaling": "min-max"}').
    #[arg(long)]
    model_args: Option<String>,
    /// Local updates per round.
    #[arg(long)]
    num_updates: Option<usize>,
    /// Optimize the global model with this server optimizer (default: none, plain FedAvg).
    #[arg(long, value_enum)]
    agg_optimizer: Option<ServerOptimizerChoice>,
    /// Server learning rate of --agg-optimizer (default: the optimizer's).
    #[arg(long)]
    server_lr: Option<f32>,
    /// Hold out this fraction of each node's rows: nodes then validate the
    /// global model before training and their own after it, and a final
    /// validation round scores the last global model.
    #[arg(long, default_value_t = 0.0)]
    test_ratio: f64,
    /// Train a random fraction of the nodes each round (at least one).
    #[arg(long)]
    fraction: Option<f64>,
    /// Differential privacy on the nodes; they then run in privacy mode,
    /// where validation scores stay on them (so not with --test-ratio).
    #[arg(long, value_enum, conflicts_with = "test_ratio")]
    dp: Option<DpChoice>,
    /// Noise multiplier of --dp (noise std in units of --clip).
    #[arg(long, default_value_t = 1.0, requires = "dp")]
    sigma: f64,
    /// Clipping bound of --dp: per-sample gradient norm (local) or update norm (central).
    #[arg(long, default_value_t = 1.0, requires = "dp")]
    clip: f64,
    /// δ for which --dp reports ε.
    #[arg(long, default_value_t = 1e-5, requires = "dp")]
    delta: f64,
    /// Cargo target folder for building the plan (default: plans/target in the checkout).
    #[arg(long, env = "FEDWASM_PLAN_TARGET_DIR")]
    plan_target_dir: Option<PathBuf>,
}

/// The folder holding `plans/` and `data/`: the current directory when it is
/// a checkout, else the checkout this binary was built from.
fn source_dir() -> anyhow::Result<PathBuf> {
    let here = std::env::current_dir().context("reading the current directory")?;
    let built_from = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [here, built_from]
        .into_iter()
        .find(|d| is_checkout(d))
        .context("cannot find the fedwasm checkout (plans/ and data/); run the demo from it")
}

fn is_checkout(dir: &Path) -> bool {
    dir.join("plans/logistic-regression").is_dir() && dir.join("data/breast_cancer.csv").is_file()
}

/// The optimizer chosen on the command line, with the paper's defaults.
fn server_optimizer(
    choice: ServerOptimizerChoice,
    lr: Option<f32>,
) -> anyhow::Result<ServerOptimizer> {
    let name = match choice {
        ServerOptimizerChoice::Sgd => "sgd",
        ServerOptimizerChoice::Fedavgm => "fedavgm",
        ServerOptimizerChoice::Fedadagrad => "fedadagrad",
        ServerOptimizerChoice::Fedadam => "fedadam",
        ServerOptimizerChoice::Fedyogi => "fedyogi",
    };
    let mut value = serde_json::json!({ "name": name });
    if let Some(lr) = lr {
        value["lr"] = serde_json::json!(lr);
    }
    let optimizer: ServerOptimizer =
        serde_json::from_value(value).context("server optimizer settings")?;
    optimizer.check().map_err(anyhow::Error::msg)?;
    Ok(optimizer)
}

/// Run the demo and print its result.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let work = tempfile::tempdir().context("creating a temporary folder")?;
    let source = source_dir()?;
    let options = DemoOptions {
        nodes: args.nodes,
        rounds: args.rounds,
        plan: match args.plan {
            PlanChoice::LogisticRegression => DemoPlan::LogisticRegression,
            PlanChoice::Mlp => DemoPlan::Mlp,
            PlanChoice::Cnn => DemoPlan::Cnn,
            PlanChoice::Unet => DemoPlan::Unet,
            PlanChoice::Resnet => DemoPlan::Resnet,
        },
        seed: args.seed,
        split: match args.split {
            SplitChoice::Iid => ShardSplit::Iid,
            SplitChoice::Dirichlet => ShardSplit::Dirichlet { alpha: args.alpha },
        },
        plan_target_dir: match args.plan_target_dir {
            Some(dir) => dir,
            None => source.join("plans").join("target"),
        },
        source_dir: source,
        work_dir: work.path().to_path_buf(),
        experiments_dir: args.experiments_dir,
        worker_exe: std::env::current_exe().context("locating the fedwasm executable")?,
        optimizer_args: args
            .optimizer_args
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("--optimizer-args must be a JSON object")?,
        model_args: args
            .model_args
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("--model-args must be a JSON object")?,
        num_updates: args.num_updates,
        aggregator: match args.aggregator {
            AggregatorChoice::Fedavg => "fedavg".into(),
            AggregatorChoice::Scaffold => "scaffold".into(),
            AggregatorChoice::Median => "median".into(),
            AggregatorChoice::TrimmedMean => "trimmed_mean".into(),
            AggregatorChoice::ClippedFedavg => "clipped_fedavg".into(),
        },
        agg_optimizer: args
            .agg_optimizer
            .map(|choice| server_optimizer(choice, args.server_lr))
            .transpose()?,
        test_ratio: args.test_ratio,
        fraction: args.fraction,
        dp: match args.dp {
            Some(choice) => {
                let dp = DpArgs {
                    kind: match choice {
                        DpChoice::Local => DpKind::Local,
                        DpChoice::Central => DpKind::Central,
                    },
                    sigma: args.sigma,
                    clip: args.clip,
                    delta: args.delta,
                };
                dp.check().context("--dp")?;
                Some(dp)
            }
            None => None,
        },
        console: true,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(run_demo(options))?;
    let curve: Vec<String> = report
        .holdout_by_round
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect();
    println!("held-out by round: {}", curve.join(" "));
    println!(
        "held-out {} on {} samples no node saw",
        report.holdout, report.holdout_rows
    );
    super::summary::print_summary(&report.history);
    println!("experiment folder: {}", report.experiment_path.display());
    if report.tensorboard_path.is_dir() {
        println!(
            "training curves: tensorboard --logdir {}",
            report.tensorboard_path.display()
        );
    } else {
        println!("no training curves: in privacy mode the losses stayed on the nodes");
    }
    Ok(ExitCode::SUCCESS)
}
