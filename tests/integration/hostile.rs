//! Hostile plans: each is stopped with an error naming the cause, and the same
//! host then runs a good plan correctly.

use std::time::Duration;

use fedwasm::sandbox::{Interruption, Sandbox, SandboxConfig};
use fedwasm::training::{TrainingError, TrainingTask, run_in_worker, run_task};

use crate::support::{breast_cancer_task, data, fedwasm_bin, hostile_plan};

fn hostile_task(name: &str) -> TrainingTask {
    let mut t = breast_cancer_task(r#"{"num_updates": 5}"#);
    t.plan = hostile_plan(name);
    t.model_args = serde_json::json!({});
    t.sandbox.memory_mib = 64;
    t
}

fn good_plan_still_trains(sandbox: &Sandbox) {
    let outcome = run_task(
        sandbox,
        &breast_cancer_task(r#"{"num_updates": 200}"#),
        &mut |_| {},
    )
    .expect("a good plan runs after hostile ones");
    assert!(outcome.training_metric.unwrap().value >= 0.95);
}

fn expect_error(result: Result<impl std::fmt::Debug, TrainingError>, code: &str, needles: &[&str]) {
    let err = result.expect_err("the hostile plan must fail");
    assert_eq!(err.code(), code, "{err}");
    let text = err.to_string();
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` not in: {text}");
    }
}

#[test]
fn in_process_sandbox_stops_each_hostile_plan_and_goes_on() {
    let sandbox = Sandbox::new(SandboxConfig {
        memory_mib: 64,
        call_timeout_secs: 2.0,
        interruption: Interruption::Epoch,
        ..SandboxConfig::default()
    })
    .unwrap();
    let run = |name: &str| run_task(&sandbox, &hostile_task(name), &mut |_| {});
    expect_error(
        run("hostile-spin"),
        "deadline",
        &["deadline of 2.0 s", "`init-model`"],
    );
    expect_error(
        run("hostile-hog"),
        "memory-limit",
        &["memory limit of 64 MiB", "`init-model`"],
    );
    expect_error(
        run("hostile-panic"),
        "trap",
        &[
            "trapped in `init-model`",
            "hostile plan panicked on purpose",
        ],
    );
    // The host would hold the list while the plan gets its copy: refused
    // before it is built, since both together pass the 64 MiB budget.
    expect_error(
        run("hostile-gamble"),
        "memory-limit",
        &["memory limit of 64 MiB", "`init-model`"],
    );
    expect_error(
        run("hostile-recursion"),
        "stack-overflow",
        &["overflowed its stack", "`init-model`"],
    );
    good_plan_still_trains(&sandbox);
}

#[test]
fn hostile_calls_to_the_compute_imports_are_refused_and_the_host_goes_on() {
    let sandbox = Sandbox::new(SandboxConfig {
        memory_mib: 64,
        call_timeout_secs: 10.0,
        interruption: Interruption::Epoch,
        ..SandboxConfig::default()
    })
    .unwrap();
    let run = |name: &str| run_task(&sandbox, &hostile_task(name), &mut |_| {});
    // Dimensions that overflow are refused (the plan checks that); ones
    // that do not fit the tensors come back as the plan's own error.
    expect_error(
        run("hostile-compute-shape"),
        "plan-error",
        &["matmul", "a should hold 8 values, it holds 6"],
    );
    // 4 GiB of output from 4 MiB of inputs: refused before it is allocated.
    expect_error(
        run("hostile-compute-budget"),
        "memory-limit",
        &["memory limit of 64 MiB", "`init-model`"],
    );
    // A handle the host never made: wasmtime's resource table refuses it.
    expect_error(run("hostile-compute-handle"), "trap", &["`init-model`"]);
    // Updates of a tensor passed twice or of a misfit state are the plan's
    // errors (it checks, and the parameter is untouched); then 4 TiB of
    // zeros stops the call at the budget.
    expect_error(
        run("hostile-compute-update"),
        "memory-limit",
        &["memory limit of 64 MiB", "`init-model`"],
    );
    // Broadcasts, sums and losses that overflow or misfit are refused,
    // targets that are no class give NaN; then a sum's 4 GiB gradient from
    // one value stops the call at the budget.
    expect_error(
        run("hostile-compute-reduce"),
        "memory-limit",
        &["memory limit of 64 MiB", "`init-model`"],
    );
    good_plan_still_trains(&sandbox);
}

#[test]
fn worker_is_killed_at_the_deadline_and_reports_limits() {
    let spin = run_in_worker(
        &fedwasm_bin(),
        &hostile_task("hostile-spin"),
        Duration::from_secs(3),
        &mut |_| {},
    );
    expect_error(
        spin,
        "deadline",
        &["deadline of 3.0 s", "worker process was stopped"],
    );
    let deadline = Duration::from_secs(120);
    let hog = run_in_worker(
        &fedwasm_bin(),
        &hostile_task("hostile-hog"),
        deadline,
        &mut |_| {},
    );
    expect_error(hog, "memory-limit", &["memory limit of 64 MiB"]);
    let panic = run_in_worker(
        &fedwasm_bin(),
        &hostile_task("hostile-panic"),
        deadline,
        &mut |_| {},
    );
    expect_error(panic, "trap", &["hostile plan panicked on purpose"]);
    let outcome = run_in_worker(
        &fedwasm_bin(),
        &breast_cancer_task(r#"{"num_updates": 50}"#),
        deadline,
        &mut |_| {},
    );
    assert!(outcome.is_ok(), "{outcome:?}");
}

#[test]
fn an_infinite_validation_error_comes_back_from_the_worker() {
    use fedwasm::sandbox::random::StreamSeed;
    let plan = crate::support::example_plan("linear-regression");
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let loaded = sandbox.load_file(&plan).unwrap();
    let mut instance = sandbox.instantiate(&loaded, &StreamSeed([0; 32])).unwrap();
    instance.init_model(r#"{"n_features": 30}"#).unwrap();
    let mut parameters = instance.get_parameters().unwrap();
    // Finite parameters whose predictions overflow f32: an honest, useless model.
    for t in &mut parameters {
        t.data.fill(f32::MAX);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.safetensors");
    fedwasm::tensors::write_file(&path, &parameters, &Default::default()).unwrap();
    let mut task = crate::support::task(
        plan,
        "breast_cancer.csv",
        "mean_radius",
        serde_json::json!({"n_features": 30}),
        r#"{"num_updates": 1, "test_ratio": 0.2}"#,
    );
    task.initial_parameters = Some(path);
    task.training = false;
    let outcome = run_in_worker(&fedwasm_bin(), &task, Duration::from_secs(120), &mut |_| {})
        .expect("a non-finite score is a result, not a broken worker");
    let score = outcome.validation_global.unwrap();
    assert_eq!(score.metric, "MEAN_SQUARE_ERROR");
    assert!(!score.value.is_finite(), "{}", score.value);
}

#[test]
fn output_past_the_buffer_is_dropped_and_the_plan_goes_on() {
    let mut task = hostile_task("hostile-flood");
    task.model_args = serde_json::json!({"n_features": 30});
    let outcome = run_in_worker(&fedwasm_bin(), &task, Duration::from_secs(120), &mut |_| {});
    let outcome = outcome.expect("printing never fails a plan");
    assert_eq!(outcome.updates, 5);
}

#[test]
fn a_plan_gets_no_file_no_environment_no_socket_and_no_clock() {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    // The plan fails with "escaped: …" if any attempt succeeds.
    let outcome = run_task(&sandbox, &hostile_task("hostile-escape"), &mut |_| {})
        .unwrap_or_else(|e| panic!("the plan got out: {e}"));
    let logs: Vec<&str> = outcome
        .plan_logs
        .iter()
        .map(|r| r.message.as_str())
        .collect();
    assert!(
        logs.iter().any(|m| m.starts_with("file: refused")),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|m| m.starts_with("dir: refused")),
        "{logs:?}"
    );
    assert!(logs.contains(&"env: empty"), "{logs:?}");
    assert!(
        logs.iter().any(|m| m.starts_with("socket: refused")),
        "{logs:?}"
    );
    assert!(logs.contains(&"clock: frozen at the epoch"), "{logs:?}");
    good_plan_still_trains(&sandbox);
}

/// On an image dataset the plan is told counts, sizes and class names and
/// gets tensors: nothing it receives names the folder, and its ways out stay
/// shut.
#[test]
fn a_plan_on_images_sees_sizes_classes_and_tensors_never_a_path() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("secret-hospital-scans");
    for class in ["background", "nucleus"] {
        let from = data("nuclei/train").join(class);
        std::fs::create_dir_all(folder.join(class)).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(&from)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files.iter().take(20) {
            std::fs::copy(file, folder.join(class).join(file.file_name().unwrap())).unwrap();
        }
    }
    let digest = fedwasm::dataset::scan_folder(&folder, &Default::default())
        .unwrap()
        .digest;
    let mut task = hostile_task("hostile-escape");
    task.dataset = folder.clone();
    task.target = None;
    task.images = Some(fedwasm::dataset::ImageSource {
        manifest: None,
        digest,
    });
    task.model_args = serde_json::json!({"n_features": 256});
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let outcome = run_task(&sandbox, &task, &mut |_| {})
        .unwrap_or_else(|e| panic!("the plan got out or failed: {e}"));
    assert_eq!(outcome.updates, 5);
    let logs: Vec<&str> = outcome
        .plan_logs
        .iter()
        .map(|r| r.message.as_str())
        .collect();
    assert!(
        logs.iter().any(|m| m.starts_with("file: refused")),
        "{logs:?}"
    );
    let info = logs
        .iter()
        .find(|m| m.starts_with("dataset-info: "))
        .expect("the plan reports what it was told");
    assert!(
        info.contains("shape: [40, 1, 16, 16]")
            && info.contains("classes: [\"background\", \"nucleus\"]"),
        "{info}"
    );
    let path = folder.to_string_lossy();
    for secret in [path.as_ref(), "secret-hospital-scans", ".png"] {
        assert!(!info.contains(secret), "{secret} reached the plan: {info}");
    }
}

/// A kept worker survives plans that fail cleanly, is replaced after one
/// that overruns, and gives the same parameters as a fresh worker.
#[test]
fn a_kept_worker_survives_failures_and_is_replaced_after_a_deadline() {
    use std::sync::atomic::AtomicBool;
    let never = AtomicBool::new(false);
    let mut worker = fedwasm::training::Worker::new(&fedwasm_bin());
    let dir = tempfile::tempdir().unwrap();
    let good = |name: &str, worker: &mut fedwasm::training::Worker| {
        let mut task = breast_cancer_task(r#"{"num_updates": 20}"#);
        let out = dir.path().join(name);
        task.output_parameters = Some(out.clone());
        worker
            .run(&task, Duration::from_secs(120), &never, &mut |_| {})
            .unwrap();
        std::fs::read(out).unwrap()
    };
    let first = good("first", &mut worker);
    let panic = worker.run(
        &hostile_task("hostile-panic"),
        Duration::from_secs(120),
        &never,
        &mut |_| {},
    );
    expect_error(panic, "trap", &["hostile plan panicked on purpose"]);
    assert_eq!(good("after-panic", &mut worker), first);
    let spin = worker.run(
        &hostile_task("hostile-spin"),
        Duration::from_secs(2),
        &never,
        &mut |_| {},
    );
    expect_error(spin, "deadline", &["worker process was stopped"]);
    assert_eq!(good("after-deadline", &mut worker), first);
    let cancelled = worker.run(
        &hostile_task("hostile-spin"),
        Duration::from_secs(120),
        &AtomicBool::new(true),
        &mut |_| {},
    );
    assert!(
        matches!(cancelled, Err(TrainingError::Cancelled)),
        "{cancelled:?}"
    );
}

#[test]
fn compiling_a_component_is_bounded_in_time_and_memory() {
    let compiling = |timeout: f64, mib: u64| {
        Sandbox::new(
            SandboxConfig {
                compile_timeout_secs: timeout,
                compile_memory_mib: mib,
                ..SandboxConfig::default()
            }
            .compiling_with(fedwasm_bin()),
        )
        .unwrap()
    };
    let plan = crate::support::example_plan("mlp");
    let err = compiling(0.001, 2048).load_file(&plan).err().unwrap();
    assert!(
        err.to_string()
            .contains("longer than 0 s, the compile_timeout_secs limit"),
        "{err}"
    );
    let err = compiling(120.0, 48).load_file(&plan).err().unwrap();
    assert!(
        err.to_string()
            .contains("more than 48 MiB, the compile_memory_mib limit"),
        "{err}"
    );
    // Within the limits, the child's artifact runs like an in-process compile.
    let sandbox = compiling(120.0, 2048);
    let loaded = sandbox.load_file(&plan).unwrap();
    let mut instance = sandbox
        .instantiate(&loaded, &fedwasm::sandbox::random::StreamSeed([0; 32]))
        .unwrap();
    assert_eq!(instance.describe().unwrap().name, "mlp");
}

/// A plan returning more tensors than a parameter file may hold is refused
/// before anything is written or uploaded, and the sandbox goes on to
/// train the next plan.
#[test]
fn parameters_past_the_tensor_limit_are_refused_before_they_are_written() {
    let mut task = hostile_task("hostile-swarm");
    task.model_args = serde_json::json!({"n_features": 30});
    task.sandbox.memory_mib = 512;
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    expect_error(
        run_task(&sandbox, &task, &mut |_| {}),
        "plan-error",
        &[
            "get-parameters",
            "returned 70002 tensors, more than the 65536",
        ],
    );
    good_plan_still_trains(&sandbox);
}
