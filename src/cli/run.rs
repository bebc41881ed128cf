//! `fedwasm run` and `fedwasm resume`: experiments from a TOML file, and
//! continued from a breakpoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use fedwasm::researcher::{Experiment, ExperimentSettings, ResumeOptions};

/// Options of `fedwasm run`.
#[derive(Args)]
pub struct RunArgs {
    /// The experiment file (see examples/breast-cancer.toml).
    file: PathBuf,
    /// Rounds to run (default: up to round_limit).
    #[arg(long)]
    rounds: Option<u32>,
    /// Raise round_limit if --rounds passes it.
    #[arg(long)]
    increase: bool,
}

/// Options of `fedwasm resume`.
#[derive(Args)]
pub struct ResumeArgs {
    /// A breakpoint folder, or an experiment folder (its latest breakpoint);
    /// default: the latest experiment of the experiments directory.
    path: Option<PathBuf>,
    /// Rounds to run (default: up to round_limit).
    #[arg(long)]
    rounds: Option<u32>,
    /// Raise round_limit if --rounds passes it.
    #[arg(long)]
    increase: bool,
    /// Experiments directory to take the latest experiment from.
    #[arg(long)]
    experiments_dir: Option<PathBuf>,
}

/// Read an experiment file; relative paths in it are relative to the file.
pub fn read_settings(file: &Path) -> anyhow::Result<ExperimentSettings> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut settings: ExperimentSettings =
        toml::from_str(&text).with_context(|| format!("in {}", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    for path in [
        &mut settings.training_plan,
        &mut settings.initial_parameters,
        &mut settings.experiments_dir,
        &mut settings.identity_file,
        &mut settings.roster_file,
    ]
    .into_iter()
    .flatten()
    {
        if path.is_relative() {
            *path = base.join(&*path);
        }
    }
    settings.console = true;
    settings.compiler = Some(std::env::current_exe().context("locating the fedwasm executable")?);
    Ok(settings)
}

async fn run_and_report(
    mut experiment: Experiment,
    rounds: Option<u32>,
    increase: bool,
) -> anyhow::Result<ExitCode> {
    let result = experiment.run(rounds, increase).await;
    let run = match result {
        Ok(run) => run,
        Err(e) => {
            let path = experiment.experimentation_path().to_path_buf();
            experiment.close().await;
            return Err(e).with_context(|| format!("experiment {}", path.display()));
        }
    };
    println!(
        "{run} round(s) run; {} completed of {}",
        experiment.round_current(),
        experiment
            .round_limit()
            .map_or("no limit".to_string(), |l| l.to_string())
    );
    super::summary::print_summary(experiment.history());
    println!(
        "experiment folder: {}",
        experiment.experimentation_path().display()
    );
    if experiment.tensorboard() {
        println!(
            "training curves: tensorboard --logdir {}",
            experiment.tensorboard_path().display()
        );
    }
    experiment.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Create the experiment of a file and run it.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let settings = read_settings(&args.file)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let experiment = Experiment::new(settings)
            .await
            .with_context(|| format!("creating the experiment of {}", args.file.display()))?;
        run_and_report(experiment, args.rounds, args.increase).await
    })
}

/// Load a breakpoint and continue.
pub fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let experiment = Experiment::load_breakpoint(
            args.path.as_deref(),
            ResumeOptions {
                experiments_dir: args.experiments_dir,
                console: true,
                compiler: Some(std::env::current_exe().context("locating the fedwasm executable")?),
                ..ResumeOptions::default()
            },
        )
        .await
        .context("loading the breakpoint")?;
        println!(
            "resuming {} after round {}",
            experiment.experimentation_path().display(),
            experiment.round_current()
        );
        run_and_report(experiment, args.rounds, args.increase).await
    })
}
