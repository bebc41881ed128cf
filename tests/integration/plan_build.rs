//! `fedwasm plan build`: the printed SHA-256 is the file's; a plan crate
//! outside the repository builds with the code generation of `plans/`.

use std::process::Command;

use fedwasm::digest::Sha256Digest;

use crate::support::{BUILD, fedwasm_bin, root, wasm_target_dir};

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
    match Command::new("sha256sum").arg(&out).output() {
        Ok(sum) => {
            let sum = String::from_utf8_lossy(&sum.stdout);
            assert!(sum.starts_with(&digest.to_hex()), "sha256sum says {sum}");
        }
        // fedwasm's own digest of the file was checked above.
        Err(e) => eprintln!("skipped the cross-check with sha256sum: {e}"),
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

/// A plan crate of its own in `dir` (its own workspace, the SDK by path,
/// the example logistic regression's code and `plans/`'s lock file).
fn outside_crate(dir: &std::path::Path) {
    let sdk = root().join("plans/sdk");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"outside-plan\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nfedwasm-plan = {{ path = {:?} }}\n\n[workspace]\n",
            sdk.to_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::copy(
        root().join("plans/logistic-regression/src/lib.rs"),
        dir.join("src/lib.rs"),
    )
    .unwrap();
    std::fs::copy(root().join("plans/Cargo.lock"), dir.join("Cargo.lock")).unwrap();
}

#[test]
fn a_plan_crate_outside_the_repository_builds_with_simd_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("outside-plan");
    outside_crate(&crate_dir);
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());

    // Plain cargo, without the flag: the SDK refuses, naming the fix.
    let plain = Command::new(env!("CARGO"))
        .current_dir(&crate_dir)
        .args([
            "build",
            "--release",
            "--target",
            fedwasm::plan_build::PLAN_TARGET,
        ])
        .env("CARGO_TARGET_DIR", wasm_target_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success(), "{stderr}");
    assert!(
        stderr.contains("fedwasm-plan needs 128-bit SIMD") && stderr.contains("fedwasm plan build"),
        "{stderr}"
    );

    // `fedwasm plan build` sets it: the component has SIMD code and the
    // node has nothing to warn about.
    let built = fedwasm::plan_build::build_plan(
        &crate_dir,
        Some(&dir.path().join("outside.wasm")),
        Some(&wasm_target_dir()),
    )
    .unwrap();
    let bytes = std::fs::read(&built.path).unwrap();
    assert!(fedwasm::sandbox::codegen::uses_simd128(&bytes));
    let sandbox = fedwasm::sandbox::Sandbox::new(Default::default()).unwrap();
    let plan = sandbox.load(&bytes).unwrap();
    assert!(
        plan.build_warnings().is_empty(),
        "{:?}",
        plan.build_warnings()
    );
}
