//! Nodes as real `fedwasm node start` processes, a real broker and the real
//! file repository, driven from the researcher side by a [`NodeLink`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fedwasm::digest::Sha256Digest;
use fedwasm::identity::{Credentials, PublicKey, Role, Roster, node_roster_file};
use fedwasm::node::NodeConfig;
use fedwasm::repository::RepositoryLink;
use fedwasm::repository::{RepositoryClient, RepositoryConfig, serve};
use fedwasm::researcher::{Experiment, ExperimentSettings, NodeLink, Reply, RepositorySetting};
use fedwasm::sandbox::random::StreamSeed;
use fedwasm::sandbox::{Sandbox, SandboxConfig};
use fedwasm::transport::BrokerConfig;
use fedwasm::wire::{
    BlobRef, ErrorCode, ErrorMessage, Message, PROTOCOL_VERSION, PlanApprovalRequest, PlanStatus,
    PlanStatusReply, PlanStatusRequest, Pong, Scalar, TrainReply, TrainRequest,
};
use fedwasm::{LocalFederation, LocalFederationConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::{data, example_plan, fedwasm_bin};

/// Safety net for anything that waits on the network; never reached when things work.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A `fedwasm node start` child process, killed when dropped.
pub struct NodeProcess {
    pub dir: PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    /// Start (or restart) the daemon; its output goes to `<dir>/node.log`.
    pub fn start(&mut self) {
        let child = crate::support::spawn_logged(
            Command::new(fedwasm_bin())
                .args(["node", "start", "--dir"])
                .arg(&self.dir),
            &self.dir.join("node.log"),
        );
        self.child = Some(child);
    }

    /// SIGKILL: no goodbye, no cleanup.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        crate::support::terminate(self.child.take().expect("running"))
    }

    /// Wait for the process to end by itself, returning its status and log.
    pub fn wait_exit(&mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, self.log());
            }
            assert!(started.elapsed() < PATIENCE, "node did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the node printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Run an operator command (`fedwasm node …`) on this node's folder.
    pub fn operator(&self, args: &[&str]) -> String {
        self.on_folder("node", args)
    }

    /// `fedwasm roster ARGS --dir <node folder>`: the operator's roster
    /// commands.
    pub fn operator_roster(&self, args: &[&str]) -> String {
        self.on_folder("roster", args)
    }

    /// `fedwasm COMMAND ARGS --dir <node folder>`'s output; panics with its
    /// error when it fails.
    fn on_folder(&self, command: &str, args: &[&str]) -> String {
        let out = Command::new(fedwasm_bin())
            .arg(command)
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what its nodes said (the end of each log).
        if std::thread::panicking() {
            let log = self.log();
            let mut start = log.len().saturating_sub(4000);
            while !log.is_char_boundary(start) {
                start += 1;
            }
            eprintln!(
                "--- end of {}'s log ---\n{}",
                self.dir.display(),
                &log[start..]
            );
        }
    }
}

/// The keys of one test's parties, exchanged as operators would: every
/// node's key pinned in the researchers' roster, every researcher's key
/// pinned in every node's roster (nodes re-read it while running).
pub struct TestKeys {
    dir: PathBuf,
    nodes: std::sync::Mutex<Vec<PathBuf>>,
    researchers: std::sync::Mutex<Vec<(String, PublicKey)>>,
}

/// The researcher id of [`Federation::settings_in`]'s experiments.
pub const EXPERIMENTER: &str = "experimenter";

impl TestKeys {
    fn new(dir: PathBuf) -> TestKeys {
        TestKeys {
            dir,
            nodes: Default::default(),
            researchers: Default::default(),
        }
    }

    /// The roster the researchers read: every node's key.
    pub fn roster(&self) -> PathBuf {
        self.dir.join("roster.toml")
    }

    /// The key file of researcher `id`.
    pub fn key_file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.key"))
    }

    /// Pin the node in `node_dir` for the researchers, and every researcher
    /// so far in its roster.
    pub fn node_made(&self, node_dir: &Path) {
        let config = NodeConfig::load(node_dir).unwrap();
        let key = config.credentials(node_dir).unwrap().identity.public();
        let mut roster = Roster::load(&self.roster()).unwrap();
        roster.pin(Role::Node, &config.id, key).unwrap();
        roster.save(&self.roster()).unwrap();
        let mut served = Roster::load(&node_roster_file(node_dir)).unwrap();
        for (id, key) in self.researchers.lock().unwrap().iter() {
            served.pin(Role::Researcher, id, *key).unwrap();
        }
        served.save(&node_roster_file(node_dir)).unwrap();
        self.nodes.lock().unwrap().push(node_dir.to_path_buf());
    }

    /// Pin `key` as node `id`'s in the researchers' roster (a node made
    /// without `node init`: a bare MQTT client with a key of its own).
    pub fn pin_node(&self, id: &str, key: PublicKey) {
        let mut roster = Roster::load(&self.roster()).unwrap();
        roster.pin(Role::Node, id, key).unwrap();
        roster.save(&self.roster()).unwrap();
    }

    /// Researcher `id`'s credentials (its key made on first use), pinned in
    /// every node's roster.
    pub fn researcher(&self, id: &str) -> Credentials {
        let credentials =
            Credentials::researcher(Some(&self.key_file(id)), Some(&self.roster()), Some(id))
                .unwrap();
        let key = credentials.identity.public();
        for node in self.nodes.lock().unwrap().iter() {
            let path = node_roster_file(node);
            let mut roster = Roster::load(&path).unwrap();
            roster.pin(Role::Researcher, id, key).unwrap();
            roster.save(&path).unwrap();
        }
        self.researchers.lock().unwrap().push((id.to_string(), key));
        credentials
    }
}

/// Broker, repository and node folders of one test.
pub struct Federation {
    pub tmp: tempfile::TempDir,
    /// Every party's keys.
    pub keys: TestKeys,
    /// How the researcher reaches the broker.
    pub broker: BrokerConfig,
    pub repository: RepositoryClient,
    repository_url: String,
    /// Broker and repository in this process: a [`LocalFederation`] whose
    /// nodes are the test's own processes.
    _local: Option<LocalFederation>,
    /// Or the repository only, beside an external broker.
    _stop_repository: Option<oneshot::Sender<()>>,
}

impl Federation {
    /// Start the repository in this runtime; `broker` is where nodes and researcher connect.
    pub async fn start(broker: BrokerConfig) -> Federation {
        let tmp = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let repository_url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            RepositoryConfig::new(tmp.path().join("repository")),
            async {
                let _ = stopped.await;
            },
        ));
        Federation {
            repository: RepositoryClient::new(&repository_url, None),
            repository_url,
            broker,
            keys: TestKeys::new(tmp.path().join("keys")),
            tmp,
            _local: None,
            _stop_repository: Some(stop),
        }
    }

    /// The repository's base URL.
    pub fn repository_url(&self) -> &str {
        &self.repository_url
    }

    /// With the in-process broker and repository of a [`LocalFederation`]
    /// without nodes of its own.
    pub async fn embedded() -> Federation {
        let tmp = tempfile::tempdir().unwrap();
        let config =
            LocalFederationConfig::new(tmp.path().to_path_buf(), Vec::new(), fedwasm_bin());
        let local = LocalFederation::start(config).await.unwrap();
        Federation {
            repository: RepositoryClient::new(local.repository_url(), None),
            repository_url: local.repository_url().to_string(),
            broker: local.broker(),
            keys: TestKeys::new(tmp.path().join("keys")),
            tmp,
            _local: Some(local),
            _stop_repository: None,
        }
    }

    /// A node folder with `csv` registered under `tags` (target `diagnosis`);
    /// `configure` may change its node.toml (credentials, limits).
    pub fn node(
        &self,
        id: &str,
        csv: &Path,
        tags: &str,
        configure: impl FnOnce(&mut NodeConfig),
    ) -> NodeProcess {
        self.node_with(id, csv, tags, &[], configure)
    }

    /// [`Federation::node`] with `extra` arguments for `node dataset add`.
    pub fn node_with(
        &self,
        id: &str,
        csv: &Path,
        tags: &str,
        extra: &[&str],
        configure: impl FnOnce(&mut NodeConfig),
    ) -> NodeProcess {
        let node = self.init_node(id, configure);
        let mut add = vec![
            "dataset",
            "add",
            "--path",
            csv.to_str().unwrap(),
            "--tags",
            tags,
            "--name",
            id,
            "--target",
            "diagnosis",
        ];
        add.extend(extra);
        node.operator(&add);
        node
    }

    /// A node folder holding the image folder `images` under `tags`.
    pub fn image_node(&self, id: &str, images: &Path, tags: &str) -> NodeProcess {
        self.images_node(id, images, tags, &[])
    }

    /// Default experiment settings pointed at this federation's broker and
    /// repository, writing into `dir`, waiting up to 20 s for search replies.
    pub fn settings_in(&self, dir: &Path) -> ExperimentSettings {
        self.keys.researcher(EXPERIMENTER);
        ExperimentSettings {
            researcher_id: Some(EXPERIMENTER.into()),
            identity_file: Some(self.keys.key_file(EXPERIMENTER)),
            roster_file: Some(self.keys.roster()),
            experiments_dir: Some(dir.to_path_buf()),
            broker: self.broker.clone(),
            repository: RepositorySetting::Remote(RepositoryLink::new(self.repository_url(), None)),
            search_wait_secs: 20.0,
            ..ExperimentSettings::default()
        }
    }

    /// The annotated example file `examples/<name>`, its plan, experiments
    /// folder, broker and repository pointed at this federation.
    pub fn example_settings(&self, name: &str, plan: &Path, dir: &Path) -> ExperimentSettings {
        let path = crate::support::root().join("examples").join(name);
        let example: ExperimentSettings =
            toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let here = self.settings_in(dir);
        ExperimentSettings {
            training_plan: Some(plan.to_path_buf()),
            experiments_dir: here.experiments_dir,
            researcher_id: here.researcher_id,
            identity_file: here.identity_file,
            roster_file: here.roster_file,
            broker: here.broker,
            repository: here.repository,
            search_wait_secs: here.search_wait_secs,
            ..example
        }
    }

    /// A node holding the CSV image manifest `manifest` whose `image`
    /// column lists images and `mask` column their masks (segmentation).
    pub fn mask_node(&self, id: &str, manifest: &Path, tags: &str) -> NodeProcess {
        let columns = ["--image-column", "image", "--mask-column", "mask"];
        self.images_node(id, manifest, tags, &columns)
    }

    /// A node folder holding the images at `path` (a folder, or a manifest
    /// described by `extra` arguments of `node dataset add`) under `tags`.
    pub fn images_node(&self, id: &str, path: &Path, tags: &str, extra: &[&str]) -> NodeProcess {
        let node = self.init_node(id, |_| {});
        let mut args = vec![
            "dataset",
            "add",
            "--kind",
            "images",
            "--path",
            path.to_str().unwrap(),
            "--tags",
            tags,
            "--name",
            id,
        ];
        args.extend_from_slice(extra);
        node.operator(&args);
        node
    }

    /// `fedwasm node init` in a folder named `id`, then `configure` on its
    /// node.toml.
    fn init_node(&self, id: &str, configure: impl FnOnce(&mut NodeConfig)) -> NodeProcess {
        let dir = self.tmp.path().join(id);
        let out = Command::new(fedwasm_bin())
            .args(["node", "init", "--id", id, "--dir"])
            .arg(&dir)
            .args([
                "--broker",
                &self.broker.url,
                "--repository",
                &self.repository_url,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut config = NodeConfig::load(&dir).unwrap();
        configure(&mut config);
        std::fs::write(NodeConfig::path(&dir), toml::to_string(&config).unwrap()).unwrap();
        self.keys.node_made(&dir);
        NodeProcess { dir, child: None }
    }

    /// Two started nodes, `node-a` and `node-b`, with breast-cancer shards of
    /// 250 and 319 rows tagged `#bc`, the LR plan approved, both answering.
    pub async fn two_nodes(&self) -> (NodeProcess, NodeProcess) {
        let plan = example_plan("logistic-regression");
        let mut a = self.node("node-a", &self.shard("a.csv", 0..250), "#bc,#a", |_| {});
        let mut b = self.node("node-b", &self.shard("b.csv", 250..569), "#bc,#b", |_| {});
        for n in [&a, &b] {
            n.operator(&["plan", "approve", plan.to_str().unwrap()]);
        }
        a.start();
        b.start();
        let mut link = self.researcher("waiter").await;
        wait_for_nodes(&mut link, &["node-a", "node-b"]).await;
        link.disconnect().await;
        (a, b)
    }

    /// Rows `rows` of the breast-cancer data as a CSV of its own.
    pub fn shard(&self, name: &str, rows: std::ops::Range<usize>) -> PathBuf {
        let text = std::fs::read_to_string(data("breast_cancer.csv")).unwrap();
        let mut lines = text.lines();
        let mut out = format!("{}\n", lines.next().unwrap());
        for line in lines.skip(rows.start).take(rows.len()) {
            out.push_str(line);
            out.push('\n');
        }
        let path = self.tmp.path().join(name);
        std::fs::write(&path, out).unwrap();
        path
    }

    /// Connect a researcher.
    pub async fn researcher(&self, id: &str) -> NodeLink {
        NodeLink::connect(&self.broker, &self.keys.researcher(id))
            .await
            .unwrap()
    }

    /// Upload a plan component and the initial parameters for `model_args`.
    pub async fn upload_plan(&self, plan: &Path, model_args: &Value) -> (BlobRef, BlobRef) {
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        let loaded = sandbox.load_file(plan).unwrap();
        let mut instance = sandbox.instantiate(&loaded, &StreamSeed([0; 32])).unwrap();
        instance.init_model(&model_args.to_string()).unwrap();
        let parameters = instance.get_parameters().unwrap();
        let bytes = fedwasm::tensors::to_bytes(&parameters, &BTreeMap::new()).unwrap();
        let plan_blob = self.repository.upload_file(plan).await.unwrap();
        let params_blob = self.repository.upload_bytes(bytes).await.unwrap();
        (plan_blob, params_blob)
    }
}

/// Ping until every node of `ids` answers (a node that is still connecting
/// misses a ping, so ask again).
pub async fn wait_for_nodes(link: &mut NodeLink, ids: &[&str]) {
    let expected: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    let started = Instant::now();
    loop {
        let replies = link
            .ping(Some(&expected), Duration::from_millis(500))
            .await
            .unwrap();
        if replies.len() == expected.len() {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "nodes {expected:?} did not answer; answered: {:?}",
            replies.keys()
        );
    }
}

/// A tensor's name, shape and the bits of its values.
pub type Bits = (String, Vec<u32>, Vec<u32>);

/// Every round's global parameters as (name, shape, bits): the tensors,
/// not the files, whose metadata names the experiment.
pub fn global_bits(exp: &Experiment) -> Vec<Vec<Bits>> {
    exp.aggregated_params()
        .into_values()
        .map(|path| {
            let (tensors, _) = fedwasm::tensors::read_file(&path).unwrap();
            tensors
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        t.shape,
                        t.data.iter().map(|v| v.to_bits()).collect(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Ping `node` until it says it is busy training.
pub async fn wait_until_busy(link: &mut NodeLink, node: &str) {
    let nodes = BTreeSet::from([node.to_string()]);
    let started = Instant::now();
    loop {
        let pongs = link
            .ping(Some(&nodes), Duration::from_millis(500))
            .await
            .unwrap();
        if let Some(Reply::Answer(Message::Pong(Pong { busy: true, .. }))) = pongs.get(node) {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "{node} never became busy");
    }
}

/// The LR model arguments for the breast-cancer data.
pub fn lr_args() -> Value {
    json!({"n_features": 30, "n_classes": 2})
}

/// Send a train request to `node` and wait for its answer.
pub async fn train(
    link: &mut NodeLink,
    node: &str,
    dataset_id: &str,
    plan: &BlobRef,
    params: &BlobRef,
    training_args: Value,
) -> Reply {
    let request_id = send_train(link, node, dataset_id, plan, params, training_args).await;
    let expected = BTreeSet::from([node.to_string()]);
    let mut replies = link.gather(&request_id, Some(&expected), PATIENCE).await;
    replies
        .remove(node)
        .unwrap_or_else(|| panic!("no answer from {node} to {request_id}"))
}

/// Send a train request for the LR plan to `node`; returns its request id.
pub async fn send_train(
    link: &mut NodeLink,
    node: &str,
    dataset_id: &str,
    plan: &BlobRef,
    params: &BlobRef,
    training_args: Value,
) -> String {
    let (request_id, request) =
        train_request(link, dataset_id, plan, params, lr_args(), training_args);
    link.send(Some(node), &request).await.unwrap();
    request_id
}

/// A round-1 train request of `Experiment_0001` from `link`, and its id.
pub fn train_request(
    link: &mut NodeLink,
    dataset_id: &str,
    plan: &BlobRef,
    params: &BlobRef,
    model_args: Value,
    training_args: Value,
) -> (String, Message) {
    let request_id = link.request_id();
    let request = Message::TrainRequest(TrainRequest {
        researcher_id: link.researcher_id().into(),
        experiment_id: "Experiment_0001".into(),
        request_id: request_id.clone(),
        round: 1,
        dataset_id: dataset_id.into(),
        plan: plan.clone(),
        params: params.clone(),
        gradient_correction: None,
        model_args,
        training_args,
        seed: 7,
        training: true,
    });
    (request_id, request)
}

/// The code and text of an error reply; panics on anything else.
pub fn error_of(reply: &Reply) -> (ErrorCode, String) {
    match reply {
        Reply::Error(Message::Error(ErrorMessage { code, message, .. })) => {
            (*code, message.clone())
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The id of the only dataset `node` lists.
pub async fn only_dataset(link: &mut NodeLink, node: &str) -> String {
    let nodes = BTreeSet::from([node.to_string()]);
    let listed = link.list(Some(&nodes), PATIENCE).await.unwrap();
    let datasets = listed[node].as_ref().unwrap();
    assert_eq!(datasets.len(), 1);
    datasets[0].dataset_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_answer_ping_list_search_and_train_over_the_embedded_broker() {
    let fed = Federation::embedded().await;
    let plan = example_plan("logistic-regression");
    let plan_hash = Sha256Digest::of_file(&plan).unwrap().to_hex();
    let mut a = fed.node("node-a", &fed.shard("a.csv", 0..300), "#bc,#site-a", |_| {});
    let mut b = fed.node(
        "node-b",
        &fed.shard("b.csv", 300..569),
        "#bc,#site-b",
        |_| {},
    );
    for node in [&a, &b] {
        node.operator(&["plan", "approve", &plan_hash]);
    }
    a.start();
    b.start();
    let mut link = fed.researcher("researcher-1").await;
    wait_for_nodes(&mut link, &["node-a", "node-b"]).await;

    let all = link.list(None, Duration::from_millis(500)).await.unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["node-a", "node-b"]);
    let a_set = all["node-a"].as_ref().unwrap();
    assert_eq!(
        (a_set.len(), a_set[0].shape.as_slice()),
        (1, [300, 31].as_slice())
    );

    let both = BTreeSet::from(["node-a".to_string(), "node-b".to_string()]);
    let found = link
        .search(&["#bc".into()], Some(&both), PATIENCE)
        .await
        .unwrap();
    assert!(found.values().all(|d| d.as_ref().unwrap().len() == 1));
    let found = link
        .search(&["#bc".into(), "#site-b".into()], Some(&both), PATIENCE)
        .await
        .unwrap();
    assert!(found["node-a"].as_ref().unwrap().is_empty());
    assert_eq!(
        found["node-b"].as_ref().unwrap()[0].tags,
        ["#bc", "#site-b"]
    );
    assert!(
        found["node-b"].as_ref().unwrap()[0].target.as_deref() == Some("diagnosis"),
        "the summary says the target, never the path"
    );

    let (plan_blob, params) = fed.upload_plan(&plan, &lr_args()).await;
    let args = json!({"num_updates": 40, "log_interval": 10, "optimizer_args": {"lr": 0.1}});
    for (node, rows) in [("node-a", 300), ("node-b", 269)] {
        let dataset = only_dataset(&mut link, node).await;
        let reply = train(&mut link, node, &dataset, &plan_blob, &params, args.clone()).await;
        let Reply::Answer(Message::TrainReply(TrainReply {
            params: trained,
            training_samples,
            updates,
            node_id,
            ..
        })) = reply
        else {
            panic!("{node}: {reply:?}");
        };
        assert_eq!(
            (node_id.as_str(), training_samples, updates),
            (node, rows, 40)
        );
        assert_ne!(
            trained.sha256, params.sha256,
            "training changed the parameters"
        );
        let local = fed.tmp.path().join(format!("{node}.safetensors"));
        fed.repository
            .download(&trained, &local, 1 << 30)
            .await
            .unwrap();
        let (tensors, metadata) = fedwasm::tensors::read_file(&local).unwrap();
        assert_eq!(Sha256Digest::of_file(&local).unwrap(), trained.sha256);
        assert_eq!(metadata["node_id"], node);
        assert_eq!(metadata["experiment_id"], "Experiment_0001");
        assert_eq!(metadata["round"], "1");
        assert_eq!(metadata["plan_sha256"], plan_hash);
        assert!(tensors.iter().all(|t| t.data.iter().all(|v| v.is_finite())));
    }
    // Monitoring: loss scalars every log_interval, for each node.
    let mut scalars = BTreeMap::<String, Vec<u64>>::new();
    let until = Instant::now() + PATIENCE;
    while scalars.values().map(Vec::len).sum::<usize>() < 8 {
        match link.next_message(until).await {
            Some(Message::Scalar(Scalar {
                node_id,
                iteration,
                values,
                ..
            })) => {
                assert!(values["loss"].is_finite());
                scalars.entry(node_id).or_default().push(iteration);
            }
            Some(_) => {}
            None => panic!("missing scalars; got {scalars:?}"),
        }
    }
    assert_eq!(scalars["node-a"], [10, 20, 30, 40]);
    assert_eq!(scalars["node-b"], [10, 20, 30, 40]);

    // SIGTERM: the node says goodbye and exits cleanly.
    assert!(b.terminate().success(), "{}", b.log());
    let until = Instant::now() + PATIENCE;
    while !link
        .online_nodes()
        .eq(&BTreeSet::from(["node-a".to_string()]))
    {
        assert!(
            link.next_message(until).await.is_some(),
            "no offline status"
        );
    }
    link.disconnect().await;
}

/// `node-a` with the whole breast-cancer data and the LR plan approved,
/// started and answering; a researcher link, the dataset id, and the
/// uploaded plan and initial parameters.
async fn one_node(fed: &Federation) -> (NodeProcess, NodeLink, String, BlobRef, BlobRef) {
    let plan = example_plan("logistic-regression");
    let mut node = fed.node("node-a", &data("breast_cancer.csv"), "#bc", |_| {});
    node.operator(&["plan", "approve", plan.to_str().unwrap()]);
    node.start();
    let mut link = fed.researcher("researcher-1").await;
    wait_for_nodes(&mut link, &["node-a"]).await;
    let dataset = only_dataset(&mut link, "node-a").await;
    let (plan_blob, params) = fed.upload_plan(&plan, &lr_args()).await;
    (node, link, dataset, plan_blob, params)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_the_node_keeps_answering() {
    let fed = Federation::embedded().await;
    let (node, mut link, dataset, plan_blob, params) = one_node(&fed).await;
    let good_args = json!({"num_updates": 2});

    // Messages no well-behaved researcher sends: answered by request id when it can be read.
    let raw = [
        (
            r##"{"command": "search_request", "request_id": "r1", "tags": ["#bc"]"##.to_string(),
            ErrorCode::MalformedMessage,
            "malformed message",
        ),
        (
            format!(r#"{{"command": "dance", "protocol_version": "{PROTOCOL_VERSION}", "researcher_id": "researcher-1", "request_id": "r2"}}"#),
            ErrorCode::UnknownCommand,
            "unknown command `dance`",
        ),
        (
            r#"{"command": "ping", "protocol_version": "1.0", "researcher_id": "researcher-1", "sequence": 1, "request_id": "r3"}"#
                .to_string(),
            ErrorCode::ProtocolVersion,
            "protocol version",
        ),
        (
            format!(r#"{{"command": "list_request", "protocol_version": "{PROTOCOL_VERSION}", "researcher_id": "researcher-1", "request_id": "r4", "colour": "red"}}"#),
            ErrorCode::MalformedMessage,
            "unknown field `colour`",
        ),
    ];
    for (payload, code, text) in raw {
        link.send_body("node-a", &payload).await.unwrap();
        let until = Instant::now() + PATIENCE;
        let error = loop {
            match link.next_message(until).await {
                Some(Message::Error(ErrorMessage { code, message, .. })) => break (code, message),
                Some(_) => {}
                None => panic!("no error reply for {text}"),
            }
        };
        assert_eq!(error.0, code, "{}", error.1);
        assert!(error.1.contains(text), "{}", error.1);
        wait_for_nodes(&mut link, &["node-a"]).await;
    }

    // Train requests that cannot run.
    let other_plan = example_plan("linear-regression");
    let other_hash = Sha256Digest::of_file(&other_plan).unwrap();
    let other_blob = fed.repository.upload_file(&other_plan).await.unwrap();
    // The right digest with a wrong size: the body runs past what was announced.
    let tampered = BlobRef {
        size: params.size - 1,
        ..params.clone()
    };
    let cases: [(&str, &BlobRef, &BlobRef, Value, ErrorCode, String); 4] = [
        (
            "dataset-nope",
            &plan_blob,
            &params,
            good_args.clone(),
            ErrorCode::UnknownDataset,
            "no dataset `dataset-nope`".into(),
        ),
        (
            &dataset,
            &other_blob,
            &params,
            good_args.clone(),
            ErrorCode::PlanNotApproved,
            format!("fedwasm node plan approve --dir <node folder> {other_hash}"),
        ),
        (
            &dataset,
            &plan_blob,
            &tampered,
            good_args.clone(),
            ErrorCode::HashMismatch,
            "does not have the announced size and SHA-256".into(),
        ),
        (
            &dataset,
            &plan_blob,
            &params,
            json!({"num_updates": "many"}),
            ErrorCode::BadTrainingArgs,
            "invalid type: string \"many\"".into(),
        ),
    ];
    for (dataset, plan, params, args, code, text) in cases {
        let reply = train(&mut link, "node-a", dataset, plan, params, args).await;
        let (got, message) = error_of(&reply);
        assert_eq!(got, code, "{message}");
        assert!(message.contains(&text), "{message}");
        wait_for_nodes(&mut link, &["node-a"]).await;
    }
    // The unapproved plan is waiting for the operator.
    let plans = node.operator(&["plan", "list"]);
    assert!(plans.contains(&format!("{other_hash}  Pending")), "{plans}");
    // The researcher can ask about a plan, and ask for its approval.
    for (request, expected) in [
        (
            Message::PlanStatusRequest(PlanStatusRequest {
                researcher_id: "researcher-1".into(),
                request_id: "status-1".into(),
                plan_sha256: other_hash,
            }),
            PlanStatus::Pending,
        ),
        (
            Message::PlanApprovalRequest(PlanApprovalRequest {
                researcher_id: "researcher-1".into(),
                request_id: "approval-1".into(),
                plan: plan_blob.clone(),
                description: "the approved one".into(),
            }),
            PlanStatus::Approved,
        ),
    ] {
        link.send(Some("node-a"), &request).await.unwrap();
        let id = match &request {
            Message::PlanStatusRequest(PlanStatusRequest { request_id, .. })
            | Message::PlanApprovalRequest(PlanApprovalRequest { request_id, .. }) => {
                request_id.clone()
            }
            _ => unreachable!(),
        };
        let only = BTreeSet::from(["node-a".to_string()]);
        let reply = link.gather(&id, Some(&only), PATIENCE).await;
        assert!(
            matches!(
                reply["node-a"].message(),
                Message::PlanStatusReply(PlanStatusReply { status, approval_required: true, .. }) if *status == expected
            ),
            "{reply:?}"
        );
    }

    // And after all that, a good request still trains.
    let reply = train(
        &mut link, "node-a", &dataset, &plan_blob, &params, good_args,
    )
    .await;
    assert!(
        matches!(reply, Reply::Answer(Message::TrainReply(TrainReply { .. }))),
        "{reply:?}"
    );
    link.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_training_restarts_with_its_datasets_and_approvals() {
    let fed = Federation::embedded().await;
    let (mut node, mut link, dataset, plan_blob, params) = one_node(&fed).await;

    // A long task: the node reports progress, then dies mid-way.
    send_train(
        &mut link,
        "node-a",
        &dataset,
        &plan_blob,
        &params,
        json!({"num_updates": 100_000_000, "log_interval": 100}),
    )
    .await;
    let until = Instant::now() + PATIENCE;
    loop {
        match link.next_message(until).await {
            Some(Message::Scalar(Scalar { .. })) => break,
            Some(_) => {}
            None => panic!("no progress from the long task: {}", node.log()),
        }
    }
    let busy = link
        .ping(Some(&BTreeSet::from(["node-a".to_string()])), PATIENCE)
        .await
        .unwrap();
    assert!(
        matches!(
            busy["node-a"],
            Reply::Answer(Message::Pong(Pong { busy: true, .. }))
        ),
        "ping is answered during training and says so: {busy:?}"
    );
    node.kill();
    // The broker publishes the last will.
    let until = Instant::now() + PATIENCE;
    while link.status_of("node-a") != Some(false) {
        assert!(link.next_message(until).await.is_some(), "no last will");
    }

    node.start();
    wait_for_nodes(&mut link, &["node-a"]).await;
    assert_eq!(only_dataset(&mut link, "node-a").await, dataset);
    let reply = train(
        &mut link,
        "node-a",
        &dataset,
        &plan_blob,
        &params,
        json!({"num_updates": 3}),
    )
    .await;
    assert!(
        matches!(
            reply,
            Reply::Answer(Message::TrainReply(TrainReply { updates: 3, .. }))
        ),
        "the approval survived: {reply:?}"
    );
    link.disconnect().await;
}

/// `fedwasm broker` as a process, killed when dropped.
struct BrokerProcess(Child);

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run the `fedwasm` binary; (success, stdout, stderr).
fn fedwasm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(fedwasm_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_a_broker_and_shows_nodes_and_datasets() {
    use std::io::BufRead;
    let mut child = Command::new(fedwasm_bin())
        .args(["broker", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _broker = BrokerProcess(child);
    let url = first
        .trim()
        .strip_prefix("MQTT broker listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();

    let fed = Federation::start(BrokerConfig::new(&url)).await;
    let mut node = fed.node("node-a", &fed.shard("a.csv", 0..120), "#bc,#site-a", |_| {});
    node.start();
    let mut link = fed.researcher("researcher-1").await;
    wait_for_nodes(&mut link, &["node-a"]).await;
    let dataset = only_dataset(&mut link, "node-a").await;
    link.disconnect().await;

    // The README's key exchange, by the CLI: the researcher's key into the
    // node's roster, the node's key into the researcher's.
    let key_file = fed.tmp.path().join("cli.key");
    let roster = fed.tmp.path().join("cli-roster.toml");
    let key_of = |args: &[&str]| -> String {
        let (ok, out, err) = fedwasm(args);
        assert!(ok, "{err}");
        let line = out.lines().find_map(|l| l.strip_prefix("key: ")).unwrap();
        line.to_string()
    };
    let mine = key_of(&[
        "roster",
        "whoami",
        "--identity",
        key_file.to_str().unwrap(),
        "--researcher-id",
        "cli-user",
    ]);
    node.operator_roster(&["add", "researcher", "cli-user", &mine]);
    let theirs = key_of(&["roster", "whoami", "--dir", node.dir.to_str().unwrap()]);
    let (ok, out, err) = fedwasm(&[
        "roster",
        "add",
        "--roster",
        roster.to_str().unwrap(),
        "node",
        "node-a",
        &theirs,
    ]);
    assert!(ok && out.starts_with("pinned node `node-a`"), "{out}{err}");
    let me = [
        "--identity",
        key_file.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
        "--researcher-id",
        "cli-user",
    ];

    let (ok, out, err) = fedwasm(
        &[
            &[
                "datasets", "--broker", &url, "--tags", "#bc", "--nodes", "node-a",
            ][..],
            &me[..],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    insta::assert_snapshot!(
        "datasets_table",
        out.replace(&dataset, "dataset-xxxxxxxxxxxx")
    );

    let (ok, out, err) = fedwasm(
        &[
            &[
                "ping",
                "--broker",
                &url,
                "--nodes",
                "node-a,node-z",
                "--wait",
                "1",
            ][..],
            &me[..],
        ]
        .concat(),
    );
    assert!(!ok, "a missing node is a failure");
    assert!(out.starts_with("NODE    STATE\nnode-a  idle\n"), "{out}");
    assert!(
        err.contains("no answer from: node-z; are those nodes started"),
        "{err}"
    );

    // A node whose broker is not there gives up with a message that says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut lost = fed.node("node-lost", &fed.shard("l.csv", 0..10), "#lost", |c| {
        c.broker.url = format!("mqtt://{closed}");
        c.broker.connect_attempts = 2;
    });
    lost.start();
    let (status, log) = lost.wait_exit();
    assert!(!status.success());
    assert!(
        log.contains(&format!(
            "cannot reach the broker at mqtt://{closed} after 2 attempts"
        )),
        "{log}"
    );
}
