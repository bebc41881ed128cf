//! A broker restarted in the middle of a round: the researcher sends what is
//! still unanswered again, the nodes answer a request they already ran from
//! memory, and the round completes with every node having trained once —
//! over fedwasm's own broker and over mosquitto, with and without its
//! persistence.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use fedwasm::researcher::{Experiment, ExperimentSettings, Tags};
use fedwasm::transport::BrokerConfig;
use serde_json::json;

use crate::federation::{Federation, PATIENCE, lr_args, wait_until_busy};
use crate::support::{example_plan, fedwasm_bin};

/// Which broker a test restarts.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `fedwasm broker`.
    Fedwasm,
    /// Debian's mosquitto, saving retained messages and sessions to disk
    /// when stopped, or not.
    Mosquitto { persistence: bool },
}

/// A broker process on a fixed port, stopped and started again by the test.
struct BrokerProcess {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl BrokerProcess {
    fn new(kind: Kind, dir: &Path) -> BrokerProcess {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut broker = BrokerProcess {
            kind,
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        broker.start();
        broker
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let mut command = match self.kind {
            Kind::Fedwasm => {
                let mut c = Command::new(fedwasm_bin());
                c.args(["broker", "--bind", &format!("127.0.0.1:{}", self.port)]);
                c
            }
            Kind::Mosquitto { persistence } => {
                let conf = self.dir.join("mosquitto.conf");
                let store = if persistence {
                    format!(
                        "persistence true\npersistence_location {}/\n",
                        self.dir.display()
                    )
                } else {
                    "persistence false\n".to_string()
                };
                std::fs::write(
                    &conf,
                    format!(
                        "listener {} 127.0.0.1\nallow_anonymous true\n{store}user root\nlog_dest stderr\n",
                        self.port
                    ),
                )
                .unwrap();
                let mut c = Command::new(crate::mosquitto::program("mosquitto"));
                c.arg("-c").arg(conf);
                c
            }
        };
        let child = crate::support::spawn_logged(&mut command, &self.dir.join("broker.log"));
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < PATIENCE, "the broker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (mosquitto then saves its persistence file) and wait.
    fn stop(&mut self) {
        crate::support::terminate(self.child.take().expect("running"));
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Times a node's log says it started training `round` of the experiment.
fn trainings(log: &str, round: u32) -> usize {
    log.matches(&format!("round {round} of Experiment_0001 for "))
        .count()
}

async fn a_round_survives_a_broker_restart(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::new(kind, dir.path());
    let fed = Federation::start(BrokerConfig {
        connect_attempts: 3,
        ..BrokerConfig::new(broker.url())
    })
    .await;
    let (a, b) = fed.two_nodes().await;
    let experiments = tempfile::tempdir().unwrap();
    let mut exp = Experiment::new(ExperimentSettings {
        tags: Some(Tags::One("#bc".into())),
        training_plan: Some(example_plan("logistic-regression")),
        model_args: lr_args().as_object().cloned().unwrap(),
        // Long enough that the broker goes away while the nodes train (the
        // restart takes about a second; these updates take seconds even on
        // a loaded CI machine), short enough that the round ends well within
        // PATIENCE with every other test running beside it.
        training_args: serde_json::from_value(json!({"num_updates": 20_000})).unwrap(),
        round_limit: Some(2),
        ..fed.settings_in(experiments.path())
    })
    .await
    .unwrap();
    let mut observer = fed.researcher("observer").await;
    // The broker goes away while node-a trains: its reply, and node-b's
    // request or reply, may be lost with it.
    let restart = async {
        wait_until_busy(&mut observer, "node-a").await;
        tokio::task::block_in_place(|| {
            broker.stop();
            broker.start();
        });
    };
    let (done, ()) = tokio::time::timeout(PATIENCE, async {
        tokio::join!(exp.run_once(false), restart)
    })
    .await
    .expect("the round completes after the restart");
    assert_eq!(done.unwrap(), 1, "{kind:?}");
    assert_eq!(exp.history().rounds[0].nodes.len(), 2);
    for node in [&a, &b] {
        assert_eq!(trainings(&node.log(), 1), 1, "{kind:?}: {}", node.log());
    }
    exp.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_survives_a_restart_of_the_embedded_broker() {
    a_round_survives_a_broker_restart(Kind::Fedwasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_survives_a_restart_of_mosquitto_without_persistence() {
    a_round_survives_a_broker_restart(Kind::Mosquitto { persistence: false }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_survives_a_restart_of_mosquitto_with_persistence() {
    a_round_survives_a_broker_restart(Kind::Mosquitto { persistence: true }).await;
}

/// What a broker restart does to a request, made deterministic: a request
/// published while its node is not subscribed is dropped by the broker, as
/// one that had no persistence would. The link sends it again when the node
/// announces itself, and the node runs a request it already has only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_request_is_sent_again_and_a_repeated_one_runs_once() {
    use crate::federation::{only_dataset, train_request, wait_for_nodes};
    use fedwasm::researcher::Reply;
    use fedwasm::wire::{Message, TrainReply, TrainRequest};

    let fed = Federation::embedded().await;
    let plan = example_plan("logistic-regression");
    let mut node = fed.node("node-a", &fed.shard("a.csv", 0..200), "#late", |c| {
        c.require_approval = false;
    });
    node.start();
    let mut link = fed.researcher("researcher-1").await;
    wait_for_nodes(&mut link, &["node-a"]).await;
    let dataset = only_dataset(&mut link, "node-a").await;
    let (plan_blob, params) = fed.upload_plan(&plan, &lr_args()).await;
    let request = |link: &mut fedwasm::researcher::NodeLink| {
        let args = json!({"num_updates": 5});
        train_request(link, &dataset, &plan_blob, &params, lr_args(), args)
    };
    let nodes = std::collections::BTreeSet::from(["node-a".to_string()]);

    // Sent while the node is away: the broker drops it.
    node.terminate();
    let (lost, message) = request(&mut link);
    link.send_tracked("node-a", &lost, message).await.unwrap();
    node.start();
    let reply = link.gather(&lost, Some(&nodes), PATIENCE).await;
    let Some(Reply::Answer(Message::TrainReply(TrainReply { params: first, .. }))) =
        reply.get("node-a")
    else {
        panic!("the lost request was sent again and answered: {reply:?}");
    };
    let first = first.clone();

    // The same request again (a researcher that reconnected): answered from
    // memory, with the same parameters, without training again.
    let (_, again) = request(&mut link);
    let again = match again {
        Message::TrainRequest(TrainRequest { .. }) => {
            let mut value = serde_json::to_value(&again).unwrap();
            value["request_id"] = json!(lost);
            serde_json::from_value::<Message>(value).unwrap()
        }
        other => other,
    };
    link.send(Some("node-a"), &again).await.unwrap();
    let reply = link.gather(&lost, Some(&nodes), PATIENCE).await;
    let Some(Reply::Answer(Message::TrainReply(TrainReply { params: second, .. }))) =
        reply.get("node-a")
    else {
        panic!("{reply:?}");
    };
    assert_eq!(second, &first);
    assert_eq!(trainings(&node.log(), 1), 1, "{}", node.log());
    assert!(node.log().contains("answering again"), "{}", node.log());
    link.disconnect().await;
}

/// SIGTERM stops a node at once when its broker is gone (it used to wait
/// 11–45 s for a broker that would never take its goodbyes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_broker_down_stops_the_node_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::new(Kind::Fedwasm, dir.path());
    let fed = Federation::start(BrokerConfig::new(broker.url())).await;
    let (mut a, mut b) = fed.two_nodes().await;
    // Node b goes first, with the broker up: left running, it would go on
    // knocking at the freed port, which another test's broker may take.
    assert!(b.terminate().success());
    broker.stop();
    let started = Instant::now();
    let status = a.terminate();
    let took = started.elapsed();
    assert!(status.success(), "{}", a.log());
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}
