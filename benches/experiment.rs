//! Researcher-side benchmarks, measured in one run:
//! - FedAvg of 10 replies × 10M f32 parameters: throughput vs a memcpy of the
//!   same bytes, and the process's peak RSS while streaming the replies from
//!   files, relative to the model size;
//! - orchestration overhead per round with 2, 10 and 50 in-process nodes on
//!   real MQTT (embedded broker) and a one-update plan;
//! - the demo workload (3 nodes, batch 32, 50 updates, 10 rounds), launch to
//!   last round done;
//! - a round of the CNN demo on images (`demo --plan cnn`), the nodes' time
//!   split into data (reading, preparing, building batches), sandbox
//!   compute (training steps), transfer (downloads, upload) and the rest.
//!
//! `cargo bench --bench experiment [-- fedavg orchestration demo cnn]` (no name: all).

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{component, median, signature_costs, wanted};
use fedwasm::demo::{DemoOptions, DemoPlan, ShardSplit, run_demo};
use fedwasm::digest::Sha256Digest;
use fedwasm::node::NewDataset;
use fedwasm::researcher::aggregators::{Aggregator, FedAvg, OrderedFolder};
use fedwasm::researcher::{Experiment, ExperimentSettings, Tags};
use fedwasm::sandbox::types::Tensor;
use fedwasm::{LocalFederation, LocalFederationConfig, LocalNode};
use serde_json::json;

/// Peak resident set of this process so far, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Reset the peak RSS counter (Linux ≥ 4.0), so the next peak is the aggregation's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn model(n: usize, seed: u32) -> Vec<Tensor> {
    vec![Tensor {
        name: "w".into(),
        shape: vec![n as u32],
        data: (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 * 1e-9)
            .collect(),
    }]
}

fn fedavg_benchmark(dir: &Path) {
    const PARAMS: usize = 10_000_000;
    const NODES: usize = 10;
    let model_bytes = (PARAMS * 4) as f64;
    let global = model(PARAMS, 0);

    // Compute only: fold one in-memory reply ten times vs copy it ten times.
    let reply = model(PARAMS, 1);
    let mut copy = vec![0f32; PARAMS];
    let memcpy = median(5, 1, || {
        for _ in 0..NODES {
            copy.copy_from_slice(black_box(&reply[0].data));
            black_box(&copy);
        }
    });
    let mut agg = FedAvg::new();
    let fold = median(5, 1, || {
        agg.start_round(&global).unwrap();
        for i in 0..NODES {
            agg.fold(&format!("n{i}"), 100, black_box(&reply)).unwrap();
        }
        black_box(agg.finish().unwrap());
    });
    let gbs = |d: Duration| model_bytes * NODES as f64 / d.as_secs_f64() / 1e9;
    println!(
        "FedAvg, {NODES} replies × {PARAMS} f32 ({:.0} MB each)",
        model_bytes / 1e6
    );
    println!(
        "  memcpy {:.1} ms ({:.1} GB/s)   fold+finish {:.1} ms ({:.1} GB/s)   ratio {:.2} of memcpy speed",
        memcpy.as_secs_f64() * 1e3,
        gbs(memcpy),
        fold.as_secs_f64() * 1e3,
        gbs(fold),
        memcpy.as_secs_f64() / fold.as_secs_f64()
    );
    drop(copy);

    // Streaming from files, as a round does: peak RSS relative to the model.
    let files: Vec<_> = (0..NODES)
        .map(|i| {
            let path = dir.join(format!("n{i}.safetensors"));
            std::fs::write(
                &path,
                fedwasm::tensors::to_bytes(&model(PARAMS, i as u32 + 2), &BTreeMap::new()).unwrap(),
            )
            .unwrap();
            path
        })
        .collect();
    drop(reply);
    let mut agg = FedAvg::new();
    reset_peak_rss();
    let before = peak_rss();
    let t = Instant::now();
    agg.start_round(&global).unwrap();
    let mut folder = OrderedFolder::new((0..NODES).map(|i| format!("n{i}")).collect());
    for (i, file) in files.iter().enumerate().rev() {
        folder
            .offer(&mut agg, &global, &format!("n{i}"), 100, file.clone(), None)
            .unwrap();
    }
    let out = agg.finish().unwrap();
    let elapsed = t.elapsed();
    black_box(out);
    if let (Some(before), Some(peak)) = (before, peak_rss()) {
        println!(
            "  streamed from files in reverse order: {:.0} ms; peak RSS {:.0} MB = {:.1}× the model (global model and process baseline {:.0} MB included)",
            elapsed.as_secs_f64() * 1e3,
            peak as f64 / 1e6,
            peak as f64 / model_bytes,
            before as f64 / 1e6
        );
    }
}

/// Per-round time with `n` in-process nodes and a one-update task.
/// Signed messages per node and round, counted generously: the train
/// request, its reply, and a scalar and a log record.
const SIGNED_PER_NODE: u32 = 4;

async fn orchestration(n: usize, dir: &Path, signing: Duration) {
    let plan = component("logistic-regression");
    let digest = Sha256Digest::of_file(&plan).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/breast_cancer.csv");
    let tag = format!("#bench-{n}");
    let nodes = (0..n)
        .map(|i| LocalNode {
            id: format!("b{n}-node-{i}"),
            datasets: vec![NewDataset {
                name: format!("b{n}-node-{i}"),
                tags: vec![tag.clone()],
                description: String::new(),
                path: data.clone(),
                target: Some("diagnosis".into()),
                split_column: None,
                image_columns: None,
            }],
        })
        .collect();
    let mut config = LocalFederationConfig::new(
        dir.join(format!("federation-{n}")),
        nodes,
        env!("CARGO_BIN_EXE_fedwasm").into(),
    );
    config.approved_plans = vec![(digest, None)];
    config.ready_timeout = Duration::from_secs(120);
    let federation = LocalFederation::start(config).await.unwrap();
    let mut exp = Experiment::new(ExperimentSettings {
        tags: Some(Tags::One(tag)),
        training_plan: Some(plan),
        model_args: json!({"n_features": 30, "n_classes": 2})
            .as_object()
            .cloned()
            .unwrap(),
        training_args: serde_json::from_value(json!({"num_updates": 1})).unwrap(),
        experiments_dir: Some(dir.join("experiments")),
        search_wait_secs: 5.0,
        ..federation.experiment_settings()
    })
    .await
    .unwrap();
    assert_eq!(exp.training_data().unwrap().node_ids().len(), n);
    exp.run(Some(3), false).await.unwrap(); // warm: plan downloads and compiles
    exp.run(Some(10), false).await.unwrap();
    let rounds = &exp.history().rounds[3..];
    let mut durations: Vec<f64> = rounds.iter().map(|r| r.duration_ms).collect();
    durations.sort_by(f64::total_cmp);
    let mut node_times: Vec<f64> = rounds
        .iter()
        .flat_map(|r| r.nodes.iter().map(|x| x.node_total_ms))
        .collect();
    node_times.sort_by(f64::total_cmp);
    let round = durations[durations.len() / 2];
    // What signatures add: each message signed once and verified once.
    let signatures = (signing * SIGNED_PER_NODE * n as u32).as_secs_f64() * 1e3;
    println!(
        "  {n:>2} nodes: round {round:.1} ms (median of 10); a node's own task {:.1} ms (median; worker start, downloads, upload); signing and verifying {signatures:.2} ms of it: {:.3}× the round without",
        node_times[node_times.len() / 2],
        round / (round - signatures)
    );
    exp.close().await;
    federation.stop().await.unwrap();
}

/// The demo's options: 3 nodes, 10 rounds, iid, in `dir/name`.
fn demo_options(dir: &Path, name: &str) -> DemoOptions {
    DemoOptions {
        nodes: 3,
        rounds: 10,
        plan: DemoPlan::LogisticRegression,
        seed: 0,
        split: ShardSplit::Iid,
        plan_target_dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("plan-components"),
        source_dir: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        work_dir: dir.join(name),
        experiments_dir: Some(dir.join(format!("{name}-experiments"))),
        worker_exe: env!("CARGO_BIN_EXE_fedwasm").into(),
        aggregator: "fedavg".into(),
        optimizer_args: None,
        model_args: None,
        num_updates: None,
        agg_optimizer: None,
        test_ratio: 0.0,
        fraction: None,
        dp: None,
        console: false,
    }
}

/// Where a node's time goes in a round of the CNN demo, averaged over the
/// rounds after the first (which also downloads and compiles the plan) and
/// the nodes.
async fn cnn_round_split(dir: &Path) {
    let report = run_demo(DemoOptions {
        plan: DemoPlan::Cnn,
        ..demo_options(dir, "cnn")
    })
    .await
    .unwrap();
    let nodes: Vec<_> = report
        .history
        .rounds
        .iter()
        .skip(1)
        .flat_map(|r| &r.nodes)
        .collect();
    let mean = |f: &dyn Fn(&fedwasm::researcher::NodeRound) -> f64| {
        nodes.iter().map(|n| f(n)).sum::<f64>() / nodes.len() as f64
    };
    let total = mean(&|n| n.node_total_ms);
    let data = mean(&|n| n.data_ms);
    let sandbox = mean(&|n| n.sandbox_ms);
    let transfer = mean(&|n| n.transfer_ms);
    let rest = total - data - sandbox - transfer;
    let round_trip = mean(&|n| n.round_trip_ms);
    let share = |ms: f64| 100.0 * ms / total;
    println!(
        "\nCNN demo round on images (3 nodes × 533 patches of 16×16, 20 updates of 32, flips; rounds 2–10): held-out {}",
        report.holdout
    );
    println!(
        "  node total {total:.1} ms: data {data:.1} ms ({:.0}%), sandbox compute {sandbox:.1} ms ({:.0}%), transfer {transfer:.1} ms ({:.0}%), rest (worker, instantiation, init, parameters out) {rest:.1} ms ({:.0}%)",
        share(data),
        share(sandbox),
        share(transfer),
        share(rest)
    );
    println!(
        "  researcher round trip {round_trip:.1} ms: {:.1} ms beyond the node's total (messaging, parameter download)",
        round_trip - total
    );
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    if wanted("fedavg") {
        fedavg_benchmark(tmp.path());
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        if wanted("orchestration") {
            println!("\nOrchestration, one-update LR task, in-process nodes, embedded broker");
            let (encode, seal, open, decode) = signature_costs();
            let signing = (seal - encode) + (open - decode);
            println!(
                "  a message's signature: sign {:.1} µs, verify {:.1} µs (beyond encoding and decoding)",
                (seal - encode).as_secs_f64() * 1e6,
                (open - decode).as_secs_f64() * 1e6
            );
            for n in [2, 10, 50] {
                orchestration(n, tmp.path(), signing).await;
            }
        }
        if wanted("cnn") {
            cnn_round_split(tmp.path()).await;
        }
        if !wanted("demo") {
            return;
        }

        let started = Instant::now();
        let report = run_demo(DemoOptions {
            plan: DemoPlan::LogisticRegression,
            ..demo_options(tmp.path(), "demo")
        })
        .await
        .unwrap();
        let total = started.elapsed();
        let rounds: f64 = report.history.rounds.iter().map(|r| r.duration_ms).sum();
        println!(
            "\nDemo workload (3 nodes, batch 32, 50 updates, 10 rounds): launch to last round {:.0} ms (rounds {:.0} ms, first {:.0} ms with plan download and compile); held-out {}",
            total.as_secs_f64() * 1e3,
            rounds,
            report.history.rounds[0].duration_ms,
            report.holdout
        );
    });
}
