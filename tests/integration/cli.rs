//! What the `fedwasm plan` commands print, as snapshots.

use std::process::Command;

use fedwasm::digest::Sha256Digest;

use crate::support::{data, example_plan, fedwasm_bin};

/// Run the binary; return (success, stdout, stderr) with machine-specific
/// values replaced by placeholders.
fn fedwasm(args: &[&str], replace: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(fedwasm_bin())
        .args(args)
        .env("FEDWASM_DIR", env!("CARGO_TARGET_TMPDIR"))
        .output()
        .unwrap();
    let clean = |bytes: &[u8]| {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        for (from, to) in replace {
            text = text.replace(from, to);
        }
        text
    };
    (out.status.success(), clean(&out.stdout), clean(&out.stderr))
}

#[test]
fn plan_inspect_shows_info_arguments_and_interface() {
    let plan = example_plan("mlp");
    let digest = Sha256Digest::of_file(&plan).unwrap().to_hex();
    let size = std::fs::metadata(&plan).unwrap().len().to_string();
    let (ok, stdout, stderr) = fedwasm(
        &["plan", "inspect", plan.to_str().unwrap()],
        &[(&digest, "[sha256]"), (&size, "[size]")],
    );
    assert!(ok, "{stderr}");
    insta::assert_snapshot!(stdout);
}

/// `fedwasm plan check` of the logistic-regression plan on breast_cancer.csv with `extra` arguments.
fn check_breast_cancer(extra: &[&str]) -> (bool, String, String) {
    let plan = example_plan("logistic-regression");
    let csv = data("breast_cancer.csv");
    let mut args = vec![
        "plan",
        "check",
        plan.to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
    ];
    args.extend(["--target", "diagnosis"]);
    args.extend(extra);
    fedwasm(&args, &[])
}

#[test]
fn plan_check_names_a_missing_model_argument() {
    let (ok, stdout, stderr) = check_breast_cancer(&[
        "--model-args",
        r#"{"n_features": 30}"#,
        "--training-args",
        r#"{"num_updates": 10}"#,
    ]);
    assert!(!ok);
    assert_eq!(stdout, "");
    insta::assert_snapshot!(stderr);
}

#[test]
fn plan_check_refuses_unknown_training_args() {
    let (ok, _, stderr) = check_breast_cancer(&["--training-args", r#"{"num_update": 10}"#]);
    assert!(!ok);
    insta::assert_snapshot!(stderr);
}

#[test]
fn plan_check_reports_progress_and_accuracy() {
    let (ok, stdout, stderr) = check_breast_cancer(&[
        "--model-args",
        r#"{"n_features": 30, "n_classes": 2}"#,
        "--training-args",
        r#"{"num_updates": 100, "log_interval": 25, "test_ratio": 0.2}"#,
    ]);
    assert!(ok, "{stderr}");
    // Timings vary from run to run; everything else is deterministic.
    let stable: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("trained ") && !l.starts_with("plan sha256"))
        .collect();
    insta::assert_snapshot!(stable.join("\n"));
}

/// The `cnn` plan sees each 64-pixel row of the digits table as a 1×8×8
/// image and, with BatchNorm and Dropout on, fits it well in the sandbox.
#[test]
fn plan_check_trains_the_cnn_on_digits_viewed_as_images() {
    let plan = example_plan("cnn");
    let csv = data("digits.csv");
    let check = |model_args: &str, training_args: &str| {
        fedwasm(
            &[
                "plan",
                "check",
                plan.to_str().unwrap(),
                "--data",
                csv.to_str().unwrap(),
                "--target",
                "digit",
                "--model-args",
                model_args,
                "--training-args",
                training_args,
            ],
            &[],
        )
    };
    let (ok, stdout, stderr) = check(
        r#"{"input_shape": [1, 8, 8], "n_classes": 10}"#,
        r#"{"num_updates": 300, "loader_args": {"batch_size": 32},
            "optimizer_args": {"lr": 0.05, "momentum": 0.9}}"#,
    );
    assert!(ok, "{stderr}");
    let accuracy: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("training accuracy "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no training accuracy in {stdout}"));
    assert!(accuracy >= 0.95, "training accuracy {accuracy}:\n{stdout}");
    let (ok, _, stderr) = check(
        r#"{"input_shape": [1, 8, 9], "n_classes": 10}"#,
        r#"{"num_updates": 1}"#,
    );
    assert!(!ok);
    assert!(
        stderr.contains("needs 72 feature columns per image, the dataset has 64"),
        "{stderr}"
    );
}

/// `fedwasm evaluate` scores the parameters `plan check --output` saved,
/// with every classification metric or the one asked for, and refuses
/// parameters of another model by name.
#[test]
fn evaluate_scores_saved_parameters_with_the_nodes_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let params = dir.path().join("lr.safetensors");
    let lr_args = r#"{"n_features": 30, "n_classes": 2}"#;
    let (ok, _, stderr) = check_breast_cancer(&[
        "--model-args",
        lr_args,
        "--training-args",
        r#"{"num_updates": 200}"#,
        "--output",
        params.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let plan = example_plan("logistic-regression");
    let digest = Sha256Digest::of_file(&plan).unwrap().to_hex();
    let csv = data("breast_cancer.csv");
    let evaluate = |plan: &std::path::Path, model_args: &str, extra: &[&str]| {
        let mut args = vec![
            "evaluate",
            plan.to_str().unwrap(),
            params.to_str().unwrap(),
            "--data",
            csv.to_str().unwrap(),
            "--target",
            "diagnosis",
        ];
        if !model_args.is_empty() {
            args.extend(["--model-args", model_args]);
        }
        args.extend(extra);
        fedwasm(
            &args,
            &[
                (&digest, "[sha256]"),
                (csv.to_str().unwrap(), "[data]"),
                (params.to_str().unwrap(), "[params]"),
            ],
        )
    };
    let (ok, stdout, stderr) = evaluate(&plan, lr_args, &[]);
    assert!(ok, "{stderr}");
    let accuracy: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ACCURACY"))
        .and_then(|v| v.trim().parse().ok())
        .expect("an ACCURACY line");
    // 200 updates of logistic regression fit the 569 rows it trained on.
    assert!(accuracy > 0.95, "{stdout}");
    let auc: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("AUC"))
        .and_then(|v| v.trim().parse().ok())
        .expect("an AUC line");
    assert!(auc > accuracy && auc <= 1.0, "{stdout}");
    insta::assert_snapshot!(stdout);

    // Without --model-args, those the file records: the same scores.
    let (ok, recorded, stderr) = evaluate(&plan, "", &[]);
    assert!(ok, "{stderr}");
    let scores = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| !l.starts_with("model_args"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(scores(&recorded), scores(&stdout));
    assert!(
        recorded.contains(
            r#"model_args {"n_classes":2,"n_features":30} (recorded in the parameter file)"#
        ),
        "{recorded}"
    );
    let (ok, same, stderr) = evaluate(&plan, r#"{"n_classes": 2, "n_features": 30}"#, &[]);
    assert!(
        ok && same.contains("(from --model-args)\n"),
        "{same}{stderr}"
    );

    let (ok, stdout, stderr) = evaluate(
        &plan,
        lr_args,
        &[
            "--metric",
            "f1_score",
            "--metric-args",
            r#"{"average": "macro"}"#,
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert!(stdout.lines().nth(4).unwrap().starts_with("F1_SCORE"));

    // Only the designated test rows, with a split column: the last 69.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let mut split_csv = format!("{},fold\n", lines.next().unwrap());
    for (i, line) in lines.enumerate() {
        split_csv.push_str(&format!("{line},{}\n", u8::from(i >= 500)));
    }
    let with_fold = dir.path().join("with-fold.csv");
    std::fs::write(&with_fold, split_csv).unwrap();
    let out = fedwasm(
        &[
            "evaluate",
            plan.to_str().unwrap(),
            params.to_str().unwrap(),
            "--data",
            with_fold.to_str().unwrap(),
            "--target",
            "diagnosis",
            "--model-args",
            lr_args,
            "--split-column",
            "fold",
        ],
        &[],
    );
    assert!(
        out.0 && out.1.contains("data       69 rows of"),
        "{}{}",
        out.1,
        out.2
    );

    for (plan, model_args, extra, expected) in [
        (
            example_plan("mlp"),
            r#"{"n_features": 30, "n_classes": 2, "hidden": [8]}"#,
            &[][..],
            "was trained with the plan of sha256",
        ),
        (
            plan.clone(),
            r#"{"n_features": 10, "n_classes": 2}"#,
            &[][..],
            "does not fit the plan `logistic-regression` with these --model-args",
        ),
        (plan.clone(), lr_args, &["--metric", "ROC"][..], "ACCURACY"),
        (
            plan.clone(),
            lr_args,
            &["--metric-args", r#"{"average": "macro"}"#][..],
            "--metric-args needs --metric",
        ),
    ] {
        let (ok, _, stderr) = evaluate(&plan, model_args, extra);
        assert!(!ok, "{extra:?} accepted");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
}

/// `plan check` trains the cnn on an image folder as a node would, and
/// `evaluate` scores the result on another folder; a size the images cannot
/// give is refused naming the argument.
#[test]
fn plan_check_and_evaluate_work_on_image_folders() {
    let dir = tempfile::tempdir().unwrap();
    let params = dir.path().join("cnn.safetensors");
    let plan = example_plan("cnn");
    let digest = Sha256Digest::of_file(&plan).unwrap().to_hex();
    let (train, test) = (data("nuclei/train"), data("nuclei/test"));
    let model_args = r#"{"input_shape": [1, 16, 16], "n_classes": 2, "channels": [8, 16], "hidden": [32], "mean": 0.167, "std": 0.12, "horizontal_flip": true}"#;
    let check = |model_args: &str| {
        fedwasm(
            &[
                "plan",
                "check",
                plan.to_str().unwrap(),
                "--data",
                train.to_str().unwrap(),
                "--model-args",
                model_args,
                "--training-args",
                r#"{"num_updates": 60, "test_ratio": 0.2, "random_seed": 1, "optimizer_args": {"lr": 0.05, "momentum": 0.9}}"#,
                "--output",
                params.to_str().unwrap(),
            ],
            &[],
        )
    };
    let (ok, stdout, stderr) = check(model_args);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("plan cnn: 1280 training samples, 320 held out, 60 updates"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = fedwasm(
        &[
            "evaluate",
            plan.to_str().unwrap(),
            params.to_str().unwrap(),
            "--data",
            test.to_str().unwrap(),
            "--model-args",
            model_args,
        ],
        &[
            (&digest, "[sha256]"),
            (test.to_str().unwrap(), "[data]"),
            (params.to_str().unwrap(), "[params]"),
        ],
    );
    assert!(ok, "{stderr}");
    let accuracy: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ACCURACY"))
        .and_then(|v| v.trim().parse().ok())
        .expect("an ACCURACY line");
    assert!(accuracy >= 0.9, "{stdout}");
    insta::assert_snapshot!(stdout);

    let too_big = model_args.replace("[1, 16, 16]", "[1, 32, 32]").replace(
        "\"horizontal_flip\": true",
        "\"horizontal_flip\": true, \"fit\": \"center-crop\"",
    );
    let (ok, _, stderr) = check(&too_big);
    assert!(!ok);
    assert!(
        stderr.contains("data-spec.images: center-crop to 32×32 asked, but the images are 16×16"),
        "{stderr}"
    );
}

/// `plan check` trains the unet on a mask manifest (`--mask-column`) and
/// prints Dice; `evaluate` scores the result on the held-out manifest with
/// every metric of segmentation; labelling a manifest two ways is refused.
#[test]
fn plan_check_and_evaluate_segment_mask_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let params = dir.path().join("unet.safetensors");
    let plan = example_plan("unet");
    let digest = Sha256Digest::of_file(&plan).unwrap().to_hex();
    let (train, test) = (
        data("nuclei-masks/train.csv"),
        data("nuclei-masks/test.csv"),
    );
    let model_args = r#"{"input_shape": [1, 32, 32], "n_classes": 2, "mean": 0.167, "std": 0.12, "horizontal_flip": true, "vertical_flip": true}"#;
    let (ok, stdout, stderr) = fedwasm(
        &[
            "plan",
            "check",
            plan.to_str().unwrap(),
            "--data",
            train.to_str().unwrap(),
            "--image-column",
            "image",
            "--mask-column",
            "mask",
            "--model-args",
            model_args,
            "--training-args",
            r#"{"num_updates": 100, "test_ratio": 0.1, "random_seed": 1, "loader_args": {"batch_size": 16}, "optimizer_args": {"lr": 0.05, "momentum": 0.9}}"#,
            "--output",
            params.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("plan unet: 642 training samples, 71 held out, 100 updates")
            && stdout.contains("held-out dice"),
        "{stdout}"
    );
    let evaluate = |extra: &[&str]| {
        let mut args = vec![
            "evaluate",
            plan.to_str().unwrap(),
            params.to_str().unwrap(),
            "--data",
            test.to_str().unwrap(),
            "--image-column",
            "image",
            "--model-args",
            model_args,
        ];
        args.extend_from_slice(extra);
        fedwasm(
            &args,
            &[
                (&digest, "[sha256]"),
                (test.to_str().unwrap(), "[data]"),
                (params.to_str().unwrap(), "[params]"),
            ],
        )
    };
    let (ok, stdout, stderr) = evaluate(&["--mask-column", "mask"]);
    assert!(ok, "{stderr}");
    let dice: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DICE"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a DICE line");
    // A brightness threshold chosen on the test tiles themselves reaches
    // 0.874 (data/README.md); 100 updates of the U-Net reach 0.91.
    assert!(dice >= 0.85, "{stdout}");
    insta::assert_snapshot!(stdout);
    let (ok, _, stderr) = evaluate(&["--mask-column", "mask", "--target", "mask"]);
    assert!(!ok && stderr.contains("not both"), "{stderr}");
    let (ok, _, stderr) = evaluate(&["--mask-column", "mask", "--metric", "AUC"]);
    assert!(!ok && stderr.contains("score masks by DICE"), "{stderr}");
}

/// `fedwasm evaluate` compiles a plan it was given as a node does: in a
/// child process, under a time and a memory limit.
#[test]
fn evaluate_compiles_the_plan_under_limits() {
    let plan = example_plan("mlp");
    let (ok, _, err) = fedwasm(
        &[
            "evaluate",
            plan.to_str().unwrap(),
            "params.safetensors",
            "--data",
            data("digits.csv").to_str().unwrap(),
            "--compile-memory-mib",
            "48",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("more than 48 MiB, the compile_memory_mib limit"),
        "{err}"
    );
}
