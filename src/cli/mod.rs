//! Command-line parsing and dispatch. The only layer that uses `anyhow`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod broker;
mod demo;
mod evaluate;
mod manifest;
mod network;
mod node;
mod plan;
mod repository;
mod roster;
mod run;
mod signals;
mod summary;

/// Federated learning with WebAssembly training plans.
#[derive(Parser)]
#[command(name = "fedwasm", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole federation on this machine: broker, repository, nodes, FedAvg.
    Demo(demo::DemoArgs),
    /// Run the experiment described by a TOML file.
    Run(run::RunArgs),
    /// Continue an experiment from a breakpoint.
    Resume(run::ResumeArgs),
    /// Set up and run a node: its folder, datasets, plan approvals, the daemon.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Ping the nodes and show which answer.
    Ping(network::PingArgs),
    /// List the nodes' datasets, or search them by tags.
    Datasets(network::DatasetsArgs),
    /// Run the embedded MQTT broker on its own.
    Broker(broker::BrokerArgs),
    /// Score saved parameters on a local table with the nodes' metrics.
    Evaluate(evaluate::EvaluateArgs),
    /// Build, inspect and dry-run training plans.
    #[command(subcommand)]
    Plan(plan::PlanCommand),
    /// Show our key and manage the keys we trust (node ids and researcher ids).
    #[command(subcommand)]
    Roster(roster::RosterCommand),
    /// Run the content-addressed file repository on its own.
    Repository(repository::RepositoryArgs),
    /// Run one training task read from stdin (used by nodes; not for people).
    #[command(name = "__worker", hide = true)]
    Worker,
    /// Compile one component under limits (used by nodes; not for people).
    #[command(name = "__compile", hide = true)]
    Compile {
        /// The sandbox configuration, as JSON.
        settings: String,
        /// The component.
        input: std::path::PathBuf,
        /// Where the compiled plan goes.
        output: std::path::PathBuf,
    },
}

/// Parse the command line and run the command.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Long-running services report what they do; one-shot commands stay quiet.
    let default_filter = match &cli.command {
        Command::Node(node::NodeCommand::Start { .. }) | Command::Broker(_) => {
            "warn,fedwasm=info,rumqttd=off"
        }
        _ => "warn,rumqttd=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file keeps plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Node(cmd) => node::run(cmd),
        Command::Plan(cmd) => plan::run(cmd),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Repository(args) => repository::run(args),
        Command::Roster(cmd) => roster::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Run(args) => run::run(args),
        Command::Resume(args) => run::resume(args),
        Command::Ping(args) => network::ping(args),
        Command::Datasets(args) => network::datasets(args),
        Command::Broker(args) => broker::run(args),
        Command::Worker => {
            fedwasm::training::worker_main(std::io::stdin().lock(), std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compile {
            settings,
            input,
            output,
        } => {
            fedwasm::sandbox::compile_main(&settings, &input, &output)
                .map_err(anyhow::Error::msg)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
