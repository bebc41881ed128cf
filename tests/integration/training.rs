//! Training the example plans through the worker process, as a node will.

use std::time::Duration;

use fedwasm::training::{MetricName, Progress, TrainingOutcome, TrainingTask, run_in_worker};

use crate::support::{breast_cancer_task, example_plan, fedwasm_bin, task};

const DEADLINE: Duration = Duration::from_secs(300);

fn run(task: &TrainingTask) -> (TrainingOutcome, Vec<Progress>) {
    let mut events = Vec::new();
    let outcome = run_in_worker(&fedwasm_bin(), task, DEADLINE, &mut |p| events.push(p))
        .unwrap_or_else(|e| panic!("training failed: {e}"));
    (outcome, events)
}

#[test]
fn logistic_regression_reaches_95_percent_on_breast_cancer_within_500_updates() {
    let (outcome, events) = run(&breast_cancer_task(
        r#"{"num_updates": 500, "log_interval": 50}"#,
    ));
    let metric = outcome.training_metric.unwrap();
    assert_eq!(metric.name, MetricName::Accuracy);
    assert!(metric.value >= 0.95, "training accuracy {}", metric.value);
    assert_eq!(outcome.updates, 500);
    assert_eq!(outcome.training_samples, 569);
    let losses: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Progress::Loss { update, .. } => Some(*update),
            Progress::Started { .. } => None,
        })
        .collect();
    assert_eq!(losses, (1..=10).map(|i| i * 50).collect::<Vec<_>>());
    assert!(matches!(
        &events[0],
        Progress::Started {
            total_updates: 500,
            ..
        }
    ));
}

#[test]
fn mlp_reaches_90_percent_on_digits() {
    let mut t = task(
        example_plan("mlp"),
        "digits.csv",
        "digit",
        serde_json::json!({"n_features": 64, "n_classes": 10, "hidden": [64]}),
        r#"{"num_updates": 500, "test_ratio": 0.2, "optimizer_args": {"lr": 0.1, "momentum": 0.9}}"#,
    );
    t.node_id = "digits-node".into();
    let (outcome, _) = run(&t);
    let train = outcome.training_metric.unwrap().value;
    let held_out = outcome.test_metric.unwrap().value;
    assert!(train >= 0.90, "training accuracy {train}");
    assert!(held_out >= 0.90, "held-out accuracy {held_out}");
    assert_eq!(outcome.test_samples, 359);
}

#[test]
fn linear_regression_fits_a_linear_column() {
    // mean_perimeter is close to 2π·mean_radius: a near-linear target.
    let (outcome, _) = run(&task(
        example_plan("linear-regression"),
        "breast_cancer.csv",
        "mean_perimeter",
        serde_json::json!({"n_features": 30}),
        r#"{"num_updates": 300, "optimizer_args": {"lr": 0.01}}"#,
    ));
    let mse = outcome.training_metric.unwrap();
    assert_eq!(mse.name, MetricName::Mse);
    // The target's variance is about 590; a fitted model explains almost all of it.
    assert!(mse.value < 10.0, "mse {}", mse.value);
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for (i, seed) in [7u64, 7, 8].into_iter().enumerate() {
        let mut t = task(
            example_plan("mlp"),
            "digits.csv",
            "digit",
            serde_json::json!({"n_features": 64, "n_classes": 10, "hidden": [32]}),
            &format!(r#"{{"num_updates": 60, "random_seed": {seed}}}"#),
        );
        t.output_parameters = Some(dir.path().join(format!("run{i}.safetensors")));
        run(&t);
        outputs.push(std::fs::read(t.output_parameters.unwrap()).unwrap());
    }
    assert_eq!(outputs[0], outputs[1], "same seed, same bytes");
    assert_ne!(outputs[0], outputs[2], "another seed, other parameters");
}

#[test]
fn dry_run_does_one_update_and_epochs_respect_batch_maxnum() {
    let (outcome, _) = run(&breast_cancer_task(r#"{"epochs": 3, "dry_run": true}"#));
    assert_eq!(outcome.updates, 1);
    let (outcome, events) = run(&breast_cancer_task(
        r#"{"epochs": 3, "batch_maxnum": 4, "num_updates": null, "loader_args": {"batch_size": 10}}"#,
    ));
    assert_eq!(outcome.updates, 12);
    assert_eq!(outcome.samples_seen, 120);
    assert!(matches!(&events[0], Progress::Started { warnings, .. } if warnings.is_empty()));
}

#[test]
fn bad_model_args_and_data_are_named() {
    let mut t = breast_cancer_task(r#"{"num_updates": 5}"#);
    t.model_args = serde_json::json!({"n_features": 30});
    let err = run_in_worker(&fedwasm_bin(), &t, DEADLINE, &mut |_| {}).unwrap_err();
    assert_eq!(err.code(), "plan-error");
    assert!(
        err.to_string()
            .contains("missing required model_args.n_classes"),
        "{err}"
    );

    let mut t = breast_cancer_task(r#"{"num_updates": 5}"#);
    t.model_args = serde_json::json!({"n_features": 12, "n_classes": 2});
    let err = run_in_worker(&fedwasm_bin(), &t, DEADLINE, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("has 30 features per sample, the layer takes 12"),
        "{err}"
    );

    let mut t = breast_cancer_task(r#"{"num_updates": 5}"#);
    t.target = Some("mean_radius".into());
    let err = run_in_worker(&fedwasm_bin(), &t, DEADLINE, &mut |_| {}).unwrap_err();
    assert_eq!(err.code(), "dataset");
    assert!(err.to_string().contains("is not 0 or 1"), "{err}");

    let mut t = breast_cancer_task(r#"{"num_updates": 5}"#);
    t.target = Some("no_such_column".into());
    let err = run_in_worker(&fedwasm_bin(), &t, DEADLINE, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("no column `no_such_column`"),
        "{err}"
    );
}

/// FedProx keeps local training near the parameters it started from.
#[test]
fn fedprox_mu_pulls_local_training_towards_the_global_model() {
    let dir = tempfile::tempdir().unwrap();
    // A "global model": 20 plain updates from the plan's zero start.
    let start = dir.path().join("global.safetensors");
    let mut first = breast_cancer_task(r#"{"num_updates": 20, "optimizer_args": {"lr": 0.5}}"#);
    first.output_parameters = Some(start.clone());
    run(&first);
    let (global, _) = fedwasm::tensors::read_file(&start).unwrap();
    let distance = |mu: &str| {
        let out = dir.path().join(format!("mu-{mu}.safetensors"));
        let mut t = breast_cancer_task(&format!(
            r#"{{"num_updates": 200, "random_seed": 3, "optimizer_args": {{"lr": 0.5}}{mu}}}"#
        ));
        t.initial_parameters = Some(start.clone());
        t.output_parameters = Some(out.clone());
        run(&t);
        let (local, _) = fedwasm::tensors::read_file(&out).unwrap();
        local
            .iter()
            .zip(&global)
            .flat_map(|(l, g)| l.data.iter().zip(&g.data).map(|(a, b)| (a - b) * (a - b)))
            .sum::<f32>()
            .sqrt()
    };
    let free = distance("");
    let held = distance(r#", "fedprox_mu": 1.0"#);
    assert!(
        held < free * 0.5,
        "‖w − w_global‖ with mu 1: {held}, without: {free}"
    );
    let bad = TrainingTask {
        training_args: serde_json::from_str(r#"{"num_updates": 1, "fedprox_mu": -1.0}"#).unwrap(),
        ..breast_cancer_task(r#"{"num_updates": 1}"#)
    };
    let err = run_in_worker(&fedwasm_bin(), &bad, DEADLINE, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("fedprox_mu must be a number ≥ 0"),
        "{err}"
    );
}

/// A plan with its own optimizer arguments (`lr` only), hence no DP-SGD.
struct WithoutDpSgd {
    model: fedwasm_plan::nn::Sequential,
}

impl fedwasm_plan::TrainingPlan for WithoutDpSgd {
    const NAME: &'static str = "without-dp-sgd";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "declares only lr as optimizer argument";
    const MODEL_ARGS: &'static [fedwasm_plan::ArgSpec] = &[];
    const OPTIMIZER_ARGS: &'static [fedwasm_plan::ArgSpec] = &[fedwasm_plan::ArgSpec::optional(
        "lr",
        fedwasm_plan::args::ArgType::Number,
        "0.1",
        "learning rate",
    )];

    fn init_model(_: &fedwasm_plan::Args) -> fedwasm_plan::PlanResult<Self> {
        Ok(WithoutDpSgd {
            model: fedwasm_plan::nn::Sequential::new()
                .add("fc", fedwasm_plan::nn::Linear::zeros(30, 1)?),
        })
    }

    fn init_optimizer(
        &self,
        args: &fedwasm_plan::Args,
    ) -> fedwasm_plan::PlanResult<fedwasm_plan::Optimizer> {
        let lr = args.number("lr")?;
        let sgd = fedwasm_plan::Args::parse(
            "optimizer_args",
            &format!(r#"{{"lr": {lr}}}"#),
            fedwasm_plan::optim::OPTIMIZER_ARGS,
        )?;
        fedwasm_plan::Optimizer::from_args(&sgd)
    }

    fn training_data(
        &self,
        _: &fedwasm_plan::types::DatasetInfo,
    ) -> fedwasm_plan::PlanResult<fedwasm_plan::types::DataSpec> {
        Ok(fedwasm_plan::standardized_tabular(
            fedwasm_plan::types::Task::BinaryClassification,
        ))
    }

    fn model(&self) -> &dyn fedwasm_plan::nn::Module {
        &self.model
    }

    fn loss(
        &self,
        output: &fedwasm_plan::Tensor,
        targets: &fedwasm_plan::Tensor,
    ) -> fedwasm_plan::PlanResult<fedwasm_plan::Tensor> {
        fedwasm_plan::Classifier::new(2).loss(output, targets)
    }

    fn predict(
        &self,
        output: &fedwasm_plan::Tensor,
    ) -> fedwasm_plan::PlanResult<fedwasm_plan::Tensor> {
        fedwasm_plan::Classifier::new(2).predict(output)
    }
}

#[test]
fn local_privacy_needs_a_plan_that_implements_dp_sgd() {
    let t = breast_cancer_task(
        r#"{"num_updates": 5, "dp_args": {"type": "local", "sigma": 1.0, "clip": 1.0}}"#,
    );
    let mut plan = crate::native::NativePlan::<WithoutDpSgd>::new(t.plan_seed().unwrap().0);
    let table = fedwasm::dataset::Table::from_csv(&t.dataset).unwrap();
    let digest = fedwasm::digest::Sha256Digest::of(b"native");
    let err = fedwasm::training::train(&mut plan, digest, &table, &t, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("plan without-dp-sgd does not implement local differential privacy")
            && err.contains("dp_args.type = \"central\""),
        "{err}"
    );
    // Central privacy needs nothing from the plan: the node clips and noises.
    let central = TrainingTask {
        training_args: serde_json::from_str(
            r#"{"num_updates": 5, "dp_args": {"type": "central", "sigma": 1.0, "clip": 1.0}}"#,
        )
        .unwrap(),
        model_args: serde_json::json!({}),
        ..t
    };
    let mut plan = crate::native::NativePlan::<WithoutDpSgd>::new(central.plan_seed().unwrap().0);
    let outcome = fedwasm::training::train(&mut plan, digest, &table, &central, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    let spent = outcome.privacy.unwrap();
    assert_eq!((spent.mode.as_str(), spent.steps), ("central", 1));
}
