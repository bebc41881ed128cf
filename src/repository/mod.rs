//! The file repository: content-addressed blobs over HTTP.
//!
//! Plans and parameter files never travel in MQTT messages; the sender
//! uploads them here and sends a [`crate::wire::BlobRef`] (URL + SHA-256).
//! Blobs are addressed by their SHA-256: the server checks the hash of every
//! upload against its URL, the client checks every download against the hash
//! it was promised, so a tampered or truncated file is always detected.
//! Bodies are streamed both ways (never held whole in memory), downloads
//! resume with HTTP Range requests, and an optional bearer token guards both.
//!
//! - `server`: the axum service, started with `server::serve` (feature
//!   `repository-server`).
//! - [`client`]: [`RepositoryClient`], used by nodes and the researcher.

pub mod client;
mod error;
#[cfg(feature = "repository-server")]
mod guarded;
#[cfg(feature = "repository-server")]
pub(crate) mod server;

pub use client::{RepositoryClient, RepositoryLink};
pub use error::RepositoryError;
#[cfg(feature = "repository-server")]
pub use server::{RepositoryConfig, serve};
