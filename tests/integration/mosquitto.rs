//! The same federation over Debian's mosquitto (installed by `.ci/run`), with
//! a password file and an ACL that confines each node to its own topics.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fedwasm::transport::{BrokerConfig, MqttClient, Session};
use fedwasm::wire::{Message, NodeLog, Ping, Pong, TrainReply, topics};
use serde_json::json;

use crate::federation::{Federation, PATIENCE, lr_args, only_dataset, train, wait_for_nodes};
use crate::support::example_plan;

/// A mosquitto process, killed when dropped.
pub(crate) struct Mosquitto {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn program(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed; install it with `apt-get install -y mosquitto` (as .ci/run does)")
        })
}

/// The README's ACL: a researcher writes to nodes and reads only its own
/// replies (and node status); a node reads the broadcast topic and its own,
/// and writes replies and its own status.
fn acl(researchers: &[&str], nodes: &[&str]) -> String {
    let mut acl = String::new();
    for r in researchers {
        acl += &format!(
            "user {r}\ntopic write fedwasm/v2/nodes/#\ntopic read {}\ntopic read fedwasm/v2/researchers/anonymous/#\ntopic read fedwasm/v2/status/#\n\n",
            topics::researcher(r)
        );
    }
    for node in nodes {
        acl += &format!(
            "user {node}\ntopic read {}\ntopic read {}\ntopic write fedwasm/v2/researchers/#\ntopic write {}\n\n",
            topics::all_nodes(),
            topics::node(node),
            topics::node_status(node)
        );
    }
    acl
}

/// Start mosquitto on a free port with `users` (password file and ACL), plus
/// `extra` configuration lines for the listener.
pub(crate) fn start_mosquitto(dir: &Path, users: &[(&str, &str)], extra: &str) -> Mosquitto {
    let passwd = dir.join("passwd");
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new(program("mosquitto_passwd"));
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd.arg(&passwd).args([user, password]).status().unwrap();
        assert!(status.success(), "mosquitto_passwd failed");
    }
    let (nodes, researchers): (Vec<&str>, Vec<&str>) = users
        .iter()
        .map(|(u, _)| *u)
        .partition(|u| u.starts_with("node-"));
    std::fs::write(dir.join("acl"), acl(&researchers, &nodes)).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\n{extra}allow_anonymous false\npassword_file {}\nacl_file {}\npersistence false\nuser root\nlog_dest stderr\n",
            passwd.display(),
            dir.join("acl").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("mosquitto.log")).unwrap();
    let child = Command::new(program("mosquitto"))
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < PATIENCE,
            "mosquitto did not start: {}",
            std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let scheme = if extra.contains("certfile") {
        "mqtts"
    } else {
        "mqtt"
    };
    Mosquitto {
        child,
        url: format!("{scheme}://127.0.0.1:{port}"),
    }
}

pub(crate) fn credentials(url: &str, user: &str, password: &str) -> BrokerConfig {
    BrokerConfig {
        username: Some(user.into()),
        password: Some(password.into()),
        connect_attempts: 3,
        ..BrokerConfig::new(url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_work_through_mosquitto_with_passwords_and_an_acl() {
    let dir = tempfile::tempdir().unwrap();
    let users = [
        ("researcher", "r-secret"),
        ("node-a", "a-secret"),
        ("node-b", "b-secret"),
    ];
    let broker = start_mosquitto(dir.path(), &users, "");
    let fed = Federation::start(credentials(&broker.url, "researcher", "r-secret")).await;
    let with_password = |password: &'static str| {
        move |c: &mut fedwasm::node::NodeConfig| {
            c.broker.username = Some(c.id.clone());
            c.broker.password = Some(password.into());
            c.broker.connect_attempts = 3;
        }
    };
    let plan = example_plan("logistic-regression");
    let mut a = fed.node(
        "node-a",
        &fed.shard("a.csv", 0..300),
        "#bc,#a",
        with_password("a-secret"),
    );
    let mut b = fed.node(
        "node-b",
        &fed.shard("b.csv", 300..569),
        "#bc,#b",
        with_password("b-secret"),
    );
    a.operator(&["plan", "approve", plan.to_str().unwrap()]);
    a.start();
    b.start();
    let mut link = fed.researcher("researcher").await;
    wait_for_nodes(&mut link, &["node-a", "node-b"]).await;

    let both = BTreeSet::from(["node-a".to_string(), "node-b".to_string()]);
    let found = link
        .search(&["#bc".into()], Some(&both), PATIENCE)
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    let dataset = only_dataset(&mut link, "node-a").await;
    let (plan_blob, params) = fed.upload_plan(&plan, &lr_args()).await;
    let reply = train(
        &mut link,
        "node-a",
        &dataset,
        &plan_blob,
        &params,
        json!({"num_updates": 5}),
    )
    .await;
    assert!(
        matches!(
            reply.message(),
            Message::TrainReply(TrainReply { updates: 5, .. })
        ),
        "{reply:?}"
    );

    // The ACL confines a node to its own topic: with node-a's credentials,
    // a subscription to node-b's topic is accepted but never delivers.
    let (snoop, mut heard) = MqttClient::connect(
        &credentials(&broker.url, "node-a", "a-secret"),
        Session {
            client_id: "node-a-snoop".into(),
            subscriptions: vec![topics::node("node-b"), topics::all_nodes()],
            last_will: None,
            announce: None,
            identity: crate::support::stray_identity(),
        },
    )
    .await
    .unwrap();
    let only_b = BTreeSet::from(["node-b".to_string()]);
    let pong = link.ping(Some(&only_b), PATIENCE).await.unwrap();
    assert_eq!(pong.len(), 1, "node-b got the ping on its topic");
    // A marker on the broadcast topic, which node-a may read: the broker
    // delivers in order, so anything from node-b's topic would come first.
    let marker = Message::Log(NodeLog {
        node_id: "marker".into(),
        level: "info".into(),
        message: "end of test".into(),
    });
    link.send(None, &marker).await.unwrap();
    loop {
        let delivery = tokio::time::timeout(PATIENCE, heard.recv())
            .await
            .expect("the marker arrives")
            .expect("connection open");
        assert_ne!(
            delivery.topic,
            topics::node("node-b"),
            "node-a read node-b's topic"
        );
        if crate::support::body_of(&delivery.payload) == Some(marker.clone()) {
            break;
        }
    }
    snoop.disconnect().await;

    // Wrong credentials: the node is refused, says so, and exits with an error.
    let mut intruder = fed.node(
        "node-c",
        &fed.shard("c.csv", 0..10),
        "#bc,#c",
        with_password("guess"),
    );
    intruder.start();
    let (status, log) = intruder.wait_exit();
    assert!(!status.success());
    assert!(
        log.contains("refused client `node-c`: not authorised (a wrong username or password"),
        "{log}"
    );
    // The others did not notice.
    wait_for_nodes(&mut link, &["node-a", "node-b"]).await;
    link.disconnect().await;
}

/// A throwaway certificate authority and a server certificate for 127.0.0.1.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=fedwasm test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_brokers_are_reached_with_the_configured_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let d = dir.path().display();
    let broker = start_mosquitto(
        dir.path(),
        &[("researcher", "r-secret"), ("node-a", "a-secret")],
        &format!("cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"),
    );
    assert!(broker.url.starts_with("mqtts://"));
    let mut researcher = credentials(&broker.url, "researcher", "r-secret");
    researcher.ca_file = Some(dir.path().join("ca.crt"));
    let fed = Federation::start(researcher).await;
    let ca = dir.path().join("ca.crt");
    let mut node = fed.node("node-a", &fed.shard("a.csv", 0..50), "#bc", |c| {
        c.broker.username = Some("node-a".into());
        c.broker.password = Some("a-secret".into());
        c.broker.ca_file = Some(ca.clone());
    });
    node.start();
    let mut link = fed.researcher("researcher").await;
    wait_for_nodes(&mut link, &["node-a"]).await;
    link.disconnect().await;

    // Without our CA the broker's certificate does not verify: a TLS error, at once.
    let untrusted = MqttClient::connect(
        &credentials(&broker.url, "researcher", "r-secret"),
        Session {
            client_id: "no-ca".into(),
            subscriptions: vec![],
            last_will: None,
            announce: None,
            identity: crate::support::stray_identity(),
        },
    )
    .await;
    let err = untrusted.expect_err("an unknown CA is refused").to_string();
    assert!(err.starts_with("TLS: ") && err.contains("ca_file"), "{err}");
}

/// With the README's ACL, a researcher reads its own replies and nobody
/// else's: replies travel on per-researcher topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_researcher_cannot_read_another_researchers_replies() {
    let dir = tempfile::tempdir().unwrap();
    let users = [("alice", "a-pass"), ("bob", "b-pass"), ("node-a", "n-pass")];
    let broker = start_mosquitto(dir.path(), &users, "");
    let fed = Federation::start(credentials(&broker.url, "alice", "a-pass")).await;
    let mut node = fed.node("node-a", &fed.shard("a.csv", 0..50), "#bc", |c| {
        c.broker.username = Some("node-a".into());
        c.broker.password = Some("n-pass".into());
        c.broker.connect_attempts = 3;
    });
    node.start();
    let mut alice = fed.researcher("alice").await;
    wait_for_nodes(&mut alice, &["node-a"]).await;

    // Bob listens to Alice's topics and to his own.
    let bob_broker = credentials(&broker.url, "bob", "b-pass");
    let (snoop, mut heard) = MqttClient::connect(
        &bob_broker,
        Session {
            client_id: "bob-snoop".into(),
            subscriptions: vec![topics::researcher("alice"), topics::researcher("bob")],
            last_will: None,
            announce: None,
            identity: crate::support::stray_identity(),
        },
    )
    .await
    .unwrap();
    let only_a = BTreeSet::from(["node-a".to_string()]);
    let listed = alice.list(Some(&only_a), PATIENCE).await.unwrap();
    assert_eq!(listed.len(), 1, "alice gets her own reply");
    // Then Bob asks the node something; the node answers Alice first, so
    // anything of hers that reached Bob would arrive before his own answer.
    let mut bob = fedwasm::researcher::NodeLink::connect(&bob_broker, &fed.keys.researcher("bob"))
        .await
        .unwrap();
    bob.send(
        Some("node-a"),
        &Message::Ping(Ping {
            researcher_id: "bob".into(),
            sequence: 1,
        }),
    )
    .await
    .unwrap();
    loop {
        let delivery = tokio::time::timeout(PATIENCE, heard.recv())
            .await
            .expect("bob's own pong arrives")
            .expect("connection open");
        assert!(
            !delivery.topic.contains("/alice/"),
            "bob read alice's {}",
            delivery.topic
        );
        if matches!(
            crate::support::body_of(&delivery.payload),
            Some(Message::Pong(Pong { ref researcher_id, .. })) if researcher_id == "bob"
        ) {
            break;
        }
    }
    snoop.disconnect().await;
    bob.disconnect().await;
    alice.disconnect().await;
}
