//! `fedwasm node init | dataset | plan`: the node operator's commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;

use fedwasm::digest::Sha256Digest;
use fedwasm::node::{NewDataset, NodeConfig, NodeRuntime, NodeStore};
use fedwasm::sandbox::random::StreamSeed;
use fedwasm::sandbox::{Sandbox, SandboxConfig};
use fedwasm::wire::PlanStatus;

/// Node operator commands.
#[derive(Subcommand)]
pub enum NodeCommand {
    /// Create a node folder with its node.toml.
    Init {
        /// The node folder.
        #[arg(long)]
        dir: PathBuf,
        /// Unique id on the broker (default: generated).
        #[arg(long)]
        id: Option<String>,
        /// Human-readable name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// MQTT broker URL.
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
        /// File repository URL.
        #[arg(long, default_value = "http://127.0.0.1:8844")]
        repository: String,
    },
    /// Run the node: answer researchers and train approved plans until Ctrl-C or SIGTERM.
    Start {
        /// The node folder.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Register, list and remove datasets.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// List, approve and reject training plans by SHA-256.
    #[command(subcommand)]
    Plan(PlanCommand),
}

/// Dataset commands.
#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Register a CSV or NumPy (.npy) file, or an image folder, under tags.
    Add {
        /// The node folder.
        #[arg(long)]
        dir: PathBuf,
        /// The CSV file (header line, numeric cells) or .npy array (columns
        /// x0, x1, …); or an image folder with one sub-folder per class.
        #[arg(long)]
        path: PathBuf,
        /// What `--path` must be: `table` (a file) or `images` (a folder);
        /// by default whichever it is.
        #[arg(long, value_parser = ["table", "images"])]
        kind: Option<String>,
        /// Tags, comma-separated; a search matches datasets carrying all its tags.
        #[arg(long, value_delimiter = ',', required = true)]
        tags: Vec<String>,
        /// Short name.
        #[arg(long)]
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// The target column.
        #[arg(long)]
        target: Option<String>,
        /// A column marking the designated test rows (1) and the training
        /// rows (0) of a table or an image manifest: validation uses the
        /// test rows instead of a test_ratio sample, and they are never
        /// trained on.
        #[arg(long)]
        split_column: Option<String>,
        /// For an image manifest (a CSV): the column of image paths,
        /// relative to the CSV. Label with --target CLASS_COLUMN, --target
        /// LABEL1,LABEL2,… (0/1 columns) or --mask-column.
        #[arg(long)]
        image_column: Option<String>,
        /// For an image manifest: the column of mask image paths (segmentation).
        #[arg(long, requires = "image_column")]
        mask_column: Option<String>,
    },
    /// List registered datasets.
    List {
        /// The node folder.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Check that an image dataset still holds what was registered.
    Check {
        /// The node folder.
        #[arg(long)]
        dir: PathBuf,
        /// The dataset id.
        id: String,
    },
    /// Forget a dataset (the file stays).
    Remove {
        /// The node folder.
        #[arg(long)]
        dir: PathBuf,
        /// The dataset id.
        id: String,
    },
}

/// Plan approval commands.
#[derive(Subcommand)]
pub enum PlanCommand {
    /// List the plans this node has seen.
    List {
        /// The node folder.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Approve a plan: a component file or its SHA-256.
    Approve {
        /// The node folder.
        #[arg(long)]
        dir: PathBuf,
        /// Component file or SHA-256.
        plan: String,
        /// Approve the plan only with these model arguments (a JSON object);
        /// a train request with any others is refused. Without it, any.
        #[arg(long)]
        model_args: Option<String>,
    },
    /// Reject a plan: a component file or its SHA-256.
    Reject {
        /// The node folder.
        #[arg(long)]
        dir: PathBuf,
        /// Component file or SHA-256.
        plan: String,
    },
}

fn open(dir: &Path) -> anyhow::Result<(NodeConfig, NodeStore)> {
    let config = NodeConfig::load(dir)?;
    let store = NodeStore::open(&NodeConfig::store_path(dir))?;
    Ok((config, store))
}

/// The digest and (for a file that is a valid plan) the name of `plan`,
/// compiled as the node would: in a child process, under the node's limits.
fn identify(plan: &str, limits: &SandboxConfig) -> anyhow::Result<(Sha256Digest, Option<String>)> {
    let path = Path::new(plan);
    if path.is_file() {
        let exe = std::env::current_exe().context("locating the fedwasm executable")?;
        let sandbox = Sandbox::new(limits.clone().compiling_with(exe))?;
        let loaded = sandbox
            .load_file(path)
            .with_context(|| format!("{plan} is not a usable plan"))?;
        let name = sandbox
            .instantiate(&loaded, &StreamSeed([0; 32]))?
            .describe()?
            .name;
        for warning in loaded.build_warnings() {
            eprintln!("warning: {warning}");
        }
        return Ok((loaded.digest(), Some(name)));
    }
    let digest = plan
        .parse()
        .with_context(|| format!("`{plan}` is neither a component file nor a SHA-256"))?;
    Ok((digest, None))
}

/// Run a node command.
pub fn run(cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCommand::Init {
            dir,
            id,
            name,
            broker,
            repository,
        } => {
            let config = NodeConfig::init(&dir, id, name, broker, repository)?;
            NodeStore::open(&NodeConfig::store_path(&dir))?;
            let key = config.credentials(&dir)?.identity.public();
            println!("node {} created in {}", config.id, dir.display());
            println!("its key: {key} (fingerprint {})", key.fingerprint());
            println!(
                "each researcher pins it with: fedwasm roster add node {} {key}",
                config.id
            );
            println!(
                "and this node serves a researcher once you run: fedwasm roster add --dir {} researcher <id> <its key>",
                dir.display()
            );
        }
        NodeCommand::Start { dir } => {
            let worker_exe = std::env::current_exe().context("locating the fedwasm executable")?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime
                .block_on(fedwasm::node::run(
                    NodeRuntime {
                        dir: dir.clone(),
                        worker_exe,
                    },
                    super::signals::shutdown_signal(),
                ))
                .with_context(|| format!("running the node in {}", dir.display()))?;
        }
        NodeCommand::Dataset(DatasetCommand::Add {
            dir,
            path,
            kind,
            tags,
            name,
            description,
            target,
            split_column,
            image_column,
            mask_column,
        }) => {
            match kind.as_deref() {
                Some("images") if !path.is_dir() && image_column.is_none() => {
                    bail!(
                        "--kind images needs a folder with one sub-folder per class, or a CSV manifest with --image-column"
                    )
                }
                Some("table") if path.is_dir() => {
                    bail!("--kind table needs a CSV or .npy file, not a folder")
                }
                Some("table") if image_column.is_some() => {
                    bail!("--image-column makes an image manifest; leave out --kind table")
                }
                _ => {}
            }
            let image_columns =
                super::manifest::manifest_columns(image_column, target.as_deref(), mask_column)?;
            let target = if image_columns.is_some() {
                None
            } else {
                target
            };
            let (_, mut store) = open(&dir)?;
            let rec = store.add_dataset(NewDataset {
                name,
                tags,
                description,
                path,
                target,
                split_column,
                image_columns,
            })?;
            let s = &rec.summary;
            if s.data_type == "images" {
                println!(
                    "added {} ({} images of {:?}, {} {})",
                    s.dataset_id,
                    s.shape[0],
                    &s.shape[1..],
                    s.image_target.as_deref().unwrap_or("class"),
                    s.classes.join(", ")
                );
            } else {
                let test = s
                    .test_rows
                    .map(|n| format!(" + {n} test rows"))
                    .unwrap_or_default();
                println!(
                    "added {} ({} rows{test} × {} columns)",
                    s.dataset_id, s.shape[0], s.shape[1]
                );
            }
        }
        NodeCommand::Dataset(DatasetCommand::List { dir }) => {
            let (_, store) = open(&dir)?;
            let datasets = store.datasets()?;
            if datasets.is_empty() {
                println!("no datasets; add one with `fedwasm node dataset add`");
            }
            for d in datasets {
                let s = d.summary;
                let target = match (s.target, s.classes.is_empty()) {
                    (Some(target), _) => target,
                    (None, false) => format!("classes {}", s.classes.join(",")),
                    (None, true) => "-".into(),
                };
                let test = match (d.split_column, s.test_rows) {
                    (Some(column), Some(rows)) => format!("  test {rows} rows (`{column}` = 1)"),
                    _ => String::new(),
                };
                println!(
                    "{}  {}  tags {}  shape {:?}  target {}{test}  {}",
                    s.dataset_id,
                    s.name,
                    s.tags.join(","),
                    s.shape,
                    target,
                    d.path.display()
                );
            }
        }
        NodeCommand::Dataset(DatasetCommand::Check { dir, id }) => {
            let (_, store) = open(&dir)?;
            if store.images_unchanged(&id)? {
                println!("{id}: unchanged since registration");
            } else {
                println!(
                    "{id}: changed since registration; `fedwasm node dataset remove` and add it again to use the new files"
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        NodeCommand::Dataset(DatasetCommand::Remove { dir, id }) => {
            let (_, mut store) = open(&dir)?;
            store.remove_dataset(&id)?;
            println!("removed {id}");
        }
        NodeCommand::Plan(PlanCommand::List { dir }) => {
            let (config, store) = open(&dir)?;
            println!("approval required: {}", config.require_approval);
            for p in store.plans()? {
                let pinned = p
                    .model_args
                    .map(|a| format!("  model_args {a}"))
                    .unwrap_or_default();
                println!(
                    "{}  {:?}  {}{pinned}",
                    p.sha256,
                    p.status,
                    p.name.unwrap_or_default()
                );
            }
        }
        NodeCommand::Plan(PlanCommand::Approve {
            dir,
            plan,
            model_args,
        }) => {
            let pinned = model_args
                .map(|text| {
                    let value: serde_json::Value = serde_json::from_str(&text).context(
                        "--model-args is not JSON; give an object such as '{\"n_features\": 30}'",
                    )?;
                    anyhow::ensure!(
                        value.is_object(),
                        "--model-args must be a JSON object, as a train request's model_args"
                    );
                    Ok(value)
                })
                .transpose()?;
            let digest = decide(&dir, &plan, PlanStatus::Approved)?;
            let (_, mut store) = open(&dir)?;
            store.pin_model_args(&digest, pinned.as_ref())?;
            if let Some(args) = pinned {
                println!("only with model_args {args}");
            }
        }
        NodeCommand::Plan(PlanCommand::Reject { dir, plan }) => {
            decide(&dir, &plan, PlanStatus::Rejected)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn decide(dir: &Path, plan: &str, status: PlanStatus) -> anyhow::Result<Sha256Digest> {
    let (config, mut store) = open(dir)?;
    let (digest, name) = identify(plan, &config.sandbox)?;
    store.set_plan_status(&digest, status, name.as_deref())?;
    println!("{digest}  {status:?}  {}", name.unwrap_or_default());
    Ok(digest)
}
