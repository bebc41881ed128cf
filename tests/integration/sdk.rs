//! The plan SDK's own tests (finite-difference gradient checks and the rest),
//! run natively in the plan workspace, so `cargo test` here covers them too.

use std::process::Command;

use crate::support::root;

#[test]
fn plan_workspace_tests_pass_natively() {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plans-native");
    let output = Command::new(env!("CARGO"))
        .current_dir(root().join("plans"))
        // The kernels' thread-count tests need their rayon pools.
        .args([
            "test",
            "--workspace",
            "--features",
            "fedwasm-kernels/parallel",
        ])
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "plan workspace tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("test result: ok"), "{stdout}");
    assert!(
        stdout.contains("gradients_match_finite_differences"),
        "gradient checks ran: {stdout}"
    );
}
