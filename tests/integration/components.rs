//! Components that are not plans are refused with a clear error.

use fedwasm::sandbox::{Sandbox, SandboxConfig, SandboxError};

use crate::support::{example_plan, hostile_plan};

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig::default()).unwrap()
}

#[test]
fn garbage_bytes_are_not_a_component() {
    let err = sandbox().load(b"this is not wasm at all").err().unwrap();
    assert!(matches!(err, SandboxError::NotAComponent { .. }));
    assert!(err.to_string().contains("magic number"), "{err}");
    let err = sandbox().load(b"").err().unwrap();
    assert_eq!(err.code(), "not-a-component");
}

#[test]
fn a_core_module_is_refused_with_the_fix() {
    // The smallest valid core module: magic number and version 1.
    let err = sandbox().load(b"\0asm\x01\0\0\0").err().unwrap();
    let text = err.to_string();
    assert!(
        text.contains("core WebAssembly module, not a component"),
        "{text}"
    );
    assert!(text.contains("wasm32-wasip2"), "{text}");
}

#[test]
fn a_truncated_component_fails_to_compile() {
    let bytes = std::fs::read(example_plan("logistic-regression")).unwrap();
    let err = sandbox().load(&bytes[..bytes.len() / 2]).err().unwrap();
    assert_eq!(err.code(), "compile", "{err}");
}

#[test]
fn a_component_of_another_world_is_refused() {
    let err = sandbox()
        .load_file(&hostile_plan("hostile-other-world"))
        .err()
        .unwrap();
    assert!(matches!(err, SandboxError::WrongWorld { .. }), "{err}");
    assert!(err.to_string().contains("fedwasm:plan/plan@0.3.0"), "{err}");
}

#[test]
fn plans_built_for_earlier_contracts_are_refused_naming_both_contracts() {
    for (fixture, contract) in [
        ("hostile-contract-0-1", "0.1.0"),
        ("hostile-contract-0-2", "0.2.0"),
    ] {
        let err = sandbox().load_file(&hostile_plan(fixture)).err().unwrap();
        assert!(matches!(err, SandboxError::WrongWorld { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("built for plan contract {contract}"))
                && text.contains("this node serves 0.3.0")
                && text.contains("rebuild the plan"),
            "{text}"
        );
    }
}

#[test]
fn loading_is_cached_by_digest_and_on_disk() {
    let path = example_plan("logistic-regression");
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..SandboxConfig::default()
    };
    let first = Sandbox::new(config.clone()).unwrap();
    let a = first.load_file(&path).unwrap();
    let b = first.load_file(&path).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "second load hits the memory cache"
    );
    let cached: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].to_string_lossy().contains(&a.digest().to_hex()));
    // A new sandbox (as in a new process) loads the compiled artifact and runs it.
    let second = Sandbox::new(config).unwrap();
    let plan = second.load_file(&path).unwrap();
    let mut instance = second
        .instantiate(&plan, &fedwasm::sandbox::random::StreamSeed([0; 32]))
        .unwrap();
    assert_eq!(instance.describe().unwrap().name, "logistic-regression");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}
