//! The host kernels' matrix product in GFLOP/s, at 1 and 2 threads, against
//! this core's fused multiply-add peak measured in the same run (a loop of
//! independent FMAs) and, when `FEDWASM_BENCH_TORCH` names a Python with
//! torch, PyTorch's `torch.mm` on the same shapes and thread counts.
//!
//! Then each ResNet-18 convolution's forward and backward products, and one
//! optimizer update of its parameters, beside PyTorch's and a memcpy.
//!
//! `cargo bench --bench kernels [-- gemm convolutions updates]` (every
//! section when none is named). Timings are the best of repeated runs.

use std::hint::black_box;
use std::time::Instant;

use fedwasm_kernels::conv::{conv2d, conv2d_input_grad, conv2d_weight_grad};
use fedwasm_kernels::{Conv2d, MatRef, Window, gemm};

/// (m, k, n): square products, and the shapes convolutions and linear
/// layers of the reference models reduce to.
const SHAPES: [(usize, usize, usize); 5] = [
    (512, 512, 512),
    (1024, 1024, 1024),
    (64, 784, 128),
    (64, 576, 4096),
    (128, 1152, 784),
];

/// GFLOP/s of one core's FMA units: 12 independent chains of the widest
/// vectors the kernels use here (16 lanes with AVX-512F, else 8).
#[cfg(target_arch = "x86_64")]
fn fma_peak() -> Option<f64> {
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
    {
        return None;
    }
    #[target_feature(enable = "avx2,fma")]
    fn chains(iters: usize) -> f32 {
        use std::arch::x86_64::*;
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(a, *x, b);
            }
        }
        let mut out = [0.0f32; 8];
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
        // SAFETY: `out` holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
        out.iter().sum()
    }
    #[target_feature(enable = "avx512f,fma")]
    fn wide_chains(iters: usize) -> f32 {
        use std::arch::x86_64::*;
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(a, *x, b);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x));
        _mm512_reduce_add_ps(sum)
    }
    // The widest vectors the kernels' matrix products use on this CPU.
    let wide = std::arch::is_x86_feature_detected!("avx512f");
    let lanes = if wide { 16 } else { 8 };
    let iters = 20_000_000;
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            // SAFETY: the CPU has AVX2 and FMA (checked above), and
            // AVX-512F when `wide`.
            black_box(unsafe {
                if wide {
                    wide_chains(black_box(iters))
                } else {
                    chains(black_box(iters))
                }
            });
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min);
    Some((iters * 12 * lanes * 2) as f64 / best / 1e9)
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_peak() -> Option<f64> {
    None
}

/// GFLOP/s of `gemm` on (m, k, n), best of 10, on `threads` threads.
fn gemm_rate((m, k, n): (usize, usize, usize), threads: usize) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; m * n];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let best = pool.install(|| {
        (0..10)
            .map(|_| {
                let t = Instant::now();
                gemm(
                    MatRef::row_major(&a, m, k),
                    MatRef::row_major(&b, k, n),
                    &mut c,
                    false,
                );
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    });
    black_box(&c);
    2.0 * (m * k * n) as f64 / best / 1e9
}

/// PyTorch's `torch.mm` GFLOP/s on each shape at `threads` threads.
fn torch_rates(threads: usize) -> Option<Vec<f64>> {
    let shapes: Vec<String> = SHAPES
        .iter()
        .map(|(m, k, n)| format!("({m},{k},{n})"))
        .collect();
    let script = format!(
        "import torch, time\n\
         torch.set_num_threads({threads})\n\
         for m, k, n in [{}]:\n\
         \x20   a, b = torch.rand(m, k), torch.rand(k, n)\n\
         \x20   best = 1e9\n\
         \x20   for _ in range(10):\n\
         \x20       t = time.perf_counter(); torch.mm(a, b); best = min(best, time.perf_counter() - t)\n\
         \x20   print(2 * m * k * n / best / 1e9)\n",
        shapes.join(",")
    );
    Some(
        torch_lines(&script)?
            .iter()
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
    )
}

/// The lines `script` prints, run by the Python `FEDWASM_BENCH_TORCH`
/// names; `None` without one, or when the script fails.
fn torch_lines(script: &str) -> Option<Vec<String>> {
    let python = std::env::var_os("FEDWASM_BENCH_TORCH")?;
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    })
}

/// One convolution of a model: its label, square geometry and how many
/// times the model has it.
#[derive(Clone, Copy)]
struct ModelConv {
    label: &'static str,
    channels: usize,
    side: usize,
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    count: usize,
}

/// A [`ModelConv`] written as one line: (label, in channels, side, out
/// channels, kernel, stride, padding, count).
const fn conv(
    label: &'static str,
    [channels, side, out]: [usize; 3],
    [kernel, stride, padding]: [usize; 3],
    count: usize,
) -> ModelConv {
    ModelConv {
        label,
        channels,
        side,
        out,
        kernel,
        stride,
        padding,
        count,
    }
}

/// ResNet-18's convolutions on a 64×64 batch of 16 (standard stem).
const RESNET_CONVS: [ModelConv; 11] = [
    conv("conv1 7×7/2", [3, 64, 64], [7, 2, 3], 1),
    conv("layer1 3×3", [64, 16, 64], [3, 1, 1], 4),
    conv("layer2 3×3/2", [64, 16, 128], [3, 2, 1], 1),
    conv("layer2 3×3", [128, 8, 128], [3, 1, 1], 3),
    conv("layer2 1×1/2", [64, 16, 128], [1, 2, 0], 1),
    conv("layer3 3×3/2", [128, 8, 256], [3, 2, 1], 1),
    conv("layer3 3×3", [256, 4, 256], [3, 1, 1], 3),
    conv("layer3 1×1/2", [128, 8, 256], [1, 2, 0], 1),
    conv("layer4 3×3/2", [256, 4, 512], [3, 2, 1], 1),
    conv("layer4 3×3", [512, 2, 512], [3, 1, 1], 3),
    conv("layer4 1×1/2", [256, 4, 512], [1, 2, 0], 1),
];
/// Images per batch in [`RESNET_CONVS`].
const CONV_BATCH: usize = 16;

impl ModelConv {
    /// The kernels' description of it, on a batch of [`CONV_BATCH`].
    fn geometry(&self) -> Conv2d {
        Conv2d {
            batch: CONV_BATCH,
            window: Window {
                channels: self.channels,
                input: [self.side; 2],
                kernel: [self.kernel; 2],
                stride: [self.stride; 2],
                padding: [self.padding; 2],
                dilation: [1, 1],
            },
            out_channels: self.out,
        }
    }
}

/// Best-of-`runs` seconds of `f`.
fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

/// Forward, input-gradient and weight-gradient milliseconds of one
/// convolution, best of 10, on `threads` threads.
fn conv_times(conv: &Conv2d, threads: usize) -> [f64; 3] {
    let s = conv.sizes().expect("a valid convolution");
    let x: Vec<f32> = (0..s.input_len).map(|i| (i % 17) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..s.weight_len).map(|i| (i % 11) as f32 * 0.01).collect();
    let g: Vec<f32> = (0..s.output_len).map(|i| (i % 5) as f32 * 0.1).collect();
    let (mut y, mut dx, mut dw) = (
        vec![0.0f32; s.output_len],
        vec![0.0f32; s.input_len],
        vec![0.0f32; s.weight_len],
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        [
            best(10, || conv2d(conv, &x, &w, None, &mut y)),
            best(10, || conv2d_input_grad(conv, &g, &w, &mut dx)),
            best(10, || conv2d_weight_grad(conv, &g, &x, &mut dw, false)),
        ]
        .map(|t| t * 1e3)
    })
}

/// PyTorch's milliseconds for the same three, per convolution.
fn torch_conv_times(threads: usize) -> Option<Vec<[f64; 3]>> {
    let convs: Vec<String> = RESNET_CONVS
        .iter()
        .map(|c| {
            let ModelConv {
                channels,
                side,
                out,
                kernel,
                stride,
                padding,
                ..
            } = c;
            format!("({channels},{side},{out},{kernel},{stride},{padding})")
        })
        .collect();
    let script = format!(
        "import torch, time\n\
         from torch.nn.grad import conv2d_input, conv2d_weight\n\
         torch.set_num_threads({threads})\n\
         def best(f):\n\
         \x20   b = 1e9\n\
         \x20   for _ in range(10):\n\
         \x20       t = time.perf_counter(); f(); b = min(b, time.perf_counter() - t)\n\
         \x20   return b * 1e3\n\
         with torch.no_grad():\n\
         \x20   for c, side, o, k, s, p in [{}]:\n\
         \x20       x, w = torch.rand({CONV_BATCH}, c, side, side), torch.rand(o, c, k, k)\n\
         \x20       y = torch.nn.functional.conv2d(x, w, stride=s, padding=p)\n\
         \x20       g = torch.rand_like(y)\n\
         \x20       f = best(lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=p))\n\
         \x20       i = best(lambda: conv2d_input(x.shape, w, g, stride=s, padding=p))\n\
         \x20       v = best(lambda: conv2d_weight(x, w.shape, g, stride=s, padding=p))\n\
         \x20       print(f, i, v)\n",
        convs.join(",")
    );
    Some(
        torch_lines(&script)?
            .iter()
            .filter_map(|l| {
                let v: Vec<f64> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (v.len() == 3).then(|| [v[0], v[1], v[2]])
            })
            .collect(),
    )
}

/// Each ResNet-18 convolution's three products beside PyTorch's, and the
/// totals over the model (each convolution times its count).
fn resnet_convolutions() {
    for threads in [1, 2] {
        let torch = torch_conv_times(threads);
        println!(
            "\nResNet-18 convolutions, 64×64 / {CONV_BATCH}, {threads} thread(s), ms (torch in brackets)"
        );
        println!(
            "{:<16} {:>19} {:>19} {:>19}",
            "conv", "forward", "input grad", "weight grad"
        );
        let mut totals = [[0.0f64; 2]; 3];
        for (i, model_conv) in RESNET_CONVS.into_iter().enumerate() {
            let (label, count) = (model_conv.label, model_conv.count);
            let ours = conv_times(&model_conv.geometry(), threads);
            let theirs = torch.as_ref().and_then(|t| t.get(i).copied());
            let cells: Vec<String> = (0..3)
                .map(|j| {
                    totals[j][0] += ours[j] * count as f64;
                    match theirs {
                        Some(t) => {
                            totals[j][1] += t[j] * count as f64;
                            format!("{:>7.2} ({:>7.2})", ours[j], t[j])
                        }
                        None => format!("{:>7.2} (   —   )", ours[j]),
                    }
                })
                .collect();
            println!(
                "{:<16} {:>19} {:>19} {:>19}",
                label, cells[0], cells[1], cells[2]
            );
        }
        let cells: Vec<String> = totals
            .iter()
            .map(|[ours, theirs]| match torch {
                Some(_) => format!("{ours:>7.2} ({theirs:>7.2})"),
                None => format!("{ours:>7.2} (   —   )"),
            })
            .collect();
        println!(
            "{:<16} {:>19} {:>19} {:>19}",
            "model total", cells[0], cells[1], cells[2]
        );
    }
}

/// Whether the section `name` runs: every section when none is named
/// (`cargo bench --bench kernels -- gemm convolutions updates`).
fn wanted(name: &str) -> bool {
    let sections = ["gemm", "convolutions", "updates"];
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| sections.contains(&a.as_str()))
        .collect();
    named.is_empty() || named.iter().any(|a| a == name)
}

fn main() {
    if wanted("gemm") {
        gemm_rates();
    }
    if wanted("convolutions") {
        resnet_convolutions();
    }
    if wanted("updates") {
        optimizer_updates();
    }
}

/// GEMM GFLOP/s per shape at 1 and 2 threads, beside the FMA peak and
/// PyTorch's.
fn gemm_rates() {
    let isa = fedwasm_kernels::isa::detected();
    let peak = fma_peak();
    println!("fedwasm-kernels GEMM ({}), GFLOP/s, best of 10", isa.name());
    match peak {
        Some(p) => println!("one core's measured FMA peak: {p:.1} GFLOP/s"),
        None => println!("(no AVX2+FMA: no FMA peak measured)"),
    }
    let torch = [torch_rates(1), torch_rates(2)];
    println!(
        "{:<18} {:>9} {:>9} {:>11} {:>11} {:>11}",
        "m×k×n", "1 thread", "2 threads", "1t / peak", "torch 1t", "torch 2t"
    );
    for (i, shape) in SHAPES.into_iter().enumerate() {
        let (one, two) = (gemm_rate(shape, 1), gemm_rate(shape, 2));
        let torch_cell = |t: &Option<Vec<f64>>| {
            t.as_ref()
                .and_then(|v| v.get(i))
                .map_or("—".to_string(), |g| format!("{g:.1}"))
        };
        println!(
            "{:<18} {:>9.1} {:>9.1} {:>11} {:>11} {:>11}",
            format!("{}×{}×{}", shape.0, shape.1, shape.2),
            one,
            two,
            peak.map_or("—".to_string(), |p| format!("{:.0}%", 100.0 * one / p)),
            torch_cell(&torch[0]),
            torch_cell(&torch[1]),
        );
    }
}

/// ResNet-18's parameters with a 10-class head: what one optimizer step
/// updates.
const RESNET18_PARAMETERS: usize = 11_181_642;

/// Milliseconds of one update of every ResNet-18 parameter, best of 10, on
/// `threads` threads: SGD with momentum and Adam.
fn update_times(threads: usize) -> [f64; 2] {
    use fedwasm_kernels::update::{Extras, Rule, State, Update};
    let n = RESNET18_PARAMETERS;
    let g: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.01 - 0.06).collect();
    let (mut w, mut m, mut v) = (vec![0.5f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let update = |rule| Update {
        lr: 0.01,
        scale: 1.0,
        prox_mu: 0.0,
        l2: 0.0,
        rule,
    };
    let momentum = update(Rule::Momentum {
        momentum: 0.9,
        nesterov: false,
        first_update: false,
    });
    let adam = update(Rule::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        c1: 0.1,
        c2: 0.001,
        decay: 1.0,
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let sgd = best(10, || {
            let state = State {
                first: Some(&mut m),
                second: None,
            };
            momentum.apply(&mut w, &g, Extras::default(), state);
        });
        let adam = best(10, || {
            let state = State {
                first: Some(&mut m),
                second: Some(&mut v),
            };
            adam.apply(&mut w, &g, Extras::default(), state);
        });
        [sgd * 1e3, adam * 1e3]
    })
}

/// PyTorch's `optimizer.step()` milliseconds on as many parameters (one
/// tensor): SGD with momentum, then Adam.
fn torch_update_times(threads: usize) -> Option<Vec<f64>> {
    let script = format!(
        "import torch, time\n\
         torch.set_num_threads({threads})\n\
         for make in [lambda p: torch.optim.SGD([p], lr=0.01, momentum=0.9), lambda p: torch.optim.Adam([p], lr=0.01)]:\n\
         \x20   p = torch.nn.Parameter(torch.rand({RESNET18_PARAMETERS})); p.grad = torch.rand_like(p)\n\
         \x20   opt = make(p); opt.step()\n\
         \x20   b = 1e9\n\
         \x20   for _ in range(10):\n\
         \x20       t = time.perf_counter(); opt.step(); b = min(b, time.perf_counter() - t)\n\
         \x20   print(b * 1e3)\n"
    );
    Some(
        torch_lines(&script)?
            .iter()
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
    )
}

/// One optimizer update of ResNet-18's parameters beside PyTorch's and
/// beside a memcpy moving as many bytes (momentum reads three arrays and
/// writes two, Adam reads four and writes three).
fn optimizer_updates() {
    let n = RESNET18_PARAMETERS;
    let (src, mut dst) = (vec![1.0f32; n], vec![0.0f32; n]);
    let copy = best(10, || {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
    }) * 1e3;
    println!("\nOptimizer update of ResNet-18's {n} parameters, ms (torch in brackets)");
    println!(
        "{:<10} {:>19} {:>19} {:>24}",
        "threads", "SGD momentum", "Adam", "memcpy of as many bytes"
    );
    for threads in [1, 2] {
        let [sgd, adam] = update_times(threads);
        let torch = torch_update_times(threads);
        let cell = |ours: f64, i: usize| match torch.as_ref().and_then(|t| t.get(i)) {
            Some(t) => format!("{ours:>7.2} ({t:>7.2})"),
            None => format!("{ours:>7.2} (   —   )"),
        };
        println!(
            "{:<10} {:>19} {:>19} {:>11.2} / {:>10.2}",
            threads,
            cell(sgd, 0),
            cell(adam, 1),
            copy * 2.5,
            copy * 3.5
        );
    }
}
