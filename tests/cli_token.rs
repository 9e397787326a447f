//! `writ token` (SPEC: Command line, Settled questions / `writ token`): mints a signed test
//! token from a PKCS#8 or SEC1 PEM key (or `--hmac-secret-env VAR`), with `typ: at+jwt` and
//! `kid` = `--kid` or the RFC 7638 thumbprint of the public key. Repeated `--act` builds a
//! nested chain, first = current actor.
//!
//! Signatures are never taken on trust: every minted token is verified end to end with
//! `writ explain --token` against a config whose key source holds the public key (generated
//! here, with the `kid` computed here).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::*;

/// Standard claims for a read token of tenant acme against [`token_config`].
const READ: [&str; 10] = [
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

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = base.to_vec();
    v.extend_from_slice(extra);
    v
}

/// `writ explain --json` of GET /tenants/acme/jobs/7 with `token` against `config`.
fn verify(config: &Path, token: &str) -> (Out, Value) {
    explain_json(config, "GET", "/tenants/acme/jobs/7", &["--token", token])
}

#[track_caller]
fn assert_verifies(config: &Path, token: &str) {
    let (out, v) = verify(config, token);
    assert_eq!(
        (json_decision(&v).as_str(), json_reason(&v).as_str()),
        ("allow", "allowed"),
        "token must verify end to end: {v:#}\n{}",
        out.dump()
    );
    out.expect_code(0);
}

#[track_caller]
fn assert_rejected(config: &Path, token: &str, reason: &str) {
    let (out, v) = verify(config, token);
    out.expect_code(1);
    assert_eq!(json_reason(&v), reason, "{v:#}");
}

// ------------------------------------------------------------------------------------------
// header
// ------------------------------------------------------------------------------------------

#[test]
fn token_from_pkcs8_p256_key_is_es256_with_at_jwt_typ() {
    let w = World::new();
    let t = mint(&w.key_pem, &READ);
    let h = jwt_header(&t);
    assert_eq!(h["alg"], "ES256", "{h}");
    assert_eq!(h["typ"], "at+jwt", "{h}");
}

#[test]
fn token_default_kid_is_the_rfc7638_thumbprint_of_the_public_key() {
    let w = World::new();
    let t = mint(&w.key_pem, &READ);
    assert_eq!(
        jwt_header(&t)["kid"],
        json!(w.key.thumbprint()),
        "kid must be base64url(SHA-256({{\"crv\",\"kty\",\"x\",\"y\"}}))"
    );
}

#[test]
fn token_default_kid_for_the_demo_key_matches_the_demo_jwks() {
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_path("config/demo/jwks.json")).unwrap())
            .unwrap();
    let k = &jwks["keys"][0];
    let expected = ec_thumbprint(k["x"].as_str().unwrap(), k["y"].as_str().unwrap());
    let t = mint(&repo_path("config/demo/demo-key.pem"), &["--sub", "x"]);
    assert_eq!(jwt_header(&t)["kid"], json!(expected));
}

#[test]
fn token_kid_flag_overrides_the_thumbprint() {
    let w = World::with_kid(Some("my-key-1"));
    let t = mint(&w.key_pem, &with(&READ, &["--kid", "my-key-1"]));
    let h = jwt_header(&t);
    assert_eq!(h["kid"], "my-key-1", "{h}");
    assert_eq!(h["alg"], "ES256", "{h}");
    // The JWKS holds the key only under `my-key-1`: the override is what makes it verify.
    assert_verifies(&w.config, &t);
}

#[test]
fn token_without_kid_flag_does_not_match_a_jwks_entry_under_another_kid() {
    let w = World::with_kid(Some("my-key-1"));
    let t = mint(&w.key_pem, &READ);
    assert_rejected(&w.config, &t, "unknown_key");
}

// ------------------------------------------------------------------------------------------
// end-to-end signature
// ------------------------------------------------------------------------------------------

#[test]
fn token_verifies_end_to_end_against_a_jwks_file_with_the_public_key() {
    let w = World::new();
    let t = mint(&w.key_pem, &READ);
    assert_verifies(&w.config, &t);
}

#[test]
fn token_with_a_flipped_signature_byte_is_bad_signature() {
    let w = World::new();
    let t = mint(&w.key_pem, &READ);
    let (h, p, s) = jwt_parts(&t);
    let mut sig = b64url_decode(&s);
    assert_eq!(sig.len(), 64, "ES256 signatures are r||s, 64 bytes");
    sig[10] ^= 0x01;
    let forged = format!("{h}.{p}.{}", b64url(&sig));
    assert_rejected(&w.config, &forged, "bad_signature");
}

#[test]
fn token_signed_by_another_key_does_not_verify() {
    let w = World::new();
    let other = EcKey::generate();
    let other_pem = other.write_pem(w.path(), "other.pem");
    // Same kid as the trusted key, wrong private key.
    // `--kid=` form: a base64url thumbprint may start with `-`.
    let kid = format!("--kid={}", w.key.thumbprint());
    let t = mint(&other_pem, &with(&READ, &[kid.as_str()]));
    assert_rejected(&w.config, &t, "bad_signature");
}

#[test]
fn token_verifies_against_a_public_key_pem_issuer() {
    // Same key, published as an SPKI PEM (`public_key_pem`) instead of a JWKS. The token
    // carries writ's default `kid`, which a single-key source has no reason to refuse.
    let w = World::new();
    let mut spki = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    spki.push(0x04);
    spki.extend(b64url_decode(&w.key.x));
    spki.extend(b64url_decode(&w.key.y));
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64_std(&spki)
    );
    write(w.path(), "pub.pem", &pem);
    let cfg_text =
        token_config("jwks.json").replace("jwks_file: jwks.json", "public_key_pem: pub.pem");
    let cfg = write(w.path(), "pem.yaml", &cfg_text);
    run(writ().arg("check").arg("--config").arg(&cfg)).expect_code(0);
    let t = mint(&w.key_pem, &READ);
    assert_verifies(&cfg, &t);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

// ------------------------------------------------------------------------------------------
// claims
// ------------------------------------------------------------------------------------------

#[test]
fn token_sets_iss_aud_sub_and_space_delimited_scope() {
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
            "jobs:read jobs:execute",
        ],
    );
    let c = jwt_claims(&t);
    assert_eq!(c["iss"], ISS, "{c}");
    assert_eq!(c["aud"], AUD, "{c}");
    assert_eq!(c["sub"], "alice", "{c}");
    assert_eq!(c["scope"], "jobs:read jobs:execute", "{c}");
}

#[test]
fn token_repeated_act_builds_a_nested_chain_first_is_current_actor() {
    let w = World::new();
    let t = mint(&w.key_pem, &with(&READ, &["--act", "a", "--act", "b"]));
    let c = jwt_claims(&t);
    assert_eq!(c["act"], json!({"sub": "a", "act": {"sub": "b"}}), "{c}");
}

#[test]
fn token_single_act_is_one_level() {
    let w = World::new();
    let t = mint(&w.key_pem, &with(&READ, &["--act", "agent:ci-7"]));
    assert_eq!(jwt_claims(&t)["act"], json!({"sub": "agent:ci-7"}));
}

#[test]
fn token_three_acts_nest_three_levels_in_order() {
    let w = World::new();
    let t = mint(
        &w.key_pem,
        &with(&READ, &["--act", "x", "--act", "y", "--act", "z"]),
    );
    assert_eq!(
        jwt_claims(&t)["act"],
        json!({"sub": "x", "act": {"sub": "y", "act": {"sub": "z"}}})
    );
}

#[test]
fn token_without_act_has_no_act_claim() {
    let w = World::new();
    let t = mint(&w.key_pem, &READ);
    assert!(jwt_claims(&t).get("act").is_none());
}

/// A config whose run-job action accepts only `agent:ci-*` as current actor, chain ≤ 2.
fn actor_config(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:3000
issuers:
  - issuer: {ISS}
    audiences: [{AUD}]
    algorithms: [ES256]
    jwks_file: jwks.json
actions:
  - name: run-job
    methods: [POST]
    path: /tenants/{{tenant}}/jobs/{{job}}/run
    execution: true
    require:
      scopes: [jobs:execute]
    delegation:
      mode: require
      actors: ["agent:ci-*"]
      max_depth: 2
"#
    );
    write(dir, "actors.yaml", &text)
}

#[test]
fn token_act_order_matters_end_to_end_first_act_is_matched_against_actors() {
    let w = World::new();
    let cfg = actor_config(w.path());
    let base = [
        "--iss",
        ISS,
        "--aud",
        AUD,
        "--sub",
        "alice",
        "--scope",
        "jobs:execute",
    ];
    let good = mint(
        &w.key_pem,
        &with(&base, &["--act", "agent:ci-1", "--act", "svc:planner"]),
    );
    let (out, v) = explain_json(
        &cfg,
        "POST",
        "/tenants/acme/jobs/7/run",
        &["--token", &good],
    );
    out.expect_code(0);
    assert_eq!(json_reason(&v), "allowed", "{v:#}");

    let reversed = mint(
        &w.key_pem,
        &with(&base, &["--act", "svc:planner", "--act", "agent:ci-1"]),
    );
    let (out, v) = explain_json(
        &cfg,
        "POST",
        "/tenants/acme/jobs/7/run",
        &["--token", &reversed],
    );
    out.expect_code(1);
    assert_eq!(json_reason(&v), "actor_not_allowed", "{v:#}");
}

#[test]
fn token_claim_flag_sets_string_and_json_number_values() {
    let w = World::new();
    let t = mint(
        &w.key_pem,
        &["--sub", "alice", "--claim", "tenant=acme", "--claim", "n=5"],
    );
    let c = jwt_claims(&t);
    assert_eq!(c["tenant"], json!("acme"), "{c}");
    assert_eq!(c["n"], json!(5), "n is a JSON number, not a string: {c}");
    assert!(c["n"].is_number(), "{c}");
}

#[test]
fn token_claim_flag_value_drives_claim_binding_end_to_end() {
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
            "tenant=globex",
        ],
    );
    assert_rejected(&w.config, &t, "claim_mismatch");
}

#[test]
fn token_ttl_5m_sets_exp_300_seconds_after_iat() {
    let w = World::new();
    let before = now();
    let t = mint(&w.key_pem, &with(&READ, &["--ttl", "5m"]));
    let after = now();
    let c = jwt_claims(&t);
    let iat = c["iat"].as_i64().expect("iat is a number");
    let exp = c["exp"].as_i64().expect("exp is a number");
    assert_eq!(exp - iat, 300, "{c}");
    assert!(
        (before - 1..=after + 1).contains(&iat),
        "iat is now: {iat} not in {before}..={after}"
    );
}

#[test]
fn token_ttl_2h_sets_exp_7200_seconds_after_iat() {
    let w = World::new();
    let t = mint(&w.key_pem, &with(&READ, &["--ttl", "2h"]));
    let c = jwt_claims(&t);
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        7200,
        "{c}"
    );
}

#[test]
fn token_ttl_is_enforced_end_to_end() {
    let w = World::new();
    let t = mint(&w.key_pem, &with(&READ, &["--ttl", "5m"]));
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--token", &t, "--now", &rfc3339(now() + 4 * 60)],
    );
    out.expect_code(0);
    assert_eq!(json_reason(&v), "allowed", "{v:#}");
    let (out, v) = explain_json(
        &w.config,
        "GET",
        "/tenants/acme/jobs/7",
        &["--token", &t, "--now", &rfc3339(now() + 10 * 60)],
    );
    out.expect_code(1);
    assert_eq!(json_reason(&v), "token_expired", "{v:#}");
}

#[test]
fn token_with_unparsable_ttl_fails_without_printing_a_token() {
    let w = World::new();
    let out = run(writ()
        .arg("token")
        .arg("--key")
        .arg(&w.key_pem)
        .args(["--ttl", "5 minutes"]));
    assert_ne!(out.code, Some(0), "{}", out.dump());
    assert!(out.stdout.trim().is_empty(), "{}", out.dump());
}

// ------------------------------------------------------------------------------------------
// key formats
// ------------------------------------------------------------------------------------------

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

use std::process::Command;

#[test]
fn token_from_sec1_ec_private_key_works_and_has_the_same_kid() {
    if !openssl_available() {
        eprintln!("NOTE: openssl is not on PATH; skipping the SEC1 key test");
        return;
    }
    let w = World::new();
    let sec1 = w.path().join("sec1.pem");
    let o = Command::new("openssl")
        .arg("ec")
        .arg("-in")
        .arg(&w.key_pem)
        .arg("-out")
        .arg(&sec1)
        .output()
        .expect("run openssl");
    assert!(
        o.status.success(),
        "openssl ec failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&sec1).unwrap();
    assert!(
        text.contains("-----BEGIN EC PRIVATE KEY-----"),
        "openssl wrote SEC1: {text}"
    );
    let t = mint(&sec1, &READ);
    let h = jwt_header(&t);
    assert_eq!(h["alg"], "ES256", "{h}");
    assert_eq!(h["typ"], "at+jwt", "{h}");
    assert_eq!(h["kid"], json!(w.key.thumbprint()), "same key, same kid");
    assert_verifies(&w.config, &t);
}

#[test]
fn token_with_missing_key_file_fails() {
    let dir = tempdir();
    let out = run(writ()
        .arg("token")
        .arg("--key")
        .arg(dir.path().join("nope.pem")));
    assert_ne!(out.code, Some(0), "{}", out.dump());
    assert!(out.stdout.trim().is_empty(), "{}", out.dump());
}

#[test]
fn token_with_a_file_that_is_not_a_private_key_fails() {
    let dir = tempdir();
    let p = write(
        dir.path(),
        "k.pem",
        "-----BEGIN NOTHING-----\nAAAA\n-----END NOTHING-----\n",
    );
    let out = run(writ().arg("token").arg("--key").arg(&p));
    assert_ne!(out.code, Some(0), "{}", out.dump());
    assert!(out.stdout.trim().is_empty(), "{}", out.dump());
}

// ------------------------------------------------------------------------------------------
// HMAC
// ------------------------------------------------------------------------------------------

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

fn mint_hmac(var: &str, args: &[&str]) -> String {
    let out = run(writ()
        .arg("token")
        .args(["--hmac-secret-env", var])
        .args(args)
        .env(var, SECRET));
    out.expect_code(0);
    let t = out.stdout.trim().to_string();
    jwt_parts(&t);
    t
}

#[test]
fn token_hmac_secret_env_gives_hs256_signed_with_that_secret() {
    let var = "WRIT_CLI_TEST_HMAC_A";
    let t = mint_hmac(var, &["--sub", "alice"]);
    let h = jwt_header(&t);
    assert_eq!(h["alg"], "HS256", "{h}");
    assert_eq!(h["typ"], "at+jwt", "{h}");
    // Verify the MAC independently of writ.
    let (hh, pp, ss) = jwt_parts(&t);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    aws_lc_rs::hmac::verify(&key, format!("{hh}.{pp}").as_bytes(), &b64url_decode(&ss))
        .expect("HS256 MAC over header.payload with the secret from the env var");
}

#[test]
fn token_hmac_verifies_end_to_end_against_an_hmac_secret_env_issuer() {
    let var = "WRIT_CLI_TEST_HMAC_B";
    let dir = tempdir();
    let cfg_text = token_config("jwks.json")
        .replace("algorithms: [ES256]", "algorithms: [HS256]")
        .replace("jwks_file: jwks.json", &format!("hmac_secret_env: {var}"));
    let cfg = write(dir.path(), "hmac.yaml", &cfg_text);
    let t = mint_hmac(var, &READ);
    let out = run(writ()
        .arg("explain")
        .arg("--config")
        .arg(&cfg)
        .args([
            "--method",
            "GET",
            "--path",
            "/tenants/acme/jobs/7",
            "--json",
        ])
        .args(["--token", &t])
        .env(var, SECRET));
    let v: Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", out.dump()));
    assert_eq!(
        (json_decision(&v).as_str(), json_reason(&v).as_str()),
        ("allow", "allowed"),
        "an HS256 token from `writ token --hmac-secret-env` must verify: {v:#}"
    );
    out.expect_code(0);
}

#[test]
fn token_hmac_with_unset_env_var_fails_without_printing_a_token() {
    let out = run(writ()
        .arg("token")
        .args(["--hmac-secret-env", "WRIT_CLI_TEST_SURELY_UNSET_VAR"])
        .env_remove("WRIT_CLI_TEST_SURELY_UNSET_VAR"));
    assert_ne!(out.code, Some(0), "{}", out.dump());
    assert!(out.stdout.trim().is_empty(), "{}", out.dump());
}

#[test]
fn token_requires_a_key_or_an_hmac_secret() {
    let out = writ_run(["token", "--sub", "alice"]);
    assert_ne!(out.code, Some(0), "{}", out.dump());
    assert!(out.stdout.trim().is_empty(), "{}", out.dump());
}
