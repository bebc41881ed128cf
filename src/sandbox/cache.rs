//! The on-disk cache of compiled plans.
//!
//! A compiled plan is native code, so only artifacts this node wrote itself are
//! ever loaded. Files are keyed by the component's SHA-256 and live in a folder
//! named after the engine's compatibility hash (wasmtime version, target, and
//! settings such as epoch interruption), so an upgrade or a change of settings
//! never loads an artifact compiled for another configuration.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::digest::Sha256Digest;

/// Compiled components on disk for one engine configuration.
pub(crate) struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// The cache folder for `engine` under `root`.
    pub(crate) fn new(root: &Path, engine: &Engine) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        DiskCache {
            dir: root.join(format!("engine-{:016x}", hasher.finish())),
        }
    }

    fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm", digest.to_hex()))
    }

    /// The compiled component for `digest`, if this node cached a usable one.
    pub(crate) fn load(&self, engine: &Engine, digest: &Sha256Digest) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file is one this process family serialised itself with an
        // engine of the same compatibility hash (see `store`), written atomically.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!("ignoring unusable compiled plan {}: {e}", path.display());
                None
            }
        }
    }

    /// Keep `component` for later processes; failures only cost a recompile.
    pub(crate) fn store(&self, digest: &Sha256Digest, component: &Component) {
        let result = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let bytes = component.serialize().map_err(std::io::Error::other)?;
            let tmp = tempfile_in(&self.dir)?;
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, self.path(digest))
        })();
        if let Err(e) = result {
            tracing::warn!("could not cache compiled plan {}: {e}", digest.short());
        }
    }
}

/// A fresh file name in `dir` for an atomic write.
fn tempfile_in(dir: &Path) -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!(".tmp-{}-{n}", std::process::id())))
}
