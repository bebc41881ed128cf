//! [`Roster`]: the keys a party trusts, kept in `roster.toml`, and
//! [`KeyRing`], the roster in use: it answers "is this the pinned key of
//! node X (or researcher Y)?" for every message received, re-reads the file
//! when an operator changed it, and pins first-seen keys only in the
//! explicit trust-on-first-use mode.
//!
//! A federation exchanges keys out of band, as sites exchange certificates
//! today: each node operator runs `fedwasm node init` (it prints the node's
//! key) and sends it to the researcher, who adds it with `fedwasm roster add
//! node ID KEY`; the researcher's key (`fedwasm roster whoami`) goes the
//! other way, into each node's roster. A key that changes is refused loudly:
//! the operator must remove the old one first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use ed25519_dalek::VerifyingKey;

use super::key::verifies_with;
use super::{IdentityError, PublicKey, Role};

/// The keys one party trusts: node id → key, researcher id → key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    /// Pin the key of an id seen for the first time instead of refusing it.
    /// For local work only: whoever speaks first under an id owns it.
    #[serde(default)]
    pub trust_on_first_use: bool,
    /// Node id → its key.
    #[serde(default)]
    pub nodes: BTreeMap<String, PublicKey>,
    /// Researcher id → its key (on a node: the researchers it serves).
    #[serde(default)]
    pub researchers: BTreeMap<String, PublicKey>,
}

/// Comment at the top of a roster file written by fedwasm.
const ROSTER_HEADER: &str = "# fedwasm roster: the keys this party trusts (`fedwasm roster --help`).\n\
# Add keys received out of band; a key that changes is refused until its\n\
# old entry is removed.\n";

impl Roster {
    /// The roster in `path`; an absent file is an empty roster.
    pub fn load(path: &Path) -> Result<Roster, IdentityError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| IdentityError::BadRoster {
                path: path.display().to_string(),
                reason: e.message().to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Roster::default()),
            Err(source) => Err(IdentityError::Io {
                what: format!("reading the roster {}", path.display()),
                source,
            }),
        }
    }

    /// Write to `path` through a temporary file, so a reader never sees half a roster.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io {
            what: format!("writing the roster {}", path.display()),
            source,
        };
        let text = toml::to_string(self).map_err(|e| IdentityError::BadRoster {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, format!("{ROSTER_HEADER}{text}").as_bytes())
            .map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// The table of `role`.
    pub fn of(&self, role: Role) -> &BTreeMap<String, PublicKey> {
        match role {
            Role::Node => &self.nodes,
            Role::Researcher => &self.researchers,
        }
    }

    fn of_mut(&mut self, role: Role) -> &mut BTreeMap<String, PublicKey> {
        match role {
            Role::Node => &mut self.nodes,
            Role::Researcher => &mut self.researchers,
        }
    }

    /// Pin `key` for `id`. The same key again is fine; another key for a
    /// pinned id is refused, naming both, so a replaced key is a decision.
    pub fn pin(&mut self, role: Role, id: &str, key: PublicKey) -> Result<(), IdentityError> {
        if !crate::wire::topics::valid_id(id) {
            return Err(IdentityError::BadId(id.to_string()));
        }
        match self.of(role).get(id) {
            Some(pinned) if *pinned != key => Err(IdentityError::KeyChanged {
                role,
                id: id.to_string(),
                pinned: *pinned,
                offered: key,
            }),
            _ => {
                self.of_mut(role).insert(id.to_string(), key);
                Ok(())
            }
        }
    }

    /// Forget `id`'s key; whether there was one.
    pub fn remove(&mut self, role: Role, id: &str) -> bool {
        self.of_mut(role).remove(id).is_some()
    }
}

/// How a key was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// It is the roster's key for that id.
    Pinned,
    /// Unknown, and pinned now (trust-on-first-use mode).
    FirstUse,
}

/// Why a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No key is pinned for the id (and trust-on-first-use is off).
    #[error(
        "{role} `{id}` is not in the roster; if its key {key} is right, add it with `fedwasm roster add {role} {id} {key}`"
    )]
    Unknown {
        /// Node or researcher.
        role: Role,
        /// The id it claims.
        id: String,
        /// The key it signed with.
        key: PublicKey,
    },
    /// Another key is pinned for the id.
    #[error(
        "{role} `{id}` signed with key {offered}, but the roster pins {pinned}: refused. If the key was really replaced, remove the old one (`fedwasm roster remove {role} {id}`) and add the new one"
    )]
    Changed {
        /// Node or researcher.
        role: Role,
        /// The id it claims.
        id: String,
        /// The roster's key.
        pinned: PublicKey,
        /// The key it signed with.
        offered: PublicKey,
    },
    /// The signature does not match the bytes under that key.
    #[error("the signature of {role} `{id}` does not verify: forged or corrupted")]
    BadSignature {
        /// Node or researcher.
        role: Role,
        /// The id it claims.
        id: String,
    },
}

/// When a roster file was last seen as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// The roster a party checks every received message against, shared by
/// its tasks. Refusals are counted.
#[derive(Debug)]
pub struct KeyRing {
    path: Option<PathBuf>,
    state: Mutex<(Roster, Option<Stamp>)>,
    /// The curve points of the pinned keys seen, decompressed once.
    points: Mutex<HashMap<PublicKey, VerifyingKey>>,
    refused: AtomicU64,
}

/// Points kept; past this the cache starts over.
const MAX_POINTS: usize = 4096;

impl KeyRing {
    /// A roster that lives in memory only.
    pub fn in_memory(roster: Roster) -> KeyRing {
        KeyRing {
            path: None,
            state: Mutex::new((roster, None)),
            points: Mutex::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// The roster in `path` (absent: empty), re-read whenever the file
    /// changes, so a key added or removed while the party runs counts at once.
    pub fn open(path: &Path) -> Result<KeyRing, IdentityError> {
        // The stamp before the contents: a file replaced in between is then
        // read again at the next message, instead of its change being missed
        // for good (as when an operator adds a key while the node starts).
        let seen = stamp(path);
        let roster = Roster::load(path)?;
        Ok(KeyRing {
            path: Some(path.to_path_buf()),
            state: Mutex::new((roster, seen)),
            points: Mutex::default(),
            refused: AtomicU64::new(0),
        })
    }

    /// Messages refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Count a message refused for a reason found after its signature
    /// checked out (a signer speaking for another party).
    pub fn count_refusal(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the roster as it is now.
    pub fn roster(&self) -> Roster {
        self.lock().0.clone()
    }

    /// Pin `key` for `id` now (and in the file, when there is one).
    pub fn pin(&self, role: Role, id: &str, key: PublicKey) -> Result<(), IdentityError> {
        let mut state = self.lock();
        state.0.pin(role, id, key)?;
        if let Some(path) = &self.path {
            state.0.save(path)?;
            state.1 = stamp(path);
        }
        Ok(())
    }

    /// [`PublicKey::verifies`] for a pinned key, its point decompressed once.
    fn verifies_pinned(&self, key: &PublicKey, bytes: &[u8], signature: &[u8; 64]) -> bool {
        let point = {
            let mut points = self.points.lock().unwrap_or_else(|p| p.into_inner());
            match points.get(key) {
                Some(point) => *point,
                None => {
                    let Some(point) = key.point() else {
                        return false;
                    };
                    if points.len() >= MAX_POINTS {
                        points.clear();
                    }
                    points.insert(*key, point);
                    point
                }
            }
        };
        verifies_with(&point, bytes, signature)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Roster, Option<Stamp>)> {
        // Every update leaves the roster whole, so a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-read the file if it changed since last read; a file that no longer
    /// reads keeps the roster as it was (and says so).
    fn refresh(&self, state: &mut (Roster, Option<Stamp>)) {
        let Some(path) = &self.path else { return };
        let now = stamp(path);
        if now == state.1 {
            return;
        }
        match Roster::load(path) {
            Ok(roster) => *state = (roster, now),
            Err(e) => tracing::error!("keeping the roster as it was: {e}"),
        }
    }

    /// Accept `bytes` signed by `signature` as coming from `role` `id`
    /// only if `key` is the key pinned for it (or, in trust-on-first-use
    /// mode, no key is pinned yet) and the signature verifies.
    pub fn verify(
        &self,
        role: Role,
        id: &str,
        key: &PublicKey,
        bytes: &[u8],
        signature: &[u8; 64],
    ) -> Result<Trust, Refusal> {
        let outcome = self.check(role, id, key, bytes, signature);
        if let Err(refusal) = &outcome {
            self.refused.fetch_add(1, Ordering::Relaxed);
            match refusal {
                Refusal::Changed { .. } => tracing::error!("{refusal}"),
                _ => tracing::warn!("refused a message: {refusal}"),
            }
        }
        outcome
    }

    fn check(
        &self,
        role: Role,
        id: &str,
        key: &PublicKey,
        bytes: &[u8],
        signature: &[u8; 64],
    ) -> Result<Trust, Refusal> {
        let mut state = self.lock();
        // One metadata call: a key added or removed by the operator counts
        // from the next message on.
        self.refresh(&mut state);
        let bad_signature = || Refusal::BadSignature {
            role,
            id: id.to_string(),
        };
        match state.0.of(role).get(id) {
            Some(pinned) if pinned != key => Err(Refusal::Changed {
                role,
                id: id.to_string(),
                pinned: *pinned,
                offered: *key,
            }),
            Some(_) => self
                .verifies_pinned(key, bytes, signature)
                .then_some(Trust::Pinned)
                .ok_or_else(bad_signature),
            None if state.0.trust_on_first_use => {
                if !key.verifies(bytes, signature) {
                    return Err(bad_signature());
                }
                state.0.of_mut(role).insert(id.to_string(), *key);
                tracing::warn!(
                    "trust on first use: pinned {role} `{id}` to key {key} (fingerprint {})",
                    key.fingerprint()
                );
                if let Some(path) = &self.path {
                    match state.0.save(path) {
                        Ok(()) => state.1 = stamp(path),
                        Err(e) => tracing::error!("the pin is kept in memory only: {e}"),
                    }
                }
                Ok(Trust::FirstUse)
            }
            None => Err(Refusal::Unknown {
                role,
                id: id.to_string(),
                key: *key,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn node(seed: u8) -> Identity {
        Identity::from_seed(Role::Node, "n1", [seed; 32])
    }

    #[test]
    fn only_the_pinned_key_with_a_good_signature_is_accepted() {
        let honest = node(1);
        let mut roster = Roster::default();
        roster.pin(Role::Node, "n1", honest.public()).unwrap();
        let ring = KeyRing::in_memory(roster);
        let sig = honest.sign(b"m");
        assert_eq!(
            ring.verify(Role::Node, "n1", &honest.public(), b"m", &sig),
            Ok(Trust::Pinned)
        );
        let forged = node(2);
        let refusal = ring
            .verify(Role::Node, "n1", &forged.public(), b"m", &forged.sign(b"m"))
            .unwrap_err();
        assert!(matches!(refusal, Refusal::Changed { .. }), "{refusal}");
        assert!(refusal.to_string().contains("roster remove node n1"));
        let refusal = ring
            .verify(Role::Node, "n1", &honest.public(), b"other", &sig)
            .unwrap_err();
        assert!(matches!(refusal, Refusal::BadSignature { .. }));
        let refusal = ring
            .verify(Role::Researcher, "n1", &honest.public(), b"m", &sig)
            .unwrap_err();
        assert!(
            matches!(refusal, Refusal::Unknown { .. }),
            "roles are apart"
        );
        assert!(
            refusal
                .to_string()
                .contains("fedwasm roster add researcher n1 ed25519:")
        );
        assert_eq!(ring.refused(), 3);
    }

    #[test]
    fn trust_on_first_use_pins_the_first_key_and_refuses_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.toml");
        Roster {
            trust_on_first_use: true,
            ..Roster::default()
        }
        .save(&path)
        .unwrap();
        let ring = KeyRing::open(&path).unwrap();
        let first = node(1);
        let bad = ring.verify(Role::Node, "n1", &first.public(), b"m", &[0; 64]);
        assert!(bad.is_err(), "a bad signature pins nothing");
        assert_eq!(
            ring.verify(Role::Node, "n1", &first.public(), b"m", &first.sign(b"m")),
            Ok(Trust::FirstUse)
        );
        let second = node(2);
        assert!(
            ring.verify(Role::Node, "n1", &second.public(), b"m", &second.sign(b"m"))
                .is_err()
        );
        assert_eq!(Roster::load(&path).unwrap().nodes["n1"], first.public());
    }

    #[test]
    fn a_key_removed_from_the_file_while_running_is_refused_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.toml");
        let n = node(6);
        let mut roster = Roster::default();
        roster.pin(Role::Node, "n1", n.public()).unwrap();
        roster.save(&path).unwrap();
        let ring = KeyRing::open(&path).unwrap();
        let sig = n.sign(b"m");
        assert!(
            ring.verify(Role::Node, "n1", &n.public(), b"m", &sig)
                .is_ok()
        );
        roster.remove(Role::Node, "n1");
        roster.save(&path).unwrap();
        assert!(
            ring.verify(Role::Node, "n1", &n.public(), b"m", &sig)
                .is_err()
        );
    }

    #[test]
    fn a_key_added_to_the_file_while_running_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.toml");
        let ring = KeyRing::open(&path).unwrap();
        let n = node(5);
        let sig = n.sign(b"m");
        assert!(
            ring.verify(Role::Node, "n1", &n.public(), b"m", &sig)
                .is_err()
        );
        let mut roster = Roster::load(&path).unwrap();
        roster.pin(Role::Node, "n1", n.public()).unwrap();
        roster.save(&path).unwrap();
        assert_eq!(
            ring.verify(Role::Node, "n1", &n.public(), b"m", &sig),
            Ok(Trust::Pinned)
        );
    }

    #[test]
    fn a_roster_file_round_trips_and_names_a_bad_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.toml");
        let mut roster = Roster::default();
        roster
            .pin(Role::Researcher, "alice", node(9).public())
            .unwrap();
        roster.save(&path).unwrap();
        assert_eq!(Roster::load(&path).unwrap(), roster);
        std::fs::write(&path, "[nodes]\nn1 = \"ed25519:00\"\n").unwrap();
        let err = Roster::load(&path).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
        assert!(roster.pin(Role::Node, "../x", node(1).public()).is_err());
    }
}
