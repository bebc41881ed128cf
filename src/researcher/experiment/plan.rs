//! The training plan as the researcher holds it: loaded (or built from a
//! plan crate) into the researcher's own sandbox, named by its `describe`,
//! and the source of the initial global parameters (`init-model`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::Experiment;
use crate::researcher::ExperimentError;
use crate::sandbox::LoadedPlan;
use crate::sandbox::random::StreamSeed;
use crate::sandbox::types::Tensor;
use crate::wire::BlobRef;

/// The plan as the researcher knows it.
pub(super) struct Plan {
    pub(super) path: PathBuf,
    pub(super) loaded: Arc<LoadedPlan>,
    pub(super) name: String,
    /// In the repository, once uploaded.
    pub(super) uploaded: Option<BlobRef>,
}

impl Experiment {
    /// Use the plan at `path`: a component file, or a plan crate folder that
    /// is built first. With `name`, the plan's `describe().name` must match.
    pub fn set_training_plan(
        &mut self,
        path: &Path,
        name: Option<&str>,
    ) -> Result<(), ExperimentError> {
        let component = if path.is_dir() {
            let out = self.folder.join("training_plan.wasm");
            crate::plan_build::build_plan(path, Some(&out), None)
                .map_err(|e| {
                    ExperimentError::Argument(format!("building {}: {e}", path.display()))
                })?
                .path
        } else {
            path.to_path_buf()
        };
        let loaded = self.sandbox.load_file(&component)?;
        let mut instance = self
            .sandbox
            .instantiate(&loaded, &StreamSeed::for_plan(0, 0, "researcher"))?;
        let info = instance.describe()?;
        if let Some(expected) = name
            && expected != info.name
        {
            return Err(ExperimentError::Argument(format!(
                "the plan at {} is `{}`, not `{expected}`",
                component.display(),
                info.name
            )));
        }
        self.plan = Some(Plan {
            path: component,
            loaded,
            name: info.name,
            uploaded: None,
        });
        self.global = None;
        Ok(())
    }

    /// The initial global parameters: the plan's own, from `init-model`.
    pub(super) fn initial_parameters(&self) -> Result<Vec<Tensor>, ExperimentError> {
        let plan = self.plan.as_ref().ok_or_else(|| {
            ExperimentError::NotDefined("no training plan; set training_plan".into())
        })?;
        let seed = StreamSeed::for_plan(self.training_args.seed(), 0, "researcher");
        let mut instance = self.sandbox.instantiate(&plan.loaded, &seed)?;
        instance.init_model(&Value::Object(self.model_args.clone()).to_string())?;
        Ok(instance.get_parameters()?)
    }
}
