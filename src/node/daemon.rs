//! `fedwasm node start`: the long-running node.
//!
//! One task reads requests from the broker and answers search, list, ping and
//! plan-status requests at once from the SQLite store; train requests go to a
//! bounded queue, fair between researchers ([`super::queue`]), that a second
//! task works through one at a time (see `super::trainer`), so a node stays
//! responsive while it trains. Any bad message gets an error reply on the
//! researcher topic and the node goes on. Shutdown cancels the task in hand,
//! downloads included, and answers every queued request.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::approval_limit::{ApprovalLimit, loggable};
use super::context::NodeContext;
use super::job::TrainJob;
use super::queue::{FairQueue, QueueFull};
use super::recent::{RecentRequests, Seen};
use super::trainer::Trainer;
use super::{NodeConfig, NodeError, NodeStore};
use crate::identity::{Credentials, PublicKey, Refusal};
use crate::transport::{Delivery, MqttClient, Session};
use crate::wire::{
    ErrorCode, ListReply, ListRequest, Message, NodeStatus, OpenError, Opened, Ping,
    PlanApprovalRequest, PlanStatus, PlanStatusReply, PlanStatusRequest, Pong, RequestRef,
    SearchReply, SearchRequest, TrainRequest, WireError, open, topics,
};

/// How many answered train requests a node remembers, to answer them again.
const RECENT_ANSWERS: usize = 256;

/// What a running node needs besides its folder.
#[derive(Debug, Clone)]
pub struct NodeRuntime {
    /// The node folder (`node.toml`, `node.db`, plan cache, work files).
    pub dir: PathBuf,
    /// The `fedwasm` executable that runs training workers (`fedwasm __worker`).
    pub worker_exe: PathBuf,
}

/// Run the node in `runtime.dir` until `shutdown` completes. Returns an error
/// only when the node cannot start (bad configuration, broker unreachable or
/// refusing us); once running, every failure is answered, not returned.
pub async fn run(
    runtime: NodeRuntime,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let config = NodeConfig::load(&runtime.dir)?;
    let credentials = config.credentials(&runtime.dir)?;
    let store = NodeStore::open(&NodeConfig::store_path(&runtime.dir))?;
    let status = |online| {
        Message::NodeStatus(NodeStatus {
            node_id: config.id.clone(),
            online,
        })
    };
    let session = Session {
        client_id: config.id.clone(),
        subscriptions: vec![topics::all_nodes(), topics::node(&config.id)],
        last_will: Some((topics::node_status(&config.id), status(false))),
        announce: Some((topics::node_status(&config.id), status(true))),
        identity: credentials.identity.clone(),
    };
    let (client, mut inbox) = MqttClient::connect(&config.broker, session).await?;
    announce(&config, &credentials, store.datasets()?.len());
    let shared = Arc::new(NodeContext {
        dir: runtime.dir.clone(),
        config: config.clone(),
        store: Mutex::new(store),
        busy: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        publisher: client.publisher(),
        repository: config.repository.client(),
        queue: FairQueue::new(config.queue_limits()),
        cancel: CancellationToken::new(),
        worker_exe: runtime.worker_exe.clone(),
        recent: Mutex::new(RecentRequests::new(RECENT_ANSWERS)),
        keyring: credentials.keyring.clone(),
        approvals: Mutex::new(ApprovalLimit::default()),
    });
    let trainer = tokio::spawn(
        Trainer {
            shared: shared.clone(),
            worker: Arc::new(std::sync::Mutex::new(crate::training::Worker::new(
                &runtime.worker_exe,
            ))),
        }
        .run(),
    );

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            delivery = inbox.recv() => match delivery {
                Some(delivery) => handle(&shared, delivery).await,
                None => {
                    tracing::error!("the broker connection ended");
                    break;
                }
            },
        }
    }

    tracing::info!(
        "node {} stopping; {} message(s) refused for their signature",
        config.id,
        shared.keyring.refused()
    );
    shared.stopping.store(true, Ordering::Relaxed);
    shared.cancel.cancel();
    let queued = shared.queue.close();
    if let Err(e) = trainer.await {
        tracing::error!("trainer task failed: {e}");
    }
    say_goodbye(&shared, &client, queued, status(false)).await;
    client.disconnect().await;
    Ok(())
}

/// Log who this node is, whom it serves and what it holds.
fn announce(config: &NodeConfig, credentials: &Credentials, datasets: usize) {
    let roster = credentials.keyring.roster();
    tracing::info!(
        "node {} online on {} with {datasets} dataset(s); key {} (fingerprint {}); serving {} researcher(s){}",
        config.id,
        config.broker.url,
        credentials.identity.public(),
        credentials.identity.public().fingerprint(),
        roster.researchers.len(),
        if roster.trust_on_first_use {
            " and, trusting on first use, any new one"
        } else {
            ""
        }
    );
}

/// Answer the requests still queued and say offline — while the broker is
/// there. With it away nothing waits for it: the node stops at once
/// whatever the broker's state (their researchers send them again).
async fn say_goodbye(
    shared: &NodeContext,
    client: &MqttClient,
    queued: Vec<TrainJob>,
    offline: Message,
) {
    if !client.is_connected() {
        tracing::warn!(
            "the broker is away: {} queued request(s) stay unanswered",
            queued.len()
        );
        return;
    }
    let goodbyes = async {
        for job in queued {
            let (researcher, request) = job.identity();
            let refusal = QueueFull::Closed.to_string();
            shared
                .error(
                    Some(researcher),
                    ErrorCode::ShuttingDown,
                    refusal,
                    Some(request),
                )
                .await;
        }
        // A clean disconnect suppresses the last will, so say goodbye ourselves.
        let topic = topics::node_status(&shared.config.id);
        if let Err(e) = shared.publisher.publish_retained(&topic, &offline).await {
            tracing::warn!("cannot publish offline status: {e}");
        }
    };
    if tokio::time::timeout(GOODBYE_WAIT, goodbyes).await.is_err() {
        tracing::warn!("the broker took too long to take the goodbyes; stopping without them");
    }
}

/// Longest a stopping node waits to send its goodbyes.
const GOODBYE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reply to a search or list request with `datasets` (summaries only: paths
/// never leave the node), or with an error if the store failed.
async fn answer_datasets(
    shared: &NodeContext,
    command: &str,
    researcher_id: String,
    request_id: String,
    datasets: Result<Vec<super::DatasetRecord>, NodeError>,
) {
    let node_id = shared.config.id.clone();
    match datasets {
        Ok(records) => {
            let datasets = records.into_iter().map(|d| d.summary).collect();
            let reply = if command == "search_request" {
                Message::SearchReply(SearchReply {
                    researcher_id,
                    request_id,
                    node_id,
                    datasets,
                })
            } else {
                Message::ListReply(ListReply {
                    researcher_id,
                    request_id,
                    node_id,
                    datasets,
                })
            };
            shared.reply(reply).await
        }
        Err(e) => {
            let request = Some(RequestRef {
                command: command.into(),
                request_id: Some(request_id),
            });
            shared
                .error(
                    Some(researcher_id),
                    ErrorCode::Internal,
                    e.to_string(),
                    request,
                )
                .await
        }
    }
}

/// Answer one delivery.
async fn handle(shared: &NodeContext, delivery: Delivery) {
    let node_id = shared.config.id.clone();
    let Opened {
        message,
        key: sender,
        ..
    } = match open(&delivery.payload, &shared.keyring) {
        Ok(opened) => opened,
        Err(e) => return refuse(shared, &delivery.payload, e).await,
    };
    match message {
        Message::Ping(Ping {
            researcher_id,
            sequence,
        }) => {
            shared
                .reply(Message::Pong(Pong {
                    researcher_id,
                    sequence,
                    node_id,
                    busy: shared.busy.load(Ordering::Relaxed),
                }))
                .await
        }
        Message::SearchRequest(SearchRequest {
            researcher_id,
            request_id,
            tags,
        }) => {
            let found = shared.store(|s| s.search(&tags));
            answer_datasets(shared, "search_request", researcher_id, request_id, found).await
        }
        Message::ListRequest(ListRequest {
            researcher_id,
            request_id,
        }) => {
            let all = shared.store(|s| s.datasets());
            answer_datasets(shared, "list_request", researcher_id, request_id, all).await
        }
        Message::PlanStatusRequest(PlanStatusRequest {
            researcher_id,
            request_id,
            plan_sha256,
        }) => {
            plan_status(shared, researcher_id, request_id, plan_sha256, false).await;
        }
        Message::PlanApprovalRequest(request) => approval(shared, request, sender).await,
        Message::TrainRequest(request) => queue_train(shared, request, sender).await,
        other => {
            let command = other.command();
            shared
                .error(
                    None,
                    ErrorCode::UnknownCommand,
                    format!(
                        "`{command}` is not a request; a node answers ping, search_request, list_request, plan_status_request, plan_approval_request and train_request"
                    ),
                    Some(RequestRef {
                        command: command.into(),
                        request_id: None,
                    }),
                )
                .await
        }
    }
}

/// Queue a train request signed by `sender`, unless it is in hand or
/// answered already (then: nothing, or the same answer again) or the queue
/// has no place for it (then: `busy`, or `shutting-down`).
async fn queue_train(shared: &NodeContext, request: TrainRequest, sender: PublicKey) {
    let job = TrainJob::new(request, sender);
    let (researcher, request) = job.identity();
    let request_id = request.request_id.clone().unwrap_or_default();
    let key = sender.to_string();
    match shared.recent(|r| r.begin(&key, &request_id)) {
        Seen::New => {}
        Seen::InHand => {
            tracing::info!("{researcher} sent request {request_id} again; it is in hand");
            return;
        }
        Seen::Answered(reply) => {
            tracing::info!("{researcher} sent request {request_id} again; answering again");
            shared.reply(*reply).await;
            return;
        }
    }
    if let Err(full) = shared.queue.push(&key, job) {
        shared.recent(|r| r.forget(&key, &request_id));
        let code = match full {
            QueueFull::Closed => ErrorCode::ShuttingDown,
            QueueFull::Total(_) | QueueFull::Researcher(_) => ErrorCode::Busy,
        };
        shared
            .error(Some(researcher), code, full.to_string(), Some(request))
            .await;
    }
}

/// Note an approval request signed by `sender` for the operator, within
/// the key's rate limit (past it: `busy`).
async fn approval(shared: &NodeContext, request: PlanApprovalRequest, sender: PublicKey) {
    let PlanApprovalRequest {
        researcher_id,
        request_id,
        plan,
        description,
    } = request;
    if !shared.approvals(|a| a.allow(&sender.to_string(), Instant::now())) {
        let request = RequestRef {
            command: "plan_approval_request".into(),
            request_id: Some(request_id),
        };
        let text = "too many approval requests from this researcher's key; wait a minute before asking again";
        shared
            .error(
                Some(researcher_id),
                ErrorCode::Busy,
                text.into(),
                Some(request),
            )
            .await;
        return;
    }
    tracing::info!(
        "approval requested for plan {} by {researcher_id} (key {}): {}",
        plan.sha256,
        sender.fingerprint(),
        loggable(&description)
    );
    plan_status(shared, researcher_id, request_id, plan.sha256, true).await;
}

/// Answer what could not be opened. A message from an older protocol or a
/// malformed one gets an error naming the problem; a researcher this node
/// does not serve is told which key to have added; a forged signature, a
/// changed key or a signer speaking for another is dropped (and counted):
/// answering it would only help whoever forged it.
async fn refuse(shared: &NodeContext, payload: &[u8], error: OpenError) {
    let researcher = error.researcher_id(payload);
    let request = error.request(payload);
    let (code, text) = match &error {
        OpenError::Wire(wire) => (
            match wire {
                WireError::Malformed { .. } | WireError::TooLarge(_) => ErrorCode::MalformedMessage,
                WireError::Version { .. } => ErrorCode::ProtocolVersion,
                WireError::UnknownCommand { .. } => ErrorCode::UnknownCommand,
                WireError::BadFields { .. } => ErrorCode::MalformedMessage,
            },
            wire.to_string(),
        ),
        OpenError::Refused(Refusal::Unknown { id, key, .. }) => (
            ErrorCode::UnknownKey,
            unknown_researcher(&shared.config.id, id, key),
        ),
        OpenError::Refused(_) | OpenError::Impostor { .. } => {
            if matches!(error, OpenError::Impostor { .. }) {
                shared.keyring.count_refusal();
            }
            tracing::warn!("dropped a message: {error}");
            return;
        }
    };
    shared.error(researcher, code, text, request).await;
}

/// What a researcher this node does not serve is told.
fn unknown_researcher(node: &str, id: &str, key: &PublicKey) -> String {
    format!(
        "node `{node}` does not serve researcher `{id}` with key {key} (fingerprint {}): send the key to the node's operator, who adds it with `fedwasm roster add --dir <node folder> researcher {id} {key}`",
        key.fingerprint()
    )
}

/// Answer a plan status request; with `note`, record the plan as pending
/// (an approval request) unless the operator already decided.
async fn plan_status(
    shared: &NodeContext,
    researcher_id: String,
    request_id: String,
    plan_sha256: crate::digest::Sha256Digest,
    note: bool,
) {
    let status = shared.store(|s| {
        if note {
            s.note_requested_plan(&plan_sha256, None, shared.config.max_pending_plans)
        } else {
            s.plan_status(&plan_sha256)
        }
    });
    let command = if note {
        "plan_approval_request"
    } else {
        "plan_status_request"
    };
    match status {
        Ok(status) => {
            shared
                .reply(Message::PlanStatusReply(PlanStatusReply {
                    researcher_id,
                    request_id,
                    node_id: shared.config.id.clone(),
                    plan_sha256,
                    status: if shared.config.require_approval {
                        status
                    } else {
                        PlanStatus::Approved
                    },
                    approval_required: shared.config.require_approval,
                }))
                .await
        }
        Err(e) => {
            let code = match e {
                NodeError::TooManyPending(_) => ErrorCode::Busy,
                _ => ErrorCode::Internal,
            };
            shared
                .error(
                    Some(researcher_id),
                    code,
                    e.to_string(),
                    Some(RequestRef {
                        command: command.into(),
                        request_id: Some(request_id),
                    }),
                )
                .await
        }
    }
}
