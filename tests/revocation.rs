//! Revocation (SPEC "Revocation and continuous evaluation"): the file store and a real
//! Redis shared by two replicas, driven by `writ revoke`; a revoked token (cached or not) is
//! refused on its very next use with 401 `token_revoked`; the last good set survives a bad
//! file and a Redis outage; a replica is not ready before its first load; the decision log
//! names the entry's kind, never a token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::{
    Config, Env, Redis, Writ, eventually, eventually_within, free_port, metric_value, run, tempdir,
    try_request, writ,
};

const ACTIONS: &str = r#"
  - name: read
    methods: [GET]
    path: /items/{id}
    require: { scopes: [items:read] }
  - name: agent-read
    methods: [GET]
    path: /agent/items/{id}
    require: { scopes: [items:read] }
    delegation: { mode: allow, max_depth: 3, max_age: 1h }
"#;

fn token(env: &Env, sub: &str) -> String {
    env.keys.token().sub(sub).scope("items:read").sign()
}

fn status(env: &Env, token: &str) -> u16 {
    env.get("/items/1", Some(token)).status
}

fn revoke(config: &Path, args: &[&str]) -> support::Out {
    run(writ().arg("revoke").arg("--config").arg(config).args(args))
}

/// A revocation file outside writ's own dir (it must exist before writ starts).
fn revoked_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let p = dir.path().join("revoked.yaml");
    fs::write(&p, "revoked: []\n").unwrap();
    (dir, p)
}

fn file_env(file: &Path) -> Env {
    Env::with_config(
        &Config::new(ACTIONS).set("revocation", &format!("{{ file: \"{}\" }}", file.display())),
    )
}

#[test]
fn a_revoked_token_is_refused_on_its_next_use_even_when_cached() {
    let (_d, file) = revoked_file();
    let env = file_env(&file);
    let alice = token(&env, "alice");
    let bob = token(&env, "bob");
    // Verified once, then served from the verified-token cache.
    assert_eq!(status(&env, &alice), 200);
    assert_eq!(status(&env, &alice), 200);

    let out = revoke(env.writ.config_path(), &["--sub", "alice"]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), r#"{"sub":"alice"}"#);
    assert!(
        eventually(|| (status(&env, &alice) == 401).then_some(())).is_some(),
        "alice still allowed\n{}",
        env.writ.stderr()
    );
    env.backend.clear();
    let refused = env.get("/items/1", Some(&alice));
    refused.assert_invalid_token("token_revoked");
    let challenge = refused.header("www-authenticate").unwrap_or("").to_string();
    assert!(
        challenge.contains(r#"error_description="token revoked""#),
        "{challenge}"
    );
    env.backend.assert_untouched();
    assert_eq!(status(&env, &bob), 200, "only alice is revoked");

    // The log names the entry's kind and who was refused, never the token.
    let rid = "rid-revoked-1";
    let r = env.send_with_token("GET", "/items/1", Some(&alice), &[("x-request-id", rid)]);
    assert_eq!(r.status, 401);
    let line = env.writ.log_line_for(rid);
    assert_eq!(line["reason"], json!("token_revoked"), "{line}");
    assert_eq!(line["revocation"], json!("sub"), "{line}");
    assert_eq!(line["credential"], json!("rejected"), "{line}");
    assert_eq!(line["subject"], json!("alice"), "{line}");
    let text = env.writ.decision_log_text();
    assert!(
        !text.contains(alice.rsplit('.').next().unwrap()),
        "signature in the log"
    );

    let list = revoke(env.writ.config_path(), &["--list"]);
    list.expect_code(0);
    assert_eq!(list.stdout.trim(), r#"{"sub":"alice"}"#);
    revoke(env.writ.config_path(), &["--remove", "--sub", "alice"]).expect_code(0);
    assert!(
        eventually(|| (status(&env, &alice) == 200).then_some(())).is_some(),
        "alice not allowed again after --remove"
    );
    revoke(env.writ.config_path(), &["--remove", "--sub", "alice"]).expect_code(1);
}

#[test]
fn entry_kinds_match_as_spec_says() {
    let (_d, file) = revoked_file();
    let env = file_env(&file);
    let cfg = env.writ.config_path().to_path_buf();
    let agent_for_alice = env
        .keys
        .token()
        .sub("alice")
        .scope("items:read")
        .act_chain(&["agent:ci-7", "svc:planner"])
        .sign();
    let old = env
        .keys
        .token()
        .sub("carol")
        .scope("items:read")
        .iat_ago(3600)
        .sign();
    let fresh = token(&env, "carol");
    let with_jti = env
        .keys
        .token()
        .sub("dave")
        .scope("items:read")
        .claim("jti", json!("t-42"))
        .sign();
    let allowed = |t: &str| status(&env, t) == 200;
    let agent_allowed = |t: &str| env.get("/agent/items/1", Some(t)).status == 200;
    assert!(allowed(&old) && allowed(&fresh) && allowed(&with_jti));
    assert!(agent_allowed(&agent_for_alice));

    // An actor anywhere in the chain; then a (sub, actor) pair that names another person.
    revoke(&cfg, &["--sub", "bob", "--actor", "agent:ci-7"]).expect_code(0);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        agent_allowed(&agent_for_alice),
        "the pair names bob, not alice"
    );
    revoke(&cfg, &["--actor", "svc:planner"]).expect_code(0);
    assert!(
        eventually(|| (!agent_allowed(&agent_for_alice)).then_some(())).is_some(),
        "a prior actor in the chain must match"
    );

    // "log out everywhere" for carol: tokens issued before now.
    let cut =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(60))
            .to_string();
    revoke(&cfg, &["--sub", "carol", "--issued-before", &cut]).expect_code(0);
    revoke(&cfg, &["--jti", "t-42"]).expect_code(0);
    assert!(
        eventually(|| (!allowed(&old) && !allowed(&with_jti)).then_some(())).is_some(),
        "old carol token and jti t-42 not refused"
    );
    assert!(
        allowed(&fresh),
        "a token issued after the cut-off stays valid"
    );
    // An entry that has lapsed no longer matches.
    let past =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(1))
            .to_string();
    revoke(&cfg, &["--sub", "bob", "--until", &past]).expect_code(0);
    let bob = token(&env, "bob");
    std::thread::sleep(Duration::from_millis(600));
    assert!(allowed(&bob));
}

#[test]
fn a_bad_revocation_file_keeps_the_last_good_set() {
    let (_d, file) = revoked_file();
    let env = file_env(&file);
    let alice = token(&env, "alice");
    revoke(env.writ.config_path(), &["--sub", "alice"]).expect_code(0);
    assert!(eventually(|| (status(&env, &alice) == 401).then_some(())).is_some());
    let failures = || {
        metric_value(
            &env.writ.metrics(),
            "writ_config_reloads_total",
            &[("result", "failure")],
        )
        .unwrap_or(0.0)
    };
    let before = failures();
    fs::write(
        &file,
        "revoked:\n  - { sub: alice }\n  - { until: 2030-01-01T00:00:00Z }\n",
    )
    .unwrap();
    assert!(
        eventually(|| (failures() > before).then_some(())).is_some(),
        "a bad entry must fail the reload\n{}",
        env.writ.stderr()
    );
    assert!(
        env.writ.stderr().contains("revoked.yaml:3:5"),
        "the error names the bad entry's position\n{}",
        env.writ.stderr()
    );
    assert_eq!(status(&env, &alice), 401, "the last good set keeps serving");
    let check = run(writ()
        .arg("check")
        .arg("--config")
        .arg(env.writ.config_path()));
    check.expect_code(1);
    assert!(
        check
            .stderr
            .contains(&format!("{}:3:5: an entry must name", file.display())),
        "{}",
        check.dump()
    );
}

// === Redis ===

fn redis_config(url: &str) -> Config {
    Config::new(ACTIONS).set("revocation", &format!("{{ redis: \"{url}\" }}"))
}

fn gauge(w: &Writ, name: &str) -> Option<f64> {
    metric_value(&w.metrics(), name, &[])
}

#[test]
fn a_revocation_in_redis_reaches_every_replica_within_a_second() {
    let redis = Redis::start_on(free_port());
    let a = Env::with_config(&redis_config(&redis.url()));
    let b = Env::with_config(&redis_config(&redis.url()));
    let (ta, tb) = (token(&a, "alice"), token(&b, "alice"));
    assert_eq!((status(&a, &ta), status(&b, &tb)), (200, 200));
    assert_eq!(gauge(&a.writ, "writ_revocation_store_up"), Some(1.0));
    assert_eq!(gauge(&a.writ, "writ_revocation_entries"), Some(0.0));

    // Revoked through replica a's config; both replicas follow the store.
    revoke(a.writ.config_path(), &["--sub", "alice"]).expect_code(0);
    let both = eventually_within(Duration::from_secs(1), || {
        (status(&a, &ta) == 401 && status(&b, &tb) == 401).then_some(())
    });
    assert!(both.is_some(), "not refused by both replicas within 1 s");
    assert_eq!(gauge(&b.writ, "writ_revocation_entries"), Some(1.0));
    let list = revoke(b.writ.config_path(), &["--list"]);
    assert_eq!(list.stdout.trim(), r#"{"sub":"alice"}"#, "{}", list.dump());

    // Redis goes away: the last loaded set keeps serving, and the gauge says so.
    let port = redis.port;
    drop(redis);
    assert!(
        eventually(|| (gauge(&a.writ, "writ_revocation_store_up") == Some(0.0)).then_some(()))
            .is_some(),
        "store_up stays 1 with Redis gone"
    );
    assert_eq!((status(&a, &ta), status(&b, &tb)), (401, 401));
    assert!(
        try_request(a.writ.admin_addr(), "GET", "/readyz", &[], b"")
            .unwrap()
            .status
            == 200,
        "a replica stays ready on its last set"
    );

    // Redis comes back empty: after the reconnect the whole set is loaded again, so the
    // replicas hold what the store holds (nothing), and new revocations flow again.
    let redis = Redis::start_on(port);
    assert!(
        eventually(|| (gauge(&a.writ, "writ_revocation_store_up") == Some(1.0)
            && status(&a, &ta) == 200
            && status(&b, &tb) == 200)
            .then_some(()))
        .is_some(),
        "replicas did not reload the store after it came back\n{}",
        a.writ.stderr()
    );
    revoke(b.writ.config_path(), &["--sub", "alice"]).expect_code(0);
    assert!(
        eventually_within(Duration::from_secs(1), || (status(&a, &ta) == 401)
            .then_some(()))
        .is_some()
    );
    revoke(a.writ.config_path(), &["--remove", "--sub", "alice"]).expect_code(0);
    assert!(
        eventually_within(Duration::from_secs(1), || (status(&b, &tb) == 200)
            .then_some(()))
        .is_some()
    );
    drop(redis);
}

#[test]
fn a_replica_is_not_ready_before_its_first_load_of_the_store() {
    let port = free_port();
    let keys = support::Keys::new();
    let backend = support::Backend::start();
    let w = Writ::spawn(
        &redis_config(&format!("redis://127.0.0.1:{port}/0")).render(),
        &backend.url(),
        &keys,
    );
    std::thread::sleep(Duration::from_millis(800));
    let r = try_request(w.admin_addr(), "GET", "/readyz", &[], b"").unwrap();
    assert_eq!(r.status, 503, "ready without the revocation set");
    // Fail closed, also for a client that ignores readiness: nothing is decided yet.
    let token = keys.token().scope("items:read").sign();
    let mut c = support::RawConn::connect(w.addr()).unwrap();
    c.set_read_timeout(Duration::from_millis(500)).unwrap();
    c.send(
        format!("GET /items/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    assert!(
        c.read_response(false).is_err(),
        "answered before the set loaded"
    );
    assert_eq!(backend.count(), 0);
    let _redis = Redis::start_on(port);
    w.wait_ready(Duration::from_secs(10)).unwrap();
}

#[test]
fn explain_shows_the_entry_that_revokes_a_token() {
    let (dir, file) = revoked_file();
    let env = file_env(&file);
    revoke(
        env.writ.config_path(),
        &["--sub", "alice", "--issuer", support::ISSUER],
    )
    .expect_code(0);
    let claims: Value = json!({"iss": support::ISSUER, "aud": support::AUDIENCE, "sub": "alice",
        "scope": "items:read", "exp": 4102444800u64});
    let c = dir.path().join("claims.json");
    fs::write(&c, claims.to_string()).unwrap();
    let out = run(writ()
        .arg("explain")
        .arg("--config")
        .arg(env.writ.config_path())
        .args(["--method", "GET", "--path", "/items/1", "--claims"])
        .arg(&c));
    out.expect_code(1);
    assert!(
        out.stdout.contains(&format!(
            r#"revoked by  {{"sub":"alice","issuer":"{}"}}"#,
            support::ISSUER
        )),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.contains("decision    deny: 401 token_revoked"),
        "{}",
        out.dump()
    );
}

#[test]
fn revoking_and_unrevoking_by_editing_the_file() {
    let (_d, file) = revoked_file();
    let env = file_env(&file);
    let alice = token(&env, "alice");
    let bob = token(&env, "bob");
    assert_eq!(status(&env, &alice), 200);
    // An operator's edit, comments and all.
    fs::write(&file, "# incident 4711\nrevoked:\n  - { sub: alice }\n").unwrap();
    assert!(eventually(|| (status(&env, &alice) == 401).then_some(())).is_some());
    assert_eq!(status(&env, &bob), 200);
    fs::write(&file, "revoked: []\n").unwrap();
    assert!(eventually(|| (status(&env, &alice) == 200).then_some(())).is_some());
    // An issuer entry cuts off every token of that issuer.
    fs::write(
        &file,
        format!("revoked:\n  - {{ issuer: \"{}\" }}\n", support::ISSUER),
    )
    .unwrap();
    assert!(
        eventually(|| (status(&env, &alice) == 401 && status(&env, &bob) == 401).then_some(()))
            .is_some()
    );
}
