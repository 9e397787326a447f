//! `writ test --coverage` and `--min-coverage` (SPEC "Rule owner's tools"): which actions no
//! case exercises, which execution actions no case sees denied, which reasons no case
//! produces; the coverage floor as an exit status; the summary line stays last.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{shipped_examples, tempdir, writ_run, write};

const CONFIG: &str = r#"listen: 127.0.0.1:8080
upstream: { url: "http://127.0.0.1:3000" }
issuers:
  - issuer: https://login.example.com/
    audiences: [api]
    algorithms: [ES256]
    jwks_file: JWKS
    require_typ: at+jwt
actions:
  - name: read
    methods: [GET]
    path: /items/{id}
    require: { scopes: [items:read] }
  - name: purge
    methods: [POST]
    path: /items/{id}/purge
    execution: true
    require: { scopes: [items:purge] }
  - name: export
    methods: [POST]
    path: /export
    execution: true
    require: { scopes: [items:export] }
"#;

const CASES: &str = r#"cases:
  - name: a reader reads
    request: { method: GET, path: /items/1 }
    claims: { iss: https://login.example.com/, aud: api, sub: alice, scope: items:read, exp: now+5m }
    expect: { decision: allow }
  - name: without a token
    request: { method: GET, path: /items/1 }
    expect: { decision: deny, status: 401, reason: no_token }
  - name: a purger purges
    request: { method: POST, path: /items/1/purge }
    claims: { iss: https://login.example.com/, aud: api, sub: alice, scope: items:purge, exp: now+5m }
    expect: { decision: allow }
"#;

struct Files {
    _dir: tempfile::TempDir,
    config: String,
    cases: String,
}

fn files() -> Files {
    let dir = tempdir();
    let jwks = support::repo_path("config/demo/jwks.json");
    let config = write(
        dir.path(),
        "writ.yaml",
        &CONFIG.replace("JWKS", &jwks.display().to_string()),
    );
    let cases = write(dir.path(), "writ.cases.yaml", CASES);
    Files {
        config: config.display().to_string(),
        cases: cases.display().to_string(),
        _dir: dir,
    }
}

#[test]
fn coverage_lists_what_the_cases_leave_untested() {
    let f = files();
    let out = writ_run(["test", "--coverage", "--config", &f.config, &f.cases]);
    out.expect_code(0);
    let s = &out.stdout;
    assert!(
        s.contains("coverage: 2 of 3 actions exercised (66.7%)"),
        "{s}"
    );
    assert!(s.contains("  actions no case exercises: export\n"), "{s}");
    // purge is exercised, but only allowed: a rule that never denies is untested.
    assert!(
        s.contains("  execution actions without a denying case: purge, export\n"),
        "{s}"
    );
    let reasons = s
        .lines()
        .find_map(|l| l.strip_prefix("  reasons no case produces: "))
        .unwrap_or_else(|| panic!("{s}"));
    let reasons: Vec<&str> = reasons.split(", ").collect();
    assert!(
        !reasons.contains(&"allowed") && !reasons.contains(&"no_token"),
        "{s}"
    );
    assert!(reasons.contains(&"insufficient_scope") && reasons.contains(&"claim_mismatch"));
    // Not producible by a policy case: from the backend or the body reader.
    assert!(!reasons.contains(&"upstream_timeout") && !reasons.contains(&"body_too_large"));
    assert_eq!(out.last_stdout_line(), "3 passed, 0 failed");
}

#[test]
fn min_coverage_turns_the_share_of_exercised_actions_into_the_exit_status() {
    let f = files();
    let ok = writ_run([
        "test",
        "--min-coverage",
        "66",
        "--config",
        &f.config,
        &f.cases,
    ]);
    ok.expect_code(0);
    assert!(ok.stdout.contains("coverage: 2 of 3"), "{}", ok.dump());
    let low = writ_run([
        "test",
        "--min-coverage",
        "70%",
        "--config",
        &f.config,
        &f.cases,
    ]);
    low.expect_code(1);
    assert!(
        low.stdout
            .contains("FAIL coverage 66.7% is below --min-coverage 70%"),
        "{}",
        low.dump()
    );
    assert_eq!(low.last_stdout_line(), "3 passed, 0 failed");
    let bad = writ_run([
        "test",
        "--min-coverage",
        "120",
        "--config",
        &f.config,
        &f.cases,
    ]);
    bad.expect_code(2);
    assert!(
        bad.stderr.contains("not between 0 and 100"),
        "{}",
        bad.dump()
    );
}

#[test]
fn the_shipped_examples_are_fully_covered_by_their_cases() {
    for p in shipped_examples() {
        let cases = p.with_extension("cases.yaml");
        let out = writ_run([
            std::ffi::OsStr::new("test"),
            "--min-coverage".as_ref(),
            "100".as_ref(),
            "--config".as_ref(),
            p.as_os_str(),
            cases.as_os_str(),
        ]);
        out.expect_code(0);
        assert!(
            out.stdout
                .contains("  execution actions without a denying case: none"),
            "{}",
            out.dump()
        );
    }
}
