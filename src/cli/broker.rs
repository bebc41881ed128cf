//! `fedwasm broker`: the embedded MQTT broker on its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use fedwasm::transport::EmbeddedBroker;

/// Options of `fedwasm broker`.
#[derive(Args)]
pub struct BrokerArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:1883")]
    bind: SocketAddr,
    /// Clients must log in as one of the users of this file: one
    /// `username:password` per line (keep it readable by you only).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Let anyone in on an address other than loopback, without a password
    /// file (refused otherwise: every node and researcher could connect).
    #[arg(long, conflicts_with = "password_file")]
    allow_anonymous: bool,
}

/// The users of a password file.
fn users(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the password file {}", path.display()))?;
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, password)) = line.split_once(':') else {
            bail!(
                "{} line {}: expected `username:password`",
                path.display(),
                n + 1
            );
        };
        if user.is_empty() || password.is_empty() {
            bail!(
                "{} line {}: the username and the password must not be empty",
                path.display(),
                n + 1
            );
        }
        users.insert(user.to_string(), password.to_string());
    }
    if users.is_empty() {
        bail!("{} lists no user", path.display());
    }
    Ok(users)
}

/// Run the broker until Ctrl-C or SIGTERM.
pub fn run(args: BrokerArgs) -> anyhow::Result<ExitCode> {
    let users = args.password_file.as_deref().map(users).transpose()?;
    if users.is_none() && !args.bind.ip().is_loopback() && !args.allow_anonymous {
        bail!(
            "listening on {} without --password-file would let anyone on the network in; give a password file (one `username:password` per line), or --allow-anonymous",
            args.bind
        );
    }
    let broker = EmbeddedBroker::start(args.bind, users).context("starting the MQTT broker")?;
    println!("MQTT broker listening on {}", broker.url());
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(super::signals::shutdown_signal());
    println!("broker stopped");
    Ok(ExitCode::SUCCESS)
}
