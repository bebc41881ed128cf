//! Validation on nodes and differential privacy, end to end: real nodes,
//! real plans, scores and ε in the history, TensorBoard files read back.

use fedwasm::researcher::tensorboard::{ScalarEvent, read_scalars};
use fedwasm::researcher::{Experiment, ExperimentSettings, Tags};
use serde_json::json;

use crate::experiment::settings;
use crate::federation::Federation;

/// Every scalar of `node` in the experiment's TensorBoard folder.
fn scalars(exp: &Experiment, node: &str) -> Vec<ScalarEvent> {
    let dir = exp.tensorboard_path().join(node);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    read_scalars(&files[0]).unwrap()
}

fn steps_of(events: &[ScalarEvent], tag: &str) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e.tag == tag)
        .map(|e| e.step)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_scores_reach_history_and_tensorboard_and_the_final_round_runs_once() {
    let fed = Federation::embedded().await;
    let _nodes = fed.two_nodes().await;
    let dir = tempfile::tempdir().unwrap();
    let mut exp = Experiment::new(ExperimentSettings {
        training_args: serde_json::from_value(json!({
            "num_updates": 5,
            "test_ratio": 0.2,
            "test_on_local_updates": true,
            "test_on_global_updates": true,
            "test_metric": "f1_score",
        }))
        .unwrap(),
        round_limit: Some(2),
        tensorboard: true,
        ..settings(&fed, dir.path())
    })
    .await
    .unwrap();
    assert_eq!(exp.run(None, false).await.unwrap(), 2);

    // Both scores from both nodes in every round, on the same held-out rows:
    // node-a holds 250 rows, node-b 319; 20 % are held out.
    for record in &exp.history().rounds {
        for node in &record.nodes {
            let (expected_rows, training_rows) = if node.node_id == "node-a" {
                (50, 200)
            } else {
                (63, 256)
            };
            for score in [&node.validation_global, &node.validation_local] {
                let score = score.as_ref().expect("both validations ran");
                assert_eq!(score.metric, "F1_SCORE");
                assert_eq!(score.samples, expected_rows);
                assert!((0.0..=1.0).contains(&score.value), "{score:?}");
            }
            assert_eq!(node.training_samples, training_rows);
        }
    }
    // A trained model scores well on breast cancer.
    let last = exp.history().rounds.last().unwrap();
    assert!(
        last.nodes
            .iter()
            .all(|n| n.validation_local.as_ref().unwrap().value > 0.85)
    );

    // The final validation round: every node scored the last global model once.
    let final_validation = exp
        .history()
        .final_validation
        .clone()
        .expect("final round ran");
    assert_eq!(final_validation.round, 2);
    assert!(final_validation.failed.is_empty(), "{final_validation:?}");
    let scored: Vec<&str> = final_validation
        .nodes
        .iter()
        .map(|n| n.node_id.as_str())
        .collect();
    assert_eq!(scored, ["node-a", "node-b"]);
    let on_disk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(exp.experimentation_path().join("history.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk["final_validation"]["round"], 2);

    // At the limit, run() runs nothing, and no second final validation.
    assert_eq!(exp.run(None, false).await.unwrap(), 0);
    for node in ["node-a", "node-b"] {
        let events = scalars(&exp, node);
        // Global scores at the start of rounds 1 and 2 and after round 2.
        assert_eq!(
            steps_of(&events, "VALIDATION ON GLOBAL UPDATES/F1_SCORE"),
            [0, 5, 10],
            "{node}"
        );
        assert_eq!(
            steps_of(&events, "VALIDATION ON LOCAL UPDATES/F1_SCORE"),
            [5, 10],
            "{node}"
        );
    }
    exp.close().await;

    // Validation without held-out rows is refused before anything runs.
    let err = Experiment::new(ExperimentSettings {
        training_args: serde_json::from_value(json!({
            "num_updates": 5, "test_on_local_updates": true,
        }))
        .unwrap(),
        ..settings(&fed, dir.path())
    })
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("set test_ratio above 0"), "{err}");

    // The guide's setters: checked as a whole, nothing changes on error.
    let mut exp = Experiment::new(settings(&fed, dir.path())).await.unwrap();
    let err = exp.set_test_on_local_updates(true).unwrap_err().to_string();
    assert!(err.contains("set test_ratio above 0"), "{err}");
    assert!(!exp.training_args().test_on_local_updates);
    exp.set_test_ratio(0.25).unwrap();
    exp.set_test_on_local_updates(true).unwrap();
    exp.set_test_on_global_updates(true).unwrap();
    let err = exp
        .set_test_metric(Some("roc"), serde_json::Map::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown test_metric `roc`"), "{err}");
    let average = json!({"average": "micro"}).as_object().cloned().unwrap();
    exp.set_test_metric(Some("recall"), average).unwrap();
    let args = exp.training_args();
    assert_eq!(
        (args.test_ratio, args.test_metric.as_deref()),
        (0.25, Some("recall"))
    );
    assert_eq!(exp.run_once(false).await.unwrap(), 1);
    let node = &exp.history().rounds[0].nodes[0];
    assert_eq!(node.validation_local.as_ref().unwrap().metric, "RECALL");
    exp.close().await;
}

/// The L2 distance between two rounds' global parameters.
fn distance(exp: &Experiment, a: u32, b: u32) -> f64 {
    let read = |round: u32| {
        fedwasm::tensors::read_file(&exp.aggregated_params()[&round])
            .unwrap()
            .0
    };
    read(a)
        .iter()
        .zip(read(b).iter())
        .flat_map(|(x, y)| x.data.iter().zip(&y.data))
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_central_privacy_bound_the_update_and_report_epsilon() {
    let fed = Federation::embedded().await;
    let _nodes = fed.two_nodes().await;
    let dir = tempfile::tempdir().unwrap();
    let experiment = |dp: serde_json::Value| {
        let s = settings(&fed, dir.path());
        ExperimentSettings {
            training_args: serde_json::from_value(json!({
                "num_updates": 20,
                "loader_args": {"batch_size": 25},
                "optimizer_args": {"lr": 1.0},
                "dp_args": dp,
            }))
            .unwrap(),
            ..s
        }
    };

    // Central: each node's update is clipped to 0.05 before (almost no)
    // noise, so the average update is within 0.05 too; without clipping,
    // 20 updates at lr 1 move far more.
    let mut central = Experiment::new(experiment(
        json!({"type": "central", "sigma": 1e-6, "clip": 0.05}),
    ))
    .await
    .unwrap();
    assert_eq!(central.run(Some(3), false).await.unwrap(), 3);
    for round in 2..=3 {
        let moved = distance(&central, round - 1, round);
        assert!(moved <= 0.05 * 1.001, "round {round} moved {moved}");
        assert!(moved > 0.01, "round {round} barely moved: {moved}");
    }
    let record = &central.history().rounds[2];
    let spent = record.nodes[0].privacy.as_ref().expect("privacy reported");
    assert_eq!(
        (spent.mode.as_str(), spent.steps, spent.sampling_rate),
        ("central", 1, 1.0)
    );
    central.close().await;

    // Local: DP-SGD in the plan; ε grows round after round, and depends on
    // each node's sampling rate (batch size / its training rows).
    let mut local = Experiment::new(experiment(
        json!({"type": "local", "sigma": 1.0, "clip": 1.0, "delta": 1e-4}),
    ))
    .await
    .unwrap();
    assert_eq!(local.run(Some(2), false).await.unwrap(), 2);
    let mut plain = Experiment::new(experiment(serde_json::Value::Null))
        .await
        .unwrap();
    assert_eq!(plain.run(Some(1), false).await.unwrap(), 1);
    assert_ne!(
        plain.history().rounds[0].global_sha256,
        local.history().rounds[0].global_sha256,
        "DP-SGD must change what the nodes send"
    );
    plain.close().await;
    let rounds = &local.history().rounds;
    let node_a = &rounds[0].nodes[0];
    let spent = node_a.privacy.as_ref().unwrap();
    assert_eq!((spent.mode.as_str(), spent.steps), ("local", 20));
    assert!(
        (spent.sampling_rate - 25.0 / 250.0).abs() < 1e-12,
        "{spent:?}"
    );
    let eps = |r: usize, node: &str| {
        rounds[r]
            .privacy
            .iter()
            .find(|p| p.node_id == node)
            .map(|p| (p.epsilon, p.delta))
            .unwrap()
    };
    let (first, delta) = eps(0, "node-a");
    let (second, _) = eps(1, "node-a");
    assert_eq!(delta, 1e-4);
    assert!(first > 0.0 && second > first, "{first} then {second}");
    // node-b has more rows, hence a lower sampling rate and a smaller ε.
    assert!(eps(1, "node-b").0 < second);
    // With dp_args the nodes run in privacy mode: the loss stays on them,
    // and the history says so.
    assert!(
        rounds
            .iter()
            .all(|r| r.nodes.iter().all(|n| n.private && n.final_loss.is_nan()))
    );
    local.close().await;

    // The noise is keyed with each node's secret, which never leaves it.
    for node in ["node-a", "node-b"] {
        let key = fed.tmp.path().join(node).join("noise.key");
        assert_eq!(
            std::fs::read_to_string(&key).unwrap().len(),
            64,
            "{}",
            key.display()
        );
    }
}

/// A dataset registered with a split column validates on its designated
/// test rows — in every round, locally and globally, and in the final
/// validation — whatever `test_ratio` says, never trains on them, and never
/// shows the split column to the plan (the 30-feature plan trains).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_designated_test_part_replaces_test_ratio_everywhere() {
    let fed = Federation::embedded().await;
    let text = std::fs::read_to_string(crate::support::data("breast_cancer.csv")).unwrap();
    let mut lines = text.lines();
    let mut csv = format!("{},split\n", lines.next().unwrap());
    for (i, line) in lines.take(300).enumerate() {
        csv.push_str(&format!("{line},{}\n", u8::from(i >= 250)));
    }
    let path = fed.tmp.path().join("with-split.csv");
    std::fs::write(&path, csv).unwrap();
    let mut node = fed.node_with(
        "node-s",
        &path,
        "#split",
        &["--split-column", "split"],
        |_| {},
    );
    let plan = crate::support::example_plan("logistic-regression");
    node.operator(&["plan", "approve", plan.to_str().unwrap()]);
    node.start();
    // The search below asks whoever is online: the node must be there.
    let mut waiter = fed.researcher("waiter").await;
    crate::federation::wait_for_nodes(&mut waiter, &["node-s"]).await;
    waiter.disconnect().await;

    let dir = tempfile::tempdir().unwrap();
    let mut exp = Experiment::new(ExperimentSettings {
        tags: Some(Tags::One("#split".into())),
        training_args: serde_json::from_value(json!({
            "num_updates": 5,
            "test_ratio": 0.2,
            "test_on_local_updates": true,
            "test_on_global_updates": true,
            "test_metric": "AUC",
        }))
        .unwrap(),
        round_limit: Some(2),
        ..settings(&fed, dir.path())
    })
    .await
    .unwrap();
    let summary = exp
        .training_data()
        .unwrap()
        .dataset("node-s")
        .unwrap()
        .clone();
    assert_eq!((summary.shape[0], summary.test_rows), (250, Some(50)));
    assert!(!summary.columns.contains(&"split".to_string()));
    assert_eq!(exp.run(None, false).await.unwrap(), 2);
    for record in &exp.history().rounds {
        let node = &record.nodes[0];
        assert_eq!(node.training_samples, 250);
        for score in [&node.validation_global, &node.validation_local] {
            let score = score.as_ref().unwrap();
            assert_eq!((score.metric.as_str(), score.samples), ("AUC", 50));
            assert!((0.0..=1.0).contains(&score.value), "{score:?}");
            // Two classes; every test row counted once, by true class.
            let confusion = score.confusion.as_ref().unwrap();
            assert_eq!(confusion.len(), 2);
            assert_eq!(confusion.iter().flatten().sum::<u64>(), 50);
        }
    }
    let last = exp.history().final_validation.clone().unwrap();
    assert_eq!(last.nodes[0].validation.samples, 50);
    assert!(last.nodes[0].validation.confusion.is_some());
    exp.close().await;
}
