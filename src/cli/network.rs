//! `fedwasm ping` and `fedwasm datasets`: what the researcher sees of the nodes.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use fedwasm::identity::Credentials;
use fedwasm::researcher::{NodeLink, Reply};
use fedwasm::transport::BrokerConfig;
use fedwasm::wire::{DatasetSummary, ErrorMessage, Message, Pong};

/// How to reach the broker, shared by the researcher's commands.
#[derive(Args, Clone)]
pub struct BrokerOptions {
    /// MQTT broker URL.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883", env = "FEDWASM_BROKER")]
    broker: String,
    /// Broker username.
    #[arg(long, env = "FEDWASM_BROKER_USERNAME")]
    username: Option<String>,
    /// Broker password (default: the FEDWASM_BROKER_PASSWORD variable).
    #[arg(long, env = "FEDWASM_BROKER_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// CA certificate (PEM) of an mqtts:// broker.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Researcher id to sign as (default: one derived from the key).
    #[arg(long)]
    researcher_id: Option<String>,
    /// The researcher's secret key (default: $FEDWASM_DIR/identity.key, made on first use).
    #[arg(long, env = "FEDWASM_IDENTITY")]
    identity: Option<PathBuf>,
    /// The nodes' pinned keys (default: $FEDWASM_DIR/roster.toml; `fedwasm roster`).
    #[arg(long, env = "FEDWASM_ROSTER")]
    roster: Option<PathBuf>,
}

impl BrokerOptions {
    /// The broker configuration these options describe.
    pub fn config(&self) -> BrokerConfig {
        BrokerConfig {
            username: self.username.clone(),
            password: self.password.clone(),
            ca_file: self.ca_file.clone(),
            connect_attempts: 5,
            ..BrokerConfig::new(&self.broker)
        }
    }

    /// Connect a link signing with the researcher's key.
    pub async fn connect(&self) -> anyhow::Result<NodeLink> {
        let credentials = Credentials::researcher(
            self.identity.as_deref(),
            self.roster.as_deref(),
            self.researcher_id.as_deref(),
        )
        .context("loading the researcher's key and roster")?;
        NodeLink::connect(&self.config(), &credentials)
            .await
            .with_context(|| format!("connecting to the broker at {}", self.broker))
    }
}

/// Options of `fedwasm ping`.
#[derive(Args)]
pub struct PingArgs {
    #[command(flatten)]
    broker: BrokerOptions,
    /// Only these nodes (comma-separated); the command returns as soon as all answered.
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<String>,
    /// Seconds to wait for answers.
    #[arg(long, default_value_t = 2.0)]
    wait: f64,
}

/// Options of `fedwasm datasets`.
#[derive(Args)]
pub struct DatasetsArgs {
    #[command(flatten)]
    broker: BrokerOptions,
    /// Only datasets carrying all these tags (comma-separated); every dataset otherwise.
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Only these nodes (comma-separated); the command returns as soon as all answered.
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<String>,
    /// Seconds to wait for answers.
    #[arg(long, default_value_t = 2.0)]
    wait: f64,
}

fn node_set(nodes: &[String]) -> Option<BTreeSet<String>> {
    (!nodes.is_empty()).then(|| nodes.iter().cloned().collect())
}

fn wait(seconds: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--wait must be a positive number of seconds")
}

/// Render rows as a left-aligned table with a header.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out += &line(row.clone());
    }
    out
}

fn error_text(message: &Message) -> String {
    match message {
        Message::Error(ErrorMessage { code, message, .. }) => format!("error {code:?}: {message}"),
        other => format!("unexpected {}", other.command()),
    }
}

/// Ping the nodes and print who answered.
pub fn ping(args: PingArgs) -> anyhow::Result<ExitCode> {
    let window = wait(args.wait)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let mut link = args.broker.connect().await?;
        let expected = node_set(&args.nodes);
        let sent = Instant::now();
        let replies = link.ping(expected.as_ref(), window).await?;
        let elapsed = sent.elapsed();
        link.disconnect().await;
        let mut rows = Vec::new();
        for (node, reply) in &replies {
            let state = match reply {
                Reply::Answer(Message::Pong(Pong { busy: true, .. })) => "training".to_string(),
                Reply::Answer(Message::Pong(Pong { .. })) => "idle".to_string(),
                other => error_text(other.message()),
            };
            rows.push(vec![node.clone(), state]);
        }
        let missing = missing(expected.as_ref(), replies.keys());
        print!("{}", table(&["NODE", "STATE"], &rows));
        println!(
            "{} node(s) answered within {:.1} s",
            replies.len(),
            elapsed.as_secs_f64()
        );
        report_missing(&missing)
    })
}

fn missing<'a>(
    expected: Option<&BTreeSet<String>>,
    answered: impl Iterator<Item = &'a String>,
) -> Vec<String> {
    let answered: BTreeSet<&String> = answered.collect();
    expected
        .map(|e| {
            e.iter()
                .filter(|n| !answered.contains(n))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn report_missing(missing: &[String]) -> anyhow::Result<ExitCode> {
    if missing.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "no answer from: {}; are those nodes started and connected to this broker?",
        missing.join(", ")
    );
    Ok(ExitCode::FAILURE)
}

/// List (or search) the nodes' datasets and print them as a table.
pub fn datasets(args: DatasetsArgs) -> anyhow::Result<ExitCode> {
    let window = wait(args.wait)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let mut link = args.broker.connect().await?;
        let expected = node_set(&args.nodes);
        let found = if args.tags.is_empty() {
            link.list(expected.as_ref(), window).await?
        } else {
            link.search(&args.tags, expected.as_ref(), window).await?
        };
        link.disconnect().await;
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        for (node, datasets) in &found {
            match datasets {
                Ok(datasets) => rows.extend(datasets.iter().map(|d| row(node, d))),
                Err(message) => failures.push(format!("{node}: {}", error_text(message))),
            }
        }
        print!(
            "{}",
            table(
                &["NODE", "DATASET", "NAME", "TAGS", "TYPE", "SHAPE", "TARGET"],
                &rows
            )
        );
        println!("{} dataset(s) on {} node(s)", rows.len(), found.len());
        for failure in &failures {
            eprintln!("{failure}");
        }
        let code = report_missing(&missing(expected.as_ref(), found.keys()))?;
        Ok(if failures.is_empty() {
            code
        } else {
            ExitCode::FAILURE
        })
    })
}

fn row(node: &str, d: &DatasetSummary) -> Vec<String> {
    vec![
        node.to_string(),
        d.dataset_id.clone(),
        d.name.clone(),
        d.tags.join(","),
        d.data_type.clone(),
        d.shape
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("×"),
        d.target.clone().unwrap_or_else(|| "-".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["b".into(), "".into()],
            ],
        );
        assert_eq!(t, "A          LONGER\nwide cell  x\nb\n");
    }
}
