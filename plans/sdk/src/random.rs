//! Randomness from the host's seeded stream.
//!
//! In a component every draw calls the `fedwasm:plan/random` import, which the
//! node seeds from (random_seed, round, node id). Compiled natively (tests,
//! benchmarks, parity checks) the same ChaCha8 stream runs in-process once
//! [`seed_native`] has given it the host's seed, so both builds draw the same numbers.

#[cfg(target_arch = "wasm32")]
mod source {
    use crate::__bindings::fedwasm::plan::random;

    pub fn next_u64() -> u64 {
        random::next_u64()
    }

    pub fn fill_f32(count: usize) -> Vec<f32> {
        random::fill_f32(count as u32)
    }

    pub fn fill_normal(count: usize) -> Vec<f32> {
        random::fill_normal(count as u32)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod source {
    use std::cell::RefCell;

    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    thread_local! {
        static STREAM: RefCell<ChaCha8Rng> = RefCell::new(ChaCha8Rng::from_seed([0; 32]));
    }

    pub fn seed(seed: [u8; 32]) {
        STREAM.with(|s| *s.borrow_mut() = ChaCha8Rng::from_seed(seed));
    }

    pub fn next_u64() -> u64 {
        STREAM.with(|s| s.borrow_mut().next_u64())
    }

    pub fn fill_f32(count: usize) -> Vec<f32> {
        (0..count).map(|_| super::unit_f32(next_u64())).collect()
    }

    pub fn fill_normal(count: usize) -> Vec<f32> {
        super::box_muller(&fill_f32(count.div_ceil(2) * 2), count)
    }
}

/// Seed the in-process stream of a native build with the 32-byte seed the host
/// would give the component (`fedwasm::sandbox::random::stream_seed`).
#[cfg(not(target_arch = "wasm32"))]
pub fn seed_native(seed: [u8; 32]) {
    source::seed(seed);
}

/// Map 64 random bits to a float uniform in [0, 1): the top 24 bits, scaled.
/// The host's `fill-f32` uses exactly this mapping.
pub fn unit_f32(bits: u64) -> f32 {
    (bits >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// The next 64 random bits.
pub fn next_u64() -> u64 {
    source::next_u64()
}

/// `count` floats uniform in [0, 1).
pub fn uniform(count: usize) -> Vec<f32> {
    source::fill_f32(count)
}

/// `count` floats uniform in [low, high).
pub fn uniform_range(count: usize, low: f32, high: f32) -> Vec<f32> {
    uniform(count)
        .into_iter()
        .map(|u| low + (high - low) * u)
        .collect()
}

/// `count` standard normal floats (Box–Muller on the uniform stream, with
/// `libm`). In a component the host computes them (`random.fill-normal`,
/// natively and so faster); a native build runs the same code here, so both
/// builds draw the same bits.
pub fn normal(count: usize) -> Vec<f32> {
    source::fill_normal(count)
}

/// Box–Muller on pairs of uniforms (u, v): √(−2·ln(1−u))·(cos 2πv, sin 2πv),
/// the first `count` values. The host's `fill-normal` is the same code.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn box_muller(uniforms: &[f32], count: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(uniforms.len());
    for pair in uniforms.chunks_exact(2) {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let radius = libm::sqrtf(-2.0 * libm::logf(1.0 - pair[0]));
        // sincosf gives the same bits as sinf and cosf, in one reduction.
        let (sin, cos) = libm::sincosf(2.0 * std::f32::consts::PI * pair[1]);
        out.push(radius * cos);
        out.push(radius * sin);
    }
    out.truncate(count);
    out
}

/// A permutation of 0..n (Fisher–Yates on the stream).
pub fn permutation(n: usize) -> Vec<usize> {
    let mut items: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_stream_repeats_and_differs_by_seed() {
        seed_native([7; 32]);
        let a = uniform(5);
        seed_native([7; 32]);
        assert_eq!(a, uniform(5));
        seed_native([8; 32]);
        assert_ne!(a, uniform(5));
        assert!(a.iter().all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn normal_has_plausible_moments() {
        seed_native([1; 32]);
        let xs = normal(20_000);
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / xs.len() as f32;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn unit_f32_stays_below_one() {
        assert_eq!(unit_f32(0), 0.0);
        assert!(unit_f32(u64::MAX) < 1.0);
    }
}
