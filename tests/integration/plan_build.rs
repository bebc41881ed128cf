//! `fedwasm plan build`: the printed SHA-256 is the file's.

use std::process::Command;

use fedwasm::digest::Sha256Digest;

use crate::support::{fedwasm_bin, root, wasm_target_dir};

#[test]
fn plan_build_prints_the_sha256_of_the_written_component() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lr.wasm");
    let output = Command::new(fedwasm_bin())
        .args(["plan", "build"])
        .arg(root().join("plans/linear-regression"))
        .arg("-o")
        .arg(&out)
        .env("CARGO_TARGET_DIR", wasm_target_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let digest = Sha256Digest::of_file(&out).unwrap();
    assert!(stdout.contains(&format!("sha256 {digest}")), "{stdout}");
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(stdout.contains(&format!("size   {size} bytes")), "{stdout}");
    if let Ok(sum) = Command::new("sha256sum").arg(&out).output() {
        let sum = String::from_utf8_lossy(&sum.stdout);
        assert!(sum.starts_with(&digest.to_hex()), "sha256sum says {sum}");
    }
}

#[test]
fn plan_build_of_a_folder_without_a_crate_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(fedwasm_bin())
        .args(["plan", "build"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Cargo.toml") && stderr.contains("pass the folder of a plan crate"),
        "{stderr}"
    );
}
