//! What a hostile researcher, node or plan tried, and what the node and the
//! researcher now do about it: each test here failed before its fix.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fedwasm::repository::{RepositoryClient, RepositoryError};
use fedwasm::researcher::{NodeLink, Reply};
use fedwasm::wire::{
    BlobRef, ErrorCode, ErrorMessage, MAX_TEXT_BYTES, Message, NodeLog, Scalar, SearchReply,
    SearchRequest, TrainReply, TrainRequest,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::federation::{
    Federation, PATIENCE, error_of, lr_args, only_dataset, send_train, train, train_request,
    wait_for_nodes, wait_until_busy,
};
use crate::support::{example_plan, hostile_plan};

/// A loopback server that counts the connections it gets and answers each
/// with `answer` (or, with `None`, reads and never answers).
struct Trap {
    url: String,
    connections: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
}

async fn trap(answer: Option<&'static str>) -> Trap {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, log) = (connections.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                log.lock().unwrap().extend_from_slice(&buf[..n]);
                match answer {
                    Some(text) => {
                        let _ = socket.write_all(text.as_bytes()).await;
                        let _ = socket.shutdown().await;
                    }
                    // Hold the connection open, silent, until the test ends.
                    None => std::future::pending::<()>().await,
                }
            });
        }
    });
    Trap {
        url,
        connections,
        seen,
    }
}

impl Trap {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn blob(bytes: &[u8]) -> BlobRef {
    BlobRef {
        sha256: fedwasm::digest::Sha256Digest::of(bytes),
        size: bytes.len() as u64,
    }
}

#[tokio::test]
async fn the_client_follows_no_redirect_and_repeats_no_remote_text() {
    let elsewhere = trap(Some("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
    let redirect: &'static str = Box::leak(
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {}/steal\r\nContent-Length: 0\r\n\r\n",
            elsewhere.url
        )
        .into_boxed_str(),
    );
    let redirector = trap(Some(redirect)).await;
    let out = tempfile::tempdir().unwrap();
    let client = RepositoryClient::new(&redirector.url, Some("hospital-token".into()));
    let err = client
        .download(&blob(b"weights"), &out.path().join("a"), 1 << 20)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepositoryError::Http { status: 302 }),
        "{err}"
    );
    assert_eq!(elsewhere.connections(), 0, "the redirect was not followed");
    let asked = String::from_utf8_lossy(&redirector.seen.lock().unwrap()).into_owned();
    let digest = blob(b"weights").sha256;
    assert!(
        asked.starts_with(&format!("GET /blobs/{digest} ")),
        "fetched by digest under the configured base: {asked}"
    );

    let internal = trap(Some(
        "HTTP/1.1 500 Internal\r\nContent-Length: 28\r\n\r\nSECRET intranet page content",
    ))
    .await;
    let err = RepositoryClient::new(&internal.url, None)
        .download(&blob(b"weights"), &out.path().join("b"), 1 << 20)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("SECRET") && !err.contains(&internal.url),
        "{err}"
    );

    // A page of the announced size but other bytes: refused, without its digest.
    let other = trap(Some("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nnotthat")).await;
    let err = RepositoryClient::new(&other.url, None)
        .download(&blob(b"weights"), &out.path().join("c"), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, RepositoryError::Corrupt), "{err}");
    let page_digest = fedwasm::digest::Sha256Digest::of(b"notthat").to_hex();
    assert!(!err.to_string().contains(&page_digest[..16]), "{err}");
    assert!(!out.path().join("c").exists());

    // Longer than announced: cut off, nothing kept.
    let long = trap(Some(
        "HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n0123456789012345678901234567890123456789012345678901234567890123",
    ))
    .await;
    let err = RepositoryClient::new(&long.url, None)
        .download(&blob(b"weights"), &out.path().join("d"), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, RepositoryError::Corrupt), "{err}");
    // Announced over the limit: refused before any connection.
    let before = long.connections();
    let err = RepositoryClient::new(&long.url, None)
        .download(
            &BlobRef {
                size: 1 << 40,
                ..blob(b"x")
            },
            &out.path().join("e"),
            1 << 30,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RepositoryError::TooLarge { .. }), "{err}");
    assert_eq!(long.connections(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_train_request_cannot_point_a_node_at_another_server() {
    let fed = Federation::embedded().await;
    let (_a, _b) = fed.two_nodes().await;
    let elsewhere = trap(Some("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")).await;
    let mut link = fed.researcher("researcher-ssrf").await;
    let dataset = only_dataset(&mut link, "node-a").await;
    let (plan, params) = fed
        .upload_plan(&example_plan("logistic-regression"), &lr_args())
        .await;
    // A protocol-1.0 style blob with a URL of the sender's choosing.
    let mut request = serde_json::to_value(Message::TrainRequest(TrainRequest {
        researcher_id: "researcher-ssrf".into(),
        experiment_id: "Experiment_0001".into(),
        request_id: link.request_id(),
        round: 1,
        dataset_id: dataset.clone(),
        plan: plan.clone(),
        params: params.clone(),
        gradient_correction: None,
        model_args: lr_args(),
        training_args: json!({"num_updates": 1}),
        seed: 1,
        training: true,
    }))
    .unwrap();
    request["params"]["url"] = json!(format!("{}/blobs/{}", elsewhere.url, params.sha256));
    request["protocol_version"] = json!(fedwasm::wire::PROTOCOL_VERSION);
    link.send_body("node-a", &request.to_string())
        .await
        .unwrap();
    let until = Instant::now() + PATIENCE;
    let (code, message) = loop {
        match link.next_message(until).await {
            Some(Message::Error(ErrorMessage { code, message, .. })) => break (code, message),
            Some(_) => {}
            None => panic!("no error reply"),
        }
    };
    assert_eq!(code, ErrorCode::MalformedMessage, "{message}");
    assert!(message.contains("unknown field `url`"), "{message}");
    // The same request without the URL trains, fetching from the node's own repository.
    let reply = train(
        &mut link,
        "node-a",
        &dataset,
        &plan,
        &params,
        json!({"num_updates": 1}),
    )
    .await;
    assert!(
        matches!(reply, Reply::Answer(Message::TrainReply(TrainReply { .. }))),
        "{reply:?}"
    );
    assert_eq!(elsewhere.connections(), 0);
}

/// The answer of `node` to `request_id`, waiting at most [`PATIENCE`].
async fn answer(link: &mut NodeLink, node: &str, request_id: &str) -> Reply {
    let nodes = BTreeSet::from([node.to_string()]);
    link.gather(request_id, Some(&nodes), PATIENCE)
        .await
        .remove(node)
        .unwrap_or_else(|| panic!("no answer from {node} to {request_id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_repository_costs_a_deadline_the_queue_is_bounded_and_shutdown_stops_the_node() {
    let fed = Federation::embedded().await;
    let stall = trap(None).await;
    let stalled = |deadline: u64| {
        let url = stall.url.clone();
        move |c: &mut fedwasm::node::NodeConfig| {
            c.repository.url = url;
            c.repository.read_timeout_secs = 3600;
            c.training_deadline_secs = deadline;
            c.max_queued_tasks = 2;
            c.max_queued_per_researcher = 1;
            c.require_approval = false;
        }
    };
    let mut quick = fed.node("node-d", &fed.shard("d.csv", 0..100), "#d", stalled(2));
    let mut slow = fed.node("node-s", &fed.shard("s.csv", 0..100), "#s", stalled(3600));
    quick.start();
    slow.start();
    let mut link = fed.researcher("researcher-1").await;
    wait_for_nodes(&mut link, &["node-d", "node-s"]).await;
    let (plan, params) = (blob(b"plan"), blob(b"params"));
    let args = json!({"num_updates": 1});

    // A download that never answers ends at the node's deadline, which
    // covers the whole task; the node answers pings meanwhile.
    let dataset = only_dataset(&mut link, "node-d").await;
    let hung = send_train(&mut link, "node-d", &dataset, &plan, &params, args.clone()).await;
    wait_until_busy(&mut link, "node-d").await;
    let (code, text) = error_of(&answer(&mut link, "node-d", &hung).await);
    assert_eq!(code, ErrorCode::Deadline, "{text}");
    assert!(text.contains("downloads"), "{text}");
    assert!(!text.contains(&stall.url), "{text}");

    // node-s hangs for an hour on its first request; one more of this
    // researcher waits, the next is refused.
    let dataset = only_dataset(&mut link, "node-s").await;
    let first = send_train(&mut link, "node-s", &dataset, &plan, &params, args.clone()).await;
    wait_until_busy(&mut link, "node-s").await;
    let second = send_train(&mut link, "node-s", &dataset, &plan, &params, args.clone()).await;
    let third = send_train(&mut link, "node-s", &dataset, &plan, &params, args.clone()).await;
    let (code, text) = error_of(&answer(&mut link, "node-s", &third).await);
    assert_eq!(code, ErrorCode::Busy, "{text}");
    assert!(text.contains("its limit"), "{text}");
    // Another researcher still gets a place: the per-researcher cap keeps one for them.
    let mut other = fed.researcher("researcher-2").await;
    let theirs = send_train(&mut other, "node-s", &dataset, &plan, &params, args.clone()).await;
    // Now the queue's two places are taken, for everyone.
    let mut late = fed.researcher("researcher-3").await;
    let refused = send_train(&mut late, "node-s", &dataset, &plan, &params, args.clone()).await;
    let (code, text) = error_of(&answer(&mut late, "node-s", &refused).await);
    assert_eq!(code, ErrorCode::Busy, "{text}");
    assert!(text.contains("queue is full"), "{text}");

    // SIGTERM stops the node in the middle of its download, and every
    // request in hand or waiting is answered.
    let status = slow.terminate();
    assert!(status.success(), "{status:?}: {}", slow.log());
    for request in [&first, &second] {
        let (code, _) = error_of(&answer(&mut link, "node-s", request).await);
        assert_eq!(code, ErrorCode::ShuttingDown);
    }
    let (code, _) = error_of(&answer(&mut other, "node-s", &theirs).await);
    assert_eq!(code, ErrorCode::ShuttingDown);
    quick.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_error_of_two_mib_arrives_cut_and_the_node_stays_connected() {
    let fed = Federation::embedded().await;
    let plan = hostile_plan("hostile-shout");
    let mut node = fed.node("node-a", &fed.shard("a.csv", 0..100), "#shout", |c| {
        c.require_approval = false;
    });
    node.start();
    let mut link = fed.researcher("researcher-1").await;
    wait_for_nodes(&mut link, &["node-a"]).await;
    let dataset = only_dataset(&mut link, "node-a").await;
    let plan_blob = fed.repository.upload_file(&plan).await.unwrap();
    let params = fed
        .repository
        .upload_bytes(fedwasm::tensors::to_bytes(&[], &Default::default()).unwrap())
        .await
        .unwrap();
    let (request_id, request) = train_request(
        &mut link,
        &dataset,
        &plan_blob,
        &params,
        json!({}),
        json!({"num_updates": 1}),
    );
    link.send(Some("node-a"), &request).await.unwrap();
    let (code, text) = error_of(&answer(&mut link, "node-a", &request_id).await);
    let start: String = text.chars().take(200).collect();
    assert_eq!(code, ErrorCode::Plan, "{start}");
    assert!(text.len() <= MAX_TEXT_BYTES, "{}", text.len());
    assert!(text.contains("the plan has a lot to say"), "{start}");
    assert!(text.ends_with("more bytes cut]"), "{start}");
    assert!(
        !node.log().contains("reconnect"),
        "the node stayed connected: {}",
        node.log()
    );
    wait_for_nodes(&mut link, &["node-a"]).await;

    // A dataset that became unreadable: the error says so without the
    // node's paths (its folder, its dataset files).
    let csv = fed.tmp.path().join("a.csv");
    std::fs::write(&csv, "mean_radius,diagnosis\n1.0,oops\n").unwrap();
    let (lr, lr_params) = fed
        .upload_plan(&example_plan("logistic-regression"), &lr_args())
        .await;
    let dataset = only_dataset(&mut link, "node-a").await;
    let reply = train(
        &mut link,
        "node-a",
        &dataset,
        &lr,
        &lr_params,
        json!({"num_updates": 1}),
    )
    .await;
    let (code, text) = error_of(&reply);
    assert_eq!(code, ErrorCode::Dataset, "{text}");
    let tmp = fed.tmp.path().to_string_lossy().into_owned();
    assert!(!text.contains(&tmp) && text.contains("<dataset>"), "{text}");
}

/// How a [`fake_node`] answers a train request.
#[derive(Clone, Copy)]
enum Lie {
    /// Claims this many training samples.
    Samples(u64),
    /// Sends these monitoring scalars (raw JSON, any node id) first, then an
    /// honest-looking reply.
    Scalars(&'static [&'static str]),
    /// Sends the global parameters plus this much on every value, trained
    /// (it says) on all 100 of its rows.
    Shift(f32),
    /// Fails every task with an error text full of terminal escapes.
    Escapes,
}

/// A node made of a bare MQTT client: it answers searches with one dataset of
/// 100 rows and train requests by sending the global parameters back, lying
/// as `lie` says. What a compromised hospital could run.
async fn fake_node(fed: &Federation, id: &'static str, lie: Lie) -> tokio::task::JoinHandle<()> {
    let repository = fed.repository.clone();
    use fedwasm::identity::{Identity, KeyRing, Role, Roster};
    use fedwasm::transport::{MqttClient, Session};
    use fedwasm::wire::{DatasetSummary, TrainTimings, open, seal_raw, topics};
    // A signed hospital: its key is pinned by the researcher; it believes
    // any researcher.
    let identity = std::sync::Arc::new(Identity::generate(Role::Node, id).unwrap());
    fed.keys.pin_node(id, identity.public());
    let researchers = KeyRing::in_memory(Roster {
        trust_on_first_use: true,
        ..Roster::default()
    });
    // Online, as a node says after connecting: a search then ends as soon
    // as every online node has answered instead of waiting its window.
    let online = Message::NodeStatus(fedwasm::wire::NodeStatus {
        node_id: id.into(),
        online: true,
    });
    let session = Session {
        client_id: id.into(),
        subscriptions: vec![topics::all_nodes(), topics::node(id)],
        last_will: None,
        announce: Some((topics::node_status(id), online)),
        identity: identity.clone(),
    };
    let (client, mut inbox) = MqttClient::connect(&fed.broker, session).await.unwrap();
    let publisher = client.publisher();
    tokio::spawn(async move {
        let _client = client;
        while let Some(delivery) = inbox.recv().await {
            let Ok(opened) = open(&delivery.payload, &researchers) else {
                continue;
            };
            match opened.message {
                Message::SearchRequest(SearchRequest {
                    researcher_id,
                    request_id,
                    ..
                }) => {
                    let reply = Message::SearchReply(SearchReply {
                        researcher_id,
                        request_id,
                        node_id: id.into(),
                        datasets: vec![DatasetSummary {
                            dataset_id: format!("ds-{id}"),
                            name: id.into(),
                            tags: vec!["#fake".into()],
                            description: String::new(),
                            data_type: "csv".into(),
                            shape: vec![100, 31],
                            columns: vec![],
                            dtypes: vec![],
                            target: Some("diagnosis".into()),
                            test_rows: None,
                            classes: Vec::new(),
                            image_target: None,
                        }],
                    });
                    let topic = topics::replies(reply.addressee());
                    publisher.publish(&topic, &reply).await.unwrap();
                }
                Message::TrainRequest(TrainRequest {
                    researcher_id,
                    experiment_id,
                    request_id,
                    round,
                    dataset_id,
                    params,
                    ..
                }) => {
                    if let Lie::Escapes = lie {
                        let error = Message::Error(ErrorMessage {
                            researcher_id: Some(researcher_id.clone()),
                            node_id: id.into(),
                            code: ErrorCode::Plan,
                            message: "boom\u{1b}[2J\u{1b}]0;pwned\u{7}\r".into(),
                            request: Some(fedwasm::wire::RequestRef {
                                command: "train_request".into(),
                                request_id: Some(request_id.clone()),
                            }),
                        });
                        let topic = topics::replies(error.addressee());
                        publisher.publish(&topic, &error).await.unwrap();
                        continue;
                    }
                    let (samples, params) = match lie {
                        Lie::Samples(n) => (n, params),
                        Lie::Shift(shift) => (100, shifted(&repository, &params, shift).await),
                        Lie::Escapes => unreachable!("answered above"),
                        Lie::Scalars(raw) => {
                            for scalar in raw {
                                let text = scalar
                                    .replace("EXPERIMENT", &experiment_id)
                                    .replace("RESEARCHER", &researcher_id)
                                    .replace("VERSION", fedwasm::wire::PROTOCOL_VERSION);
                                publisher
                                    .publish_bytes(
                                        &topics::monitoring(&researcher_id),
                                        seal_raw(&text, &identity),
                                    )
                                    .await
                                    .unwrap();
                            }
                            (50, params)
                        }
                    };
                    let reply = Message::TrainReply(TrainReply {
                        researcher_id,
                        experiment_id,
                        request_id,
                        round,
                        node_id: id.into(),
                        dataset_id,
                        params,
                        training_samples: samples,
                        updates: 1,
                        final_loss: 0.5,
                        learning_rate: Some(0.1),
                        validation_global: None,
                        validation_local: None,
                        privacy: None,
                        private: false,
                        timings: TrainTimings {
                            training_ms: 1.0,
                            total_ms: 1.0,
                            data_ms: 0.0,
                            sandbox_ms: 0.0,
                            transfer_ms: 0.0,
                        },
                    });
                    publisher
                        .publish(&topics::replies(reply.addressee()), &reply)
                        .await
                        .unwrap();
                }
                _ => {}
            }
        }
    })
}

/// The parameters of `blob` plus `shift` on every value, uploaded.
async fn shifted(
    repository: &fedwasm::repository::RepositoryClient,
    blob: &BlobRef,
    shift: f32,
) -> BlobRef {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("global.safetensors");
    repository.download(blob, &file, u64::MAX).await.unwrap();
    let (mut tensors, _) = fedwasm::tensors::read_file(&file).unwrap();
    for t in &mut tensors {
        t.data.iter_mut().for_each(|v| *v += shift);
    }
    let bytes = fedwasm::tensors::to_bytes(&tensors, &BTreeMap::new()).unwrap();
    repository.upload_bytes(bytes).await.unwrap()
}

/// Settings of an experiment on the `#fake` nodes.
fn fake_settings(
    fed: &Federation,
    dir: &std::path::Path,
) -> fedwasm::researcher::ExperimentSettings {
    use fedwasm::researcher::{ExperimentSettings, Tags};
    ExperimentSettings {
        tags: Some(Tags::One("#fake".into())),
        training_plan: Some(example_plan("logistic-regression")),
        model_args: lr_args().as_object().cloned().unwrap(),
        training_args: serde_json::from_value(json!({"num_updates": 1})).unwrap(),
        round_limit: Some(1),
        ..fed.settings_in(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_sample_counts_are_range_checked() {
    let fed = Federation::embedded().await;
    let _a = fake_node(&fed, "fake-a", Lie::Samples(1 << 63)).await;
    let _b = fake_node(&fed, "fake-b", Lie::Samples(1 << 63)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut exp = fedwasm::researcher::Experiment::new(fake_settings(&fed, dir.path()))
        .await
        .unwrap();
    assert_eq!(
        exp.training_data().unwrap().node_ids(),
        ["fake-a", "fake-b"]
    );
    let err = exp.run_once(false).await.unwrap_err().to_string();
    assert!(
        err.contains("reported 9223372036854775808 training samples")
            && err.contains("between 1 and 100 rows"),
        "{err}"
    );
    assert_eq!(exp.round_current(), 0, "the failed round changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ids_from_messages_never_become_paths() {
    let fed = Federation::embedded().await;
    let scalar = |node: &str| -> &'static str {
        Box::leak(
            format!(
                r#"{{"protocol_version":"VERSION","command":"scalar","researcher_id":"RESEARCHER","experiment_id":"EXPERIMENT","node_id":"{node}","round":1,"iteration":1,"epoch":1,"samples_seen":1,"total_updates":1,"values":{{"loss":0.5}}}}"#
            )
            .into_boxed_str(),
        )
    };
    let escape = tempfile::tempdir().unwrap();
    let absolute = escape.path().join("absolute-escape");
    let scalars: &'static [&'static str] = Box::leak(
        vec![
            scalar("../../relative-escape"),
            scalar(absolute.to_str().unwrap()),
            scalar(".."),
            scalar("ghost-1"),
            scalar("ghost-2"),
            scalar("fake-a"),
        ]
        .into_boxed_slice(),
    );
    let _a = fake_node(&fed, "fake-a", Lie::Scalars(scalars)).await;
    let dir = tempfile::tempdir().unwrap();
    let experiments = dir.path().join("experiments");
    let mut exp = fedwasm::researcher::Experiment::new(fedwasm::researcher::ExperimentSettings {
        tensorboard: true,
        ..fake_settings(&fed, &experiments)
    })
    .await
    .unwrap();
    assert_eq!(exp.run_once(false).await.unwrap(), 1);
    let runs: Vec<String> = std::fs::read_dir(exp.tensorboard_path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs, ["fake-a"], "only the round's node has a run folder");
    assert!(!absolute.exists());
    let beside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside, ["experiments"], "nothing was made outside");
    let inside: Vec<String> = std::fs::read_dir(&experiments)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(inside, ["Experiment_0001"]);
}

/// Every message `link` received for `request_id`'s round: the answer, then
/// whatever logs and scalars came with it (the node sends those first).
async fn exchange(link: &mut NodeLink, node: &str, request: Message) -> (Reply, Vec<Message>) {
    let Message::TrainRequest(TrainRequest { request_id, .. }) = &request else {
        unreachable!()
    };
    let request_id = request_id.clone();
    link.send(Some(node), &request).await.unwrap();
    let reply = answer(link, node, &request_id).await;
    let mut around = Vec::new();
    let until = Instant::now() + Duration::from_millis(300);
    while let Some(m) = link.next_message(until).await {
        around.push(m);
    }
    (reply, around)
}

fn leaky_request(
    link: &mut NodeLink,
    dataset: &str,
    plan: &BlobRef,
    params: &BlobRef,
    fail: bool,
    dp: bool,
) -> Message {
    let mut training_args =
        json!({"num_updates": 3, "log_interval": 1, "optimizer_args": {"lr": 0.05}});
    if dp {
        training_args["dp_args"] = json!({"type": "central", "sigma": 1e-6, "clip": 1.0});
    }
    let model_args = json!({"n_features": 30, "fail": u8::from(fail)});
    train_request(link, dataset, plan, params, model_args, training_args).1
}

fn leaked(messages: &[Message]) -> bool {
    messages.iter().any(|m| match m {
        Message::Log(NodeLog { message, .. }) => message.contains("LEAK:"),
        Message::Scalar(Scalar { .. }) => true,
        _ => false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_mode_keeps_logs_losses_and_error_text_on_the_node() {
    let fed = Federation::embedded().await;
    let plan = hostile_plan("hostile-leaky");
    let mut open = fed.node("node-a", &fed.shard("a.csv", 0..200), "#leak", |c| {
        c.require_approval = false;
    });
    let mut strict = fed.node("node-p", &fed.shard("p.csv", 200..400), "#leak", |c| {
        c.require_approval = false;
        c.always_private = true;
    });
    open.start();
    strict.start();
    let mut link = fed.researcher("researcher-1").await;
    wait_for_nodes(&mut link, &["node-a", "node-p"]).await;
    let (plan, params) = fed.upload_plan(&plan, &json!({"n_features": 30})).await;
    let dataset = only_dataset(&mut link, "node-a").await;

    // Without privacy mode the plan's leaks arrive: the test can see them.
    let request = leaky_request(&mut link, &dataset, &plan, &params, false, false);
    let (reply, around) = exchange(&mut link, "node-a", request).await;
    assert!(leaked(&around), "{around:?}");
    let Reply::Answer(Message::TrainReply(TrainReply {
        final_loss,
        learning_rate,
        private,
        ..
    })) = reply
    else {
        panic!("{reply:?}")
    };
    assert!(!private && final_loss.is_finite() && learning_rate != Some(0.05));
    let request = leaky_request(&mut link, &dataset, &plan, &params, true, false);
    let (reply, _) = exchange(&mut link, "node-a", request).await;
    assert!(error_of(&reply).1.contains("LEAK:"));

    // With dp_args: nothing but parameters and counts.
    let request = leaky_request(&mut link, &dataset, &plan, &params, false, true);
    let (reply, around) = exchange(&mut link, "node-a", request).await;
    assert!(!leaked(&around), "{around:?}");
    let Reply::Answer(Message::TrainReply(TrainReply {
        final_loss,
        learning_rate,
        private,
        timings,
        privacy,
        ..
    })) = reply
    else {
        panic!("{reply:?}")
    };
    assert!(private && final_loss.is_nan(), "{final_loss}");
    assert_eq!(
        learning_rate,
        Some(0.05),
        "the researcher's own rate, not the plan's"
    );
    // No timing leaves a node in privacy mode, the total neither: a plan
    // can steer it (spin in proportion to a data value).
    assert_eq!(
        (
            timings.training_ms,
            timings.data_ms,
            timings.sandbox_ms,
            timings.transfer_ms,
            timings.total_ms
        ),
        (0.0, 0.0, 0.0, 0.0, 0.0)
    );
    assert_eq!(privacy.unwrap().mode, "central");
    let request = leaky_request(&mut link, &dataset, &plan, &params, true, true);
    let (reply, around) = exchange(&mut link, "node-a", request).await;
    let (code, text) = error_of(&reply);
    assert_eq!(code, ErrorCode::Plan);
    assert!(
        !text.contains("LEAK") && text.contains("privacy mode"),
        "{text}"
    );
    assert!(!leaked(&around));
    assert!(
        open.log().contains("LEAK:"),
        "the details stay in the node's own log"
    );

    // A node whose operator made privacy mode the rule applies it without dp_args,
    // and refuses validation scores.
    let dataset = only_dataset(&mut link, "node-p").await;
    let request = leaky_request(&mut link, &dataset, &plan, &params, false, false);
    let (reply, around) = exchange(&mut link, "node-p", request).await;
    assert!(!leaked(&around), "{around:?}");
    assert!(
        matches!(
            reply,
            Reply::Answer(Message::TrainReply(TrainReply { private: true, .. }))
        ),
        "{reply:?}"
    );
    let mut request = leaky_request(&mut link, &dataset, &plan, &params, false, false);
    if let Message::TrainRequest(TrainRequest { training_args, .. }) = &mut request {
        training_args["test_ratio"] = json!(0.2);
        training_args["test_on_local_updates"] = json!(true);
    }
    let (reply, _) = exchange(&mut link, "node-p", request).await;
    let (code, text) = error_of(&reply);
    assert_eq!(code, ErrorCode::BadTrainingArgs, "{text}");
    assert!(text.contains("privacy mode"), "{text}");
}

#[test]
fn parameters_larger_than_wasmtimes_default_copy_limit_cross_the_boundary() {
    use fedwasm::sandbox::random::StreamSeed;
    use fedwasm::sandbox::{Sandbox, SandboxConfig};
    let sandbox = Sandbox::new(SandboxConfig {
        memory_mib: 2048,
        ..SandboxConfig::default()
    })
    .unwrap();
    let plan = sandbox.load_file(&example_plan("mlp")).unwrap();
    let mut instance = sandbox.instantiate(&plan, &StreamSeed([1; 32])).unwrap();
    // 784 × 45 000 + 45 000 × 10 weights: 143 MB of f32, over 128 MiB.
    instance
        .init_model(r#"{"n_features": 784, "n_classes": 10, "hidden": [45000]}"#)
        .unwrap();
    let parameters = instance.get_parameters().unwrap();
    let values: usize = parameters.iter().map(|t| t.data.len()).sum();
    assert_eq!(values, 784 * 45_000 + 45_000 + 45_000 * 10 + 10);
    instance.set_parameters(&parameters).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_wants_passwords_off_loopback_and_checks_them() {
    use fedwasm::transport::{BrokerConfig, MqttClient, Session};
    let bin = crate::support::fedwasm_bin();
    let open = std::process::Command::new(&bin)
        .args(["broker", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!open.status.success());
    let said = String::from_utf8_lossy(&open.stderr);
    assert!(said.contains("--password-file"), "{said}");

    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    std::fs::write(&passwords, "# users\nnode-a:s3cret\nalice:other\n").unwrap();
    let (mut child, url) = crate::support::spawn_server(
        std::process::Command::new(&bin)
            .args(["broker", "--bind", "127.0.0.1:0", "--password-file"])
            .arg(&passwords),
    );
    let login = |user: &str, password: &str| BrokerConfig {
        username: Some(user.into()),
        password: Some(password.into()),
        connect_attempts: 2,
        ..BrokerConfig::new(&url)
    };
    let session = |id: &str| Session {
        client_id: id.into(),
        subscriptions: vec![],
        last_will: None,
        announce: None,
        identity: std::sync::Arc::new(fedwasm::identity::Identity::from_seed(
            fedwasm::identity::Role::Node,
            id,
            [1; 32],
        )),
    };
    let (client, _) = MqttClient::connect(&login("node-a", "s3cret"), session("node-a"))
        .await
        .expect("the right password gets in");
    client.disconnect().await;
    let refused = MqttClient::connect(&login("node-a", "guess"), session("node-a2")).await;
    assert!(refused.is_err(), "a wrong password is refused");
    let anonymous = MqttClient::connect(
        &BrokerConfig {
            connect_attempts: 2,
            ..BrokerConfig::new(&url)
        },
        session("nobody"),
    )
    .await;
    assert!(anonymous.is_err(), "no password, no entry");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Four signed hospitals send small updates and a fifth a huge one, each
/// claiming its 100 pinned rows. FedAvg follows the huge one; the median
/// and the trimmed mean move the global model by at most the honest nodes'
/// largest shift (0.01), and clipped FedAvg by at most its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_aggregators_bound_what_one_hospital_of_five_can_do() {
    let fed = Federation::embedded().await;
    const FIVE: [&str; 5] = ["fake-a", "fake-b", "fake-c", "fake-d", "fake-x"];
    let honest = [0.01, -0.01, 0.005, -0.005];
    let mut fakes = Vec::new();
    for (id, shift) in ["fake-a", "fake-b", "fake-c", "fake-d"]
        .into_iter()
        .zip(honest)
    {
        fakes.push(fake_node(&fed, id, Lie::Shift(shift)).await);
    }
    fakes.push(fake_node(&fed, "fake-x", Lie::Shift(1e6)).await);
    let moved = |exp: &fedwasm::researcher::Experiment,
                 initial: &[fedwasm::sandbox::types::Tensor]| {
        let mut now = exp.global_parameters().unwrap().to_vec();
        now.sort_by(|a, b| a.name.cmp(&b.name));
        let mut initial = initial.to_vec();
        initial.sort_by(|a, b| a.name.cmp(&b.name));
        now.iter()
            .zip(&initial)
            .flat_map(|(a, b)| a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()))
            .fold(0.0f32, f32::max)
    };
    // Every run starts from the same file, so "moved" is measured from it.
    let sandbox =
        fedwasm::sandbox::Sandbox::new(fedwasm::sandbox::SandboxConfig::default()).unwrap();
    let loaded = sandbox
        .load_file(&example_plan("logistic-regression"))
        .unwrap();
    let mut instance = sandbox
        .instantiate(&loaded, &fedwasm::sandbox::random::StreamSeed([0; 32]))
        .unwrap();
    instance.init_model(&lr_args().to_string()).unwrap();
    let initial = instance.get_parameters().unwrap();
    let start = fed.tmp.path().join("start.safetensors");
    std::fs::write(
        &start,
        fedwasm::tensors::to_bytes(&initial, &BTreeMap::new()).unwrap(),
    )
    .unwrap();
    let mut worst = BTreeMap::new();
    for (aggregator, clip_norm) in [
        ("fedavg", None),
        ("median", None),
        ("trimmed_mean", None),
        ("clipped_fedavg", Some(0.05f32)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut exp =
            fedwasm::researcher::Experiment::new(fedwasm::researcher::ExperimentSettings {
                aggregator: aggregator.into(),
                clip_norm,
                initial_parameters: Some(start.clone()),
                // The search returns once these answered (fake nodes
                // announce no status, so it would wait its whole window).
                nodes: Some(FIVE.map(String::from).to_vec()),
                ..fake_settings(&fed, dir.path())
            })
            .await
            .unwrap();
        assert_eq!(exp.training_data().unwrap().node_ids().len(), 5);
        exp.run_once(false).await.unwrap();
        worst.insert(aggregator, moved(&exp, &initial));
        if aggregator == "clipped_fedavg" {
            let warnings = exp.take_warnings();
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("clipped") && w.contains("fake-x")),
                "{warnings:?}"
            );
        }
        exp.close().await;
    }
    assert!(worst["fedavg"] > 1e5, "{worst:?}");
    assert!(worst["median"] <= 0.01 + 1e-6, "{worst:?}");
    assert!(worst["trimmed_mean"] <= 0.01 + 1e-6, "{worst:?}");
    // Clipped: the model moves by an update of norm ≤ 0.05, so no value by more.
    assert!(worst["clipped_fedavg"] <= 0.05 + 1e-6, "{worst:?}");
    for fake in fakes {
        fake.abort();
    }
}

/// Approval requests cannot flood a node's log: descriptions are cut and
/// lose their terminal escapes, and one key gets ten at once, then one
/// every few seconds (`busy` meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_requests_are_cut_and_rate_limited_per_key() {
    let fed = Federation::embedded().await;
    let (a, _b) = fed.two_nodes().await;
    let mut link = fed.researcher("asker").await;
    let log = a.dir.join("node.log");
    let before = std::fs::metadata(&log).unwrap().len();
    let description = format!("\u{1b}[2J{}", "please approve ".repeat(20_000));
    let only_a = BTreeSet::from(["node-a".to_string()]);
    let mut answers = Vec::new();
    for n in 0..30u32 {
        let request_id = link.request_id();
        let request = Message::PlanApprovalRequest(fedwasm::wire::PlanApprovalRequest {
            researcher_id: "asker".into(),
            request_id: request_id.clone(),
            plan: BlobRef {
                sha256: fedwasm::digest::Sha256Digest::of(&n.to_be_bytes()),
                size: 10,
            },
            description: description.clone(),
        });
        link.send(Some("node-a"), &request).await.unwrap();
        let reply = link.gather(&request_id, Some(&only_a), PATIENCE).await;
        answers.push(match &reply["node-a"] {
            Reply::Answer(_) => "noted",
            Reply::Error(_) => {
                let (code, _) = error_of(&reply["node-a"]);
                assert_eq!(code, ErrorCode::Busy);
                "busy"
            }
        });
    }
    assert_eq!(
        answers.iter().filter(|a| **a == "noted").count(),
        10,
        "{answers:?}"
    );
    let grown = std::fs::metadata(&log).unwrap().len() - before;
    assert!(grown < 30_000, "the log grew by {grown} bytes");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("\u{1b}[2J"),
        "a terminal escape reached the log"
    );
    assert!(text.contains("more characters cut"));
}

/// A node's error text reaches the researcher without its terminal escapes
/// (which `fedwasm run` would print as they are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_error_text_loses_its_terminal_escapes() {
    let fed = Federation::embedded().await;
    let _a = fake_node(&fed, "fake-a", Lie::Escapes).await;
    let dir = tempfile::tempdir().unwrap();
    let mut exp = fedwasm::researcher::Experiment::new(fake_settings(&fed, dir.path()))
        .await
        .unwrap();
    let err = exp.run_once(false).await.unwrap_err().to_string();
    assert!(err.contains("boom"), "{err}");
    assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "{err:?}");
}
