//! `fedwasm roster`: whose keys a node or researcher trusts, and our own.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

use fedwasm::identity::{
    Credentials, PublicKey, Role, Roster, node_roster_file, researcher_roster_file,
};
use fedwasm::node::NodeConfig;

/// Which roster a command works on.
#[derive(Args, Clone)]
pub struct RosterFile {
    /// A node folder: its roster (the researchers it serves) and its key.
    #[arg(long, conflicts_with = "roster")]
    dir: Option<PathBuf>,
    /// The researcher's roster file (default: $FEDWASM_DIR/roster.toml).
    #[arg(long, env = "FEDWASM_ROSTER")]
    roster: Option<PathBuf>,
}

impl RosterFile {
    fn path(&self) -> PathBuf {
        match (&self.dir, &self.roster) {
            (Some(dir), _) => node_roster_file(dir),
            (None, Some(file)) => file.clone(),
            (None, None) => researcher_roster_file(),
        }
    }
}

/// Node or researcher, on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// A node's key (in a researcher's roster).
    Node,
    /// A researcher's key (in a node's roster: a researcher it serves).
    Researcher,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Node => Role::Node,
            RoleArg::Researcher => Role::Researcher,
        }
    }
}

/// Roster commands.
#[derive(Subcommand)]
pub enum RosterCommand {
    /// Show our own key (a node's with --dir, else the researcher's) and
    /// what the other side runs to pin it.
    Whoami {
        /// A node folder.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The researcher's key file (default: $FEDWASM_DIR/identity.key, made on first use).
        #[arg(long, env = "FEDWASM_IDENTITY", conflicts_with = "dir")]
        identity: Option<PathBuf>,
        /// The researcher id (default: derived from the key).
        #[arg(long, conflicts_with = "dir")]
        researcher_id: Option<String>,
    },
    /// List the pinned keys.
    List {
        #[command(flatten)]
        file: RosterFile,
    },
    /// Pin KEY for ID (received out of band: by mail, on a call, on paper).
    Add {
        #[command(flatten)]
        file: RosterFile,
        /// `node` or `researcher`.
        role: RoleArg,
        /// The node or researcher id.
        id: String,
        /// Its key, `ed25519:` and 64 hex digits.
        key: String,
    },
    /// Forget ID's key (before pinning a replaced one).
    Remove {
        #[command(flatten)]
        file: RosterFile,
        /// `node` or `researcher`.
        role: RoleArg,
        /// The node or researcher id.
        id: String,
    },
    /// Pin the key of an id seen for the first time instead of refusing it
    /// (`on`), or not (`off`, the default). For local work only.
    TrustOnFirstUse {
        #[command(flatten)]
        file: RosterFile,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        mode: String,
    },
}

/// Run a roster command.
pub fn run(cmd: RosterCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RosterCommand::Whoami {
            dir,
            identity,
            researcher_id,
        } => whoami(dir, identity, researcher_id)?,
        RosterCommand::List { file } => {
            let path = file.path();
            let roster = Roster::load(&path)?;
            print!("{}", listing(&roster));
        }
        RosterCommand::Add {
            file,
            role,
            id,
            key,
        } => {
            let path = file.path();
            let key: PublicKey = key.parse()?;
            let mut roster = Roster::load(&path)?;
            roster.pin(role.into(), &id, key)?;
            roster.save(&path)?;
            println!(
                "pinned {} `{id}`: {key} (fingerprint {})",
                Role::from(role),
                key.fingerprint()
            );
        }
        RosterCommand::Remove { file, role, id } => {
            let path = file.path();
            let mut roster = Roster::load(&path)?;
            if !roster.remove(role.into(), &id) {
                bail!(
                    "no {} `{id}` in the roster; `fedwasm roster list` shows it",
                    Role::from(role)
                );
            }
            roster.save(&path)?;
            println!("removed {} `{id}`", Role::from(role));
        }
        RosterCommand::TrustOnFirstUse { file, mode } => {
            let path = file.path();
            let mut roster = Roster::load(&path)?;
            roster.trust_on_first_use = mode == "on";
            roster.save(&path)?;
            println!(
                "trust on first use is {mode}{}",
                if roster.trust_on_first_use {
                    ": whoever speaks first under a new id owns it; for local work only"
                } else {
                    ""
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Our key, and the command that pins it on the other side.
fn whoami(
    dir: Option<PathBuf>,
    identity: Option<PathBuf>,
    researcher_id: Option<String>,
) -> anyhow::Result<()> {
    let credentials = match &dir {
        Some(dir) => NodeConfig::load(dir)?.credentials(dir)?,
        None => Credentials::researcher(identity.as_deref(), None, researcher_id.as_deref())
            .context("loading the researcher's key")?,
    };
    let me = &credentials.identity;
    let key = me.public();
    println!("{} {}", me.role(), me.id());
    println!("key: {key}");
    println!("fingerprint: {}", key.fingerprint());
    let dir_flag = match me.role() {
        Role::Node => "",
        Role::Researcher => " --dir <node folder>",
    };
    println!(
        "to pin it, the other side runs: fedwasm roster add{dir_flag} {} {} {key}",
        me.role(),
        me.id()
    );
    Ok(())
}

/// The roster as lines: mode, then each pinned key.
fn listing(roster: &Roster) -> String {
    let mut out = format!(
        "trust on first use: {}\n",
        if roster.trust_on_first_use {
            "on"
        } else {
            "off"
        }
    );
    for role in [Role::Node, Role::Researcher] {
        for (id, key) in roster.of(role) {
            out.push_str(&format!(
                "{role:<10} {id:<24} {key} ({})\n",
                key.fingerprint()
            ));
        }
    }
    if roster.nodes.is_empty() && roster.researchers.is_empty() {
        out.push_str("no keys pinned\n");
    }
    out
}
