//! The node's private noise key: 32 random bytes in `<node folder>/noise.key`
//! that seed its differential-privacy noise. The researcher picks the random
//! seed of an experiment, so noise drawn from that seed alone could be
//! replayed and subtracted; keyed with this file it cannot, while runs on the
//! same node stay reproducible.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::NodeError;

/// Where the key of the node in `dir` lives.
pub fn noise_key_path(dir: &Path) -> PathBuf {
    dir.join("noise.key")
}

/// The key of the node in `dir`, created (readable by the owner only) the
/// first time it is needed.
pub fn noise_key(dir: &Path) -> Result<[u8; 32], NodeError> {
    let path = noise_key_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut key = [0; 32];
            hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
                NodeError::Config(format!(
                    "{} is not 64 hex digits; delete it and a new key is made (past noise stays secret)",
                    path.display()
                ))
            })?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0; 32];
            getrandom::fill(&mut key).map_err(|e| {
                NodeError::Config(format!(
                    "no operating-system randomness for {}: {e}",
                    path.display()
                ))
            })?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let written = options
                .open(&path)
                .and_then(|mut f| f.write_all(hex::encode(key).as_bytes()));
            match written {
                Ok(()) => Ok(key),
                // Another task created it first: use that one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => noise_key(dir),
                Err(e) => Err(NodeError::Config(format!(
                    "cannot write {}: {e}",
                    path.display()
                ))),
            }
        }
        Err(e) => Err(NodeError::Config(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = noise_key(dir.path()).unwrap();
        assert_eq!(first, noise_key(dir.path()).unwrap());
        let other = tempfile::tempdir().unwrap();
        assert_ne!(first, noise_key(other.path()).unwrap());
        std::fs::write(noise_key_path(dir.path()), "not hex").unwrap();
        let err = noise_key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not 64 hex digits"), "{err}");
    }
}
