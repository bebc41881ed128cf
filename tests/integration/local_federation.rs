//! `LocalFederation`: broker, repository and in-process nodes on loopback,
//! as the demo and the benchmarks use it, trained on by a real `Experiment`
//! written only with the prelude, watched by an observer of its own.

use std::sync::{Arc, Mutex};

use fedwasm::prelude::*;
use serde_json::json;

use crate::federation::lr_args;
use crate::support::{data, example_plan, fedwasm_bin};

fn node(id: &str, tags: &[&str]) -> LocalNode {
    LocalNode {
        id: id.into(),
        datasets: vec![NewDataset {
            name: format!("{id} rows"),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            description: String::new(),
            path: data("breast_cancer.csv"),
            target: Some("diagnosis".into()),
            split_column: None,
            image_columns: None,
        }],
    }
}

/// Keeps a line per event it is told of.
struct Transcript(Arc<Mutex<Vec<String>>>);

impl RoundObserver for Transcript {
    fn observe(&mut self, event: &RoundEvent<'_>) -> Result<(), String> {
        let line = match event {
            RoundEvent::RoundStarted { round, nodes, .. } => format!("start {round} {nodes:?}"),
            RoundEvent::NodeTrained { node, .. } => format!("trained {node}"),
            RoundEvent::RoundDone { record, .. } => format!("done {}", record.round),
            RoundEvent::Closing => "closing".into(),
            _ => return Ok(()),
        };
        self.0.lock().unwrap().push(line);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_trains_on_a_local_federation_and_it_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = example_plan("logistic-regression");
    let mut config = LocalFederationConfig::new(
        tmp.path().join("federation"),
        vec![node("clinic-b", &["#bc"]), node("clinic-a", &["#bc"])],
        fedwasm_bin(),
    );
    config.approved_plans = vec![(Sha256Digest::of_file(&plan).unwrap(), None)];
    let federation = LocalFederation::start(config).await.unwrap();
    assert_eq!(federation.node_ids(), ["clinic-a", "clinic-b"]);
    let dir = federation.node_dir("clinic-a").unwrap();
    assert!(dir.join("node.toml").is_file(), "{}", dir.display());
    let datasets = federation.dataset_ids("clinic-a").unwrap().to_vec();
    assert_eq!(datasets.len(), 1);

    let mut experiment = Experiment::new(ExperimentSettings {
        tags: Some(Tags::One("#bc".into())),
        training_plan: Some(plan),
        model_args: lr_args().as_object().cloned().unwrap(),
        training_args: serde_json::from_value(json!({"num_updates": 3})).unwrap(),
        experiments_dir: Some(tmp.path().join("experiments")),
        search_wait_secs: 20.0,
        ..federation.experiment_settings()
    })
    .await
    .unwrap();
    let found = experiment.training_data().unwrap().clone();
    assert_eq!(found.node_ids(), ["clinic-a", "clinic-b"]);
    assert_eq!(found.dataset("clinic-a").unwrap().dataset_id, datasets[0]);
    let transcript = Arc::new(Mutex::new(Vec::new()));
    experiment.add_observer(Box::new(Transcript(transcript.clone())));
    assert_eq!(experiment.run(Some(2), false).await.unwrap(), 2);
    let rounds = &experiment.history().rounds;
    assert_eq!(rounds.len(), 2);
    assert!(
        rounds
            .iter()
            .all(|r| r.nodes.len() == 2 && r.dropped.is_empty())
    );
    experiment.close().await;
    federation.stop().await.unwrap();
    // Replies arrive in any order; each round tells both, then its end.
    let mut lines = transcript.lock().unwrap().clone();
    for round in lines.chunks_mut(4).take(2) {
        round[1..3].sort();
    }
    let start = |r| format!(r#"start {r} ["clinic-a", "clinic-b"]"#);
    assert_eq!(
        lines,
        [
            start(1),
            "trained clinic-a".into(),
            "trained clinic-b".into(),
            "done 1".into(),
            start(2),
            "trained clinic-a".into(),
            "trained clinic-b".into(),
            "done 2".into(),
            "closing".to_string(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_node_ids_are_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    for (ids, expected) in [
        (vec!["../escape"], "names the node's folder"),
        (vec!["a", "a"], "given twice"),
        (vec![""], "1 to 64 letters"),
    ] {
        let nodes = ids.iter().map(|id| node(id, &["#bc"])).collect();
        let config = LocalFederationConfig::new(tmp.path().join("f"), nodes, fedwasm_bin());
        let err = match LocalFederation::start(config).await {
            Ok(_) => panic!("{ids:?} accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expected), "{ids:?}: {err}");
    }
    assert!(!tmp.path().join("f").exists(), "nothing was created");
}

/// An image folder registered on a node is found by a search with its
/// classes and shape; a train request on it is answered with an error that
/// says why (plans read tables only under contract 0.1), and the node goes
/// on serving its tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_dataset_is_listed_and_trains_an_image_plan_and_refuses_a_tabular_one_by_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("scans");
    for (class, shade) in [("benign", 30u8), ("malignant", 200)] {
        std::fs::create_dir_all(images.join(class)).unwrap();
        for i in 0..3u8 {
            image::ImageBuffer::from_pixel(8, 8, image::Luma([shade + i]))
                .save(images.join(class).join(format!("scan-{i}.png")))
                .unwrap();
        }
    }
    let plan = example_plan("logistic-regression");
    let cnn = example_plan("cnn");
    let mut clinic = node("clinic", &["#bc"]);
    clinic.datasets.push(NewDataset {
        name: "scans".into(),
        tags: vec!["#scans".into()],
        description: "grayscale scans".into(),
        path: images,
        target: None,
        split_column: None,
        image_columns: None,
    });
    let mut config =
        LocalFederationConfig::new(tmp.path().join("federation"), vec![clinic], fedwasm_bin());
    config.approved_plans = vec![
        (Sha256Digest::of_file(&plan).unwrap(), None),
        (Sha256Digest::of_file(&cnn).unwrap(), None),
    ];
    let federation = LocalFederation::start(config).await.unwrap();
    let settings = |tag: &str| ExperimentSettings {
        tags: Some(Tags::One(tag.into())),
        training_plan: Some(plan.clone()),
        model_args: lr_args().as_object().cloned().unwrap(),
        training_args: serde_json::from_value(json!({"num_updates": 2})).unwrap(),
        experiments_dir: Some(tmp.path().join("experiments")),
        search_wait_secs: 20.0,
        ..federation.experiment_settings()
    };
    let mut experiment = Experiment::new(settings("#scans")).await.unwrap();
    let found = experiment
        .training_data()
        .unwrap()
        .dataset("clinic")
        .unwrap()
        .clone();
    assert_eq!(found.data_type, "images");
    assert_eq!(found.shape, [6, 1, 8, 8]);
    assert_eq!(found.classes, ["benign", "malignant"]);
    let err = experiment
        .run(Some(1), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the dataset holds images")
            && err.contains("data-spec.images is none")
            && err.contains("use an image plan"),
        "{err}"
    );
    experiment.close().await;
    // The cnn plan asks for 4×4 images of the 8×8 scans and trains on them.
    let mut images = Experiment::new(ExperimentSettings {
        training_plan: Some(cnn.clone()),
        model_args: json!({"input_shape": [1, 4, 4], "n_classes": 2, "channels": [4], "hidden": [8]})
            .as_object()
            .cloned()
            .unwrap(),
        training_args: serde_json::from_value(
            json!({"num_updates": 2, "loader_args": {"batch_size": 3}, "test_ratio": 0.34, "test_on_global_updates": true}),
        )
        .unwrap(),
        ..settings("#scans")
    })
    .await
    .unwrap();
    assert_eq!(images.run(Some(1), false).await.unwrap(), 1);
    let round = &images.history().rounds[0];
    assert_eq!(round.nodes[0].training_samples, 4);
    let score = round.nodes[0].validation_global.as_ref().expect("scored");
    assert_eq!(score.samples, 2);
    images.close().await;
    let mut tables = Experiment::new(settings("#bc")).await.unwrap();
    assert_eq!(tables.run(Some(1), false).await.unwrap(), 1);
    tables.close().await;
    federation.stop().await.unwrap();
}
