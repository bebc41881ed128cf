//! The training plan as the researcher holds it: loaded (or built from a
//! plan crate) into the researcher's own sandbox, named by its `describe`,
//! and the source of the initial global parameters (`init-model`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::researcher::ExperimentError;
use crate::sandbox::random::StreamSeed;
use crate::sandbox::types::Tensor;
use crate::sandbox::{LoadedPlan, Sandbox};
use crate::wire::BlobRef;

/// The plan as the researcher knows it.
pub(super) struct Plan {
    pub(super) path: PathBuf,
    pub(super) loaded: Arc<LoadedPlan>,
    pub(super) name: String,
    /// In the repository, once uploaded.
    pub(super) uploaded: Option<BlobRef>,
}

impl Plan {
    /// Load the plan at `path` — a component file, or a plan crate folder
    /// built first into `built` — checking its `describe().name` against
    /// `name` when given.
    pub(super) fn load(
        sandbox: &Sandbox,
        path: &Path,
        name: Option<&str>,
        built: &Path,
    ) -> Result<Plan, ExperimentError> {
        let component = if path.is_dir() {
            crate::plan_build::build_plan(path, Some(built), None)
                .map_err(|e| {
                    ExperimentError::Argument(format!("building {}: {e}", path.display()))
                })?
                .path
        } else {
            path.to_path_buf()
        };
        let loaded = sandbox.load_file(&component)?;
        let mut instance =
            sandbox.instantiate(&loaded, &StreamSeed::for_plan(0, 0, "researcher"))?;
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
        Ok(Plan {
            path: component,
            loaded,
            name: info.name,
            uploaded: None,
        })
    }

    /// The plan's own initial parameters (`init-model` on `model_args`),
    /// drawn from the stream of `seed`.
    pub(super) fn initial_parameters(
        &self,
        sandbox: &Sandbox,
        seed: u64,
        model_args: &Map<String, Value>,
    ) -> Result<Vec<Tensor>, ExperimentError> {
        let seed = StreamSeed::for_plan(seed, 0, "researcher");
        let mut instance = sandbox.instantiate(&self.loaded, &seed)?;
        instance.init_model(&Value::Object(model_args.clone()).to_string())?;
        Ok(instance.get_parameters()?)
    }
}
