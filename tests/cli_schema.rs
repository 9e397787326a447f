//! `writ schema` (SPEC: Command line): prints the JSON Schema of the config, exit 0.
//!
//! The schema is checked with a real JSON Schema validator (python3 `jsonschema`, YAML read
//! with `pyyaml`), run as a subprocess. CI installs both; when either is missing these tests
//! FAIL with a message saying so — they never pass without validating.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::*;

/// Validates each YAML file against the schema; prints `VALID <file>` or `INVALID <file>`
/// followed by one `  <path>: <message>` line per error. Exit 3 when a module is missing.
const VALIDATOR: &str = r#"
import json, sys
try:
    import jsonschema, yaml
except ImportError as e:
    print("MISSING_MODULE: %s" % e)
    sys.exit(3)
schema = json.load(open(sys.argv[1]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
v = cls(schema)
for f in sys.argv[2:]:
    doc = yaml.safe_load(open(f))
    errs = list(v.iter_errors(doc))
    print(("VALID " if not errs else "INVALID ") + f)
    for e in errs:
        print("  %s: %s" % ("/".join(str(p) for p in e.absolute_path), e.message))
"#;

/// `writ schema`, checked to exit 0 and print one JSON object; written to `dir/schema.json`.
fn schema_file(dir: &Path) -> (PathBuf, Value) {
    let out = writ_run(["schema"]);
    out.expect_code(0);
    let v: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("writ schema must print JSON: {e}\n{}", out.dump()));
    (write(dir, "schema.json", &out.stdout), v)
}

/// Runs the validator; returns, per file, `(valid, error lines)`.
fn validate(files: &[PathBuf]) -> Vec<(PathBuf, bool, String)> {
    let dir = tempdir();
    let (schema, _) = schema_file(dir.path());
    let o = Command::new("python3")
        .arg("-c")
        .arg(VALIDATOR)
        .arg(&schema)
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "python3 is required to validate `writ schema` with a real JSON Schema validator \
                 (pip install jsonschema pyyaml): cannot run python3: {e}"
            )
        });
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_ne!(
        o.status.code(),
        Some(3),
        "python3 modules `jsonschema` and `pyyaml` are required (pip install jsonschema pyyaml): {stdout}"
    );
    assert!(
        o.status.success(),
        "the validator failed (is the schema itself valid?)\n{stdout}\n{stderr}"
    );
    let mut res = Vec::new();
    for f in files {
        let f_s = f.display().to_string();
        let mut lines = stdout.lines();
        let Some(head) = lines.find(|l| {
            l.strip_prefix("VALID ")
                .or_else(|| l.strip_prefix("INVALID "))
                == Some(f_s.as_str())
        }) else {
            panic!("validator said nothing about {f_s}\n{stdout}\n{stderr}");
        };
        let errs: Vec<&str> = lines.take_while(|l| l.starts_with("  ")).collect();
        res.push((f.clone(), head.starts_with("VALID "), errs.join("\n")));
    }
    res
}

#[track_caller]
fn assert_schema_valid(files: &[PathBuf]) {
    for (f, ok, errs) in validate(files) {
        assert!(
            ok,
            "{} must validate against `writ schema`:\n{errs}",
            f.display()
        );
    }
}

#[track_caller]
fn assert_schema_invalid(file: &Path, needle: &str) {
    let r = validate(&[file.to_path_buf()]);
    let (_, ok, errs) = &r[0];
    assert!(
        !ok,
        "{} must NOT validate against `writ schema`",
        file.display()
    );
    assert!(
        errs.contains(needle),
        "the schema error should mention {needle:?}:\n{errs}"
    );
}

/// The demo config with `extra` appended (it ends with a top-level key's block).
fn demo_plus(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo_path("config/demo/demo.yaml")).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit must change the config");
    write(dir, name, &edited)
}

#[test]
fn schema_prints_a_json_schema_object_for_the_config() {
    let dir = tempdir();
    let (_, v) = schema_file(dir.path());
    assert!(v.is_object(), "{v}");
    let props = v
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("top-level properties: {v:#}"));
    for key in [
        "listen",
        "tls",
        "admin",
        "upstream",
        "issuers",
        "requests",
        "identity_headers",
        "forward_token",
        "decision_log",
        "defaults",
        "actions",
        "workers",
        "shutdown_grace",
    ] {
        assert!(props.contains_key(key), "schema documents `{key}`: {v:#}");
    }
    let required: Vec<&str> = v
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(required.contains(&"listen"), "`listen` is required: {v:#}");
    assert_eq!(
        v.get("additionalProperties"),
        Some(&Value::Bool(false)),
        "unknown top-level keys are errors"
    );
}

#[test]
fn schema_output_is_stable_between_runs() {
    let a = writ_run(["schema"]);
    let b = writ_run(["schema"]);
    a.expect_code(0);
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn schema_validates_every_shipped_example_and_the_demo_config() {
    let mut files = shipped_examples();
    files.push(repo_path("config/demo/demo.yaml"));
    assert_schema_valid(&files);
}

#[test]
fn schema_validates_the_full_spec_example_with_every_documented_key() {
    assert_schema_valid(&[fixture("schema/spec-full.yaml")]);
}

#[test]
fn schema_validates_the_policy_fixture_configs() {
    assert_schema_valid(&[fixture("policy/spec-jobs.yaml")]);
}

#[test]
fn schema_rejects_an_unknown_top_level_key() {
    let dir = tempdir();
    let p = demo_plus(dir.path(), "c.yaml", |t| {
        format!("{t}\nlisten_addr: 127.0.0.1:8081\n")
    });
    assert_schema_invalid(&p, "listen_addr");
}

#[test]
fn schema_rejects_an_unknown_key_inside_an_action() {
    let dir = tempdir();
    let p = demo_plus(dir.path(), "c.yaml", |t| {
        t.replacen(
            "    public: true",
            "    public: true\n    requires_mfa: true",
            1,
        )
    });
    assert_schema_invalid(&p, "requires_mfa");
}

#[test]
fn schema_rejects_an_unknown_key_inside_an_issuer() {
    let dir = tempdir();
    let p = demo_plus(dir.path(), "c.yaml", |t| {
        t.replacen(
            "    leeway: 30s",
            "    leeway: 30s\n    audience: orders-api",
            1,
        )
    });
    assert_schema_invalid(&p, "audience");
}

#[test]
fn schema_rejects_a_config_without_listen() {
    let dir = tempdir();
    let p = demo_plus(dir.path(), "c.yaml", |t| {
        t.replacen("listen: 127.0.0.1:8080\n", "", 1)
    });
    assert_schema_invalid(&p, "listen");
}

#[test]
fn schema_rejects_an_unknown_enum_value() {
    let dir = tempdir();
    let p = demo_plus(dir.path(), "c.yaml", |t| {
        t.replacen("  unmatched: deny", "  unmatched: maybe", 1)
    });
    assert_schema_invalid(&p, "maybe");
}

#[test]
fn schema_rejects_a_wrong_type() {
    let dir = tempdir();
    let p = demo_plus(dir.path(), "c.yaml", |t| {
        t.replacen("listen: 127.0.0.1:8080", "listen: [127.0.0.1, 8080]", 1)
    });
    assert_schema_invalid(&p, "listen");
}

#[test]
fn schema_and_check_agree_on_the_bad_fixtures_that_are_schema_errors() {
    for name in [
        "unknown-top-level-key.yaml",
        "unknown-action-key.yaml",
        "unknown-nested-key.yaml",
        "wrong-type-listen.yaml",
        "wrong-type-bool.yaml",
        "wrong-type-actions.yaml",
        "bad-enum.yaml",
        "missing-listen.yaml",
    ] {
        let p = fixture(&format!("bad/{name}"));
        let r = validate(std::slice::from_ref(&p));
        assert!(!r[0].1, "{name} must not validate against the schema");
        run(writ().arg("check").arg("--config").arg(&p)).expect_code(1);
    }
}
