//! `fedwasm evaluate PLAN PARAMS --data FILE --target COLUMN`: score a saved
//! model (a round's global parameters, a breakpoint's, a `plan check
//! --output`) on a local table, with the metrics the nodes validate with,
//! computed by the host from the plan's predictions.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use fedwasm::plan_build::build_plan;
use fedwasm::researcher::aggregators::{AggregationError, align_parameters};
use fedwasm::sandbox::random::StreamSeed;
use fedwasm::sandbox::{Sandbox, SandboxConfig};
use fedwasm::training::{ScoredRows, TrainingArgs, score_parameters};

/// Score saved parameters on a table.
#[derive(Args)]
pub struct EvaluateArgs {
    /// The plan component, or the folder of a plan crate to build first.
    plan: PathBuf,
    /// The parameters (safetensors), e.g. `rounds/global_0010.safetensors`.
    params: PathBuf,
    /// The CSV or NPY table to score on (header line, numeric cells).
    #[arg(long)]
    data: PathBuf,
    /// The target column.
    #[arg(long)]
    target: Option<String>,
    /// Score only the rows this column marks 1 (a designated test part),
    /// scaled from the others as a node registered with it scales them.
    #[arg(long)]
    split_column: Option<String>,
    /// model_args as a JSON object: those the model was trained with.
    #[arg(long, default_value = "{}")]
    model_args: String,
    /// One metric (ACCURACY, F1_SCORE, PRECISION, RECALL, MEAN_SQUARE_ERROR,
    /// MEAN_ABSOLUTE_ERROR, EXPLAINED_VARIANCE); default: every metric of
    /// the plan's task.
    #[arg(long)]
    metric: Option<String>,
    /// The metric's arguments as JSON, e.g. '{"average": "macro"}'.
    #[arg(long, default_value = "{}")]
    metric_args: String,
}

/// Run `fedwasm evaluate`.
pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let model_args: serde_json::Value =
        serde_json::from_str(&args.model_args).context("--model-args is not valid JSON")?;
    let metric_args: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&args.metric_args).context("--metric-args is not a JSON object")?;
    if args.metric.is_none() && !metric_args.is_empty() {
        bail!("--metric-args needs --metric: name the metric they apply to");
    }
    let metric = match &args.metric {
        None => None,
        Some(name) => {
            let checked = TrainingArgs {
                test_metric: Some(name.clone()),
                test_metric_args: metric_args,
                ..TrainingArgs::default()
            };
            let (metric, average) = checked.validation().context("--metric")?;
            metric.map(|m| (m, average))
        }
    };
    let plan = if args.plan.is_dir() {
        build_plan(&args.plan, None, None)
            .with_context(|| format!("building the plan in {}", args.plan.display()))?
            .path
    } else {
        args.plan.clone()
    };
    let sandbox = Sandbox::new(SandboxConfig::default()).context("starting the sandbox")?;
    let loaded = sandbox
        .load_file(&plan)
        .with_context(|| format!("loading {}", plan.display()))?;
    let (tensors, metadata) = fedwasm::tensors::read_file(&args.params)
        .with_context(|| format!("reading {}", args.params.display()))?;
    // The plan's own parameters for these model_args: the names and shapes
    // the file must have, in the plan's order.
    let mut instance = sandbox
        .instantiate(&loaded, &StreamSeed::for_plan(0, 0, "evaluation"))
        .context("starting the plan")?;
    instance
        .init_model(&model_args.to_string())
        .context("init-model with --model-args")?;
    let name = instance.describe().context("describing the plan")?.name;
    let expected = instance
        .get_parameters()
        .context("reading the plan's parameters")?;
    let parameters = align_parameters("the file", &expected, tensors).map_err(|e| {
        let reason = match e {
            AggregationError::Mismatch { reason, .. } => reason,
            other => other.to_string(),
        };
        anyhow::anyhow!(
            "{} does not fit the plan `{name}` with these --model-args: it {reason}",
            args.params.display()
        )
    })?;
    let table = fedwasm::dataset::Table::open(&args.data)
        .with_context(|| format!("reading {}", args.data.display()))?;
    let scores = score_parameters(
        &sandbox,
        &loaded,
        &model_args,
        &parameters,
        ScoredRows {
            table: &table,
            target: args.target.as_deref(),
            split_column: args.split_column.as_deref(),
        },
        metric,
    )
    .context("scoring")?;
    let origin = match (metadata.get("experiment_id"), metadata.get("round")) {
        (Some(experiment), Some(round)) => format!(" (round {round} of {experiment})"),
        _ => String::new(),
    };
    println!("plan       {name} (sha256 {})", loaded.digest());
    println!("parameters {}{origin}", args.params.display());
    println!(
        "data       {} rows of {}",
        scores.first().map_or(0, |s| s.samples),
        args.data.display()
    );
    for score in scores {
        println!("{:<20} {:.6}", score.metric, score.value);
    }
    Ok(ExitCode::SUCCESS)
}
