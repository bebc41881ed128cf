//! Network-path benchmarks, measured in one run over loopback:
//! - ping round trip researcher → broker → node → broker → researcher;
//! - a one-update train request: researcher round trip, the node's total
//!   time, and the part of it that is training (the rest is downloads,
//!   worker start, upload);
//! - repository upload and download of a 64 MiB blob vs a file copy;
//! - what signing and verifying a message cost, beside encoding alone.
//!
//! `cargo bench --bench network`. Timings are medians of repeated runs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{component, median, signature_costs};
use fedwasm::digest::Sha256Digest;
use fedwasm::node::NewDataset;
use fedwasm::repository::RepositoryClient;
use fedwasm::researcher::{NodeLink, Reply};
use fedwasm::sandbox::random::StreamSeed;
use fedwasm::sandbox::{Sandbox, SandboxConfig};
use fedwasm::wire::{Message, TrainReply, TrainRequest};
use fedwasm::{LocalFederation, LocalFederationConfig, LocalNode};
use serde_json::json;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn repository_throughput(client: &RepositoryClient, dir: &Path) {
    let size = 64usize << 20;
    let source = dir.join("blob.bin");
    let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&source, &bytes).unwrap();
    let copy = median(5, 1, || {
        std::fs::copy(&source, dir.join("copy.bin")).unwrap();
    });
    let mut uploads = Vec::new();
    let mut downloads = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        let blob = client.upload_file(&source).await.unwrap();
        uploads.push(ms(t.elapsed()));
        let dest = dir.join(format!("down-{i}.bin"));
        let t = Instant::now();
        client.download(&blob, &dest, u64::MAX).await.unwrap();
        downloads.push(ms(t.elapsed()));
        std::fs::remove_file(dest).unwrap();
    }
    let (up, down) = (median_f64(uploads), median_f64(downloads));
    let mib = (size >> 20) as f64;
    println!("\nRepository, 64 MiB blob (hashing included on both sides)");
    println!(
        "  file copy {:>8.1} ms  upload {:>8.1} ms ({:.0} MiB/s, {:.1}× copy)  download {:>8.1} ms ({:.0} MiB/s, {:.1}× copy)",
        ms(copy),
        up,
        mib / up * 1e3,
        up / ms(copy),
        down,
        mib / down * 1e3,
        down / ms(copy)
    );
}

/// Print what signing and verifying cost one message, beside encoding alone.
fn signatures() {
    let (encode, seal, open, decode) = signature_costs();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("Signed messages: a train reply (median of 2,000)");
    println!(
        "  encode {:.1} µs → encode + Ed25519 sign {:.1} µs (+{:.1}); decode {:.1} µs → verify against the roster + decode {:.1} µs (+{:.1})\n",
        us(encode),
        us(seal),
        us(seal) - us(encode),
        us(decode),
        us(open),
        us(open) - us(decode)
    );
}

fn main() {
    signatures();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let plan = component("logistic-regression");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let node = LocalNode {
            id: "node-a".into(),
            datasets: vec![NewDataset {
                name: "bc".into(),
                tags: vec!["#bc".into()],
                description: String::new(),
                path: root.join("data/breast_cancer.csv"),
                target: Some("diagnosis".into()),
                split_column: None,
                image_columns: None,
            }],
        };
        let mut config = LocalFederationConfig::new(
            tmp.path().join("federation"),
            vec![node],
            env!("CARGO_BIN_EXE_fedwasm").into(),
        );
        config.approved_plans = vec![(Sha256Digest::of_file(&plan).unwrap(), None)];
        let federation = LocalFederation::start(config).await.unwrap();
        let repository = RepositoryClient::new(federation.repository_url(), None);
        let dataset = federation.dataset_ids("node-a").unwrap()[0].clone();

        let credentials = federation.admit("bench").unwrap();
        let mut link = NodeLink::connect(&federation.broker(), &credentials)
            .await
            .unwrap();
        let only = BTreeSet::from(["node-a".to_string()]);
        while link.ping(Some(&only), Duration::from_millis(500)).await.unwrap().is_empty() {}

        let mut rtts = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let replies = link.ping(Some(&only), Duration::from_secs(30)).await.unwrap();
            assert_eq!(replies.len(), 1);
            rtts.push(ms(t.elapsed()));
        }
        println!("Ping through the embedded broker (median of 200)");
        println!("  round trip {:.3} ms", median_f64(rtts));

        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        let loaded = sandbox.load_file(&plan).unwrap();
        let mut instance = sandbox.instantiate(&loaded, &StreamSeed([0; 32])).unwrap();
        let model_args = json!({"n_features": 30, "n_classes": 2});
        instance.init_model(&model_args.to_string()).unwrap();
        let params = fedwasm::tensors::to_bytes(&instance.get_parameters().unwrap(), &BTreeMap::new())
            .unwrap();
        let plan_blob = repository.upload_file(&plan).await.unwrap();
        let params_blob = repository.upload_bytes(params).await.unwrap();
        let (mut round_trips, mut totals, mut trainings) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=21u32 {
            let request_id = link.request_id();
            let t = Instant::now();
            link.send(
                Some("node-a"),
                &Message::TrainRequest(TrainRequest {
                    researcher_id: "bench".into(),
                    experiment_id: "bench".into(),
                    request_id: request_id.clone(),
                    round,
                    dataset_id: dataset.clone(),
                    plan: plan_blob.clone(),
                    params: params_blob.clone(),
                    gradient_correction: None,
                    model_args: model_args.clone(),
                    training_args: json!({"num_updates": 1}),
                    seed: 1,
                    training: true,
                }),
            )
            .await
            .unwrap();
            let replies = link.gather(&request_id, Some(&only), Duration::from_secs(120)).await;
            let elapsed = ms(t.elapsed());
            let Some(Reply::Answer(Message::TrainReply(TrainReply { timings, .. }))) = replies.get("node-a") else {
                panic!("{replies:?}");
            };
            // The first request also downloads and compiles the plan.
            if round > 1 {
                round_trips.push(elapsed);
                totals.push(timings.total_ms);
                trainings.push(timings.training_ms);
            }
        }
        let (rt, total, training) = (
            median_f64(round_trips),
            median_f64(totals),
            median_f64(trainings),
        );
        println!("\nOne-update train request, plan cached (median of 20)");
        println!(
            "  researcher round trip {rt:.1} ms  node total {total:.1} ms  of which training loop {training:.3} ms  (node overhead {:.1} ms, messaging {:.1} ms)",
            total - training,
            rt - total
        );

        repository_throughput(&repository, tmp.path()).await;
    });
}
