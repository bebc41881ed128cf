//! `node.toml`: who the node is and where it connects.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::NodeError;
use crate::digest::Sha256Digest;
use crate::identity::{Credentials, Role, node_key_file, node_roster_file};
use crate::repository::RepositoryLink;
use crate::sandbox::SandboxConfig;
use crate::transport::BrokerConfig;
use crate::wire::topics::valid_id;

/// A node's configuration, kept in `<dir>/node.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique id on the broker; part of topic names.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Train only plans whose SHA-256 the operator approved.
    #[serde(default = "default_true")]
    pub require_approval: bool,
    /// Wall-clock limit of one training task, in seconds; the worker process is
    /// killed past it and the researcher gets a `deadline` error.
    #[serde(default = "default_deadline")]
    pub training_deadline_secs: u64,
    /// Largest plan or parameter file the node downloads, in bytes.
    #[serde(default = "default_max_download")]
    pub max_download_bytes: u64,
    /// Train requests kept waiting, from all researchers together; more are
    /// answered "busy".
    #[serde(default = "default_max_queued")]
    pub max_queued_tasks: usize,
    /// Train requests kept waiting from one researcher.
    #[serde(default = "default_max_queued_per_researcher")]
    pub max_queued_per_researcher: usize,
    /// Privacy mode for every task, not only those with `dp_args`: only the
    /// trained parameters and counts leave the node — no loss, scalars, plan
    /// logs, plan learning rate, training time, validation scores or error
    /// details.
    #[serde(default)]
    pub always_private: bool,
    /// Plans that may wait for the operator's decision; requests for new
    /// plans past this are refused until the operator decides some.
    #[serde(default = "default_max_pending_plans")]
    pub max_pending_plans: usize,
    /// The MQTT broker.
    pub broker: BrokerConfig,
    /// The file repository.
    pub repository: RepositoryLink,
    /// Limits of the plan sandbox.
    #[serde(default)]
    pub sandbox: SandboxConfig,
}

fn default_true() -> bool {
    true
}

fn default_deadline() -> u64 {
    3600
}

fn default_max_download() -> u64 {
    1 << 30
}

fn default_max_queued() -> usize {
    16
}

fn default_max_queued_per_researcher() -> usize {
    4
}

fn default_max_pending_plans() -> usize {
    32
}

impl NodeConfig {
    /// Path of the configuration file in a node folder.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("node.toml")
    }

    /// Path of the node's database in a node folder.
    pub fn store_path(dir: &Path) -> PathBuf {
        dir.join("node.db")
    }

    /// Create `<dir>/node.toml`; refuses to overwrite an existing node.
    pub fn init(
        dir: &Path,
        id: Option<String>,
        name: Option<String>,
        broker: String,
        repository: String,
    ) -> Result<Self, NodeError> {
        // Absolute, so the node can be started from any working directory.
        let dir = &std::path::absolute(dir)
            .map_err(|e| NodeError::Config(format!("folder {}: {e}", dir.display())))?;
        let path = Self::path(dir);
        if path.exists() {
            return Err(NodeError::Config(format!(
                "{} already exists: this folder is a node already",
                path.display()
            )));
        }
        let id = match id {
            Some(id) => id,
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                format!(
                    "node-{}",
                    &Sha256Digest::of(format!("{}{nanos}", dir.display()).as_bytes()).to_hex()[..8]
                )
            }
        };
        BrokerConfig::new(broker.clone())
            .endpoint()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        if !valid_id(&id) {
            return Err(NodeError::Config(format!(
                "node id `{id}` must be 1–64 characters of letters, digits, `-`, `_` or `.`"
            )));
        }
        let config = NodeConfig {
            name: name.unwrap_or_else(|| id.clone()),
            id,
            broker: BrokerConfig::new(broker),
            repository: RepositoryLink::new(repository, None),
            require_approval: true,
            training_deadline_secs: default_deadline(),
            max_download_bytes: default_max_download(),
            max_queued_tasks: default_max_queued(),
            max_queued_per_researcher: default_max_queued_per_researcher(),
            max_pending_plans: default_max_pending_plans(),
            always_private: false,
            sandbox: SandboxConfig {
                cache_dir: Some(dir.join("cache")),
                ..SandboxConfig::default()
            },
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| NodeError::Config(format!("cannot create {}: {e}", dir.display())))?;
        config.save(dir)?;
        config.credentials(dir)?;
        Ok(config)
    }

    /// The node's key (`<dir>/identity.key`, made on first use) and the
    /// roster of researchers it serves (`<dir>/roster.toml`).
    pub fn credentials(&self, dir: &Path) -> Result<Credentials, NodeError> {
        Ok(Credentials::load(
            &node_key_file(dir),
            &node_roster_file(dir),
            Role::Node,
            &self.id,
        )?)
    }

    /// Write this configuration to `dir/node.toml`.
    pub fn save(&self, dir: &Path) -> Result<(), NodeError> {
        let path = Self::path(dir);
        let text = toml::to_string(self).map_err(|e| NodeError::Config(e.to_string()))?;
        std::fs::write(&path, text)
            .map_err(|e| NodeError::Config(format!("cannot write {}: {e}", path.display())))
    }

    /// The training queue's limits (at least one place each).
    pub fn queue_limits(&self) -> super::queue::QueueLimits {
        super::queue::QueueLimits {
            total: self.max_queued_tasks.max(1),
            per_researcher: self.max_queued_per_researcher.max(1),
        }
    }

    /// Read `<dir>/node.toml`.
    pub fn load(dir: &Path) -> Result<Self, NodeError> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            NodeError::Config(format!(
                "cannot read {}: {e}; create the node with `fedwasm node init --dir {}`",
                path.display(),
                dir.display()
            ))
        })?;
        toml::from_str(&text).map_err(|e| NodeError::Config(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_config_that_loads_and_refuses_a_second_init() {
        let dir = tempfile::tempdir().unwrap();
        let made = NodeConfig::init(
            dir.path(),
            Some("hospital-a".into()),
            None,
            "mqtt://b:1883".into(),
            "http://r".into(),
        )
        .unwrap();
        assert_eq!(NodeConfig::load(dir.path()).unwrap(), made);
        assert!(made.require_approval);
        let again =
            NodeConfig::init(dir.path(), None, None, "mqtt://b".into(), String::new()).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        let other = tempfile::tempdir().unwrap();
        let bad = NodeConfig::init(
            other.path(),
            Some("a/b".into()),
            None,
            "mqtt://b".into(),
            String::new(),
        )
        .unwrap_err();
        assert!(bad.to_string().contains("must be 1–64 characters"), "{bad}");
        let missing = NodeConfig::load(other.path()).unwrap_err();
        assert!(
            missing.to_string().contains("fedwasm node init"),
            "{missing}"
        );
    }
}
