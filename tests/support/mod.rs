//! The one black-box test harness for the `writ` binary (SPEC.md is the contract).
//!
//! Every suite declares `mod support;` and builds its world from these pieces, one file per
//! concern, all re-exported here (`support::Keys`, `use support::*`, ...):
//!
//! * `keys`: [`Keys`], a fresh ES256 key pair per test published as `jwks.json` in a temp dir,
//!   plus a "rogue" key that is *not* in the JWKS; [`EcKey`] (PKCS#8 PEM, RFC 7638
//!   thumbprint); [`pem`], [`b64url`], the default [`ISSUER`] / [`AUDIENCE`].
//! * `token`: [`TokenBuilder`] mints compact JWTs with either key; [`jwt_claims`],
//!   [`tamper_claims`], [`act_value`].
//! * `backend`: [`Backend`], a real hyper HTTP/1.1 server on `127.0.0.1:0` that records every
//!   request it receives (method, target as received, headers, body) and every byte read from
//!   its sockets; [`Server`], the thread + runtime every backend of the suites runs on.
//! * `writ`: [`Writ`], the real binary (`CARGO_BIN_EXE_writ`) started with `run --config FILE`
//!   on reserved loopback ports, waits for `/readyz`, is killed on drop; the [`Config`]
//!   template; [`Env`], keys + backend + writ.
//! * `http1`: [`send_raw`] / [`request`], a byte-exact HTTP/1.1 client over
//!   `std::net::TcpStream` that never normalizes the request target and never hangs.
//! * `http2`: raw HTTP/2 frames and a literal-only HPACK encoder ([`raw_h2`]), and hyper's
//!   h1/h2 clients run with [`block_on`].
//! * `tls`: per-test certificates ([`Cert`]), [`tls_connect`], an HTTPS [`TlsBackend`].
//! * `metrics`: [`metric_value`], a Prometheus text-format parser.
//! * `cli`: the binary as a command-line tool ([`writ_run`], [`Out`], [`World`], [`mint`]).
//! * `wait`: [`eventually`] / `assert_eventually!`, retry helpers for asynchronous effects.
//! * `util`: temp dirs and files, [`unique`] ids, RFC 3339, the file-wide [`serial`] lock.
//!
//! Style: every test is a plain `#[test]`; servers run their own tokio runtime on their own
//! thread, the raw clients are blocking std I/O with timeouts everywhere.
#![allow(
    dead_code,
    unreachable_pub,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::missing_panics_doc,
    clippy::must_use_candidate
)]

mod backend;
mod cli;
mod http1;
mod http2;
mod keys;
mod metrics;
mod redis;
mod tls;
mod token;
mod util;
mod wait;
mod writ;

pub use self::backend::*;
pub use self::cli::*;
pub use self::http1::*;
pub use self::http2::*;
pub use self::keys::*;
pub use self::metrics::*;
pub use self::redis::*;
pub use self::tls::*;
pub use self::token::*;
pub use self::util::*;
pub use self::wait::*;
pub use self::writ::*;
