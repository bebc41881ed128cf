//! The host kernels' matrix product in GFLOP/s, at 1 and 2 threads, against
//! this core's fused multiply-add peak measured in the same run (a loop of
//! independent FMAs) and, when `FEDWASM_BENCH_TORCH` names a Python with
//! torch, PyTorch's `torch.mm` on the same shapes and thread counts.
//!
//! `cargo bench --bench kernels`. Timings are the best of repeated runs.

use std::hint::black_box;
use std::time::Instant;

use fedwasm_kernels::{MatRef, gemm};

/// (m, k, n): square products, and the shapes convolutions and linear
/// layers of the reference models reduce to.
const SHAPES: [(usize, usize, usize); 5] = [
    (512, 512, 512),
    (1024, 1024, 1024),
    (64, 784, 128),
    (64, 576, 4096),
    (128, 1152, 784),
];

/// GFLOP/s of one core's FMA units: 12 independent 8-lane chains.
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
    let iters = 20_000_000;
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            black_box(unsafe { chains(black_box(iters)) });
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min);
    Some((iters * 12 * 8 * 2) as f64 / best / 1e9)
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
    let python = std::env::var_os("FEDWASM_BENCH_TORCH")?;
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
    let out = std::process::Command::new(python)
        .args(["-c", &script])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    })
}

fn main() {
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
