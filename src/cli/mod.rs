//! Command line (SPEC: Command line). One file per subcommand; each returns the
//! process exit code.

mod check;
mod explain;
mod inject;
mod policy_test;
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
    /// Show how one request would be decided, check by check.
    Explain(explain::Args),
    /// Run policy test cases.
    Test {
        #[arg(long, env = "WRIT_CONFIG")]
        config: PathBuf,
        /// Case files (YAML).
        #[arg(required = true)]
        cases: Vec<PathBuf>,
    },
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
        Command::Test { config, cases } => policy_test::run(&config, &cases),
        Command::Demo { once } => crate::demo::run(once),
        Command::Token(args) => token::run(args),
        Command::Schema => schema::run(),
        Command::Inject(args) => inject::run(args),
        Command::Webhook(args) => webhook::run(args),
    }
}
