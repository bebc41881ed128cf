//! Sandbox benchmarks, each reported as a ratio measured in this one run:
//! - MLP training step in the sandbox vs the same SDK code compiled natively;
//! - instantiation per task with a warm compile cache, cached and cold compile;
//! - get/set-parameters of 1M and 10M parameters vs a memcpy of the same bytes;
//! - what a time limit costs a whole training task: none, epoch interruption,
//!   or a worker process under a watchdog (what nodes use);
//! - a DP-SGD step (per-sample clipping and noise) vs a plain SGD step;
//! - the issue-11 reference models (MLP 784→128→10, LeNet-5, a BatchNorm
//!   CNN on 64×64), a U-Net on 64×64 masks and ResNet-18 on 64×64 and
//!   224×224 RGB, at 1 and 2 compute threads, in the sandbox vs natively vs
//!   PyTorch on CPU, the anchor
//!   run in the same session when `FEDWASM_BENCH_TORCH` names a Python
//!   with torch installed;
//! - what validation on the node (before and after training) adds to a round;
//! - the node's image pipeline (decode, fit, augment, normalize, batch) in
//!   images/s at 64×64 grayscale and 224×224 RGB, against the samples/s the
//!   BatchNorm CNN trains at in the sandbox.
//!
//! `cargo bench --bench sandbox [-- steps models instantiation transfer
//! deadline privacy validation images]` (no name: all). Timings are medians of
//! repeated runs.

#[path = "../tests/integration/native.rs"]
mod native;

mod common;
use common::{component, median, wanted};

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use fedwasm::sandbox::random::StreamSeed;
use fedwasm::sandbox::types::{Array, Batch};
use fedwasm::sandbox::{Interruption, Sandbox, SandboxConfig};
use fedwasm::training::{
    PlanDriver, TaskCache, TrainingArgs, TrainingTask, run_in_worker, run_task, run_task_cached,
};
use rand_core::RngCore;

/// A whole training task with no limit, with epoch interruption, and in a worker.
fn time_limit_cost() {
    let cache = tempfile::tempdir().unwrap();
    let sandbox = SandboxConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..SandboxConfig::default()
    };
    let task = TrainingTask {
        plan: component("logistic-regression"),
        dataset: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/breast_cancer.csv"),
        images: None,
        target: Some("diagnosis".into()),
        model_args: serde_json::json!({"n_features": 30, "n_classes": 2}),
        training_args: TrainingArgs::from_json(r#"{"num_updates": 500}"#).unwrap(),
        experiment_id: None,
        round: 0,
        node_id: "bench".into(),
        initial_parameters: None,
        gradient_correction: None,
        output_parameters: None,
        sandbox: sandbox.clone(),
        training: true,
        report_split_metrics: false,
        split_column: None,
        noise_key: None,
    };
    println!(
        "\nTime limit cost: breast cancer, logistic regression, 500 updates (median of 9 tasks)"
    );
    println!(
        "{:<34} {:>10} {:>13}",
        "how the deadline is enforced", "task", "update loop"
    );
    for mode in [Interruption::External, Interruption::Epoch] {
        let s = Sandbox::new(SandboxConfig {
            interruption: mode,
            ..sandbox.clone()
        })
        .unwrap();
        let mut loop_ms = Vec::new();
        let t = median(9, 1, || {
            loop_ms.push(run_task(&s, &task, &mut |_| {}).unwrap().training_ms)
        });
        loop_ms.sort_by(f64::total_cmp);
        let label = match mode {
            Interruption::External => "not at all (in-process)",
            Interruption::Epoch => "epoch interruption (in-process)",
        };
        println!(
            "{:<34} {:>8.2}ms {:>11.2}ms",
            label,
            t.as_secs_f64() * 1e3,
            loop_ms[4]
        );
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_fedwasm"));
    let mut loop_ms = Vec::new();
    let t = median(9, 1, || {
        let outcome = run_in_worker(&exe, &task, Duration::from_secs(60), &mut |_| {}).unwrap();
        loop_ms.push(outcome.training_ms);
    });
    loop_ms.sort_by(f64::total_cmp);
    println!(
        "{:<34} {:>8.2}ms {:>11.2}ms",
        "worker process + watchdog",
        t.as_secs_f64() * 1e3,
        loop_ms[4]
    );
}

fn batch(rows: usize, features: usize, classes: usize) -> Batch {
    let mut rng = StreamSeed([5; 32]).rng();
    let data = (0..rows * features)
        .map(|_| fedwasm::sandbox::random::next_unit_f32(&mut rng) * 2.0 - 1.0)
        .collect();
    let targets = (0..rows)
        .map(|_| (rng.next_u64() % classes as u64) as f32)
        .collect();
    Batch {
        features: Array {
            shape: vec![rows as u32, features as u32],
            data,
        },
        targets: Array {
            shape: vec![rows as u32],
            data: targets,
        },
    }
}

/// The U-Net the benchmarks train: 64×64 gray images, two classes.
const UNET_ARGS: &str =
    r#"{"input_shape": [1, 64, 64], "n_classes": 2, "base_channels": 8, "depth": 2}"#;

/// A batch of `rows` 64×64 gray images with masks of two classes, seeded.
fn mask_batch(rows: usize) -> Batch {
    let side = 64;
    let mut b = batch(rows, side * side, 2);
    b.features.shape = vec![rows as u32, 1, side as u32, side as u32];
    let mut rng = StreamSeed([6; 32]).rng();
    b.targets = Array {
        shape: vec![rows as u32, side as u32, side as u32],
        data: (0..rows * side * side)
            .map(|_| (rng.next_u64() % 2) as f32)
            .collect(),
    };
    b
}

/// A batch of `rows` RGB images of `side`² pixels, `classes` classes, seeded.
fn image_batch(rows: usize, side: usize, classes: usize) -> Batch {
    let mut b = batch(rows, 3 * side * side, classes);
    b.features.shape = vec![rows as u32, 3, side as u32, side as u32];
    b
}

fn init(plan: &mut dyn PlanDriver, model_args: &str) {
    plan.init_model(model_args).unwrap();
    plan.init_optimizer(r#"{"lr": 0.01, "momentum": 0.9}"#)
        .unwrap();
}

fn step_time(plan: &mut dyn PlanDriver, batch: &Batch, steps: usize) -> Duration {
    for _ in 0..5 {
        plan.training_step(batch.clone()).unwrap();
    }
    median(7, steps, || {
        for _ in 0..steps {
            black_box(plan.training_step(batch.clone()).unwrap());
        }
    })
}

/// PyTorch's median step per model in ms, at `threads` threads, when
/// `FEDWASM_BENCH_TORCH` names a Python with torch.
fn torch_steps(threads: usize, steps: usize) -> Option<Vec<(String, f64)>> {
    let python = std::env::var_os("FEDWASM_BENCH_TORCH")?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/torch_steps.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args([threads.to_string(), steps.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "PyTorch anchor failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (name, ms) = l.split_once(' ')?;
                Some((name.to_string(), ms.trim().parse().ok()?))
            })
            .collect(),
    )
}

/// A plan that steps on a batch: in the sandbox, or native under a rayon
/// pool of the thread count being measured.
fn native_step<P: fedwasm_plan::TrainingPlan>(
    seed: &StreamSeed,
    args: &str,
    b: &Batch,
    steps: usize,
    pool: &rayon::ThreadPool,
) -> f64 {
    pool.install(|| {
        let mut native = native::NativePlan::<P>::new(seed.0);
        init(&mut native, args);
        step_median(&mut native, b, steps)
    })
}

/// The reference models of the plan SDK: one SGD-momentum step, median,
/// in the sandbox (its tensor operations on 1 and on 2 host threads) and
/// natively (the same kernels in-process, on a pool of as many), with
/// PyTorch's at the same thread counts when available.
fn reference_models(seed: &StreamSeed) {
    let steps = 100;
    let torch = [torch_steps(1, steps), torch_steps(2, steps)];
    if torch[0].is_none() {
        println!("(set FEDWASM_BENCH_TORCH=<python with torch> for the PyTorch anchor)");
    }
    let torch_ms = |t: &Option<Vec<(String, f64)>>, name: &str| {
        t.as_ref()
            .and_then(|v| v.iter().find(|(n, _)| n == name).map(|(_, ms)| *ms))
    };
    println!("\nReference models: SGD-momentum step, median of {steps}");
    println!(
        "{:<22} {:>7} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "model / batch", "threads", "torch", "native", "wasm", "wasm/torch", "wasm/native"
    );
    let mlp = component("mlp");
    let cnn = component("cnn");
    let unet_plan = component("unet");
    let lenet = r#"{"input_shape": [1, 28, 28], "n_classes": 10, "channels": [6, 16], "kernel": 5,
        "padding": [2, 0], "batch_norm": false, "hidden": [120, 84], "dropout": 0.0, "scaling": "none"}"#;
    let bn_cnn = r#"{"input_shape": [1, 64, 64], "n_classes": 6, "channels": [16, 32, 64],
        "pooled_blocks": [1, 2], "global_pool": true, "hidden": [], "dropout": 0.0, "scaling": "none"}"#;
    let mlp_args = r#"{"n_features": 784, "n_classes": 10, "hidden": [128]}"#;
    let resnet = component("resnet");
    let resnet64 = r#"{"input_shape": [3, 64, 64], "n_classes": 10}"#;
    let resnet224 = r#"{"input_shape": [3, 224, 224], "n_classes": 10}"#;
    let cases: [(&str, &str, &std::path::Path, &str, Batch, usize); 6] = [
        (
            "mlp",
            "MLP 784→128→10 / 64",
            &mlp,
            mlp_args,
            batch(64, 784, 10),
            steps,
        ),
        (
            "lenet5",
            "LeNet-5 28×28 / 32",
            &cnn,
            lenet,
            batch(32, 784, 10),
            steps,
        ),
        (
            "bn-cnn",
            "BN-CNN 64×64 / 32",
            &cnn,
            bn_cnn,
            batch(32, 4096, 6),
            steps,
        ),
        (
            "unet",
            "U-Net 64×64 / 16",
            &unet_plan,
            UNET_ARGS,
            mask_batch(16),
            steps / 2,
        ),
        (
            "resnet18-64",
            "ResNet-18 64×64 / 16",
            &resnet,
            resnet64,
            image_batch(16, 64, 10),
            steps / 5,
        ),
        (
            "resnet18-224",
            "ResNet-18 224×224 / 8",
            &resnet,
            resnet224,
            image_batch(8, 224, 10),
            steps / 20,
        ),
    ];
    let cell = |ms: Option<f64>| ms.map_or("—".to_string(), |ms| format!("{ms:.2}ms"));
    let mut wasm_at = std::collections::BTreeMap::new();
    // `-- models bn-cnn unet` measures only the models named.
    let named: Vec<&str> = cases
        .iter()
        .map(|c| c.0)
        .filter(|k| wanted_only(k))
        .collect();
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|c| named.is_empty() || named.contains(&c.0))
        .collect();
    for (key, label, path, args, b, steps) in &cases {
        for (t, threads) in [1usize, 2].into_iter().enumerate() {
            // ResNet-18 on 224×224 keeps ~1 GiB of activations for backward.
            let sandbox = Sandbox::new(SandboxConfig {
                interruption: Interruption::External,
                compute_threads: threads,
                memory_mib: 4096,
                ..Default::default()
            })
            .unwrap();
            let plan = sandbox.load_file(path).unwrap();
            let mut wasm = sandbox.instantiate(&plan, seed).unwrap();
            init(&mut wasm, args);
            let tw = step_median(&mut wasm, b, *steps);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let tn = match *key {
                "mlp" => native_step::<mlp::Mlp>(seed, args, b, *steps, &pool),
                "unet" => native_step::<unet::Unet>(seed, args, b, *steps, &pool),
                "resnet18-64" | "resnet18-224" => {
                    native_step::<resnet::ResNet>(seed, args, b, *steps, &pool)
                }
                _ => native_step::<cnn::Cnn>(seed, args, b, *steps, &pool),
            };
            wasm_at.insert((*key, threads), tw);
            let torch_t = torch_ms(&torch[t], key);
            println!(
                "{:<22} {:>7} {:>10} {:>8.2}ms {:>8.2}ms {:>11} {:>10.2}×",
                label,
                threads,
                cell(torch_t),
                tn * 1e3,
                tw * 1e3,
                torch_t.map_or("—".to_string(), |ms| format!("{:.2}×", tw * 1e3 / ms)),
                tw / tn,
            );
        }
    }
    for (key, label, ..) in &cases {
        let speedup = wasm_at[&(*key, 1)] / wasm_at[&(*key, 2)];
        println!("{label}: wasm step at 2 threads is {speedup:.2}× faster than at 1");
    }
}

/// Whether `name` is among the benchmark's arguments (not a section: a
/// filter inside one).
fn wanted_only(name: &str) -> bool {
    std::env::args().skip(1).any(|a| a == name)
}

/// `count` PNG files of `side`² pixels in `channels` channels, of seeded noise.
fn png_files(count: usize, side: u32, channels: u32) -> Vec<Vec<u8>> {
    let mut rng = StreamSeed([5; 32]).rng();
    (0..count)
        .map(|_| {
            let mut raw = vec![0u8; (side * side * channels) as usize];
            rng.fill_bytes(&mut raw);
            let mut png = Vec::new();
            let color = if channels == 1 {
                image::ExtendedColorType::L8
            } else {
                image::ExtendedColorType::Rgb8
            };
            image::ImageEncoder::write_image(
                image::codecs::png::PngEncoder::new(&mut png),
                &raw,
                side,
                side,
                color,
            )
            .unwrap();
            png
        })
        .collect()
}

/// Images per second through the whole node-side pipeline: decode every
/// file, fit it, then augment, normalize and batch by 32 (what a round does
/// when nothing is cached), and with the fitted images cached (later rounds).
fn image_pipeline(sandbox: &Sandbox, seed: &StreamSeed) {
    use fedwasm::dataset::{
        Augment, Fit, ImageLimits, ImageSpec, decode_bytes, fit_image, image_batch,
    };
    println!("\nImage pipeline (decode, fit, augment, normalize, batch of 32), median of 5");
    let augment = Augment {
        horizontal_flip: true,
        vertical_flip: false,
        crop_padding: 4,
        max_rotation_degrees: 10.0,
    };
    let mut rates = Vec::new();
    for (label, side, channels, count) in [("64×64 gray", 64, 1, 512), ("224×224 RGB", 224, 3, 64)]
    {
        let files = png_files(count, side, channels);
        let spec = ImageSpec {
            height: side,
            width: side,
            channels,
            fit: Fit::Resize,
            mean: vec![0.5; channels as usize],
            std: vec![0.25; channels as usize],
            augment,
        };
        let limits = ImageLimits::default();
        let shown = std::path::Path::new("bench.png");
        let indices: Vec<usize> = (0..count).collect();
        let mut fitted = Vec::new();
        let whole = median(5, 1, || {
            fitted = files
                .iter()
                .flat_map(|f| fit_image(&decode_bytes(f, shown, &limits).unwrap(), &spec).unwrap())
                .collect();
            for (k, chunk) in indices.chunks(32).enumerate() {
                black_box(image_batch(&fitted, chunk, &spec, seed, (k * 32) as u64, true).unwrap());
            }
        });
        let cached = median(5, 1, || {
            for (k, chunk) in indices.chunks(32).enumerate() {
                black_box(image_batch(&fitted, chunk, &spec, seed, (k * 32) as u64, true).unwrap());
            }
        });
        let per_s = |d: Duration| count as f64 / d.as_secs_f64();
        println!(
            "  {label:<12} {:>9.0} images/s from PNG files, {:>9.0} images/s from the cache",
            per_s(whole),
            per_s(cached)
        );
        rates.push((label, per_s(whole)));
    }
    // The BatchNorm CNN of the reference models, on images of each size.
    let plan = sandbox.load_file(&component("cnn")).unwrap();
    for ((label, rate), (shape, rows, steps)) in rates
        .into_iter()
        .zip([("[1, 64, 64]", 32, 10), ("[3, 224, 224]", 8, 3)])
    {
        let mut wasm = sandbox.instantiate(&plan, seed).unwrap();
        let args = format!(
            r#"{{"input_shape": {shape}, "n_classes": 6, "channels": [16, 32, 64],
            "pooled_blocks": [1, 2], "global_pool": true, "hidden": [], "dropout": 0.0, "scaling": "none"}}"#
        );
        init(&mut wasm, &args);
        let features = if shape.starts_with("[1") {
            64 * 64
        } else {
            3 * 224 * 224
        };
        let step = step_median(&mut wasm, &batch(rows, features, 6), steps);
        let trains = rows as f64 / step;
        println!(
            "  {label:<12} the BN-CNN trains {trains:>7.1} samples/s in the sandbox (batch {rows}): the pipeline is {:.0}× that",
            rate / trains
        );
    }
    segmentation_pipeline(sandbox, seed, &augment);
}

/// Images and their masks moved together (64×64, batches of 32, fitted
/// and cached as in later rounds) against the U-Net's training rate.
fn segmentation_pipeline(
    sandbox: &Sandbox,
    seed: &StreamSeed,
    augment: &fedwasm::dataset::Augment,
) {
    use fedwasm::dataset::{Draws, Fit, ImageSpec, image_batch, segmentation_batch};
    let (side, count) = (64usize, 512usize);
    let spec = ImageSpec {
        height: side as u32,
        width: side as u32,
        channels: 1,
        fit: Fit::Resize,
        mean: vec![0.5],
        std: vec![0.25],
        augment: *augment,
    };
    let mut rng = StreamSeed([7; 32]).rng();
    let fitted: Vec<f32> = (0..count * side * side)
        .map(|_| fedwasm::sandbox::random::next_unit_f32(&mut rng))
        .collect();
    let masks: Vec<f32> = (0..count * side * side)
        .map(|_| (rng.next_u64() % 2) as f32)
        .collect();
    let indices: Vec<usize> = (0..count).collect();
    let images_only = median(5, 1, || {
        for (k, chunk) in indices.chunks(32).enumerate() {
            black_box(image_batch(&fitted, chunk, &spec, seed, (k * 32) as u64, true).unwrap());
        }
    });
    let with_masks = median(5, 1, || {
        for (k, chunk) in indices.chunks(32).enumerate() {
            let draws = Draws {
                seed,
                first_draw: (k * 32) as u64,
                training: true,
            };
            black_box(segmentation_batch(&fitted, &masks, chunk, &spec, &draws).unwrap());
        }
    });
    let per_s = |d: Duration| count as f64 / d.as_secs_f64();
    let plan = sandbox.load_file(&component("unet")).unwrap();
    let mut wasm = sandbox.instantiate(&plan, seed).unwrap();
    init(&mut wasm, UNET_ARGS);
    let rows = 16;
    let b = mask_batch(rows);
    let trains = rows as f64 / step_median(&mut wasm, &b, 6);
    println!(
        "  64×64 gray + masks {:>9.0} images/s from the cache ({:.0} without masks); the U-Net trains {trains:.1} samples/s in the sandbox (batch {rows}): the pipeline is {:.0}× that",
        per_s(with_masks),
        per_s(images_only),
        per_s(with_masks) / trains
    );
}

/// One node's CNN task on the shipped image folder (1,600 16×16 patches,
/// 20 updates of 32 with flips), as a kept worker runs it round after round
/// (decoded images cached): the task's data time against its sandbox time.
fn image_task_split(sandbox: &Sandbox) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let folder = root.join("data/nuclei/train");
    let digest = fedwasm::dataset::scan_folder(&folder, &Default::default())
        .unwrap()
        .digest;
    let task = TrainingTask {
        plan: component("cnn"),
        dataset: folder,
        images: Some(fedwasm::dataset::ImageSource {
            manifest: None,
            digest,
        }),
        target: None,
        split_column: None,
        model_args: serde_json::json!({"input_shape": [1, 16, 16], "n_classes": 2,
            "channels": [8, 16], "hidden": [32], "mean": 0.167, "std": 0.12,
            "horizontal_flip": true, "vertical_flip": true}),
        training_args: TrainingArgs::from_json(
            r#"{"num_updates": 20, "random_seed": 1, "optimizer_args": {"lr": 0.05}}"#,
        )
        .unwrap(),
        experiment_id: None,
        round: 1,
        node_id: "bench".into(),
        initial_parameters: None,
        gradient_correction: None,
        output_parameters: None,
        sandbox: sandbox.config().clone(),
        training: true,
        report_split_metrics: false,
        noise_key: None,
    };
    let mut cache = TaskCache::default();
    let first = run_task_cached(sandbox, &mut cache, &task, &mut |_| {}).unwrap();
    let mut runs: Vec<_> = (0..5)
        .map(|_| run_task_cached(sandbox, &mut cache, &task, &mut |_| {}).unwrap())
        .collect();
    runs.sort_by(|a, b| a.total_ms.total_cmp(&b.total_ms));
    let m = &runs[2];
    println!(
        "  one node's CNN task on data/nuclei/train (1,600 images, 20 updates of 32, flips): data {:.1} ms (first task, decoding every file: {:.1} ms), sandbox {:.1} ms, task {:.1} ms (median of 5)",
        m.data_ms, first.data_ms, m.step_ms, m.total_ms
    );
}

/// Median seconds of `steps` single training steps, after five warm-up steps.
fn step_median(plan: &mut dyn PlanDriver, batch: &Batch, steps: usize) -> f64 {
    for _ in 0..5 {
        plan.training_step(batch.clone()).unwrap();
    }
    median(steps, 1, || {
        black_box(plan.training_step(batch.clone()).unwrap());
    })
    .as_secs_f64()
}

fn main() {
    let component = component("mlp");
    let seed = StreamSeed([1; 32]);
    let external = Sandbox::new(SandboxConfig {
        interruption: Interruption::External,
        ..Default::default()
    })
    .unwrap();
    let epoch = Sandbox::new(SandboxConfig {
        interruption: Interruption::Epoch,
        ..Default::default()
    })
    .unwrap();
    let plan_ext = external.load_file(&component).unwrap();
    let plan_epoch = epoch.load_file(&component).unwrap();

    if wanted("steps") {
        println!("MLP training step (SGD with momentum), median per step");
        println!(
            "{:<22} {:>11} {:>11} {:>8} {:>13} {:>8}",
            "shape / batch", "native", "wasm", "ratio", "wasm+epoch", "ratio"
        );
        for (n_in, hidden, n_out, rows, steps) in [
            (8, 8, 2, 1, 2000),
            (64, 64, 10, 32, 400),
            (64, 64, 10, 64, 200),
            (784, 128, 10, 32, 40),
            (784, 128, 10, 64, 20),
        ] {
            let args =
                format!(r#"{{"n_features": {n_in}, "n_classes": {n_out}, "hidden": [{hidden}]}}"#);
            let b = batch(rows, n_in, n_out);
            let mut native = native::NativePlan::<mlp::Mlp>::new(seed.0);
            init(&mut native, &args);
            let mut wasm = external.instantiate(&plan_ext, &seed).unwrap();
            init(&mut wasm, &args);
            let mut wasm_epoch = epoch.instantiate(&plan_epoch, &seed).unwrap();
            init(&mut wasm_epoch, &args);
            let tn = step_time(&mut native, &b, steps);
            let tw = step_time(&mut wasm, &b, steps);
            let te = step_time(&mut wasm_epoch, &b, steps);
            println!(
                "{:<22} {:>9.1}µs {:>9.1}µs {:>7.2}× {:>11.1}µs {:>7.2}×",
                format!("{n_in}→{hidden}→{n_out} / {rows}"),
                tn.as_secs_f64() * 1e6,
                tw.as_secs_f64() * 1e6,
                tw.as_secs_f64() / tn.as_secs_f64(),
                te.as_secs_f64() * 1e6,
                te.as_secs_f64() / tn.as_secs_f64(),
            );
        }
    }
    if wanted("models") {
        reference_models(&seed);
    }
    if wanted("instantiation") {
        println!("\nInstantiation and compilation");
        let t = median(5, 200, || {
            for _ in 0..200 {
                black_box(external.instantiate(&plan_ext, &seed).unwrap());
            }
        });
        println!(
            "instantiate per task (warm, pre-linked)   {:>9.1} µs",
            t.as_secs_f64() * 1e6
        );
        let bytes = std::fs::read(&component).unwrap();
        let t = median(5, 1, || {
            let fresh = Sandbox::new(SandboxConfig::default()).unwrap();
            black_box(fresh.load(&bytes).unwrap());
        });
        println!(
            "cold compile of the {} KB mlp component  {:>9.1} ms",
            bytes.len() / 1024,
            t.as_secs_f64() * 1e3
        );
        let cache = tempfile::tempdir().unwrap();
        let cached = SandboxConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..SandboxConfig::default()
        };
        Sandbox::new(cached.clone()).unwrap().load(&bytes).unwrap();
        let t = median(9, 1, || {
            let fresh = Sandbox::new(cached.clone()).unwrap();
            black_box(fresh.load(&bytes).unwrap());
        });
        println!(
            "load from the disk cache (new process)    {:>9.2} ms",
            t.as_secs_f64() * 1e3
        );
    }
    if wanted("transfer") {
        println!("\nParameter transfer, median per call (memcpy = copy into a fresh Vec)");
        println!(
            "{:<12} {:>11} {:>11} {:>7} {:>11} {:>7}",
            "parameters", "memcpy", "set", "ratio", "get", "ratio"
        );
        for (n_in, hidden) in [(1000usize, 1000usize), (1000, 10_000)] {
            let args =
                format!(r#"{{"n_features": {n_in}, "n_classes": 10, "hidden": [{hidden}]}}"#);
            let mut wasm = external.instantiate(&plan_ext, &seed).unwrap();
            init(&mut wasm, &args);
            let params = wasm.get_parameters().unwrap();
            let count: usize = params.iter().map(|t| t.data.len()).sum();
            let tc = median(7, 1, || {
                black_box(params.iter().map(|t| t.data.to_vec()).collect::<Vec<_>>());
            });
            let ts = median(7, 1, || wasm.set_parameters(black_box(&params)).unwrap());
            let tg = median(7, 1, || {
                black_box(wasm.get_parameters().unwrap());
            });
            println!(
                "{:<12} {:>9.2}ms {:>9.2}ms {:>6.2}× {:>9.2}ms {:>6.2}×",
                format!("{:.1}M", count as f64 / 1e6),
                tc.as_secs_f64() * 1e3,
                ts.as_secs_f64() * 1e3,
                ts.as_secs_f64() / tc.as_secs_f64(),
                tg.as_secs_f64() * 1e3,
                tg.as_secs_f64() / tc.as_secs_f64(),
            );
        }
    }
    if wanted("deadline") {
        time_limit_cost();
    }
    if wanted("privacy") {
        privacy_cost(&external, &plan_ext, &seed);
    }
    if wanted("images") {
        image_pipeline(&external, &seed);
        image_task_split(&external);
    }
    if wanted("validation") {
        validation_cost();
    }
}

/// A DP-SGD step (`dp_clip`/`dp_sigma`: per-sample gradients, clipping,
/// noise from the host) against a plain SGD step, both in the sandbox.
fn privacy_cost(sandbox: &Sandbox, mlp: &fedwasm::sandbox::LoadedPlan, seed: &StreamSeed) {
    println!("\nDP-SGD step vs plain SGD step in the sandbox (median per step)");
    println!(
        "{:<26} {:>11} {:>13} {:>8} {:>13} {:>8}",
        "model / batch", "SGD", "clip only", "ratio", "clip+noise", "ratio"
    );
    let cnn = sandbox.load_file(&component("cnn")).unwrap();
    let lenet = r#"{"input_shape": [1, 28, 28], "n_classes": 10, "channels": [6, 16], "kernel": 5,
        "padding": [2, 0], "batch_norm": false, "hidden": [120, 84], "dropout": 0.0, "scaling": "none"}"#;
    let cases = [
        (
            "MLP 30→8→2 / 32",
            mlp,
            r#"{"n_features": 30, "n_classes": 2, "hidden": [8]}"#,
            32,
            30,
            2,
            400,
        ),
        (
            "MLP 64→64→10 / 32",
            mlp,
            r#"{"n_features": 64, "n_classes": 10, "hidden": [64]}"#,
            32,
            64,
            10,
            100,
        ),
        (
            "MLP 784→128→10 / 32",
            mlp,
            r#"{"n_features": 784, "n_classes": 10, "hidden": [128]}"#,
            32,
            784,
            10,
            10,
        ),
        ("LeNet-5 28×28 / 32", &cnn, lenet, 32, 784, 10, 5),
    ];
    for (label, plan, args, rows, features, classes, steps) in cases {
        let b = batch(rows, features, classes);
        let mut instances: Vec<_> = [
            r#"{"lr": 0.01}"#,
            r#"{"lr": 0.01, "dp_clip": 1.0, "dp_sigma": 0.0}"#,
            r#"{"lr": 0.01, "dp_clip": 1.0, "dp_sigma": 1.0}"#,
        ]
        .iter()
        .map(|optimizer_args| {
            let mut instance = sandbox.instantiate(plan, seed).unwrap();
            instance.init_model(args).unwrap();
            instance.init_optimizer(optimizer_args).unwrap();
            instance
        })
        .collect();
        // Interleaved, so that drift in machine speed hits all three alike.
        let mut times = vec![Vec::new(); instances.len()];
        for _ in 0..15 {
            for (instance, t) in instances.iter_mut().zip(times.iter_mut()) {
                t.push(step_time(instance, &b, usize::div_ceil(steps, 5)));
            }
        }
        let [tp, tc, td] = [0, 1, 2].map(|i| {
            times[i].sort();
            times[i][7]
        });
        println!(
            "{:<26} {:>9.1}µs {:>11.1}µs {:>7.2}× {:>11.1}µs {:>7.2}×",
            label,
            tp.as_secs_f64() * 1e6,
            tc.as_secs_f64() * 1e6,
            tc.as_secs_f64() / tp.as_secs_f64(),
            td.as_secs_f64() * 1e6,
            td.as_secs_f64() / tp.as_secs_f64(),
        );
    }
}

/// One node round (MLP on digits, 50 updates, 20 % held out) with and
/// without scoring the global model before and the local one after training.
fn validation_cost() {
    let sandbox = Sandbox::new(SandboxConfig {
        interruption: Interruption::External,
        ..SandboxConfig::default()
    })
    .unwrap();
    let task = |validate: bool| TrainingTask {
        plan: component("mlp"),
        dataset: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv"),
        images: None,
        target: Some("digit".into()),
        model_args: serde_json::json!({"n_features": 64, "n_classes": 10, "hidden": [64]}),
        training_args: serde_json::from_value(serde_json::json!({
            "num_updates": 50, "test_ratio": 0.2,
            "test_on_local_updates": validate, "test_on_global_updates": validate,
        }))
        .unwrap(),
        experiment_id: None,
        round: 1,
        node_id: "bench".into(),
        initial_parameters: None,
        gradient_correction: None,
        output_parameters: None,
        sandbox: SandboxConfig::default(),
        training: true,
        report_split_metrics: false,
        split_column: None,
        noise_key: None,
    };
    let (plain, validated) = (task(false), task(true));
    run_task(&sandbox, &plain, &mut |_| {}).unwrap();
    // Alternate the two tasks so that drift in machine speed hits both alike.
    let (mut times_plain, mut times_validated) = (Vec::new(), Vec::new());
    for _ in 0..41 {
        for (t, times) in [
            (&plain, &mut times_plain),
            (&validated, &mut times_validated),
        ] {
            let started = std::time::Instant::now();
            black_box(run_task(&sandbox, t, &mut |_| {}).unwrap());
            times.push(started.elapsed());
        }
    }
    times_plain.sort();
    times_validated.sort();
    let (tp, tv) = (times_plain[20], times_validated[20]);
    println!(
        "\nValidation on the node: MLP 64→64→10 on digits, 50 updates of 32, 359 held-out rows scored twice"
    );
    println!(
        "round task without {:>8.2} ms, with {:>8.2} ms: +{:.2} ms ({:.1} % of the task)",
        tp.as_secs_f64() * 1e3,
        tv.as_secs_f64() * 1e3,
        (tv.as_secs_f64() - tp.as_secs_f64()) * 1e3,
        (tv.as_secs_f64() / tp.as_secs_f64() - 1.0) * 100.0
    );
}
