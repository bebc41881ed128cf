//! `fedwasm repository`: run the file repository on its own.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use fedwasm::repository::{RepositoryConfig, serve};

/// Options of `fedwasm repository`.
#[derive(Args)]
pub struct RepositoryArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8844")]
    bind: String,
    /// Folder that holds the blobs.
    #[arg(long, default_value = "fedwasm-repository")]
    dir: PathBuf,
    /// Bearer token clients must send (default: the FEDWASM_REPOSITORY_TOKEN variable, else none).
    #[arg(long, env = "FEDWASM_REPOSITORY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Largest blob accepted, in MiB.
    #[arg(long, default_value_t = 4096)]
    max_blob_mib: u64,
    /// Disk quota of all blobs together, in GiB.
    #[arg(long, default_value_t = 64)]
    quota_gib: u64,
    /// Uploads received at the same time; more are asked to retry.
    #[arg(long, default_value_t = 16)]
    max_uploads: usize,
    /// Seconds a connection or an upload may send nothing before it is dropped.
    #[arg(long, default_value_t = 30)]
    read_timeout_secs: u64,
    /// Connections open at once; more wait for one to close.
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Connections open at once from one peer address; more are closed.
    #[arg(long, default_value_t = 32)]
    max_connections_per_peer: usize,
    /// Seconds a request's headers may take from their first byte.
    #[arg(long, default_value_t = 10)]
    header_timeout_secs: u64,
}

/// Serve until Ctrl-C.
pub fn run(args: RepositoryArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.bind)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}; pick another --bind address",
                    args.bind
                )
            })?;
        let config = RepositoryConfig {
            token: args.token,
            max_blob_bytes: args.max_blob_mib.saturating_mul(1 << 20),
            max_total_bytes: args.quota_gib.saturating_mul(1 << 30),
            max_concurrent_uploads: args.max_uploads.max(1),
            read_timeout: std::time::Duration::from_secs(args.read_timeout_secs.max(1)),
            max_connections: args.max_connections.max(1),
            max_connections_per_peer: args.max_connections_per_peer.max(1),
            header_timeout: std::time::Duration::from_secs(args.header_timeout_secs.max(1)),
            ..RepositoryConfig::new(&args.dir)
        };
        println!(
            "repository serving {} on http://{}",
            args.dir.display(),
            listener.local_addr()?
        );
        serve(listener, config, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}
