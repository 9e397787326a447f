//! Live reload (SPEC "Operations: Reload", "Settled questions: Config"): SIGHUP and changes of
//! the config file or a key file it names (in-place writes, atomic renames, Kubernetes
//! ConfigMap `..data` symlink swaps) swap the config atomically; an invalid config is refused
//! with `FILE:LINE:COL` errors and the old config keeps serving; no request fails because of a
//! reload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::{
    Config, Env, Keys, RawResponse, Writ, eventually_within, try_request, write_atomically,
};

/// How long a file change may take to be in force (the brief: "~1 s"; writ polls every 500 ms).
const EFFECTIVE_WITHIN: Duration = Duration::from_millis(1500);

const BASE: &str = r#"
  - name: items
    methods: [GET]
    path: /items/{id}
    require: { scopes: [items:read] }
"#;

const WITH_REPORTS: &str = r#"
  - name: items
    methods: [GET]
    path: /items/{id}
    require: { scopes: [items:read] }
  - name: reports
    methods: [GET]
    path: /reports/{id}
    require: { scopes: [reports:read] }
"#;

const SCOPES: &str = "items:read reports:read";

fn generation(w: &Writ) -> f64 {
    w.metric("writ_config_generation", &[])
}

fn reloads(w: &Writ, result: &str) -> f64 {
    w.metric("writ_config_reloads_total", &[("result", result)])
}

/// The rendered (placeholders filled) config text with these actions, for this writ.
fn text_for(env: &Env, actions: &str) -> String {
    env.writ.fill(
        &Config::new(actions).render(),
        &env.backend.url(),
        &env.keys,
    )
}

/// Before the reload: `/reports/1` matches no action.
#[track_caller]
fn assert_reports_unmatched(env: &Env, token: &str) {
    env.backend.clear();
    let r = env.get("/reports/1", Some(token));
    r.assert_problem_action(403, "no_matching_action", None);
    env.backend.assert_untouched();
}

/// After the reload: `/reports/1` is classified as `reports`, allowed, and reaches the backend
/// within [`EFFECTIVE_WITHIN`] of `since`.
#[track_caller]
fn assert_reports_allowed_soon(env: &Env, token: &str, since: Instant) {
    let mut last: Option<RawResponse> = None;
    let ok = eventually_within(EFFECTIVE_WITHIN, || {
        let r = env.get("/reports/1", Some(token));
        let done = r.status == 200;
        last = Some(r);
        done.then_some(())
    });
    assert!(
        ok.is_some(),
        "the new rule was not in force {:?} after the change; last answer: {}\n--- stderr ---\n{}",
        since.elapsed(),
        last.map(|r| r.describe()).unwrap_or_default(),
        env.writ.stderr()
    );
    let r = last.unwrap();
    assert_eq!(r.body, b"backend-ok", "{}", r.describe());
    let seen = env
        .backend
        .requests()
        .into_iter()
        .rfind(|q| q.path() == "/reports/1")
        .expect("the allowed request reached the backend");
    assert_eq!(
        seen.header("x-writ-action"),
        Some("reports"),
        "identity header names the new action: {seen:#?}"
    );
}

/// One successful reload: generation 1 → 2, success counter 1, no restart needed, and the
/// "Config reloaded" log line naming the added action.
#[track_caller]
fn assert_one_successful_reload(env: &Env) {
    env.writ
        .assert_metric("writ_config_reloads_total", &[("result", "success")], 1.0);
    env.writ.assert_metric("writ_config_generation", &[], 2.0);
    let ok = eventually_within(Duration::from_secs(2), || {
        let err = env.writ.stderr();
        err.lines()
            .any(|l| l.contains("Config reloaded") && l.contains("reports"))
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "expected an info line \"Config reloaded\" naming the added action; stderr:\n{}",
        env.writ.stderr()
    );
    // Still the same process, still answering the old routes.
    let items = env.get("/items/1", Some(&env.token(SCOPES)));
    assert_eq!(items.status, 200, "{}", items.describe());
}

fn start_base() -> (Env, String) {
    let env = Env::start(BASE);
    assert_eq!(generation(&env.writ), 1.0, "generation starts at 1");
    let token = env.token(SCOPES);
    assert_reports_unmatched(&env, &token);
    (env, token)
}

// === triggers ===

/// A write that lands between the startup load and the watcher's first look (the moment
/// readiness turns green) is applied, not mistaken for the file the process loaded.
#[test]
fn a_write_right_after_startup_is_picked_up() {
    let env = Env::start(BASE);
    let text = text_for(&env, WITH_REPORTS);
    fs::write(env.writ.config_path(), text).unwrap();
    let since = Instant::now();
    let token = env.token(SCOPES);
    assert_reports_allowed_soon(&env, &token, since);
    assert_one_successful_reload(&env);
}

#[test]
fn in_place_write_of_the_config_file_is_picked_up() {
    let (env, token) = start_base();
    let text = text_for(&env, WITH_REPORTS);
    // Truncate + write the same inode (an editor saving in place, `cat > file`).
    fs::write(env.writ.config_path(), text).unwrap();
    let since = Instant::now();
    assert_reports_allowed_soon(&env, &token, since);
    assert_one_successful_reload(&env);
}

#[test]
fn atomic_rename_over_the_config_file_is_picked_up() {
    let (env, token) = start_base();
    let text = text_for(&env, WITH_REPORTS);
    write_atomically(env.writ.config_path(), &text);
    let since = Instant::now();
    assert_reports_allowed_soon(&env, &token, since);
    assert_one_successful_reload(&env);
    assert_eq!(reloads(&env.writ, "failure"), 0.0, "no failed reload");
}

/// `BASE` padded with a YAML comment so that its rendered config has exactly the length of
/// `WITH_REPORTS`'s.
fn base_padded_to_reports_length() -> String {
    let target = Config::new(WITH_REPORTS).render().len();
    let unpadded = Config::new(&format!("{BASE}  #\n")).render().len();
    let padded = format!("{BASE}  #{}\n", "x".repeat(target - unpadded));
    assert_eq!(Config::new(&padded).render().len(), target);
    padded
}

#[test]
fn same_size_same_mtime_rewrite_is_seen_by_its_content_then_sighup_reloads_again() {
    let env = Env::start(&base_padded_to_reports_length());
    let token = env.token(SCOPES);
    assert_reports_unmatched(&env, &token);
    let path = env.writ.config_path().to_path_buf();
    let text = text_for(&env, WITH_REPORTS);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(
        meta.len(),
        text.len() as u64,
        "same size as the running config"
    );
    // Rewrite in place (same inode, same size) and put the old mtime back, as two writes
    // within one tick of the kernel's coarse file clock do: only the content tells the
    // versions apart, and the poller reads it (round two: a valid file is never left unapplied).
    fs::write(&path, &text).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(meta.modified().unwrap())
        .unwrap();
    let since = Instant::now();
    assert_reports_allowed_soon(&env, &token, since);
    assert_one_successful_reload(&env);
    // SIGHUP reloads too, whatever the file looks like.
    env.writ.signal("HUP");
    let ok = eventually_within(Duration::from_secs(2), || {
        (generation(&env.writ) == 3.0).then_some(())
    });
    assert!(
        ok.is_some(),
        "SIGHUP did not reload:\n{}",
        env.writ.stderr()
    );
    assert_eq!(reloads(&env.writ, "success"), 2.0);
    assert_eq!(reloads(&env.writ, "failure"), 0.0);
}

#[test]
fn sighup_with_an_unchanged_file_reloads_by_signal_alone() {
    // A file poller cannot be fooled into missing a change, so the signal path is isolated
    // here: SIGHUP with the file untouched still re-reads and swaps (generation +1, success +1)
    // and keeps serving the same rules.
    let (env, token) = start_base();
    thread::sleep(Duration::from_millis(600));
    assert_eq!(generation(&env.writ), 1.0);
    env.writ.signal("HUP");
    env.writ.assert_metric("writ_config_generation", &[], 2.0);
    env.writ
        .assert_metric("writ_config_reloads_total", &[("result", "success")], 1.0);
    let r = env.get("/items/1", Some(&token));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_reports_unmatched(&env, &token);
    assert!(
        env.writ.try_exit_status().is_none(),
        "SIGHUP must not stop writ"
    );
}

/// Kubernetes ConfigMap volume layout:
/// `config.yaml -> ..data/config.yaml`, `..data -> ..2026_01_01_00_00_00.000000001`.
fn configmap_place(dir: &Path, text: &str) -> PathBuf {
    let cm = dir.join("cm");
    let version = cm.join("..2026_01_01_00_00_00.000000001");
    fs::create_dir_all(&version).unwrap();
    fs::write(version.join("config.yaml"), text).unwrap();
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.000000001", cm.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/config.yaml", cm.join("config.yaml")).unwrap();
    cm.join("config.yaml")
}

#[test]
fn configmap_symlink_swap_is_picked_up() {
    let keys = Keys::new();
    let backend = support::Backend::start();
    let writ = Writ::start_placed(
        &Config::new(BASE).render(),
        &backend.url(),
        &keys,
        &configmap_place,
    );
    let env = Env {
        writ,
        backend,
        keys,
    };
    let token = env.token(SCOPES);
    assert_reports_unmatched(&env, &token);
    assert!(
        fs::symlink_metadata(env.writ.config_path())
            .unwrap()
            .file_type()
            .is_symlink(),
        "writ runs from the symlink"
    );

    // What kubelet does: write the new version dir, point a temp symlink at it, rename the temp
    // symlink over `..data` (atomic), then delete the old version dir.
    let cm = env.writ.config_path().parent().unwrap().to_path_buf();
    let new_version = cm.join("..2026_01_01_00_05_00.000000002");
    fs::create_dir_all(&new_version).unwrap();
    fs::write(
        new_version.join("config.yaml"),
        text_for(&env, WITH_REPORTS),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_01_01_00_05_00.000000002", cm.join("..data_tmp")).unwrap();
    fs::rename(cm.join("..data_tmp"), cm.join("..data")).unwrap();
    let since = Instant::now();
    fs::remove_dir_all(cm.join("..2026_01_01_00_00_00.000000001")).unwrap();

    assert_reports_allowed_soon(&env, &token, since);
    assert_one_successful_reload(&env);
    assert_eq!(reloads(&env.writ, "failure"), 0.0, "no failed reload");
}

// === invalid config ===

#[test]
fn invalid_config_is_refused_old_rules_keep_serving_then_a_fix_recovers() {
    let (env, token) = start_base();
    let valid = text_for(&env, WITH_REPORTS);
    // Two semantic problems at known positions, appended after a valid config.
    let first_bad = valid.lines().count() + 1;
    let invalid =
        format!("{valid}shutdown_grace: \"soon\"\nidentity_headers:\n  subject: \"bad header\"\n");
    let path = env.writ.config_path().to_path_buf();
    write_atomically(&path, &invalid);

    env.writ
        .assert_metric("writ_config_reloads_total", &[("result", "failure")], 1.0);
    // The old config keeps serving: still generation 1, `/reports` still unmatched, `/items` ok.
    assert_eq!(
        generation(&env.writ),
        1.0,
        "a refused config is no generation"
    );
    assert_eq!(reloads(&env.writ, "success"), 0.0);
    assert_reports_unmatched(&env, &token);
    let r = env.get("/items/1", Some(&token));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        env.writ.try_exit_status().is_none(),
        "an invalid reload must not stop writ"
    );

    // One error line per problem, each naming FILE:LINE:COL of the offending value.
    let stderr = env.writ.stderr();
    let file = path.display().to_string();
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("error"))
        .filter(|l| l.contains(&format!("{file}:")))
        .collect();
    let grace_at = format!("{file}:{first_bad}:17:");
    let header_at = format!("{file}:{}:12:", first_bad + 2);
    assert!(
        error_lines.iter().any(|l| l.contains(&grace_at)),
        "expected an error line with {grace_at:?} (the bad duration); stderr:\n{stderr}"
    );
    assert!(
        error_lines.iter().any(|l| l.contains(&header_at)),
        "expected an error line with {header_at:?} (the bad header name); stderr:\n{stderr}"
    );
    assert_eq!(
        error_lines.len(),
        2,
        "one error line per problem; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("Config reloaded"),
        "nothing was reloaded; stderr:\n{stderr}"
    );

    // Fixing the file recovers.
    write_atomically(&path, &valid);
    let since = Instant::now();
    assert_reports_allowed_soon(&env, &token, since);
    env.writ
        .assert_metric("writ_config_reloads_total", &[("result", "success")], 1.0);
    env.writ.assert_metric("writ_config_generation", &[], 2.0);
    assert_eq!(reloads(&env.writ, "failure"), 1.0);
}

#[test]
fn unparseable_yaml_is_refused_with_its_position() {
    let (env, token) = start_base();
    let valid = text_for(&env, BASE);
    let bad_line = valid.lines().count() + 1;
    let invalid = format!("{valid}surprise_key: 1\n");
    let path = env.writ.config_path().to_path_buf();
    write_atomically(&path, &invalid);
    env.writ
        .assert_metric("writ_config_reloads_total", &[("result", "failure")], 1.0);
    assert_eq!(generation(&env.writ), 1.0);
    let stderr = env.writ.stderr();
    let at = format!("{}:{bad_line}:", path.display());
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&at) && l.contains("surprise_key")),
        "expected an error naming {at:?}LINE:COL and the unknown key; stderr:\n{stderr}"
    );
    let r = env.get("/items/1", Some(&token));
    assert_eq!(r.status, 200, "old config keeps serving: {}", r.describe());
}

// === listeners ===

#[test]
fn listener_change_needs_a_restart_and_the_rest_of_the_reload_applies() {
    let (env, token) = start_base();
    let other = support::closed_port_addr();
    let text = text_for(&env, WITH_REPORTS).replace(
        &format!("listen: \"{}\"", env.writ.addr()),
        &format!("listen: \"{other}\""),
    );
    assert!(text.contains(&other.to_string()), "listen was replaced");
    write_atomically(env.writ.config_path(), &text);
    let since = Instant::now();
    assert_reports_allowed_soon(&env, &token, since);
    env.writ.assert_metric("writ_config_generation", &[], 2.0);
    let stderr = env.writ.stderr();
    assert!(
        stderr.lines().any(|l| l.contains("restart")),
        "a listener change is logged as needing a restart; stderr:\n{stderr}"
    );
    assert!(
        try_request(other, "GET", "/items/1", &[], b"").is_err(),
        "the new listen address is not bound before a restart"
    );
}

// === key files ===

#[test]
fn key_file_rotation_accepts_the_new_key_and_refuses_the_old_one_even_when_cached() {
    let (env, _) = start_base();
    let old = env.token(SCOPES);
    for _ in 0..2 {
        // Twice: the second answer comes from the verified-token cache.
        let r = env.get("/items/1", Some(&old));
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    let new = env
        .keys
        .token()
        .kid("key-2")
        .signed_by_rogue()
        .scope(SCOPES)
        .sign();
    env.get("/items/1", Some(&new))
        .assert_invalid_token("unknown_key");

    // Rotate: the JWKS file now holds only the new key.
    env.keys.write_jwks(&[env.keys.rogue_jwk("key-2")]);
    let ok = eventually_within(EFFECTIVE_WITHIN, || {
        (env.get("/items/1", Some(&new)).status == 200).then_some(())
    });
    assert!(
        ok.is_some(),
        "token of the new key not accepted after the key file changed; stderr:\n{}",
        env.writ.stderr()
    );
    env.writ
        .assert_metric_at_least("writ_config_generation", &[], 2.0);
    env.get("/items/1", Some(&old))
        .assert_invalid_token("unknown_key");
    env.get("/items/1", Some(&env.token(SCOPES)))
        .assert_invalid_token("unknown_key");
    let r = env.get("/items/1", Some(&new));
    assert_eq!(r.status, 200, "{}", r.describe());
}

// === under load ===

const RELOADS: usize = 20;

const LOAD_A: &str = r#"
  - name: items
    methods: [GET]
    path: /items/{id}
    require: { scopes: [items:read] }
"#;

// Same decisions, different action name and rule shape.
const LOAD_B: &str = r#"
  - name: items-v2
    methods: [GET, HEAD]
    path: /items/{id}
    require: { any_scope: [items:read, items:admin] }
  - name: unrelated
    methods: [POST]
    path: /unrelated
    public: true
"#;

#[derive(Default)]
struct LoadReport {
    sent: usize,
    failures: Vec<String>,
}

fn load_client(env: &Env, token: &str, stop: &AtomicBool) -> LoadReport {
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut rep = LoadReport::default();
    let auth = format!("Bearer {token}");
    while rep.sent < 6000 && Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        let i = rep.sent;
        rep.sent += 1;
        // Mostly allowed requests; every 5th has no token, every 7th matches no action.
        let (target, headers, want, reason): (String, Vec<(&str, &str)>, u16, &str) = if i % 7 == 3
        {
            (
                format!("/nothing/{i}"),
                vec![("Authorization", auth.as_str())],
                403,
                "no_matching_action",
            )
        } else if i % 5 == 4 {
            (format!("/items/{i}"), Vec::new(), 401, "no_token")
        } else {
            (
                format!("/items/{i}"),
                vec![("Authorization", auth.as_str())],
                200,
                "",
            )
        };
        match try_request(env.writ.addr(), "GET", &target, &headers, b"") {
            Ok(r) if r.status == want => {
                if want != 200 {
                    let body = r.json();
                    if body.get("reason").and_then(|v| v.as_str()) != Some(reason) {
                        rep.failures
                            .push(format!("{target}: wrong reason: {}", r.describe()));
                    }
                } else if r.body != b"backend-ok" {
                    rep.failures.push(format!(
                        "{target}: not the backend's answer: {}",
                        r.describe()
                    ));
                }
            }
            Ok(r) => rep
                .failures
                .push(format!("{target}: expected {want}, got {}", r.describe())),
            Err(e) => rep.failures.push(format!("{target}: no response: {e}")),
        }
    }
    rep
}

#[test]
fn twenty_reloads_under_load_fail_no_request_and_change_no_decision() {
    let env = Arc::new(Env::start(LOAD_A));
    let token = env.token("items:read");
    let texts = [text_for(&env, LOAD_A), text_for(&env, LOAD_B)];
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let env = Arc::clone(&env);
            let token = token.clone();
            let stop = Arc::clone(&stop);
            thread::spawn(move || load_client(&env, &token, &stop))
        })
        .collect();

    let started = Instant::now();
    let mut gen_now = generation(&env.writ);
    let mut reload_errors = Vec::new();
    for n in 0..RELOADS {
        write_atomically(env.writ.config_path(), &texts[(n + 1) % 2]);
        env.writ.signal("HUP");
        // Wait for this reload to be in force before the next one.
        let before = gen_now;
        match eventually_within(Duration::from_secs(2), || {
            let g = generation(&env.writ);
            (g > before).then_some(g)
        }) {
            Some(g) => gen_now = g,
            None => reload_errors.push(format!("reload {n} never took effect")),
        }
        thread::sleep(Duration::from_millis(60));
    }
    let reload_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let reports: Vec<LoadReport> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let sent: usize = reports.iter().map(|r| r.sent).sum();
    let failures: Vec<&String> = reports.iter().flat_map(|r| &r.failures).collect();

    eprintln!("{sent} requests during {RELOADS} reloads in {reload_time:?}");
    assert!(reload_errors.is_empty(), "{reload_errors:?}");
    assert!(
        sent >= 200,
        "the load must overlap the reloads ({sent} requests in {reload_time:?})"
    );
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed or got a wrong decision during {RELOADS} reloads; first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let success = reloads(&env.writ, "success");
    assert!(
        success >= RELOADS as f64,
        "at least {RELOADS} successful reloads, got {success}"
    );
    assert_eq!(reloads(&env.writ, "failure"), 0.0, "no reload failed");
    assert_eq!(
        generation(&env.writ),
        1.0 + success,
        "each successful reload is one generation"
    );
    // Every allowed request reached the backend named by one of the two configs' actions.
    for q in env.backend.requests() {
        let action = q.header("x-writ-action");
        assert!(
            matches!(action, Some("items" | "items-v2")),
            "forwarded with an unexpected action {action:?}: {q:#?}"
        );
    }
    // Denied requests never reached it.
    assert!(
        env.backend
            .requests()
            .iter()
            .all(|q| q.path().starts_with("/items/")),
        "a refused request reached the backend"
    );
}

/// The config with one marker action `/marker/vNNNN` (public); every version has the same
/// length, so size never tells two versions apart.
fn marker_text(env: &Env, n: usize) -> String {
    let actions = format!(
        "{LOAD_A}  - name: marker\n    methods: [GET]\n    path: /marker/v{n:04}\n    public: true\n"
    );
    text_for(env, &actions)
}

/// Rewrites `path` in place the way editors and `kubectl cp` do: truncate, then the
/// content in two writes with a pause between them (a reader may see an empty or half file).
fn rewrite_in_place(path: &Path, text: &str, pause: Duration) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let half = text.len() / 2;
    f.write_all(&text.as_bytes()[..half]).unwrap();
    f.flush().unwrap();
    thread::sleep(pause);
    f.write_all(&text.as_bytes()[half..]).unwrap();
    f.flush().unwrap();
}

fn marker_applied(env: &Env, n: usize) -> bool {
    try_request(
        env.writ.addr(),
        "GET",
        &format!("/marker/v{n:04}"),
        &[],
        b"",
    )
    .is_ok_and(|r| r.status == 200)
}

#[test]
fn in_place_rewrites_under_load_apply_every_settled_version_and_count_no_failure() {
    const ROUNDS: usize = 150;
    const APPLIED_WITHIN: Duration = Duration::from_secs(3);
    let env = Arc::new(Env::start(LOAD_A));
    let token = env.token("items:read");
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (env, token, stop) = (Arc::clone(&env), token.clone(), Arc::clone(&stop));
        thread::spawn(move || load_client(&env, &token, &stop))
    };
    let started = Instant::now();
    let mut late = Vec::new();
    let mut waited = 0;
    for n in 1..=ROUNDS {
        // Pauses of 0-60 ms inside a write; bursts of rewrites with no pause between them
        // (same size, often the same coarse mtime); every third version waited for. Every
        // 15th write pauses 500-900 ms half-way, longer than a poll interval, so a poll
        // surely reads the half file (and the waits stop being in phase with the polls).
        let pause = if n % 15 == 0 {
            Duration::from_millis(500 + (n as u64 * 37) % 400)
        } else {
            Duration::from_millis(20 * (n % 4) as u64)
        };
        rewrite_in_place(env.writ.config_path(), &marker_text(&env, n), pause);
        if n % 3 == 0 || n == ROUNDS {
            waited += 1;
            if eventually_within(APPLIED_WITHIN, || marker_applied(&env, n).then_some(())).is_none()
            {
                late.push(n);
            }
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let load = client.join().unwrap();
    eprintln!(
        "{ROUNDS} in-place rewrites ({waited} waited for) in {elapsed:?}; {} requests under load",
        load.sent
    );
    assert!(
        late.is_empty(),
        "versions not applied within {APPLIED_WITHIN:?}: {late:?}\n{}",
        env.writ.stderr()
    );
    assert_eq!(
        reloads(&env.writ, "failure"),
        0.0,
        "a half-written file was counted as a failed reload:\n{}",
        env.writ.stderr()
    );
    assert!(
        load.failures.is_empty(),
        "{} requests failed during the rewrites; first: {:#?}",
        load.failures.len(),
        &load.failures[..load.failures.len().min(5)]
    );
    // The last version is in force and stays so.
    thread::sleep(Duration::from_millis(600));
    assert!(marker_applied(&env, ROUNDS));
    assert!(!marker_applied(&env, ROUNDS - 1));
}
