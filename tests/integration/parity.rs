//! The same plan compiled natively and to wasm produces the same parameter bytes.

use std::time::Duration;

use fedwasm::dataset::Table;
use fedwasm::digest::Sha256Digest;
use fedwasm::sandbox::random::StreamSeed;
use fedwasm::training::{TrainingTask, run_in_worker, train};
use fedwasm_plan::TrainingPlan;

use crate::native::NativePlan;
use crate::support::{breast_cancer_task, example_plan, fedwasm_bin, task};

fn assert_same_bytes<P: TrainingPlan>(mut t: TrainingTask) {
    let dir = tempfile::tempdir().unwrap();
    t.output_parameters = Some(dir.path().join("wasm.safetensors"));
    let wasm = run_in_worker(&fedwasm_bin(), &t, Duration::from_secs(300), &mut |_| {}).unwrap();

    let digest = Sha256Digest::of_file(&t.plan).unwrap();
    let mut native_plan = NativePlan::<P>::new(t.plan_seed().unwrap().0);
    let table = Table::from_csv(&t.dataset).unwrap();
    let wasm_out = t
        .output_parameters
        .replace(dir.path().join("native.safetensors"))
        .unwrap();
    let native = train(&mut native_plan, digest, &table, &t, &mut |_| {}).unwrap();

    assert_eq!(native.final_loss.to_bits(), wasm.final_loss.to_bits());
    assert_eq!(native.training_metric, wasm.training_metric);
    let native_bytes = std::fs::read(t.output_parameters.unwrap()).unwrap();
    let wasm_bytes = std::fs::read(wasm_out).unwrap();
    assert!(
        native_bytes == wasm_bytes,
        "native and wasm parameters differ"
    );
}

#[test]
fn mlp_native_and_wasm_give_identical_parameters() {
    assert_same_bytes::<mlp::Mlp>(task(
        example_plan("mlp"),
        "digits.csv",
        "digit",
        serde_json::json!({"n_features": 64, "n_classes": 10, "hidden": [32, 16], "activation": "tanh"}),
        r#"{"num_updates": 100, "random_seed": 3, "optimizer_args": {"optimizer": "adam", "lr": 0.01}}"#,
    ));
}

#[test]
fn logistic_regression_native_and_wasm_give_identical_parameters() {
    assert_same_bytes::<logistic_regression::LogisticRegression>(breast_cancer_task(
        r#"{"num_updates": 200, "optimizer_args": {"momentum": 0.9, "weight_decay": 0.001}}"#,
    ));
}

/// DP-SGD draws its noise from the host's `fill-normal` in wasm and from the
/// SDK's own Box–Muller natively: the same bits either way.
#[test]
fn mlp_with_local_privacy_native_and_wasm_give_identical_parameters() {
    assert_same_bytes::<mlp::Mlp>(task(
        example_plan("mlp"),
        "digits.csv",
        "digit",
        serde_json::json!({"n_features": 64, "n_classes": 10, "hidden": [16]}),
        r#"{"num_updates": 30, "random_seed": 5,
            "dp_args": {"type": "local", "sigma": 0.7, "clip": 1.5}}"#,
    ));
}

#[test]
fn host_normals_equal_the_sdks() {
    let seed = [11; 32];
    fedwasm_plan::random::seed_native(seed);
    let sdk = fedwasm_plan::random::normal(1001);
    let host = fedwasm::sandbox::random::fill_normal(&mut StreamSeed(seed).rng(), 1001);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&sdk), bits(&host));
}
