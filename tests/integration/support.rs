//! Shared helpers: building plan components once per test run, paths, tasks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use fedwasm::plan_build::{PLAN_TARGET, SIMD128_CONFIG, build_plan};
use fedwasm::sandbox::SandboxConfig;
use fedwasm::training::{TrainingArgs, TrainingTask};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `fedwasm` binary under test.
pub fn fedwasm_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fedwasm"))
}

/// Cargo target folder for components built by the tests, kept between runs.
pub fn wasm_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plan-components")
}

/// One cargo build at a time: builds of the two plan workspaces share nothing,
/// but two at once only slow each other on a small machine.
pub static BUILD: Mutex<()> = Mutex::new(());

/// The component of an example plan in `plans/` (built once per run with
/// `fedwasm::plan_build`, the code behind `fedwasm plan build`).
pub fn example_plan(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    if let Some((_, p)) = built.lock().unwrap().iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let out_dir = wasm_target_dir().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{name}.wasm"));
    let plan = build_plan(
        &root().join("plans").join(name),
        Some(&out),
        Some(&wasm_target_dir()),
    )
    .unwrap_or_else(|e| panic!("building plans/{name}: {e}"));
    built
        .lock()
        .unwrap()
        .push((name.to_string(), plan.path.clone()));
    plan.path
}

/// The component of a hostile plan in `tests/plans/` (the whole workspace is built once).
pub fn hostile_plan(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
        let status = Command::new(env!("CARGO"))
            .current_dir(root().join("tests/plans"))
            .args(["build", "--release", "--target", PLAN_TARGET])
            .args(["--config", SIMD128_CONFIG])
            .env("CARGO_TARGET_DIR", wasm_target_dir())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building tests/plans failed");
    });
    let file = format!("{}.wasm", name.replace('-', "_"));
    wasm_target_dir()
        .join(PLAN_TARGET)
        .join("release")
        .join(file)
}

/// Start `command` with its stdout piped and return it with the address its
/// first line ends with (`… listening on <url>`, as `fedwasm broker` and
/// `fedwasm repository` print).
pub fn spawn_server(command: &mut Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    (child, url)
}

/// Start `command` with no input and its output appended to `log`.
pub fn spawn_logged(command: &mut Command, log: &Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// SIGTERM `child` and wait for it to end.
pub fn terminate(mut child: std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap()
}

/// A shipped dataset.
pub fn data(name: &str) -> PathBuf {
    root().join("data").join(name)
}

/// A training task on a shipped dataset with default limits.
pub fn task(
    plan: PathBuf,
    dataset: &str,
    target: &str,
    model_args: serde_json::Value,
    training_args: &str,
) -> TrainingTask {
    TrainingTask {
        plan,
        dataset: data(dataset),
        images: None,
        target: Some(target.to_string()),
        model_args,
        training_args: TrainingArgs::from_json(training_args).expect("valid training args"),
        experiment_id: None,
        round: 0,
        node_id: "test-node".to_string(),
        initial_parameters: None,
        gradient_correction: None,
        output_parameters: None,
        sandbox: SandboxConfig::default(),
        training: true,
        report_split_metrics: true,
        split_column: None,
        noise_key: Some([7; 32]),
    }
}

/// The standard breast-cancer logistic-regression task.
pub fn breast_cancer_task(training_args: &str) -> TrainingTask {
    task(
        example_plan("logistic-regression"),
        "breast_cancer.csv",
        "diagnosis",
        serde_json::json!({"n_features": 30, "n_classes": 2}),
        training_args,
    )
}

/// The message inside a signed envelope, unchecked: for tests that watch
/// the broker's traffic rather than take part in it.
pub fn body_of(payload: &[u8]) -> Option<fedwasm::wire::Message> {
    let envelope: serde_json::Value = serde_json::from_slice(payload).ok()?;
    fedwasm::wire::decode(envelope.get("body")?.as_str()?.as_bytes()).ok()
}

/// A key nobody pinned, for connections that only listen or are refused.
pub fn stray_identity() -> std::sync::Arc<fedwasm::identity::Identity> {
    std::sync::Arc::new(
        fedwasm::identity::Identity::generate(fedwasm::identity::Role::Researcher, "stray")
            .unwrap(),
    )
}
