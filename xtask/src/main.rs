//! `cargo xtask test [cargo test arguments]`: install what the tests need on
//! this machine, then run `cargo test`; without arguments, also check that
//! each role builds alone (`cargo xtask roles`).
//!
//! The tests compile plans for `wasm32-wasip2`, run one federation through
//! Debian's mosquitto broker, link rumqttc's TLS against OpenSSL, and read
//! TensorBoard files with Python's `tensorboard` when it is there. On a fresh
//! machine none of that is installed; this task installs it (the wasm target
//! with rustup, the system packages with apt-get, through sudo when not root,
//! TensorBoard with pip, best effort) and says what to do by hand when it
//! cannot.

use std::path::Path;
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-wasip2";
const PACKAGES: [&str; 3] = ["mosquitto", "libssl-dev", "pkg-config"];

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("test") => {
            let extra: Vec<String> = args.collect();
            let whole = extra.is_empty();
            let outcome = prepare()
                .and_then(|()| run_tests(extra))
                .and_then(|()| if whole { roles() } else { Ok(()) });
            finish(outcome)
        }
        Some("roles") => finish(roles()),
        _ => {
            eprintln!(
                "usage: cargo xtask test [arguments for cargo test]\n       cargo xtask roles"
            );
            ExitCode::FAILURE
        }
    }
}

fn finish(outcome: Result<(), String>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `program args…` ran and succeeded.
fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// The output of `program args…`, if it ran and succeeded.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

fn prepare() -> Result<(), String> {
    wasm_target()?;
    system_packages()?;
    tensorboard();
    Ok(())
}

fn wasm_target() -> Result<(), String> {
    let installed = output("rustup", &["target", "list", "--installed"]).ok_or(
        "rustup is not available; install Rust from https://rustup.rs, then run this again",
    )?;
    if installed.lines().any(|t| t.trim() == WASM_TARGET) {
        return Ok(());
    }
    eprintln!("xtask: adding the {WASM_TARGET} target (plans are compiled for it)");
    if succeeds("rustup", &["target", "add", WASM_TARGET]) {
        Ok(())
    } else {
        Err(format!("`rustup target add {WASM_TARGET}` failed; run it by hand"))
    }
}

fn system_packages() -> Result<(), String> {
    let mosquitto = on_path("mosquitto") || Path::new("/usr/sbin/mosquitto").is_file();
    let openssl = Path::new("/usr/include/openssl/ssl.h").is_file();
    if mosquitto && openssl && on_path("pkg-config") {
        return Ok(());
    }
    let by_hand = format!(
        "the tests need {} (the mosquitto broker, OpenSSL's headers and pkg-config); install them",
        PACKAGES.join(", ")
    );
    if !on_path("apt-get") {
        return Err(format!("{by_hand} with your package manager"));
    }
    let root = output("id", &["-u"]).is_some_and(|id| id.trim() == "0");
    let (program, prefix): (&str, &[&str]) = if root {
        ("apt-get", &[])
    } else if on_path("sudo") {
        ("sudo", &["apt-get"])
    } else {
        return Err(format!("{by_hand} as root (apt-get needs root and sudo is missing)"));
    };
    eprintln!("xtask: installing {} with apt-get", PACKAGES.join(", "));
    let apt = |args: &[&str]| {
        let all: Vec<&str> = prefix.iter().chain(args).copied().collect();
        Command::new(program)
            .args(&all)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut install = vec!["install", "-y", "-qq"];
    install.extend(PACKAGES);
    if apt(&["update", "-qq"]) && apt(&install) {
        Ok(())
    } else {
        Err(format!("apt-get failed; {by_hand} by hand"))
    }
}

/// Python's TensorBoard, for the test that reads our event files with it
/// too. Optional: without it that test checks fedwasm's own reader only.
fn tensorboard() {
    if succeeds("python3", &["-c", "import tensorboard"]) {
        return;
    }
    eprintln!("xtask: installing Python's tensorboard (optional)");
    if !succeeds("python3", &["-m", "pip", "install", "-q", "tensorboard"]) {
        eprintln!("xtask: tensorboard not installed; its half of one test will be skipped");
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run_tests(extra: Vec<String>) -> Result<(), String> {
    match cargo().arg("test").args(extra).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => Err("cargo test failed".into()),
        Err(e) => Err(format!("cannot run cargo test: {e}")),
    }
}

/// Each role's build (cargo features) and the crates it must leave out.
const ROLES: [(&str, &[&str]); 2] = [
    ("researcher", &["rusqlite", "rumqttd", "axum"]),
    ("node", &["rumqttd", "axum"]),
];

/// Build the library for each role alone, and check from `cargo tree` that
/// it does not depend on what that role does not use.
fn roles() -> Result<(), String> {
    for (feature, absent) in ROLES {
        let features = ["--no-default-features", "--features", feature];
        let tree = cargo()
            .args(["tree", "-e", "normal", "--prefix", "none"])
            .args(features)
            .output()
            .map_err(|e| format!("cannot run cargo tree: {e}"))?;
        if !tree.status.success() {
            return Err(format!("cargo tree for the `{feature}` build failed"));
        }
        let tree = String::from_utf8_lossy(&tree.stdout);
        let present: Vec<&str> = absent
            .iter()
            .copied()
            .filter(|name| tree.lines().any(|l| l.starts_with(&format!("{name} v"))))
            .collect();
        if !present.is_empty() {
            return Err(format!(
                "the `{feature}` build depends on {present:?}, which it does not use"
            ));
        }
        eprintln!("xtask: building the `{feature}` role alone (without {absent:?})");
        let built = cargo()
            .args(["build", "--lib"])
            .args(features)
            .status()
            .is_ok_and(|s| s.success());
        if !built {
            return Err(format!(
                "`cargo build --lib --no-default-features --features {feature}` failed"
            ));
        }
    }
    Ok(())
}
