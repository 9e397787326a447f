//! Classification benchmarks (SPEC: Templates — "a tree, not a scan").
//!
//! * `classify/{10,1000,10000}`: the segment trie (`Router::lookup`) on policies
//!   with that many actions; the time per lookup should stay flat and < 1 µs.
//! * `classify_naive_scan/{10,1000,10000}`: a baseline that scans every action's
//!   template and keeps the most specific match, the way a "list of regexes"
//!   router would; its cost grows with the number of actions.
//! * `normalize/{plain,hostile}`: stage 1 on an ordinary target and on one full
//!   of dot segments, escapes and repeated slashes.
//!
//! Every benchmark cycles through 64 pre-built requests spread over the whole
//! action set, so one hot path does not stand for the table.
#![allow(clippy::unwrap_used, clippy::expect_used)] // set-up failures abort the benchmark

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use writ_engine::normalize::normalize_target;
use writ_engine::policy::Action;
use writ_engine::policy::router::RouteMatch;
use writ_engine::policy::template::Segment;

#[path = "support/policy.rs"]
mod policy;
use policy::build_policy;

const SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Requests per benchmark, cycled through (a power of two).
const REQUESTS: usize = 64;

/// `REQUESTS` (method, path) pairs spread evenly over the `n / 2` services.
fn requests(n: usize) -> Vec<(&'static str, String)> {
    let services = n / 2;
    (0..REQUESTS)
        .map(|k| {
            let svc = (k * 7919) % services;
            if k % 2 == 0 {
                ("GET", format!("/svc{svc}/items/item-{k}"))
            } else {
                ("POST", format!("/svc{svc}/items/item-{k}/run"))
            }
        })
        .collect()
}

/// The baseline: look at every action, keep the most specific match (literal
/// beats `{param}` beats `{*rest}`, leftmost difference first; host-specific
/// beats host-less), the precedence the trie gives by construction.
fn naive_lookup(
    actions: &[Action],
    method: &str,
    host: Option<&str>,
    segs: &[&str],
) -> Option<RouteMatch> {
    let mut best: Option<(u64, usize)> = None;
    for (i, a) in actions.iter().enumerate() {
        if !a.methods.contains(method) {
            continue;
        }
        let host_rank = match &a.host {
            Some(h) if host == Some(h.as_str()) => 0,
            Some(_) => continue,
            None => 1,
        };
        let Some(rank) = template_rank(&a.template.segments, segs) else {
            continue;
        };
        let rank = (rank << 1) | host_rank;
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, i));
        }
    }
    let (_, i) = best?;
    let mut params = Vec::new();
    for (k, seg) in actions[i].template.segments.iter().enumerate() {
        match seg {
            Segment::Literal(_) => {}
            Segment::Param(name) => params.push((name.clone(), segs[k].to_string())),
            Segment::Rest(name) => params.push((name.clone(), segs[k..].join("/"))),
        }
    }
    Some(RouteMatch { action: i, params })
}

/// Whether the template matches; if so, its specificity as base-4 digits from
/// the left (0 literal, 1 param, 2 rest), padded to a fixed width: smaller is
/// more specific.
fn template_rank(template: &[Segment], segs: &[&str]) -> Option<u64> {
    const WIDTH: u32 = 24;
    let mut rank = 0u64;
    let mut digits = 0u32;
    for (k, seg) in template.iter().enumerate() {
        let d = match seg {
            Segment::Literal(l) => {
                if segs.get(k) != Some(&l.as_str()) {
                    return None;
                }
                0
            }
            Segment::Param(_) => {
                if segs.get(k).is_none_or(|s| s.is_empty()) {
                    return None;
                }
                1
            }
            Segment::Rest(_) => 2,
        };
        if digits < WIDTH {
            rank = (rank << 2) | d;
            digits += 1;
        }
        if d == 2 {
            return Some(rank << (2 * (WIDTH - digits)));
        }
    }
    if template.len() != segs.len() {
        return None;
    }
    Some(rank << (2 * (WIDTH - digits)))
}

fn classify(c: &mut Criterion) {
    let mut trie = c.benchmark_group("classify");
    let mut setups = Vec::new();
    for n in SIZES {
        let (policy, dir) = build_policy(n);
        let reqs = requests(n);
        setups.push((n, policy, dir, reqs));
    }
    for (n, policy, _, reqs) in &setups {
        let segs: Vec<(&str, Vec<&str>)> = reqs
            .iter()
            .map(|(m, p)| (*m, p[1..].split('/').collect()))
            .collect();
        // The trie and the baseline must agree before either is timed.
        for (m, s) in &segs {
            let t = policy.router.lookup(m, Some("api.example.com"), s);
            let b = naive_lookup(&policy.actions, m, Some("api.example.com"), s);
            assert_eq!(t.as_ref().ok(), b.as_ref(), "{m} {s:?}");
            assert!(t.is_ok(), "{m} {s:?} does not classify");
        }
        let mut i = 0usize;
        trie.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let (m, s) = &segs[i & (REQUESTS - 1)];
                i = i.wrapping_add(1);
                black_box(policy.router.lookup(
                    black_box(m),
                    black_box(Some("api.example.com")),
                    black_box(s),
                ))
            })
        });
    }
    trie.finish();

    let mut naive = c.benchmark_group("classify_naive_scan");
    for (n, policy, _, reqs) in &setups {
        let segs: Vec<(&str, Vec<&str>)> = reqs
            .iter()
            .map(|(m, p)| (*m, p[1..].split('/').collect()))
            .collect();
        let mut i = 0usize;
        naive.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let (m, s) = &segs[i & (REQUESTS - 1)];
                i = i.wrapping_add(1);
                black_box(naive_lookup(
                    &policy.actions,
                    black_box(m),
                    black_box(Some("api.example.com")),
                    black_box(s),
                ))
            })
        });
    }
    naive.finish();
}

fn normalize(c: &mut Criterion) {
    let (policy, _dir) = build_policy(10);
    let path = policy.requests.path;
    let cases = [
        ("plain", "/svc3/items/item-42/run?dry_run=1"),
        (
            "hostile",
            "/a/./b/../%61dmin//x%2e%2e/y/./../z//%7Euser/%41%42c?q=%2F",
        ),
    ];
    let mut g = c.benchmark_group("normalize");
    for (name, target) in cases {
        let n = normalize_target(target, &path)
            .unwrap_or_else(|e| panic!("{target} does not normalize: {}", e.detail));
        if name == "hostile" {
            assert_eq!(n.path, "/a/admin/x../z/~user/ABc");
        }
        g.bench_function(name, |b| {
            b.iter(|| black_box(normalize_target(black_box(target), &path)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = policy::criterion_config();
    targets = classify, normalize
}
criterion_main!(benches);
