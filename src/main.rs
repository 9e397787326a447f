//! The `writ` binary: parse the command line, run the command, exit with its code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = writ::cli::Cli::parse();
    ExitCode::from(writ::cli::run(cli))
}

/// mimalloc: allocation is a visible share of a forwarded request's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
