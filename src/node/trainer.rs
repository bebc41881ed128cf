//! The node's trainer: one train request at a time, from download to reply.
//! Every failure becomes an error reply with a code; none stops the node. The
//! node's deadline covers the whole task (downloads, training, upload), and
//! the node's shutdown cancels it wherever it is.
//!
//! Over 500 lines because one train request is one story — check, download,
//! run in a worker, upload, answer — told in order; its pieces that stand
//! alone already live beside it (`context`, `job`, `failure`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::NodeError;
use super::context::{NodeContext, plan_cache};
use super::failure::Failure;
use super::store::DatasetRecord;
use crate::dataset::ImageSource;
use crate::digest::Sha256Digest;
use crate::training::task::{Progress, TrainingTask};
use crate::training::{TrainingArgs, Worker};
use crate::wire::{
    BlobRef, ErrorCode, MAX_TEXT_BYTES, Message, NodeLog, PlanStatus, RequestRef, Scalar,
    TrainReply, TrainRequest, TrainTimings, ValidationReply, bounded_text, topics,
};

/// A train request being served.
struct Request {
    /// As received.
    wire: TrainRequest,
    /// Privacy mode: `dp_args`, or the node's `always_private`.
    private: bool,
}

/// Works through the train queue.
pub(super) struct Trainer {
    pub(super) shared: Arc<NodeContext>,
    /// Kept between requests: the process start and plan compilation are paid once.
    pub(super) worker: Arc<std::sync::Mutex<Worker>>,
}

impl Trainer {
    /// Take jobs until the queue closes (the node is stopping).
    pub(super) async fn run(self) {
        while let Some(job) = self.shared.queue.pop().await {
            let private = self.shared.config.always_private
                || job
                    .request
                    .training_args
                    .get("dp_args")
                    .is_some_and(|dp| !dp.is_null());
            let sender = job.sender.to_string();
            let request = Request {
                wire: job.request,
                private,
            };
            let shutting_down = || {
                Failure::new(
                    ErrorCode::ShuttingDown,
                    "the node is shutting down; send the request again later",
                )
            };
            let outcome = if self.shared.stopping.load(Ordering::Relaxed) {
                Err(shutting_down())
            } else {
                self.shared.busy.store(true, Ordering::Relaxed);
                let limit = Duration::from_secs(self.shared.config.training_deadline_secs.max(1));
                let deadline = Instant::now() + limit;
                let outcome = tokio::select! {
                    biased;
                    () = self.shared.cancel.cancelled() => Err(shutting_down()),
                    outcome = tokio::time::timeout_at(
                        deadline.into(),
                        self.train(&request, job.received, deadline),
                    ) => outcome.unwrap_or_else(|_| Err(Failure::new(
                        ErrorCode::Deadline,
                        format!(
                            "the task ran past the node's deadline of {} s (downloads, training and upload together)",
                            limit.as_secs()
                        ),
                    ))),
                };
                self.shared.busy.store(false, Ordering::Relaxed);
                outcome
            };
            let answer = match outcome {
                Ok(reply) => reply,
                Err(failure) => {
                    let message = if request.private && failure.may_carry_data() {
                        tracing::warn!("kept on the node (privacy mode): {}", failure.message);
                        format!(
                            "the task failed ({:?}); in privacy mode its details stay in the node's log",
                            failure.code
                        )
                    } else {
                        failure.message
                    };
                    // The dataset's file may be named in the text: it stays private too.
                    let dataset = self
                        .shared
                        .store(|s| s.dataset(&request.wire.dataset_id))
                        .map(|d| d.path)
                        .ok();
                    let paths: Vec<&Path> = dataset.as_deref().into_iter().collect();
                    self.shared.error_message(
                        Some(request.wire.researcher_id.clone()),
                        failure.code,
                        &message,
                        &paths,
                        Some(RequestRef {
                            command: "train_request".into(),
                            request_id: Some(request.wire.request_id.clone()),
                        }),
                    )
                }
            };
            self.shared
                .recent(|r| r.answer(&sender, &request.wire.request_id, answer.clone()));
            self.shared.reply(answer).await;
        }
    }

    /// A scratch folder for one request, removed when dropped.
    fn work_dir(&self) -> Result<tempfile::TempDir, Failure> {
        let parent = self.shared.dir.join("work");
        std::fs::create_dir_all(&parent)
            .and_then(|()| tempfile::tempdir_in(&parent))
            .map_err(|e| {
                Failure::new(
                    ErrorCode::Internal,
                    format!("cannot create a work folder in the node folder: {e}"),
                )
            })
    }

    /// The plan component, from the cache or downloaded into it.
    async fn plan_file(&self, plan: &BlobRef) -> Result<PathBuf, Failure> {
        let cache = plan_cache(&self.shared.dir);
        let path = cache.join(format!("{}.wasm", plan.sha256.to_hex()));
        if path.exists() {
            return Ok(path);
        }
        tokio::fs::create_dir_all(&cache).await.map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("cannot create the plan cache in the node folder: {e}"),
            )
        })?;
        self.shared
            .repository
            .download(plan, &path, self.shared.config.max_download_bytes)
            .await?;
        Ok(path)
    }

    async fn download(&self, blob: &BlobRef, dest: &Path) -> Result<PathBuf, Failure> {
        self.shared
            .repository
            .download(blob, dest, self.shared.config.max_download_bytes)
            .await?;
        Ok(dest.to_path_buf())
    }

    fn check_approval(
        &self,
        sha256: &Sha256Digest,
        model_args: &serde_json::Value,
    ) -> Result<(), Failure> {
        if !self.shared.config.require_approval {
            return Ok(());
        }
        let max_pending = self.shared.config.max_pending_plans;
        let status = self
            .shared
            .store(|s| s.note_requested_plan(sha256, None, max_pending))
            .map_err(|e| match e {
                NodeError::TooManyPending(_) => Failure::new(ErrorCode::Busy, e.to_string()),
                e => Failure::new(ErrorCode::Internal, e.to_string()),
            })?;
        match status {
            PlanStatus::Approved => {
                let pinned = self
                    .shared
                    .store(|s| s.pinned_model_args(sha256))
                    .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
                match pinned {
                    Some(allowed) if &allowed != model_args => Err(Failure::new(
                        ErrorCode::PlanNotApproved,
                        format!(
                            "plan {sha256} is approved on node {} only with model_args {allowed}; these model_args were not approved",
                            self.shared.config.id
                        ),
                    )),
                    _ => Ok(()),
                }
            }
            status => {
                let state = match status {
                    PlanStatus::Rejected => "was rejected",
                    _ => "is waiting for approval",
                };
                Err(Failure::new(
                    ErrorCode::PlanNotApproved,
                    format!(
                        "plan {sha256} {state} on node {}; its operator can approve it with `fedwasm node plan approve --dir <node folder> {sha256}`",
                        self.shared.config.id
                    ),
                ))
            }
        }
    }

    async fn train(
        &self,
        r: &Request,
        received: Instant,
        deadline: Instant,
    ) -> Result<Message, Failure> {
        let shared = &self.shared;
        tracing::info!(
            "round {} of {} for {}: training on {}",
            r.wire.round,
            r.wire.experiment_id,
            r.wire.researcher_id,
            r.wire.dataset_id
        );
        let dataset = shared
            .store(|s| s.dataset(&r.wire.dataset_id))
            .map_err(|e| Failure::new(ErrorCode::UnknownDataset, e.to_string()))?;
        let images = image_source(&dataset)?;
        let training_args: TrainingArgs = serde_json::from_value(r.wire.training_args.clone())
            .map_err(|e| {
                Failure::new(
                    ErrorCode::BadTrainingArgs,
                    format!("bad training arguments: {e}"),
                )
            })?;
        training_args.check()?;
        // What privacy mode reports instead of the plan's own learning rate:
        // the researcher's, which says nothing about the data.
        let chosen_lr = training_args
            .optimizer_args
            .get("lr")
            .and_then(serde_json::Value::as_f64)
            .map(|lr| lr as f32);
        if r.private
            && (training_args.test_on_local_updates
                || training_args.test_on_global_updates
                || !r.wire.training)
        {
            return Err(Failure::new(
                ErrorCode::BadTrainingArgs,
                format!(
                    "node {} runs every task in privacy mode, where validation scores (not noised) stay on the node: drop test_on_local_updates, test_on_global_updates and the final validation",
                    shared.config.id
                ),
            ));
        }
        if !r.wire.model_args.is_object() {
            return Err(Failure::new(
                ErrorCode::BadTrainingArgs,
                "model_args must be a JSON object",
            ));
        }
        self.check_approval(&r.wire.plan.sha256, &r.wire.model_args)?;
        // Downloads (a cached plan costs nothing) and the upload below.
        let downloading = Instant::now();
        let plan = self.plan_file(&r.wire.plan).await?;
        let work = self.work_dir()?;
        let params = self
            .download(&r.wire.params, &work.path().join("global.safetensors"))
            .await?;
        let correction = match &r.wire.gradient_correction {
            Some(blob) => Some(
                self.download(blob, &work.path().join("correction.safetensors"))
                    .await?,
            ),
            None => None,
        };
        let mut transfer = downloading.elapsed();
        let output = work.path().join("local.safetensors");
        let noise_key = match training_args.dp_args {
            Some(_) => Some(
                super::noise_key::noise_key(&shared.dir)
                    .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?,
            ),
            None => None,
        };
        let mut training_args = training_args;
        training_args.random_seed = Some(r.wire.seed);
        let task = TrainingTask {
            plan,
            dataset: dataset.path.clone(),
            images,
            target: dataset.summary.target.clone(),
            split_column: dataset.split_column.clone(),
            model_args: r.wire.model_args.clone(),
            training_args,
            experiment_id: Some(r.wire.experiment_id.clone()),
            round: r.wire.round,
            node_id: shared.config.id.clone(),
            initial_parameters: Some(params),
            gradient_correction: correction,
            output_parameters: r.wire.training.then(|| output.clone()),
            sandbox: shared.config.sandbox.clone(),
            training: r.wire.training,
            report_split_metrics: false,
            noise_key,
        };

        let outcome = {
            let shared = self.shared.clone();
            let worker = self.worker.clone();
            let deadline = deadline.saturating_duration_since(Instant::now());
            let runtime = tokio::runtime::Handle::current();
            let scalar = ScalarSource {
                researcher_id: r.wire.researcher_id.clone(),
                experiment_id: r.wire.experiment_id.clone(),
                round: r.wire.round,
            };
            let private = r.private;
            let researcher = r.wire.researcher_id.clone();
            tokio::task::spawn_blocking(move || {
                let mut total_updates = 0;
                let mut worker = worker.lock().unwrap_or_else(|p| p.into_inner());
                worker.run(&task, deadline, &shared.stopping, &mut |progress| {
                    let message = match progress {
                        Progress::Started {
                            total_updates: total,
                            warnings,
                            ..
                        } => {
                            total_updates = total;
                            for warning in warnings {
                                runtime.block_on(log(&shared, &researcher, "warn", warning));
                            }
                            return;
                        }
                        // In privacy mode the loss stays on the node.
                        Progress::Loss { .. } if private => return,
                        Progress::Loss {
                            update,
                            epoch,
                            samples_seen,
                            loss,
                        } => scalar.message(
                            &shared.config.id,
                            update,
                            epoch,
                            samples_seen,
                            total_updates,
                            loss,
                        ),
                    };
                    if let Err(e) = runtime.block_on(
                        shared
                            .publisher
                            .publish(&topics::monitoring(&researcher), &message),
                    ) {
                        tracing::warn!("cannot send a training scalar: {e}");
                    }
                })
            })
            .await
            .map_err(|e| {
                Failure::new(ErrorCode::Internal, format!("training task failed: {e}"))
            })??
        };
        if outcome.plan_digest != r.wire.plan.sha256 {
            return Err(Failure::new(
                ErrorCode::HashMismatch,
                format!(
                    "the node's cached copy of plan {} is damaged; its operator can delete the `plans` folder in the node folder",
                    r.wire.plan.sha256,
                ),
            ));
        }
        for record in &outcome.plan_logs {
            if r.private {
                tracing::info!("plan (kept on the node): {}", record.message);
                continue;
            }
            let level = format!("{:?}", record.level).to_lowercase();
            log(
                shared,
                &r.wire.researcher_id,
                &level,
                format!("plan: {}", record.message),
            )
            .await;
        }
        // Privacy mode sends no timing: how long the loop, the data or the
        // steps took — and so the total — is steered by the plan and can
        // say something about the data.
        let timings = |transfer: Duration| TrainTimings {
            total_ms: if r.private {
                0.0
            } else {
                received.elapsed().as_secs_f64() * 1e3
            },
            training_ms: if r.private { 0.0 } else { outcome.training_ms },
            data_ms: if r.private { 0.0 } else { outcome.data_ms },
            sandbox_ms: if r.private { 0.0 } else { outcome.step_ms },
            transfer_ms: if r.private {
                0.0
            } else {
                transfer.as_secs_f64() * 1e3
            },
        };
        if !r.wire.training {
            let validation = outcome.validation_global.ok_or_else(|| {
                Failure::new(ErrorCode::Internal, "the validation task returned no score")
            })?;
            tracing::info!(
                "round {} of {}: validation {} {:.4}",
                r.wire.round,
                r.wire.experiment_id,
                validation.metric,
                validation.value
            );
            return Ok(Message::ValidationReply(ValidationReply {
                researcher_id: r.wire.researcher_id.clone(),
                experiment_id: r.wire.experiment_id.clone(),
                request_id: r.wire.request_id.clone(),
                round: r.wire.round,
                node_id: shared.config.id.clone(),
                dataset_id: r.wire.dataset_id.clone(),
                validation,
                timings: timings(transfer),
            }));
        }
        let uploading = Instant::now();
        let uploaded = shared.repository.upload_file(&output).await?;
        transfer += uploading.elapsed();
        tracing::info!(
            "round {} of {}: {} updates, final loss {:.4}",
            r.wire.round,
            r.wire.experiment_id,
            outcome.updates,
            outcome.final_loss
        );
        Ok(Message::TrainReply(TrainReply {
            researcher_id: r.wire.researcher_id.clone(),
            experiment_id: r.wire.experiment_id.clone(),
            request_id: r.wire.request_id.clone(),
            round: r.wire.round,
            node_id: shared.config.id.clone(),
            dataset_id: r.wire.dataset_id.clone(),
            params: uploaded,
            training_samples: outcome.training_samples as u64,
            updates: outcome.updates as u64,
            final_loss: if r.private {
                f32::NAN
            } else {
                outcome.final_loss
            },
            learning_rate: if r.private {
                chosen_lr
            } else {
                outcome.learning_rate
            },
            validation_global: outcome.validation_global,
            validation_local: outcome.validation_local,
            privacy: outcome.privacy,
            private: r.private,
            timings: timings(transfer),
        }))
    }
}

/// Send a log record to the researchers' log topic.
async fn log(shared: &NodeContext, researcher_id: &str, level: &str, message: String) {
    let record = Message::Log(NodeLog {
        node_id: shared.config.id.clone(),
        level: level.into(),
        message: bounded_text(shared.redact(&message, &[]), MAX_TEXT_BYTES),
    });
    if let Err(e) = shared
        .publisher
        .publish(&topics::logs(researcher_id), &record)
        .await
    {
        tracing::warn!("cannot send a log record: {e}");
    }
}

/// What every scalar of one request shares.
struct ScalarSource {
    researcher_id: String,
    experiment_id: String,
    round: u32,
}

impl ScalarSource {
    fn message(
        &self,
        node_id: &str,
        update: usize,
        epoch: usize,
        samples_seen: usize,
        total_updates: usize,
        loss: f32,
    ) -> Message {
        Message::Scalar(Scalar {
            researcher_id: self.researcher_id.clone(),
            experiment_id: self.experiment_id.clone(),
            node_id: node_id.into(),
            round: self.round,
            iteration: update as u64,
            epoch: epoch as u64,
            samples_seen: samples_seen as u64,
            total_updates: total_updates as u64,
            values: [("loss".to_string(), f64::from(loss))].into(),
        })
    }
}

/// How the worker reads `dataset` when it holds images: folder or
/// manifest, and the digest its files must still have.
fn image_source(dataset: &DatasetRecord) -> Result<Option<ImageSource>, Failure> {
    if dataset.summary.data_type != "images" {
        return Ok(None);
    }
    let digest = dataset.digest.ok_or_else(|| {
        Failure::new(
            ErrorCode::Dataset,
            format!(
                "image dataset {} has no registration digest; its operator can register it again with `fedwasm node dataset add`",
                dataset.summary.dataset_id
            ),
        )
    })?;
    Ok(Some(ImageSource {
        manifest: dataset.image_columns.clone(),
        digest,
    }))
}
