//! [`LocalFederation`]: a whole federation on loopback — an embedded MQTT
//! broker, a repository server and N nodes running in this process, each on
//! its own folder and datasets — for the demo, benchmarks, tests, and anyone
//! who wants to try a plan on several "hospitals" without setting any up.
//!
//! The nodes are the real daemon (`node::run`): they train in worker
//! processes under the sandbox and answer over the broker exactly as
//! `fedwasm node start` does. Only their start-up is shortened: folder,
//! datasets and plan approvals in one call, and keys: the federation makes
//! a key for every node and for its researcher and pins each in the others'
//! rosters, as operators would exchange them out of band.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::digest::Sha256Digest;
use crate::identity::{Credentials, IdentityError, Role, Roster, node_roster_file};
use crate::node::{NewDataset, NodeConfig, NodeError, NodeRuntime, NodeStore};
use crate::repository::{RepositoryConfig, RepositoryLink, serve};
use crate::researcher::{ExperimentSettings, NodeLink, RepositorySetting};
use crate::transport::{BrokerConfig, EmbeddedBroker};
use crate::wire::PlanStatus;

/// The id of a local federation's own researcher (its experiments, its probe).
pub const LOCAL_RESEARCHER: &str = "local-researcher";

/// One node of a local federation.
#[derive(Debug, Clone)]
pub struct LocalNode {
    /// Its id (also its folder's name under the work folder).
    pub id: String,
    /// Datasets it holds, registered as `fedwasm node dataset add` would.
    pub datasets: Vec<NewDataset>,
}

/// What a local federation is made of.
#[derive(Debug, Clone)]
pub struct LocalFederationConfig {
    /// Holds the node folders and the repository's files.
    pub work_dir: PathBuf,
    /// The nodes.
    pub nodes: Vec<LocalNode>,
    /// Plans every node approves: digest and name.
    pub approved_plans: Vec<(Sha256Digest, Option<String>)>,
    /// The `fedwasm` executable the nodes start training workers with.
    pub worker_exe: PathBuf,
    /// A folder of compiled plans the nodes share (each compiles the plan
    /// once otherwise).
    pub compiled_plans: Option<PathBuf>,
    /// How long [`LocalFederation::start`] waits for every node to answer.
    pub ready_timeout: Duration,
}

impl LocalFederationConfig {
    /// `nodes` under `work_dir`, no plan approved, a minute to start.
    pub fn new(work_dir: PathBuf, nodes: Vec<LocalNode>, worker_exe: PathBuf) -> Self {
        LocalFederationConfig {
            work_dir,
            nodes,
            approved_plans: Vec::new(),
            worker_exe,
            compiled_plans: None,
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a local federation could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalFederationError {
    /// A node id that cannot name a folder, or is given twice.
    #[error("node id `{id}`: {reason}")]
    NodeId {
        /// The id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker or the repository would not start.
    #[error("starting the {what}: {reason}")]
    Service {
        /// `broker` or `repository`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A node's folder, datasets or approvals could not be set up.
    #[error("setting up node {node}: {source}")]
    Node {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: NodeError,
    },
    /// A node's task ended abnormally.
    #[error("node {node} stopped abnormally: {reason}")]
    NodeTask {
        /// The node.
        node: String,
        /// What happened.
        reason: String,
    },
    /// A key or roster could not be made.
    #[error("making the federation's keys: {0}")]
    Keys(#[from] IdentityError),
    /// Not every node answered in time.
    #[error("nodes {missing:?} did not connect within {timeout:?}")]
    NotReady {
        /// The nodes that stayed silent.
        missing: Vec<String>,
        /// How long it waited.
        timeout: Duration,
    },
}

/// A running federation on loopback. Dropping it leaves the nodes running
/// until the runtime ends; [`LocalFederation::stop`] stops them cleanly.
pub struct LocalFederation {
    broker: EmbeddedBroker,
    repository_url: String,
    /// Where the researcher's key and roster live.
    researcher_dir: PathBuf,
    stop: watch::Sender<bool>,
    nodes: BTreeMap<String, NodeHandle>,
}

/// One node as the federation runs it.
struct NodeHandle {
    dir: PathBuf,
    dataset_ids: Vec<String>,
    task: JoinHandle<Result<(), NodeError>>,
}

fn check_ids(nodes: &[LocalNode]) -> Result<(), LocalFederationError> {
    let mut seen = BTreeSet::new();
    for node in nodes {
        let bad = |reason: &str| LocalFederationError::NodeId {
            id: node.id.clone(),
            reason: reason.into(),
        };
        let safe = !node.id.is_empty()
            && node.id.len() <= 64
            && node
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !safe {
            return Err(bad(
                "use 1 to 64 letters, digits, `-` or `_` (it names the node's folder and topic)",
            ));
        }
        if !seen.insert(node.id.as_str()) {
            return Err(bad("given twice; every node needs its own id"));
        }
    }
    Ok(())
}

impl LocalFederation {
    /// Start the broker and the repository on `127.0.0.1` (free ports), set
    /// up every node's folder (a fresh one: an old folder of the same name
    /// is replaced), start the nodes and wait until each answers.
    pub async fn start(config: LocalFederationConfig) -> Result<Self, LocalFederationError> {
        check_ids(&config.nodes)?;
        let service = |what: &'static str| {
            move |e: &dyn std::fmt::Display| LocalFederationError::Service {
                what,
                reason: e.to_string(),
            }
        };
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let broker = EmbeddedBroker::start(loopback, None).map_err(|e| service("broker")(&e))?;
        let listener = tokio::net::TcpListener::bind(loopback)
            .await
            .map_err(|e| service("repository")(&e))?;
        let repository_url = format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(|e| service("repository")(&e))?
        );
        let (stop, stopped) = watch::channel(false);
        let mut repository_stop = stopped.clone();
        // Every node of a local federation connects from 127.0.0.1: the
        // per-peer share that keeps one remote host from taking every
        // place would cut them off past 32.
        let repository = RepositoryConfig::new(config.work_dir.join("repository"));
        let repository = RepositoryConfig {
            max_connections_per_peer: repository.max_connections,
            ..repository
        };
        tokio::spawn(serve(listener, repository, async move {
            let _ = repository_stop.wait_for(|s| *s).await;
        }));
        let researcher_dir = config.work_dir.join("researcher");
        if researcher_dir.exists() {
            std::fs::remove_dir_all(&researcher_dir).map_err(|e| service("researcher keys")(&e))?;
        }
        let mut federation = LocalFederation {
            broker,
            repository_url,
            researcher_dir,
            stop,
            nodes: BTreeMap::new(),
        };
        for node in &config.nodes {
            let (dir, dataset_ids) = federation.provision(&config, node).map_err(|source| {
                LocalFederationError::Node {
                    node: node.id.clone(),
                    source,
                }
            })?;
            federation.pin_node(&dir, &node.id)?;
            let mut node_stop = stopped.clone();
            let task = tokio::spawn(crate::node::run(
                NodeRuntime {
                    dir: dir.clone(),
                    worker_exe: config.worker_exe.clone(),
                },
                async move {
                    let _ = node_stop.wait_for(|s| *s).await;
                },
            ));
            federation.nodes.insert(
                node.id.clone(),
                NodeHandle {
                    dir,
                    dataset_ids,
                    task,
                },
            );
        }
        federation.wait_ready(config.ready_timeout).await?;
        Ok(federation)
    }

    /// A fresh folder for `node`: configuration, datasets, approvals.
    fn provision(
        &self,
        config: &LocalFederationConfig,
        node: &LocalNode,
    ) -> Result<(PathBuf, Vec<String>), NodeError> {
        let dir = config.work_dir.join(&node.id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| {
                NodeError::Config(format!("cannot replace the node's old folder: {e}"))
            })?;
        }
        NodeConfig::init(
            &dir,
            Some(node.id.clone()),
            None,
            self.broker.url(),
            self.repository_url.clone(),
        )?;
        if let Some(cache) = &config.compiled_plans {
            let mut node_config = NodeConfig::load(&dir)?;
            node_config.sandbox.cache_dir = Some(cache.clone());
            node_config.save(&dir)?;
        }
        let mut store = NodeStore::open(&NodeConfig::store_path(&dir))?;
        let mut dataset_ids = Vec::new();
        for dataset in &node.datasets {
            dataset_ids.push(store.add_dataset(dataset.clone())?.summary.dataset_id);
        }
        for (digest, name) in &config.approved_plans {
            store.set_plan_status(digest, PlanStatus::Approved, name.as_deref())?;
        }
        Ok((dir, dataset_ids))
    }

    /// The researcher's credentials for `id`: its key (one per id, made on
    /// first use in the federation's folder), pinned in every node's roster
    /// (the nodes re-read it), and the roster of every node's key.
    pub fn admit(&self, id: &str) -> Result<Credentials, LocalFederationError> {
        let key_file = self.researcher_dir.join(format!("{id}.key"));
        let credentials =
            Credentials::researcher(Some(&key_file), Some(&self.researcher_roster()), Some(id))?;
        for node in self.nodes.values() {
            let path = node_roster_file(&node.dir);
            let mut roster = Roster::load(&path)?;
            roster.pin(Role::Researcher, id, credentials.identity.public())?;
            roster.save(&path)?;
        }
        Ok(credentials)
    }

    /// The researcher's roster: every node's key.
    fn researcher_roster(&self) -> PathBuf {
        self.researcher_dir.join("roster.toml")
    }

    /// Pin the key of the node in `dir` in the researcher's roster.
    fn pin_node(&self, dir: &Path, id: &str) -> Result<(), LocalFederationError> {
        let config = NodeConfig::load(dir).map_err(|source| LocalFederationError::Node {
            node: id.to_string(),
            source,
        })?;
        let key = config
            .credentials(dir)
            .map_err(|source| LocalFederationError::Node {
                node: id.to_string(),
                source,
            })?
            .identity
            .public();
        let path = self.researcher_roster();
        let mut roster = Roster::load(&path)?;
        roster.pin(Role::Node, id, key)?;
        Ok(roster.save(&path)?)
    }

    /// Wait until every node answers a ping, or `timeout` passes.
    async fn wait_ready(&self, timeout: Duration) -> Result<(), LocalFederationError> {
        let ids: BTreeSet<String> = self.nodes.keys().cloned().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let not_ready = |missing: Vec<String>| LocalFederationError::NotReady { missing, timeout };
        let credentials = self.admit(LOCAL_RESEARCHER)?;
        let mut probe = NodeLink::connect(&self.broker(), &credentials)
            .await
            .map_err(|_| not_ready(ids.iter().cloned().collect()))?;
        let ready = probe.wait_for_nodes(&ids, timeout).await;
        let online = probe.online_nodes();
        probe.disconnect().await;
        match ready {
            Ok(true) => Ok(()),
            _ => Err(not_ready(ids.difference(&online).cloned().collect())),
        }
    }

    /// How a researcher reaches the broker.
    pub fn broker(&self) -> BrokerConfig {
        BrokerConfig::new(self.broker.url())
    }

    /// How a researcher reaches the repository.
    pub fn repository(&self) -> RepositoryLink {
        RepositoryLink::new(self.repository_url.clone(), None)
    }

    /// The repository's base URL.
    pub fn repository_url(&self) -> &str {
        &self.repository_url
    }

    /// The nodes' ids, sorted.
    pub fn node_ids(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// The folder of node `id`.
    pub fn node_dir(&self, id: &str) -> Option<&Path> {
        self.nodes.get(id).map(|n| n.dir.as_path())
    }

    /// The ids node `id` gave its datasets, in the order they were listed.
    pub fn dataset_ids(&self, id: &str) -> Option<&[String]> {
        self.nodes.get(id).map(|n| n.dataset_ids.as_slice())
    }

    /// Experiment settings that reach this federation: its broker, its
    /// repository, its nodes only, and its researcher's key and roster.
    /// Everything else is the default.
    pub fn experiment_settings(&self) -> ExperimentSettings {
        ExperimentSettings {
            nodes: Some(self.node_ids()),
            researcher_id: Some(LOCAL_RESEARCHER.into()),
            identity_file: Some(self.researcher_dir.join(format!("{LOCAL_RESEARCHER}.key"))),
            roster_file: Some(self.researcher_roster()),
            broker: self.broker(),
            repository: RepositorySetting::Remote(self.repository()),
            ..ExperimentSettings::default()
        }
    }

    /// Stop every node (each finishes or refuses its queued work and says
    /// goodbye) and the repository; returns the first node failure.
    pub async fn stop(self) -> Result<(), LocalFederationError> {
        let _ = self.stop.send(true);
        let mut first = Ok(());
        for (id, node) in self.nodes {
            let outcome = match node.task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(LocalFederationError::Node { node: id, source }),
                Err(e) => Err(LocalFederationError::NodeTask {
                    node: id,
                    reason: e.to_string(),
                }),
            };
            if first.is_ok() {
                first = outcome;
            }
        }
        first
    }
}
