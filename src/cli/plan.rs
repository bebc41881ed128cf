//! `fedwasm plan build | inspect | check`: the plan author's tools.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use fedwasm::dataset::{ImageLimits, ImageSource, scan_folder, scan_manifest};
use fedwasm::plan_build::build_plan;
use fedwasm::sandbox::types::ArgInfo;
use fedwasm::sandbox::{Interruption, Sandbox, SandboxConfig};
use fedwasm::training::{Progress, TrainingArgs, TrainingTask, run_in_worker, run_task};

/// Plan author commands. `Check` carries many flags and the others few;
/// the command line is parsed once, so its size does not matter.
#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum PlanCommand {
    /// Build a plan crate for wasm32-wasip2 and copy the component out.
    Build {
        /// Folder of the plan crate.
        plan_dir: PathBuf,
        /// Where to write the component (default: ./<package>.wasm).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Show a component's plan-info, imports, exports, SHA-256 and size.
    Inspect {
        /// The component.
        plan: PathBuf,
    },
    /// Train a plan on a table or on images exactly as a node would: the
    /// plan author's dry run.
    Check {
        /// The component, or the folder of a plan crate to build first.
        plan: PathBuf,
        /// The CSV or NPY dataset (header line, numeric cells), an image
        /// folder (one sub-folder per class), or with --image-column a CSV
        /// manifest of images.
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
        /// A column marking the designated test rows (1): held out instead
        /// of a test_ratio sample, as a node registered with it would.
        #[arg(long)]
        split_column: Option<String>,
        /// model_args as a JSON object.
        #[arg(long, default_value = "{}")]
        model_args: String,
        /// training_args as a JSON object, e.g. '{"num_updates": 200, "loader_args": {"batch_size": 32}}'.
        #[arg(long, default_value = "{}")]
        training_args: String,
        /// Node id that seeds the plan's randomness, as a node's id would.
        #[arg(long, default_value = "local")]
        node_id: String,
        /// Round number that seeds the plan's randomness.
        #[arg(long, default_value_t = 0)]
        round: u32,
        /// Write the trained parameters to this safetensors file.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Stop the task after this many seconds.
        #[arg(long, default_value_t = 600.0)]
        deadline: f64,
        /// Memory cap of the plan, in MiB.
        #[arg(long, default_value_t = 512)]
        memory_mib: u64,
        /// Run in this process with epoch interruption instead of a worker process.
        #[arg(long)]
        in_process: bool,
        /// Threads the plan's tensor operations run on (0: every core);
        /// the results are the same bits whatever the number.
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
}

/// Run a plan command.
pub fn run(cmd: PlanCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PlanCommand::Build { plan_dir, output } => {
            let built = build_plan(&plan_dir, output.as_deref(), None)
                .with_context(|| format!("building the plan in {}", plan_dir.display()))?;
            println!("built {} → {}", built.name, built.path.display());
            println!("sha256 {}", built.digest);
            println!("size   {} bytes", built.size);
            Ok(ExitCode::SUCCESS)
        }
        PlanCommand::Inspect { plan } => inspect(&plan),
        PlanCommand::Check {
            plan,
            data,
            target,
            image_column,
            mask_column,
            split_column,
            model_args,
            training_args,
            node_id,
            round,
            output,
            deadline,
            memory_mib,
            in_process,
            threads,
        } => {
            let model_args =
                serde_json::from_str(&model_args).context("--model-args is not valid JSON")?;
            let plan = if plan.is_dir() {
                let built = build_plan(&plan, None, None)
                    .with_context(|| format!("building the plan in {}", plan.display()))?;
                println!(
                    "built {} → {} (sha256 {})",
                    built.name,
                    built.path.display(),
                    built.digest
                );
                built.path
            } else {
                plan
            };
            let training_args =
                TrainingArgs::from_json(&training_args).context("--training-args")?;
            if deadline.is_nan() || deadline <= 0.0 {
                bail!("--deadline must be a positive number of seconds");
            }
            let sandbox = SandboxConfig {
                memory_mib,
                call_timeout_secs: deadline,
                compute_threads: threads,
                cache_dir: cache_dir(),
                ..SandboxConfig::default()
            };
            let images = image_source(&data, image_column, target.as_deref(), mask_column)?;
            if images.is_none() && target.is_none() {
                bail!("--target is required for a table: name its target column");
            }
            let folder = images.as_ref().is_some_and(|i| i.manifest.is_none());
            if folder && split_column.is_some() {
                bail!(
                    "--split-column applies to tables and image manifests; an image folder is split by test_ratio"
                );
            }
            let task = TrainingTask {
                plan,
                dataset: data,
                target: if images.is_some() { None } else { target },
                images,
                split_column,
                model_args,
                training_args,
                experiment_id: None,
                round,
                node_id,
                initial_parameters: None,
                gradient_correction: None,
                output_parameters: output,
                sandbox,
                training: true,
                report_split_metrics: true,
                noise_key: None,
            };
            check(task, Duration::from_secs_f64(deadline), in_process)
        }
    }
}

/// How `plan check` reads `data` when it holds images: a folder, or a
/// manifest (`image_column`, labelled by `target` or `mask_column`); none
/// for a table. The digest is taken now, as registration takes it.
fn image_source(
    data: &Path,
    image_column: Option<String>,
    target: Option<&str>,
    mask_column: Option<String>,
) -> anyhow::Result<Option<ImageSource>> {
    let limits = ImageLimits::default();
    let manifest = super::manifest::manifest_columns(image_column, target, mask_column)?;
    if manifest.is_none() && !data.is_dir() {
        return Ok(None);
    }
    let set = match &manifest {
        None => scan_folder(data, &limits),
        Some(columns) => scan_manifest(data, columns, &limits),
    }
    .with_context(|| format!("reading the images in {}", data.display()))?;
    Ok(Some(ImageSource {
        manifest,
        digest: set.digest,
    }))
}

/// Where compiled plans are cached between runs: `$FEDWASM_DIR/cache/compiled`
/// when FEDWASM_DIR is set, else the system cache folder.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FEDWASM_DIR") {
        return Some(PathBuf::from(dir).join("cache").join("compiled"));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("fedwasm").join("compiled"))
}

fn print_args(title: &str, args: &[ArgInfo]) {
    println!("{title}");
    if args.is_empty() {
        println!("  (none)");
    }
    let defaults: Vec<String> = args
        .iter()
        .map(|a| match &a.default_value {
            Some(d) => format!("default {d}"),
            None => "required".to_string(),
        })
        .collect();
    let width =
        |f: &dyn Fn(usize) -> usize, min: usize| (0..args.len()).map(f).max().unwrap_or(0).max(min);
    let name_w = width(&|i| args[i].name.chars().count(), 14);
    let type_w = width(&|i| args[i].type_name.chars().count(), 14);
    let default_w = width(&|i| defaults[i].chars().count(), 18);
    for (a, default) in args.iter().zip(&defaults) {
        println!(
            "  {:<name_w$} {:<type_w$} {:<default_w$} {}",
            a.name, a.type_name, default, a.help
        );
    }
}

fn inspect(path: &Path) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the fedwasm executable")?;
    let sandbox = Sandbox::new(
        SandboxConfig {
            cache_dir: cache_dir(),
            ..SandboxConfig::default()
        }
        .compiling_with(exe),
    )?;
    let plan = sandbox
        .load_file(path)
        .with_context(|| format!("loading {}", path.display()))?;
    let mut instance =
        sandbox.instantiate(&plan, &fedwasm::sandbox::random::StreamSeed([0; 32]))?;
    let info = instance.describe()?;
    println!("name         {}", info.name);
    println!("version      {}", info.version);
    println!("description  {}", info.description);
    println!("sha256       {}", plan.digest());
    println!("size         {} bytes", plan.size());
    for warning in plan.build_warnings() {
        println!("warning      {warning}");
    }
    print_args("model_args", &info.model_args);
    print_args("optimizer_args", &info.optimizer_args);
    let (imports, exports) = plan.interface(&sandbox);
    println!("imports");
    for i in imports {
        println!("  {i}");
    }
    println!("exports");
    for e in exports {
        println!("  {e}");
    }
    Ok(ExitCode::SUCCESS)
}

fn check(task: TrainingTask, deadline: Duration, in_process: bool) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} updates {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // indicatif hides the bar when stderr is not a terminal, and its println
    // with it; the loss lines must show either way.
    let say = |line: String| {
        if bar.is_hidden() {
            println!("{line}")
        } else {
            bar.println(line)
        }
    };
    let mut on_progress = |p: Progress| match p {
        Progress::Started {
            plan_name,
            total_updates,
            training_samples,
            test_samples,
            warnings,
        } => {
            for w in warnings {
                say(format!("warning: {w}"));
            }
            say(format!(
                "plan {plan_name}: {training_samples} training samples, {test_samples} held out, {total_updates} updates"
            ));
            bar.set_length(total_updates as u64);
        }
        Progress::Loss {
            update,
            epoch,
            samples_seen,
            loss,
        } => {
            bar.set_position(update as u64);
            bar.set_message(format!("loss {loss:.4}"));
            say(format!(
                "update {update:>6}  epoch {epoch:>3}  samples {samples_seen:>8}  loss {loss:.6}"
            ));
        }
    };
    let outcome = if in_process {
        let mut config = task.sandbox.clone();
        config.interruption = Interruption::Epoch;
        let sandbox = Sandbox::new(config)?;
        run_task(&sandbox, &task, &mut on_progress)
    } else {
        let exe = std::env::current_exe().context("locating the fedwasm binary for the worker")?;
        run_in_worker(&exe, &task, deadline, &mut on_progress)
    };
    bar.finish_and_clear();
    let outcome = outcome.context("the plan check failed")?;
    for record in &outcome.plan_logs {
        println!("plan log [{:?}] {}", record.level, record.message);
    }
    println!(
        "trained {} updates on {} samples in {:.1} ms (task {:.1} ms); final loss {:.6}",
        outcome.updates,
        outcome.samples_seen,
        outcome.training_ms,
        outcome.total_ms,
        outcome.final_loss
    );
    if let Some(m) = outcome.training_metric {
        println!("training {m}");
    }
    if let Some(m) = outcome.test_metric {
        println!("held-out {m}");
    }
    for (kind, score) in [
        ("global", &outcome.validation_global),
        ("local", &outcome.validation_local),
    ] {
        if let Some(v) = score {
            println!(
                "validation on {kind} updates: {} {:.4} on {} held-out rows",
                v.metric, v.value, v.samples
            );
        }
    }
    if let Some(p) = &outcome.privacy {
        println!(
            "differential privacy ({}): noise multiplier {}, sampling rate {:.4}, {} step(s)",
            p.mode, p.noise_multiplier, p.sampling_rate, p.steps
        );
    }
    println!("plan sha256 {}", outcome.plan_digest);
    if let Some(out) = &task.output_parameters {
        println!("parameters written to {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
