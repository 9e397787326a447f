//! The rule owner's loop on a real decision log (SPEC "Rule owner's tools"): traffic through
//! a real `writ run`, its decision log replayed by `writ replay` under the same config (nothing
//! changes) and under a changed one (exact counts and examples), `writ explain --log-line`, and
//! the log's basis fields: present, and never a token or signature.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::{Env, Out, run, tamper_claims, unique, writ};

const ACTIONS: &str = r#"
  - name: read-orders
    methods: [GET]
    path: /tenants/{tenant}/orders
    require:
      scopes: [orders:read]
      claims: { tenant: "{tenant}" }
  - name: run-job
    methods: [POST]
    path: /tenants/{tenant}/jobs/{job}/run
    execution: true
    require:
      scopes: [jobs:execute]
      auth_max_age: 10m
    delegation: { mode: allow, actors: ["agent:*"], max_age: 5m }
  - name: docs
    methods: [GET]
    path: /docs/{*rest}
    public: true
"#;

/// Request ids by kind, in the order sent.
#[derive(Default)]
struct Sent {
    orders_ok: Vec<String>,
    orders_other_tenant: Vec<String>,
    run_ok: Vec<String>,
    tokens: Vec<String>,
    all: Vec<String>,
}

fn send(env: &Env, sent: &mut Sent, method: &str, target: &str, token: Option<&str>) -> String {
    let rid = unique("rid");
    let resp = env.send_with_token(method, target, token, &[("x-request-id", rid.as_str())]);
    assert!(resp.status > 0, "{}", resp.describe());
    sent.all.push(rid.clone());
    rid
}

/// The traffic every test here replays: 13 requests, each decision kind at least once.
fn traffic(env: &Env) -> Sent {
    let mut s = Sent::default();
    let orders = env
        .keys
        .token()
        .scope("orders:read")
        .claim("tenant", json!("acme"))
        .sign();
    let run_job = env
        .keys
        .token()
        .scope("jobs:execute")
        .auth_time_ago(60)
        .claim("acr", json!("mfa"))
        .act_value(
            json!({"sub": "agent:ci-7", "exp": support::now() + 300, "iat": support::now() - 5}),
        )
        .sign();
    for _ in 0..4 {
        let r = send(env, &mut s, "GET", "/tenants/acme/orders", Some(&orders));
        s.orders_ok.push(r);
    }
    for _ in 0..2 {
        let r = send(env, &mut s, "GET", "/tenants/globex/orders", Some(&orders));
        s.orders_other_tenant.push(r);
    }
    for _ in 0..3 {
        let r = send(
            env,
            &mut s,
            "POST",
            "/tenants/acme/jobs/7/run",
            Some(&run_job),
        );
        s.run_ok.push(r);
    }
    send(env, &mut s, "POST", "/tenants/acme/jobs/7/run", None);
    send(env, &mut s, "GET", "/docs/intro", None);
    send(env, &mut s, "GET", "/nowhere", None);
    let forged = tamper_claims(&orders, |c| {
        c.insert("tenant".into(), json!("globex"));
    });
    send(env, &mut s, "GET", "/tenants/globex/orders", Some(&forged));
    s.tokens = vec![orders, run_job, forged];
    s
}

struct Recorded {
    env: Env,
    sent: Sent,
    log: PathBuf,
    config: String,
}

fn record() -> Recorded {
    record_with(ACTIONS)
}

fn record_with(actions: &str) -> Recorded {
    let env = Env::start(actions);
    let sent = traffic(&env);
    let lines = env.writ.wait_log_lines(sent.all.len());
    assert_eq!(lines.len(), sent.all.len());
    let log = env.writ.dir().join("yesterday.jsonl");
    fs::write(&log, env.writ.decision_log_text()).unwrap();
    let config = fs::read_to_string(env.writ.config_path()).unwrap();
    Recorded {
        env,
        sent,
        log,
        config,
    }
}

fn write_config(r: &Recorded, name: &str, text: &str) -> PathBuf {
    let p = r.env.writ.dir().join(name);
    fs::write(&p, text).unwrap();
    p
}

fn replay(config: &Path, logs: &[&Path], json: bool) -> Out {
    let mut c = writ();
    c.arg("replay").arg("--config").arg(config);
    if json {
        c.arg("--json");
    }
    c.args(logs);
    run(&mut c)
}

fn replay_json(config: &Path, logs: &[&Path]) -> (Out, Value) {
    let out = replay(config, logs, true);
    let v = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "replay --json must print one JSON object ({e})\n{}",
            out.dump()
        )
    });
    (out, v)
}

fn counts(v: &Value) -> [u64; 6] {
    [
        "total",
        "unchanged",
        "allow_to_deny",
        "deny_to_allow",
        "reason_changed",
        "not_replayable",
    ]
    .map(|k| v[k].as_u64().unwrap_or_else(|| panic!("no {k}: {v}")))
}

#[test]
fn the_same_config_replays_every_line_unchanged() {
    let r = record();
    let (out, v) = replay_json(r.env.writ.config_path(), &[&r.log]);
    out.expect_code(0);
    assert_eq!(counts(&v), [13, 13, 0, 0, 0, 0], "{v:#}");
    assert_eq!(v["changes"], json!([]));
}

#[test]
fn a_changed_rule_reports_exact_counts_and_the_first_examples() {
    let r = record();
    let changed = r
        .config
        .replace("scopes: [jobs:execute]", "scopes: [jobs:run]")
        .replace("scopes: [orders:read]", "scopes: [orders:read, orders:list]")
        .replace(
            "  - name: docs",
            "  - name: nowhere\n    methods: [GET]\n    path: /nowhere\n    public: true\n  - name: docs",
        );
    let new = write_config(&r, "new.yaml", &changed);
    let (out, v) = replay_json(&new, &[&r.log]);
    out.expect_code(1);
    // 4 orders + 3 runs refused now; /nowhere now public; the 2 other-tenant orders now fail
    // on scope before the claim; no token, docs and the forged token unchanged.
    assert_eq!(counts(&v), [13, 3, 7, 1, 2, 0], "{v:#}");
    let changes = v["changes"].as_array().unwrap();
    let find = |action: &str, from: &str| {
        changes
            .iter()
            .find(|c| c["action"] == json!(action) && c["from"]["reason"] == json!(from))
            .unwrap_or_else(|| panic!("no change {action} from {from}: {v:#}"))
    };
    let orders = find("read-orders", "allowed");
    assert_eq!(orders["count"], json!(4));
    assert_eq!(
        orders["from"],
        json!({"decision": "allow", "reason": "allowed"})
    );
    assert_eq!(
        orders["to"],
        json!({"decision": "deny", "reason": "insufficient_scope"})
    );
    assert_eq!(orders["examples"], json!(r.sent.orders_ok[..3]));
    let runs = find("run-job", "allowed");
    assert_eq!(runs["count"], json!(3));
    assert_eq!(runs["examples"], json!(r.sent.run_ok));
    let other = find("read-orders", "claim_mismatch");
    assert_eq!(other["count"], json!(2));
    assert_eq!(other["to"]["reason"], json!("insufficient_scope"));
    assert_eq!(other["examples"], json!(r.sent.orders_other_tenant));
    let nowhere = find("nowhere", "no_matching_action");
    assert_eq!(
        nowhere["to"],
        json!({"decision": "allow", "reason": "public"})
    );
    assert_eq!(changes.len(), 4, "{v:#}");
    // Most frequent first.
    assert_eq!(changes[0]["count"], json!(4));

    let text = replay(&new, &[&r.log], false);
    text.expect_code(1);
    assert!(
        text.stdout.contains("13 lines under",)
            && text.stdout.contains(
                "3 unchanged, 7 allow -> deny, 1 deny -> allow, 2 reason changed, 0 not replayable"
            ),
        "{}",
        text.dump()
    );
    assert!(
        text.stdout
            .contains("run-job: allow (allowed) -> deny (insufficient_scope)  x3"),
        "{}",
        text.dump()
    );
}

#[test]
fn an_audit_mode_rollout_is_proven_by_replaying_under_enforce() {
    // Recorded with read-orders in audit mode: the would-be denials were forwarded.
    let audit_actions = ACTIONS.replace(
        "      claims: { tenant: \"{tenant}\" }",
        "      claims: { tenant: \"{tenant}\" }\n    mode: audit",
    );
    let r = record_with(&audit_actions);
    let enforce = r.config.replace("\n    mode: audit", "");
    let enforce_cfg = write_config(&r, "enforce.yaml", &enforce);
    let (out, v) = replay_json(&enforce_cfg, &[&r.log]);
    out.expect_code(1);
    // The two other-tenant reads and the forged token would now be refused.
    assert_eq!(counts(&v), [13, 10, 3, 0, 0, 0], "{v:#}");
    let mismatch = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["from"]["reason"] == json!("claim_mismatch"))
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(
        mismatch["from"],
        json!({"decision": "audit_deny", "reason": "claim_mismatch"})
    );
    assert_eq!(
        mismatch["to"],
        json!({"decision": "deny", "reason": "claim_mismatch"})
    );
    assert_eq!(mismatch["examples"], json!(r.sent.orders_other_tenant));
    // And the audit config itself replays unchanged.
    let (out, v) = replay_json(r.env.writ.config_path(), &[&r.log]);
    out.expect_code(0);
    assert_eq!(counts(&v), [13, 13, 0, 0, 0, 0], "{v:#}");
}

#[test]
fn lines_the_log_cannot_decide_again_are_counted_not_guessed() {
    let r = record();
    let text = fs::read_to_string(&r.log).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let mut old = first.as_object().unwrap().clone();
    for k in ["credential", "scopes", "iat", "exp", "aud", "claims"] {
        old.remove(k);
    }
    let extra = format!("{}\nnot json at all\n\n{{\"ts\": 1}}\n", Value::Object(old));
    let more = r.env.writ.dir().join("older.jsonl");
    fs::write(&more, extra).unwrap();
    // A rule that binds a claim the log never recorded.
    let region = r.config.replace(
        "      claims: { tenant: \"{tenant}\" }",
        "      claims: { tenant: \"{tenant}\", region: eu }",
    );
    let region_cfg = write_config(&r, "region.yaml", &region);
    let (out, v) = replay_json(&region_cfg, &[&r.log, &more]);
    out.expect_code(0);
    // 6 read-orders lines need `region` (the 4 allowed and the 2 claim mismatches), plus the
    // old-format line and the two lines that are not decision-log lines.
    assert_eq!(counts(&v), [16, 7, 0, 0, 0, 9], "{v:#}");
    let text = replay(&region_cfg, &[&r.log, &more], false);
    let all = text.stdout.clone();
    assert!(
        all.contains("binds claim `region`, which the line does not record"),
        "{all}"
    );
    assert!(all.contains("written before the log recorded"), "{all}");
    assert!(all.contains(&format!("{}:2", more.display())), "{all}");

    // A file that does not exist is an error, not a report.
    let missing = r.env.writ.dir().join("missing.jsonl");
    let out = replay(r.env.writ.config_path(), &[&missing], true);
    out.expect_code(2);
    assert!(out.stderr.contains("missing.jsonl"), "{}", out.dump());
}

fn explain_line(config: &Path, line: &str, json: bool) -> Out {
    let mut c = writ();
    c.arg("explain").arg("--config").arg(config);
    if json {
        c.arg("--json");
    }
    run(c.arg("--log-line").arg(line))
}

#[test]
fn explain_log_line_shows_why_a_logged_request_was_denied() {
    let r = record();
    let text = fs::read_to_string(&r.log).unwrap();
    let rid = &r.sent.orders_other_tenant[0];
    let line = text.lines().find(|l| l.contains(rid.as_str())).unwrap();
    let out = explain_line(r.env.writ.config_path(), line, false);
    out.expect_code(1);
    assert!(
        out.stdout
            .contains("logged      deny (claim_mismatch) on read-orders"),
        "{}",
        out.dump()
    );
    assert!(out.stdout.contains("[FAIL] authorize"), "{}", out.dump());
    assert!(
        out.stdout.contains("decision    deny: 403 claim_mismatch"),
        "{}",
        out.dump()
    );
    let out = explain_line(r.env.writ.config_path(), line, true);
    out.expect_code(1);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["reason"], json!("claim_mismatch"));
    assert_eq!(v["logged"]["request_id"], json!(rid));
    assert_eq!(v["action"]["name"], json!("read-orders"));
    // An allowed run-job line is allowed again (the delegation and step-up facts were logged).
    let rid = &r.sent.run_ok[0];
    let line = text.lines().find(|l| l.contains(rid.as_str())).unwrap();
    let out = explain_line(r.env.writ.config_path(), line, false);
    out.expect_code(0);
    // Not a decision-log line: a usage error.
    let out = explain_line(r.env.writ.config_path(), "{\"nope\": 1}", false);
    out.expect_code(2);
    assert!(
        out.stderr.contains("not a decision-log line"),
        "{}",
        out.dump()
    );
}

#[test]
fn the_log_records_what_decisions_rest_on_and_never_a_token() {
    let r = record();
    let text = fs::read_to_string(&r.log).unwrap();
    for t in &r.sent.tokens {
        let sig = t.rsplit('.').next().unwrap();
        let payload = t.split('.').nth(1).unwrap();
        assert!(!text.contains(sig), "a signature reached the log");
        assert!(!text.contains(payload), "a token payload reached the log");
    }
    let line = |rid: &str| -> Value {
        serde_json::from_str(text.lines().find(|l| l.contains(rid)).unwrap()).unwrap()
    };
    let orders = line(&r.sent.orders_ok[0]);
    assert_eq!(orders["credential"], json!("verified"));
    assert_eq!(orders["scopes"], json!(["orders:read"]));
    assert!(orders["iat"].is_i64() && orders["exp"].is_i64(), "{orders}");
    assert_eq!(orders["aud"], json!([support::AUDIENCE]));
    assert_eq!(orders["claims"], json!({"tenant": "acme"}));
    for absent in ["auth_time", "acr", "act_iat", "act_exp"] {
        assert!(orders.get(absent).is_none(), "{absent}: {orders}");
    }
    let run_job = line(&r.sent.run_ok[0]);
    assert_eq!(run_job["actor_chain"], json!(["agent:ci-7"]));
    for present in ["auth_time", "act_iat", "act_exp"] {
        assert!(run_job[present].is_i64(), "{present}: {run_job}");
    }
    assert_eq!(run_job["acr"], json!("mfa"));
    // A claim the policy binds is recorded even when the token lacks it.
    assert_eq!(run_job["claims"], json!({"tenant": null}));
    let kinds: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["credential"].clone())
        .collect();
    for k in ["verified", "none", "rejected"] {
        assert!(kinds.contains(&json!(k)), "no {k} line: {kinds:?}");
    }
}
