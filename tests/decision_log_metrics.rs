//! Decision log and metrics (SPEC "Admin listener, metrics, decision log"): one JSON line per
//! request with every field, no secrets in it; exact `writ_requests_total` counting with labels
//! only from config and the reason list; the admin endpoints; the proxy listener does not serve
//! admin paths itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{
    Backend, Config, Env, ISSUER, Keys, Writ, is_rfc3339, metric_samples, metric_type,
    metric_value, request, unique,
};

const ACTIONS: &str = r#"
  - name: read-orders
    methods: [GET]
    path: /tenants/{tenant}/orders
    require:
      scopes: [orders:read]
      claims: { tenant: "{tenant}" }
  - name: run-job
    methods: [POST]
    path: /tenants/{tenant}/jobs/{job}/run
    execution: true
    require:
      scopes: [jobs:execute]
  - name: docs
    methods: [GET]
    path: /docs/{*rest}
    public: true
  - name: audited
    methods: [GET]
    path: /audited
    mode: audit
    require: { scopes: [audit:read] }
"#;

const ORDERS: &str = "/tenants/acme/orders";

const FIELDS: [&str; 16] = [
    "ts",
    "request_id",
    "method",
    "path",
    "host",
    "action",
    "execution",
    "decision",
    "enforced",
    "reason",
    "status",
    "subject",
    "actor_chain",
    "client_id",
    "issuer",
    "duration_us",
];

fn env() -> Env {
    Env::start(ACTIONS)
}

fn orders_token(env: &Env) -> String {
    env.keys
        .token()
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign()
}

/// Sends with an explicit request id and returns (response, log line).
fn send_logged(
    env: &Env,
    method: &str,
    target: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> (support::RawResponse, Value) {
    let rid = unique("rid");
    let mut headers: Vec<(&str, &str)> = vec![("x-request-id", rid.as_str())];
    headers.extend_from_slice(extra);
    let resp = env.send_with_token(method, target, token, &headers);
    let line = env.writ.log_line_for(&rid);
    (resp, line)
}

fn assert_all_fields(line: &Value) {
    for f in FIELDS {
        assert!(
            line.get(f).is_some(),
            "decision log line lacks {f:?}: {line}"
        );
    }
    assert!(
        line["ts"].as_str().is_some_and(is_rfc3339),
        "ts must be RFC 3339: {line}"
    );
    assert!(
        line["duration_us"].is_u64(),
        "duration_us must be a non-negative integer: {line}"
    );
    assert!(line["status"].is_u64(), "status must be a number: {line}");
    assert!(line["execution"].is_boolean(), "{line}");
    assert!(line["enforced"].is_boolean(), "{line}");
    assert!(line["actor_chain"].is_array(), "{line}");
}

// === decision log ===

#[test]
fn allowed_request_logs_every_field() {
    let env = env();
    let token = orders_token(&env);
    let (resp, line) = send_logged(
        &env,
        "GET",
        &format!("{ORDERS}?page=2"),
        Some(&token),
        &[("Host", "api.example.com")],
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_all_fields(&line);
    assert_eq!(line["method"], json!("GET"), "{line}");
    assert_eq!(
        line["path"],
        json!(ORDERS),
        "path is normalized and has no query: {line}"
    );
    assert!(
        line["host"]
            .as_str()
            .is_some_and(|h| h.contains("api.example.com")),
        "{line}"
    );
    assert_eq!(line["action"], json!("read-orders"), "{line}");
    assert_eq!(line["execution"], json!(false), "{line}");
    assert_eq!(line["decision"], json!("allow"), "{line}");
    assert_eq!(line["enforced"], json!(true), "{line}");
    assert_eq!(line["reason"], json!("allowed"), "{line}");
    assert_eq!(line["status"], json!(200), "{line}");
    assert_eq!(line["subject"], json!("alice"), "{line}");
    assert_eq!(line["actor_chain"], json!([]), "{line}");
    assert_eq!(line["client_id"], json!("test-client"), "{line}");
    assert_eq!(line["issuer"], json!(ISSUER), "{line}");
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn denied_request_logs_reason_status_and_action() {
    let env = env();
    let (resp, line) = send_logged(&env, "GET", ORDERS, None, &[]);
    resp.assert_problem(401, "no_token");
    assert_all_fields(&line);
    assert_eq!(line["decision"], json!("deny"), "{line}");
    assert_eq!(line["enforced"], json!(true), "{line}");
    assert_eq!(line["reason"], json!("no_token"), "{line}");
    assert_eq!(line["status"], json!(401), "{line}");
    assert_eq!(line["action"], json!("read-orders"), "{line}");
    assert!(
        line["subject"].is_null(),
        "no verified token, no subject: {line}"
    );
    env.backend.assert_untouched();
}

#[test]
fn authorization_denial_logs_verified_subject() {
    let env = env();
    let token = env
        .keys
        .token()
        .scope("profile")
        .claim("tenant", json!("acme"))
        .sign();
    let (resp, line) = send_logged(&env, "GET", ORDERS, Some(&token), &[]);
    resp.assert_problem(403, "insufficient_scope");
    assert_all_fields(&line);
    assert_eq!(line["reason"], json!("insufficient_scope"), "{line}");
    assert_eq!(line["status"], json!(403), "{line}");
    assert_eq!(line["subject"], json!("alice"), "{line}");
    assert_eq!(line["issuer"], json!(ISSUER), "{line}");
}

#[test]
fn execution_action_is_flagged_in_log() {
    let env = env();
    let token = env.token("jobs:execute");
    let (resp, line) = send_logged(&env, "POST", "/tenants/acme/jobs/9/run", Some(&token), &[]);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(line["action"], json!("run-job"), "{line}");
    assert_eq!(line["execution"], json!(true), "{line}");
    assert_eq!(line["method"], json!("POST"), "{line}");
}

#[test]
fn public_request_logs_reason_public() {
    let env = env();
    let (resp, line) = send_logged(&env, "GET", "/docs/a?secret=1", None, &[]);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_all_fields(&line);
    assert_eq!(line["reason"], json!("public"), "{line}");
    assert_eq!(line["decision"], json!("allow"), "{line}");
    assert_eq!(line["path"], json!("/docs/a"), "{line}");
    assert!(line["subject"].is_null(), "{line}");
}

#[test]
fn unmatched_request_logs_no_matching_action() {
    let env = env();
    let (resp, line) = send_logged(&env, "GET", "/nowhere", None, &[]);
    resp.assert_problem(403, "no_matching_action");
    assert_all_fields(&line);
    assert!(
        line["action"].is_null() || line["action"] == json!("_unmatched"),
        "unmatched action is null (or _unmatched): {line}"
    );
    assert_eq!(line["reason"], json!("no_matching_action"), "{line}");
    assert_eq!(line["status"], json!(403), "{line}");
}

#[test]
fn normalization_rejection_is_logged() {
    let env = env();
    let (resp, line) = send_logged(&env, "GET", "/docs/%00", None, &[]);
    resp.assert_problem(400, "bad_request");
    assert_eq!(line["reason"], json!("bad_request"), "{line}");
    assert_eq!(line["status"], json!(400), "{line}");
    assert_eq!(line["decision"], json!("deny"), "{line}");
    let (resp, line) = send_logged(
        &env,
        "GET",
        "/docs/a",
        None,
        &[("X-HTTP-Method-Override", "DELETE")],
    );
    resp.assert_problem(400, "method_override");
    assert_eq!(line["reason"], json!("method_override"), "{line}");
    env.backend.assert_untouched();
}

#[test]
fn audit_denial_is_logged_as_deny_not_enforced() {
    let env = env();
    let (resp, line) = send_logged(&env, "GET", "/audited", None, &[]);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(line["decision"], json!("deny"), "{line}");
    assert_eq!(line["enforced"], json!(false), "{line}");
    assert_eq!(line["reason"], json!("no_token"), "{line}");
    assert_eq!(
        line["status"],
        json!(200),
        "status is what the client got: {line}"
    );
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn exactly_one_line_per_request() {
    let env = env();
    let token = orders_token(&env);
    let mut ids = Vec::new();
    for (method, target, tok, extra) in [
        ("GET", ORDERS, Some(token.as_str()), vec![]),
        ("GET", ORDERS, None, vec![]),
        ("GET", "/docs/x", None, vec![]),
        ("GET", "/nowhere", None, vec![]),
        ("GET", "/docs/%zz", None, vec![]),
        ("GET", "/docs/x", None, vec![("X-Original-URL", "/admin")]),
        ("TRACE", "/docs/x", None, vec![]),
    ] {
        let rid = unique("one-line");
        let mut headers: Vec<(&str, &str)> = vec![("x-request-id", rid.as_str())];
        headers.extend(extra);
        let _ = env.send_with_token(method, target, tok, &headers);
        ids.push(rid);
    }
    let lines = env.writ.wait_log_lines(ids.len());
    std::thread::sleep(Duration::from_millis(300));
    let lines_after = env.writ.decision_log_lines();
    assert_eq!(
        lines_after.len(),
        ids.len(),
        "one decision-log line per request, got:\n{}",
        env.writ.decision_log_text()
    );
    let _ = lines;
    for rid in &ids {
        let n = lines_after
            .iter()
            .filter(|l| l["request_id"].as_str() == Some(rid.as_str()))
            .count();
        assert_eq!(n, 1, "request {rid} must be logged exactly once");
    }
}

#[test]
fn generated_request_id_in_log_matches_response_header() {
    let env = env();
    let resp = env.get("/docs/x", None);
    let rid = resp
        .header("x-request-id")
        .expect("x-request-id")
        .to_string();
    let line = env.writ.log_line_for(&rid);
    assert_eq!(line["path"], json!("/docs/x"));
}

#[test]
fn tokens_signatures_headers_and_queries_never_appear_in_the_log() {
    let env = env();
    let good = orders_token(&env);
    let expired = env
        .keys
        .token()
        .exp_in(-100)
        .iat_ago(1000)
        .scope("orders:read")
        .sign();
    let forged = env
        .keys
        .token()
        .signed_by_rogue()
        .scope("orders:read")
        .sign();
    let secrets = [
        ("X-Secret-Header", "hdr-secret-1f4e"),
        ("Cookie", "session=cookie-secret-9a7b"),
        ("User-Agent", "ua-secret-33cd"),
    ];
    for tok in [&good, &expired, &forged] {
        let _ = env.send_with_token(
            "GET",
            &format!("{ORDERS}?api_key=query-secret-5d2e"),
            Some(tok),
            &secrets,
        );
        let _ = env.send_with_token(
            "GET",
            "/docs/x?api_key=query-secret-5d2e",
            Some(tok),
            &secrets,
        );
    }
    let _ = env.send(
        "GET",
        ORDERS,
        &[("Authorization", "Bearer not.a.token-secret-77aa")],
        b"",
    );
    let lines = env.writ.wait_log_lines(7);
    assert_eq!(lines.len(), 7);
    let text = env.writ.decision_log_text();
    for tok in [&good, &expired, &forged] {
        let parts: Vec<&str> = tok.split('.').collect();
        assert!(!text.contains(tok.as_str()), "token in decision log");
        assert!(!text.contains(parts[2]), "signature in decision log");
        assert!(!text.contains(parts[1]), "token payload in decision log");
        assert!(!text.contains(parts[0]), "token header in decision log");
    }
    for needle in [
        "hdr-secret-1f4e",
        "cookie-secret-9a7b",
        "ua-secret-33cd",
        "query-secret-5d2e",
        "token-secret-77aa",
        "api_key",
    ] {
        assert!(
            !text.contains(needle),
            "{needle:?} leaked into the decision log:\n{text}"
        );
    }
}

#[test]
fn decision_log_to_stdout() {
    let cfg = Config::new(ACTIONS).set("decision_log", "stdout");
    let env = Env::with_config(&cfg);
    let rid = unique("stdout");
    let resp = env.send("GET", "/docs/x", &[("x-request-id", &rid)], b"");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let line = support::eventually(|| {
        env.writ.stdout().lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["request_id"].as_str() == Some(rid.as_str())).then_some(v)
        })
    })
    .unwrap_or_else(|| panic!("no JSON decision line on stdout:\n{}", env.writ.stdout()));
    assert_eq!(line["action"], json!("docs"));
}

#[test]
fn decision_log_off_writes_nothing() {
    let cfg = Config::new(ACTIONS).set("decision_log", "\"off\"");
    let env = Env::with_config(&cfg);
    let rid = unique("off");
    let resp = env.send("GET", "/docs/x", &[("x-request-id", &rid)], b"");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !env.writ.stdout().contains(&rid),
        "decision line on stdout with decision_log off"
    );
    assert!(
        !env.writ.stderr().contains(&rid),
        "decision line on stderr with decision_log off"
    );
    assert!(env.writ.decision_log_text().is_empty());
    // A file named "off" must not have been created either.
    assert!(!env.writ.dir().join("off").exists());
}

// === metrics ===

#[test]
fn requests_total_counts_exactly_per_action_decision_reason() {
    let env = env();
    let token = orders_token(&env);
    for _ in 0..3 {
        assert_eq!(env.get(ORDERS, Some(&token)).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(env.get(ORDERS, None).status, 401);
    }
    let weak = env
        .keys
        .token()
        .scope("profile")
        .claim("tenant", json!("acme"))
        .sign();
    assert_eq!(env.get(ORDERS, Some(&weak)).status, 403);
    let w = &env.writ;
    w.assert_metric(
        "writ_requests_total",
        &[
            ("action", "read-orders"),
            ("decision", "allow"),
            ("reason", "allowed"),
        ],
        3.0,
    );
    w.assert_metric(
        "writ_requests_total",
        &[
            ("action", "read-orders"),
            ("decision", "deny"),
            ("reason", "no_token"),
        ],
        2.0,
    );
    w.assert_metric(
        "writ_requests_total",
        &[
            ("action", "read-orders"),
            ("decision", "deny"),
            ("reason", "insufficient_scope"),
        ],
        1.0,
    );
    w.assert_metric("writ_requests_total", &[("action", "read-orders")], 6.0);
    let text = w.metrics();
    assert_eq!(
        metric_type(&text, "writ_requests_total").as_deref(),
        Some("counter")
    );
}

#[test]
fn unmatched_requests_use_the_unmatched_action_label() {
    let env = env();
    assert_eq!(env.get("/nowhere", None).status, 403);
    assert_eq!(env.get("/elsewhere/deep", None).status, 403);
    env.writ.assert_metric(
        "writ_requests_total",
        &[
            ("action", "_unmatched"),
            ("decision", "deny"),
            ("reason", "no_matching_action"),
        ],
        2.0,
    );
}

#[test]
fn unmatched_allow_is_counted_as_allow_under_unmatched_label() {
    let cfg = Config::new(ACTIONS).set("defaults", "{ unmatched: allow }");
    let env = Env::with_config(&cfg);
    assert_eq!(env.get("/nowhere", None).status, 200);
    env.writ.assert_metric(
        "writ_requests_total",
        &[("action", "_unmatched"), ("decision", "allow")],
        1.0,
    );
}

#[test]
fn public_and_audit_decisions_are_counted() {
    let env = env();
    assert_eq!(env.get("/docs/a", None).status, 200);
    assert_eq!(env.get("/audited", None).status, 200);
    env.writ.assert_metric(
        "writ_requests_total",
        &[
            ("action", "docs"),
            ("decision", "allow"),
            ("reason", "public"),
        ],
        1.0,
    );
    env.writ.assert_metric(
        "writ_requests_total",
        &[
            ("action", "audited"),
            ("decision", "audit_deny"),
            ("reason", "no_token"),
        ],
        1.0,
    );
}

#[test]
fn request_series_are_not_pre_created() {
    let env = env();
    let text = env.writ.metrics();
    assert_eq!(
        metric_value(&text, "writ_requests_total", &[("action", "read-orders")]),
        None,
        "no series before the first request:\n{text}"
    );
    assert_eq!(env.get(ORDERS, None).status, 401);
    env.writ
        .assert_metric("writ_requests_total", &[("action", "read-orders")], 1.0);
    let text = env.writ.metrics();
    assert_eq!(
        metric_value(&text, "writ_requests_total", &[("action", "run-job")]),
        None,
        "untouched actions have no series:\n{text}"
    );
}

#[test]
fn clients_cannot_create_metric_series() {
    let env = env();
    let marker = "zq9cardinality";
    let _ = env.get(&format!("/{marker}/a"), None);
    let _ = env.send(&format!("{}X", marker.to_uppercase()), "/docs/a", &[], b"");
    let _ = env.send(
        "GET",
        "/docs/a",
        &[
            ("X-Request-Id", marker),
            ("User-Agent", marker),
            ("Host", marker),
        ],
        b"",
    );
    let _ = env.get(&format!("/docs/{marker}"), None);
    let _ = env.get(&format!("/docs/a?{marker}=1"), None);
    env.writ
        .assert_metric_at_least("writ_requests_total", &[], 5.0);
    let text = env.writ.metrics().to_ascii_lowercase();
    assert!(
        !text.contains(marker),
        "a client-controlled string became a label value:\n{text}"
    );
    // Every label value of writ_requests_total comes from config or the fixed reason list.
    let actions = ["read-orders", "run-job", "docs", "audited", "_unmatched"];
    for s in metric_samples(&env.writ.metrics(), "writ_requests_total") {
        let a = s.labels.get("action").map(String::as_str).unwrap_or("");
        assert!(actions.contains(&a), "unexpected action label {a:?}");
        let d = s.labels.get("decision").map(String::as_str).unwrap_or("");
        assert!(
            ["allow", "deny", "audit_deny"].contains(&d),
            "unexpected decision {d:?}"
        );
    }
}

#[test]
fn build_info_and_config_generation_are_exposed() {
    let env = env();
    let text = env.writ.metrics();
    assert_eq!(
        metric_value(
            &text,
            "writ_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "writ_build_info{{version}} 1 expected:\n{text}"
    );
    assert_eq!(
        metric_type(&text, "writ_build_info").as_deref(),
        Some("gauge")
    );
    let generation = metric_value(&text, "writ_config_generation", &[])
        .unwrap_or_else(|| panic!("writ_config_generation missing:\n{text}"));
    assert!(generation.is_finite() && generation >= 0.0, "{generation}");
    assert_eq!(
        metric_type(&text, "writ_config_generation").as_deref(),
        Some("gauge")
    );
}

#[test]
fn decision_duration_histogram_counts_every_decision() {
    let env = env();
    for _ in 0..4 {
        let _ = env.get("/docs/a", None);
    }
    let _ = env.get(ORDERS, None);
    let count = env
        .writ
        .assert_metric_at_least("writ_decision_duration_seconds_count", &[], 5.0);
    let text = env.writ.metrics();
    assert_eq!(
        metric_type(&text, "writ_decision_duration_seconds").as_deref(),
        Some("histogram")
    );
    let inf = metric_value(
        &text,
        "writ_decision_duration_seconds_bucket",
        &[("le", "+Inf")],
    );
    let count_now = metric_value(&text, "writ_decision_duration_seconds_count", &[]);
    assert_eq!(inf, count_now, "+Inf bucket equals count");
    assert!(count_now.unwrap_or(0.0) >= count);
    let sum = metric_value(&text, "writ_decision_duration_seconds_sum", &[]).unwrap_or(-1.0);
    assert!(sum >= 0.0, "sum must be present and non-negative: {sum}");
}

#[test]
fn request_duration_histogram_is_labelled_by_action() {
    let env = env();
    let _ = env.get("/docs/a", None);
    let _ = env.get("/docs/b", None);
    env.writ.assert_metric(
        "writ_request_duration_seconds_count",
        &[("action", "docs")],
        2.0,
    );
    let text = env.writ.metrics();
    assert_eq!(
        metric_type(&text, "writ_request_duration_seconds").as_deref(),
        Some("histogram")
    );
}

// === admin listener ===

#[test]
fn healthz_and_readyz_answer_200_on_admin_listener() {
    let env = env();
    for path in ["/healthz", "/readyz"] {
        let r = request(env.writ.admin_addr(), "GET", path, &[], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.describe());
    }
    let m = request(env.writ.admin_addr(), "GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "Prometheus text format: {:?}",
        m.header("content-type")
    );
    // Admin traffic is not proxied and not a decision.
    env.backend.assert_untouched();
}

#[test]
fn proxy_listener_does_not_serve_admin_paths() {
    let env = env();
    for path in ["/metrics", "/readyz"] {
        let resp = env.get(path, None);
        resp.assert_problem(403, "no_matching_action");
        assert!(!resp.body_text().contains("writ_requests_total"));
    }
    env.backend.assert_untouched();
}

#[test]
fn proxy_listener_forwards_metrics_path_when_policy_allows() {
    let cfg = Config::new(ACTIONS).set("defaults", "{ unmatched: allow }");
    let env = Env::with_config(&cfg);
    let resp = env.get("/metrics", None);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(
        resp.body, b"backend-ok",
        "the backend's /metrics, not writ's"
    );
    assert_eq!(env.backend.single().target, "/metrics");
}

#[test]
fn readyz_is_never_200_without_usable_keys() {
    let keys = Keys::new();
    keys.write_jwks(&[]);
    let backend = Backend::start();
    let writ = Writ::spawn(&Config::new(ACTIONS).render(), &backend.url(), &keys);
    let mut saw_503 = false;
    let deadline = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < deadline {
        if writ.try_exit_status().is_some() {
            return; // refusing to start is also acceptable
        }
        if let Ok(r) = support::try_request(writ.admin_addr(), "GET", "/readyz", &[], b"") {
            assert_ne!(r.status, 200, "ready without usable keys: {}", r.describe());
            if r.status == 503 {
                saw_503 = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        saw_503,
        "writ neither exited nor answered /readyz 503 without keys; stderr:\n{}",
        writ.stderr()
    );
    if let Ok(h) = support::try_request(writ.admin_addr(), "GET", "/healthz", &[], b"") {
        assert_eq!(h.status, 200, "healthz is 200 while the process runs");
    }
}

#[test]
fn workers_and_shutdown_grace_keys_are_accepted() {
    let cfg = Config::new(ACTIONS)
        .set("workers", "2")
        .set("shutdown_grace", "2s");
    let env = Env::with_config(&cfg);
    let resp = env.get("/docs/a", None);
    assert_eq!(resp.status, 200, "{}", resp.describe());
}

#[test]
fn sigterm_exits_zero() {
    let cfg = Config::new(ACTIONS).set("shutdown_grace", "2s");
    let env = Env::with_config(&cfg);
    assert_eq!(env.get("/docs/a", None).status, 200);
    env.writ.signal("TERM");
    let code = env.writ.wait_exit(Duration::from_secs(5));
    assert_eq!(
        code,
        Some(Some(0)),
        "clean shutdown exits 0; stderr:\n{}",
        env.writ.stderr()
    );
}

#[test]
fn hostile_header_values_cannot_forge_log_fields() {
    let env = env();
    let forged_host = "evil\"},{\"decision\":\"allow\",\"x\":\"";
    let forged_rid = "rid\",\"decision\":\"allow\",\"reason\":\"allowed";
    let resp = env.send(
        "GET",
        ORDERS,
        &[("Host", forged_host), ("x-request-id", forged_rid)],
        b"",
    );
    // A Host that is not a host name is refused before anything else (writ parses
    // Host strictly); the forged request id must still not split the log line.
    assert_eq!(resp.status, 400, "{}", resp.describe());
    // decision_log_lines() panics on a line that is not one JSON object.
    let lines = env.writ.wait_log_lines(1);
    assert_eq!(
        lines.len(),
        1,
        "one request, one line:\n{}",
        env.writ.decision_log_text()
    );
    assert_eq!(lines[0]["decision"], json!("deny"), "{}", lines[0]);
    assert_eq!(lines[0]["reason"], json!("bad_request"), "{}", lines[0]);
    assert_eq!(lines[0]["request_id"], json!(forged_rid), "{}", lines[0]);
}

#[test]
fn concurrent_requests_are_each_counted_and_logged_once() {
    let env = env();
    let token = orders_token(&env);
    let n_threads = 8;
    let per_thread = 10;
    std::thread::scope(|s| {
        for i in 0..n_threads {
            let env = &env;
            let token = &token;
            s.spawn(move || {
                for j in 0..per_thread {
                    let resp = if (i + j) % 2 == 0 {
                        env.get(ORDERS, Some(token))
                    } else {
                        env.get(ORDERS, None)
                    };
                    assert!(
                        resp.status == 200 || resp.status == 401,
                        "{}",
                        resp.describe()
                    );
                }
            });
        }
    });
    let total = f64::from(n_threads * per_thread);
    let half = total / 2.0;
    env.writ.assert_metric(
        "writ_requests_total",
        &[("action", "read-orders"), ("decision", "allow")],
        half,
    );
    env.writ.assert_metric(
        "writ_requests_total",
        &[
            ("action", "read-orders"),
            ("decision", "deny"),
            ("reason", "no_token"),
        ],
        half,
    );
    let lines = env
        .writ
        .wait_log_lines(n_threads as usize * per_thread as usize);
    assert_eq!(lines.len(), (n_threads * per_thread) as usize);
    let mut ids: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["request_id"].as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), lines.len(), "request ids must be unique");
    assert_eq!(env.backend.count(), (n_threads * per_thread / 2) as usize);
}
