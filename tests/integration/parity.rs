//! The same plan compiled natively and to wasm produces the same parameter bytes.

use std::time::Duration;

use fedwasm::dataset::Table;
use fedwasm::digest::Sha256Digest;
use fedwasm::sandbox::random::StreamSeed;
use fedwasm::training::{TrainingTask, run_in_worker, train};
use fedwasm_plan::TrainingPlan;

use crate::native::NativePlan;
use crate::support::{breast_cancer_task, example_plan, fedwasm_bin, task};

/// The plan trained in a worker (wasm, its tensor operations on
/// `compute_threads` threads of the host) and natively give the same
/// parameter bytes; so do the other thread counts, 8 of them on this
/// 2-core machine too (oversubscribed).
fn assert_same_bytes<P: TrainingPlan>(mut t: TrainingTask) {
    let dir = tempfile::tempdir().unwrap();
    let mut other_counts = Vec::new();
    for threads in [2, 3, 8] {
        t.sandbox.compute_threads = threads;
        t.output_parameters = Some(dir.path().join(format!("wasm-{threads}.safetensors")));
        run_in_worker(&fedwasm_bin(), &t, Duration::from_secs(300), &mut |_| {}).unwrap();
        other_counts.push((threads, t.output_parameters.clone().unwrap()));
    }
    t.sandbox.compute_threads = 1;
    t.output_parameters = Some(dir.path().join("wasm.safetensors"));
    let wasm = run_in_worker(&fedwasm_bin(), &t, Duration::from_secs(300), &mut |_| {}).unwrap();
    let one_thread = std::fs::read(t.output_parameters.as_ref().unwrap()).unwrap();
    for (threads, path) in other_counts {
        assert!(
            std::fs::read(path).unwrap() == one_thread,
            "{threads} threads and 1 thread gave different parameters"
        );
    }

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
fn the_software_fma_path_gives_the_hardware_paths_bits() {
    let t = task(
        example_plan("mlp"),
        "digits.csv",
        "digit",
        serde_json::json!({"n_features": 64, "n_classes": 10, "hidden": [32]}),
        r#"{"num_updates": 20, "optimizer_args": {"lr": 0.1, "momentum": 0.9}}"#,
    );
    let digest = Sha256Digest::of_file(&t.plan).unwrap();
    let table = Table::from_csv(&t.dataset).unwrap();
    let train_native = |portable: bool| {
        fedwasm_kernels::isa::force_portable(portable);
        let mut plan = NativePlan::<mlp::Mlp>::new(t.plan_seed().unwrap().0);
        let outcome = train(&mut plan, digest, &table, &t, &mut |_| {});
        fedwasm_kernels::isa::force_portable(false);
        outcome.unwrap().final_loss.to_bits()
    };
    let hardware = train_native(false);
    assert_eq!(train_native(true), hardware);
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

fn cnn_task(training_args: &str, batch_norm: bool) -> TrainingTask {
    task(
        example_plan("cnn"),
        "digits.csv",
        "digit",
        serde_json::json!({"input_shape": [1, 8, 8], "n_classes": 10, "channels": [4, 8],
                           "hidden": [16], "dropout": 0.25, "batch_norm": batch_norm}),
        training_args,
    )
}

/// Dropout draws its masks from the host stream and BatchNorm's running
/// statistics travel with the parameters: both must give the same bits.
#[test]
fn cnn_with_dropout_and_batch_norm_native_and_wasm_give_identical_parameters() {
    assert_same_bytes::<cnn::Cnn>(cnn_task(
        r#"{"num_updates": 20, "random_seed": 4, "optimizer_args": {"lr": 0.05, "momentum": 0.9}}"#,
        true,
    ));
}

/// [`assert_same_bytes`] for a plan on an image dataset (`images` under
/// `data/`, a folder or, with `columns`, a manifest): wasm at 1, 2, 3 and 8
/// compute threads and native give the same parameter bytes.
fn assert_same_image_bytes<P: TrainingPlan>(
    mut t: TrainingTask,
    images: &str,
    columns: Option<fedwasm::dataset::ManifestColumns>,
) {
    let dir = tempfile::tempdir().unwrap();
    let source = crate::support::data(images);
    let loaded = fedwasm::dataset::read_images(&source, columns.as_ref(), 1 << 30).unwrap();
    t.target = None;
    t.images = Some(fedwasm::dataset::ImageSource {
        manifest: columns,
        digest: loaded.set.digest,
    });
    let mut wasm = Vec::new();
    for threads in [1, 2, 3, 8] {
        t.sandbox.compute_threads = threads;
        let path = dir.path().join(format!("wasm-{threads}.safetensors"));
        t.output_parameters = Some(path.clone());
        let outcome =
            run_in_worker(&fedwasm_bin(), &t, Duration::from_secs(300), &mut |_| {}).unwrap();
        wasm.push((threads, outcome, std::fs::read(path).unwrap()));
    }
    let digest = Sha256Digest::of_file(&t.plan).unwrap();
    let mut native_plan = NativePlan::<P>::new(t.plan_seed().unwrap().0);
    let native_path = dir.path().join("native.safetensors");
    t.output_parameters = Some(native_path.clone());
    let native = train(&mut native_plan, digest, &loaded, &t, &mut |_| {}).unwrap();
    let native_bytes = std::fs::read(native_path).unwrap();
    for (threads, outcome, bytes) in wasm {
        assert_eq!(
            native.final_loss.to_bits(),
            outcome.final_loss.to_bits(),
            "{threads} threads"
        );
        assert_eq!(
            native.training_metric, outcome.training_metric,
            "{threads} threads"
        );
        assert!(
            bytes == native_bytes,
            "wasm on {threads} threads and native gave different parameters"
        );
    }
}

/// The U-Net on the shipped mask manifest, images and masks flipped,
/// shifted and rotated by the host: skip connections (concatenation),
/// upsampling, batch normalization and the per-pixel loss with soft Dice
/// give the same bits natively and in wasm.
#[test]
fn unet_on_masks_native_and_wasm_give_identical_parameters() {
    let columns = fedwasm::dataset::ManifestColumns {
        image: "image".into(),
        target: fedwasm::dataset::ManifestTarget::Mask("mask".into()),
    };
    let t = task(
        example_plan("unet"),
        "nuclei-masks/test.csv",
        "mask",
        serde_json::json!({"input_shape": [1, 32, 32], "n_classes": 2, "base_channels": 4,
                           "mean": 0.167, "std": 0.12, "horizontal_flip": true,
                           "crop_padding": 2, "rotation": 10}),
        r#"{"num_updates": 6, "random_seed": 6, "loader_args": {"batch_size": 8}}"#,
    );
    assert_same_image_bytes::<unet::Unet>(t, "nuclei-masks/test.csv", Some(columns));
}

/// ResNet-18 (small-input stem) on the nucleus patches: strided and 1×1
/// convolutions, batch normalization, residual sums, max and adaptive
/// pooling give the same bits natively and in wasm, on any thread count.
#[test]
fn resnet_native_and_wasm_give_identical_parameters_on_any_thread_count() {
    let t = task(
        example_plan("resnet"),
        "nuclei/test",
        "class",
        serde_json::json!({"input_shape": [1, 16, 16], "n_classes": 2, "width": 4,
                           "small_input": true, "mean": 0.167, "std": 0.12,
                           "horizontal_flip": true}),
        r#"{"num_updates": 4, "random_seed": 7, "loader_args": {"batch_size": 16},
            "optimizer_args": {"lr": 0.05, "momentum": 0.9}}"#,
    );
    assert_same_image_bytes::<resnet::ResNet>(t, "nuclei/test", None);
}

fn trained_bytes(t: &TrainingTask) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut t = t.clone();
    t.output_parameters = Some(dir.path().join("out.safetensors"));
    run_in_worker(&fedwasm_bin(), &t, Duration::from_secs(300), &mut |_| {}).unwrap();
    std::fs::read(t.output_parameters.unwrap()).unwrap()
}

#[test]
fn cnn_runs_repeat_bit_for_bit_and_another_seed_differs() {
    let args = |seed: u32| {
        format!(r#"{{"num_updates": 20, "random_seed": {seed}, "optimizer_args": {{"lr": 0.05}}}}"#)
    };
    let first = trained_bytes(&cnn_task(&args(8), true));
    assert_eq!(first, trained_bytes(&cnn_task(&args(8), true)));
    assert_ne!(first, trained_bytes(&cnn_task(&args(9), true)));
}

/// DP-SGD clips each image's gradient through convolution, pooling and
/// linear layers (checked against per-sample backward passes in the SDK's
/// own tests); BatchNorm, which mixes the images of a batch, is refused.
#[test]
fn cnn_trains_under_dp_sgd_without_batch_norm_and_refuses_it_with() {
    let dp = r#"{"num_updates": 10, "random_seed": 2, "dp_args": {"type": "local", "sigma": 0.8, "clip": 1.0}}"#;
    assert_same_bytes::<cnn::Cnn>(cnn_task(dp, false));
    let err = run_in_worker(
        &fedwasm_bin(),
        &cnn_task(dp, true),
        Duration::from_secs(300),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("BatchNorm in training mixes the samples"),
        "{err}"
    );
}

/// A plan crate outside `plans/` with its own layer and training step: it
/// trains, its tensors carry the names its modules give, its arguments are
/// checked, and native and wasm builds agree bit for bit.
#[test]
fn a_plan_with_its_own_layer_and_training_step_keeps_the_sdks_guarantees() {
    let t = |model_args: serde_json::Value| {
        task(
            crate::support::hostile_plan("custom-plan"),
            "breast_cancer.csv",
            "diagnosis",
            model_args,
            r#"{"num_updates": 60, "random_seed": 6, "optimizer_args": {"lr": 0.1, "max_grad_norm": 0.5}}"#,
        )
    };
    let good = t(serde_json::json!({"n_features": 30, "n_classes": 2, "hidden": 8}));
    let bytes = trained_bytes(&good);
    let (tensors, _) = fedwasm::tensors::from_bytes(&bytes).unwrap();
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "hidden.gate",
            "hidden.linear.bias",
            "hidden.linear.weight",
            "norm.bias",
            "norm.weight",
            "out.bias",
            "out.weight",
            "position"
        ]
    );
    // The gates learned (they start at 0).
    assert!(tensors[0].data.iter().any(|g| *g != 0.0));
    assert_same_bytes::<custom_plan::Custom>(good);
    let err = run_in_worker(
        &fedwasm_bin(),
        &t(serde_json::json!({"n_features": 30})),
        Duration::from_secs(300),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("n_classes"), "{err}");
}
