//! Round-two hardening (issue 10): each bypass or spoof an outside attack found on `main`, as
//! named tests against the real binary. Every refusal is checked for SPEC's status and reason
//! and for a backend that saw nothing; every forward for exactly what the backend received.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{Value, json};
use support::{Config, Env, chunked, now};

const ACTIONS: &str = r#"
  - name: api-any
    methods: ["*"]
    path: /api/{*rest}
    require: { scopes: ["api:basic"] }
  - name: api-delete-user
    methods: [DELETE]
    path: /api/admin/users/{id}
    require: { scopes: [admin] }
  - name: status
    methods: [GET]
    path: /status
    public: true
  - name: internal-everything
    methods: [GET]
    path: /{*rest}
    host: internal.example.test
    require: { scopes: [internal] }
  - name: tenant-jobs
    methods: [GET]
    path: /tenants/{tenant}/jobs
    require: { claims: { tenant: "{tenant}" } }
  - name: forms
    methods: [POST]
    path: /forms
    public: true
  - name: reports
    methods: [GET]
    path: /reports
    mode: audit
    require: { scopes: [reports] }
  - name: fresh
    methods: [GET]
    path: /fresh
    require: { auth_max_age: 5m }
"#;

fn env() -> Env {
    Env::start(ACTIONS)
}

#[track_caller]
fn assert_refused_untouched(env: &Env, resp: &support::RawResponse, status: u16, reason: &str) {
    resp.assert_problem(status, reason);
    env.backend.assert_untouched();
}

// === 1. case variants of standard methods ===

#[test]
fn lowercase_delete_never_reaches_a_star_action_werkzeug_uppercases_methods() {
    let env = env();
    let basic = env.token("api:basic");
    for method in ["delete", "Delete", "dELETE", "get", "Post"] {
        let r = env.send_with_token(method, "/api/admin/users/7", Some(&basic), &[]);
        assert_refused_untouched(&env, &r, 405, "method_not_allowed");
    }
    // The real DELETE is decided by its own action and needs `admin`.
    let r = env.send_with_token("DELETE", "/api/admin/users/7", Some(&basic), &[]);
    assert_refused_untouched(&env, &r, 403, "insufficient_scope");
    // An extension method the `*` action names stays allowed.
    let r = env.send_with_token("PURGE", "/api/cache", Some(&basic), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(env.backend.single().method, "PURGE");
}

#[test]
fn lowercase_method_without_token_is_refused_under_unmatched_allow() {
    let env = Env::with_config(&Config::new(ACTIONS).set("defaults", "\n  unmatched: allow"));
    let r = env.send("delete", "/somewhere/else", &[], b"");
    assert_refused_untouched(&env, &r, 405, "method_not_allowed");
    let r = env.send("trace", "/somewhere/else", &[], b"");
    assert_refused_untouched(&env, &r, 405, "method_not_allowed");
    let r = env.send("DELETE", "/somewhere/else", &[], b"");
    assert_eq!(r.status, 200, "unmatched: allow still forwards DELETE");
}

// === 2. only a token writ verified is forwarded ===

#[test]
fn unverified_token_is_never_forwarded_public_action() {
    let env = env();
    let forged = support::tamper_claims(&env.token("admin"), |c| {
        c.insert("sub".into(), json!("root"));
    });
    let none = env.keys.token().alg_none().sign();
    for t in [forged.as_str(), none.as_str(), "not-a-jwt"] {
        env.backend.clear();
        let r = env.get("/status", Some(t));
        assert_eq!(r.status, 200, "{}", r.describe());
        let seen = env.backend.single();
        assert_eq!(seen.header("authorization"), None, "forwarded {t}");
        assert!(seen.header_folded("x-writ-subject").is_empty());
    }
}

#[test]
fn unverified_token_is_never_forwarded_audit_mode() {
    let env = env();
    let none = env.keys.token().scope("reports").alg_none().sign();
    let r = env.get("/reports", Some(&none));
    assert_eq!(r.status, 200, "audit mode forwards: {}", r.describe());
    let seen = env.backend.single();
    assert_eq!(seen.header("authorization"), None);
    assert!(seen.header_folded("x-writ-subject").is_empty());

    // A verified token that fails authorization in audit mode was verified: it may pass.
    env.backend.clear();
    let valid = env.token("other");
    let r = env.get("/reports", Some(&valid));
    assert_eq!(r.status, 200);
    let seen = env.backend.single();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {valid}").as_str())
    );
    assert!(seen.header_folded("x-writ-subject").is_empty());

    // And an allowed request keeps it (forward_token: true).
    env.backend.clear();
    let ok = env.token("reports");
    assert_eq!(env.get("/reports", Some(&ok)).status, 200);
    assert_eq!(
        env.backend.single().header("authorization"),
        Some(format!("Bearer {ok}").as_str())
    );
}

// === 3, 4, 8. token shapes that backends read differently ===

#[test]
fn claim_names_that_differ_by_case_are_malformed_go_json_43664() {
    let env = env();
    let cases = [
        env.keys
            .token()
            .scope("api:basic")
            .claim("SUB", json!("admin"))
            .sign(),
        env.keys
            .token()
            .scope("api:basic")
            .claim("Scope", json!("admin"))
            .sign(),
        env.keys
            .token()
            .scope("api:basic")
            .claim("act", json!({"sub": "agent:a", "SUB": "agent:b"}))
            .sign(),
    ];
    for t in &cases {
        let r = env.get("/api/things", Some(t));
        assert_refused_untouched(&env, &r, 401, "malformed_token");
    }
}

#[test]
fn subject_with_surrounding_whitespace_is_malformed() {
    let env = env();
    for sub in [" admin", "admin ", "\u{a0}admin", "admin\u{3000}"] {
        let t = env.keys.token().scope("api:basic").sub(sub).sign();
        let r = env.get("/api/things", Some(&t));
        assert_refused_untouched(&env, &r, 401, "malformed_token");
    }
    let t = env
        .keys
        .token()
        .scope("api:basic")
        .claim("act", json!({"sub": " agent:ci"}))
        .sign();
    let r = env.get("/api/things", Some(&t));
    assert_refused_untouched(&env, &r, 401, "malformed_token");
    // An inner space is a valid identity and travels as sent.
    let t = env
        .keys
        .token()
        .scope("api:basic")
        .sub("ada lovelace")
        .sign();
    assert_eq!(env.get("/api/things", Some(&t)).status, 200);
    assert_eq!(
        env.backend.single().header("x-writ-subject"),
        Some("ada lovelace")
    );
}

#[test]
fn future_auth_time_never_satisfies_step_up() {
    let env = env();
    for at in [json!(now() + 365 * 24 * 3600), json!(1e300)] {
        let t = env.keys.token().claim("auth_time", at).sign();
        let r = env.get("/fresh", Some(&t));
        assert_refused_untouched(&env, &r, 401, "malformed_token");
    }
    // Within leeway of now is fine.
    let t = env.keys.token().claim("auth_time", json!(now() + 1)).sign();
    assert_eq!(env.get("/fresh", Some(&t)).status, 200);
}

// === 5. the virtual host decides first ===

#[test]
fn host_specific_catch_all_beats_hostless_literal() {
    let env = env();
    let r = env.send("GET", "/status", &[("Host", "internal.example.test")], b"");
    r.assert_problem_action(401, "no_token", Some("internal-everything"));
    let r = env.send(
        "GET",
        "/status",
        &[("Host", "INTERNAL.example.test.:8080")],
        b"",
    );
    r.assert_problem_action(401, "no_token", Some("internal-everything"));
    env.backend.assert_untouched();
    let r = env.send("GET", "/status", &[("Host", "www.example.test")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(env.backend.single().header("x-writ-action"), Some("status"));
}

// === 6. override inputs writ did not see ===

#[test]
fn method_param_with_nul_suffix_is_an_override_php() {
    let env = env();
    for q in [
        "_method%00=DELETE",
        "_method%00x=DELETE",
        "_method%20=DELETE",
        "_method[]=DELETE",
    ] {
        let r = env.send("GET", &format!("/status?{q}"), &[], b"");
        assert_refused_untouched(&env, &r, 400, "method_override");
    }
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

#[test]
fn method_in_form_body_is_an_override_rails_laravel_symfony() {
    let env = env();
    for body in [
        &b"name=x&_method=DELETE"[..],
        b"_method=PUT",
        b"a=1&_METHOD=DELETE",
        b"_method%00=DELETE",
    ] {
        let r = env.send("POST", "/forms", &[FORM], body);
        assert_refused_untouched(&env, &r, 400, "method_override");
    }
    let r = env.send(
        "POST",
        "/forms",
        &[(
            "Content-Type",
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        )],
        b"_method=DELETE",
    );
    assert_refused_untouched(&env, &r, 400, "method_override");
    // Chunked framing hides nothing.
    let mut raw = b"POST /forms HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    raw.extend(chunked(b"a=1&_method=DELETE&b=2", 3));
    let r = env.send_raw(&raw);
    assert_refused_untouched(&env, &r, 400, "method_override");
}

#[test]
fn form_body_without_override_reaches_the_backend_byte_for_byte() {
    let env = env();
    let body = b"name=%C3%A9&method=x&b=%00";
    let r = env.send("POST", "/forms", &[FORM], body);
    assert_eq!(r.status, 200, "{}", r.describe());
    let seen = env.backend.single();
    assert_eq!(seen.body, body);
    assert_eq!(seen.header("content-length"), Some("26"));
}

#[test]
fn form_body_override_is_stripped_under_strip() {
    let env = Env::with_config(&Config::new(ACTIONS).set("requests", "\n  method_override: strip"));
    let r = env.send("POST", "/forms", &[FORM], b"a=1&_method=DELETE&b=2");
    assert_eq!(r.status, 200, "{}", r.describe());
    let seen = env.backend.single();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, b"a=1&b=2");
    assert_eq!(seen.header("content-length"), Some("7"));
}

#[test]
fn oversized_form_body_is_413_and_never_forwarded() {
    let env = env();
    let big = vec![b'a'; 1024 * 1024 + 1];
    let r = env.send("POST", "/forms", &[FORM], &big);
    assert_refused_untouched(&env, &r, 413, "body_too_large");
    // A body of another type streams through untouched, whatever its size.
    let r = env.send("POST", "/forms", &[("Content-Type", "text/plain")], &big);
    assert_eq!(r.status, 200);
    assert_eq!(env.backend.single().body.len(), big.len());
}

// === 7. proxy headers a backend would trust ===

#[test]
fn spoofable_proxy_headers_are_stripped_rack_reads_x_forwarded_ssl() {
    let env = env();
    let t = env.token("api:basic");
    let auth = format!("Bearer {t}");
    let spoofed = [
        ("X-Forwarded-Scheme", "https"),
        ("X-Forwarded-Ssl", "on"),
        ("Front-End-Https", "on"),
        ("X-Url-Scheme", "https"),
        ("X-Script-Name", "/admin"),
        ("X-Forwarded-User", "root"),
        ("X-Remote-User", "root"),
        ("X_Remote_User", "root"),
        ("x.writ.subject", "root"),
        ("X.Writ.Action", "api-delete-user"),
        ("x_writ.actor", "agent:evil"),
    ];
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(&spoofed);
    let r = env.send("GET", "/api/things", &headers, b"");
    assert_eq!(r.status, 200, "{}", r.describe());
    let seen = env.backend.single();
    for (name, _) in spoofed {
        let folded = name.replace('.', "-");
        let want: Vec<&str> = match support::fold_header_name(&folded).as_str() {
            "x-writ-subject" => vec!["alice"],
            "x-writ-action" => vec!["api-any"],
            _ => vec![],
        };
        assert_eq!(
            seen.header_folded(&folded),
            want,
            "{name}: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.header_all("x-writ-subject"), vec!["alice"]);
    assert_eq!(seen.header_all("x-writ-action"), vec!["api-any"]);
    assert!(seen.headers.iter().all(|(n, _)| !n.contains('.')));
}

#[test]
fn override_header_spelled_with_dots_is_refused() {
    let env = env();
    let r = env.send(
        "GET",
        "/status",
        &[("X.HTTP.Method.Override", "DELETE")],
        b"",
    );
    assert_refused_untouched(&env, &r, 400, "method_override");
}

// === 10. decision log records stay one line ===

#[test]
fn decision_log_escapes_unicode_line_breaks_and_controls() {
    let env = env();
    let sub = "eve\u{2028}{\"decision\":\"allow\"}\u{2029}x\u{85}y\u{9b}z";
    let t = env.keys.token().scope("api:basic").sub(sub).sign();
    let r = env.get("/api/things", Some(&t));
    assert_eq!(r.status, 200, "{}", r.describe());
    let text = env.writ.decision_log_text();
    for c in ['\u{2028}', '\u{2029}', '\u{85}', '\u{9b}'] {
        assert!(!text.contains(c), "raw {c:?} in the decision log");
    }
    let lines = env.writ.wait_log_lines(1);
    assert_eq!(lines.len(), 1, "one request, one line: {text:?}");
    assert_eq!(lines[0]["subject"].as_str(), Some(sub));
    assert_eq!(lines[0]["decision"].as_str(), Some("allow"));
}

// === 11. claim bindings compare the decoded segment ===

#[test]
fn claim_binding_compares_the_percent_decoded_segment() {
    let env = env();
    let tenant = |v: &str| env.keys.token().claim("tenant", json!(v)).sign();
    let r = env.get("/tenants/m%C3%BCnchen/jobs", Some(&tenant("münchen")));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(env.backend.single().target, "/tenants/m%C3%BCnchen/jobs");
    env.backend.clear();
    let r = env.get("/tenants/a%20b/jobs", Some(&tenant("a b")));
    assert_eq!(r.status, 200, "{}", r.describe());
    env.backend.clear();
    // A claim that is literally the escaped text no longer matches what the backend decodes.
    let r = env.get("/tenants/a%20b/jobs", Some(&tenant("a%20b")));
    assert_refused_untouched(&env, &r, 403, "claim_mismatch");
    let r = env.get("/tenants/%FF/jobs", Some(&tenant("\u{fffd}")));
    assert_refused_untouched(&env, &r, 400, "bad_request");
}

#[test]
fn token_claims_value_is_a_tenant_array() {
    // Membership still works on decoded values.
    let env = env();
    let t = env
        .keys
        .token()
        .claim("tenant", json!(["acme", "münchen"]))
        .sign();
    let r = env.get("/tenants/m%C3%BCnchen/jobs", Some(&t));
    assert_eq!(r.status, 200, "{}", r.describe());
    let line: Value = env.writ.wait_log_lines(1).remove(0);
    assert_eq!(line["action"], json!("tenant-jobs"));
}
