//! Who sent this? A client with the broker's password but no pinned key
//! forges replies and errors "from" the nodes, requests "from" the honest
//! researcher and from invented ones, and approval requests — on the
//! embedded broker and on mosquitto with the README's ACL. None of it is
//! believed: the honest experiment ends bit for bit as it does alone.

use std::collections::BTreeSet;
use std::sync::Arc;

use fedwasm::digest::Sha256Digest;
use fedwasm::identity::{Identity, Role};
use fedwasm::researcher::{Experiment, ExperimentSettings, NodeLink, Reply};
use fedwasm::transport::{BrokerConfig, Delivery, MqttClient, Publisher, Session};
use fedwasm::wire::{
    BlobRef, DatasetSummary, ErrorCode, ErrorMessage, Message, PlanApprovalRequest,
    PlanStatusRequest, SearchReply, SearchRequest, TrainReply, TrainRequest, TrainTimings, seal,
    topics,
};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::experiment::settings;
use crate::federation::{
    EXPERIMENTER, Federation, NodeProcess, PATIENCE, error_of, global_bits, lr_args, only_dataset,
    train_request,
};
use crate::support::{body_of, example_plan};

/// A connection with a key of its own, signing as `role` `id`, listening
/// to every topic the broker lets it read.
async fn connect_as(
    broker: &BrokerConfig,
    role: Role,
    id: &str,
) -> (MqttClient, UnboundedReceiver<Delivery>, Arc<Identity>) {
    let identity = Arc::new(Identity::generate(role, id).unwrap());
    let session = Session {
        client_id: format!("{id}-forger"),
        subscriptions: vec!["fedwasm/v2/#".into()],
        last_will: None,
        announce: None,
        identity: identity.clone(),
    };
    let (client, inbox) = MqttClient::connect(broker, session).await.unwrap();
    (client, inbox, identity)
}

/// A train reply "from" `node` that would make `params` the global model
/// on its own (a huge sample count).
fn forged_reply(request: &TrainRequest, node: &str, params: &BlobRef) -> Message {
    Message::TrainReply(TrainReply {
        researcher_id: request.researcher_id.clone(),
        experiment_id: request.experiment_id.clone(),
        request_id: request.request_id.clone(),
        round: request.round,
        node_id: node.into(),
        dataset_id: request.dataset_id.clone(),
        params: params.clone(),
        training_samples: 1 << 39,
        updates: 7,
        final_loss: 0.0,
        learning_rate: None,
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
    })
}

/// Answer every search and train request the forger can read with replies
/// and errors signed as node-a with its own key: what "pre-sent replies"
/// did to the previous protocol.
fn forge_replies(
    mut inbox: UnboundedReceiver<Delivery>,
    publisher: Publisher,
    params: BlobRef,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(delivery) = inbox.recv().await {
            let forged = match body_of(&delivery.payload) {
                Some(Message::SearchRequest(SearchRequest {
                    researcher_id,
                    request_id,
                    ..
                })) => vec![Message::SearchReply(SearchReply {
                    researcher_id,
                    request_id,
                    node_id: "node-a".into(),
                    datasets: vec![DatasetSummary {
                        dataset_id: "forged".into(),
                        name: "forged".into(),
                        tags: vec!["#bc".into()],
                        description: String::new(),
                        data_type: "csv".into(),
                        shape: vec![1 << 30, 31],
                        columns: vec![],
                        dtypes: vec![],
                        target: Some("diagnosis".into()),
                        test_rows: None,
                        classes: vec![],
                        image_target: None,
                    }],
                })],
                Some(Message::TrainRequest(request)) => vec![
                    forged_reply(&request, "node-a", &params),
                    Message::Error(ErrorMessage {
                        researcher_id: Some(request.researcher_id.clone()),
                        node_id: "node-a".into(),
                        code: ErrorCode::Internal,
                        message: "forged failure".into(),
                        request: Some(fedwasm::wire::RequestRef {
                            command: "train_request".into(),
                            request_id: Some(request.request_id.clone()),
                        }),
                    }),
                ],
                _ => vec![],
            };
            for message in forged {
                let topic = topics::replies(message.addressee());
                let _ = publisher.publish(&topic, &message).await;
            }
        }
    })
}

/// Requests no node may take: 20 train requests under 5 invented
/// researcher ids and 4 as the honest researcher (with another key), and
/// approval requests for `bogus`, all to node-a.
async fn forge_requests(publisher: &Publisher, dataset_id: &str, plan: &BlobRef, bogus: &BlobRef) {
    let mut senders: Vec<Identity> = (0..5)
        .map(|n| Identity::generate(Role::Researcher, &format!("invented-{n}")).unwrap())
        .collect();
    senders.push(Identity::generate(Role::Researcher, EXPERIMENTER).unwrap());
    for (n, sender) in senders.iter().enumerate() {
        for k in 0..4 {
            let request = Message::TrainRequest(TrainRequest {
                researcher_id: sender.id().into(),
                experiment_id: "Experiment_0001".into(),
                request_id: format!("squat-{n}-{k}"),
                round: 1,
                dataset_id: dataset_id.into(),
                plan: plan.clone(),
                params: plan.clone(),
                gradient_correction: None,
                model_args: lr_args(),
                training_args: json!({"num_updates": 100000}),
                seed: 1,
                training: true,
            });
            let bytes = seal(&request, sender);
            publisher
                .publish_bytes(&topics::node("node-a"), bytes)
                .await
                .unwrap();
        }
        let approval = Message::PlanApprovalRequest(PlanApprovalRequest {
            researcher_id: sender.id().into(),
            request_id: format!("approve-{n}"),
            plan: bogus.clone(),
            description: "please".into(),
        });
        publisher
            .publish_bytes(&topics::node("node-a"), seal(&approval, sender))
            .await
            .unwrap();
    }
}

/// Two rounds of the LR experiment on node-a and node-b in `dir`.
async fn honest_run(fed: &Federation, dir: &std::path::Path) -> Experiment {
    let mut exp = Experiment::new(ExperimentSettings {
        round_limit: Some(2),
        ..settings(fed, dir)
    })
    .await
    .unwrap();
    exp.run(None, false).await.unwrap();
    exp
}

/// The attack of the module docs against `fed`'s node-a and node-b: the
/// forger of replies connects with `as_node`, the forger of requests with
/// `as_researcher`, a pinned researcher checks with `checker`.
async fn forgeries_change_nothing(
    fed: &Federation,
    nodes: &[NodeProcess],
    as_node: &BrokerConfig,
    as_researcher: &BrokerConfig,
    checker: &BrokerConfig,
) {
    let dir = tempfile::tempdir().unwrap();
    let alone = honest_run(fed, &dir.path().join("alone")).await;
    let expected = global_bits(&alone);
    assert_eq!(alone.refused_messages(), 0);
    alone.close().await;

    let (plan, params) = fed
        .upload_plan(&example_plan("logistic-regression"), &lr_args())
        .await;
    let bogus = fed
        .repository
        .upload_bytes(b"not a plan".to_vec())
        .await
        .unwrap();
    let (node_forger, inbox, _) = connect_as(as_node, Role::Node, "node-a").await;
    let replies = forge_replies(inbox, node_forger.publisher(), params);
    let (request_forger, _, _) = connect_as(as_researcher, Role::Researcher, EXPERIMENTER).await;
    let mut link = NodeLink::connect(checker, &fed.keys.researcher("checker"))
        .await
        .unwrap();
    let dataset = only_dataset(&mut link, "node-a").await;
    forge_requests(&request_forger.publisher(), &dataset, &plan, &bogus).await;

    let attacked = honest_run(fed, &dir.path().join("attacked")).await;
    assert_eq!(
        global_bits(&attacked),
        expected,
        "the forged replies moved the global model"
    );
    assert!(
        attacked.refused_messages() > 0,
        "the forgeries reached the researcher and were refused"
    );
    for round in &attacked.history().rounds {
        for node in &round.nodes {
            assert!(node.training_samples < 600, "{node:?}");
        }
    }
    attacked.close().await;

    // No forged approval request was noted; an honest one is (so the
    // check can fail).
    let honest = fed
        .repository
        .upload_bytes(b"honest plan".to_vec())
        .await
        .unwrap();
    let request_id = link.request_id();
    let approval = Message::PlanApprovalRequest(PlanApprovalRequest {
        researcher_id: link.researcher_id().into(),
        request_id: request_id.clone(),
        plan: honest.clone(),
        description: "a plan to review".into(),
    });
    link.send(Some("node-a"), &approval).await.unwrap();
    let only_a = BTreeSet::from(["node-a".to_string()]);
    let answered = link.gather(&request_id, Some(&only_a), PATIENCE).await;
    assert!(
        matches!(answered["node-a"], Reply::Answer(_)),
        "{answered:?}"
    );
    let plans = nodes[0].operator(&["plan", "list"]);
    assert!(plans.contains(&honest.sha256.to_hex()), "{plans}");
    assert!(!plans.contains(&bogus.sha256.to_hex()), "{plans}");
    replies.abort();
    node_forger.disconnect().await;
    request_forger.disconnect().await;
    link.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgeries_on_the_embedded_broker_change_nothing() {
    let fed = Federation::embedded().await;
    let (a, b) = fed.two_nodes().await;
    let broker = fed.broker.clone();
    forgeries_change_nothing(&fed, &[a, b], &broker, &broker, &broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgeries_under_the_readme_acl_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let users = [
        (EXPERIMENTER, "e-pass"),
        ("checker", "c-pass"),
        ("mallory", "m-pass"),
        ("node-a", "a-pass"),
        ("node-b", "b-pass"),
        ("node-x", "x-pass"),
    ];
    let broker = crate::mosquitto::start_mosquitto(dir.path(), &users, "");
    let login =
        |user: &str, password: &str| crate::mosquitto::credentials(&broker.url, user, password);
    let fed = Federation::start(login(EXPERIMENTER, "e-pass")).await;
    let mut nodes = Vec::new();
    for (id, password, rows) in [("node-a", "a-pass", 0..250), ("node-b", "b-pass", 250..569)] {
        let shard = fed.shard(&format!("{id}.csv"), rows);
        let mut node = fed.node(id, &shard, &format!("#bc,#{id}"), |c| {
            c.broker.username = Some(id.into());
            c.broker.password = Some(password.into());
        });
        node.operator(&[
            "plan",
            "approve",
            example_plan("logistic-regression").to_str().unwrap(),
        ]);
        node.start();
        nodes.push(node);
    }
    let checker = login("checker", "c-pass");
    let mut waiter = NodeLink::connect(&checker, &fed.keys.researcher("checker"))
        .await
        .unwrap();
    crate::federation::wait_for_nodes(&mut waiter, &["node-a", "node-b"]).await;
    waiter.disconnect().await;
    forgeries_change_nothing(
        &fed,
        &nodes,
        &login("node-x", "x-pass"),
        &login("mallory", "m-pass"),
        &checker,
    )
    .await;
}

/// A researcher's request id cannot be taken by another key: a pinned
/// researcher (mallory) who sends the honest researcher's request first,
/// claiming to be her — signed as herself, or under her id with another
/// key — is dropped, and the honest request trains as asked instead of
/// getting a replay of mallory's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_cannot_be_squatted_by_another_key() {
    let fed = Federation::embedded().await;
    let (_a, _b) = fed.two_nodes().await;
    let (plan, params) = fed
        .upload_plan(&example_plan("logistic-regression"), &lr_args())
        .await;
    let mut honest = fed.researcher("honest").await;
    let mut mallory = fed.researcher("mallory").await;
    let dataset = only_dataset(&mut honest, "node-a").await;
    let only_a = BTreeSet::from(["node-a".to_string()]);

    let (request_id, request) = train_request(
        &mut honest,
        &dataset,
        &plan,
        &params,
        lr_args(),
        json!({"num_updates": 3}),
    );
    let (_, mut squat) = train_request(
        &mut mallory,
        &dataset,
        &plan,
        &params,
        lr_args(),
        json!({"num_updates": 7}),
    );
    if let Message::TrainRequest(r) = &mut squat {
        r.request_id = request_id.clone();
        r.researcher_id = "honest".into();
    }
    // Under her own key (a signer speaking for another), then under the
    // honest researcher's id with her key (a key the roster does not pin).
    mallory.send(Some("node-a"), &squat).await.unwrap();
    let (poser, _, _) = connect_as(&fed.broker, Role::Researcher, "honest").await;
    poser
        .publisher()
        .publish(&topics::node("node-a"), &squat)
        .await
        .unwrap();
    // The node handles one client's messages in order: once mallory's
    // ping is answered, her requests were handled.
    assert_eq!(
        mallory.ping(Some(&only_a), PATIENCE).await.unwrap().len(),
        1
    );

    honest.send(Some("node-a"), &request).await.unwrap();
    let mine = honest.gather(&request_id, Some(&only_a), PATIENCE).await;
    match mine.get("node-a") {
        Some(Reply::Answer(Message::TrainReply(TrainReply { updates, .. }))) => {
            assert_eq!(*updates, 3, "the node replayed another key's answer")
        }
        other => panic!("{other:?}"),
    }
}

/// A researcher the node does not serve is told which key to have pinned,
/// and nothing it sends is queued or noted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_researcher_is_told_how_to_be_served() {
    let fed = Federation::embedded().await;
    let (a, _b) = fed.two_nodes().await;
    let credentials = fedwasm::identity::Credentials::researcher(
        Some(&fed.tmp.path().join("stranger.key")),
        Some(&fed.keys.roster()),
        Some("stranger"),
    )
    .unwrap();
    let mut stranger = fedwasm::researcher::NodeLink::connect(&fed.broker, &credentials)
        .await
        .unwrap();
    let request_id = stranger.request_id();
    let digest = Sha256Digest::of(b"x");
    let status = Message::PlanStatusRequest(PlanStatusRequest {
        researcher_id: "stranger".into(),
        request_id: request_id.clone(),
        plan_sha256: digest,
    });
    stranger.send(Some("node-a"), &status).await.unwrap();
    let only_a = BTreeSet::from(["node-a".to_string()]);
    let replies = stranger.gather(&request_id, Some(&only_a), PATIENCE).await;
    let (code, text) = error_of(&replies["node-a"]);
    assert_eq!(code, ErrorCode::UnknownKey);
    let key = credentials.identity.public().to_string();
    assert!(
        text.contains(&format!(
            "fedwasm roster add --dir <node folder> researcher stranger {key}"
        )),
        "{text}"
    );
    assert!(
        !text.contains(&fed.tmp.path().display().to_string()),
        "{text}"
    );
    // Once the operator pins it, the same researcher is served.
    a.operator_roster(&["add", "researcher", "stranger", &key]);
    let request_id = stranger.request_id();
    let status = Message::PlanStatusRequest(PlanStatusRequest {
        researcher_id: "stranger".into(),
        request_id: request_id.clone(),
        plan_sha256: digest,
    });
    stranger.send(Some("node-a"), &status).await.unwrap();
    let replies = stranger.gather(&request_id, Some(&only_a), PATIENCE).await;
    assert!(matches!(replies["node-a"], Reply::Answer(_)), "{replies:?}");
}
