//! writ: an execution-authority proxy.
//!
//! Every request goes through the same stages, in this order (SPEC.md):
//!
//! ```text
//!  admit ─► normalize ─► classify ─► authenticate ─► authorize ─┬─► forward (needs a Permit)
//!  (ctx)    (target)     (action)    (token)         (permit)   └─► reject  (problem+json)
//!                                                                     │
//!                                          record (metrics + decision log) ◄─┘ always, once
//! ```
//!
//! Stages 1-4 are the `writ-engine` crate (`crates/engine`): one `decide` on
//! plain data, with no I/O, so `writ run`, `explain`, `test` and `demo` share one
//! decision engine. This package is the data plane, admin, reload, JWKS
//! fetching, the CLI and the demo: the only code that touches the network.
#![forbid(unsafe_code)]

/// `println!` for command output that a closed pipe (`writ test ... | head`) ends
/// quietly instead of panicking: the exit status still tells the outcome.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod admin;
pub mod cli;
pub mod demo;
pub mod frontdoor;
pub mod inject;
pub mod introspect;
pub mod jwks;
pub mod mint;
pub mod overrides;
pub mod proxy;
pub mod reload;
pub mod revocation_store;
pub mod serve;
pub mod ssf;
pub mod telemetry;
pub mod tls;
pub mod webhook;
