//! The `Experiment` against real nodes: the guide's semantics for rounds,
//! limits, searches and folders, and failing rounds that change nothing.

use std::process::Command;
use std::time::Duration;

use fedwasm::researcher::{Experiment, ExperimentError, ExperimentSettings, Tags};
use fedwasm::training::TrainingArgs;
use serde_json::json;

use crate::federation::{Federation, lr_args};
use crate::support::example_plan;

/// Settings for an LR experiment on `#bc` in `dir` (5 updates a round).
pub fn settings(fed: &Federation, dir: &std::path::Path) -> ExperimentSettings {
    ExperimentSettings {
        tags: Some(Tags::One("#bc".into())),
        training_plan: Some(example_plan("logistic-regression")),
        model_args: lr_args().as_object().cloned().unwrap(),
        training_args: serde_json::from_value(json!({"num_updates": 5})).unwrap(),
        ..fed.settings_in(dir)
    }
}

fn warned(exp: &mut Experiment, text: &str) {
    let warnings = exp.take_warnings();
    assert!(
        warnings.iter().any(|w| w.contains(text)),
        "no warning containing {text:?} in {warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_limits_searches_and_folders_follow_the_guide() {
    let fed = Federation::embedded().await;
    let _nodes = fed.two_nodes().await;
    let dir = tempfile::tempdir().unwrap();
    let mut exp = Experiment::new(ExperimentSettings {
        round_limit: Some(2),
        ..settings(&fed, dir.path())
    })
    .await
    .unwrap();
    assert_eq!(exp.experimentation_folder(), "Experiment_0001");
    assert_eq!(
        exp.training_data().unwrap().node_ids(),
        ["node-a", "node-b"]
    );
    assert_eq!(exp.round_current(), 0);

    assert_eq!(exp.run_once(false).await.unwrap(), 1);
    assert_eq!(exp.round_current(), 1);
    // TensorBoard switched on after creation logs the rounds that follow.
    exp.set_tensorboard(true);
    assert_eq!(exp.run(Some(3), false).await.unwrap(), 1);
    warned(
        &mut exp,
        "3 rounds would pass the round limit of 2: running 1",
    );
    assert_eq!(exp.run(None, false).await.unwrap(), 0);
    warned(&mut exp, "round limit of 2 was reached");
    assert_eq!(exp.run_once(false).await.unwrap(), 0);
    warned(&mut exp, "round limit of 2 was reached");
    assert_eq!(exp.run_once(true).await.unwrap(), 1);
    warned(&mut exp, "round limit raised from 2 to 3");
    assert_eq!(exp.run(Some(2), true).await.unwrap(), 2);
    assert_eq!((exp.round_current(), exp.round_limit()), (5, Some(5)));
    assert!(exp.set_round_limit(Some(4)).is_err());
    assert!(matches!(
        exp.run(Some(0), false).await,
        Err(ExperimentError::Argument(_))
    ));

    let history = exp.history().rounds.clone();
    assert_eq!(history.len(), 5);
    for (i, record) in history.iter().enumerate() {
        assert_eq!(record.round, i as u32 + 1);
        let samples: Vec<u64> = record.nodes.iter().map(|n| n.training_samples).collect();
        assert_eq!(samples, [250, 319]);
    }
    assert_eq!(exp.aggregated_params().len(), 5);
    assert!(exp.aggregated_params().values().all(|p| p.is_file()));
    let written: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(exp.experimentation_path().join("history.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written["rounds"].as_array().unwrap().len(), 5);
    // One loss per round (5 updates, log_interval 10: the last update), stepped
    // by cumulative iteration across rounds, in a real event file per node.
    for node in ["node-a", "node-b"] {
        let dir = exp.tensorboard_path().join(node);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let scalars = fedwasm::researcher::tensorboard::read_scalars(&files[0]).unwrap();
        let steps: Vec<i64> = scalars.iter().map(|s| s.step).collect();
        assert_eq!(steps, [10, 15, 20, 25], "{node}");
        assert!(
            scalars
                .iter()
                .all(|s| s.tag == "TRAINING/Loss" && s.value.is_finite())
        );
    }

    // Changing the nodes filter does not search again until asked to.
    exp.set_nodes(Some(vec!["node-b".into()]));
    assert_eq!(exp.training_data().unwrap().node_ids().len(), 2);
    exp.set_training_data(None, true).await.unwrap();
    assert_eq!(exp.training_data().unwrap().node_ids(), ["node-b"]);
    exp.close().await;

    // The next folder is numbered after the highest; names are sanitized; paths refused.
    let next = Experiment::new(settings(&fed, dir.path())).await.unwrap();
    assert_eq!(next.experimentation_folder(), "Experiment_0002");
    next.close().await;
    let mut named = Experiment::new(ExperimentSettings {
        experimentation_folder: Some("my study".into()),
        ..settings(&fed, dir.path())
    })
    .await
    .unwrap();
    assert_eq!(named.experimentation_folder(), "my_study");
    warned(&mut named, "renamed `my_study`");
    named.close().await;
    let refused = Experiment::new(ExperimentSettings {
        experimentation_folder: Some("../elsewhere".into()),
        ..settings(&fed, dir.path())
    })
    .await;
    assert!(
        matches!(&refused, Err(ExperimentError::Argument(m)) if m.contains("not a path")),
        "{:?}",
        refused.err()
    );

    // Training arguments: unknown keys and wrong types are named.
    let unknown = serde_json::from_value::<TrainingArgs>(json!({"num_update": 5}))
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("unknown field `num_update`") && unknown.contains("`num_updates`"),
        "{unknown}"
    );
    let wrong = serde_json::from_value::<TrainingArgs>(json!({"dry_run": "yes"}))
        .unwrap_err()
        .to_string();
    assert!(
        wrong.contains("invalid type: string \"yes\", expected a boolean"),
        "{wrong}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_two_matching_datasets_makes_creation_fail_naming_it() {
    let fed = Federation::embedded().await;
    let mut node = fed.node("node-a", &fed.shard("a.csv", 0..100), "#bc,#x", |_| {});
    node.operator(&[
        "dataset",
        "add",
        "--path",
        fed.shard("a2.csv", 100..200).to_str().unwrap(),
        "--tags",
        "#bc,#y",
        "--name",
        "second",
        "--target",
        "diagnosis",
    ]);
    node.start();
    let mut link = fed.researcher("waiter").await;
    crate::federation::wait_for_nodes(&mut link, &["node-a"]).await;
    let dir = tempfile::tempdir().unwrap();
    let err = Experiment::new(settings(&fed, dir.path()))
        .await
        .err()
        .expect("ambiguous")
        .to_string();
    assert!(
        err.contains("node `node-a` has 2 datasets matching the tags"),
        "{err}"
    );
    // More specific tags select one.
    let exp = Experiment::new(ExperimentSettings {
        tags: Some(Tags::Many(vec!["#bc".into(), "#y".into()])),
        ..settings(&fed, dir.path())
    })
    .await
    .unwrap();
    assert_eq!(exp.training_data().unwrap().node_ids(), ["node-a"]);
    exp.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rounds_name_the_node_and_change_nothing() {
    let fed = Federation::embedded().await;
    let plan = example_plan("logistic-regression");
    let mut a = fed.node("node-a", &fed.shard("a.csv", 0..250), "#bc,#a", |_| {});
    let mut b = fed.node("node-b", &fed.shard("b.csv", 250..569), "#bc,#b", |_| {});
    a.operator(&["plan", "approve", plan.to_str().unwrap()]);
    a.start();
    b.start();
    let mut link = fed.researcher("waiter").await;
    crate::federation::wait_for_nodes(&mut link, &["node-a", "node-b"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut exp = Experiment::new(settings(&fed, dir.path())).await.unwrap();

    // node-b has not approved the plan: its error fails the round.
    let err = exp.run_once(false).await.unwrap_err().to_string();
    assert!(
        err.contains("round 1 failed: node node-b answered with an error (PlanNotApproved)"),
        "{err}"
    );
    assert_eq!(exp.round_current(), 0);
    assert!(exp.history().rounds.is_empty());
    assert!(
        !exp.experimentation_path()
            .join("global.safetensors")
            .exists()
    );

    // Approved, the same experiment runs the round.
    b.operator(&["plan", "approve", plan.to_str().unwrap()]);
    assert_eq!(exp.run_once(false).await.unwrap(), 1);
    let data = |exp: &Experiment| -> Vec<Vec<f32>> {
        exp.global_parameters()
            .unwrap()
            .iter()
            .map(|t| t.data.clone())
            .collect()
    };
    let after_one = data(&exp);

    // A node that dies never answers: the deadline fails the round, naming it.
    b.kill();
    exp.set_round_deadline(Duration::from_secs(3));
    let err = exp.run_once(false).await.unwrap_err().to_string();
    assert!(
        err.contains("round 2 failed: no answer from node-b within the round deadline"),
        "{err}"
    );
    assert_eq!(exp.round_current(), 1);
    assert_eq!(data(&exp), after_one);
    assert_eq!(exp.history().rounds.len(), 1);

    // Back up, the round runs; the late work of the failed round is ignored.
    b.start();
    crate::federation::wait_for_nodes(&mut link, &["node-b"]).await;
    exp.set_round_deadline(Duration::from_secs(120));
    assert_eq!(exp.run_once(false).await.unwrap(), 1);
    assert_eq!(exp.round_current(), 2);
    exp.close().await;
}

/// Python's TensorBoard reads our event files, when it is installed
/// (`pip install tensorboard`); without it this checks our own reader only.
#[test]
fn tensorboard_reads_our_event_files_when_installed() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut log = fedwasm::researcher::tensorboard::TensorboardLog::new(runs.clone());
    for step in 1..=5u64 {
        log.scalar("node-a", "TRAINING/Loss", step * 10, 1.0 / step as f32)
            .unwrap();
    }
    // What can always be checked: fedwasm's own CRC-checking reader.
    let file = std::fs::read_dir(runs.join("node-a"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let ours: Vec<(i64, f32)> = fedwasm::researcher::tensorboard::read_scalars(&file)
        .unwrap()
        .into_iter()
        .map(|e| (e.step, e.value))
        .collect();
    assert_eq!(
        ours,
        [(10, 1.0), (20, 0.5), (30, 1.0 / 3.0), (40, 0.25), (50, 0.2)]
    );
    let has_tensorboard = Command::new("python3")
        .args(["-c", "import tensorboard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_tensorboard {
        eprintln!(
            "SKIPPED the TensorBoard half: python3 has no tensorboard module (pip install tensorboard); checked with fedwasm's reader only"
        );
        return;
    }
    let script = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1]); acc.Reload()
for e in acc.Scalars("TRAINING/Loss"): print(e.step, round(e.value, 6))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(runs.join("node-a"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "10 1.0\n20 0.5\n30 0.333333\n40 0.25\n50 0.2\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_drops_a_failing_node_and_stop_names_it_and_sampling_is_recorded() {
    use fedwasm::researcher::strategy::FailurePolicy;
    let fed = Federation::embedded().await;
    let plan = example_plan("logistic-regression");
    let mut nodes = Vec::new();
    for (id, rows) in [
        ("node-a", 0..190),
        ("node-b", 190..380),
        ("node-c", 380..569),
    ] {
        let mut node = fed.node(
            id,
            &fed.shard(&format!("{id}.csv"), rows),
            &format!("#bc,#{id}"),
            |_| {},
        );
        if id != "node-c" {
            node.operator(&["plan", "approve", plan.to_str().unwrap()]);
        }
        node.start();
        nodes.push(node);
    }
    let mut link = fed.researcher("waiter").await;
    crate::federation::wait_for_nodes(&mut link, &["node-a", "node-b", "node-c"]).await;
    link.disconnect().await;
    let dir = tempfile::tempdir().unwrap();

    // stop (the default): node-c's refusal fails the round, naming it.
    let mut stop = Experiment::new(settings(&fed, dir.path())).await.unwrap();
    let err = stop.run_once(false).await.unwrap_err().to_string();
    assert!(
        err.contains("node node-c answered with an error (PlanNotApproved)"),
        "{err}"
    );
    stop.close().await;

    // discard: the round aggregates node-a and node-b and records why node-c is missing.
    let mut discard = Experiment::new(ExperimentSettings {
        failure_policy: FailurePolicy::Discard,
        min_nodes: 2,
        round_limit: Some(1),
        training_args: serde_json::from_value(json!({
            "num_updates": 5, "test_ratio": 0.2, "test_on_global_updates": true,
        }))
        .unwrap(),
        ..settings(&fed, dir.path())
    })
    .await
    .unwrap();
    assert_eq!(discard.run(None, false).await.unwrap(), 1);
    // The final validation scores the model on the nodes that can, and
    // records why node-c cannot.
    let last = discard.history().final_validation.clone().unwrap();
    let scored: Vec<&str> = last.nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(scored, ["node-a", "node-b"]);
    assert_eq!(last.failed.len(), 1);
    assert_eq!(last.failed[0].node_id, "node-c");
    assert!(
        last.failed[0].reason.contains("PlanNotApproved"),
        "{last:?}"
    );
    let record = &discard.history().rounds[0];
    assert_eq!(record.sampled, ["node-a", "node-b", "node-c"]);
    let trained: Vec<&str> = record.nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(trained, ["node-a", "node-b"]);
    assert_eq!(record.dropped.len(), 1);
    assert_eq!(record.dropped[0].node_id, "node-c");
    assert!(
        record.dropped[0].reason.contains("PlanNotApproved"),
        "{record:?}"
    );
    discard.close().await;

    // ...but not below min_nodes.
    let mut strict = Experiment::new(ExperimentSettings {
        failure_policy: FailurePolicy::Discard,
        min_nodes: 3,
        ..settings(&fed, dir.path())
    })
    .await
    .unwrap();
    let err = strict.run_once(false).await.unwrap_err().to_string();
    assert!(
        err.contains("only 2 of 3 nodes succeeded, fewer than min_nodes = 3"),
        "{err}"
    );
    assert_eq!(strict.round_current(), 0);
    strict.close().await;

    // sampling: half of the nodes (at least 2) each round, seeded and recorded.
    nodes[2].operator(&["plan", "approve", plan.to_str().unwrap()]);
    let sampled_settings = || ExperimentSettings {
        node_selection_strategy: "sampling".into(),
        sampling_fraction: 0.5,
        min_nodes: 2,
        failure_policy: FailurePolicy::Discard,
        ..settings(&fed, dir.path())
    };
    let mut sampling = Experiment::new(sampled_settings()).await.unwrap();
    assert_eq!(sampling.run(Some(4), false).await.unwrap(), 4);
    let samples: Vec<Vec<String>> = sampling
        .history()
        .rounds
        .iter()
        .map(|r| r.sampled.clone())
        .collect();
    assert!(samples.iter().all(|s| s.len() == 2), "{samples:?}");
    sampling.close().await;
    let mut again = Experiment::new(sampled_settings()).await.unwrap();
    again
        .run(Some(4), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again_samples: Vec<Vec<String>> = again
        .history()
        .rounds
        .iter()
        .map(|r| r.sampled.clone())
        .collect();
    assert_eq!(again_samples, samples, "same seed, same samples");
    again.close().await;
}

/// Write the F32 parameters of `from` to `to` as F64 tensors.
fn write_f64(from: &std::path::Path, to: &std::path::Path) {
    let (tensors, _) = fedwasm::tensors::read_file(from).unwrap();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| {
            let data = t
                .data
                .iter()
                .flat_map(|&v| f64::from(v).to_le_bytes())
                .collect();
            (
                t.name.clone(),
                t.shape.iter().map(|&d| d as usize).collect(),
                data,
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F64, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, to).unwrap();
}

/// `initial_parameters` starts an experiment from a saved model: the nodes'
/// scores of the global model in the first round equal, bit for bit, their
/// scores of that model where it was made; a file that does not fit the
/// plan is refused at creation, naming the tensor, and the setting is
/// closed once a round ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_parameters_start_from_a_saved_model_checked_against_the_plan() {
    let fed = Federation::embedded().await;
    let _nodes = fed.two_nodes().await;
    let dir = tempfile::tempdir().unwrap();
    let validated = |dir: &std::path::Path| ExperimentSettings {
        training_args: serde_json::from_value(json!({
            "num_updates": 5, "test_ratio": 0.25, "test_on_global_updates": true
        }))
        .unwrap(),
        ..settings(&fed, dir)
    };
    let mut first = Experiment::new(validated(dir.path())).await.unwrap();
    first.run(Some(4), false).await.unwrap();
    let saved = first.aggregated_params()[&3].clone();
    let scores_of_round_3: Vec<_> = first.history().rounds[3]
        .nodes
        .iter()
        .map(|n| (n.node_id.clone(), n.validation_global.clone().unwrap()))
        .collect();
    first.close().await;

    let mut second = Experiment::new(ExperimentSettings {
        initial_parameters: Some(saved.clone()),
        ..validated(dir.path())
    })
    .await
    .unwrap();
    second.run(Some(1), false).await.unwrap();
    let scores_at_start: Vec<_> = second.history().rounds[0]
        .nodes
        .iter()
        .map(|n| (n.node_id.clone(), n.validation_global.clone().unwrap()))
        .collect();
    assert_eq!(scores_at_start, scores_of_round_3);
    let err = second.set_initial_parameters(Some(&saved)).unwrap_err();
    assert!(err.to_string().contains("1 rounds already ran"), "{err}");
    second.close().await;

    // The same model saved as F64 (as PyTorch may save one): cast back to
    // F32 exactly, said so, and the same scores at the start.
    let as_f64 = dir.path().join("f64.safetensors");
    write_f64(&saved, &as_f64);
    let mut third = Experiment::new(ExperimentSettings {
        initial_parameters: Some(as_f64),
        ..validated(dir.path())
    })
    .await
    .unwrap();
    let warnings = third.take_warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("cast 2 tensor(s) from F64 to F32")),
        "{warnings:?}"
    );
    third.run(Some(1), false).await.unwrap();
    let scores_from_f64: Vec<_> = third.history().rounds[0]
        .nodes
        .iter()
        .map(|n| (n.node_id.clone(), n.validation_global.clone().unwrap()))
        .collect();
    assert_eq!(scores_from_f64, scores_of_round_3);
    third.close().await;

    let (mut tensors, _) = fedwasm::tensors::read_file(&saved).unwrap();
    tensors[0].shape = vec![tensors[0].data.len() as u32, 1];
    let wrong = dir.path().join("wrong.safetensors");
    fedwasm::tensors::write_file(&wrong, &tensors, &Default::default()).unwrap();
    let err = match Experiment::new(ExperimentSettings {
        initial_parameters: Some(wrong.clone()),
        ..settings(&fed, dir.path())
    })
    .await
    {
        Ok(_) => panic!("a misshapen model was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("does not fit the plan `logistic-regression`")
            && err.contains(&format!("tensor `{}` has shape", tensors[0].name))
            && err.contains("listed in `reinitialize`"),
        "{err}"
    );
    // Named in `reinitialize`, the misfit is the plan's own, and a warning says so.
    let mut headless = Experiment::new(ExperimentSettings {
        initial_parameters: Some(wrong),
        reinitialize: vec![tensors[0].name.clone()],
        ..settings(&fed, dir.path())
    })
    .await
    .unwrap();
    let warnings = headless.take_warnings();
    assert!(
        warnings.iter().any(|w| w.contains(&format!(
            "`{}` is the plan's own initialisation",
            tensors[0].name
        ))),
        "{warnings:?}"
    );
    assert_eq!(headless.run(Some(1), false).await.unwrap(), 1);
    headless.close().await;
}

/// Two experiments open at once in one program, on one broker, each with a
/// generated researcher id: both find both nodes and train, rounds
/// interleaved. (One id for both once made them take the broker connection
/// from each other, so one of them lost its search replies.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_experiments_open_at_once_each_get_their_replies() {
    let fed = Federation::embedded().await;
    let _nodes = fed.two_nodes().await;
    let dir = tempfile::tempdir().unwrap();
    let mut first = Experiment::new(settings(&fed, dir.path())).await.unwrap();
    let mut second = Experiment::new(settings(&fed, dir.path())).await.unwrap();
    for exp in [&first, &second] {
        assert_eq!(
            exp.training_data().unwrap().node_ids(),
            ["node-a", "node-b"]
        );
    }
    assert_eq!(first.run_once(false).await.unwrap(), 1);
    assert_eq!(second.run_once(false).await.unwrap(), 1);
    assert_eq!(first.run_once(false).await.unwrap(), 1);
    assert_eq!(first.round_current(), 2);
    assert_eq!(second.round_current(), 1);
    first.close().await;
    second.close().await;
}

/// The researcher compiles the plan under the settings' limits, in a child
/// process, when it has a compiler (as `fedwasm run`, `resume` and `demo` do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_researcher_compiles_the_plan_under_limits() {
    let fed = Federation::embedded().await;
    let dir = tempfile::tempdir().unwrap();
    let err = Experiment::new(ExperimentSettings {
        training_plan: Some(example_plan("mlp")),
        training_args: serde_json::from_value(json!({"num_updates": 1})).unwrap(),
        compiler: Some(crate::support::fedwasm_bin()),
        compile_memory_mib: 48,
        ..fed.settings_in(dir.path())
    })
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.contains("more than 48 MiB, the compile_memory_mib limit"),
        "{err}"
    );
}
