//! `writ inject`: read manifests, print them with writ injected (SPEC: Kubernetes).
//! Warnings go to stderr; on an error nothing is printed, so a pipe into
//! `kubectl apply -f -` never applies half a stream.

use std::io::Read as _;
use std::path::PathBuf;

use crate::inject::{self, manifest};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifests to read (`-` for stdin, the default).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: Option<PathBuf>,
    /// `-` reads stdin (same as `-f -`).
    #[arg(value_name = "-", conflicts_with = "file")]
    stdin: Option<PathBuf>,
    /// Inject every workload not annotated `writ.dev/inject: disabled`.
    #[arg(long)]
    all: bool,
    /// writ image for pods without a `writ.dev/image` annotation.
    #[arg(long, default_value = inject::DEFAULT_IMAGE)]
    image: String,
}

pub fn run(args: Args) -> u8 {
    let path = args.file.or(args.stdin).filter(|p| p.as_os_str() != "-");
    let read = match &path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map(|_| s)
                .map_err(|e| format!("stdin: {e}"))
        }
    };
    let input = match read {
        Ok(s) => s,
        Err(e) => {
            eprintln!("writ inject: {e}");
            return 1;
        }
    };
    let opts = inject::Options {
        all: args.all,
        image: args.image,
        ..Default::default()
    };
    match manifest::inject(&input, &opts) {
        Ok(done) => {
            for w in &done.warnings {
                eprintln!("writ inject: warning: {w}");
            }
            use std::io::Write as _;
            let _ = std::io::stdout().lock().write_all(done.output.as_bytes());
            0
        }
        Err(e) => {
            eprintln!("writ inject: {e}");
            1
        }
    }
}
