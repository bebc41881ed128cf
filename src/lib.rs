//! # fedwasm
//!
//! Federated learning for biomedical research where training plans are
//! WebAssembly components: nodes (hospitals) keep their data and run the
//! researcher's plan in a wasmtime sandbox with no files, no network, no clock,
//! bounded memory and time, seeded randomness, approved by hash.
//!
//! # Layout
//! - `wit/plan.wit`: the plan ABI (`fedwasm:plan/training-plan`).
//! - [`sandbox`]: compiles and runs plan components under limits.
//! - [`dataset`]: loads a node's tabular data and prepares it as the plan asks.
//! - [`training`]: one training task (arguments, batching, the step loop) and
//!   the worker process that runs it under a watchdog.
//! - [`plan_build`]: builds a plan crate into a component for plan authors.
//! - [`tensors`]: parameters in safetensors files.
//! - [`node`]: the node: its persistent state (datasets, plan approvals) and
//!   the daemon that answers researchers and trains.
//! - [`transport`]: MQTT (reconnecting client, embedded broker).
//! - [`researcher`]: the researcher's side of the protocol.
//! - [`local_federation`]: [`LocalFederation`], broker + repository + N
//!   nodes in this process on loopback (the demo, benchmarks, tests).
//! - [`repository`]: the content-addressed file repository (server and client).
//! - [`wire`]: the researcher–node protocol and its MQTT topics.
//! - [`digest`]: SHA-256 identities of plans and blobs.
//! - [`identity`]: Ed25519 keys of nodes and researchers, and the roster
//!   of keys each trusts (who sent this?).
//! - [`prelude`]: what a program driving fedwasm usually needs, in one `use`.
//! - `fuzzing`: what the `cargo fuzz` targets in `fuzz/` check.
//! - `src/cli/`: the `fedwasm` command line (the only place that uses `anyhow`).

pub mod dataset;
#[cfg(all(
    feature = "node",
    feature = "researcher",
    feature = "broker",
    feature = "repository-server"
))]
pub mod demo;
pub mod digest;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
#[cfg(all(
    feature = "node",
    feature = "researcher",
    feature = "broker",
    feature = "repository-server"
))]
pub mod local_federation;
#[cfg(feature = "node")]
pub mod node;
pub mod plan_build;
pub mod prelude;
pub mod repository;
#[cfg(feature = "researcher")]
pub mod researcher;
pub mod sandbox;
pub mod tensors;
pub mod training;
pub mod transport;
pub mod wire;

#[cfg(all(
    feature = "node",
    feature = "researcher",
    feature = "broker",
    feature = "repository-server"
))]
pub use local_federation::{LocalFederation, LocalFederationConfig, LocalNode};
