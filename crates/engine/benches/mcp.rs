//! A `tools/call` with a 2 KiB body against a plain POST of the same size
//! (issue 16: within 20 %), each decided the way the proxy decides it with a
//! cached ES256 token:
//!
//! * `mcp/tools_call_2k`: the first decision asks for the body (`needs_body`),
//!   the second parses it strictly, picks the endpoint's action by tool name
//!   and binds `{args.tenant}`.
//! * `mcp/plain_post_2k`: one decision; the body is never read (it streams).
#![allow(clippy::unwrap_used, clippy::expect_used)] // set-up failures abort the benchmark

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use serde_json::json;
use writ_engine::authenticate::Credentials;
use writ_engine::authenticate::cache::TokenCache;
use writ_engine::decision::Verdict;
use writ_engine::{Context, Request, decide};

#[path = "support/policy.rs"]
#[allow(dead_code)] // the 1,000-action policy is for the other benches
mod policy;
use policy::{demo_token, head_yaml};

const BODY: usize = 2048;

fn yaml() -> String {
    head_yaml()
        + "  - name: read-tools
    methods: [POST]
    path: /mcp
    mcp: { tool: \"get_*\" }
    require: { scopes: [items:read] }
  - name: list
    methods: [POST]
    path: /mcp
    mcp: { method: tools/list }
    require: { scopes: [items:read] }
  - name: run-tool
    methods: [POST]
    path: /mcp
    mcp: { tool: run_job }
    execution: true
    require:
      scopes: [items:run]
      claims: { tenant: \"{args.tenant}\" }
  - name: run-plain
    methods: [POST]
    path: /items/{tenant}/run
    execution: true
    require:
      scopes: [items:run]
      claims: { tenant: \"{tenant}\" }
"
}

fn cx(cache: &TokenCache, now: f64) -> Context<'_> {
    Context {
        now,
        credentials: &Credentials::Header,
        cache: Some(cache),
        trace: false,
        introspection: None,
    }
}

fn allowed(v: &Verdict) -> bool {
    matches!(v, Verdict::Allow { .. })
}

fn mcp_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/demo/jwks.json");
    std::fs::copy(&jwks, dir.path().join("jwks.json")).expect("copy demo JWKS");
    let policy = writ_engine::config::load_str(&yaml(), "bench.yaml", dir.path(), "b.yaml".into())
        .unwrap_or_else(|e| panic!("{e}"))
        .policy;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let token = demo_token(now);
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("api.example.com"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    // A 2 KiB tools/call: the tool's arguments padded to size.
    let mut body = writ_engine::policy::mcp::tools_call_body(
        "run_job",
        &json!({"tenant": "acme", "note": ""}),
    );
    let pad = BODY - body.len();
    body = writ_engine::policy::mcp::tools_call_body(
        "run_job",
        &json!({"tenant": "acme", "note": "x".repeat(pad)}),
    );
    assert_eq!(body.len(), BODY);
    let plain_body = vec![b'{'; BODY];
    let cache = TokenCache::new(64 << 20);
    let mcp = |json_body| Request {
        method: "POST",
        target: "/mcp",
        host: Some("api.example.com"),
        headers: &headers,
        form_body: None,
        json_body,
        origin: writ_engine::request::Origin::Proxy,
    };
    let first = decide(&policy, &mcp(None), &cx(&cache, now));
    assert!(first.needs_body, "the first decision asks for the body");
    let d = decide(&policy, &mcp(Some(&body)), &cx(&cache, now));
    assert!(allowed(&d.verdict), "{:?}", d.verdict);
    let plain = Request {
        method: "POST",
        target: "/items/acme/run",
        host: Some("api.example.com"),
        headers: &headers,
        form_body: None,
        json_body: None,
        origin: writ_engine::request::Origin::Proxy,
    };
    assert!(allowed(&decide(&policy, &plain, &cx(&cache, now)).verdict));
    black_box(&plain_body);

    let mut g = c.benchmark_group("mcp");
    g.bench_function("tools_call_2k", |b| {
        b.iter(|| {
            let first = decide(&policy, black_box(&mcp(None)), &cx(&cache, now));
            debug_assert!(first.needs_body);
            let d = decide(
                &policy,
                black_box(&mcp(Some(black_box(&body)))),
                &cx(&cache, now),
            );
            debug_assert!(allowed(&d.verdict));
            black_box((first, d))
        })
    });
    g.bench_function("plain_post_2k", |b| {
        b.iter(|| {
            let d = decide(&policy, black_box(&plain), &cx(&cache, now));
            debug_assert!(allowed(&d.verdict));
            black_box(d)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = policy::criterion_config();
    targets = mcp_benches
}
criterion_main!(benches);
