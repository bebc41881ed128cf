//! The node's training queue: one train request at a time, from download to
//! reply. Every failure becomes an error reply with a code; none stops the node.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::daemon::{Shared, plan_cache};
use crate::digest::Sha256Digest;
use crate::repository::RepositoryError;
use crate::training::task::{Progress, TrainingTask};
use crate::training::{TrainingArgs, TrainingError, Worker};
use crate::wire::{BlobRef, ErrorCode, Message, PlanStatus, RequestRef, TrainTimings, topics};

/// A train request waiting in the queue, with the time it arrived.
pub(super) struct TrainJob {
    message: Message,
    received: Instant,
}

impl TrainJob {
    /// Queue `message` (a [`Message::TrainRequest`]) now.
    pub(super) fn new(message: Message) -> Self {
        TrainJob {
            message,
            received: Instant::now(),
        }
    }
}

/// Why a train request failed: the code and text of the error reply.
#[derive(Debug)]
struct Failure {
    code: ErrorCode,
    message: String,
}

impl Failure {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<RepositoryError> for Failure {
    fn from(e: RepositoryError) -> Self {
        let code = match e {
            RepositoryError::HashMismatch { .. } => ErrorCode::HashMismatch,
            _ => ErrorCode::Repository,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<TrainingError> for Failure {
    fn from(e: TrainingError) -> Self {
        let code = match e.code().as_str() {
            "bad-training-args" => ErrorCode::BadTrainingArgs,
            "dataset" => ErrorCode::Dataset,
            "deadline" => ErrorCode::Deadline,
            "parameters" => ErrorCode::BadParameters,
            "cancelled" => ErrorCode::ShuttingDown,
            "worker" => ErrorCode::Internal,
            _ => ErrorCode::Plan,
        };
        Failure::new(code, e.to_string())
    }
}

/// The fields of a train request.
struct Request {
    researcher_id: String,
    experiment_id: String,
    request_id: String,
    round: u32,
    dataset_id: String,
    plan: BlobRef,
    params: BlobRef,
    gradient_correction: Option<BlobRef>,
    model_args: serde_json::Value,
    training_args: serde_json::Value,
    seed: u64,
    training: bool,
}

/// Works through the train queue.
pub(super) struct Trainer {
    pub(super) shared: Arc<Shared>,
    /// Kept between requests: the process start and plan compilation are paid once.
    pub(super) worker: Arc<std::sync::Mutex<Worker>>,
}

impl Trainer {
    /// Take jobs until the queue closes (the node is stopping).
    pub(super) async fn run(self, mut queue: mpsc::UnboundedReceiver<TrainJob>) {
        while let Some(job) = queue.recv().await {
            let Message::TrainRequest {
                researcher_id,
                experiment_id,
                request_id,
                round,
                dataset_id,
                plan,
                params,
                gradient_correction,
                model_args,
                training_args,
                aggregator_args: _,
                seed,
                training,
            } = job.message
            else {
                continue;
            };
            let request = Request {
                researcher_id,
                experiment_id,
                request_id,
                round,
                dataset_id,
                plan,
                params,
                gradient_correction,
                model_args,
                training_args,
                seed,
                training,
            };
            let outcome = if self.shared.stopping.load(Ordering::Relaxed) {
                Err(Failure::new(
                    ErrorCode::ShuttingDown,
                    "the node is shutting down; send the request again later",
                ))
            } else {
                self.shared.busy.store(true, Ordering::Relaxed);
                let outcome = self.train(&request, job.received).await;
                self.shared.busy.store(false, Ordering::Relaxed);
                outcome
            };
            match outcome {
                Ok(reply) => self.shared.reply(reply).await,
                Err(failure) => {
                    self.shared
                        .error(
                            Some(request.researcher_id.clone()),
                            failure.code,
                            failure.message,
                            Some(RequestRef {
                                command: "train_request".into(),
                                request_id: Some(request.request_id.clone()),
                            }),
                        )
                        .await
                }
            }
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
                    format!("cannot create a work folder in {}: {e}", parent.display()),
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
                format!("cannot create {}: {e}", cache.display()),
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

    fn check_approval(&self, sha256: &Sha256Digest) -> Result<(), Failure> {
        if !self.shared.config.require_approval {
            return Ok(());
        }
        let status = self
            .shared
            .store(|s| s.note_requested_plan(sha256, None))
            .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
        match status {
            PlanStatus::Approved => Ok(()),
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

    async fn train(&self, r: &Request, received: Instant) -> Result<Message, Failure> {
        let shared = &self.shared;
        tracing::info!(
            "round {} of {} for {}: training on {}",
            r.round,
            r.experiment_id,
            r.researcher_id,
            r.dataset_id
        );
        let dataset = shared
            .store(|s| s.dataset(&r.dataset_id))
            .map_err(|e| Failure::new(ErrorCode::UnknownDataset, e.to_string()))?;
        let training_args: TrainingArgs =
            serde_json::from_value(r.training_args.clone()).map_err(|e| {
                Failure::new(
                    ErrorCode::BadTrainingArgs,
                    format!("bad training arguments: {e}"),
                )
            })?;
        training_args.check()?;
        if !r.model_args.is_object() {
            return Err(Failure::new(
                ErrorCode::BadTrainingArgs,
                "model_args must be a JSON object",
            ));
        }
        self.check_approval(&r.plan.sha256)?;
        let plan = self.plan_file(&r.plan).await?;
        let work = self.work_dir()?;
        let params = self
            .download(&r.params, &work.path().join("global.safetensors"))
            .await?;
        let correction = match &r.gradient_correction {
            Some(blob) => Some(
                self.download(blob, &work.path().join("correction.safetensors"))
                    .await?,
            ),
            None => None,
        };
        let output = work.path().join("local.safetensors");
        let noise_key = match training_args.dp_args {
            Some(_) => Some(
                super::noise_key::noise_key(&shared.dir)
                    .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?,
            ),
            None => None,
        };
        let mut training_args = training_args;
        training_args.random_seed = Some(r.seed);
        let task = TrainingTask {
            plan,
            dataset: dataset.path.clone(),
            target: dataset.summary.target.clone(),
            model_args: r.model_args.clone(),
            training_args,
            experiment_id: Some(r.experiment_id.clone()),
            round: r.round,
            node_id: shared.config.id.clone(),
            initial_parameters: Some(params),
            gradient_correction: correction,
            output_parameters: r.training.then(|| output.clone()),
            sandbox: shared.config.sandbox.clone(),
            training: r.training,
            report_split_metrics: false,
            noise_key,
        };

        let outcome = {
            let shared = self.shared.clone();
            let worker = self.worker.clone();
            let deadline = Duration::from_secs(shared.config.training_deadline_secs.max(1));
            let runtime = tokio::runtime::Handle::current();
            let scalar = ScalarSource {
                researcher_id: r.researcher_id.clone(),
                experiment_id: r.experiment_id.clone(),
                round: r.round,
            };
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
                                runtime.block_on(log(&shared, "warn", warning));
                            }
                            return;
                        }
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
                    if let Err(e) =
                        runtime.block_on(shared.publisher.publish(&topics::monitoring(), &message))
                    {
                        tracing::warn!("cannot send a training scalar: {e}");
                    }
                })
            })
            .await
            .map_err(|e| {
                Failure::new(ErrorCode::Internal, format!("training task failed: {e}"))
            })??
        };
        if outcome.plan_digest != r.plan.sha256 {
            return Err(Failure::new(
                ErrorCode::HashMismatch,
                format!(
                    "the cached plan hashes to {} instead of {}; delete {} on the node",
                    outcome.plan_digest,
                    r.plan.sha256,
                    plan_cache(&shared.dir).display()
                ),
            ));
        }
        for record in &outcome.plan_logs {
            let level = format!("{:?}", record.level).to_lowercase();
            log(shared, &level, format!("plan: {}", record.message)).await;
        }
        let timings = TrainTimings {
            training_ms: outcome.training_ms,
            total_ms: received.elapsed().as_secs_f64() * 1e3,
        };
        if !r.training {
            let validation = outcome.validation_global.ok_or_else(|| {
                Failure::new(ErrorCode::Internal, "the validation task returned no score")
            })?;
            tracing::info!(
                "round {} of {}: validation {} {:.4}",
                r.round,
                r.experiment_id,
                validation.metric,
                validation.value
            );
            return Ok(Message::ValidationReply {
                researcher_id: r.researcher_id.clone(),
                experiment_id: r.experiment_id.clone(),
                request_id: r.request_id.clone(),
                round: r.round,
                node_id: shared.config.id.clone(),
                dataset_id: r.dataset_id.clone(),
                validation,
                timings,
            });
        }
        let uploaded = shared.repository.upload_file(&output).await?;
        tracing::info!(
            "round {} of {}: {} updates, final loss {:.4}",
            r.round,
            r.experiment_id,
            outcome.updates,
            outcome.final_loss
        );
        Ok(Message::TrainReply {
            researcher_id: r.researcher_id.clone(),
            experiment_id: r.experiment_id.clone(),
            request_id: r.request_id.clone(),
            round: r.round,
            node_id: shared.config.id.clone(),
            dataset_id: r.dataset_id.clone(),
            params: uploaded,
            training_samples: outcome.training_samples as u64,
            updates: outcome.updates as u64,
            final_loss: outcome.final_loss,
            learning_rate: outcome.learning_rate,
            validation_global: outcome.validation_global,
            validation_local: outcome.validation_local,
            privacy: outcome.privacy,
            timings: TrainTimings {
                total_ms: received.elapsed().as_secs_f64() * 1e3,
                ..timings
            },
        })
    }
}

/// Send a log record to the researchers' log topic.
async fn log(shared: &Shared, level: &str, message: String) {
    let record = Message::Log {
        node_id: shared.config.id.clone(),
        level: level.into(),
        message,
    };
    if let Err(e) = shared.publisher.publish(&topics::logs(), &record).await {
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
        Message::Scalar {
            researcher_id: self.researcher_id.clone(),
            experiment_id: self.experiment_id.clone(),
            node_id: node_id.into(),
            round: self.round,
            iteration: update as u64,
            epoch: epoch as u64,
            samples_seen: samples_seen as u64,
            total_updates: total_updates as u64,
            values: [("loss".to_string(), f64::from(loss))].into(),
        }
    }
}
