//! `writ test --config FILE CASES...` (SPEC: Command line, Policy test cases): runs the cases,
//! prints each failure with expected vs actual, ends with the exact line `N passed, N failed`,
//! exits 0 iff all pass. Numeric-date claims may be `now`, `now-5m`, `now+1h`.
//!
//! Fixtures: `tests/fixtures/policy/` (`spec-jobs.yaml` is the SPEC's run-job policy reduced to
//! what the SPEC's two example cases need; `spec-example.cases.yaml` is those cases verbatim).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};

use support::*;

fn policy(name: &str) -> PathBuf {
    fixture(&format!("policy/{name}"))
}

fn spec_config() -> PathBuf {
    policy("spec-jobs.yaml")
}

fn writ_test(config: &Path, cases: &[&Path]) -> Out {
    run(writ()
        .arg("test")
        .arg("--config")
        .arg(config)
        .args(cases.iter().map(|p| p.as_os_str())))
}

/// The last stdout line is exactly `{passed} passed, {failed} failed`.
#[track_caller]
fn assert_summary(out: &Out, passed: usize, failed: usize) {
    assert_eq!(
        out.last_stdout_line(),
        format!("{passed} passed, {failed} failed"),
        "summary line\n{}",
        out.dump()
    );
}

/// The part of the output about the case named `name`: from its first mention up to the
/// next line that names another of `all_names` (or the summary).
fn block<'a>(text: &'a str, name: &str, all_names: &[&str]) -> &'a str {
    let start = text
        .find(name)
        .unwrap_or_else(|| panic!("output does not name case {name:?}:\n{text}"));
    let rest = &text[start + name.len()..];
    let mut end = rest.len();
    for other in all_names.iter().filter(|n| **n != name) {
        if let Some(i) = rest.find(other) {
            end = end.min(i);
        }
    }
    if let Some(i) = rest.find(" passed, ") {
        end = end.min(i);
    }
    &rest[..end]
}

#[test]
fn test_spec_example_cases_pass_against_the_spec_policy() {
    let cases = policy("spec-example.cases.yaml");
    let out = writ_test(&spec_config(), &[&cases]);
    out.expect_code(0);
    assert_summary(&out, 2, 0);
}

#[test]
fn test_spec_policy_is_a_valid_config() {
    let out = run(writ().arg("check").arg("--config").arg(spec_config()));
    out.expect_code(0);
}

#[test]
fn test_every_shipped_example_case_file_passes() {
    let mut ran = 0;
    for cfg in shipped_examples() {
        let cases = cfg.with_extension("cases.yaml");
        if !cases.exists() {
            continue;
        }
        let n = yaml_len(&cases, "cases");
        assert!(n > 0, "{} has cases", cases.display());
        let out = writ_test(&cfg, &[&cases]);
        out.expect_code(0);
        assert_summary(&out, n, 0);
        ran += 1;
    }
    assert!(
        ran >= 3,
        "expected a .cases.yaml beside each shipped example"
    );
}

#[test]
fn test_relative_numeric_dates_are_resolved_against_now() {
    let cases = policy("relative-dates.cases.yaml");
    let n = yaml_len(&cases, "cases");
    let out = writ_test(&spec_config(), &[&cases]);
    out.expect_code(0);
    assert_summary(&out, n, 0);
}

#[test]
fn test_relative_dates_are_not_ignored_wrong_expectations_fail() {
    // The mirror image of relative-dates: if `now-6m` were not resolved (or resolved to the
    // wrong sign) these expectations would pass.
    let dir = tempdir();
    let cases = write(
        dir.path(),
        "flipped.cases.yaml",
        r#"cases:
  - name: six minute old delegation expected to be allowed
    request: { method: POST, path: /tenants/acme/jobs/7/run }
    claims: { iss: https://login.example.com/, aud: orders-api, sub: alice, tenant: acme,
              scope: jobs:execute, iat: now-6m, exp: now+1h, act: { sub: agent:ci-7 } }
    expect: { decision: allow }
  - name: token expired an hour ago expected to be allowed
    request: { method: GET, path: /tenants/acme/jobs/7 }
    claims: { iss: https://login.example.com/, aud: orders-api, sub: alice, tenant: acme,
              scope: jobs:read, exp: now-1h }
    expect: { decision: allow }
  - name: token valid for an hour expected to be expired
    request: { method: GET, path: /tenants/acme/jobs/7 }
    claims: { iss: https://login.example.com/, aud: orders-api, sub: alice, tenant: acme,
              scope: jobs:read, exp: now+1h }
    expect: { decision: deny, reason: token_expired }
"#,
    );
    let out = writ_test(&spec_config(), &[&cases]);
    out.expect_code(1);
    assert_summary(&out, 0, 3);
}

#[test]
fn test_failures_show_expected_and_actual_for_each_field() {
    let cases = policy("mixed.cases.yaml");
    let out = writ_test(&spec_config(), &[&cases]);
    out.expect_code(1);
    assert_summary(&out, 2, 4);
    let text = out.all();
    let names = [
        "public health passes",
        "wrong decision expected",
        "wrong reason expected",
        "wrong status expected",
        "wrong action expected",
        "no token passes",
    ];
    for (name, expected, actual) in [
        ("wrong decision expected", "allow", "deny"),
        (
            "wrong reason expected",
            "insufficient_scope",
            "claim_mismatch",
        ),
        ("wrong status expected", "403", "401"),
        ("wrong action expected", "read-job", "health"),
    ] {
        let b = block(&text, name, &names);
        assert!(
            b.to_lowercase().contains("expected"),
            "failure of {name:?} says what was expected: {b:?}\n{}",
            out.dump()
        );
        assert!(
            b.contains(expected),
            "failure of {name:?} shows expected {expected:?}: {b:?}\n{}",
            out.dump()
        );
        assert!(
            b.contains(actual),
            "failure of {name:?} shows actual {actual:?}: {b:?}\n{}",
            out.dump()
        );
    }
}

#[test]
fn test_exit_status_is_1_when_any_case_fails() {
    let dir = tempdir();
    let cases = write(
        dir.path(),
        "one-bad.cases.yaml",
        r#"cases:
  - name: health is public
    request: { method: GET, path: /healthz }
    expect: { decision: allow }
  - name: health wrongly expected to be denied
    request: { method: GET, path: /healthz }
    expect: { decision: deny }
"#,
    );
    let out = writ_test(&spec_config(), &[&cases]);
    out.expect_code(1);
    assert_summary(&out, 1, 1);
}

#[test]
fn test_exit_status_is_0_when_all_cases_pass() {
    let dir = tempdir();
    let cases = write(
        dir.path(),
        "ok.cases.yaml",
        r#"cases:
  - name: health is public
    request: { method: GET, path: /healthz }
    expect: { decision: allow, action: health }
"#,
    );
    let out = writ_test(&spec_config(), &[&cases]);
    out.expect_code(0);
    assert_summary(&out, 1, 0);
}

#[test]
fn test_counts_cases_across_several_files() {
    let a = policy("spec-example.cases.yaml");
    let b = policy("relative-dates.cases.yaml");
    let n = 2 + yaml_len(&b, "cases");
    let out = writ_test(&spec_config(), &[&a, &b]);
    out.expect_code(0);
    assert_summary(&out, n, 0);

    let c = policy("mixed.cases.yaml");
    let out = writ_test(&spec_config(), &[&a, &c]);
    out.expect_code(1);
    assert_summary(&out, 4, 4);
}

#[test]
fn test_request_headers_in_cases_are_applied() {
    let dir = tempdir();
    let cases = write(
        dir.path(),
        "headers.cases.yaml",
        r#"cases:
  - name: method override header is refused
    request: { method: GET, path: /healthz, headers: { X-HTTP-Method-Override: DELETE } }
    expect: { decision: deny, status: 400, reason: method_override }
  - name: same request without the header is public
    request: { method: GET, path: /healthz }
    expect: { decision: allow, action: health }
"#,
    );
    let out = writ_test(&spec_config(), &[&cases]);
    out.expect_code(0);
    assert_summary(&out, 2, 0);
}

#[test]
fn test_claims_are_taken_as_verified_but_still_checked() {
    let dir = tempdir();
    let cases = write(
        dir.path(),
        "claims.cases.yaml",
        r#"cases:
  - name: wrong issuer
    request: { method: GET, path: /tenants/acme/jobs/7 }
    claims: { iss: https://evil.example/, aud: orders-api, sub: alice, tenant: acme,
              scope: jobs:read, exp: now+10m }
    expect: { decision: deny, status: 401, reason: wrong_issuer }
  - name: another tenant
    request: { method: GET, path: /tenants/acme/jobs/7 }
    claims: { iss: https://login.example.com/, aud: orders-api, sub: alice, tenant: globex,
              scope: jobs:read, exp: now+10m }
    expect: { decision: deny, status: 403, reason: claim_mismatch }
  - name: agent not allowed
    request: { method: POST, path: /tenants/acme/jobs/7/run }
    claims: { iss: https://login.example.com/, aud: orders-api, sub: alice, tenant: acme,
              scope: jobs:execute, iat: now-1m, exp: now+10m, act: { sub: agent:deploy-1 } }
    expect: { decision: deny, status: 403, reason: actor_not_allowed }
  - name: delegation forbidden on read-job
    request: { method: GET, path: /tenants/acme/jobs/7 }
    claims: { iss: https://login.example.com/, aud: orders-api, sub: alice, tenant: acme,
              scope: jobs:read, exp: now+10m, act: { sub: agent:ci-7 } }
    expect: { decision: deny, status: 403, reason: delegation_forbidden }
"#,
    );
    let out = writ_test(&spec_config(), &[&cases]);
    out.expect_code(0);
    assert_summary(&out, 4, 0);
}

#[test]
fn test_uses_writ_config_env_as_default_for_config() {
    let cases = policy("spec-example.cases.yaml");
    let out = run(writ()
        .arg("test")
        .arg(&cases)
        .env("WRIT_CONFIG", spec_config()));
    out.expect_code(0);
    assert_summary(&out, 2, 0);
}

/// A malformed case file fails the run and is reported as `FILE:LINE:COL: message`.
#[track_caller]
fn malformed(name: &str) -> (Out, Vec<Diag>, String) {
    let p = policy(name);
    let text = std::fs::read_to_string(&p).unwrap();
    let out = writ_test(&spec_config(), &[&p]);
    assert_ne!(out.code, Some(0), "{}", out.dump());
    assert!(out.code.is_some(), "no crash\n{}", out.dump());
    let diags = diagnostics(&out.all(), &p);
    assert!(
        !diags.is_empty(),
        "a malformed case file is reported as {}:LINE:COL: message\n{}",
        p.display(),
        out.dump()
    );
    (out, diags, text)
}

#[test]
fn test_case_file_with_unknown_key_reports_file_line_col() {
    let (out, diags, text) = malformed("malformed-unknown-key.cases.yaml");
    let at = pos(&text, "statuss");
    assert_eq!(at, (4, 32));
    assert!(
        diags
            .iter()
            .any(|d| (d.line, d.col) == at && d.message.contains("statuss")),
        "expected an error at {at:?} naming `statuss`: {diags:#?}\n{}",
        out.dump()
    );
}

#[test]
fn test_case_file_with_wrong_type_reports_file_line_col() {
    let (out, diags, text) = malformed("malformed-wrong-type.cases.yaml");
    let at = pos(&text, "[healthz]");
    assert!(
        diags.iter().any(|d| (d.line, d.col) == at),
        "expected an error at {at:?}: {diags:#?}\n{}",
        out.dump()
    );
}

#[test]
fn test_case_file_with_yaml_syntax_error_reports_file_line_col() {
    let (out, diags, text) = malformed("malformed-syntax.cases.yaml");
    let opened = pos(&text, "{ method: GET").0;
    assert!(
        diags
            .iter()
            .any(|d| d.line == opened || d.line == opened + 1),
        "expected an error on line {opened} or {}: {diags:#?}\n{}",
        opened + 1,
        out.dump()
    );
}

#[test]
fn test_malformed_case_file_still_ends_with_the_summary_line() {
    let good = policy("spec-example.cases.yaml");
    let bad = policy("malformed-unknown-key.cases.yaml");
    let out = writ_test(&spec_config(), &[&good, &bad]);
    assert_ne!(out.code, Some(0), "{}", out.dump());
    let last = out.last_stdout_line();
    let (p, f) = last
        .split_once(" passed, ")
        .and_then(|(p, rest)| Some((p.parse::<usize>().ok()?, rest.strip_suffix(" failed")?)))
        .and_then(|(p, f)| Some((p, f.parse::<usize>().ok()?)))
        .unwrap_or_else(|| panic!("last line must be `N passed, N failed`\n{}", out.dump()));
    assert_eq!(p, 2, "the good file's cases still ran\n{}", out.dump());
    assert!(
        f >= 1,
        "the malformed file counts as failed\n{}",
        out.dump()
    );
}

#[test]
fn test_missing_case_file_fails() {
    let dir = tempdir();
    let missing = dir.path().join("nope.cases.yaml");
    let out = writ_test(&spec_config(), &[&missing]);
    assert_ne!(out.code, Some(0), "{}", out.dump());
    assert!(out.code.is_some(), "{}", out.dump());
}

#[test]
fn test_invalid_config_fails_with_file_line_col() {
    let cfg = fixture("bad/unknown-action-key.yaml");
    let cases = policy("spec-example.cases.yaml");
    let out = writ_test(&cfg, &[&cases]);
    assert_ne!(out.code, Some(0), "{}", out.dump());
    assert!(
        out.all().contains(&format!("{}:15:5:", cfg.display())),
        "{}",
        out.dump()
    );
}

#[test]
fn test_requires_at_least_one_case_file() {
    let out = run(writ().arg("test").arg("--config").arg(spec_config()));
    assert_ne!(out.code, Some(0), "{}", out.dump());
}

#[test]
fn failing_case_shows_the_whole_outcome_even_fields_it_did_not_assert() {
    // A case that asserts only the decision still shows reason, status and action.
    let dir = tempdir();
    let cases = write(
        dir.path(),
        "only-decision.cases.yaml",
        r#"cases:
  - name: read without the scope
    request: { method: GET, path: /tenants/acme/jobs/7 }
    claims: { iss: https://login.example.com/, aud: orders-api, sub: alice, tenant: acme,
              scope: other, iat: now-1m, exp: now+10m }
    expect: { decision: allow }
"#,
    );
    let out = writ_test(&spec_config(), &[&cases]);
    out.expect_code(1);
    assert_summary(&out, 0, 1);
    assert!(
        out.all()
            .contains("got: decision deny, status 403, reason insufficient_scope, action read-job"),
        "{}",
        out.dump()
    );
}

#[test]
fn closed_stdout_ends_quietly_with_the_outcome_as_exit_status() {
    // `writ test ... | head -1`: the reader is gone; writ must not panic on the broken pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let cases = policy("mixed.cases.yaml");
    let out = writ()
        .arg("test")
        .arg("--config")
        .arg(spec_config())
        .arg(&cases)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}
