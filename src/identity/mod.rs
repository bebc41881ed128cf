//! Who sent this? Every node and researcher has an Ed25519 key
//! ([`Identity`]); every message it sends is signed (see
//! [`crate::wire::seal`]); a receiver accepts a message only when the
//! signature verifies under the key its [`Roster`] pins for the claimed
//! sender ([`KeyRing`]). A broker password lets a client publish; only a
//! pinned key lets it be believed.
//!
//! # Layout
//! - `key.rs`: [`Identity`] (the secret, a 0600 file) and [`PublicKey`].
//! - `roster.rs`: [`Roster`] (`roster.toml`) and [`KeyRing`] (the roster
//!   in use: checks, re-reads, trust-on-first-use, refusal counts).

mod key;
mod roster;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use key::{Identity, PublicKey, Role};
pub use roster::{KeyRing, Refusal, Roster, Trust};

/// Why a key or roster cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Text that is not a public key.
    #[error("bad public key: {0}")]
    BadKey(String),
    /// A key file that does not hold a key.
    #[error(
        "the key file {path} does not hold a key (64 hex digits on a line); restore it from a backup, or move it away to make a new key (others must then pin the new one)"
    )]
    BadKeyFile {
        /// The file.
        path: String,
    },
    /// A key file others may read.
    #[error(
        "the key file {path} can be read by others (mode {mode:o}); run `chmod 600 {path}`, and make a new key if others may have copied it"
    )]
    OpenKeyFile {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A roster file that does not parse.
    #[error("the roster {path} cannot be read: {reason}")]
    BadRoster {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An id that cannot name a node or researcher.
    #[error("`{0}` is not an id: use 1 to 64 letters, digits, `-`, `_` or `.`")]
    BadId(String),
    /// Another key for a pinned id.
    #[error(
        "{role} `{id}` is pinned to {pinned}, not {offered}; if the key was really replaced, run `fedwasm roster remove {role} {id}` first"
    )]
    KeyChanged {
        /// Node or researcher.
        role: Role,
        /// The id.
        id: String,
        /// What the roster has.
        pinned: PublicKey,
        /// What was offered.
        offered: PublicKey,
    },
    /// The system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// A party's own key and the roster it checks others against: what a
/// connection to the broker needs to sign what it sends and check what it
/// receives.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Our key and the id we sign as.
    pub identity: Arc<Identity>,
    /// Whom we believe.
    pub keyring: Arc<KeyRing>,
}

impl Credentials {
    /// The key in `key_file` (made when absent) and the roster in `roster_file`.
    pub fn load(
        key_file: &Path,
        roster_file: &Path,
        role: Role,
        id: &str,
    ) -> Result<Credentials, IdentityError> {
        Ok(Credentials {
            identity: Arc::new(Identity::load_or_create(key_file, role, id)?),
            keyring: Arc::new(KeyRing::open(roster_file)?),
        })
    }
}

impl Credentials {
    /// A researcher's credentials: the key in `key_file` (default
    /// [`researcher_key_file`]; made on the first run), the roster of nodes
    /// it trusts in `roster_file` (default [`researcher_roster_file`]), and
    /// the id it signs as: `id`, or one derived from the key.
    pub fn researcher(
        key_file: Option<&Path>,
        roster_file: Option<&Path>,
        id: Option<&str>,
    ) -> Result<Credentials, IdentityError> {
        let key_file = key_file.map_or_else(researcher_key_file, Path::to_path_buf);
        let roster_file = roster_file.map_or_else(researcher_roster_file, Path::to_path_buf);
        let key = Identity::load_or_create(&key_file, Role::Researcher, "researcher")?;
        let id = id.map_or_else(|| default_researcher_id(&key.public()), str::to_string);
        if !crate::wire::topics::valid_id(&id) {
            return Err(IdentityError::BadId(id));
        }
        Ok(Credentials {
            identity: Arc::new(key.renamed(&id)),
            keyring: Arc::new(KeyRing::open(&roster_file)?),
        })
    }
}

/// Where a node keeps its key, in its folder.
pub fn node_key_file(dir: &Path) -> PathBuf {
    dir.join("identity.key")
}

/// Where a node keeps its roster (the researchers it serves), in its folder.
pub fn node_roster_file(dir: &Path) -> PathBuf {
    dir.join("roster.toml")
}

/// The researcher's folder: `$FEDWASM_DIR`, by default `~/.fedwasm`.
pub fn researcher_home() -> PathBuf {
    std::env::var_os("FEDWASM_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".fedwasm")))
        .unwrap_or_else(|| PathBuf::from(".fedwasm"))
}

/// Where the researcher keeps its key: `$FEDWASM_DIR/identity.key`.
pub fn researcher_key_file() -> PathBuf {
    researcher_home().join("identity.key")
}

/// Where the researcher keeps its roster (the nodes it trusts).
pub fn researcher_roster_file() -> PathBuf {
    researcher_home().join("roster.toml")
}

/// The researcher id a key signs as when the settings name none: stable
/// for the key, unlike any other key's.
pub fn default_researcher_id(key: &PublicKey) -> String {
    format!("researcher-{}", &hex::encode(key.bytes())[..12])
}
