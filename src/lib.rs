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
//! Stages 1-4 live in [`pipeline`] and take plain data, so `writ run`, `explain`,
//! `test` and `demo` share one decision engine.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decision;
pub mod demo;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod serve;
pub mod telemetry;
pub mod tls;
