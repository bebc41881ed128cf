//! What a round leaves on disk in the experimentation folder: the history
//! (`history.json`), each round's global parameters
//! (`rounds/global_NNNN.safetensors`) and the latest (`global.safetensors`).
//! Breakpoints, which also restore, are in `breakpoint.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::{Experiment, io};
use crate::digest::Sha256Digest;
use crate::researcher::ExperimentError;
use crate::sandbox::types::Tensor;

/// Where a round's global parameters are kept, relative to the folder.
pub(super) fn round_path(round: u32) -> String {
    format!("rounds/global_{round:04}.safetensors")
}

/// The global parameters of a round as written.
pub(super) struct SavedGlobal {
    /// Relative to the experimentation folder.
    pub relative: String,
    /// SHA-256 of the file.
    pub sha256: Sha256Digest,
}

impl Experiment {
    /// Write `history.json`.
    pub(super) fn write_history(&self) -> Result<(), ExperimentError> {
        let path = self.folder.join("history.json");
        let text =
            serde_json::to_string_pretty(&self.history).map_err(|e| ExperimentError::Io {
                what: "encoding history".into(),
                source: std::io::Error::other(e),
            })?;
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))
    }

    /// Write the global parameters after `round`: its own file, with the
    /// experiment, round and plan digest as metadata, and the latest copy.
    pub(super) fn write_global(
        &self,
        round: u32,
        tensors: &[Tensor],
    ) -> Result<SavedGlobal, ExperimentError> {
        let relative = round_path(round);
        let path: PathBuf = self.folder.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        // What `fedwasm evaluate` needs to use the file on its own: the
        // plan it fits and the model arguments it was trained with.
        let mut metadata = BTreeMap::from([
            ("experiment_id".to_string(), self.id.clone()),
            ("round".to_string(), round.to_string()),
            (
                "plan_sha256".to_string(),
                self.training_plan_digest()
                    .map(|d| d.to_hex())
                    .unwrap_or_default(),
            ),
            (
                "model_args".to_string(),
                Value::Object(self.model_args.clone()).to_string(),
            ),
        ]);
        if let Some(plan) = &self.plan {
            metadata.insert("plan_name".to_string(), plan.name.clone());
        }
        let bytes =
            crate::tensors::to_bytes(tensors, &metadata).map_err(|e| ExperimentError::Io {
                what: "encoding parameters".into(),
                source: std::io::Error::other(e),
            })?;
        std::fs::write(&path, &bytes).map_err(io(format!("writing {}", path.display())))?;
        let latest = self.folder.join("global.safetensors");
        std::fs::write(&latest, &bytes).map_err(io(format!("writing {}", latest.display())))?;
        Ok(SavedGlobal {
            relative,
            sha256: Sha256Digest::of(&bytes),
        })
    }
}
