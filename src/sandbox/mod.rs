//! The plan sandbox: compiles training-plan components and runs them with no
//! ambient authority.
//!
//! A node makes one [`Sandbox`] per process. [`Sandbox::load`] checks that the
//! bytes are a component of the `fedwasm:plan/training-plan` world, compiles
//! it once (cached in memory and, with `cache_dir`, on disk by SHA-256) and
//! pre-links it; [`Sandbox::instantiate`] then gives every task a fresh
//! [`PlanInstance`] in its own store (~25 µs), so nothing leaks between tasks
//! and a trap never poisons the next one.
//!
//! # What a plan can reach
//! - `fedwasm:plan/compute`: tensors the host holds and the operations on
//!   them, run natively on `compute_threads` cores (see [`compute`]).
//! - `fedwasm:plan/random` (seeded per task, see [`random`]) and `fedwasm:plan/log`.
//! - WASI 0.2 (`wasi:io`, `wasi:cli`, `wasi:clocks`, `wasi:random`,
//!   `wasi:filesystem`, `wasi:sockets`), linked because Rust's std imports it,
//!   but granting nothing: see [`wasi`](self) for the details.
//!
//! # Limits
//! Memory is capped by a resource limiter, the stack by wasmtime, and time
//! either by epoch interruption ([`Interruption::Epoch`], for short calls) or
//! from outside by a worker process that is killed at the deadline
//! ([`Interruption::External`], for training, where epoch checks would cost
//! 1.5–3× in SIMD loops). Each breach is a [`SandboxError`] naming the limit
//! and the plan function.

pub(crate) mod bindings;
mod cache;
pub mod codegen;
mod compile;
pub mod compute;
mod config;
mod engine;
mod error;
pub(crate) mod host;
mod instance;
mod output;
pub mod random;
mod spares;
mod wasi;

/// The version of `wit/plan.wit` this host serves. A plan built for
/// another one is refused when it is loaded, naming both.
pub const PLAN_CONTRACT: &str = "0.3.0";

pub use bindings::error_kind_name;
pub use bindings::types;
pub use compile::{COMPILE_SUBCOMMAND, compile_main};
pub use config::{Interruption, SandboxConfig};
pub use engine::{LoadedPlan, Sandbox};
pub use error::SandboxError;
pub use host::{PlanLogLevel, PlanLogRecord};
pub use instance::PlanInstance;
