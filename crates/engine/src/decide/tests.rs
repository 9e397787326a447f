use std::path::Path;

use http::HeaderMap;
use serde_json::{Map, Value, json};

use super::*;
use crate::authenticate::Credentials;
use crate::decision::Reason;
use crate::request::Origin;

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
    decide_from(p, Origin::Proxy, &HeaderMap::new(), method, target, c, now)
}

fn decide_from(
    p: &Policy,
    origin: Origin,
    headers: &HeaderMap,
    method: &str,
    target: &str,
    c: &Credentials,
    now: f64,
) -> Decision {
    let req = Request {
        method,
        target,
        host: None,
        headers,
        form_body: None,
        json_body: None,
        origin,
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

/// Front-door mode: the mesh forwards its own copy, so any target that
/// normalization would change is a `bad_request`, with its own step in the trace.
#[test]
fn front_door_denies_every_target_normalization_would_change() {
    let p = policy();
    let c = claims(json!({}));
    let h = HeaderMap::new();
    for target in [
        "/%6fpen",
        "//open",
        "/x/../open",
        "/./open",
        "/open/",
        "/open%2f",
        "/open;x",
        "/%4Fpen",
        "/open#frag",
        "/op\\en",
    ] {
        let d = decide_from(&p, Origin::FrontDoor, &h, "GET", target, &c, 1_100.0);
        assert_eq!(d.verdict.reason(), Reason::BadRequest, "{target}");
        assert!(d.verdict.permit().is_none(), "{target}");
    }
    // `_method` is stripped by the proxy under `method_override: strip`; a
    // front door cannot strip it, so it is refused whatever the setting.
    let d = decide_from(
        &p,
        Origin::FrontDoor,
        &h,
        "GET",
        "/open?_method=DELETE",
        &c,
        1_100.0,
    );
    assert_eq!(d.verdict.reason(), Reason::MethodOverride);
    // The same targets through the proxy are normalized (or refused as before).
    let d = decide_from(&p, Origin::Proxy, &h, "GET", "/%6fpen", &c, 1_100.0);
    assert_eq!(d.verdict.reason(), Reason::Public);
    // A target already in normal form passes, query byte for byte.
    for target in ["/open", "/open?a=/../b&c=%2F", "/open?"] {
        let d = decide_from(&p, Origin::FrontDoor, &h, "GET", target, &c, 1_100.0);
        assert_eq!(d.verdict.reason(), Reason::Public, "{target}");
    }
}

#[test]
fn front_door_step_is_in_the_trace() {
    let p = policy();
    let c = claims(json!({}));
    let h = HeaderMap::new();
    let d = decide_from(&p, Origin::FrontDoor, &h, "GET", "//open", &c, 1_100.0);
    let failed = d.checks.iter().find(|c| !c.ok).expect("a failing check");
    assert_eq!(failed.name, "front door: target as sent", "{:#?}", d.checks);
    let d = decide_from(&p, Origin::FrontDoor, &h, "GET", "/open", &c, 1_100.0);
    assert!(
        d.checks
            .iter()
            .any(|c| c.name == "front door: target as sent" && c.ok),
        "{:#?}",
        d.checks
    );
    let d = decide_from(&p, Origin::Proxy, &h, "GET", "/open", &c, 1_100.0);
    assert!(d.checks.iter().all(|c| !c.name.starts_with("front door")));
}

/// Override headers a proxy would strip cannot be stripped by a front door.
#[test]
fn front_door_refuses_override_headers_the_proxy_strips() {
    let text = POLICY.replace(
        "defaults:\n",
        "requests: { method_override: strip, url_override: strip }\ndefaults:\n",
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = crate::config::load_str(&text, "p.yaml", &root, "p.yaml".into())
        .unwrap()
        .policy;
    let c = claims(json!({}));
    let mut h = HeaderMap::new();
    h.insert("x-http-method-override", "DELETE".parse().unwrap());
    let d = decide_from(&p, Origin::Proxy, &h, "GET", "/open", &c, 1_100.0);
    assert_eq!(d.verdict.reason(), Reason::Public, "the proxy strips it");
    let d = decide_from(&p, Origin::FrontDoor, &h, "GET", "/open", &c, 1_100.0);
    assert_eq!(d.verdict.reason(), Reason::MethodOverride);
    let mut h = HeaderMap::new();
    h.insert("x-original-url", "/admin".parse().unwrap());
    let d = decide_from(&p, Origin::FrontDoor, &h, "GET", "/open", &c, 1_100.0);
    assert_eq!(d.verdict.reason(), Reason::UrlOverride);
}

proptest::proptest! {
    /// At a front door, whatever writ lets through is exactly what the mesh
    /// forwards: an allowed target is already in normal form.
    #[test]
    fn front_door_allows_only_targets_in_normal_form(
        parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "/", "//", "open", "Open", ".", "..", "%2e", "%2E", "%6f", "%6F", "%2f", "%2F",
                "%5c", ";", "%3b", "\\", "?", "#", "&", "=", "%", "%zz", "%00", "~", "%7e", "x",
            ]),
            1..8,
        )
    ) {
        let p = policy();
        let c = claims(json!({}));
        let target = format!("/{}", parts.concat());
        let d = decide_from(&p, Origin::FrontDoor, &HeaderMap::new(), "GET", &target, &c, 1_100.0);
        if d.verdict.permit().is_some() {
            let normalized = d.target.as_ref().map(|t| t.path_and_query());
            proptest::prop_assert_eq!(normalized.as_deref(), Some(target.as_str()));
        }
    }
}
