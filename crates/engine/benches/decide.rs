//! Full-decision benchmarks: `writ_engine::decide` (normalize, classify,
//! authenticate, authorize) on a policy with 1,000 actions.
//!
//! * `decide/cached_es256`: an ES256 token already in the verified-token cache
//!   (time claims, scopes and the claim binding are still checked); goal < 2 µs.
//! * `decide/cold_es256`: no cache, so every call parses the token and verifies
//!   the ES256 signature (aws-lc); expected to be dominated by the signature.
//! * `decide/no_token_deny`: a protected action without a token (401 path).
//! * `decide/cached_es256_revocation_1` and `..._1000000`: the cached case with a
//!   revocation set of 1 and of 1,000,000 entries (none matching): the indexed
//!   lookup must cost the same whatever the set's size.
#![allow(clippy::unwrap_used, clippy::expect_used)] // set-up failures abort the benchmark

use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use writ_engine::authenticate::Credentials;
use writ_engine::authenticate::cache::TokenCache;
use writ_engine::decision::{Reason, Verdict};
use writ_engine::revocation::{Entry, RevocationSet};
use writ_engine::{Context, Request, decide};

#[path = "support/policy.rs"]
mod policy;
use policy::{build_policy, demo_token};

const ACTIONS: usize = 1_000;
const HOST: &str = "api.example.com";
const TARGET: &str = "/svc123/items/acme/run?dry_run=1";

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn headers(token: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static(HOST));
    h.insert("user-agent", HeaderValue::from_static("bench/1.0"));
    h.insert("accept", HeaderValue::from_static("application/json"));
    if let Some(t) = token {
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).expect("ASCII token"),
        );
    }
    h
}

fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Allow { reason, .. } => format!("allow ({reason})"),
        Verdict::Deny(d) | Verdict::AuditDeny { denial: d, .. } => {
            format!("deny ({}: {})", d.reason, d.detail)
        }
    }
}

fn cx(cache: Option<&TokenCache>, now: f64) -> Context<'_> {
    Context {
        now,
        credentials: &Credentials::Header,
        cache,
        trace: false,
        introspection: None,
    }
}

fn decide_benches(c: &mut Criterion) {
    let (policy, _dir) = build_policy(ACTIONS);
    let now = now_secs();
    let token = demo_token(now);
    let with_token = headers(Some(&token));
    let without_token = headers(None);
    let req = |h| Request {
        method: "POST",
        target: TARGET,
        host: Some(HOST),
        headers: h,
        form_body: None,
        json_body: None,
        origin: writ_engine::request::Origin::Proxy,
    };
    let authed = req(&with_token);
    let anonymous = req(&without_token);
    let cache = TokenCache::new(64 << 20);

    // Check each scenario's outcome once before timing it.
    let d = decide(&policy, &authed, &cx(None, now));
    assert!(
        matches!(d.verdict, Verdict::Allow { .. }),
        "cold: {}",
        describe(&d.verdict)
    );
    let d = decide(&policy, &authed, &cx(Some(&cache), now));
    assert!(
        matches!(d.verdict, Verdict::Allow { .. }),
        "cache fill: {}",
        describe(&d.verdict)
    );
    assert_eq!(cache.len(), 1, "the token is cached");
    let d = decide(&policy, &anonymous, &cx(None, now));
    assert!(
        matches!(&d.verdict, Verdict::Deny(e) if e.reason == Reason::NoToken),
        "no token: {}",
        describe(&d.verdict)
    );

    let mut g = c.benchmark_group("decide");
    g.bench_function("cached_es256", |b| {
        b.iter(|| {
            let d = decide(
                &policy,
                black_box(&authed),
                &cx(Some(&cache), black_box(now)),
            );
            debug_assert!(matches!(d.verdict, Verdict::Allow { .. }));
            black_box(d)
        })
    });
    g.bench_function("cold_es256", |b| {
        b.iter(|| {
            let d = decide(&policy, black_box(&authed), &cx(None, black_box(now)));
            debug_assert!(matches!(d.verdict, Verdict::Allow { .. }));
            black_box(d)
        })
    });
    g.bench_function("no_token_deny", |b| {
        b.iter(|| {
            black_box(decide(
                &policy,
                black_box(&anonymous),
                &cx(Some(&cache), black_box(now)),
            ))
        })
    });
    for size in [1usize, 1_000_000] {
        let set = RevocationSet::new(
            (0..size).map(|i| {
                Entry {
                    jti: None,
                    sub: Some(format!("user:{i}")),
                    actor: None,
                    issuer: None,
                    issued_before: None,
                    until: None,
                }
                .compile()
                .expect("entry")
            }),
            now,
        );
        policy.revocation.shared.store(Arc::new(set));
        let d = decide(&policy, &authed, &cx(Some(&cache), now));
        assert!(
            matches!(d.verdict, Verdict::Allow { .. }),
            "revocation {size}: {}",
            describe(&d.verdict)
        );
        g.bench_function(format!("cached_es256_revocation_{size}"), |b| {
            b.iter(|| {
                black_box(decide(
                    &policy,
                    black_box(&authed),
                    &cx(Some(&cache), black_box(now)),
                ))
            })
        });
    }
    g.finish();
    assert_eq!(cache.len(), 1, "cached runs hit the one entry");
}

criterion_group! {
    name = benches;
    config = policy::criterion_config();
    targets = decide_benches
}
criterion_main!(benches);
