//! Helpers shared by the benchmarks.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fedwasm::plan_build::build_plan;

/// Median of `repeats` timings of `f`, each divided by `per` (operations per call).
pub fn median(repeats: usize, per: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed() / per as u32
        })
        .collect();
    times.sort();
    times[repeats / 2]
}

/// Whether the section `name` was asked for: `cargo bench --bench X -- a b`
/// runs only sections `a` and `b`; no name runs every section.
#[allow(dead_code)] // the network benchmark has no sections
pub fn wanted(name: &str) -> bool {
    let asked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    asked.is_empty() || asked.iter().any(|a| a == name)
}

/// The example plan `name` built as a component (cached across runs).
pub fn component(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plan-components");
    std::fs::create_dir_all(target.join("out")).unwrap();
    let out = target.join(format!("out/{name}.wasm"));
    build_plan(&root.join("plans").join(name), Some(&out), Some(&target))
        .unwrap_or_else(|e| panic!("building plans/{name}: {e}"))
        .path
}
