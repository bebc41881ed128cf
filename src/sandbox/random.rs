//! The plan's random stream, seeded from (random_seed, round, node id).
//!
//! Every task gets its own ChaCha8 stream whose 32-byte seed is a SHA-256 of a
//! domain label and the three inputs, so the same experiment seed gives the same
//! draws on a node in a given round and different draws on other nodes and in
//! other rounds. The plan SDK's native build runs the same stream from the same
//! seed, which is what makes native and wasm runs comparable bit for bit.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// Seed of one task's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSeed(pub [u8; 32]);

impl StreamSeed {
    /// Seed for the plan's `random` import on `node` in `round`.
    pub fn for_plan(random_seed: u64, round: u32, node: &str) -> Self {
        Self::derive("fedwasm:plan-random:v1", random_seed, round, node)
    }

    /// Seed for the host's own draws (shuffling, validation split) for the same task,
    /// independent of what the plan draws.
    pub fn for_loader(random_seed: u64, round: u32, node: &str) -> Self {
        Self::derive("fedwasm:loader:v1", random_seed, round, node)
    }

    /// Seed of the host's image augmentation for the same task: each sample
    /// drawn takes its own ChaCha stream of it (see `image_pipeline`).
    pub fn for_augmentation(random_seed: u64, round: u32, node: &str) -> Self {
        Self::derive("fedwasm:augmentation:v1", random_seed, round, node)
    }

    /// Seed of the validation split on `node`: the same in every round, so a
    /// node validates on the same rows throughout an experiment.
    pub fn for_split(random_seed: u64, node: &str) -> Self {
        Self::derive("fedwasm:split:v1", random_seed, 0, node)
    }

    /// Seed for the plan's `random` import when the node adds differential
    /// privacy: mixes in the node's private noise key, so the researcher, who
    /// knows `random_seed`, cannot replay the noise. `round` must be the real
    /// round, so the noise is fresh every round.
    pub fn for_private_plan(key: &[u8; 32], random_seed: u64, round: u32, node: &str) -> Self {
        Self::derive_keyed(
            "fedwasm:private-plan-random:v1",
            Some(key),
            random_seed,
            round,
            node,
        )
    }

    /// Seed of the noise a node adds to its update (central DP); keyed like
    /// [`StreamSeed::for_private_plan`].
    pub fn for_update_noise(key: &[u8; 32], random_seed: u64, round: u32, node: &str) -> Self {
        Self::derive_keyed(
            "fedwasm:update-noise:v1",
            Some(key),
            random_seed,
            round,
            node,
        )
    }

    fn derive(label: &str, random_seed: u64, round: u32, node: &str) -> Self {
        Self::derive_keyed(label, None, random_seed, round, node)
    }

    fn derive_keyed(
        label: &str,
        key: Option<&[u8; 32]>,
        random_seed: u64,
        round: u32,
        node: &str,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update([0]);
        if let Some(key) = key {
            h.update(key);
        }
        h.update(random_seed.to_le_bytes());
        h.update(round.to_le_bytes());
        h.update((node.len() as u64).to_le_bytes());
        h.update(node.as_bytes());
        StreamSeed(h.finalize().into())
    }

    /// A generator positioned at the start of the stream.
    pub fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::from_seed(self.0)
    }
}

/// Map 64 random bits to a float uniform in [0, 1): the top 24 bits, scaled.
/// Must equal `fedwasm_plan::random::unit_f32`.
pub fn unit_f32(bits: u64) -> f32 {
    (bits >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// The next draw of `rng` as a unit float.
pub fn next_unit_f32(rng: &mut ChaCha8Rng) -> f32 {
    unit_f32(rng.next_u64())
}

/// Standard normal floats from `rng`: Box–Muller on pairs of unit floats
/// (u, v) giving √(−2·ln(1−u))·(cos 2πv, sin 2πv), a pair drawn when its
/// first value is taken.
struct Normals<'a> {
    rng: &'a mut ChaCha8Rng,
    pending: Option<f32>,
}

impl Iterator for Normals<'_> {
    type Item = f32;

    fn next(&mut self) -> Option<f32> {
        if let Some(sin) = self.pending.take() {
            return Some(sin);
        }
        let (u, v) = (next_unit_f32(self.rng), next_unit_f32(self.rng));
        // 1 − u lies in (0, 1], so the logarithm is finite.
        let radius = libm::sqrtf(-2.0 * libm::logf(1.0 - u));
        let (sin, cos) = libm::sincosf(2.0 * std::f32::consts::PI * v);
        self.pending = Some(radius * sin);
        Some(radius * cos)
    }
}

/// `count` standard normal floats from `rng`, as the `random.fill-normal`
/// import promises. Must equal `fedwasm_plan::random::normal` of a native
/// plan build on the same stream (a parity test checks it).
pub fn fill_normal(rng: &mut ChaCha8Rng, count: usize) -> Vec<f32> {
    Normals { rng, pending: None }.take(count).collect()
}

/// `values[i] += std·n_i`, the normals those `fill_normal(rng,
/// values.len())` would give, drawn as they are added (nothing allocated):
/// `compute.add-normal`, DP-SGD's noise added where the gradient is.
pub fn add_normals(rng: &mut ChaCha8Rng, std: f32, values: &mut [f32]) {
    let normals = Normals { rng, pending: None };
    for (v, n) in values.iter_mut().zip(normals) {
        *v += std * n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_added_in_place_is_the_filled_normals_scaled() {
        let seed = [7u8; 32];
        for len in [0usize, 1, 2, 7] {
            let mut values: Vec<f32> = (0..len).map(|i| i as f32 - 2.0).collect();
            let before = values.clone();
            let mut a = ChaCha8Rng::from_seed(seed);
            add_normals(&mut a, 0.5, &mut values);
            let mut b = ChaCha8Rng::from_seed(seed);
            let normals = fill_normal(&mut b, len);
            for i in 0..len {
                assert_eq!(
                    values[i].to_bits(),
                    (before[i] + 0.5 * normals[i]).to_bits()
                );
            }
            // Both leave the stream at the same place.
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn seeds_differ_by_every_input_and_label() {
        let base = StreamSeed::for_plan(1, 0, "node-a");
        assert_eq!(base, StreamSeed::for_plan(1, 0, "node-a"));
        assert_ne!(base, StreamSeed::for_plan(2, 0, "node-a"));
        assert_ne!(base, StreamSeed::for_plan(1, 1, "node-a"));
        assert_ne!(base, StreamSeed::for_plan(1, 0, "node-b"));
        assert_ne!(base, StreamSeed::for_loader(1, 0, "node-a"));
        let private = StreamSeed::for_private_plan(&[1; 32], 1, 0, "node-a");
        assert_ne!(
            private,
            StreamSeed::for_private_plan(&[2; 32], 1, 0, "node-a")
        );
        assert_ne!(
            private,
            StreamSeed::for_update_noise(&[1; 32], 1, 0, "node-a")
        );
    }
}
