//! SPEC "Gateway: several upstreams": one writ in front of several legacy services.
//! Two (and, after a reload, three) real recording backends, one of them HTTPS with its
//! own CA; routing by action and by `defaults.upstream`, per-upstream health and errors,
//! and a reload that adds, changes and removes upstreams under load with no failed request.

mod support;

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use support::*;

const ACTIONS: &str = r#"
  - name: run-job
    methods: [POST]
    path: /jobs/{id}/run
    execution: true
    require: { scopes: [jobs:run] }
  - name: reset-password
    methods: [POST]
    path: /users/{id}/reset
    execution: true
    upstream: admin
    require: { scopes: [users:reset] }
"#;

/// The gateway config: `jobs` (plain HTTP, the default) and `admin` (HTTPS, trusting
/// only `ca`), plus `extra` upstream and action lines for the reload tests.
fn gateway_config(jobs: &str, admin: &str, ca: &str, extra: (&str, &str)) -> String {
    Config::new(&format!("{ACTIONS}{}", extra.1))
        .unset("upstream")
        .set(
            "upstreams",
            &format!(
                "\n  jobs: {{ url: \"{jobs}\", connect_timeout: 1s, timeout: 5s }}\n  admin: {{ url: \"{admin}\", ca: \"{ca}\", server_name: admin.internal }}\n{}",
                extra.0
            ),
        )
        .set("defaults", "\n  upstream: jobs\n  unmatched: allow")
        .render()
}

struct Gateway {
    writ: Writ,
    jobs: Backend,
    admin: TlsBackend,
    admin_cert: Cert,
    keys: Keys,
}

fn start_gateway() -> Gateway {
    start_gateway_trusting(None)
}

/// The gateway, its `admin` upstream trusting `ca` (default: admin's own certificate).
fn start_gateway_trusting(ca: Option<&Cert>) -> Gateway {
    let keys = Keys::new();
    let jobs = Backend::start();
    let admin_cert = Cert::new(&["admin.internal"]);
    let admin = TlsBackend::start(&admin_cert);
    let config = gateway_config(
        &jobs.url(),
        &format!("https://127.0.0.1:{}", admin.addr.port()),
        &ca.unwrap_or(&admin_cert).cert_path.display().to_string(),
        ("", ""),
    );
    let writ = Writ::start(&config, "unused", &keys);
    Gateway {
        writ,
        jobs,
        admin,
        admin_cert,
        keys,
    }
}

/// Rewrites the config in place and waits until writ applied it as `generation`.
fn reload_to(g: &Gateway, config: &str, generation: f64) {
    if let Err(e) = fs::write(g.writ.config_path(), g.writ.fill(config, "unused", &g.keys)) {
        panic!("cannot rewrite the config: {e}");
    }
    let applied =
        eventually(|| (g.writ.metric("writ_config_generation", &[]) == generation).then_some(()));
    assert_eq!(applied, Some(()), "reload applied: {}", g.writ.stderr());
}

fn post(g: &Gateway, path: &str, scope: &str) -> RawResponse {
    let token = g.keys.token_with_scope(scope);
    g.writ.send_with_token("POST", path, Some(&token), &[])
}

#[test]
fn actions_and_defaults_route_to_their_upstream_each_with_its_own_tls() {
    let g = start_gateway();

    let r = post(&g, "/jobs/7/run", "jobs:run");
    assert_eq!(r.status, 200, "{}", r.describe());
    let seen = g.jobs.single();
    assert_eq!(seen.path(), "/jobs/7/run");
    seen.assert_writ_identity("alice", "run-job");
    assert!(g.admin.requests().is_empty(), "admin saw nothing yet");

    // Over TLS, verified against the admin CA and `server_name`.
    let r = post(&g, "/users/42/reset", "users:reset");
    assert_eq!(r.status, 200, "{}", r.describe());
    let admin_seen = g.admin.requests();
    assert_eq!(admin_seen.len(), 1, "{admin_seen:#?}");
    assert_eq!(admin_seen[0].path(), "/users/42/reset");
    admin_seen[0].assert_writ_identity("alice", "reset-password");
    assert_eq!(g.jobs.count(), 1, "jobs saw only its own request");

    // Unmatched and forwarded (`unmatched: allow`): defaults.upstream.
    let r = g.writ.get("/status", None);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(g.jobs.count(), 2);
    assert_eq!(g.jobs.requests()[1].path(), "/status");

    // A denied execution action never reaches either upstream.
    let r = post(&g, "/users/42/reset", "jobs:run");
    assert_eq!(r.status, 403, "{}", r.describe());
    assert_eq!(g.admin.requests().len(), 1);

    let lines = g.writ.wait_log_lines(4);
    let upstreams: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap_or(""),
                l["upstream"].as_str().unwrap_or("null"),
            )
        })
        .collect();
    assert_eq!(
        upstreams,
        [
            ("/jobs/7/run", "jobs"),
            ("/users/42/reset", "admin"),
            ("/status", "jobs"),
            ("/users/42/reset", "admin"),
        ],
        "{lines:#?}"
    );
    g.writ
        .assert_metric("writ_upstream_up", &[("upstream", "jobs")], 1.0);
    g.writ
        .assert_metric("writ_upstream_up", &[("upstream", "admin")], 1.0);

    // `writ explain` names the upstream an action goes to.
    let out = writ_run([
        "explain",
        "--config",
        g.writ.config_path().to_str().unwrap(),
        "--method",
        "POST",
        "--path",
        "/users/1/reset",
        "--json",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{}", out.dump()));
    assert_eq!(v["upstream"]["name"], "admin", "{v:#}");
    assert_eq!(
        v["upstream"]["url"],
        format!("https://127.0.0.1:{}", g.admin.addr.port()),
        "{v:#}"
    );
}

#[test]
fn an_upstream_trusting_another_ca_is_a_tls_error_for_that_upstream_only() {
    let other_ca = Cert::new(&["admin.internal"]);
    // Every part bound: a dropped backend would stop answering.
    let Gateway {
        writ,
        admin,
        keys,
        jobs: _jobs,
        admin_cert: _admin_cert,
    } = start_gateway_trusting(Some(&other_ca));
    let token = keys.token_with_scope("users:reset jobs:run");
    let r = writ.send_with_token("POST", "/users/1/reset", Some(&token), &[]);
    assert_eq!(r.status, 502, "{}", r.describe());
    assert!(admin.requests().is_empty());
    writ.assert_metric(
        "writ_upstream_errors_total",
        &[("upstream", "admin"), ("kind", "tls")],
        1.0,
    );
    writ.assert_metric("writ_upstream_up", &[("upstream", "admin")], 0.0);
    let r = writ.send_with_token("POST", "/jobs/1/run", Some(&token), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    writ.assert_metric("writ_upstream_up", &[("upstream", "jobs")], 1.0);
}

#[test]
fn one_upstream_down_fails_only_its_actions_and_its_gauge_flips_back() {
    let g = start_gateway();
    let jobs_addr = g.jobs.addr();
    let Gateway {
        writ,
        jobs,
        admin,
        keys,
        admin_cert: _cert,
    } = g;
    drop(jobs);
    let token = keys.token_with_scope("jobs:run users:reset");

    let r = writ.send_with_token("POST", "/jobs/1/run", Some(&token), &[]);
    assert_eq!(r.status, 502, "{}", r.describe());
    let problem: serde_json::Value = serde_json::from_slice(&r.body).expect("problem json");
    assert_eq!(problem["reason"], "upstream_unavailable", "{problem:#}");
    writ.assert_metric(
        "writ_upstream_errors_total",
        &[("upstream", "jobs"), ("kind", "connect")],
        1.0,
    );
    writ.assert_metric("writ_upstream_up", &[("upstream", "jobs")], 0.0);

    // The other legacy service keeps answering.
    for _ in 0..3 {
        let r = writ.send_with_token("POST", "/users/9/reset", Some(&token), &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    assert_eq!(admin.requests().len(), 3);
    writ.assert_metric("writ_upstream_up", &[("upstream", "admin")], 1.0);
    assert_eq!(
        writ.metric(
            "writ_upstream_errors_total",
            &[("upstream", "admin"), ("kind", "connect")]
        ),
        0.0
    );

    // The backend comes back on the same port: the next request flips the gauge.
    let Some(back) = Backend::start_on(jobs_addr) else {
        panic!("port {jobs_addr} was taken in between; cannot restart the backend");
    };
    let r = writ.send_with_token("POST", "/jobs/1/run", Some(&token), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(back.single().path(), "/jobs/1/run");
    writ.assert_metric("writ_upstream_up", &[("upstream", "jobs")], 1.0);
    let log = writ.wait_log_lines(5);
    assert_eq!(log[0]["status"], 502);
    assert_eq!(log[0]["upstream"], "jobs");
}

#[test]
fn a_health_check_shows_a_down_upstream_without_traffic() {
    let keys = Keys::new();
    let jobs = Backend::start();
    let admin = Backend::start();
    let config = Config::new(ACTIONS)
        .unset("upstream")
        .set(
            "upstreams",
            &format!(
                "\n  jobs: {{ url: \"{}\", health_check: {{ path: /healthz, every: 1s }} }}\n  admin: {{ url: \"{}/base\", health_check: {{ path: /ping, every: 1s }} }}",
                jobs.url(),
                admin.url()
            ),
        )
        .set("defaults", "\n  upstream: jobs")
        .render();
    let writ = Writ::start(&config, "unused", &keys);
    let up = |name: &str| {
        let name = name.to_string();
        let w = &writ;
        move || {
            let text = w.metrics();
            metric_value(&text, "writ_upstream_up", &[("upstream", &name)])
        }
    };
    assert_eq!(
        eventually(|| up("jobs")().filter(|v| *v == 1.0)),
        Some(1.0),
        "{}",
        writ.metrics()
    );
    assert_eq!(
        eventually(|| up("admin")().filter(|v| *v == 1.0)),
        Some(1.0)
    );
    let checks = admin.requests();
    assert!(!checks.is_empty());
    assert_eq!(checks[0].method, "GET");
    assert_eq!(
        checks[0].path(),
        "/base/ping",
        "under the upstream's base path"
    );
    assert!(jobs.requests().iter().all(|r| r.path() == "/healthz"));

    drop(jobs);
    assert_eq!(
        eventually(|| up("jobs")().filter(|v| *v == 0.0)),
        Some(0.0),
        "the check marks a stopped backend down: {}",
        writ.metrics()
    );
    assert_eq!(up("admin")(), Some(1.0), "the other stays up");
}

#[test]
fn a_reload_adds_changes_and_removes_upstreams_under_load_without_a_failed_request() {
    let g = start_gateway();
    let admin_url = format!("https://127.0.0.1:{}", g.admin.addr.port());
    let ca = g.admin_cert.cert_path.display().to_string();
    let token = g.keys.token_with_scope("jobs:run users:reset reports:read");

    // Bounded load on both upstreams while the config changes under it.
    let stop = Arc::new(AtomicBool::new(false));
    let addr = g.writ.addr();
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let (stop, token) = (stop.clone(), token.clone());
            thread::spawn(move || {
                let path = if i % 2 == 0 {
                    "/jobs/1/run"
                } else {
                    "/users/1/reset"
                };
                let auth = format!("Bearer {token}");
                let mut statuses = Vec::new();
                for _ in 0..3000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = request(addr, "POST", path, &[("authorization", &auth)], b"");
                    statuses.push(r.status);
                }
                statuses
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));

    // Add `reports` (a third backend) with an action routed to it.
    let reports = Backend::start();
    let reports_upstream = format!("  reports: {{ url: \"{}\" }}\n", reports.url());
    let with_reports = (
        reports_upstream.as_str(),
        "  - { name: reports, methods: [GET], path: /reports, upstream: reports, require: { scopes: [reports:read] } }\n",
    );
    let added = gateway_config(&g.jobs.url(), &admin_url, &ca, with_reports);
    reload_to(&g, &added, 2.0);
    let r = g.writ.send_with_token("GET", "/reports", Some(&token), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(reports.single().path(), "/reports");
    thread::sleep(Duration::from_millis(300));

    // Change `jobs` to another backend: new requests go there.
    let jobs2 = Backend::start();
    let changed = gateway_config(&jobs2.url(), &admin_url, &ca, with_reports);
    reload_to(&g, &changed, 3.0);
    assert_eq!(
        eventually(|| (jobs2.count() > 0).then_some(())),
        Some(()),
        "the load moved to the changed upstream"
    );
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let statuses: Vec<u16> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("load thread"))
        .collect();
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(statuses.len() > 50, "load ran: {} requests", statuses.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the reloads: {:?}",
        failed.len(),
        statuses.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(g.jobs.count() > 0 && !g.admin.requests().is_empty());

    // Remove `reports` again: its action goes, and so does its health series.
    g.writ
        .assert_metric("writ_upstream_up", &[("upstream", "reports")], 1.0);
    let removed = gateway_config(&jobs2.url(), &admin_url, &ca, ("", ""));
    reload_to(&g, &removed, 4.0);
    let text = g.writ.metrics();
    assert_eq!(
        metric_value(&text, "writ_upstream_up", &[("upstream", "reports")]),
        None,
        "{text}"
    );
    let r = g.writ.send_with_token("GET", "/reports", Some(&token), &[]);
    assert_eq!(r.status, 200, "unmatched now, forwarded to the default");
    assert_eq!(
        reports.count(),
        1,
        "nothing more reached the removed upstream"
    );
    assert_eq!(jobs2.requests().last().unwrap().path(), "/reports");
}

#[test]
fn config_errors_for_upstreams_name_file_line_and_column() {
    let dir = tempdir();
    let path = dir.path().join("gw.yaml");
    fs::write(
        &path,
        "listen: 127.0.0.1:0\nupstreams:\n  jobs: { url: http://127.0.0.1:1 }\n  admin: { url: http://127.0.0.1:2 }\nactions:\n  - { name: a, methods: [GET], path: /a, public: true, upstream: billing }\n",
    )
    .unwrap();
    let out = writ_run(["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "an invalid config: {}", out.dump());
    let file = path.display().to_string();
    assert!(
        out.stderr.contains(&format!(
            "{file}:3:3: `defaults.upstream` is required when `upstreams` names more than one backend"
        )),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr.contains(&format!(
            "{file}:6:66: unknown upstream `billing` (known: admin, jobs)"
        )),
        "{}",
        out.dump()
    );
}

#[test]
fn a_request_in_flight_finishes_on_an_upstream_a_reload_removes() {
    let keys = Keys::new();
    let slow = Backend::start_with(BackendOptions {
        delay: Duration::from_millis(1500),
        ..BackendOptions::default()
    });
    let fast = Backend::start();
    let config = |upstreams: &str, action_upstream: &str| {
        Config::new(&format!(
            "  - {{ name: report, methods: [GET], path: /report, public: true, upstream: {action_upstream} }}"
        ))
        .unset("upstream")
        .set("upstreams", upstreams)
        .set("defaults", "\n  upstream: fast")
        .render()
    };
    let both = format!(
        "\n  slow: {{ url: \"{}\" }}\n  fast: {{ url: \"{}\" }}",
        slow.url(),
        fast.url()
    );
    let writ = Writ::start(&config(&both, "slow"), "unused", &keys);
    let addr = writ.addr();
    let in_flight = thread::spawn(move || request(addr, "GET", "/report", &[], b""));
    assert_eq!(
        eventually(|| (slow.count() == 1).then_some(())),
        Some(()),
        "the request reached the slow upstream"
    );
    // While it waits there, `slow` is removed and the action moves to `fast`.
    let only_fast = format!("\n  fast: {{ url: \"{}\" }}", fast.url());
    let text = writ.fill(&config(&only_fast, "fast"), "unused", &keys);
    fs::write(writ.config_path(), text).unwrap();
    assert_eq!(
        eventually(|| (writ.metric("writ_config_generation", &[]) == 2.0).then_some(())),
        Some(()),
        "{}",
        writ.stderr()
    );
    let r = writ.get("/report", None);
    assert_eq!(r.status, 200);
    assert_eq!(fast.count(), 1, "new requests go to the new upstream");
    let old = in_flight.join().expect("in-flight request");
    assert_eq!(
        old.status,
        200,
        "finished on the removed upstream: {}",
        old.describe()
    );
    assert_eq!(old.body, b"backend-ok");
    // Its answer came after the reload removed `slow`: no series of it comes back.
    let scrape = writ.metrics();
    assert_eq!(
        metric_value(&scrape, "writ_upstream_up", &[("upstream", "slow")]),
        None,
        "{scrape}"
    );
    assert_eq!(
        metric_value(&scrape, "writ_upstream_up", &[("upstream", "fast")]),
        Some(1.0),
        "{scrape}"
    );
    let lines = writ.wait_log_lines(2);
    let mut upstreams: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["upstream"].as_str())
        .collect();
    upstreams.sort_unstable();
    assert_eq!(upstreams, ["fast", "slow"], "{lines:#?}");
}

#[test]
fn a_reload_whose_upstream_cannot_be_built_keeps_the_running_config() {
    let g = start_gateway();
    let bad_ca = g.writ.dir().join("not-a-ca.pem");
    fs::write(
        &bad_ca,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let broken = gateway_config(
        &g.jobs.url(),
        &format!("https://127.0.0.1:{}", g.admin.addr.port()),
        &bad_ca.display().to_string(),
        ("", ""),
    );
    fs::write(
        g.writ.config_path(),
        g.writ.fill(&broken, "unused", &g.keys),
    )
    .unwrap();
    let failed = eventually_within(Duration::from_secs(10), || {
        (g.writ
            .metric("writ_config_reloads_total", &[("result", "failure")])
            >= 1.0)
            .then_some(())
    });
    assert_eq!(failed, Some(()), "{}", g.writ.stderr());
    assert!(
        g.writ.stderr().contains("admin"),
        "the error names the upstream: {}",
        g.writ.stderr()
    );
    g.writ.assert_metric("writ_config_generation", &[], 1.0);
    let r = post(&g, "/users/5/reset", "users:reset");
    assert_eq!(
        r.status,
        200,
        "the previous admin client still serves: {}",
        r.describe()
    );
    assert_eq!(g.admin.requests().len(), 1);
}

#[test]
fn the_upstream_address_override_is_refused_with_several_upstreams() {
    // WRIT_UPSTREAM_ADDR points the one upstream elsewhere; with two, which one would it
    // be? writ refuses to start rather than guess.
    let dir = tempdir();
    let path = dir.path().join("gw.yaml");
    fs::write(
        &path,
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nupstreams:\n  jobs: { url: http://127.0.0.1:1 }\n  admin: { url: http://127.0.0.1:2 }\ndefaults: { upstream: jobs }\nactions:\n  - { name: a, methods: [GET], path: /a, public: true }\n",
    )
    .unwrap();
    let mut child = writ()
        .args(["run", "--config", path.to_str().unwrap()])
        .env("WRIT_UPSTREAM_ADDR", "127.0.0.1:9")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("writ started although WRIT_UPSTREAM_ADDR cannot apply");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("WRIT_UPSTREAM_ADDR needs a config with exactly one upstream"),
        "{stderr}"
    );
}
