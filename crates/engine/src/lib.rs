//! writ's decision engine: one pure function from (policy, request, time) to a
//! [`Decision`], and everything it needs, with no I/O but reading the files a
//! config names (key files) at load.
//!
//! ```text
//!  normalize ─► classify ─► authenticate ─► authorize ─► Decision
//!  (target)     (action)    (token)         (permit)     (verdict, trace)
//! ```
//!
//! Modules, lowest first; a module imports only modules above it in this list
//! (checked by `tests/layering.rs`):
//!
//! - [`vocab`], [`json`]: shared words (modes, choices, claim scalars, methods, hosts,
//!   globs); strict JSON (request bodies, token payloads)
//! - [`decision`], [`keys`], [`claims`], [`clock`], [`request`]: reasons and verdicts,
//!   key material, claims, time, the request inputs
//! - [`escape`], [`record`], [`revocation`]: percent-escapes and path segments; what the
//!   decision log records of a decision's basis; the revocation set
//! - [`policy`]: the compiled policy (actions, templates, the router)
//! - the stages in request order: [`normalize`], [`classify`], [`authenticate`],
//!   [`authorize`]; beside the last, [`signals`]: Security Event Tokens (SSF, CAEP,
//!   RISC) verified and turned into revocation changes
//! - [`decide`](mod@decide): runs the stages, returns the [`Decision`] and its trace
//! - [`config`]: YAML to a [`Policy`] and server [`Settings`](config::Settings)
//! - [`cases`], [`replay`]: policy test cases (`writ test`) and decision-log replay
//!   (`writ replay`), both evaluated through [`decide()`]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod json;
pub mod vocab;

pub mod claims;
pub mod clock;
pub mod decision;
pub mod keys;
pub mod request;

pub mod escape;
pub mod record;
pub mod revocation;

pub mod policy;

pub mod authenticate;
pub mod authorize;
pub mod classify;
pub mod normalize;
pub mod signals;

pub mod decide;

pub mod config;

pub mod cases;
pub mod replay;

pub use decide::{Context, Decision, decide};
pub use policy::Policy;
pub use request::Request;
