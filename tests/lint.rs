//! `writ lint` and its warnings in `writ check` (SPEC "Rule owner's tools"): golden output
//! over a config built to trip every code, the shipped examples lint-clean, `lint: { allow }`
//! per action and at the top level, unknown codes as config errors with their position.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;

use support::{fixture, pos, repo_path, shipped_examples, tempdir, writ_run};

const EVERY_CODE: &str = "tests/fixtures/lint/every-code.yaml";

const CODES: [&str; 12] = [
    "execution-without-scopes",
    "delegation-without-max-age",
    "actor-glob-matches-all",
    "unmatched-allow",
    "audit-mode-execution",
    "shadowed-template",
    "issuer-without-typ",
    "execution-any-method",
    "claim-bound-to-rest",
    "long-leeway",
    "forward-token-execution",
    "execution-tool-glob",
];

#[test]
fn every_code_is_reported_at_its_position_with_a_hint() {
    let out = writ_run(["lint", "--config", EVERY_CODE]);
    out.expect_code(1);
    let golden = fs::read_to_string(fixture("lint/every-code.out")).unwrap();
    assert_eq!(out.stdout, golden, "{}", out.dump());
    for code in CODES {
        assert!(
            out.stdout.contains(&format!(": warning[{code}]: ")),
            "{code} not tripped:\n{}",
            out.stdout
        );
    }
    // Every finding line has the FILE:LINE:COL shape and is followed by its hint.
    let text = fs::read_to_string(repo_path(EVERY_CODE)).unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains(": warning[") {
            assert!(l.starts_with(&format!("{EVERY_CODE}:")), "{l}");
            assert!(lines[i + 1].starts_with("  help: "), "{l}");
        }
    }
    // Spot-check positions against the file itself.
    let (line, col) = pos(&text, "leeway: 10m");
    assert!(out.stdout.contains(&format!(
        "{EVERY_CODE}:{line}:{}: warning[long-leeway]",
        col + "leeway: ".len() as u64
    )));
    let (line, col) = pos(&text, "\"{tenant}\" }");
    assert!(out.stdout.contains(&format!(
        "{EVERY_CODE}:{line}:{col}: warning[claim-bound-to-rest]"
    )));
    assert!(out.stdout.ends_with(": 13 findings\n"), "{}", out.stdout);
}

#[test]
fn check_prints_findings_as_warnings_without_failing() {
    let out = writ_run(["check", "--config", EVERY_CODE]);
    out.expect_code(0);
    assert!(out.stdout.contains(": ok ("), "{}", out.dump());
    assert_eq!(
        out.stderr.matches(": warning[").count(),
        13,
        "{}",
        out.dump()
    );
}

#[test]
fn the_shipped_configs_are_lint_clean() {
    let mut configs = shipped_examples();
    configs.push(repo_path("config/demo/demo.yaml"));
    for c in configs {
        let out = writ_run([
            std::ffi::OsStr::new("lint"),
            "--config".as_ref(),
            c.as_os_str(),
        ]);
        out.expect_code(0);
        assert!(out.stdout.ends_with(": 0 findings\n"), "{}", out.dump());
    }
}

#[test]
fn allow_silences_a_code_per_action_or_everywhere() {
    let dir = tempdir();
    let base = fs::read_to_string(repo_path(EVERY_CODE)).unwrap().replace(
        "../../../config/demo/jwks.json",
        &repo_path("config/demo/jwks.json").display().to_string(),
    );
    // Per action: only that action's finding goes.
    let per_action = base.replace(
        "    execution: true\n    mode: audit\n",
        "    execution: true\n    mode: audit\n    lint: { allow: [audit-mode-execution, execution-any-method] }\n",
    );
    let p = dir.path().join("per-action.yaml");
    fs::write(&p, &per_action).unwrap();
    let out = writ_run([
        std::ffi::OsStr::new("lint"),
        "--config".as_ref(),
        p.as_os_str(),
    ]);
    out.expect_code(1);
    assert!(
        !out.stdout.contains("audit-mode-execution"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("execution-any-method"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.ends_with(": 11 findings\n"), "{}", out.stdout);
    // Top level: everywhere, including findings that belong to no action.
    let global = format!("{base}lint:\n  allow: [shadowed-template, issuer-without-typ]\n");
    let p = dir.path().join("global.yaml");
    fs::write(&p, &global).unwrap();
    let out = writ_run([
        std::ffi::OsStr::new("lint"),
        "--config".as_ref(),
        p.as_os_str(),
    ]);
    out.expect_code(1);
    assert!(!out.stdout.contains("shadowed-template"), "{}", out.stdout);
    assert!(!out.stdout.contains("issuer-without-typ"), "{}", out.stdout);
    assert!(out.stdout.ends_with(": 10 findings\n"), "{}", out.stdout);
}

#[test]
fn an_unknown_code_in_allow_is_a_config_error_at_its_position() {
    let dir = tempdir();
    let text = fs::read_to_string(repo_path(EVERY_CODE))
        .unwrap()
        .replace(
            "../../../config/demo/jwks.json",
            &repo_path("config/demo/jwks.json").display().to_string(),
        )
        .replace("[forward-token-execution]", "[forward-token-executoin]");
    let p = dir.path().join("typo.yaml");
    fs::write(&p, &text).unwrap();
    let (line, col) = pos(&text, "forward-token-executoin");
    for (cmd, code) in [("lint", 2), ("check", 1)] {
        let out = writ_run([
            std::ffi::OsStr::new(cmd),
            "--config".as_ref(),
            p.as_os_str(),
        ]);
        out.expect_code(code);
        assert!(
            out.stderr.contains(&format!(
                "{}:{line}:{col}: unknown lint code `forward-token-executoin`",
                p.display()
            )),
            "{}",
            out.dump()
        );
    }
}

#[test]
fn writ_run_logs_the_findings_of_the_config_it_serves() {
    let env = support::Env::start(
        "  - name: purge\n    methods: [POST]\n    path: /purge\n    execution: true\n",
    );
    let found = support::eventually(|| {
        let err = env.writ.stderr();
        err.contains("execution-without-scopes").then_some(err)
    });
    let err =
        found.unwrap_or_else(|| panic!("no lint warning in writ's log:\n{}", env.writ.stderr()));
    assert!(
        err.contains("Lint: execution action `purge` requires no scope"),
        "{err}"
    );
}
