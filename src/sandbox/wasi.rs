//! The WASI context a plan runs with: it grants nothing.
//!
//! `wasm32-wasip2` std imports WASI interfaces even in a plan that never does
//! I/O (to print panic messages), so every WASI 0.2 interface is linked — but
//! with no preopened directories (every file open fails), no environment
//! variables, no arguments, no stdin, no network (socket address checks deny
//! everything, name lookup is off), clocks frozen at zero (wall clock at the
//! Unix epoch, monotonic clock at 0, so a plan cannot measure time) and WASI
//! randomness drawn deterministically from the task's seed. stdout and stderr
//! go to bounded in-memory buffers that end up in the node's log and in error
//! replies.

use std::time::Duration;

use wasmtime_wasi::{Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use super::output::CappedOutput;
use super::random::StreamSeed;

/// A wall clock stopped at the Unix epoch.
struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A monotonic clock that never advances.
struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// A WASI context that grants nothing, with captured, bounded stdout and stderr.
pub(crate) fn deny_all(seed: &StreamSeed, stdout: CappedOutput, stderr: CappedOutput) -> WasiCtx {
    let wasi_seed = {
        let mut bytes = seed.0;
        // Distinct from the plan's own stream, so WASI draws never mirror it.
        bytes.reverse();
        bytes.to_vec()
    };
    let mut insecure_seed = [0u8; 16];
    insecure_seed.copy_from_slice(&seed.0[..16]);
    WasiCtxBuilder::new()
        .stdout(stdout)
        .stderr(stderr)
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false)
        .secure_random(Deterministic::new(wasi_seed.clone()))
        .insecure_random(Deterministic::new(wasi_seed))
        .insecure_random_seed(u128::from_le_bytes(insecure_seed))
        .wall_clock(FrozenWallClock)
        .monotonic_clock(FrozenMonotonicClock)
        .build()
}
