//! Sums in one fixed tree, so a loss or a batch statistic has the same bits
//! on every thread count and every vector width.
//!
//! The values are cut into chunks of [`CHUNK`]; within a chunk, lane `i`
//! of [`LANES`] adds every `LANES`-th value in order, and the lanes are
//! added pairwise ((0+1)+(2+3))+((4+5)+(6+7)); the chunks' sums are then
//! added pairwise, halving at the midpoint. The compiler may vectorise the
//! lanes at any width: the tree is in the code, not in the hardware.

use crate::parallel::{for_each_chunk_mut, threads};

/// Lanes of one chunk's partial sums.
pub const LANES: usize = 8;
/// Values per chunk: the unit of parallel work and of the outer tree.
pub const CHUNK: usize = 4096;

/// The sum of `values` in the fixed tree.
pub fn sum(values: &[f32]) -> f32 {
    let chunks = values.len().div_ceil(CHUNK);
    if chunks <= 1 {
        return lanes(values);
    }
    let mut partials = vec![0.0f32; chunks];
    if threads() > 1 {
        for_each_chunk_mut(&mut partials, 1, |i, p| {
            p[0] = lanes(&values[i * CHUNK..((i + 1) * CHUNK).min(values.len())]);
        });
    } else {
        for (p, c) in partials.iter_mut().zip(values.chunks(CHUNK)) {
            *p = lanes(c);
        }
    }
    pairwise(&partials)
}

/// The sum of `f(value)` over `values` in the same tree as [`sum`] (one
/// chunk at a time, so nothing of the size of `values` is allocated).
pub fn sum_map(values: &[f32], f: impl Fn(f32) -> f32 + Sync) -> f32 {
    let mut partials = Vec::with_capacity(values.len().div_ceil(CHUNK));
    let mut scratch = vec![0.0f32; CHUNK.min(values.len())];
    for c in values.chunks(CHUNK) {
        for (s, &v) in scratch.iter_mut().zip(c) {
            *s = f(v);
        }
        partials.push(lanes(&scratch[..c.len()]));
    }
    match partials.len() {
        0 => 0.0,
        _ => pairwise(&partials),
    }
}

/// One chunk: LANES interleaved running sums, added pairwise.
fn lanes(values: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut rows = values.chunks_exact(LANES);
    for row in &mut rows {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(rows.remainder()) {
        *a += v;
    }
    add_lanes(&acc)
}

/// The lanes of a partial sum added in the fixed tree
/// ((0+1)+(2+3))+((4+5)+(6+7)).
pub fn add_lanes(acc: &[f32; LANES]) -> f32 {
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// Pairwise sum, split at the midpoint.
fn pairwise(values: &[f32]) -> f32 {
    match values {
        [] => 0.0,
        [x] => *x,
        _ => {
            let mid = values.len() / 2;
            pairwise(&values[..mid]) + pairwise(&values[mid..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 997.0 - 0.5)
            .collect()
    }

    #[test]
    fn sums_are_close_to_the_exact_sum() {
        for n in [0, 1, 7, 8, 9, 4095, 4096, 4097, 100_000] {
            let v = values(n);
            let exact: f64 = v.iter().map(|&x| x as f64).sum();
            assert!((sum(&v) as f64 - exact).abs() < 1e-3, "{n}");
            assert_eq!(sum(&v).to_bits(), sum_map(&v, |x| x).to_bits(), "{n}");
        }
    }

    #[cfg(feature = "parallel")]
    #[test]
    fn thread_counts_do_not_change_a_bit() {
        let v = values(1_000_003);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| sum(&v).to_bits())
        };
        let one = run(1);
        for threads in [2, 3, 8] {
            assert_eq!(run(threads), one);
        }
    }
}
