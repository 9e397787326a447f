//! Strict JSON bodies (SPEC "Request bodies: JSON bindings"): `body: json` actions read a
//! bounded body, parse it strictly once, bind `{body.a.b}` like a path parameter, and forward
//! exactly the bytes they parsed; every refused shape is a 400 (413 over the limit) that the
//! backend never sees; bodies of other actions stream through untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::{Config, Env, RawResponse, chunked};

const ACTIONS: &str = r#"
  - name: refund
    methods: [POST]
    path: /v1/orders/{order}/refunds
    body: json
    require:
      scopes: [refunds:write]
      claims: { tenant: "{body.tenant}", region: "{body.shop.region}" }
  - name: upload
    methods: [POST]
    path: /upload
    require: { scopes: [refunds:write] }
"#;

const REFUND: &str = "/v1/orders/42/refunds";

fn env() -> Env {
    Env::with_config(&Config::new(ACTIONS).set("requests", "\n  max_json_body: 256"))
}

fn token(env: &Env) -> String {
    env.keys
        .token()
        .scope("refunds:write")
        .claim("tenant", json!("acme"))
        .claim("region", json!(["eu", "us"]))
        .sign()
}

fn post(env: &Env, path: &str, content_type: &str, body: &[u8]) -> RawResponse {
    let auth = format!("Bearer {}", token(env));
    env.send(
        "POST",
        path,
        &[("Authorization", &auth), ("Content-Type", content_type)],
        body,
    )
}

#[test]
fn a_bound_body_value_allows_and_the_exact_bytes_are_forwarded() {
    let env = env();
    // Odd spacing, escapes and key order: what arrives must be these bytes, not a re-encoding.
    let body = br#"{ "amount" : 120.50, "tenant":"a\u0063me",  "shop":{"region":"eu"} }"#;
    let resp = post(&env, REFUND, "application/json; charset=utf-8", body);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.body, body.to_vec());
    assert_eq!(
        seen.header("content-length"),
        Some(&*body.len().to_string())
    );
    seen.assert_writ_identity("alice", "refund");
}

#[test]
fn a_body_value_that_differs_or_is_missing_is_claim_mismatch() {
    let env = env();
    for body in [
        br#"{"tenant":"globex","shop":{"region":"eu"}}"#.to_vec(),
        br#"{"tenant":"acme","shop":{"region":"apac"}}"#.to_vec(),
        br#"{"tenant":"acme"}"#.to_vec(),
        br#"{"tenant":["acme"],"shop":{"region":"eu"}}"#.to_vec(),
        br#"{"shop":{"region":"eu"}}"#.to_vec(),
    ] {
        post(&env, REFUND, "application/json", &body).assert_problem_action(
            403,
            "claim_mismatch",
            Some("refund"),
        );
    }
    env.backend.assert_untouched();
}

#[test]
fn every_refused_body_shape_is_400_and_never_reaches_the_backend() {
    let env = env();
    let too_deep = format!(
        r#"{{"tenant":"acme","shop":{{"region":"eu"}},"x":{}{}}}"#,
        "[".repeat(64),
        "]".repeat(64)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "duplicate key at top level (first read by one parser, last by another)",
            br#"{"tenant":"acme","tenant":"globex","shop":{"region":"eu"}}"#.to_vec(),
        ),
        (
            "duplicate key at depth",
            br#"{"tenant":"acme","shop":{"region":"eu","region":"apac"}}"#.to_vec(),
        ),
        (
            "duplicate key spelled with an escape",
            br#"{"tenant":"acme","tena\u006et":"globex","shop":{"region":"eu"}}"#.to_vec(),
        ),
        (
            "lone surrogate",
            br#"{"tenant":"acme\ud800","shop":{"region":"eu"}}"#.to_vec(),
        ),
        (
            "invalid UTF-8",
            b"{\"tenant\":\"acme\xc3\",\"shop\":{\"region\":\"eu\"}}".to_vec(),
        ),
        (
            "two values",
            br#"{"tenant":"acme","shop":{"region":"eu"}} {}"#.to_vec(),
        ),
        ("nesting deeper than 64", too_deep.into_bytes()),
        ("empty body", Vec::new()),
    ];
    for (what, body) in cases {
        let resp = post(&env, REFUND, "application/json", &body);
        assert_eq!(resp.status, 400, "{what}: {}", resp.describe());
        resp.assert_problem_action(400, "bad_request", Some("refund"));
    }
    let ok = br#"{"tenant":"acme","shop":{"region":"eu"}}"#;
    for ct in ["text/plain", "application/x-json", "application/json-seq"] {
        post(&env, REFUND, ct, ok).assert_problem_action(400, "bad_request", Some("refund"));
    }
    let auth = format!("Bearer {}", token(&env));
    env.send("POST", REFUND, &[("Authorization", &auth)], ok)
        .assert_problem(400, "bad_request");
    env.send(
        "POST",
        REFUND,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        ok,
    )
    .assert_problem(400, "bad_request");
    env.backend.assert_untouched();
    let line = env.writ.wait_log_lines(1).pop().unwrap();
    assert_eq!(line["reason"], "bad_request");
    assert!(line["tool"].is_null(), "{line}");
}

#[test]
fn one_byte_over_max_json_body_is_413_and_the_limit_itself_passes() {
    let env = env();
    let pad = |n: usize| {
        let head = r#"{"tenant":"acme","shop":{"region":"eu"},"pad":""#;
        let tail = r#""}"#;
        let mut s = String::from(head);
        s.push_str(&"x".repeat(n - head.len() - tail.len()));
        s.push_str(tail);
        s.into_bytes()
    };
    let at_limit = pad(256);
    assert_eq!(
        post(&env, REFUND, "application/json", &at_limit).status,
        200
    );
    assert_eq!(env.backend.single().body, at_limit);
    env.backend.clear();
    post(&env, REFUND, "application/json", &pad(257)).assert_problem_action(
        413,
        "body_too_large",
        Some("refund"),
    );
    // Without Content-Length (chunked), the limit holds while reading.
    let auth = format!("Bearer {}", token(&env));
    env.send(
        "POST",
        REFUND,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
        &chunked(&pad(257), 50),
    )
    .assert_problem(413, "body_too_large");
    env.backend.assert_untouched();
}

#[test]
fn bodies_of_other_actions_stream_through_untouched() {
    let env = env();
    // Not JSON at all, duplicate keys, over the JSON limit: none of it is writ's business here.
    let body = [
        br#"{"a":1,"a":2}"#.to_vec(),
        vec![b'z'; 4096],
        b"\xff\xfe".to_vec(),
    ]
    .concat();
    let resp = post(&env, "/upload", "application/json", &body);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.single().body, body);
}

#[test]
fn a_request_decided_again_on_its_body_is_one_decision_in_the_histogram() {
    let env = env();
    let body = br#"{"tenant":"acme","shop":{"region":"eu"}}"#;
    assert_eq!(post(&env, REFUND, "application/json", body).status, 200);
    // Refused while reading the body (too large): decided once, observed once.
    let big = format!(r#"{{"tenant":"acme","pad":"{}"}}"#, "x".repeat(400));
    post(&env, REFUND, "application/json", big.as_bytes()).assert_problem(413, "body_too_large");
    // A request that needs no body.
    let _ = post(&env, "/upload", "application/octet-stream", b"raw");
    env.writ
        .assert_metric("writ_decision_duration_seconds_count", &[], 3.0);
}
