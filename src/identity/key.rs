//! [`Identity`] (a signing key kept in a 0600 file) and [`PublicKey`] (what
//! a roster pins, shown as `ed25519:<64 hex digits>`).

use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::IdentityError;
use crate::digest::Sha256Digest;

/// Text before the hex digits of a public key.
const KEY_PREFIX: &str = "ed25519:";

/// First line of a key file: says what the file is and that it is secret.
const KEY_FILE_HEADER: &str = "# fedwasm Ed25519 secret key: keep this file private (mode 0600)";

/// An Ed25519 public key: what a roster pins for a node or researcher id.
/// Kept as its 32 bytes, checked to be a valid point when made.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The 32 bytes of the key.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short, readable fingerprint to compare by eye or over the phone:
    /// the first 16 hex digits of the key's SHA-256 in groups of four.
    pub fn fingerprint(&self) -> String {
        let hex = Sha256Digest::of(self.bytes()).to_hex();
        hex.as_bytes()[..16]
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Whether `signature` signs `bytes` with this key (strict verification:
    /// no malleable or small-order encodings).
    pub fn verifies(&self, bytes: &[u8], signature: &[u8; 64]) -> bool {
        self.point()
            .is_some_and(|point| verifies_with(&point, bytes, signature))
    }

    /// The key as a curve point: decompressing it is a good part of a
    /// verification, so a receiver keeps the points of the keys it pins.
    pub(crate) fn point(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).ok()
    }
}

/// Whether `signature` signs `bytes` under `point` (strict verification).
pub(crate) fn verifies_with(point: &VerifyingKey, bytes: &[u8], signature: &[u8; 64]) -> bool {
    point
        .verify_strict(bytes, &Signature::from_bytes(signature))
        .is_ok()
}

impl PublicKey {}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_PREFIX}{}", hex::encode(self.bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| IdentityError::BadKey(reason.to_string());
        let digits = text
            .trim()
            .strip_prefix(KEY_PREFIX)
            .ok_or_else(|| bad("a public key starts with `ed25519:`"))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digits, &mut bytes)
            .map_err(|_| bad("a public key is `ed25519:` and 64 hex digits"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(|_| PublicKey(bytes))
            .map_err(|_| bad("those 64 hex digits are not a valid Ed25519 point"))
    }
}

impl TryFrom<String> for PublicKey {
    type Error = IdentityError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<PublicKey> for String {
    fn from(key: PublicKey) -> String {
        key.to_string()
    }
}

/// Who signs: a node or a researcher. One id may name a node and a
/// researcher at once; they are different parties with different keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A node (hospital).
    Node,
    /// A researcher.
    Researcher,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Node => "node",
            Role::Researcher => "researcher",
        })
    }
}

/// A party's own signing key with the id and role it signs as. Every
/// message it sends is signed with it; its [`PublicKey`] is what others pin.
#[derive(Clone)]
pub struct Identity {
    role: Role,
    id: String,
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "Identity({} {}, {})", self.role, self.id, self.public())
    }
}

impl Identity {
    /// A new random key for `id`.
    pub fn generate(role: Role, id: &str) -> Result<Identity, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Identity::from_seed(role, id, seed))
    }

    /// The identity of a known 32-byte secret (tests, and key files).
    pub fn from_seed(role: Role, id: &str, seed: [u8; 32]) -> Identity {
        Identity {
            role,
            id: id.to_string(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The key in `path` for `id`, made (and written with mode 0600) when
    /// the file does not exist yet.
    pub fn load_or_create(path: &Path, role: Role, id: &str) -> Result<Identity, IdentityError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Identity::parse_file(path, &text, role, id),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity::generate(role, id)?;
                identity.write(path)?;
                tracing::info!(
                    "made a new {role} key for `{id}` (fingerprint {})",
                    identity.public().fingerprint()
                );
                Ok(identity)
            }
            Err(source) => Err(IdentityError::Io {
                what: format!("reading the key file {}", path.display()),
                source,
            }),
        }
    }

    /// The key in `path`, which must exist.
    pub fn load(path: &Path, role: Role, id: &str) -> Result<Identity, IdentityError> {
        let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Io {
            what: format!("reading the key file {}", path.display()),
            source,
        })?;
        Identity::parse_file(path, &text, role, id)
    }

    fn parse_file(
        path: &Path,
        text: &str,
        role: Role,
        id: &str,
    ) -> Result<Identity, IdentityError> {
        refuse_open_permissions(path)?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or_default();
        let mut seed = [0u8; 32];
        hex::decode_to_slice(line, &mut seed).map_err(|_| IdentityError::BadKeyFile {
            path: path.display().to_string(),
        })?;
        Ok(Identity::from_seed(role, id, seed))
    }

    /// Write the secret to `path` (mode 0600, created new: an existing key
    /// is never overwritten).
    pub fn write(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io {
            what: format!("writing the key file {}", path.display()),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        let text = format!(
            "{KEY_FILE_HEADER}\n# public key: {}\n{}\n",
            self.public(),
            hex::encode(self.key.to_bytes())
        );
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Node or researcher.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The id it signs as.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The same key under another id (a researcher whose settings name it).
    pub fn renamed(&self, id: &str) -> Identity {
        Identity {
            id: id.to_string(),
            ..self.clone()
        }
    }

    /// What others pin.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// The signature of `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> [u8; 64] {
        self.key.sign(bytes).to_bytes()
    }
}

/// A key file others can read is refused: a key anyone on the machine can
/// copy proves nothing.
fn refuse_open_permissions(path: &Path) -> Result<(), IdentityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|source| IdentityError::Io {
                what: format!("reading the key file {}", path.display()),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(IdentityError::OpenKeyFile {
                path: path.display().to_string(),
                mode: mode & 0o777,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_private_and_reloads_to_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/identity.key");
        let made = Identity::load_or_create(&path, Role::Node, "n1").unwrap();
        let again = Identity::load_or_create(&path, Role::Node, "n1").unwrap();
        assert_eq!(made.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = Identity::load(&path, Role::Node, "n1").unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        assert!(
            made.write(&path).is_err(),
            "an existing key is never overwritten"
        );
        assert!(!format!("{made:?}").contains(&hex::encode(made.key.to_bytes())));
    }

    #[test]
    fn public_keys_round_trip_as_text_and_refuse_garbage() {
        let id = Identity::from_seed(Role::Researcher, "alice", [3; 32]);
        let text = id.public().to_string();
        assert!(
            text.starts_with("ed25519:") && text.len() == 8 + 64,
            "{text}"
        );
        assert_eq!(text.parse::<PublicKey>().unwrap(), id.public());
        assert_eq!(id.public().fingerprint().len(), 19);
        for bad in ["", "ed25519:zz", "rsa:00", &text[..40]] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_signature_verifies_only_its_bytes_under_its_key() {
        let a = Identity::from_seed(Role::Node, "a", [1; 32]);
        let b = Identity::from_seed(Role::Node, "b", [2; 32]);
        let sig = a.sign(b"hello");
        assert!(a.public().verifies(b"hello", &sig));
        assert!(!a.public().verifies(b"hellp", &sig));
        assert!(!b.public().verifies(b"hello", &sig));
    }
}
