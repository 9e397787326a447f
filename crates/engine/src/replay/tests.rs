use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::record::Basis;

const BASE: &str = r#"
listen: 127.0.0.1:8080
upstream: { url: "http://127.0.0.1:3000" }
issuers:
  - issuer: https://i/
    audiences: [api]
    algorithms: [ES256]
    public_key_pem: config/demo/demo-key.pub.pem
actions:
  - name: run
    methods: [POST]
    path: "/t/{tenant}/run"
    execution: true
    require: { scopes: [run], claims: { tenant: "{tenant}" } }
    delegation: { mode: allow, actors: ["agent:*"], max_age: 5m }
  - name: read
    methods: [GET]
    path: "/t/{tenant}/items"
    require: { scopes: [read] }
  - name: open
    methods: [GET]
    path: /open
    public: true
"#;

fn load(text: &str) -> Policy {
    crate::config::load_str(
        text,
        "p.yaml",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        "p.yaml".into(),
    )
    .unwrap()
    .policy
}

const NOW: f64 = 1_800_000_000.0;
const TS: &str = "2027-01-15T08:00:00Z";

/// Decides like the proxy and writes the line like the proxy's decision log.
fn logged(policy: &Policy, method: &str, path: &str, claims: Option<Value>) -> LoggedDecision {
    let headers = HeaderMap::new();
    let creds = match &claims {
        Some(c) => Credentials::Claims(c.as_object().unwrap().clone()),
        None => Credentials::Header,
    };
    let req = Request {
        method,
        target: path,
        host: None,
        headers: &headers,
        form_body: None,
        json_body: None,
        origin: crate::request::Origin::Proxy,
    };
    let cx = Context {
        now: NOW,
        credentials: &creds,
        cache: None,
        trace: false,
        introspection: None,
    };
    let d = decide(policy, &req, &cx);
    let labels = d.verdict.labels();
    let tok = d.token.as_ref().map(|t| &t.claims);
    let line = json!({
        "ts": TS, "request_id": format!("{method} {path}"), "method": method,
        "path": d.target.as_ref().map(|t| t.path.clone()), "host": null,
        "action": d.action.map(|i| policy.action(i).name.clone()),
        "decision": labels.log, "enforced": labels.enforced,
        "reason": d.verdict.reason().as_str(), "status": 200,
        "subject": tok.and_then(|c| c.sub.clone()),
        "actor_chain": tok.and_then(|c| c.act.as_ref().ok()).map(|a| a.iter().map(|x| x.sub.clone()).collect::<Vec<_>>()).unwrap_or_default(),
        "client_id": null, "issuer": tok.and_then(|c| c.iss.clone()),
        "duration_us": 5, "credential": d.credential,
    });
    let mut line = line.as_object().unwrap().clone();
    if let Some(c) = tok {
        let basis = serde_json::to_value(Basis::of(c, &policy.bound_claims)).unwrap();
        line.extend(basis.as_object().unwrap().clone());
    }
    parse_line(&Value::Object(line).to_string()).unwrap()
}

fn token(extra: Value) -> Value {
    let mut m = json!({"iss": "https://i/", "aud": ["api"], "sub": "alice",
        "exp": NOW + 600.0, "iat": NOW - 60.0, "scope": "run read", "tenant": "acme"});
    m.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    m
}

fn outcome(d: &Decision) -> (&'static str, &'static str) {
    (d.verdict.labels().metric, d.verdict.reason().as_str())
}

#[test]
fn every_logged_line_decides_the_same_under_the_same_policy() {
    let p = load(BASE);
    let lines = [
        logged(&p, "POST", "/t/acme/run", Some(token(json!({})))),
        logged(&p, "POST", "/t/other/run", Some(token(json!({})))),
        logged(
            &p,
            "POST",
            "/t/acme/run",
            Some(token(json!({"scope": "read"}))),
        ),
        logged(
            &p,
            "POST",
            "/t/acme/run",
            Some(token(json!({"act": {"sub": "agent:ci", "exp": NOW - 1.0}}))),
        ),
        logged(
            &p,
            "POST",
            "/t/acme/run",
            Some(token(
                json!({"act": {"sub": "agent:ci", "act": {"sub": "bob"}}}),
            )),
        ),
        logged(
            &p,
            "POST",
            "/t/acme/run",
            Some(token(json!({"act": {"sub": "svc:x"}}))),
        ),
        logged(
            &p,
            "POST",
            "/t/acme/run",
            Some(token(
                json!({"iat": NOW - 400.0, "act": {"sub": "agent:ci"}}),
            )),
        ),
        logged(&p, "GET", "/t/acme/items", None),
        logged(&p, "GET", "/open", None),
        logged(&p, "DELETE", "/open", None),
        logged(&p, "GET", "/nowhere", None),
    ];
    let mut seen = Vec::new();
    for line in &lines {
        let d = replay(&p, line, false).unwrap();
        assert_eq!(
            (line.outcome(), line.reason.as_str()),
            outcome(&d),
            "{line:?}"
        );
        seen.push(line.reason.clone());
    }
    // The lines above cover these reasons, so the round trip is not vacuous.
    for r in [
        "allowed",
        "claim_mismatch",
        "insufficient_scope",
        "delegation_expired",
        "actor_not_allowed",
        "no_token",
        "public",
        "method_not_allowed",
        "no_matching_action",
    ] {
        assert!(seen.iter().any(|s| s == r), "no line with {r}: {seen:?}");
    }
}

#[test]
fn a_changed_rule_is_reported_per_action_with_examples() {
    let old = load(BASE);
    let new = load(&BASE.replace(
        "require: { scopes: [read] }",
        "require: { scopes: [admin] }",
    ));
    let mut report = Report::default();
    let lines: Vec<_> = (0..5)
        .map(|_| logged(&old, "GET", "/t/acme/items", Some(token(json!({})))))
        .chain([logged(&old, "POST", "/t/acme/run", Some(token(json!({}))))])
        .collect();
    for (i, l) in lines.iter().enumerate() {
        let d = replay(&new, l, false);
        report.add(&new, Ok(l), d.as_ref().ok(), || format!("log:{i}"));
    }
    report.finish();
    assert_eq!(
        (report.total, report.unchanged, report.allow_to_deny),
        (6, 1, 5)
    );
    assert_eq!(report.changes.len(), 1);
    let c = &report.changes[0];
    assert_eq!(c.action.as_deref(), Some("read"));
    assert_eq!(
        (c.from.reason.as_str(), c.to.reason.as_str(), c.count),
        ("allowed", "insufficient_scope", 5)
    );
    assert_eq!(c.examples.len(), EXAMPLES);
    assert!(report.changed());
}

#[test]
fn what_a_line_cannot_tell_is_not_replayable() {
    let p = load(BASE);
    // A claim the old policy never bound.
    let new = load(&BASE.replace(
        "require: { scopes: [read] }",
        "require: { scopes: [read], claims: { region: eu } }",
    ));
    let line = logged(
        &p,
        "GET",
        "/t/acme/items",
        Some(token(json!({"region": "eu"}))),
    );
    assert_eq!(
        replay(&new, &line, false).unwrap_err(),
        NotReplayable::ClaimNotRecorded("region".into())
    );
    // A token sent to a public action was never checked.
    let old_public = load(&BASE.replace("require: { scopes: [read] }", "public: true"));
    let mut line = logged(&old_public, "GET", "/t/acme/items", None);
    line.credential = Some(Credential::Unchecked);
    assert_eq!(
        replay(&p, &line, false).unwrap_err(),
        NotReplayable::TokenUnchecked
    );
    // Older lines, lines refused before normalization, garbage.
    let mut old = logged(&p, "GET", "/t/acme/items", None);
    old.credential = None;
    assert_eq!(
        replay(&p, &old, false).unwrap_err(),
        NotReplayable::OldFormat
    );
    let mut raw = logged(&p, "GET", "/t/acme/items", None);
    raw.path = None;
    assert_eq!(
        replay(&p, &raw, false).unwrap_err(),
        NotReplayable::NotNormalized
    );
    assert!(matches!(
        parse_line("GET / 200"),
        Err(NotReplayable::NotALine(_))
    ));
}

#[test]
fn a_refused_token_stays_refused_unless_the_new_policy_decides_before_authentication() {
    let p = load(BASE);
    let mut line = logged(&p, "GET", "/t/acme/items", None);
    line.credential = Some(Credential::Rejected);
    line.reason = "bad_signature".into();
    line.decision = "deny".into();
    let d = replay(&p, &line, false).unwrap();
    assert_eq!(outcome(&d), ("deny", "bad_signature"));
    let now_public = load(&BASE.replace("require: { scopes: [read] }", "public: true"));
    let d = replay(&now_public, &line, false).unwrap();
    assert_eq!(outcome(&d), ("allow", "public"));
}

#[test]
fn each_line_is_decided_at_its_own_time() {
    let p = load(BASE);
    let mut line = logged(&p, "GET", "/t/acme/items", Some(token(json!({}))));
    assert_eq!(outcome(&replay(&p, &line, false).unwrap()).1, "allowed");
    // The same token, a day later, had expired.
    line.ts = "2027-01-16T08:00:00Z".into();
    assert_eq!(
        outcome(&replay(&p, &line, false).unwrap()).1,
        "token_expired"
    );
}
