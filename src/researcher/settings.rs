//! [`ExperimentSettings`]: every argument of an experiment, with defaults —
//! what `Experiment::new` takes and what an experiment TOML file holds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::repository::RepositoryLink;
use crate::training::TrainingArgs;
use crate::transport::BrokerConfig;

/// One tag or several (`tags = "#x"` or `tags = ["#x", "#y"]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Tags {
    /// A single tag.
    One(String),
    /// Several tags; a dataset must carry all of them.
    Many(Vec<String>),
}

impl Tags {
    /// As a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Tags::One(t) => vec![t.clone()],
            Tags::Many(ts) => ts.clone(),
        }
    }
}

/// Where the researcher's parameter files go. Nodes fetch blobs only from
/// the repository in their own `node.toml`, so this must be that same
/// repository: a remote one the nodes are configured with, or an embedded
/// one listening on the address they are configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RepositorySetting {
    /// Run a repository inside the researcher process, listening on `bind`
    /// (a fixed port: the nodes' `[repository] url` points at it).
    Embedded {
        /// Listen address, e.g. `0.0.0.0:8844`.
        bind: String,
    },
    /// Use a repository running elsewhere (`fedwasm repository`).
    Remote(RepositoryLink),
}

impl Default for RepositorySetting {
    fn default() -> Self {
        RepositorySetting::Embedded {
            bind: "127.0.0.1:8844".into(),
        }
    }
}

/// Every argument of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentSettings {
    /// Search the nodes for datasets carrying all these tags.
    pub tags: Option<Tags>,
    /// Only search (and train on) these nodes.
    pub nodes: Option<Vec<String>>,
    /// Node → dataset id, instead of a search.
    pub training_data: Option<BTreeMap<String, String>>,
    /// The plan: a component file, or a plan crate folder that is built.
    pub training_plan: Option<PathBuf>,
    /// Expected `describe().name` of the plan.
    pub training_plan_name: Option<String>,
    /// Start from these parameters (safetensors) instead of the plan's
    /// `init-model`: a pretrained model, or the same start for every system
    /// compared. Checked against the plan's tensor names and shapes.
    pub initial_parameters: Option<PathBuf>,
    /// Tensors of `initial_parameters` the plan initialises itself instead
    /// (its `init-model` values), each said in a warning: a head of another
    /// size, e.g. `["fc.weight", "fc.bias"]` to start from ImageNet weights
    /// with another `n_classes`. Each must be a tensor of the plan.
    pub reinitialize: Vec<String>,
    /// Passed to the plan's `init-model`.
    pub model_args: Map<String, Value>,
    /// Local training arguments.
    pub training_args: TrainingArgs,
    /// `"fedavg"`, `"scaffold"`, or a robust rule against a dishonest or
    /// broken node: `"median"`, `"trimmed_mean"` (coordinate-wise, each
    /// node weighing the same) or `"clipped_fedavg"` (update norms clipped).
    pub aggregator: String,
    /// Scaffold's server learning rate.
    pub server_lr: f32,
    /// `trimmed_mean`: share of the nodes dropped at each end of every
    /// coordinate's values, in [0, 0.5).
    pub trim_fraction: f64,
    /// `clipped_fedavg`: the bound on an update's L2 norm; unset, each
    /// round's median update norm.
    pub clip_norm: Option<f32>,
    /// Optimizer of the global model (FedOpt); none means the aggregate is the new model.
    pub agg_optimizer: Option<crate::researcher::ServerOptimizer>,
    /// `"default"`: every node of the training data, every round;
    /// `"sampling"`: a seeded `sampling_fraction` of them, at least `min_nodes`.
    pub node_selection_strategy: String,
    /// Fraction of the nodes per round with `"sampling"`.
    pub sampling_fraction: f64,
    /// Fewest nodes a round samples and (with `discard`) aggregates.
    pub min_nodes: usize,
    /// `"stop"`: a failed or silent node fails the round; `"discard"`: it is
    /// dropped and the others are aggregated if at least `min_nodes` succeeded.
    pub failure_policy: crate::researcher::strategy::FailurePolicy,
    /// Most rounds the experiment runs; `None` means no limit.
    pub round_limit: Option<u32>,
    /// Write TensorBoard event files under `<folder>/runs`.
    pub tensorboard: bool,
    /// Save a breakpoint after every round.
    pub save_breakpoints: bool,
    /// Folder name inside the experiments directory (default: the next `Experiment_NNNN`).
    pub experimentation_folder: Option<String>,
    /// Experiments directory (default: `$FEDWASM_DIR/var/experiments`).
    pub experiments_dir: Option<PathBuf>,
    /// A node that has not answered this many seconds after a round started fails the round.
    pub round_deadline_secs: f64,
    /// How long a search waits for nodes to answer, in seconds.
    pub search_wait_secs: f64,
    /// The id we sign as (default: one derived from our key).
    pub researcher_id: Option<String>,
    /// Our secret key (default: `$FEDWASM_DIR/identity.key`, made on the
    /// first run with mode 0600).
    pub identity_file: Option<PathBuf>,
    /// The nodes' pinned keys (default: `$FEDWASM_DIR/roster.toml`).
    pub roster_file: Option<PathBuf>,
    /// The broker.
    pub broker: BrokerConfig,
    /// The file repository.
    pub repository: RepositorySetting,
    /// Print progress bars and a line per round.
    pub console: bool,
    /// Longest time compiling the plan on the researcher's side may take,
    /// in seconds (with a `compiler`).
    pub compile_timeout_secs: f64,
    /// Most memory compiling the plan may take, in MiB (with a `compiler`).
    pub compile_memory_mib: u64,
    /// The `fedwasm` executable that compiles the plan in a child process
    /// under the two limits above (`fedwasm run`, `resume` and `demo` set
    /// it to themselves); `None` compiles in this process, without them.
    #[serde(skip)]
    pub compiler: Option<PathBuf>,
}

impl Default for ExperimentSettings {
    fn default() -> Self {
        ExperimentSettings {
            tags: None,
            nodes: None,
            training_data: None,
            training_plan: None,
            training_plan_name: None,
            initial_parameters: None,
            reinitialize: Vec::new(),
            model_args: Map::new(),
            training_args: TrainingArgs::default(),
            aggregator: "fedavg".into(),
            server_lr: 1.0,
            trim_fraction: 0.2,
            clip_norm: None,
            agg_optimizer: None,
            node_selection_strategy: "default".into(),
            sampling_fraction: 1.0,
            min_nodes: 1,
            failure_policy: Default::default(),
            round_limit: None,
            tensorboard: false,
            save_breakpoints: false,
            experimentation_folder: None,
            experiments_dir: None,
            round_deadline_secs: 600.0,
            search_wait_secs: 2.0,
            researcher_id: None,
            identity_file: None,
            roster_file: None,
            broker: BrokerConfig::default(),
            repository: RepositorySetting::default(),
            console: false,
            compile_timeout_secs: 120.0,
            compile_memory_mib: 2048,
            compiler: None,
        }
    }
}
