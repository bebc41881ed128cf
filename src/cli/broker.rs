//! `fedwasm broker`: the embedded MQTT broker on its own.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use fedwasm::transport::EmbeddedBroker;

/// Options of `fedwasm broker`.
#[derive(Args)]
pub struct BrokerArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:1883")]
    bind: SocketAddr,
}

/// Run the broker until Ctrl-C or SIGTERM.
pub fn run(args: BrokerArgs) -> anyhow::Result<ExitCode> {
    let broker = EmbeddedBroker::start(args.bind, None).context("starting the MQTT broker")?;
    println!("MQTT broker listening on {}", broker.url());
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(super::signals::shutdown_signal());
    println!("broker stopped");
    Ok(ExitCode::SUCCESS)
}
