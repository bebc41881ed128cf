//! The same plan compiled natively and to wasm produces the same parameter bytes.

use std::time::Duration;

use fedwasm::dataset::Table;
use fedwasm::digest::Sha256Digest;
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
