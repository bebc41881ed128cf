//! What a node configures about its sandbox: limits and where compiled plans are cached.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a call that runs too long is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interruption {
    /// wasmtime's epoch interruption: a check at every loop header, which makes
    /// SIMD-heavy training loops 1.5–3× slower. Used for short calls in-process
    /// (describe, predict, `plan inspect`).
    Epoch,
    /// No check inside the plan; the caller enforces the deadline from outside,
    /// by running the task in a worker process it kills at the deadline.
    External,
}

/// Limits and caching of the plan sandbox; every field has a sane default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Cap on a plan's linear memory, in MiB.
    pub memory_mib: u64,
    /// Cap on the wasm stack, in KiB.
    pub stack_kib: usize,
    /// Deadline of one plan call under [`Interruption::Epoch`], in seconds.
    pub call_timeout_secs: f64,
    /// Bytes of stdout and of stderr kept per task (the rest is dropped).
    pub output_bytes: usize,
    /// Log messages kept per task.
    pub log_messages: usize,
    /// Where compiled plans are kept between processes; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// How overlong calls are stopped.
    pub interruption: Interruption,
    /// Longest time compiling one component may take, in seconds.
    pub compile_timeout_secs: f64,
    /// Most memory compiling one component may take, in MiB.
    pub compile_memory_mib: u64,
    /// Threads a plan's host tensor operations run on; 0 (the default)
    /// means every core. The results are the same bits whatever the number.
    pub compute_threads: usize,
    /// The `fedwasm` executable that compiles components in a child process
    /// under the two limits above; `None` compiles in this process, without
    /// them (for plans one built oneself). Set by fedwasm, never configured.
    #[serde(skip)]
    pub compiler: Option<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            memory_mib: 512,
            stack_kib: 1024,
            call_timeout_secs: 60.0,
            output_bytes: 64 * 1024,
            log_messages: 1000,
            cache_dir: None,
            interruption: Interruption::Epoch,
            compile_timeout_secs: 120.0,
            compile_memory_mib: 2048,
            compute_threads: 0,
            compiler: None,
        }
    }
}

impl SandboxConfig {
    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize).saturating_mul(1 << 20)
    }

    /// The compile deadline.
    pub fn compile_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.compile_timeout_secs.max(0.001))
    }

    /// This configuration, compiling in a child process of `exe` (the
    /// `fedwasm` executable) under the compile limits.
    pub fn compiling_with(self, exe: PathBuf) -> Self {
        SandboxConfig {
            compiler: Some(exe),
            ..self
        }
    }

    /// Threads host tensor operations run on: `compute_threads`, or every
    /// core when it is 0.
    pub fn threads(&self) -> usize {
        match self.compute_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The per-call deadline.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.call_timeout_secs.max(0.001))
    }
}
