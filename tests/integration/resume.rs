//! Experiment files and breakpoints through the CLI: `fedwasm run`, then
//! `fedwasm resume` in a fresh process from a moved folder, byte-identical.

use std::path::Path;
use std::process::Command;

use fedwasm::researcher::ExperimentSettings;

use crate::federation::Federation;
use crate::support::{example_plan, fedwasm_bin, root};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn fedwasm(args: &[&str]) -> String {
    let out = Command::new(fedwasm_bin()).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_example_file_parses_and_unknown_keys_are_named() {
    let text = std::fs::read_to_string(root().join("examples/breast-cancer.toml")).unwrap();
    let settings: ExperimentSettings = toml::from_str(&text).unwrap();
    assert_eq!(settings.round_limit, Some(10));
    assert_eq!(settings.training_args.num_updates, Some(50));
    assert_eq!(settings.training_args.loader_args.batch_size, 32);
    let err = toml::from_str::<ExperimentSettings>("round_limt = 3")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown field `round_limt`") && err.contains("`round_limit`"),
        "{err}"
    );
    let err = toml::from_str::<ExperimentSettings>("[training_args]\nepochs = \"two\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid type: string \"two\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_breakpoint_3_in_a_fresh_process_gives_the_same_bytes() {
    resume_is_byte_identical("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_fedadam_on_the_server_gives_the_same_bytes() {
    resume_is_byte_identical(r#"agg_optimizer = { name = "fedadam", lr = 0.05 }"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_scaffold_fedadam_and_sampling_gives_the_same_bytes() {
    resume_is_byte_identical(
        r#"aggregator = "scaffold"
server_lr = 0.8
agg_optimizer = { name = "fedadam", lr = 0.05 }
node_selection_strategy = "sampling"
sampling_fraction = 0.5"#,
    )
    .await;
}

/// Run 6 rounds with `extra` top-level settings, resume a moved copy from
/// breakpoint 3 in a fresh process, and compare the final global models.
async fn resume_is_byte_identical(extra: &str) {
    let fed = Federation::embedded().await;
    let plan = example_plan("logistic-regression");
    let _nodes = fed.two_nodes().await;
    fed.keys.researcher(crate::federation::EXPERIMENTER);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("experiment.toml");
    std::fs::write(
        &file,
        format!(
            r##"tags = "#bc"
{extra}
training_plan = "{}"
round_limit = 6
save_breakpoints = true
tensorboard = true
experiments_dir = "first"
search_wait_secs = 20.0
researcher_id = "{}"
identity_file = "{}"
roster_file = "{}"

[model_args]
n_features = 30
n_classes = 2

[training_args]
num_updates = 20
random_seed = 5
seed_per_round = true

[training_args.optimizer_args]
lr = 0.2
momentum = 0.9

[broker]
url = "{}"

[repository.remote]
url = "{}"
"##,
            plan.display(),
            crate::federation::EXPERIMENTER,
            fed.keys.key_file(crate::federation::EXPERIMENTER).display(),
            fed.keys.roster().display(),
            fed.broker.url,
            fed.repository_url()
        ),
    )
    .unwrap();
    let out = fedwasm(&["run", file.to_str().unwrap()]);
    assert!(out.contains("6 round(s) run; 6 completed of 6"), "{out}");
    let first = dir.path().join("first/Experiment_0001");
    for round in 1..=6 {
        assert!(
            first
                .join(format!("breakpoint_{round:04}/state.json"))
                .is_file()
        );
    }

    assert_eq!(
        first
            .join("breakpoint_0003/optimizer.safetensors")
            .is_file(),
        extra.contains("agg_optimizer"),
        "server optimizer moments are saved with the breakpoint"
    );
    // Move a copy elsewhere and forget everything after round 3.
    let second = dir.path().join("second/Experiment_0001");
    copy_dir(&first, &second);
    std::fs::remove_file(second.join("global.safetensors")).unwrap();
    for round in 4..=6 {
        std::fs::remove_dir_all(second.join(format!("breakpoint_{round:04}"))).unwrap();
        std::fs::remove_file(second.join(format!("rounds/global_{round:04}.safetensors"))).unwrap();
    }
    let out = fedwasm(&["resume", second.join("breakpoint_0003").to_str().unwrap()]);
    assert!(out.contains("after round 3"), "{out}");
    assert!(out.contains("3 round(s) run; 6 completed of 6"), "{out}");
    let bytes = |p: &Path| std::fs::read(p).unwrap();
    assert!(
        bytes(&second.join("global.safetensors")) == bytes(&first.join("global.safetensors")),
        "the resumed run's global model differs from the uninterrupted run's"
    );
    let history: serde_json::Value =
        serde_json::from_slice(&bytes(&second.join("history.json"))).unwrap();
    let rounds = history["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 6);
    if extra.contains("sampling") {
        assert!(
            rounds
                .iter()
                .all(|r| r["sampled"].as_array().unwrap().len() == 1),
            "half of two nodes per round: {rounds:?}"
        );
    }
    // Nothing left to run: the latest experiment of a directory is found by itself.
    let out = fedwasm(&[
        "resume",
        "--experiments-dir",
        dir.path().join("second").to_str().unwrap(),
    ]);
    assert!(
        out.contains("after round 6") && out.contains("0 round(s) run"),
        "{out}"
    );
}

#[tokio::test]
async fn scaffold_without_num_updates_is_refused_before_anything_starts() {
    let settings = ExperimentSettings {
        aggregator: "scaffold".into(),
        training_args: serde_json::from_value(serde_json::json!({"epochs": 2})).unwrap(),
        ..ExperimentSettings::default()
    };
    let err = fedwasm::researcher::Experiment::new(settings)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("the scaffold aggregator needs training_args.num_updates"),
        "{err}"
    );
}
