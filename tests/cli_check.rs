//! `writ check --config FILE` (SPEC: Command line, Configuration, Settled questions / Config):
//! exit 0 with one line naming the action and issuer counts on a valid config; exit 1 with
//! `FILE:LINE:COL: message` lines on stderr for every problem otherwise.
//!
//! The broken configs live in `tests/fixtures/bad/`; expected positions are computed from the
//! fixture text (`pos(text, "needle")`), so each assertion says *what* it points at.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::*;

fn check(config: &Path) -> Out {
    run(writ().arg("check").arg("--config").arg(config))
}

fn bad(name: &str) -> (PathBuf, String) {
    let p = fixture(&format!("bad/{name}"));
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, text)
}

/// Runs `check` on a bad fixture: exit 1, and every non-empty stderr line is a
/// `FILE:LINE:COL: message` diagnostic naming that file. Returns the diagnostics.
#[track_caller]
fn check_fails(path: &Path) -> (Out, Vec<Diag>) {
    let out = check(path);
    out.expect_code(1);
    let diags = diagnostics(&out.stderr, path);
    assert!(
        !diags.is_empty(),
        "expected FILE:LINE:COL: message lines on stderr for {}\n{}",
        path.display(),
        out.dump()
    );
    for l in out.stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            !diagnostics(l, path).is_empty(),
            "every error line must be `{}:LINE:COL: message`, got {l:?}\n{}",
            path.display(),
            out.dump()
        );
    }
    for d in &diags {
        assert!(
            d.line >= 1 && d.col >= 1,
            "positions are 1-based: {d:?}\n{}",
            out.dump()
        );
        assert!(
            !d.message.trim().is_empty(),
            "empty message: {d:?}\n{}",
            out.dump()
        );
    }
    (out, diags)
}

/// Asserts one diagnostic at exactly `(line, col)` whose message contains every needle
/// (case-insensitive).
#[track_caller]
fn assert_diag_at(out: &Out, diags: &[Diag], at: (u64, u64), needles: &[&str]) {
    let hit = diags.iter().find(|d| (d.line, d.col) == at);
    let Some(d) = hit else {
        panic!(
            "expected an error at line {} column {}, got {diags:#?}\n{}",
            at.0,
            at.1,
            out.dump()
        );
    };
    let msg = d.message.to_lowercase();
    for n in needles {
        assert!(
            msg.contains(&n.to_lowercase()),
            "error at {}:{} should mention {n:?}: {:?}\n{}",
            at.0,
            at.1,
            d.message,
            out.dump()
        );
    }
}

/// Asserts one diagnostic on `line` (any column in `cols`, or any column when empty) whose
/// message contains every needle.
#[track_caller]
fn assert_diag_on_line(out: &Out, diags: &[Diag], line: u64, cols: &[u64], needles: &[&str]) {
    let ok = diags.iter().any(|d| {
        d.line == line
            && (cols.is_empty() || cols.contains(&d.col))
            && needles
                .iter()
                .all(|n| d.message.to_lowercase().contains(&n.to_lowercase()))
    });
    assert!(
        ok,
        "expected an error on line {line} (columns {cols:?}) mentioning {needles:?}, got {diags:#?}\n{}",
        out.dump()
    );
}

// ------------------------------------------------------------------------------------------
// valid configs
// ------------------------------------------------------------------------------------------

/// Exit 0 and exactly one stdout line that names `actions` action(s) and `issuers` issuer(s).
#[track_caller]
fn assert_valid_with_counts(path: &Path, actions: usize, issuers: usize) {
    let out = check(path);
    out.expect_code(0);
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "success is exactly one line\n{}",
        out.dump()
    );
    let line = lines[0].to_lowercase();
    let a = format!("{actions} action");
    let i = format!("{issuers} issuer");
    assert!(
        line.contains(&a),
        "success line must name {a:?}: {:?}",
        lines[0]
    );
    assert!(
        line.contains(&i),
        "success line must name {i:?}: {:?}",
        lines[0]
    );
    // Lint findings may follow as warnings (each with its `help:` line); nothing else.
    assert!(
        out.stderr
            .lines()
            .all(|l| l.contains(": warning[") || l.starts_with("  help: ")),
        "a valid config prints no errors\n{}",
        out.dump()
    );
}

#[test]
fn check_accepts_every_shipped_example_with_action_and_issuer_counts() {
    for p in shipped_examples() {
        let actions = yaml_len(&p, "actions");
        let issuers = yaml_len(&p, "issuers");
        assert!(actions > 0, "{} has actions", p.display());
        assert_valid_with_counts(&p, actions, issuers);
    }
}

#[test]
fn check_accepts_the_job_runner_example_with_five_actions_and_one_issuer() {
    assert_valid_with_counts(&repo_path("config/examples/job-runner-sidecar.yaml"), 5, 1);
}

#[test]
fn check_accepts_the_demo_config() {
    assert_valid_with_counts(&repo_path("config/demo/demo.yaml"), 4, 1);
}

#[test]
fn check_counts_two_issuers_and_zero_issuers() {
    let dir = tempdir();
    let key = EcKey::generate();
    write(dir.path(), "jwks.json", &key.jwks("k1"));
    let two = write(
        dir.path(),
        "two.yaml",
        r#"listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:3000
issuers:
  - issuer: https://a.example/
    audiences: [api]
    algorithms: [ES256]
    jwks_file: jwks.json
  - issuer: https://b.example/
    audiences: [api]
    algorithms: [ES256]
    jwks_file: jwks.json
actions:
  - name: a
    methods: [GET]
    path: /a
  - name: b
    methods: [GET]
    path: /b
  - name: c
    methods: ["*"]
    path: /c/{*rest}
  - name: d
    methods: [GET]
    path: /d
    public: true
"#,
    );
    assert_valid_with_counts(&two, 4, 2);

    let none = write(
        dir.path(),
        "public-only.yaml",
        r#"listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:3000
actions:
  - name: health
    methods: [GET]
    path: /healthz
    public: true
  - name: static
    methods: [GET, HEAD]
    path: /static/{*file}
    public: true
"#,
    );
    assert_valid_with_counts(&none, 2, 0);
}

#[test]
fn check_resolves_relative_key_files_against_the_config_directory_not_the_cwd() {
    // The fixture tree is run from the repo root; the config names `jwks.json` next to it.
    let dir = tempdir();
    let key = EcKey::generate();
    write(dir.path(), "sub/jwks.json", &key.jwks("k1"));
    let cfg = write(dir.path(), "sub/writ.yaml", &token_config("jwks.json"));
    assert_valid_with_counts(&cfg, 3, 1);
}

#[test]
fn check_uses_writ_config_env_as_default_for_config() {
    let p = repo_path("config/examples/agent-delegation.yaml");
    let out = run(writ().arg("check").env("WRIT_CONFIG", &p));
    out.expect_code(0);
    assert!(
        out.stdout.contains("3 action") && out.stdout.contains("1 issuer"),
        "{}",
        out.dump()
    );
}

#[test]
fn check_reports_errors_of_the_file_named_by_writ_config() {
    let (p, text) = bad("unknown-top-level-key.yaml");
    let out = run(writ().arg("check").env("WRIT_CONFIG", &p));
    out.expect_code(1);
    let diags = diagnostics(&out.stderr, &p);
    assert_diag_at(&out, &diags, pos(&text, "listen_addr"), &["listen_addr"]);
}

#[test]
fn check_config_flag_overrides_writ_config_env() {
    let (bad_path, _) = bad("missing-listen.yaml");
    let good = repo_path("config/demo/demo.yaml");
    let out = run(writ()
        .arg("check")
        .arg("--config")
        .arg(&good)
        .env("WRIT_CONFIG", &bad_path));
    out.expect_code(0);
}

#[test]
fn check_without_config_or_writ_config_is_an_error() {
    let out = writ_run(["check"]);
    assert_ne!(out.code, Some(0), "{}", out.dump());
    assert!(out.code.is_some(), "no crash\n{}", out.dump());
}

#[test]
fn check_missing_config_file_fails() {
    let dir = tempdir();
    let p = dir.path().join("nope.yaml");
    let out = check(&p);
    out.expect_code(1);
    assert!(
        out.stderr.contains(&p.display().to_string()),
        "the error names the file\n{}",
        out.dump()
    );
}

// ------------------------------------------------------------------------------------------
// syntax and schema errors
// ------------------------------------------------------------------------------------------

#[test]
fn check_yaml_syntax_error_bad_indentation_points_at_the_stray_key() {
    let (p, text) = bad("syntax-indentation.yaml");
    let (out, diags) = check_fails(&p);
    assert_eq!(diags.len(), 1, "{}", out.dump());
    // ` timeout: 5s` is indented one space: neither under `upstream` nor top level.
    assert_diag_at(&out, &diags, pos(&text, "timeout"), &[]);
}

#[test]
fn check_yaml_syntax_error_unclosed_quote_points_at_the_quote() {
    let (p, text) = bad("syntax-unclosed-quote.yaml");
    let (out, diags) = check_fails(&p);
    assert_eq!(diags.len(), 1, "{}", out.dump());
    assert_diag_at(&out, &diags, pos(&text, "\""), &["quote"]);
}

#[test]
fn check_unknown_top_level_key_points_at_the_key() {
    let (p, text) = bad("unknown-top-level-key.yaml");
    let (out, diags) = check_fails(&p);
    assert_eq!(pos(&text, "listen_addr"), (4, 1));
    assert_diag_at(&out, &diags, (4, 1), &["listen_addr"]);
}

#[test]
fn check_unknown_key_inside_an_action_points_at_the_key() {
    let (p, text) = bad("unknown-action-key.yaml");
    let (out, diags) = check_fails(&p);
    assert_eq!(pos(&text, "requires_mfa"), (15, 5));
    assert_diag_at(&out, &diags, (15, 5), &["requires_mfa"]);
}

#[test]
fn check_unknown_key_inside_requests_points_at_the_key() {
    let (p, text) = bad("unknown-nested-key.yaml");
    let (out, diags) = check_fails(&p);
    assert_diag_at(&out, &diags, pos(&text, "semicolons"), &["semicolons"]);
}

#[test]
fn check_wrong_type_sequence_for_string_points_at_the_value() {
    let (p, text) = bad("wrong-type-listen.yaml");
    let (out, diags) = check_fails(&p);
    assert_eq!(pos(&text, "["), (1, 9));
    assert_diag_at(&out, &diags, (1, 9), &[]);
}

#[test]
fn check_wrong_type_string_for_boolean_points_at_the_value() {
    let (p, text) = bad("wrong-type-bool.yaml");
    let (out, diags) = check_fails(&p);
    assert_diag_at(&out, &diags, pos(&text, "sometimes"), &[]);
}

#[test]
fn check_wrong_type_number_for_actions_list_points_at_the_value() {
    let (p, text) = bad("wrong-type-actions.yaml");
    let (out, diags) = check_fails(&p);
    let (line, col) = pos(&text, "actions: 5");
    assert_diag_at(&out, &diags, (line, col + "actions: ".len() as u64), &[]);
}

#[test]
fn check_unknown_enum_value_points_at_the_value() {
    let (p, text) = bad("bad-enum.yaml");
    let (out, diags) = check_fails(&p);
    assert_diag_at(&out, &diags, pos(&text, "maybe"), &["maybe"]);
}

#[test]
fn check_missing_listen_is_reported_at_the_top_level_mapping() {
    let (p, _) = bad("missing-listen.yaml");
    let (out, diags) = check_fails(&p);
    assert!(
        diags.iter().any(|d| d.message.contains("listen")),
        "the error names `listen`\n{}",
        out.dump()
    );
    // The key is missing from the document's top-level mapping, which starts at 1:1; any
    // other position points the reader at an unrelated key.
    assert_diag_at(&out, &diags, (1, 1), &["listen"]);
}

#[test]
fn check_missing_upstream_url_is_reported_at_the_upstream_mapping() {
    let dir = tempdir();
    let text = "listen: 127.0.0.1:8080\nupstream:\n  timeout: 5s\n  connect_timeout: 1s\nadmin: 127.0.0.1:9901\n";
    let p = write(dir.path(), "no-url.yaml", text);
    let (out, diags) = check_fails(&p);
    // Either the `upstream:` key (2:1) or the start of its mapping (3:3).
    let ok = diags
        .iter()
        .any(|d| d.message.contains("url") && [(2, 1), (3, 3)].contains(&(d.line, d.col)));
    assert!(
        ok,
        "missing `url` must be reported at `upstream` (2:1) or its mapping (3:3), got {diags:#?}\n{}",
        out.dump()
    );
}

// ------------------------------------------------------------------------------------------
// semantic errors
// ------------------------------------------------------------------------------------------

#[test]
fn check_bad_duration_with_words_points_at_the_value() {
    let (p, text) = bad("bad-duration.yaml");
    let (out, diags) = check_fails(&p);
    assert_eq!(pos(&text, "5 minutes"), (5, 12));
    assert_diag_at(&out, &diags, (5, 12), &["5 minutes"]);
}

#[test]
fn check_bad_duration_inside_action_delegation_points_at_the_value() {
    let (p, text) = bad("bad-duration-in-action.yaml");
    let (out, diags) = check_fails(&p);
    assert_diag_at(&out, &diags, pos(&text, "5 minutes"), &["5 minutes"]);
}

#[test]
fn check_rejects_durations_the_spec_does_not_allow() {
    let dir = tempdir();
    for (i, d) in ["5 minutes", "1.5s", "-1s", "5", "10 m", "5mins", "PT5M"]
        .iter()
        .enumerate()
    {
        let text = format!(
            "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:3000\n  timeout: \"{d}\"\n"
        );
        let p = write(dir.path(), &format!("d{i}.yaml"), &text);
        let (out, diags) = check_fails(&p);
        assert_diag_on_line(&out, &diags, 4, &[], &[]);
    }
    for (i, d) in ["250ms", "30s", "5m", "2h"].iter().enumerate() {
        let text = format!(
            "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:3000\n  timeout: {d}\n"
        );
        let p = write(dir.path(), &format!("ok{i}.yaml"), &text);
        check(&p).expect_code(0);
    }
}

/// A conflict is reported with both locations: the diagnostic sits in one action's lines and
/// its message names a line of the other action.
#[track_caller]
fn assert_conflict_names_both(
    out: &Out,
    diags: &[Diag],
    first: std::ops::RangeInclusive<u64>,
    second: std::ops::RangeInclusive<u64>,
) {
    let mentions = |msg: &str, r: &std::ops::RangeInclusive<u64>| {
        r.clone()
            .any(|l| msg.contains(&format!(":{l}:")) || msg.contains(&format!("line {l}")))
    };
    let ok = diags.iter().any(|d| {
        (second.contains(&d.line) && mentions(&d.message, &first))
            || (first.contains(&d.line) && mentions(&d.message, &second))
    });
    assert!(
        ok,
        "the conflict must name both locations (lines {first:?} and {second:?}), got {diags:#?}\n{}",
        out.dump()
    );
}

#[test]
fn check_same_method_and_template_shape_is_a_conflict_naming_both_locations() {
    let (p, text) = bad("same-shape.yaml");
    let (out, diags) = check_fails(&p);
    let first = pos(&text, "- name: read-job").0;
    let second = pos(&text, "- name: read-job-again").0;
    assert_eq!((first, second), (10, 19));
    assert_conflict_names_both(&out, &diags, first..=first + 2, second..=second + 2);
    // Both action names appear, so the reader knows which two collide.
    assert!(
        diags.iter().any(|d| d.message.contains("read-job-again")
            && d.message.replace("read-job-again", "").contains("read-job")),
        "both action names appear in the conflict\n{}",
        out.dump()
    );
    // `health` is not involved.
    assert!(!out.stderr.contains("health"), "{}", out.dump());
}

#[test]
fn check_same_shape_with_same_host_in_other_spelling_is_a_conflict() {
    let (p, text) = bad("same-shape-host.yaml");
    let (out, diags) = check_fails(&p);
    let first = pos(&text, "- name: admin-a").0;
    let second = pos(&text, "- name: admin-b").0;
    assert_conflict_names_both(&out, &diags, first..=first + 3, second..=second + 3);
}

#[test]
fn check_same_template_on_different_methods_or_hosts_is_not_a_conflict() {
    let dir = tempdir();
    let key = EcKey::generate();
    write(dir.path(), "jwks.json", &key.jwks("k1"));
    let p = write(
        dir.path(),
        "ok.yaml",
        r#"listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:3000
issuers:
  - issuer: https://a.example/
    audiences: [api]
    algorithms: [ES256]
    jwks_file: jwks.json
actions:
  - name: read
    methods: [GET]
    path: /jobs/{job}
  - name: cancel
    methods: [DELETE]
    path: /jobs/{id}
  - name: read-on-admin-host
    methods: [GET]
    path: /jobs/{job}
    host: admin.example.com
  - name: read-literal
    methods: [GET]
    path: /jobs/latest
"#,
    );
    assert_valid_with_counts(&p, 4, 1);
}

#[test]
fn check_rest_parameter_not_last_points_at_the_path() {
    let (p, text) = bad("rest-not-last.yaml");
    let (out, diags) = check_fails(&p);
    assert_eq!(pos(&text, "/files/{*rest}/meta"), (7, 11));
    assert_diag_at(&out, &diags, (7, 11), &["rest"]);
}

#[test]
fn check_execution_action_marked_public_is_rejected_within_that_action() {
    let (p, text) = bad("public-execution.yaml");
    let (out, diags) = check_fails(&p);
    assert_eq!(
        diags.len(),
        1,
        "only reset-password is wrong\n{}",
        out.dump()
    );
    let start = pos(&text, "- name: reset-password").0;
    let public_line = pos_nth(&text, "public: true", 1).0;
    let d = &diags[0];
    assert!(
        (start..=public_line).contains(&d.line),
        "error must point into the reset-password action (lines {start}..={public_line}): {d:?}"
    );
    assert!(
        d.message.contains("public") || d.message.contains("execution"),
        "{d:?}"
    );
    // It points at one of the two keys that contradict each other.
    let execution_line = pos_nth(&text, "execution: true", 0).0;
    assert!(
        [execution_line, public_line].contains(&d.line),
        "error must point at `execution: true` (line {execution_line}) or `public: true` (line {public_line}): {d:?}"
    );
}

#[test]
fn check_algorithm_none_points_at_the_none_entry() {
    let (p, text) = bad("alg-none.yaml");
    let (out, diags) = check_fails(&p);
    assert_eq!(pos(&text, "none"), (7, 25));
    assert_diag_at(&out, &diags, (7, 25), &["none"]);
}

#[test]
fn check_algorithm_none_alone_is_rejected() {
    let dir = tempdir();
    let key = EcKey::generate();
    write(dir.path(), "jwks.json", &key.jwks("k1"));
    let text = "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:3000\nissuers:\n  - issuer: https://a.example/\n    audiences: [api]\n    algorithms: [none]\n    jwks_file: jwks.json\n";
    let p = write(dir.path(), "none.yaml", text);
    let (out, diags) = check_fails(&p);
    assert_diag_on_line(&out, &diags, 7, &[], &["none"]);
}

#[test]
fn check_hs256_mixed_with_es256_is_rejected_on_the_algorithms_line() {
    let (p, text) = bad("alg-hs-mixed.yaml");
    let (out, diags) = check_fails(&p);
    let (line, key_col) = pos(&text, "algorithms");
    let list_col = pos(&text, "[ES256, HS256]").1;
    let hs_col = pos(&text, "HS256").1;
    assert_diag_on_line(&out, &diags, line, &[key_col, list_col, hs_col], &["HS"]);
}

#[test]
fn check_two_key_sources_on_one_issuer_is_rejected_at_the_second_source() {
    let (p, text) = bad("two-key-sources.yaml");
    let (out, diags) = check_fails(&p);
    let (line, key_col) = pos(&text, "jwks_url");
    let value_col = pos(&text, "https://login.example.com/.well-known").1;
    assert_diag_on_line(&out, &diags, line, &[key_col, value_col], &[]);
}

#[test]
fn check_issuer_without_key_source_is_rejected() {
    let dir = tempdir();
    let text = "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:3000\nissuers:\n  - issuer: https://a.example/\n    audiences: [api]\n    algorithms: [ES256]\n";
    let p = write(dir.path(), "nokey.yaml", text);
    let (out, diags) = check_fails(&p);
    assert!(
        diags.iter().any(|d| (5..=7).contains(&d.line)),
        "the error points into the issuer\n{}",
        out.dump()
    );
}

#[test]
fn check_unreadable_jwks_file_points_at_the_path_and_names_it() {
    let (p, text) = bad("unreadable-jwks.yaml");
    let (out, diags) = check_fails(&p);
    assert_eq!(pos(&text, "keys/does-not-exist.json"), (8, 16));
    assert_diag_at(&out, &diags, (8, 16), &["does-not-exist.json"]);
}

#[test]
fn check_jwks_file_that_is_not_a_jwks_is_rejected() {
    let dir = tempdir();
    write(dir.path(), "jwks.json", "this is not json");
    let cfg = write(dir.path(), "writ.yaml", &token_config("jwks.json"));
    let text = fs::read_to_string(&cfg).unwrap();
    let (out, diags) = check_fails(&cfg);
    assert_diag_on_line(&out, &diags, pos(&text, "jwks_file").0, &[], &[]);
}

#[test]
fn check_claim_bound_to_a_parameter_the_path_lacks_points_at_the_binding() {
    let (p, text) = bad("claim-unbound-param.yaml");
    let (out, diags) = check_fails(&p);
    let (line, key_col) = pos(&text, "tenant:");
    let value_col = pos(&text, "\"{tenant}\"").1;
    assert_eq!(line, 17);
    assert_diag_on_line(&out, &diags, line, &[key_col, value_col], &["tenant"]);
}

#[test]
fn check_duplicate_action_name_names_both_locations() {
    let (p, text) = bad("duplicate-action-name.yaml");
    let (out, diags) = check_fails(&p);
    let first = pos_nth(&text, "name: health", 0).0;
    let second = pos_nth(&text, "name: health", 1).0;
    assert_conflict_names_both(&out, &diags, first..=first, second..=second);
}

#[test]
fn check_protected_action_without_any_issuer_is_rejected() {
    let (p, text) = bad("protected-without-issuer.yaml");
    let (out, diags) = check_fails(&p);
    let start = pos(&text, "- name: read-job").0;
    assert!(
        diags.iter().any(|d| d.line >= start),
        "error points into the action\n{}",
        out.dump()
    );
}

#[test]
fn check_reports_every_semantic_problem_in_one_run() {
    let (p, text) = bad("many-problems.yaml");
    let (out, diags) = check_fails(&p);
    // Five independent problems, each on its own line.
    let expected_lines = [
        pos(&text, "30 seconds").0,
        pos(&text, "nowhere/jwks.json").0,
        pos(&text, "/files/{*rest}/meta").0,
        pos(&text, "\"{tenant}\"").0,
        pos_nth(&text, "execution: true", 1).0,
    ];
    let lines = out.stderr.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(
        lines,
        expected_lines.len(),
        "one error line per problem\n{}",
        out.dump()
    );
    assert_eq!(diags.len(), expected_lines.len(), "{}", out.dump());
    assert_diag_at(&out, &diags, pos(&text, "30 seconds"), &["30 seconds"]);
    assert_diag_at(
        &out,
        &diags,
        pos(&text, "nowhere/jwks.json"),
        &["nowhere/jwks.json"],
    );
    assert_diag_at(&out, &diags, pos(&text, "/files/{*rest}/meta"), &[]);
    assert_diag_on_line(&out, &diags, expected_lines[3], &[], &["tenant"]);
    let deploy = pos(&text, "- name: deploy").0;
    assert!(
        diags.iter().any(|d| d.line >= deploy),
        "the public execution action is reported too\n{}",
        out.dump()
    );
}

#[test]
fn check_missing_tls_certificate_and_key_files_are_reported_at_their_paths() {
    let dir = tempdir();
    let text = "listen: 127.0.0.1:8443\ntls: { cert: certs/missing.crt, key: certs/missing.key }\nupstream:\n  url: http://127.0.0.1:3000\n";
    let p = write(dir.path(), "tls.yaml", text);
    let (out, diags) = check_fails(&p);
    assert_diag_at(
        &out,
        &diags,
        pos(text, "certs/missing.crt"),
        &["missing.crt"],
    );
    assert_diag_at(
        &out,
        &diags,
        pos(text, "certs/missing.key"),
        &["missing.key"],
    );
}
