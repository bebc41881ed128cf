//! Build a plan crate into a component, for `fedwasm plan build`.
//!
//! Runs `cargo build --release --target wasm32-wasip2` in the plan's folder
//! with the code generation the SDK needs passed on the command line
//! ([`CODEGEN_CONFIG`]: 128-bit SIMD, an optimised release profile), so a
//! plan crate anywhere builds as the example plans in `plans/` do; finds the
//! component cargo produced from its JSON messages, and copies it out.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::digest::Sha256Digest;

/// The target plans are built for.
pub const PLAN_TARGET: &str = "wasm32-wasip2";

/// Cargo `--config` values every plan is built with, wherever its crate
/// lives. Without simd128 a plan's own arithmetic runs about three times
/// slower (the SDK refuses to compile without it); without the release
/// settings the component is larger and slower. Command-line values add to
/// the crate's own `rustflags` and take precedence over its profile.
pub const CODEGEN_CONFIG: [&str; 6] = [
    SIMD128_CONFIG,
    "profile.release.opt-level=3",
    "profile.release.lto=\"fat\"",
    "profile.release.codegen-units=1",
    "profile.release.panic=\"abort\"",
    "profile.release.strip=\"debuginfo\"",
];

/// The `--config` value that turns on 128-bit SIMD for plans.
pub const SIMD128_CONFIG: &str =
    "target.wasm32-wasip2.rustflags=[\"-C\", \"target-feature=+simd128\"]";

/// A freshly built plan.
#[derive(Debug, Clone)]
pub struct BuiltPlan {
    /// The package name of the plan crate.
    pub name: String,
    /// Where the component was copied.
    pub path: PathBuf,
    /// SHA-256 of the component: what a node approves.
    pub digest: Sha256Digest,
    /// Size in bytes.
    pub size: u64,
}

/// Why a plan could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PlanBuildError {
    /// The folder has no readable Cargo.toml with a package name.
    #[error("{path}: {reason}")]
    NotAPlanCrate {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// cargo could not be started.
    #[error("cannot run cargo ({0}); install Rust from rustup.rs")]
    NoCargo(std::io::Error),
    /// cargo failed; its diagnostics went to stderr.
    #[error("cargo build failed ({status}); see the compiler messages above{hint}")]
    CargoFailed {
        /// cargo's exit status.
        status: String,
        /// A hint when the target is missing.
        hint: String,
    },
    /// cargo succeeded but produced no component.
    #[error(
        "cargo built no .wasm component for `{0}`; the plan crate needs `crate-type = [\"cdylib\"]`"
    )]
    NoArtifact(String),
    /// Copying the component failed.
    #[error("cannot write {path}: {source}")]
    Copy {
        /// The destination.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn package_name(dir: &Path) -> Result<String, PlanBuildError> {
    let manifest = dir.join("Cargo.toml");
    let bad = |reason: String| PlanBuildError::NotAPlanCrate {
        path: manifest.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| bad(format!("{e}; pass the folder of a plan crate")))?;
    let doc: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    doc.get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            bad("no [package] name; pass the folder of a plan crate, not of a workspace".into())
        })
}

fn target_installed() -> bool {
    Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|sysroot| sysroot.join("lib/rustlib").join(PLAN_TARGET).exists())
}

/// Build the plan crate in `dir` and copy its component to `out`
/// (default: `<package>.wasm` in the current folder). `target_dir` overrides
/// cargo's target folder.
pub fn build_plan(
    dir: &Path,
    out: Option<&Path>,
    target_dir: Option<&Path>,
) -> Result<BuiltPlan, PlanBuildError> {
    let name = package_name(dir)?;
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            PLAN_TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .args(CODEGEN_CONFIG.iter().flat_map(|c| ["--config", c]))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(t) = target_dir {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    let mut child = cmd.spawn().map_err(PlanBuildError::NoCargo)?;
    let lib_name = name.replace('-', "_");
    let mut artifact = None;
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let is_plan = msg["reason"] == "compiler-artifact"
                && msg["target"]["name"] == lib_name.as_str()
                && msg["target"]["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
            if is_plan {
                artifact = msg["filenames"]
                    .as_array()
                    .and_then(|f| {
                        f.iter()
                            .filter_map(|f| f.as_str())
                            .find(|f| f.ends_with(".wasm"))
                    })
                    .map(PathBuf::from);
            }
        }
    }
    let status = child.wait().map_err(PlanBuildError::NoCargo)?;
    if !status.success() {
        let hint = if target_installed() {
            String::new()
        } else {
            format!(
                "; the {PLAN_TARGET} target seems missing: run `rustup target add {PLAN_TARGET}`"
            )
        };
        return Err(PlanBuildError::CargoFailed {
            status: status.to_string(),
            hint,
        });
    }
    let artifact = artifact.ok_or_else(|| PlanBuildError::NoArtifact(name.clone()))?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(format!("{name}.wasm")));
    std::fs::copy(&artifact, &out).map_err(|source| PlanBuildError::Copy {
        path: out.clone(),
        source,
    })?;
    let digest = Sha256Digest::of_file(&out).map_err(|source| PlanBuildError::Copy {
        path: out.clone(),
        source,
    })?;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    Ok(BuiltPlan {
        name,
        path: out,
        digest,
        size,
    })
}
