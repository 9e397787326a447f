//! The allow/deny matrix (SPEC "Responses"): for every reason reachable through the proxy
//! listener, what the client gets (status, `WWW-Authenticate`, problem+json body, `x-request-id`)
//! AND what the backend saw — a refusal never reaches it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{Value, json};
use support::{Config, Env, KID, ROGUE_KID, now, tamper_claims};

const ACTIONS: &str = r#"
  - name: read-orders
    methods: [GET]
    path: /tenants/{tenant}/orders
    require:
      scopes: [orders:read]
      claims:
        tenant: "{tenant}"
  - name: run-job
    methods: [POST]
    path: /tenants/{tenant}/jobs/{job}/run
    execution: true
    require:
      scopes: [jobs:execute]
      claims:
        tenant: "{tenant}"
        env: prod
  - name: ops
    methods: [GET]
    path: /ops/{*rest}
    require:
      any_scope: [admin, ops]
  - name: step-up
    methods: [POST]
    path: /payments
    execution: true
    require:
      scopes: [payments:send]
      auth_max_age: 10m
      acr: [mfa]
  - name: health
    methods: [GET]
    path: /healthz
    public: true
  - name: docs
    methods: [GET]
    path: /docs/{*rest}
    public: true
  - name: audited
    methods: [GET]
    path: /audited
    mode: audit
    require:
      scopes: [audit:read]
"#;

const ORDERS: &str = "/tenants/acme/orders";

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

// === allowed ===

#[test]
fn valid_token_is_forwarded_with_verified_identity_headers() {
    let env = env();
    let token = orders_token(&env);
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.body, b"backend-ok");
    assert!(
        resp.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "x-request-id returned on allowed responses: {}",
        resp.describe()
    );
    let seen = env.backend.single();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, ORDERS);
    assert_eq!(seen.header_all("x-writ-subject"), vec!["alice"]);
    assert_eq!(seen.header_all("x-writ-action"), vec!["read-orders"]);
    assert!(seen.header("x-writ-actor").is_none(), "{seen:#?}");
    let expected_auth = format!("Bearer {token}");
    assert_eq!(
        seen.header("authorization"),
        Some(expected_auth.as_str()),
        "forward_token defaults to true"
    );
}

#[test]
fn lowercase_bearer_scheme_is_accepted() {
    let env = env();
    let auth = format!("bearer {}", orders_token(&env));
    let resp = env.send("GET", ORDERS, &[("Authorization", &auth)], b"");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn uppercase_bearer_scheme_is_accepted() {
    let env = env();
    let auth = format!("BEARER {}", orders_token(&env));
    let resp = env.send("GET", ORDERS, &[("Authorization", &auth)], b"");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn scp_array_claim_grants_scope() {
    let env = env();
    let token = env
        .keys
        .token()
        .scp(json!(["other", "orders:read"]))
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn scp_string_claim_grants_scope() {
    let env = env();
    let token = env
        .keys
        .token()
        .scp(json!("orders:read other"))
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn scope_wins_over_scp_when_both_are_present() {
    let env = env();
    let token = env
        .keys
        .token()
        .scope("profile")
        .scp(json!(["orders:read"]))
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_problem(403, "insufficient_scope");
    env.backend.assert_untouched();
}

#[test]
fn any_scope_needs_one_of_the_listed_scopes() {
    let env = env();
    let ok = env.get("/ops/restart", Some(&env.token("ops")));
    assert_eq!(ok.status, 200, "{}", ok.describe());
    assert_eq!(env.backend.single().header("x-writ-action"), Some("ops"));
    env.backend.clear();

    let denied = env.get("/ops/restart", Some(&env.token("orders:read")));
    denied.assert_problem_action(403, "insufficient_scope", Some("ops"));
    env.backend.assert_untouched();
}

#[test]
fn array_claim_matches_path_parameter_by_membership() {
    let env = env();
    let token = env
        .keys
        .token()
        .scope("orders:read")
        .claim("tenant", json!(["globex", "acme"]))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.single().target, ORDERS);
}

#[test]
fn audience_array_containing_configured_audience_is_accepted() {
    let env = env();
    let token = env
        .keys
        .token()
        .aud_value(json!(["billing", support::AUDIENCE]))
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn typ_is_compared_case_insensitively_with_optional_application_prefix() {
    let env = env();
    for typ in ["AT+JWT", "application/at+jwt", "Application/At+Jwt"] {
        let token = env
            .keys
            .token()
            .typ(typ)
            .scope("orders:read")
            .claim("tenant", json!("acme"))
            .sign();
        let resp = env.get(ORDERS, Some(&token));
        assert_eq!(resp.status, 200, "typ {typ:?}: {}", resp.describe());
    }
    assert_eq!(env.backend.count(), 3);
}

#[test]
fn expiry_within_leeway_is_accepted() {
    let env = env();
    let token = env
        .keys
        .token()
        .exp_in(-2) // leeway is 5 s
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn execution_action_with_all_requirements_is_forwarded_with_body() {
    let env = env();
    let token = env
        .keys
        .token()
        .scope("jobs:execute")
        .claim("tenant", json!("acme"))
        .claim("env", json!("prod"))
        .sign();
    let auth = format!("Bearer {token}");
    let resp = env.send(
        "POST",
        "/tenants/acme/jobs/7/run",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"dry_run":false}"#,
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/tenants/acme/jobs/7/run");
    assert_eq!(seen.body, br#"{"dry_run":false}"#);
    assert_eq!(seen.header("x-writ-action"), Some("run-job"));
}

// === public and unmatched ===

#[test]
fn public_action_needs_no_token_and_carries_action_header() {
    let env = env();
    let resp = env.get("/healthz", None);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(resp.header("x-request-id").is_some());
    let seen = env.backend.single();
    assert_eq!(seen.target, "/healthz");
    assert_eq!(seen.header_all("x-writ-action"), vec!["health"]);
    assert!(seen.header("x-writ-subject").is_none(), "{seen:#?}");
    assert!(seen.header("x-writ-actor").is_none(), "{seen:#?}");
}

#[test]
fn unmatched_request_is_denied_by_default_with_null_action() {
    let env = env();
    let resp = env.get("/nowhere", Some(&env.token("orders:read admin")));
    resp.assert_problem_action(403, "no_matching_action", None);
    assert!(
        resp.header("www-authenticate").is_none(),
        "no_matching_action carries no challenge: {}",
        resp.describe()
    );
    env.backend.assert_untouched();
}

#[test]
fn unmatched_request_is_forwarded_when_defaults_allow_it() {
    let cfg = Config::new(ACTIONS).set("defaults", "{ unmatched: allow }");
    let env = Env::with_config(&cfg);
    let resp = env.get("/nowhere/else?x=1", None);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.target, "/nowhere/else?x=1");
    assert!(seen.header("x-writ-subject").is_none());
    // Matched actions still enforce.
    let denied = env.get(ORDERS, None);
    denied.assert_problem(401, "no_token");
    assert_eq!(env.backend.count(), 1);
}

// === no_token ===

#[test]
fn missing_token_is_401_with_realm_challenge() {
    let env = env();
    let resp = env.get(ORDERS, None);
    resp.assert_problem_action(401, "no_token", Some("read-orders"));
    let www = resp.header("www-authenticate").unwrap_or("");
    assert!(
        www.starts_with("Bearer") && www.contains("realm=\"writ\"") && !www.contains("error="),
        "no_token challenge should be Bearer realm=\"writ\", got {www:?}"
    );
    env.backend.assert_untouched();
}

#[test]
fn basic_authorization_scheme_is_no_token() {
    let env = env();
    let resp = env.send(
        "GET",
        ORDERS,
        &[("Authorization", "Basic YWxpY2U6cGFzc3dvcmQ=")],
        b"",
    );
    resp.assert_problem(401, "no_token");
    assert!(
        resp.header("www-authenticate")
            .is_some_and(|w| w.contains("realm=\"writ\"")),
        "{}",
        resp.describe()
    );
    env.backend.assert_untouched();
}

#[test]
fn token_in_query_string_is_never_read() {
    let env = env();
    let token = orders_token(&env);
    for param in ["access_token", "token", "jwt"] {
        let resp = env.get(&format!("{ORDERS}?{param}={token}"), None);
        resp.assert_problem(401, "no_token");
    }
    env.backend.assert_untouched();
}

#[test]
fn token_in_cookie_is_never_read() {
    let env = env();
    let token = orders_token(&env);
    let cookie = format!("access_token={token}; token={token}; Authorization=Bearer {token}");
    let resp = env.send("GET", ORDERS, &[("Cookie", &cookie)], b"");
    resp.assert_problem(401, "no_token");
    env.backend.assert_untouched();
}

// === token unusable (401 invalid_token) ===

#[test]
fn garbage_token_is_malformed() {
    let env = env();
    for bad in [
        "not-a-jwt",
        "a.b.c",
        "e30.e30",
        "....",
        "eyJhbGciOiJFUzI1NiJ9.%%%.abc",
    ] {
        let resp = env.get(ORDERS, Some(bad));
        resp.assert_invalid_token("malformed_token");
    }
    env.backend.assert_untouched();
}

#[test]
fn tampered_payload_is_bad_signature() {
    let env = env();
    let token = env
        .keys
        .token()
        .scope("profile")
        .claim("tenant", json!("acme"))
        .sign();
    let forged = tamper_claims(&token, |c| {
        c.insert("scope".into(), json!("orders:read"));
    });
    let resp = env.get(ORDERS, Some(&forged));
    resp.assert_invalid_token("bad_signature");
    env.backend.assert_untouched();
}

#[test]
fn token_signed_by_another_key_under_trusted_kid_is_bad_signature() {
    let env = env();
    let token = env
        .keys
        .token()
        .signed_by_rogue()
        .kid(KID)
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("bad_signature");
    env.backend.assert_untouched();
}

#[test]
fn all_zero_ecdsa_signature_is_bad_signature_cve_2022_21449() {
    let env = env();
    let token = env
        .keys
        .token()
        .zero_signature()
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("bad_signature");
    env.backend.assert_untouched();
}

#[test]
fn unknown_kid_is_unknown_key() {
    let env = env();
    let token = env
        .keys
        .token()
        .signed_by_rogue()
        .kid(ROGUE_KID)
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("unknown_key");
    env.backend.assert_untouched();
}

#[test]
fn embedded_jwk_header_is_never_trusted_cve_2018_0114() {
    let env = env();
    let token = env
        .keys
        .token()
        .signed_by_rogue()
        .kid(ROGUE_KID)
        .header("jwk", env.keys.rogue_jwk(ROGUE_KID))
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("unknown_key");
    env.backend.assert_untouched();
}

#[test]
fn jku_and_x5u_headers_are_never_fetched() {
    let env = env();
    // A server that would hand out the rogue key, if anyone asked.
    let jwks_host = support::Backend::start_with(support::BackendOptions {
        body: serde_json::to_vec(&json!({"keys": [env.keys.rogue_jwk(ROGUE_KID)]})).unwrap(),
        headers: vec![("content-type".into(), "application/json".into())],
        ..Default::default()
    });
    let token = env
        .keys
        .token()
        .signed_by_rogue()
        .kid(ROGUE_KID)
        .header("jku", json!(format!("{}/jwks.json", jwks_host.url())))
        .header("x5u", json!(format!("{}/cert.pem", jwks_host.url())))
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("unknown_key");
    env.backend.assert_untouched();
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        jwks_host.connections(),
        0,
        "writ must never fetch a token-supplied jku/x5u"
    );
}

#[test]
fn es384_token_is_alg_not_allowed_when_only_es256_is_listed() {
    let env = env();
    let token = env
        .keys
        .token()
        .es384()
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("alg_not_allowed");
    env.backend.assert_untouched();
}

#[test]
fn hs256_signed_with_public_key_is_alg_not_allowed_cve_2015_9235() {
    let env = env();
    let jwks_text = std::fs::read(env.keys.jwks_path()).unwrap();
    for secret in [env.keys.public_point(), jwks_text] {
        let token = env
            .keys
            .token()
            .hs256(&secret)
            .scope("orders:read")
            .claim("tenant", json!("acme"))
            .sign();
        let resp = env.get(ORDERS, Some(&token));
        resp.assert_invalid_token("alg_not_allowed");
    }
    env.backend.assert_untouched();
}

#[test]
fn alg_none_token_is_refused() {
    let env = env();
    let token = env
        .keys
        .token()
        .alg_none()
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    assert!(
        token.ends_with('.'),
        "unsigned token has an empty signature"
    );
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 401, "{}", resp.describe());
    let reason = resp.json()["reason"].as_str().unwrap_or("").to_string();
    // Check order: parse → alg allowlist. An empty signature segment may already fail parsing.
    assert!(
        reason == "alg_not_allowed" || reason == "malformed_token",
        "alg none must be refused as alg_not_allowed (or malformed_token), got {reason}"
    );
    resp.assert_invalid_token(&reason);
    env.backend.assert_untouched();
}

#[test]
fn expired_token_is_token_expired() {
    let env = env();
    let token = env
        .keys
        .token()
        .exp_in(-60)
        .iat_ago(700)
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("token_expired");
    env.backend.assert_untouched();
}

#[test]
fn not_yet_valid_token_is_token_not_yet_valid() {
    let env = env();
    let token = env
        .keys
        .token()
        .nbf_in(120)
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("token_not_yet_valid");
    env.backend.assert_untouched();
}

#[test]
fn iat_in_the_future_beyond_leeway_is_malformed() {
    let env = env();
    let token = env
        .keys
        .token()
        .claim("iat", json!(now() + 120))
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("malformed_token");
    env.backend.assert_untouched();
}

#[test]
fn missing_exp_is_malformed() {
    let env = env();
    let token = env
        .keys
        .token()
        .without("exp")
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("malformed_token");
    env.backend.assert_untouched();
}

#[test]
fn exp_as_string_is_malformed_cve_2026_25537() {
    let env = env();
    for exp in [
        json!("never"),
        json!("9999999999"),
        json!(null),
        json!({"at": 1}),
    ] {
        let token = env
            .keys
            .token()
            .claim("exp", exp.clone())
            .scope("orders:read")
            .claim("tenant", json!("acme"))
            .sign();
        let resp = env.get(ORDERS, Some(&token));
        assert_eq!(resp.status, 401, "exp {exp}: {}", resp.describe());
        resp.assert_invalid_token("malformed_token");
    }
    env.backend.assert_untouched();
}

#[test]
fn nbf_as_string_is_malformed() {
    let env = env();
    let token = env
        .keys
        .token()
        .claim("nbf", json!("tomorrow"))
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("malformed_token");
    env.backend.assert_untouched();
}

#[test]
fn wrong_issuer_is_refused_and_compared_exactly() {
    let env = env();
    for iss in [
        "https://evil.test/",
        "https://issuer.test",
        "https://ISSUER.test/",
        "https://issuer.test/ ",
    ] {
        let token = env
            .keys
            .token()
            .iss(iss)
            .scope("orders:read")
            .claim("tenant", json!("acme"))
            .sign();
        let resp = env.get(ORDERS, Some(&token));
        assert_eq!(resp.status, 401, "iss {iss:?}: {}", resp.describe());
        resp.assert_invalid_token("wrong_issuer");
    }
    env.backend.assert_untouched();
}

#[test]
fn missing_issuer_is_refused() {
    let env = env();
    let token = env
        .keys
        .token()
        .without("iss")
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 401, "{}", resp.describe());
    let reason = resp.json()["reason"].as_str().unwrap_or("").to_string();
    assert!(
        reason == "wrong_issuer" || reason == "malformed_token",
        "missing iss: {}",
        resp.describe()
    );
    resp.assert_invalid_token(&reason);
    env.backend.assert_untouched();
}

#[test]
fn wrong_audience_is_refused() {
    let env = env();
    for aud in [
        json!("billing"),
        json!(["billing", "payroll"]),
        json!("ORDERS-API"),
    ] {
        let token = env
            .keys
            .token()
            .aud_value(aud.clone())
            .scope("orders:read")
            .claim("tenant", json!("acme"))
            .sign();
        let resp = env.get(ORDERS, Some(&token));
        assert_eq!(resp.status, 401, "aud {aud}: {}", resp.describe());
        resp.assert_invalid_token("wrong_audience");
    }
    env.backend.assert_untouched();
}

#[test]
fn empty_audience_array_matches_nothing_cve_2020_26160() {
    let env = env();
    let token = env
        .keys
        .token()
        .aud_value(json!([]))
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("wrong_audience");
    env.backend.assert_untouched();
}

#[test]
fn missing_audience_is_wrong_audience() {
    let env = env();
    let token = env
        .keys
        .token()
        .without("aud")
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("wrong_audience");
    env.backend.assert_untouched();
}

#[test]
fn wrong_or_missing_typ_is_wrong_token_type() {
    let env = env();
    let jwt = env
        .keys
        .token()
        .typ("JWT")
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    env.get(ORDERS, Some(&jwt))
        .assert_invalid_token("wrong_token_type");
    let id_token = env
        .keys
        .token()
        .typ("id_token+jwt")
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    env.get(ORDERS, Some(&id_token))
        .assert_invalid_token("wrong_token_type");
    let untyped = env
        .keys
        .token()
        .without_header("typ")
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    env.get(ORDERS, Some(&untyped))
        .assert_invalid_token("wrong_token_type");
    env.backend.assert_untouched();
}

#[test]
fn oversized_token_is_token_too_large() {
    let cfg = Config::new(ACTIONS).set("requests", "{ max_token_bytes: 1024 }");
    let env = Env::with_config(&cfg);
    let big = env
        .keys
        .token()
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .claim("padding", json!("x".repeat(2000)))
        .sign();
    assert!(big.len() > 1024);
    env.get(ORDERS, Some(&big))
        .assert_invalid_token("token_too_large");
    // Size is checked before anything else: garbage of that size is also too large.
    let garbage = "y".repeat(1500);
    env.get(ORDERS, Some(&garbage))
        .assert_invalid_token("token_too_large");
    env.backend.assert_untouched();
    // A normal token still works under the same config.
    let ok = env.get(ORDERS, Some(&orders_token(&env)));
    assert_eq!(ok.status, 200, "{}", ok.describe());
}

#[test]
fn default_token_size_limit_is_8_kib() {
    let env = env();
    let big = env
        .keys
        .token()
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .claim("padding", json!("x".repeat(9000)))
        .sign();
    env.get(ORDERS, Some(&big))
        .assert_invalid_token("token_too_large");
    env.backend.assert_untouched();
}

#[test]
fn crit_header_is_malformed() {
    let env = env();
    let token = env
        .keys
        .token()
        .header("crit", json!(["exp"]))
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("malformed_token");
    env.backend.assert_untouched();
}

#[test]
fn sender_constrained_cnf_token_is_malformed() {
    let env = env();
    let token = env
        .keys
        .token()
        .claim(
            "cnf",
            json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        )
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("malformed_token");
    env.backend.assert_untouched();
}

#[test]
fn check_order_issuer_before_time_claims() {
    let env = env();
    let token = env
        .keys
        .token()
        .iss("https://evil.test/")
        .exp_in(-3600)
        .iat_ago(7200)
        .sign();
    env.get(ORDERS, Some(&token))
        .assert_invalid_token("wrong_issuer");
    env.backend.assert_untouched();
}

#[test]
fn check_order_signature_before_claims() {
    let env = env();
    let token = env
        .keys
        .token()
        .signed_by_rogue()
        .iss("https://evil.test/")
        .aud("billing")
        .exp_in(-3600)
        .sign();
    env.get(ORDERS, Some(&token))
        .assert_invalid_token("bad_signature");
    env.backend.assert_untouched();
}

#[test]
fn check_order_audience_before_typ_before_time() {
    let env = env();
    let a = env
        .keys
        .token()
        .aud("billing")
        .typ("JWT")
        .exp_in(-3600)
        .iat_ago(7200)
        .sign();
    env.get(ORDERS, Some(&a))
        .assert_invalid_token("wrong_audience");
    let b = env
        .keys
        .token()
        .typ("JWT")
        .exp_in(-3600)
        .iat_ago(7200)
        .sign();
    env.get(ORDERS, Some(&b))
        .assert_invalid_token("wrong_token_type");
    env.backend.assert_untouched();
}

#[test]
fn check_order_authentication_before_authorization() {
    // An expired token without the scope is token_expired, not insufficient_scope.
    let env = env();
    let token = env.keys.token().exp_in(-3600).iat_ago(7200).sign();
    env.get(ORDERS, Some(&token))
        .assert_invalid_token("token_expired");
    env.backend.assert_untouched();
}

// === authorization (403) ===

#[test]
fn missing_scope_is_403_with_insufficient_scope_challenge() {
    let env = env();
    let token = env
        .keys
        .token()
        .scope("profile email")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_problem_action(403, "insufficient_scope", Some("read-orders"));
    let www = resp.header("www-authenticate").unwrap_or("");
    assert!(
        www.starts_with("Bearer ")
            && www.contains("error=\"insufficient_scope\"")
            && www.contains("scope=\"orders:read\""),
        "expected Bearer error=\"insufficient_scope\", scope=\"orders:read\", got {www:?}"
    );
    env.backend.assert_untouched();
}

#[test]
fn scope_matching_is_exact_not_prefix() {
    let env = env();
    for scope in [
        "orders",
        "orders:read:all",
        "orders:readx",
        "ORDERS:READ",
        "orders:read,admin",
    ] {
        let token = env
            .keys
            .token()
            .scope(scope)
            .claim("tenant", json!("acme"))
            .sign();
        let resp = env.get(ORDERS, Some(&token));
        assert_eq!(resp.status, 403, "scope {scope:?}: {}", resp.describe());
        resp.assert_problem(403, "insufficient_scope");
    }
    env.backend.assert_untouched();
}

#[test]
fn tenant_claim_bound_to_path_parameter_mismatch_is_claim_mismatch() {
    let env = env();
    let token = orders_token(&env); // tenant acme
    let resp = env.get("/tenants/globex/orders", Some(&token));
    let body = resp.assert_problem_action(403, "claim_mismatch", Some("read-orders"));
    assert!(
        resp.header("www-authenticate").is_none(),
        "claim_mismatch carries no challenge"
    );
    assert!(body["detail"].is_string());
    env.backend.assert_untouched();
}

#[test]
fn missing_bound_claim_is_claim_mismatch() {
    let env = env();
    let token = env.keys.token().scope("orders:read").sign();
    env.get(ORDERS, Some(&token))
        .assert_problem(403, "claim_mismatch");
    env.backend.assert_untouched();
}

#[test]
fn literal_claim_condition_mismatch_is_claim_mismatch() {
    let env = env();
    let token = env
        .keys
        .token()
        .scope("jobs:execute")
        .claim("tenant", json!("acme"))
        .claim("env", json!("staging"))
        .sign();
    let auth = format!("Bearer {token}");
    let resp = env.send(
        "POST",
        "/tenants/acme/jobs/7/run",
        &[("Authorization", &auth)],
        b"",
    );
    resp.assert_problem_action(403, "claim_mismatch", Some("run-job"));
    env.backend.assert_untouched();
}

#[test]
fn scope_checked_before_claims() {
    let env = env();
    let token = env
        .keys
        .token()
        .scope("profile")
        .claim("tenant", json!("globex"))
        .sign();
    env.get(ORDERS, Some(&token))
        .assert_problem(403, "insufficient_scope");
    env.backend.assert_untouched();
}

// === step-up (RFC 9470) ===

fn payments_token(env: &Env, auth_age_secs: i64, acr: &str) -> String {
    env.keys
        .token()
        .scope("payments:send")
        .auth_time_ago(auth_age_secs)
        .claim("acr", json!(acr))
        .sign()
}

#[test]
fn fresh_mfa_authentication_passes_step_up() {
    let env = env();
    let token = payments_token(&env, 60, "mfa");
    let resp = env.send_with_token("POST", "/payments", Some(&token), &[]);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(
        env.backend.single().header("x-writ-action"),
        Some("step-up")
    );
}

#[test]
fn stale_authentication_is_step_up_required_with_max_age() {
    let env = env();
    let token = payments_token(&env, 3600, "mfa");
    let resp = env.send_with_token("POST", "/payments", Some(&token), &[]);
    resp.assert_problem(401, "step_up_required");
    let www = resp.header("www-authenticate").unwrap_or("");
    assert!(
        www.contains("error=\"insufficient_user_authentication\"") && www.contains("max_age="),
        "expected insufficient_user_authentication with max_age, got {www:?}"
    );
    env.backend.assert_untouched();
}

#[test]
fn weak_acr_is_step_up_required_with_acr_values() {
    let env = env();
    let token = payments_token(&env, 60, "pwd");
    let resp = env.send_with_token("POST", "/payments", Some(&token), &[]);
    resp.assert_problem(401, "step_up_required");
    let www = resp.header("www-authenticate").unwrap_or("");
    assert!(
        www.contains("error=\"insufficient_user_authentication\"")
            && www.contains("acr_values=\"mfa\""),
        "expected insufficient_user_authentication with acr_values=\"mfa\", got {www:?}"
    );
    env.backend.assert_untouched();
}

// === audit mode ===

#[test]
fn audit_mode_forwards_would_be_denial_without_identity_headers() {
    let env = env();
    let rid = support::unique("audit");
    let resp = env.send(
        "GET",
        "/audited",
        &[
            ("x-request-id", &rid),
            ("X-Writ-Subject", "root"),
            ("X-Writ-Action", "audited"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    for h in ["x-writ-subject", "x-writ-actor", "x-writ-action"] {
        assert!(
            seen.header_folded(h).is_empty(),
            "audit-forwarded request must carry no identity header {h}: {seen:#?}"
        );
    }
    let line = env.writ.log_line_for(&rid);
    assert_eq!(line["decision"], json!("deny"), "{line}");
    assert_eq!(line["enforced"], json!(false), "{line}");
    assert_eq!(line["reason"], json!("no_token"), "{line}");
    assert_eq!(line["action"], json!("audited"), "{line}");
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
fn audit_mode_allowed_request_is_logged_as_allow_and_enforced() {
    let env = env();
    let rid = support::unique("audit-ok");
    let token = env.token("audit:read");
    let auth = format!("Bearer {token}");
    let resp = env.send(
        "GET",
        "/audited",
        &[("x-request-id", &rid), ("Authorization", &auth)],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.header("x-writ-subject"), Some("alice"));
    let line = env.writ.log_line_for(&rid);
    assert_eq!(line["decision"], json!("allow"), "{line}");
    assert_eq!(line["enforced"], json!(true), "{line}");
}

#[test]
fn defaults_audit_mode_applies_to_every_action_and_action_can_override() {
    let actions = r#"
  - name: soft
    methods: [GET]
    path: /soft
    require: { scopes: [s] }
  - name: hard
    methods: [GET]
    path: /hard
    mode: enforce
    require: { scopes: [s] }
"#;
    let cfg = Config::new(actions).set("defaults", "{ mode: audit }");
    let env = Env::with_config(&cfg);
    let soft = env.get("/soft", Some(&env.token("other")));
    assert_eq!(soft.status, 200, "{}", soft.describe());
    assert_eq!(env.backend.count(), 1);
    env.backend.clear();
    let hard = env.get("/hard", Some(&env.token("other")));
    hard.assert_problem(403, "insufficient_scope");
    env.backend.assert_untouched();
}

// === method handling ===

#[test]
fn method_only_other_actions_name_is_405_with_allow_header() {
    let env = env();
    let token = env
        .keys
        .token()
        .scope("jobs:execute")
        .claim("tenant", json!("acme"))
        .claim("env", json!("prod"))
        .sign();
    let resp = env.get("/tenants/acme/jobs/7/run", Some(&token));
    resp.assert_problem(405, "method_not_allowed");
    let allow = resp.header("allow").unwrap_or("");
    assert!(
        allow.split(',').any(|m| m.trim() == "POST"),
        "405 must carry Allow naming POST, got {allow:?}; {}",
        resp.describe()
    );
    env.backend.assert_untouched();
}

#[test]
fn head_is_not_implied_by_get() {
    let env = env();
    let resp = env.send("HEAD", "/healthz", &[], b"");
    assert_eq!(resp.status, 405, "{}", resp.describe());
    assert!(
        resp.header("allow")
            .is_some_and(|a| a.split(',').any(|m| m.trim() == "GET")),
        "{}",
        resp.describe()
    );
    env.backend.assert_untouched();
}

#[test]
fn trace_is_405() {
    let env = env();
    let resp = env.send("TRACE", "/docs/readme", &[], b"");
    resp.assert_problem(405, "method_not_allowed");
    env.backend.assert_untouched();
}

#[test]
fn trace_is_405_even_under_wildcard_methods() {
    let actions = r#"
  - name: anything
    methods: ["*"]
    path: /any/{*rest}
    public: true
"#;
    let env = Env::start(actions);
    let ok = env.send("PATCH", "/any/x", &[], b"");
    assert_eq!(ok.status, 200, "{}", ok.describe());
    assert_eq!(env.backend.count(), 1);
    env.backend.clear();
    for method in ["TRACE", "CONNECT"] {
        let resp = env.send(method, "/any/x", &[], b"");
        assert_eq!(resp.status, 405, "{method}: {}", resp.describe());
    }
    env.backend.assert_untouched();
}

#[test]
fn connect_is_refused() {
    let env = env();
    let resp = env
        .send_raw(b"CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\n\r\n");
    assert!(
        resp.status == 405 || resp.status == 400,
        "CONNECT must be refused (405), got {}",
        resp.describe()
    );
    let origin_form = env.send("CONNECT", "/docs/x", &[], b"");
    assert_eq!(origin_form.status, 405, "{}", origin_form.describe());
    env.backend.assert_untouched();
}

#[test]
fn lowercase_method_no_action_names_is_405() {
    let env = env();
    let resp = env.send("get", "/docs/readme", &[], b"");
    assert_eq!(resp.status, 405, "{}", resp.describe());
    env.backend.assert_untouched();
}

#[test]
fn nonstandard_method_no_action_names_is_405() {
    let env = env();
    let resp = env.send("PURGE", "/docs/readme", &[], b"");
    assert_eq!(resp.status, 405, "{}", resp.describe());
    env.backend.assert_untouched();
}

// === malformed requests (400) ===

#[test]
fn duplicate_authorization_headers_are_400() {
    let env = env();
    let good = format!("Bearer {}", orders_token(&env));
    let resp = env.send(
        "GET",
        ORDERS,
        &[("Authorization", &good), ("Authorization", &good)],
        b"",
    );
    resp.assert_problem(400, "bad_request");
    let mixed = env.send(
        "GET",
        ORDERS,
        &[
            ("Authorization", "Basic Zm9vOmJhcg=="),
            ("authorization", &good),
        ],
        b"",
    );
    mixed.assert_problem(400, "bad_request");
    env.backend.assert_untouched();
}

#[test]
fn duplicate_authorization_on_public_action_is_still_400() {
    let env = env();
    let resp = env.send(
        "GET",
        "/healthz",
        &[("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
        b"",
    );
    resp.assert_problem(400, "bad_request");
    env.backend.assert_untouched();
}

// === request ids ===

#[test]
fn request_id_is_propagated_to_backend_and_client() {
    let env = env();
    let token = orders_token(&env);
    let auth = format!("Bearer {token}");
    let resp = env.send(
        "GET",
        ORDERS,
        &[("Authorization", &auth), ("X-Request-Id", "client-rid-42")],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.header("x-request-id"), Some("client-rid-42"));
    assert_eq!(
        env.backend.single().header_all("x-request-id"),
        vec!["client-rid-42"]
    );
}

#[test]
fn request_id_is_propagated_into_rejections() {
    let env = env();
    let resp = env.send("GET", ORDERS, &[("X-Request-Id", "client-rid-43")], b"");
    let body = resp.assert_problem(401, "no_token");
    assert_eq!(body["request_id"], json!("client-rid-43"));
    assert_eq!(resp.header("x-request-id"), Some("client-rid-43"));
    env.backend.assert_untouched();
}

#[test]
fn request_id_is_generated_and_unique_when_absent() {
    let env = env();
    let a = env.get(ORDERS, None);
    let b = env.get(ORDERS, None);
    let c = env.get("/healthz", None);
    let ids: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|r| r.header("x-request-id").unwrap_or("").to_string())
        .collect();
    assert!(ids.iter().all(|i| !i.is_empty()), "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
    // The backend saw the generated id of the forwarded request.
    assert_eq!(
        env.backend.single().header("x-request-id"),
        Some(ids[2].as_str())
    );
}

#[test]
fn problem_body_never_echoes_the_token() {
    let env = env();
    let token = env
        .keys
        .token()
        .exp_in(-60)
        .iat_ago(700)
        .scope("orders:read")
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    resp.assert_invalid_token("token_expired");
    let sig = token.rsplit('.').next().unwrap();
    let text = format!("{:?} {}", resp.headers, resp.body_text());
    assert!(!text.contains(&token), "response echoes the token");
    assert!(!text.contains(sig), "response echoes the signature");
}

#[test]
fn problem_json_fields_have_expected_types_and_title() {
    let env = env();
    let resp = env.get(ORDERS, None);
    let body: Value = resp.assert_problem(401, "no_token");
    assert_eq!(body["status"], json!(401));
    assert!(
        !body["title"].as_str().unwrap_or("").is_empty(),
        "title must be non-empty: {body}"
    );
    assert_eq!(body["action"], json!("read-orders"));
}

// === verified-token cache ===

#[test]
fn cached_token_is_still_checked_for_expiry_on_every_request() {
    let cfg = Config::new(ACTIONS).set("issuers", &support::issuer_section("0s", Some("at+jwt")));
    let env = Env::with_config(&cfg);
    let token = env
        .keys
        .token()
        .exp_in(2)
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let first = env.get(ORDERS, Some(&token));
    assert_eq!(first.status, 200, "{}", first.describe());
    std::thread::sleep(std::time::Duration::from_millis(3100));
    env.get(ORDERS, Some(&token))
        .assert_invalid_token("token_expired");
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn cached_token_with_swapped_signature_is_bad_signature() {
    let env = env();
    let token = orders_token(&env);
    assert_eq!(env.get(ORDERS, Some(&token)).status, 200);
    // Same header and payload, someone else's signature: must not hit the cache.
    let rogue = env
        .keys
        .token()
        .signed_by_rogue()
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let (hp, _) = token.rsplit_once('.').unwrap();
    let (_, rogue_sig) = rogue.rsplit_once('.').unwrap();
    let forged = format!("{hp}.{rogue_sig}");
    env.get(ORDERS, Some(&forged))
        .assert_invalid_token("bad_signature");
    let truncated = format!("{hp}.");
    let resp = env.get(ORDERS, Some(&truncated));
    assert_eq!(resp.status, 401, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn cached_token_is_authorized_per_action() {
    let env = env();
    let token = orders_token(&env);
    assert_eq!(env.get(ORDERS, Some(&token)).status, 200);
    env.get("/ops/x", Some(&token))
        .assert_problem(403, "insufficient_scope");
    env.get("/tenants/globex/orders", Some(&token))
        .assert_problem(403, "claim_mismatch");
    assert_eq!(env.backend.count(), 1);
}

// === more token shapes ===

#[test]
fn kid_with_path_traversal_is_unknown_key() {
    let env = env();
    for kid in [
        "../../../../etc/passwd",
        "key-1/../key-1x",
        "key-1\u{0}",
        "KEY-1",
    ] {
        let token = env
            .keys
            .token()
            .signed_by_rogue()
            .kid(kid)
            .scope("orders:read")
            .claim("tenant", json!("acme"))
            .sign();
        let resp = env.get(ORDERS, Some(&token));
        assert_eq!(resp.status, 401, "kid {kid:?}: {}", resp.describe());
        resp.assert_invalid_token("unknown_key");
    }
    env.backend.assert_untouched();
}

#[test]
fn two_tokens_in_one_authorization_header_are_malformed() {
    let env = env();
    let t = orders_token(&env);
    for value in [format!("Bearer {t}, Bearer {t}"), format!("Bearer {t} {t}")] {
        let resp = env.send("GET", ORDERS, &[("Authorization", &value)], b"");
        assert_eq!(resp.status, 401, "{}", resp.describe());
        resp.assert_invalid_token("malformed_token");
    }
    env.backend.assert_untouched();
}

#[test]
fn duplicate_claim_keys_are_malformed_apisix_cve_2022_25757() {
    // A verifier that reads the last key and a backend that reads the first disagree: refuse.
    let env = env();
    let claims = orders_token_claims(&env);
    let body = claims.to_string();
    let dup = body.replacen('{', "{\"scope\":\"nothing\",", 1);
    let header = json!({"alg": "ES256", "kid": KID, "typ": "at+jwt"});
    let token = sign_text(&env, &header.to_string(), &dup);
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 401, "{}", resp.describe());
    resp.assert_invalid_token("malformed_token");
    env.backend.assert_untouched();
}

#[test]
fn duplicate_header_keys_are_malformed() {
    let env = env();
    let claims = orders_token_claims(&env).to_string();
    let header = format!(r#"{{"alg":"none","alg":"ES256","kid":"{KID}","typ":"at+jwt"}}"#);
    let token = sign_text(&env, &header, &claims);
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 401, "{}", resp.describe());
    resp.assert_invalid_token("malformed_token");
    env.backend.assert_untouched();
}

fn orders_token_claims(env: &Env) -> Value {
    env.keys
        .token()
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .claims()
}

/// Signs header/payload JSON text verbatim (so duplicate keys survive) with the trusted key.
fn sign_text(env: &Env, header: &str, payload: &str) -> String {
    let h = support::b64url(header.as_bytes());
    let p = support::b64url(payload.as_bytes());
    // Reuse the raw signer: sign a message we build ourselves.
    let msg = format!("{h}.{p}");
    let sig = env.keys.sign_message(msg.as_bytes());
    format!("{msg}.{}", support::b64url(&sig))
}

#[test]
fn not_before_within_leeway_is_accepted() {
    let env = env();
    let token = env
        .keys
        .token()
        .nbf_in(2)
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 200, "{}", resp.describe());
}

#[test]
fn claim_binding_is_case_sensitive() {
    let env = env();
    let token = orders_token(&env);
    env.get("/tenants/ACME/orders", Some(&token))
        .assert_problem(403, "claim_mismatch");
    env.backend.assert_untouched();
}

#[test]
fn claim_binding_uses_the_normalized_path_parameter() {
    let env = env();
    let token = orders_token(&env);
    let resp = env.get("/tenants/%61cme/orders", Some(&token));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.single().target, ORDERS);
}

#[test]
fn denied_request_with_expect_continue_is_answered_without_the_body() {
    let env = env();
    let addr = env.writ.addr();
    let head = format!(
        "POST /tenants/acme/jobs/1/run HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
    );
    let mut conn = support::RawConn::connect(addr).unwrap();
    conn.send(head.as_bytes()).unwrap();
    // The body is never sent: the rejection must come anyway (read times out after 5 s).
    let resp = conn
        .read_response(false)
        .expect("a final response without sending the body");
    resp.assert_problem(401, "no_token");
    env.backend.assert_untouched();
}

// === numeric dates and hostile claim shapes ===

#[test]
fn fractional_numeric_dates_are_accepted() {
    // RFC 7519 NumericDate may be non-integer.
    let env = env();
    let token = env
        .keys
        .token()
        .claim("exp", json!((now() + 600) as f64 + 0.5))
        .claim("iat", json!((now() - 10) as f64 + 0.25))
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = env.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 200, "{}", resp.describe());
}

#[test]
fn extreme_numeric_dates_are_decided_not_crashed_on() {
    let env = env();
    let t = |name: &str, v: Value| {
        env.keys
            .token()
            .claim(name, v)
            .scope("orders:read")
            .claim("tenant", json!("acme"))
            .sign()
    };
    env.get(ORDERS, Some(&t("exp", json!(-1))))
        .assert_invalid_token("token_expired");
    env.get(ORDERS, Some(&t("exp", json!(i64::MIN))))
        .assert_invalid_token("token_expired");
    env.get(ORDERS, Some(&t("nbf", json!(1e20))))
        .assert_invalid_token("token_not_yet_valid");
    env.get(ORDERS, Some(&t("iat", json!(1e20))))
        .assert_invalid_token("malformed_token");
    for v in [json!(1e300), json!(u64::MAX)] {
        let resp = env.get(ORDERS, Some(&t("exp", v.clone())));
        assert!(
            resp.status == 200 || resp.status == 401,
            "exp {v}: {}",
            resp.describe()
        );
    }
    // Still serving.
    assert_eq!(env.get("/healthz", None).status, 200);
}

#[test]
fn deeply_nested_claims_are_malformed_not_a_crash() {
    let env = env();
    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    let claims = format!(
        r#"{{"iss":"{}","aud":"{}","sub":"a","exp":{},"scope":"orders:read","tenant":"acme","x":{deep}}}"#,
        support::ISSUER,
        support::AUDIENCE,
        now() + 600
    );
    let header = format!(r#"{{"alg":"ES256","kid":"{KID}","typ":"at+jwt"}}"#);
    let token = sign_text(&env, &header, &claims);
    assert!(token.len() < 8192);
    env.get(ORDERS, Some(&token))
        .assert_invalid_token("malformed_token");
    let chain: Vec<String> = (0..200).map(|i| format!("agent:{i}")).collect();
    let refs: Vec<&str> = chain.iter().map(String::as_str).collect();
    let token = env
        .keys
        .token()
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .act_chain(&refs)
        .sign();
    env.get(ORDERS, Some(&token))
        .assert_invalid_token("malformed_token");
    env.backend.assert_untouched();
    assert_eq!(env.get("/healthz", None).status, 200);
}

// === classification precedence ===

#[test]
fn most_specific_template_wins_regardless_of_file_order() {
    // Listed least specific first: order in the file never matters.
    let actions = r#"
  - name: catch-all
    methods: [GET]
    path: /users/{*rest}
    public: true
  - name: one-user
    methods: [GET]
    path: /users/{id}
    require: { scopes: [users:read] }
  - name: me
    methods: [GET]
    path: /users/me
    require: { scopes: [profile] }
  - name: me-internal
    methods: [GET]
    path: /users/me
    host: internal.example.com
    require: { scopes: [internal] }
"#;
    let env = Env::start(actions);
    env.get("/users/me", None)
        .assert_problem_action(401, "no_token", Some("me"));
    env.get("/users/%6De", None)
        .assert_problem_action(401, "no_token", Some("me"));
    env.get("/users/42", None)
        .assert_problem_action(401, "no_token", Some("one-user"));
    env.send("GET", "/users/me", &[("Host", "internal.example.com")], b"")
        .assert_problem_action(401, "no_token", Some("me-internal"));
    env.backend.assert_untouched();
    let resp = env.get("/users/42/avatar", None);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(
        env.backend.single().header("x-writ-action"),
        Some("catch-all")
    );
}

#[test]
fn insufficient_scope_challenge_names_the_missing_scope() {
    let actions = r#"
  - name: both
    methods: [GET]
    path: /both
    require: { scopes: [alpha, beta] }
"#;
    let env = Env::start(actions);
    let resp = env.get("/both", Some(&env.token("alpha")));
    resp.assert_problem(403, "insufficient_scope");
    let www = resp.header("www-authenticate").unwrap_or("");
    let scope_param = www
        .split("scope=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("");
    assert!(
        scope_param.split(' ').any(|s| s == "beta"),
        "challenge scope must name beta, got {www:?}"
    );
    env.backend.assert_untouched();
}

// === key set hygiene ===

#[test]
fn encryption_key_in_jwks_never_verifies_signatures() {
    let keys = support::Keys::new();
    let mut enc = keys.rogue_jwk(ROGUE_KID);
    enc["use"] = json!("enc");
    enc.as_object_mut().unwrap().remove("alg");
    keys.write_jwks(&[keys.jwk(), enc]);
    let backend = support::Backend::start();
    let writ = support::Writ::start(&Config::new(ACTIONS).render(), &backend.url(), &keys);
    let token = keys
        .token()
        .signed_by_rogue()
        .kid(ROGUE_KID)
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let resp = writ.get(ORDERS, Some(&token));
    assert_eq!(resp.status, 401, "{}", resp.describe());
    resp.assert_invalid_token(resp.json()["reason"].as_str().unwrap_or("?"));
    backend.assert_untouched();
    // The signing key in the same set still works.
    let ok = keys
        .token()
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    assert_eq!(writ.get(ORDERS, Some(&ok)).status, 200);
}

#[test]
fn audit_mode_never_forwards_requests_it_cannot_normalize() {
    // Audit lets policy denials through; it cannot make an unnormalizable target, an override
    // header, a refused method or duplicate credentials safe to forward.
    let cfg = Config::new(ACTIONS).set("defaults", "{ mode: audit }");
    let env = Env::with_config(&cfg);
    for target in [
        "/docs/%00",
        "/docs/..%5Cadmin",
        "/../healthz",
        "/docs/a%2Fb",
        "/docs/a;b",
    ] {
        let resp = env.get(target, None);
        assert_eq!(resp.status, 400, "{target}: {}", resp.describe());
        resp.assert_problem(400, "bad_request");
    }
    env.send(
        "POST",
        "/docs/x",
        &[("X-HTTP-Method-Override", "DELETE")],
        b"",
    )
    .assert_problem(400, "method_override");
    env.send("GET", "/docs/x", &[("X-Original-URL", "/ops/x")], b"")
        .assert_problem(400, "url_override");
    env.send("TRACE", "/docs/x", &[], b"")
        .assert_problem(405, "method_not_allowed");
    env.send(
        "GET",
        "/docs/x",
        &[("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
        b"",
    )
    .assert_problem(400, "bad_request");
    env.backend.assert_untouched();
}

#[test]
fn problem_responses_are_framed_with_content_length() {
    let env = env();
    let resp = env.get(ORDERS, None);
    assert_eq!(resp.status, 401, "{}", resp.describe());
    let len = resp
        .header("content-length")
        .unwrap_or_else(|| panic!("no content-length: {}", resp.describe()));
    assert_eq!(len.parse::<usize>().unwrap(), resp.body.len());
    assert!(
        resp.header("transfer-encoding").is_none(),
        "{}",
        resp.describe()
    );
}
