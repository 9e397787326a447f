//! `writ webhook`: serve the mutating admission webhook until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::inject;
use crate::webhook::{self, Certs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Serving certificate chain (PEM); reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    tls_cert: PathBuf,
    /// Private key (PEM); reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    tls_key: PathBuf,
    /// writ image for pods without a `writ.dev/image` annotation.
    #[arg(long, env = "WRIT_SIDECAR_IMAGE", default_value = inject::DEFAULT_IMAGE)]
    image: String,
}

pub fn run(args: Args) -> u8 {
    crate::telemetry::init_tracing();
    let rt = match crate::serve::tool_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("writ: cannot start runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let certs = match Certs::load(&args.tls_cert, &args.tls_key) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                eprintln!("writ webhook: {e}");
                return 1;
            }
        };
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("writ webhook: cannot listen on {}: {e}", args.listen);
                return 1;
            }
        };
        let opts = Arc::new(inject::Options {
            all: true,
            image: args.image,
            ..Default::default()
        });
        tracing::info!(listen = %args.listen, "writ webhook listening");
        webhook::serve(listener, certs, opts, crate::serve::shutdown_signal()).await;
        0
    })
}
