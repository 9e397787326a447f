//! Identity headers and hop-by-hop handling (SPEC "identity_headers", "Normalization", THREATS
//! "Host / headers / spoofable metadata"): the backend only ever sees identity headers writ set
//! from a verified token, under any spelling a client tries; `Connection` can drop client
//! headers but never writ's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::{Config, Env, Recorded};

const ACTIONS: &str = r#"
  - name: profile
    methods: [GET, POST]
    path: /profile
    require: { scopes: [profile] }
  - name: docs
    methods: [GET]
    path: /docs/{*rest}
    public: true
"#;

const IDENTITY: [&str; 3] = ["x-writ-subject", "x-writ-actor", "x-writ-action"];

fn env() -> Env {
    Env::start(ACTIONS)
}

/// Every header the backend got whose folded name (lower-case, `_` → `-`) is `name`.
fn folded<'a>(seen: &'a Recorded, name: &str) -> Vec<&'a str> {
    seen.header_folded(name)
}

#[test]
fn spoofed_subject_on_public_action_never_reaches_backend() {
    let env = env();
    let resp = env.send(
        "GET",
        "/docs/intro",
        &[
            ("X-Writ-Subject", "admin"),
            ("x-writ-subject", "admin"),
            ("X-WRIT-SUBJECT", "admin"),
            ("X-Writ-Actor", "agent:root"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert!(folded(&seen, "x-writ-subject").is_empty(), "{seen:#?}");
    assert!(folded(&seen, "x-writ-actor").is_empty(), "{seen:#?}");
    assert_eq!(folded(&seen, "x-writ-action"), vec!["docs"]);
}

#[test]
fn underscore_spellings_are_stripped_cve_2025_64484() {
    let env = env();
    let resp = env.send(
        "GET",
        "/docs/intro",
        &[
            ("X_Writ_Subject", "admin"),
            ("x_writ_subject", "admin"),
            ("x_writ_actor", "agent:root"),
            ("X-Writ_Action", "profile"),
            ("x_WRIT-subject", "admin"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert!(folded(&seen, "x-writ-subject").is_empty(), "{seen:#?}");
    assert!(folded(&seen, "x-writ-actor").is_empty(), "{seen:#?}");
    assert_eq!(
        folded(&seen, "x-writ-action"),
        vec!["docs"],
        "only writ's own action header may reach the backend: {seen:#?}"
    );
}

#[test]
fn spoofed_identity_is_replaced_by_verified_values_on_authenticated_request() {
    let env = env();
    let token = env.token("profile");
    let auth = format!("Bearer {token}");
    let resp = env.send(
        "GET",
        "/profile",
        &[
            ("Authorization", &auth),
            ("X-Writ-Subject", "admin"),
            ("X_Writ_Subject", "admin"),
            ("x-writ-action", "docs"),
            ("x_writ_actor", "agent:root"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(folded(&seen, "x-writ-subject"), vec!["alice"], "{seen:#?}");
    assert_eq!(folded(&seen, "x-writ-action"), vec!["profile"], "{seen:#?}");
    assert!(folded(&seen, "x-writ-actor").is_empty(), "{seen:#?}");
}

#[test]
fn spoofed_identity_with_comma_joined_values_is_stripped_cve_2026_26308() {
    let env = env();
    let token = env.token("profile");
    let auth = format!("Bearer {token}");
    let resp = env.send(
        "GET",
        "/profile",
        &[
            ("x-writ-subject", "alice,admin"),
            ("Authorization", &auth),
            ("x-writ-subject", "admin"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(folded(&seen, "x-writ-subject"), vec!["alice"], "{seen:#?}");
}

#[test]
fn connection_header_cannot_remove_writ_identity_headers_cve_2024_45410() {
    let env = env();
    let token = env.token("profile");
    let auth = format!("Bearer {token}");
    let resp = env.send(
        "GET",
        "/profile",
        &[
            ("Authorization", &auth),
            (
                "Connection",
                "x-writ-subject, X-Writ-Action, x_writ_actor, keep-alive",
            ),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(folded(&seen, "x-writ-subject"), vec!["alice"], "{seen:#?}");
    assert_eq!(folded(&seen, "x-writ-action"), vec!["profile"], "{seen:#?}");
}

#[test]
fn connection_header_cannot_remove_action_header_on_public_action() {
    let env = env();
    let resp = env.send("GET", "/docs/a", &[("Connection", "X-Writ-Action")], b"");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(folded(&env.backend.single(), "x-writ-action"), vec!["docs"]);
}

#[test]
fn hop_by_hop_headers_are_not_forwarded() {
    let env = env();
    let resp = env.send(
        "GET",
        "/docs/a",
        &[
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5, max=100"),
            ("TE", "trailers, deflate"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic c2VjcmV0OnNlY3JldA=="),
            ("Proxy-Connection", "keep-alive"),
            ("X-Kept", "yes"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    for h in [
        "keep-alive",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            seen.header(h).is_none(),
            "hop-by-hop header {h} must not be forwarded: {seen:#?}"
        );
    }
    // Writ may send its own `TE: trailers` upstream, never the client's codings.
    for te in seen.header_all("te") {
        assert!(!te.contains("deflate"), "client TE forwarded: {seen:#?}");
    }
    // A Connection header upstream may only be writ's own (close / keep-alive), never the
    // client's nominations.
    for c in seen.header_all("connection") {
        let c = c.to_ascii_lowercase();
        assert!(
            c.split(',')
                .all(|t| matches!(t.trim(), "close" | "keep-alive")),
            "unexpected upstream Connection header {c:?}"
        );
    }
    assert_eq!(
        seen.header("x-kept"),
        Some("yes"),
        "ordinary headers are kept"
    );
}

#[test]
fn headers_nominated_by_connection_are_dropped() {
    let env = env();
    let resp = env.send(
        "GET",
        "/docs/a",
        &[
            ("Connection", "X-Internal-Secret, x-forwarded-user"),
            ("X-Internal-Secret", "hunter2"),
            ("X-Forwarded-User", "admin"),
            ("X-Other", "kept"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert!(seen.header("x-internal-secret").is_none(), "{seen:#?}");
    assert!(seen.header("x-forwarded-user").is_none(), "{seen:#?}");
    assert_eq!(seen.header("x-other"), Some("kept"));
}

#[test]
fn multiple_connection_headers_are_all_honoured() {
    let env = env();
    let resp = env.send(
        "GET",
        "/docs/a",
        &[
            ("Connection", "x-a"),
            ("connection", "x-b"),
            ("X-A", "1"),
            ("X-B", "2"),
            ("X-C", "3"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert!(seen.header("x-a").is_none(), "{seen:#?}");
    assert!(seen.header("x-b").is_none(), "{seen:#?}");
    assert_eq!(seen.header("x-c"), Some("3"));
}

#[test]
fn authorization_is_forwarded_by_default() {
    let env = env();
    let token = env.token("profile");
    let auth = format!("Bearer {token}");
    let resp = env.send("GET", "/profile", &[("Authorization", &auth)], b"");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(
        env.backend.single().header_all("authorization"),
        vec![auth.as_str()]
    );
}

#[test]
fn forward_token_false_drops_authorization_upstream() {
    let cfg = Config::new(ACTIONS).set("forward_token", "false");
    let env = Env::with_config(&cfg);
    let token = env.token("profile");
    let auth = format!("Bearer {token}");
    let resp = env.send("GET", "/profile", &[("Authorization", &auth)], b"");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert!(seen.header("authorization").is_none(), "{seen:#?}");
    assert_eq!(seen.header("x-writ-subject"), Some("alice"));
    let raw = format!("{seen:?}");
    assert!(
        !raw.contains(&token),
        "token must not reach the backend at all"
    );
}

#[test]
fn forward_token_false_drops_authorization_on_public_action_too() {
    let cfg = Config::new(ACTIONS).set("forward_token", "false");
    let env = Env::with_config(&cfg);
    let token = env.token("profile");
    let auth = format!("Bearer {token}");
    let resp = env.send("GET", "/docs/x", &[("Authorization", &auth)], b"");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(env.backend.single().header("authorization").is_none());
}

#[test]
fn action_header_is_set_on_public_actions() {
    let env = env();
    let resp = env.get("/docs/getting-started", None);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.header_all("x-writ-action"), vec!["docs"]);
    assert!(seen.header("x-writ-subject").is_none());
}

#[test]
fn public_action_with_a_token_sets_no_unverified_subject() {
    // A public action does not verify tokens: whatever the client sends, no subject header
    // may come out of an unverified token.
    let env = env();
    let forged = env
        .keys
        .token()
        .signed_by_rogue()
        .sub("admin")
        .scope("profile")
        .sign();
    let auth = format!("Bearer {forged}");
    let resp = env.send("GET", "/docs/x", &[("Authorization", &auth)], b"");
    if resp.status == 200 {
        let seen = env.backend.single();
        assert!(
            seen.header_folded("x-writ-subject")
                .iter()
                .all(|v| *v != "admin"),
            "unverified sub must never become an identity header: {seen:#?}"
        );
    } else {
        assert_eq!(resp.status, 401, "{}", resp.describe());
        env.backend.assert_untouched();
    }
}

#[test]
fn custom_identity_header_names_are_set_and_stripped() {
    let cfg = Config::new(ACTIONS).set(
        "identity_headers",
        "{ subject: x-user-id, actor: x-agent-id, action: x-operation }",
    );
    let env = Env::with_config(&cfg);
    let token = env
        .keys
        .token()
        .scope("profile")
        .act_chain(&["agent:a"])
        .sign();
    let auth = format!("Bearer {token}");
    // Default delegation is forbid: use an undelegated token for the allowed request.
    let plain = env.token("profile");
    let plain_auth = format!("Bearer {plain}");
    let resp = env.send(
        "GET",
        "/profile",
        &[
            ("Authorization", &plain_auth),
            ("X-User-Id", "admin"),
            ("x_user_id", "admin"),
            ("X-Agent-Id", "agent:root"),
            ("X_Operation", "docs"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(folded(&seen, "x-user-id"), vec!["alice"], "{seen:#?}");
    assert!(folded(&seen, "x-agent-id").is_empty(), "{seen:#?}");
    assert_eq!(folded(&seen, "x-operation"), vec!["profile"], "{seen:#?}");
    // The default names are not set any more.
    for h in IDENTITY {
        assert!(seen.header(h).is_none(), "{h} should not be set: {seen:#?}");
    }
    // And the delegated token is still refused under default forbid.
    env.backend.clear();
    let denied = env.send("GET", "/profile", &[("Authorization", &auth)], b"");
    denied.assert_problem(403, "delegation_forbidden");
    env.backend.assert_untouched();
}

#[test]
fn other_client_headers_pass_through_unchanged() {
    let env = env();
    let resp = env.send(
        "GET",
        "/docs/x",
        &[
            ("X-Custom", "a value, with commas"),
            ("Accept", "application/json"),
            ("User-Agent", "writ-tests/1"),
            ("X-Repeated", "one"),
            ("X-Repeated", "two"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.header("x-custom"), Some("a value, with commas"));
    assert_eq!(seen.header("accept"), Some("application/json"));
    assert_eq!(seen.header("user-agent"), Some("writ-tests/1"));
    let repeated: Vec<&str> = seen
        .header_all("x-repeated")
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    assert_eq!(repeated, vec!["one", "two"], "{seen:#?}");
}

#[test]
fn identity_headers_are_not_set_on_denied_requests_because_nothing_is_forwarded() {
    let env = env();
    let resp = env.send("GET", "/profile", &[("X-Writ-Subject", "alice")], b"");
    resp.assert_problem(401, "no_token");
    env.backend.assert_untouched();
}

#[test]
fn spoofed_identity_headers_do_not_authenticate() {
    // Identity headers are outputs, never inputs: sending them does not satisfy a protected
    // action.
    let env = env();
    let resp = env.send(
        "GET",
        "/profile",
        &[
            ("X-Writ-Subject", "alice"),
            ("X-Writ-Action", "docs"),
            ("X-Forwarded-User", "alice"),
            ("X-Auth-Request-User", "alice"),
        ],
        b"",
    );
    resp.assert_problem(401, "no_token");
    env.backend.assert_untouched();
}

#[test]
fn response_headers_from_backend_reach_client_with_request_id() {
    let env = Env::with_config_and_backend(
        &Config::new(ACTIONS),
        support::BackendOptions {
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-backend".into(), "yes".into()),
            ],
            body: br#"{"ok":true}"#.to_vec(),
            ..Default::default()
        },
    );
    let resp = env.get("/docs/a", None);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.header("x-backend"), Some("yes"));
    assert_eq!(resp.json(), json!({"ok": true}));
    assert!(resp.header("x-request-id").is_some_and(|v| !v.is_empty()));
}

#[test]
fn obs_fold_continuation_cannot_inject_identity_header() {
    let env = env();
    let addr = env.writ.addr();
    let req = format!(
        "GET /docs/a HTTP/1.1\r\nHost: {addr}\r\nX-Note: a\r\n X-Writ-Subject: admin\r\n\r\n"
    );
    let result = support::try_send_raw(addr, req.as_bytes());
    if let Ok(resp) = &result {
        assert!(
            resp.status == 400 || resp.status == 200,
            "{}",
            resp.describe()
        );
    }
    for seen in env.backend.requests() {
        assert!(folded(&seen, "x-writ-subject").is_empty(), "{seen:#?}");
        for (_, v) in &seen.headers {
            assert!(
                !v.contains("X-Writ-Subject"),
                "folded value smuggled: {seen:#?}"
            );
        }
    }
}

#[test]
fn header_name_with_whitespace_before_colon_is_rejected() {
    let env = env();
    let addr = env.writ.addr();
    let req = format!("GET /docs/a HTTP/1.1\r\nHost: {addr}\r\nX-Writ-Subject : admin\r\n\r\n");
    let result = support::try_send_raw(addr, req.as_bytes());
    if let Ok(resp) = &result {
        assert_eq!(resp.status, 400, "{}", resp.describe());
    }
    env.backend.assert_untouched();
}

#[test]
fn chunked_trailers_cannot_inject_identity_headers() {
    let env = env();
    let addr = env.writ.addr();
    let token = env.token("profile");
    let req = format!(
        "POST /profile HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nTrailer: X-Writ-Subject, X-Writ-Action\r\nTE: trailers\r\n\r\n4\r\nbody\r\n0\r\nX-Writ-Subject: admin\r\nX-Writ-Action: docs\r\nx_writ_actor: agent:root\r\n\r\n"
    );
    let resp = support::send_raw(addr, req.as_bytes());
    assert!(
        resp.status == 200 || resp.status == 400,
        "{}",
        resp.describe()
    );
    for seen in env.backend.requests() {
        assert_eq!(seen.body, b"body");
        for (n, v) in &seen.trailers {
            let n = support::fold_header_name(n);
            assert!(
                !IDENTITY.contains(&n.as_str()),
                "identity header {n}: {v} smuggled as a trailer: {seen:#?}"
            );
        }
        assert_eq!(folded(&seen, "x-writ-subject"), vec!["alice"], "{seen:#?}");
        assert_eq!(folded(&seen, "x-writ-action"), vec!["profile"], "{seen:#?}");
    }
}

#[test]
fn subject_that_cannot_be_a_header_value_is_never_silently_dropped() {
    // A verified `sub` with CR/LF cannot be written as `x-writ-subject`. Forwarding the request
    // without any subject would make an authenticated call look anonymous (or worse, let the
    // backend fall back to another identity source): it must be refused.
    let env = env();
    for sub in ["alice\r\nX-Writ-Action: docs", "alice\nbob", "alice\u{0}"] {
        let token = env.keys.token().sub(sub).scope("profile").sign();
        let resp = env.get("/profile", Some(&token));
        assert!(
            (400..500).contains(&resp.status),
            "sub {sub:?} must be refused, got {}",
            resp.describe()
        );
    }
    env.backend.assert_untouched();
}

#[test]
fn actor_that_cannot_be_a_header_value_is_never_silently_dropped() {
    // Dropping `x-writ-actor` would turn an agent's delegated call into the user's own call.
    let cfg = Config::new(ACTIONS).set("defaults", "{ delegation: { mode: allow } }");
    let env = Env::with_config(&cfg);
    let token = env
        .keys
        .token()
        .scope("profile")
        .act("agent:ci-1\r\nX-Writ-Subject: root")
        .sign();
    let resp = env.get("/profile", Some(&token));
    assert!(
        (400..500).contains(&resp.status),
        "an unrepresentable actor must be refused, got {}",
        resp.describe()
    );
    env.backend.assert_untouched();
}
