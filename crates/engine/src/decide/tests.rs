use std::path::Path;

use http::HeaderMap;
use serde_json::{Map, Value, json};

use super::*;
use crate::authenticate::Credentials;
use crate::decision::Reason;

const POLICY: &str = r#"
listen: 127.0.0.1:8080
upstream: { url: "http://127.0.0.1:3000" }
issuers:
  - issuer: https://i/
    audiences: [api]
    algorithms: [ES256]
    public_key_pem: config/demo/demo-key.pub.pem
defaults:
  mode: enforce
actions:
  - name: run
    methods: [POST]
    path: "/t/{tenant}/run"
    execution: true
    require: { scopes: [run], claims: { tenant: "{tenant}" } }
    delegation: { mode: allow, actors: ["agent:*"], max_age: 5m }
  - name: audit
    methods: [POST]
    path: /audit
    mode: audit
    require: { scopes: [audit] }
  - name: open
    methods: ["*"]
    path: /open
    public: true
"#;

/// Claims are given as verified here, so the key only has to load: the demo
/// public key, inline.
fn policy() -> Policy {
    crate::config::load_str(
        POLICY,
        "p.yaml",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        "p.yaml".into(),
    )
    .unwrap()
    .policy
}

fn claims(extra: Value) -> Credentials {
    let mut m: Map<String, Value> = json!({"iss": "https://i/", "aud": "api", "sub": "alice",
        "exp": 2_000_000_000, "iat": 1_000})
    .as_object()
    .unwrap()
    .clone();
    m.extend(extra.as_object().unwrap().clone());
    Credentials::Claims(m)
}

fn decide_at(p: &Policy, method: &str, target: &str, c: &Credentials, now: f64) -> Decision {
    let headers = HeaderMap::new();
    let req = Request {
        method,
        target,
        host: None,
        headers: &headers,
        form_body: None,
    };
    let cx = Context {
        now,
        credentials: c,
        cache: None,
        trace: true,
        introspection: None,
    };
    decide(p, &req, &cx)
}

#[test]
fn allowed_request_carries_identity_and_params() {
    let p = policy();
    let c = claims(json!({"scope": "run", "tenant": "acme", "act": {"sub": "agent:7"}}));
    let d = decide_at(&p, "POST", "/t/acme/run", &c, 1_100.0);
    let permit = d.verdict.permit().expect("allowed");
    assert_eq!(permit.subject.as_deref(), Some("alice"));
    assert_eq!(permit.actor.as_deref(), Some("agent:7"));
    assert_eq!(d.params, vec![("tenant".to_string(), "acme".to_string())]);
    assert!(d.checks.iter().all(|c| c.ok), "{:#?}", d.checks);
}

#[test]
fn delegation_is_checked_before_scopes_and_claims() {
    let p = policy();
    // wrong actor, missing scope, wrong tenant: the first failure is the reason
    let c = claims(json!({"scope": "read", "tenant": "other", "act": {"sub": "human"}}));
    let d = decide_at(&p, "POST", "/t/acme/run", &c, 1_100.0);
    assert_eq!(d.verdict.reason(), Reason::ActorNotAllowed);
    // delegation older than max_age (iat 1000, now 1000 + 301 s)
    let c = claims(json!({"scope": "run", "tenant": "acme", "act": {"sub": "agent:7"}}));
    assert_eq!(
        decide_at(&p, "POST", "/t/acme/run", &c, 1_301.0)
            .verdict
            .reason(),
        Reason::DelegationExpired
    );
    let c = claims(json!({"scope": "read", "tenant": "acme"}));
    assert_eq!(
        decide_at(&p, "POST", "/t/acme/run", &c, 1_100.0)
            .verdict
            .reason(),
        Reason::InsufficientScope
    );
    let c = claims(json!({"scope": "run", "tenant": "other"}));
    assert_eq!(
        decide_at(&p, "POST", "/t/acme/run", &c, 1_100.0)
            .verdict
            .reason(),
        Reason::ClaimMismatch
    );
}

#[test]
fn audit_mode_forwards_without_identity() {
    let p = policy();
    let d = decide_at(
        &p,
        "POST",
        "/audit",
        &claims(json!({"scope": "x"})),
        1_100.0,
    );
    match &d.verdict {
        Verdict::AuditDeny { permit, denial } => {
            assert!(!permit.set_identity);
            assert_eq!(denial.reason, Reason::InsufficientScope);
        }
        other => panic!("expected an audit denial, got {other:?}"),
    }
}

#[test]
fn wildcard_methods_and_method_rules() {
    let p = policy();
    let none = Credentials::Header;
    assert_eq!(
        decide_at(&p, "PURGE", "/open", &none, 0.0).verdict.reason(),
        Reason::Public
    );
    assert_eq!(
        decide_at(&p, "TRACE", "/open", &none, 0.0).verdict.reason(),
        Reason::MethodNotAllowed
    );
    assert_eq!(
        decide_at(&p, "CONNECT", "/open", &none, 0.0)
            .verdict
            .reason(),
        Reason::MethodNotAllowed
    );
    let d = decide_at(&p, "GET", "/t/acme/run", &none, 0.0);
    match &d.verdict {
        Verdict::Deny(e) => {
            assert_eq!(e.reason, Reason::MethodNotAllowed);
            assert_eq!(e.allow, vec!["POST".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decide_at(&p, "POST", "/nowhere", &none, 0.0)
            .verdict
            .reason(),
        Reason::NoMatchingAction
    );
}
