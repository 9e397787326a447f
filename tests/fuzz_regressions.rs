//! Replays every fuzz corpus and crash input (`fuzz/corpus/<target>/`,
//! `fuzz/artifacts/<target>/`) through the same checks as the fuzz targets,
//! under plain `cargo test`: an input that once crashed stays a test.
//!
//! The checks live in `fuzz/src/checks.rs`, compiled here as a module, so the
//! fuzz binaries and this suite cannot drift apart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for kind in ["corpus", "artifacts"] {
        let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for e in dir.flatten() {
            let p = e.path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if p.is_file() && !hidden {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Runs every input of `target`, then fails naming each one that panicked.
fn replay(target: &str) {
    let files = inputs(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} has no seed inputs");
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if catch_unwind(AssertUnwindSafe(|| checks::check(target, &data))).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs failed the `{target}` checks:\n  {}",
        failed.len(),
        files.len(),
        failed.join("\n  ")
    );
}

#[test]
fn every_target_has_a_test() {
    assert_eq!(
        checks::TARGETS,
        [
            "normalize",
            "config",
            "token",
            "act_chain",
            "cases",
            "jsonrpc"
        ]
    );
}

#[test]
fn normalize_inputs() {
    replay("normalize");
}

#[test]
fn config_inputs() {
    replay("config");
}

#[test]
fn token_inputs() {
    replay("token");
}

#[test]
fn act_chain_inputs() {
    replay("act_chain");
}

#[test]
fn cases_inputs() {
    replay("cases");
}

/// The seeds reach the engine's success paths, not only its refusals: a
/// check that only ever sees errors proves little.
#[test]
fn seeds_reach_allow() {
    let policy = checks::fixed_policy();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (seed, method, target) in [
        ("run-job-direct.jwt", "POST", "/tenants/t1/jobs/j1/run"),
        ("run-job-delegated.jwt", "POST", "/tenants/t1/jobs/j1/run"),
        ("delete-tenant-step-up.jwt", "DELETE", "/tenants/t1"),
        ("read-job-tenant-array.jwt", "GET", "/tenants/t1/jobs/j1"),
    ] {
        let token = std::fs::read_to_string(root.join("fuzz/corpus/token").join(seed)).unwrap();
        let mut headers = http::HeaderMap::new();
        let value = format!("Bearer {token}").parse().unwrap();
        headers.insert(http::header::AUTHORIZATION, value);
        let req = writ_engine::Request {
            method,
            target,
            host: None,
            headers: &headers,
            form_body: None,
            json_body: None,
            origin: writ_engine::request::Origin::Proxy,
        };
        let cx = writ_engine::Context {
            now: checks::NOW,
            credentials: &writ_engine::authenticate::Credentials::Header,
            cache: None,
            trace: false,
            introspection: None,
        };
        let d = writ_engine::decide(policy, &req, &cx);
        assert!(
            matches!(d.verdict, writ_engine::decision::Verdict::Allow { .. }),
            "{seed}: {:?}",
            d.verdict
        );
        checks::assert_sound(policy, &d);
    }
    assert_eq!(checks::example_policies().len(), 4);
}

/// The JSON-RPC seeds reach an allow (so the jsonrpc target's checks on allowed bodies run),
/// and the refused shapes do not.
#[test]
fn jsonrpc_seeds_reach_allow() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/jsonrpc");
    for (seed, allowed) in [
        ("tools-call", true),
        ("refund-headers", true),
        ("tools-list", true),
        ("notification", true),
        ("batch", false),
        ("duplicate-name", false),
    ] {
        let data = std::fs::read(root.join(seed)).unwrap();
        assert_eq!(checks::jsonrpc_allowed(&data), allowed, "{seed}");
    }
}
