//! `writ explain` (SPEC: Command line): the normalized path, the matched action and its
//! rule, each check with pass/fail, the decision with its reason; exit 0 allow, 1 deny,
//! 2 usage/config error. `--claims` takes a JSON/YAML claims object as verified (signature
//! skipped, everything else checked); `--token` is verified with the config's keys.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::*;

fn explain(config: &Path, method: &str, path: &str, args: &[&str]) -> Out {
    run(writ()
        .arg("explain")
        .arg("--config")
        .arg(config)
        .args(["--method", method, "--path", path])
        .args(args))
}

/// Writes a claims object as JSON and returns its path.
fn claims_json(dir: &Path, name: &str, claims: &Value) -> PathBuf {
    write(dir, name, &serde_json::to_string(claims).unwrap())
}

/// Claims a job-runner token for tenant `acme` with `scope` would carry (exp in 2100).
fn acme_claims(scope: &str) -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "tenant": "acme",
        "scope": scope, "iat": now() - 60, "exp": 4_102_444_800_i64,
    })
}

/// A world and a read token for tenant acme minted by `writ token`.
fn world_and_read_token() -> (World, String) {
    let w = World::new();
    let t = mint(
        &w.key_pem,
        &[
            "--iss",
            ISS,
            "--aud",
            AUD,
            "--sub",
            "alice",
            "--scope",
            "jobs:read",
            "--claim",
            "tenant=acme",
            "--ttl",
            "10m",
        ],
    );
    (w, t)
}

#[track_caller]
fn assert_json_decision(v: &Value, decision: &str, reason: &str) {
    assert_eq!(json_decision(v), decision, "{v:#}");
    assert_eq!(json_reason(v), reason, "{v:#}");
}

// ------------------------------------------------------------------------------------------
// text output
// ------------------------------------------------------------------------------------------

#[test]
fn explain_text_allow_shows_normalized_path_action_rule_checks_and_decision() {
    let (w, t) = world_and_read_token();
    let out = explain(
        &w.config,
        "GET",
        "/tenants/acme//jobs/7",
        &["--token", t.as_str()],
    );
    out.expect_code(0);
    let s = out.stdout.to_lowercase();
    assert!(
        out.stdout.contains("/tenants/acme/jobs/7"),
        "normalized path shown\n{}",
        out.dump()
    );
    assert!(out.stdout.contains("read-job"), "action\n{}", out.dump());
    assert!(
        out.stdout.contains("/tenants/{tenant}/jobs/{job}"),
        "the action's rule (template) is shown\n{}",
        out.dump()
    );
    assert!(s.contains("pass"), "checks with pass\n{}", out.dump());
    assert!(!s.contains("fail"), "no failing check\n{}", out.dump());
    assert!(s.contains("allow"), "decision\n{}", out.dump());
    assert!(s.contains("allowed"), "reason\n{}", out.dump());
}

#[test]
fn explain_text_deny_marks_the_failing_check_and_names_the_reason() {
    let (w, t) = world_and_read_token();
    let out = explain(
        &w.config,
        "POST",
        "/tenants/acme/jobs/7/run",
        &["--token", t.as_str()],
    );
    out.expect_code(1);
    let s = out.stdout.to_lowercase();
    assert!(out.stdout.contains("run-job"), "{}", out.dump());
    assert!(s.contains("pass"), "earlier checks pass\n{}", out.dump());
    assert!(s.contains("fail"), "the scope check fails\n{}", out.dump());
    assert!(s.contains("deny"), "{}", out.dump());
    assert!(s.contains("insufficient_scope"), "{}", out.dump());
}

#[test]
fn explain_text_shows_the_normalized_form_of_a_dot_segment_path() {
    let (w, t) = world_and_read_token();
    let out = explain(
        &w.config,
        "GET",
        "/tenants/acme/x/../jobs/./7",
        &["--token", t.as_str()],
    );
    out.expect_code(0);
    assert!(
        out.stdout.contains("/tenants/acme/jobs/7"),
        "normalized path (which is not the input) is shown\n{}",
        out.dump()
    );
}

// ------------------------------------------------------------------------------------------
// JSON output
// ------------------------------------------------------------------------------------------

#[test]
fn explain_json_allow_has_normalized_path_action_checks_decision_and_reason() {
    let (w, t) = world_and_read_token();
    let (out, v) = explain_json(&w.config, "GET", "/tenants/acme/jobs/7", &["--token", &t]);
    out.expect_code(0);
    assert_eq!(
        json_normalized(&v).as_deref(),
        Some("/tenants/acme/jobs/7"),
        "{v:#}"
    );
    assert_eq!(json_action(&v).as_deref(), Some("read-job"), "{v:#}");
    let checks = json_checks(&v);
    assert!(!checks.is_empty(), "{v:#}");
    assert!(
        checks.iter().all(check_passed),
        "all checks pass on allow: {v:#}"
    );
    assert_json_decision(&v, "allow", "allowed");
}

#[test]
fn explain_json_deny_has_a_failing_check_and_the_first_failure_as_reason() {
    let (w, t) = world_and_read_token();
    let (out, v) = explain_json(
        &w.config,
        "POST",
        "/tenants/acme/jobs/7/run",
        &["--token", &t],
    );
    out.expect_code(1);
    assert_eq!(json_action(&v).as_deref(), Some("run-job"), "{v:#}");
    let checks = json_checks(&v);
    assert!(checks.iter().any(check_passed), "some checks pass: {v:#}");
    let failing: Vec<&Value> = checks.iter().filter(|c| !check_passed(c)).collect();
    assert!(!failing.is_empty(), "a check fails: {v:#}");
    assert!(
        failing[0].to_string().contains("insufficient_scope")
            || failing[0].to_string().contains("scope"),
        "the failing check is the scope check: {v:#}"
    );
    assert_json_decision(&v, "deny", "insufficient_scope");
}

#[test]
fn explain_json_dot_segment_path_is_classified_where_it_lands() {
    let (w, t) = world_and_read_token();
    let (out, v) = explain_json(
        &w.config,
        "POST",
        "/tenants/acme/jobs/7/x/../run",
        &["--token", &t],
    );
    out.expect_code(1);
    assert_eq!(
        json_normalized(&v).as_deref(),
        Some("/tenants/acme/jobs/7/run"),
        "{v:#}"
    );
    assert_eq!(json_action(&v).as_deref(), Some("run-job"), "{v:#}");
    assert_json_decision(&v, "deny", "insufficient_scope");
}

#[test]
fn explain_json_percent_encoded_unreserved_characters_are_decoded() {
    let dir = tempdir();
    let cfg = write(dir.path(), "c.yaml", &public_host_config());
    let (out, v) = explain_json(&cfg, "GET", "/%72eports/%7E42", &[]);
    out.expect_code(0);
    assert_eq!(
        json_normalized(&v).as_deref(),
        Some("/reports/~42"),
        "{v:#}"
    );
    assert_eq!(json_action(&v).as_deref(), Some("report"), "{v:#}");
}

#[test]
fn explain_path_climbing_above_root_is_bad_request() {
    let (w, t) = world_and_read_token();
    let (out, v) = explain_json(&w.config, "GET", "/tenants/../../etc", &["--token", &t]);
    out.expect_code(1);
    assert_json_decision(&v, "deny", "bad_request");
    assert_eq!(json_action(&v), None, "{v:#}");
}

#[test]
fn explain_without_token_on_protected_action_is_no_token() {
    let w = World::new();
    let (out, v) = explain_json(&w.config, "GET", "/tenants/acme/jobs/7", &[]);
    out.expect_code(1);
    assert_json_decision(&v, "deny", "no_token");
}

#[test]
fn explain_unmatched_path_is_no_matching_action() {
    let w = World::new();
    let (out, v) = explain_json(&w.config, "GET", "/admin", &[]);
    out.expect_code(1);
    assert_json_decision(&v, "deny", "no_matching_action");
    assert_eq!(json_action(&v), None, "{v:#}");
}

#[test]
fn explain_public_action_allows_without_token() {
    let w = World::new();
    let (out, v) = explain_json(&w.config, "GET", "/healthz", &[]);
    out.expect_code(0);
    assert_json_decision(&v, "allow", "public");
    assert_eq!(json_action(&v).as_deref(), Some("health"), "{v:#}");
}

#[test]
fn explain_method_no_action_names_is_method_not_allowed() {
    let w = World::new();
    let (out, v) = explain_json(&w.config, "PUT", "/tenants/acme/jobs/7", &[]);
    out.expect_code(1);
    assert_json_decision(&v, "deny", "method_not_allowed");
}

// ------------------------------------------------------------------------------------------
// usage and config errors: exit 2
// ------------------------------------------------------------------------------------------

#[test]
fn explain_invalid_config_exits_2_with_file_line_col() {
    let p = fixture("bad/unknown-top-level-key.yaml");
    let out = explain(&p, "GET", "/x", &[]);
    out.expect_code(2);
    assert!(
        out.stderr.contains(&format!("{}:4:1:", p.display())),
        "the config error is shown as FILE:LINE:COL\n{}",
        out.dump()
    );
}

#[test]
fn explain_missing_config_file_exits_2() {
    let dir = tempdir();
    let out = explain(&dir.path().join("missing.yaml"), "GET", "/x", &[]);
    out.expect_code(2);
}

#[test]
fn explain_without_method_exits_2() {
    let w = World::new();
    let out = run(writ()
        .arg("explain")
        .arg("--config")
        .arg(&w.config)
        .args(["--path", "/healthz"]));
    out.expect_code(2);
    assert!(out.stdout.trim().is_empty(), "{}", out.dump());
}

#[test]
fn explain_without_path_exits_2() {
    let w = World::new();
    let out = run(writ()
        .arg("explain")
        .arg("--config")
        .arg(&w.config)
        .args(["--method", "GET"]));
    out.expect_code(2);
}

#[test]
fn explain_with_unparsable_now_exits_2() {
    let w = World::new();
    let out = explain(&w.config, "GET", "/healthz", &["--now", "yesterday"]);
    out.expect_code(2);
}

#[test]
fn explain_with_missing_claims_file_exits_2() {
    let w = World::new();
    let missing = w.path().join("nope.json");
    let out = explain(
        &w.config,
        "GET",
        "/healthz",
        &["--claims", missing.to_str().unwrap()],
    );
    out.expect_code(2);
}

#[test]
fn explain_with_claims_that_are_not_an_object_exits_2() {
    let w = World::new();
    let p = write(w.path(), "claims.json", "[1, 2, 3]");
    let out = explain(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--claims", p.to_str().unwrap()],
    );
    out.expect_code(2);
}

#[test]
fn explain_with_malformed_header_argument_exits_2() {
    let w = World::new();
    let out = explain(&w.config, "GET", "/healthz", &["--header", "no colon here"]);
    out.expect_code(2);
}

#[test]
fn explain_uses_writ_config_env_as_default_for_config() {
    let w = World::new();
    let out = run(writ()
        .env("WRIT_CONFIG", &w.config)
        .args(["explain", "--method", "GET", "--path", "/healthz", "--json"]));
    out.expect_code(0);
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(json_action(&v).as_deref(), Some("health"), "{v:#}");
}

// ------------------------------------------------------------------------------------------
// --claims
// ------------------------------------------------------------------------------------------

#[test]
fn explain_claims_json_file_is_taken_as_verified() {
    let w = World::new();
    let p = claims_json(w.path(), "c.json", &acme_claims("jobs:read"));
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--claims", p.to_str().unwrap()],
    );
    out.expect_code(0);
    assert_json_decision(&v, "allow", "allowed");
}

#[test]
fn explain_claims_yaml_file_is_taken_as_verified() {
    let w = World::new();
    let p = write(
        w.path(),
        "c.yaml",
        &format!(
            "iss: {ISS}\naud: [{AUD}, other]\nsub: alice\ntenant: acme\nscope: jobs:execute jobs:read\nexp: 4102444800\n"
        ),
    );
    let (out, v) = explain_json(
        &w.config,
        "POST",
        "/tenants/acme/jobs/7/run",
        &["--claims", p.to_str().unwrap()],
    );
    out.expect_code(0);
    assert_json_decision(&v, "allow", "allowed");
    assert_eq!(json_action(&v).as_deref(), Some("run-job"), "{v:#}");
}

#[test]
fn explain_claims_yaml_file_with_other_tenant_is_claim_mismatch() {
    let w = World::new();
    let p = write(
        w.path(),
        "c.yml",
        &format!(
            "iss: {ISS}\naud: {AUD}\nsub: alice\ntenant: globex\nscope: jobs:read\nexp: 4102444800\n"
        ),
    );
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--claims", p.to_str().unwrap()],
    );
    out.expect_code(1);
    assert_json_decision(&v, "deny", "claim_mismatch");
}

#[test]
fn explain_claims_still_check_the_issuer() {
    let w = World::new();
    let mut c = acme_claims("jobs:read");
    c["iss"] = json!("https://evil.example/");
    let p = claims_json(w.path(), "c.json", &c);
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--claims", p.to_str().unwrap()],
    );
    out.expect_code(1);
    assert_json_decision(&v, "deny", "wrong_issuer");
}

#[test]
fn explain_claims_still_check_the_audience() {
    let w = World::new();
    let mut c = acme_claims("jobs:read");
    c["aud"] = json!(["billing-api"]);
    let p = claims_json(w.path(), "c.json", &c);
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--claims", p.to_str().unwrap()],
    );
    out.expect_code(1);
    assert_json_decision(&v, "deny", "wrong_audience");
}

#[test]
fn explain_claims_still_check_expiry() {
    let w = World::new();
    let mut c = acme_claims("jobs:read");
    c["exp"] = json!(now() - 3600);
    let p = claims_json(w.path(), "c.json", &c);
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--claims", p.to_str().unwrap()],
    );
    out.expect_code(1);
    assert_json_decision(&v, "deny", "token_expired");
}

#[test]
fn explain_claims_still_require_exp() {
    let w = World::new();
    let mut c = acme_claims("jobs:read");
    c.as_object_mut().unwrap().remove("exp");
    let p = claims_json(w.path(), "c.json", &c);
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--claims", p.to_str().unwrap()],
    );
    out.expect_code(1);
    assert_json_decision(&v, "deny", "malformed_token");
}

#[test]
fn explain_claims_skip_header_checks_such_as_require_typ() {
    // demo.yaml has `require_typ: at+jwt`; claims have no header, so that check is skipped.
    let dir = tempdir();
    let p = claims_json(
        dir.path(),
        "c.json",
        &json!({
            "iss": "https://login.example.com/", "aud": "orders-api", "sub": "alice",
            "tenant": "acme", "scope": "jobs:read", "exp": 4_102_444_800_i64,
        }),
    );
    let (out, v) = explain_json(
        &repo_path("config/demo/demo.yaml"),
        "GET",
        "/tenants/acme/jobs/7",
        &["--claims", p.to_str().unwrap()],
    );
    out.expect_code(0);
    assert_json_decision(&v, "allow", "allowed");
}

#[test]
fn explain_claims_with_now_make_a_fixed_exp_valid_then_expired() {
    let w = World::new();
    let mut c = acme_claims("jobs:read");
    c["iat"] = json!(1_893_000_000_i64); // 2029-12-26
    c["exp"] = json!(1_900_000_000_i64); // 2030-03-17
    let p = claims_json(w.path(), "c.json", &c);
    let p = p.to_str().unwrap();
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--claims", p, "--now", "2030-01-01T00:00:00Z"],
    );
    out.expect_code(0);
    assert_json_decision(&v, "allow", "allowed");
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--claims", p, "--now", "2031-01-01T00:00:00Z"],
    );
    out.expect_code(1);
    assert_json_decision(&v, "deny", "token_expired");
}

// ------------------------------------------------------------------------------------------
// --token and --now
// ------------------------------------------------------------------------------------------

#[test]
fn explain_token_minted_by_writ_token_verifies_against_the_config_jwks() {
    let (w, t) = world_and_read_token();
    let (out, v) = explain_json(&w.config, "GET", "/tenants/acme/jobs/7", &["--token", &t]);
    out.expect_code(0);
    assert_json_decision(&v, "allow", "allowed");
}

#[test]
fn explain_tampered_token_is_bad_signature() {
    let (w, t) = world_and_read_token();
    let (h, _, s) = jwt_parts(&t);
    let mut claims = jwt_claims(&t);
    claims["tenant"] = json!("globex");
    let forged = format!(
        "{h}.{}.{s}",
        b64url(serde_json::to_string(&claims).unwrap().as_bytes())
    );
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/globex/jobs/7",
        &["--token", &forged],
    );
    out.expect_code(1);
    assert_json_decision(&v, "deny", "bad_signature");
}

#[test]
fn explain_token_signed_by_another_key_with_the_trusted_kid_is_bad_signature() {
    let w = World::new();
    let rogue = EcKey::generate();
    let rogue_pem = rogue.write_pem(w.path(), "rogue.pem");
    // `--kid=` form: a base64url thumbprint may start with `-` (1 run in 64).
    let kid = format!("--kid={}", w.key.thumbprint());
    let t = mint(
        &rogue_pem,
        &[
            &kid,
            "--iss",
            ISS,
            "--aud",
            AUD,
            "--sub",
            "mallory",
            "--scope",
            "jobs:read",
            "--claim",
            "tenant=acme",
        ],
    );
    let (out, v) = explain_json(&w.config, "GET", "/tenants/acme/jobs/7", &["--token", &t]);
    out.expect_code(1);
    assert_json_decision(&v, "deny", "bad_signature");
}

#[test]
fn explain_token_from_a_key_not_in_the_jwks_is_unknown_key() {
    let w = World::new();
    let rogue = EcKey::generate();
    let rogue_pem = rogue.write_pem(w.path(), "rogue.pem");
    let t = mint(
        &rogue_pem,
        &[
            "--iss",
            ISS,
            "--aud",
            AUD,
            "--sub",
            "mallory",
            "--scope",
            "jobs:read",
            "--claim",
            "tenant=acme",
        ],
    );
    let (out, v) = explain_json(&w.config, "GET", "/tenants/acme/jobs/7", &["--token", &t]);
    out.expect_code(1);
    assert_json_decision(&v, "deny", "unknown_key");
}

#[test]
fn explain_now_after_expiry_makes_a_valid_token_expired() {
    let (w, t) = world_and_read_token(); // ttl 10m
    let later = rfc3339(now() + 3600);
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--token", &t, "--now", &later],
    );
    out.expect_code(1);
    assert_json_decision(&v, "deny", "token_expired");
    // The signature itself was fine: the failing check is a time check, after passing ones.
    assert!(json_checks(&v).iter().any(check_passed), "{v:#}");
}

#[test]
fn explain_now_within_the_lifetime_allows() {
    let (w, t) = world_and_read_token(); // ttl 10m
    let soon = rfc3339(now() + 5 * 60);
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--token", &t, "--now", &soon],
    );
    out.expect_code(0);
    assert_json_decision(&v, "allow", "allowed");
}

#[test]
fn explain_now_long_before_iat_makes_the_token_malformed() {
    // SPEC settled: an `iat` more than `leeway` in the future is malformed_token.
    let (w, t) = world_and_read_token();
    let earlier = rfc3339(now() - 3600);
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--token", &t, "--now", &earlier],
    );
    out.expect_code(1);
    assert_json_decision(&v, "deny", "malformed_token");
}

#[test]
fn explain_delegated_token_chain_from_writ_token_is_checked_for_depth() {
    // token_config allows delegation up to depth 3.
    let w = World::new();
    let base = [
        "--iss",
        ISS,
        "--aud",
        AUD,
        "--sub",
        "alice",
        "--scope",
        "jobs:read",
        "--claim",
        "tenant=acme",
    ];
    let mut three = base.to_vec();
    three.extend(["--act", "agent:a", "--act", "agent:b", "--act", "agent:c"]);
    let t = mint(&w.key_pem, &three);
    let (out, v) = explain_json(&w.config, "GET", "/tenants/acme/jobs/7", &["--token", &t]);
    out.expect_code(0);
    assert_json_decision(&v, "allow", "allowed");

    let mut four = three.clone();
    four.extend(["--act", "agent:d"]);
    let t = mint(&w.key_pem, &four);
    let (out, v) = explain_json(&w.config, "GET", "/tenants/acme/jobs/7", &["--token", &t]);
    out.expect_code(1);
    assert_json_decision(&v, "deny", "delegation_too_deep");
}

// ------------------------------------------------------------------------------------------
// --header and --host
// ------------------------------------------------------------------------------------------

#[test]
fn explain_method_override_header_is_refused() {
    let (w, t) = world_and_read_token();
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--token", &t, "--header", "X-HTTP-Method-Override: DELETE"],
    );
    out.expect_code(1);
    assert_json_decision(&v, "deny", "method_override");
}

#[test]
fn explain_url_override_header_is_refused() {
    let w = World::new();
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/healthz",
        &["--header", "X-Original-URL: /tenants/acme/jobs/7/run"],
    );
    out.expect_code(1);
    assert_json_decision(&v, "deny", "url_override");
}

#[test]
fn explain_unrelated_header_does_not_change_the_decision() {
    let w = World::new();
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/healthz",
        &["--header", "X-Request-Id: abc", "--header", "Accept: */*"],
    );
    out.expect_code(0);
    assert_json_decision(&v, "allow", "public");
}

/// Public actions only, so no token is needed: one generic, one bound to a host.
fn public_host_config() -> String {
    r#"listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:3000
actions:
  - name: report
    methods: [GET]
    path: /reports/{id}
    public: true
  - name: admin-report
    methods: [GET]
    path: /reports/{id}
    host: admin.example.com
    public: true
"#
    .to_string()
}

#[test]
fn explain_host_selects_the_host_specific_action() {
    let dir = tempdir();
    let cfg = write(dir.path(), "c.yaml", &public_host_config());
    for host in [
        "admin.example.com",
        "ADMIN.Example.com",
        "admin.example.com.",
        "admin.example.com:8443",
    ] {
        let (out, v) = explain_json(&cfg, "GET", "/reports/1", &["--host", host]);
        out.expect_code(0);
        assert_eq!(
            json_action(&v).as_deref(),
            Some("admin-report"),
            "host {host}: {v:#}"
        );
    }
}

#[test]
fn explain_without_or_with_other_host_selects_the_generic_action() {
    let dir = tempdir();
    let cfg = write(dir.path(), "c.yaml", &public_host_config());
    let (out, v) = explain_json(&cfg, "GET", "/reports/1", &[]);
    out.expect_code(0);
    assert_eq!(json_action(&v).as_deref(), Some("report"), "{v:#}");
    let (out, v) = explain_json(&cfg, "GET", "/reports/1", &["--host", "www.example.com"]);
    out.expect_code(0);
    assert_eq!(json_action(&v).as_deref(), Some("report"), "{v:#}");
}

#[test]
fn explain_host_bound_action_is_not_reachable_from_another_host() {
    let p = repo_path("config/examples/legacy-admin-gateway.yaml");
    let (out, v) = explain_json(&p, "GET", "/admin/users/42", &["--host", "other.example"]);
    out.expect_code(1);
    assert_json_decision(&v, "deny", "no_matching_action");
    let (out, v) = explain_json(
        &p,
        "GET",
        "/admin/users/42",
        &["--host", "admin.corp.example"],
    );
    out.expect_code(1);
    assert_eq!(json_action(&v).as_deref(), Some("view-users"), "{v:#}");
    assert_json_decision(&v, "deny", "no_token");
}

#[test]
fn explain_token_and_claims_together_is_a_usage_error() {
    let (w, t) = world_and_read_token();
    let p = claims_json(w.path(), "c.json", &acme_claims("jobs:read"));
    let out = explain(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--token", &t, "--claims", p.to_str().unwrap()],
    );
    out.expect_code(2);
}

/// `--front-door` decides as ext_authz and forward-auth do: a target that
/// normalization would change is denied, and the trace names the step.
#[test]
fn explain_front_door_denies_a_target_normalization_would_change() {
    let dir = tempdir();
    let cfg = write(dir.path(), "c.yaml", &public_host_config());
    let (out, v) = explain_json(&cfg, "GET", "/%72eports/%7E42", &["--front-door"]);
    out.expect_code(1);
    assert_json_decision(&v, "deny", "bad_request");
    let out = explain(&cfg, "GET", "/%72eports/%7E42", &["--front-door"]);
    out.expect_code(1);
    assert!(
        out.stdout.contains("front door: target as sent"),
        "{}",
        out.dump()
    );
    let (out, v) = explain_json(&cfg, "GET", "/reports/~42", &["--front-door"]);
    out.expect_code(0);
    assert_eq!(json_action(&v).as_deref(), Some("report"), "{v:#}");
}
