//! Sending a round's requests: the plan and the global parameters go to the
//! repository (the plan once per experiment), then one train request per
//! node names them, tracked by the link until answered.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Experiment;
use super::collect::Pending;
use crate::researcher::ExperimentError;
use crate::sandbox::types::Tensor;
use crate::wire::{BlobRef, Message, TrainRequest};

/// What every train request of one exchange shares.
pub(super) struct RoundRequest {
    /// The round trained (or, for validation, scored).
    pub round: u32,
    /// The plan in the repository.
    pub plan: BlobRef,
    /// The global parameters in the repository.
    pub params: BlobRef,
    /// The training arguments as sent.
    pub training_args: Value,
    /// `false` for validation only.
    pub training: bool,
}

fn encoding(what: &str) -> impl FnOnce(String) -> ExperimentError {
    let what = format!("encoding {what}");
    move |e| ExperimentError::Io {
        what,
        source: std::io::Error::other(e),
    }
}

impl Experiment {
    /// The plan in the repository, uploaded on first use.
    async fn plan_blob(&mut self) -> Result<BlobRef, ExperimentError> {
        let plan = self.plan.as_ref().ok_or_else(|| {
            ExperimentError::NotDefined("no training plan; set training_plan".into())
        })?;
        if let Some(blob) = &plan.uploaded {
            return Ok(blob.clone());
        }
        let blob = self.repository.upload_file(&plan.path).await?;
        if let Some(plan) = self.plan.as_mut() {
            plan.uploaded = Some(blob.clone());
        }
        Ok(blob)
    }

    /// Upload the plan (once) and `global`, the parameters after round
    /// `after`: what the requests of round `round` share.
    pub(super) async fn round_request(
        &mut self,
        round: u32,
        after: u32,
        global: &[Tensor],
        training: bool,
    ) -> Result<RoundRequest, ExperimentError> {
        let plan = self.plan_blob().await?;
        let metadata = BTreeMap::from([
            ("experiment_id".to_string(), self.id.clone()),
            ("round".to_string(), after.to_string()),
        ]);
        let bytes = crate::tensors::to_bytes(global, &metadata)
            .map_err(encoding("the global parameters"))?;
        let params = self.repository.upload_bytes(bytes).await?;
        let training_args = serde_json::to_value(&self.training_args)
            .map_err(|e| ExperimentError::Argument(format!("encoding training_args: {e}")))?;
        Ok(RoundRequest {
            round,
            plan,
            params,
            training_args,
            training,
        })
    }

    /// The aggregator's correction for `node` (Scaffold), in the repository.
    pub(super) async fn upload_correction(
        &mut self,
        node: &str,
        global: &[Tensor],
    ) -> Result<Option<BlobRef>, ExperimentError> {
        let Some(correction) = self.aggregator.correction(node, global) else {
            return Ok(None);
        };
        let bytes = crate::tensors::to_bytes(&correction, &BTreeMap::new())
            .map_err(encoding(&format!("the correction of {node}")))?;
        Ok(Some(self.repository.upload_bytes(bytes).await?))
    }

    /// Send `node` a train request on `dataset_id`, noted in `pending`.
    pub(super) async fn send_train_request(
        &mut self,
        pending: &mut Pending,
        node: &str,
        dataset_id: &str,
        shared: &RoundRequest,
        gradient_correction: Option<BlobRef>,
    ) -> Result<(), ExperimentError> {
        let request_id = self.link.request_id();
        let request = Message::TrainRequest(TrainRequest {
            researcher_id: self.link.researcher_id().to_string(),
            experiment_id: self.id.clone(),
            request_id: request_id.clone(),
            round: shared.round,
            dataset_id: dataset_id.to_string(),
            plan: shared.plan.clone(),
            params: shared.params.clone(),
            gradient_correction,
            model_args: Value::Object(self.model_args.clone()),
            training_args: shared.training_args.clone(),
            seed: self.training_args.seed(),
            training: shared.training,
        });
        self.link.send_tracked(node, &request_id, request).await?;
        pending.sent(request_id, node);
        Ok(())
    }
}
