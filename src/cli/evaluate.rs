//! `fedwasm evaluate PLAN PARAMS --data FILE_OR_DIR [--target COLUMN]`:
//! score a saved model (a round's global parameters, a breakpoint's, a
//! `plan check --output`) on a local table or image folder (or CSV image
//! manifest), with the metrics the nodes validate with, computed by the
//! host from the plan's predictions.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use fedwasm::dataset::{LoadedImages, Table, read_images};
use fedwasm::plan_build::build_plan;
use fedwasm::researcher::aggregators::{AggregationError, align_parameters};
use fedwasm::sandbox::random::StreamSeed;
use fedwasm::sandbox::{Sandbox, SandboxConfig};
use fedwasm::training::{ScoredData, ScoredRows, TrainingArgs, image_test_part, score_parameters};

/// Score saved parameters on a table or on images.
#[derive(Args)]
pub struct EvaluateArgs {
    /// The plan component, or the folder of a plan crate to build first.
    plan: PathBuf,
    /// The parameters (safetensors), e.g. `rounds/global_0010.safetensors`.
    params: PathBuf,
    /// The CSV or NPY table to score on (header line, numeric cells), an
    /// image folder (one sub-folder per class), or with --image-column a
    /// CSV manifest of images.
    #[arg(long)]
    data: PathBuf,
    /// The target column (a table's, or a manifest's class column).
    #[arg(long)]
    target: Option<String>,
    /// --data is a CSV manifest of images: the column of image paths
    /// (relative to the CSV); --target names the class column, or the
    /// label columns separated by commas, or --mask-column the masks.
    #[arg(long)]
    image_column: Option<String>,
    /// For an image manifest: the column of mask image paths (segmentation).
    #[arg(long, requires = "image_column")]
    mask_column: Option<String>,
    /// Score only the rows (or a manifest's images) this column marks 1 (a
    /// designated test part), prepared as a node registered with it
    /// prepares them.
    #[arg(long)]
    split_column: Option<String>,
    /// model_args as a JSON object: those the model was trained with.
    /// Default: the ones the parameter file records (a round's global
    /// parameters and `plan check --output` record them), else `{}`.
    #[arg(long)]
    model_args: Option<String>,
    /// One metric (ACCURACY, F1_SCORE, PRECISION, RECALL, AUC, DICE,
    /// MEAN_SQUARE_ERROR, MEAN_ABSOLUTE_ERROR, EXPLAINED_VARIANCE); default:
    /// every metric of the plan's task.
    #[arg(long)]
    metric: Option<String>,
    /// The metric's arguments as JSON, e.g. '{"average": "macro"}'.
    #[arg(long, default_value = "{}")]
    metric_args: String,
    /// Longest time compiling the plan may take, in seconds.
    #[arg(long, default_value_t = 120.0)]
    compile_timeout_secs: f64,
    /// Most memory compiling the plan may take, in MiB.
    #[arg(long, default_value_t = 2048)]
    compile_memory_mib: u64,
    /// Threads the plan's tensor operations run on (0: every core); the
    /// scores are the same whatever the number.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Run `fedwasm evaluate`.
pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
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
    // The plan may come from anyone: it is compiled in a child process
    // under limits, as a node compiles it.
    let exe = std::env::current_exe().context("locating the fedwasm executable")?;
    let config = SandboxConfig {
        compile_timeout_secs: args.compile_timeout_secs,
        compile_memory_mib: args.compile_memory_mib,
        compute_threads: args.threads,
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(config.compiling_with(exe)).context("starting the sandbox")?;
    let loaded = sandbox
        .load_file(&plan)
        .with_context(|| format!("loading {}", plan.display()))?;
    let (tensors, metadata) = fedwasm::tensors::read_file(&args.params)
        .with_context(|| format!("reading {}", args.params.display()))?;
    check_plan_digest(&args, &metadata, &loaded.digest())?;
    let (model_args, model_args_origin) = model_args(&args, &metadata)?;
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
    let budget = sandbox.config().memory_bytes();
    let local = read_data(&args, budget)?;
    let data = match &local {
        LocalData::Images(images, None) => ScoredData::Images(images),
        LocalData::Images(images, Some(test)) => ScoredData::ImageTestPart { images, test },
        LocalData::Table(table) => ScoredData::Rows(ScoredRows {
            table,
            target: args.target.as_deref(),
            split_column: args.split_column.as_deref(),
        }),
    };
    let scores = score_parameters(&sandbox, &loaded, &model_args, &parameters, data, metric)
        .context("scoring")?;
    let origin = match (metadata.get("experiment_id"), metadata.get("round")) {
        (Some(experiment), Some(round)) => format!(" (round {round} of {experiment})"),
        _ => String::new(),
    };
    println!("plan       {name} (sha256 {})", loaded.digest());
    println!("parameters {}{origin}", args.params.display());
    println!("model_args {model_args} ({model_args_origin})");
    println!(
        "data       {} {} of {}",
        scores.first().map_or(0, |s| s.samples),
        match local {
            LocalData::Images(..) => "images",
            LocalData::Table(_) => "rows",
        },
        args.data.display()
    );
    for score in scores {
        println!("{:<20} {:.6}", score.metric, score.value);
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuse a parameter file that records another plan than the one given:
/// its names and shapes may fit, its values would mean something else.
fn check_plan_digest(
    args: &EvaluateArgs,
    metadata: &Metadata,
    plan: &fedwasm::digest::Sha256Digest,
) -> anyhow::Result<()> {
    match metadata.get("plan_sha256") {
        Some(recorded) if !recorded.is_empty() && *recorded != plan.to_hex() => bail!(
            "{} was trained with the plan of sha256 {recorded}, not this one (sha256 {plan}); pass the component it was trained with",
            args.params.display()
        ),
        _ => Ok(()),
    }
}

/// The model arguments to score with, and where they come from: the flag
/// (saying so when it overrides what the file records), the file's record,
/// or none (`{}`) for a file that records none.
fn model_args(
    args: &EvaluateArgs,
    metadata: &Metadata,
) -> anyhow::Result<(serde_json::Value, &'static str)> {
    let recorded = metadata
        .get("model_args")
        .map(|text| {
            serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .filter(serde_json::Value::is_object)
                .with_context(|| {
                    format!(
                        "{}'s recorded model_args are not a JSON object; pass --model-args",
                        args.params.display()
                    )
                })
        })
        .transpose()?;
    let Some(flag) = &args.model_args else {
        return Ok(match recorded {
            Some(value) => (value, "recorded in the parameter file"),
            None => (
                serde_json::json!({}),
                "none recorded in the parameter file; pass --model-args if the model was trained with some",
            ),
        });
    };
    let given: serde_json::Value =
        serde_json::from_str(flag).context("--model-args is not valid JSON")?;
    let origin = match recorded {
        Some(value) if value != given => {
            "from --model-args, overriding those recorded in the parameter file"
        }
        _ => "from --model-args",
    };
    Ok((given, origin))
}

/// A parameter file's string metadata.
type Metadata = std::collections::BTreeMap<String, String>;

/// What `--data` holds: images (with a manifest's test part when
/// `--split-column` names one), or a table.
enum LocalData {
    Images(LoadedImages, Option<Vec<bool>>),
    Table(Table),
}

/// Read `--data` as the arguments describe it: an image folder or
/// manifest (within `budget` bytes), or a table.
fn read_data(args: &EvaluateArgs, budget: usize) -> anyhow::Result<LocalData> {
    let manifest = super::manifest::manifest_columns(
        args.image_column.clone(),
        args.target.as_deref(),
        args.mask_column.clone(),
    )?;
    if !args.data.is_dir() && manifest.is_none() {
        let table =
            Table::open(&args.data).with_context(|| format!("reading {}", args.data.display()))?;
        return Ok(LocalData::Table(table));
    }
    if args.split_column.is_some() && manifest.is_none() {
        bail!(
            "--split-column applies to tables and image manifests; an image folder is scored whole"
        );
    }
    let images = read_images(&args.data, manifest.as_ref(), budget)
        .with_context(|| format!("reading the images in {}", args.data.display()))?;
    let test = match &args.split_column {
        Some(column) => Some(
            image_test_part(&args.data, column, &images)
                .with_context(|| format!("reading --split-column from {}", args.data.display()))?,
        ),
        None => None,
    };
    Ok(LocalData::Images(images, test))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EvaluateArgs,
    }

    fn args(extra: &[&str]) -> EvaluateArgs {
        let base = ["evaluate", "plan.wasm", "p.safetensors", "--data", "d.csv"];
        Cli::parse_from(base.iter().chain(extra)).args
    }

    fn recorded(model_args: &str) -> Metadata {
        Metadata::from([("model_args".to_string(), model_args.to_string())])
    }

    #[test]
    fn model_args_come_from_the_flag_else_the_file() {
        let file = recorded(r#"{"n": 3}"#);
        let (value, origin) = model_args(&args(&[]), &file).unwrap();
        assert_eq!(
            (value.to_string().as_str(), origin),
            (r#"{"n":3}"#, "recorded in the parameter file")
        );
        let (value, origin) = model_args(&args(&["--model-args", r#"{"n": 4}"#]), &file).unwrap();
        assert_eq!(value, serde_json::json!({"n": 4}));
        assert!(origin.contains("overriding"), "{origin}");
        let (_, origin) = model_args(&args(&["--model-args", r#"{ "n":3 }"#]), &file).unwrap();
        assert_eq!(origin, "from --model-args");
        let (value, origin) = model_args(&args(&[]), &Metadata::new()).unwrap();
        assert_eq!(value, serde_json::json!({}));
        assert!(origin.contains("pass --model-args"), "{origin}");
        let bad = model_args(&args(&[]), &recorded("[1, 2]")).unwrap_err();
        assert!(format!("{bad:#}").contains("pass --model-args"), "{bad:#}");
    }

    #[test]
    fn a_file_of_another_plan_is_refused_by_both_digests() {
        let plan = fedwasm::digest::Sha256Digest::of(b"this plan");
        let other = fedwasm::digest::Sha256Digest::of(b"another plan").to_hex();
        let file = Metadata::from([("plan_sha256".to_string(), other.clone())]);
        let err = check_plan_digest(&args(&[]), &file, &plan)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&other) && err.contains(&plan.to_hex()),
            "{err}"
        );
        let own = Metadata::from([("plan_sha256".to_string(), plan.to_hex())]);
        assert!(check_plan_digest(&args(&[]), &own, &plan).is_ok());
        assert!(check_plan_digest(&args(&[]), &Metadata::new(), &plan).is_ok());
    }
}
