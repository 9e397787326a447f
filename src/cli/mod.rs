//! Command line (SPEC: Command line). One file per subcommand; each returns the
//! process exit code.

mod check;
mod explain;
mod inject;
mod lint;
mod policy_test;
mod replay;
mod revoke;
mod schema;
pub mod token;
pub mod webhook;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "writ",
    version,
    about = "Execution-authority proxy: per-action authorization in front of unmodified backends"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: proxy listener + admin listener.
    Run {
        #[arg(long, env = "WRIT_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config fully; errors as FILE:LINE:COL: message.
    Check {
        #[arg(long, env = "WRIT_CONFIG")]
        config: PathBuf,
    },
    /// Report likely mistakes in a valid config, as FILE:LINE:COL: warning[CODE]: message.
    Lint {
        #[arg(long, env = "WRIT_CONFIG")]
        config: PathBuf,
    },
    /// Show how one request would be decided, check by check.
    Explain(explain::Args),
    /// Run policy test cases (--coverage: what they leave untested).
    Test(policy_test::Args),
    /// Guided tour on loopback with the bundled example.
    Demo {
        /// Exit after the tour instead of serving.
        #[arg(long)]
        once: bool,
    },
    /// Mint a signed token for testing.
    Token(token::Args),
    /// Print the JSON Schema of the config file.
    Schema,
    /// Decide recorded decision-log lines again under a new config; report what changes.
    Replay(replay::Args),
    /// Add (or --list, --remove) revocation entries in the configured store.
    Revoke(revoke::Args),
    /// Print Kubernetes manifests with the writ sidecar injected.
    Inject(inject::Args),
    /// Serve the mutating admission webhook that injects writ into pods.
    Webhook(webhook::Args),
}

pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Run { config } => crate::serve::run_command(&config),
        Command::Check { config } => check::run(&config),
        Command::Explain(args) => explain::run(args),
        Command::Lint { config } => lint::run(&config),
        Command::Test(args) => policy_test::run(&args),
        Command::Demo { once } => crate::demo::run(once),
        Command::Token(args) => token::run(args),
        Command::Schema => schema::run(),
        Command::Replay(args) => replay::run(args),
        Command::Revoke(args) => revoke::run(args),
        Command::Inject(args) => inject::run(args),
        Command::Webhook(args) => webhook::run(args),
    }
}
