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

/// What signing costs one message, measured on a train reply (the largest
/// message of a round): (encode alone, encode + sign, verify + decode,
/// decode alone), each the median of 2,000.
#[allow(dead_code)] // the sandbox benchmark sends no message
pub fn signature_costs() -> (Duration, Duration, Duration, Duration) {
    use fedwasm::identity::{Identity, KeyRing, Role, Roster};
    use fedwasm::wire::{BlobRef, Message, TrainReply, TrainTimings, decode, encode, open, seal};
    let node = Identity::from_seed(Role::Node, "hospital-a", [7; 32]);
    let mut roster = Roster::default();
    roster.pin(Role::Node, "hospital-a", node.public()).unwrap();
    let keyring = KeyRing::in_memory(roster);
    let blob = BlobRef {
        sha256: fedwasm::digest::Sha256Digest::of(b"params"),
        size: 1234,
    };
    let reply = Message::TrainReply(TrainReply {
        researcher_id: "researcher-0123456789ab".into(),
        experiment_id: "Experiment_0001".into(),
        request_id: "0123456789abcdef0123456789abcdef".into(),
        round: 3,
        node_id: "hospital-a".into(),
        dataset_id: "dataset-0123456789ab".into(),
        params: blob,
        training_samples: 250,
        updates: 50,
        final_loss: 0.25,
        learning_rate: Some(0.1),
        validation_global: None,
        validation_local: None,
        privacy: None,
        private: false,
        timings: TrainTimings {
            training_ms: 12.5,
            total_ms: 20.1,
            data_ms: 3.0,
            sandbox_ms: 9.0,
            transfer_ms: 2.0,
        },
    });
    let plain = encode(&reply);
    let sealed = seal(&reply, &node);
    let n = 2000;
    let encode_only = median(5, n, || {
        for _ in 0..n {
            std::hint::black_box(encode(&reply));
        }
    });
    let signing = median(5, n, || {
        for _ in 0..n {
            std::hint::black_box(seal(&reply, &node));
        }
    });
    let opening = median(5, n, || {
        for _ in 0..n {
            std::hint::black_box(open(&sealed, &keyring).unwrap());
        }
    });
    let decode_only = median(5, n, || {
        for _ in 0..n {
            std::hint::black_box(decode(&plain).unwrap());
        }
    });
    (encode_only, signing, opening, decode_only)
}
