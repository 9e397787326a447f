//! RFC 7662 introspection for the highest-risk actions (SPEC "Revocation"): a real HTTP
//! introspection endpoint started by the test; `active: true` forwards, `active: false` is 401
//! `token_revoked`, an unreachable or failing endpoint is 503 `introspection_unavailable` (fail
//! closed, no challenge); answers are cached per token, never beyond its `exp`; actions that do
//! not ask never call the endpoint; the client authenticates with Basic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::json;
use support::{Backend, Config, Keys, Writ, closed_port_addr};

const SECRET_VAR: &str = "WRIT_TEST_INTROSPECTION_SECRET";

/// What the endpoint answers: 0 active, 1 inactive, 2 status 500, 3 garbage, 4 active after
/// 3 s (slower than the configured timeout). Each connection is served on its own thread,
/// after `delay_ms`, so concurrent calls would be seen as such.
struct Endpoint {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    calls: Arc<AtomicUsize>,
    last: Arc<Mutex<(String, String)>>,
    delay_ms: Arc<AtomicUsize>,
}

impl Endpoint {
    fn start() -> Endpoint {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new((String::new(), String::new())));
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let (m, c, lst, dl) = (mode.clone(), calls.clone(), last.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            for conn in l.incoming().take(500) {
                let Ok(mut s) = conn else { continue };
                let (m, c, lst, dl) = (m.clone(), c.clone(), lst.clone(), dl.clone());
                std::thread::spawn(move || {
                    let (headers, body) = support::read_request(&s);
                    let auth = headers
                        .iter()
                        .find(|(k, _)| k == "authorization")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    c.fetch_add(1, Ordering::SeqCst);
                    *lst.lock().unwrap() = (auth, String::from_utf8_lossy(&body).into_owned());
                    let mode = m.load(Ordering::SeqCst);
                    let (status, text) = match mode {
                        0 | 4 => (
                            "200 OK",
                            json!({"active": true, "sub": "alice"}).to_string(),
                        ),
                        1 => ("200 OK", json!({"active": false}).to_string()),
                        2 => ("500 Internal Server Error", "{}".to_string()),
                        _ => ("200 OK", "not json".to_string()),
                    };
                    let wait = if mode == 4 {
                        3000
                    } else {
                        dl.load(Ordering::SeqCst) as u64
                    };
                    std::thread::sleep(std::time::Duration::from_millis(wait));
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                });
            }
        });
        Endpoint {
            addr,
            mode,
            calls,
            last,
            delay_ms,
        }
    }
}

const ACTIONS: &str = r#"
  - name: wire-transfer
    methods: [POST]
    path: /transfers
    execution: true
    require: { scopes: [payments:send], introspect: true }
  - name: balance
    methods: [GET]
    path: /balance
    require: { scopes: [payments:read] }
"#;

struct World {
    writ: Writ,
    backend: Backend,
    keys: Keys,
}

fn start(url: &str, cache: &str) -> World {
    let keys = Keys::new();
    let backend = Backend::start();
    let issuers = format!(
        "{}\n    introspection:\n      url: \"{url}\"\n      client_id: \"writ gw\"\n      client_secret_env: {SECRET_VAR}\n      cache: {cache}\n      timeout: 1s",
        support::issuer_section("30s", Some("at+jwt"))
    );
    let config = Config::new(ACTIONS).set("issuers", &issuers);
    let writ = Writ::start_with_env(
        &config.render(),
        &backend.url(),
        &keys,
        &[(SECRET_VAR, "s3cret:&=")],
    );
    World {
        writ,
        backend,
        keys,
    }
}

fn transfer(w: &World, token: &str) -> support::RawResponse {
    support::request(
        w.writ.addr(),
        "POST",
        "/transfers",
        &[("authorization", &format!("Bearer {token}"))],
        b"{}",
    )
}

#[test]
fn active_forwards_inactive_is_revoked_and_answers_are_cached() {
    let ep = Endpoint::start();
    let w = start(&format!("http://{}/introspect", ep.addr), "30s");
    let token = w.keys.token().scope("payments:send payments:read").sign();
    let r = transfer(&w, &token);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(w.backend.count(), 1);
    assert_eq!(ep.calls.load(Ordering::SeqCst), 1);
    // RFC 7662 request: form-encoded token, Basic with form-encoded id and secret.
    let (auth, body) = ep.last.lock().unwrap().clone();
    let want = base64::engine::general_purpose::STANDARD.encode("writ+gw:s3cret%3A%26%3D");
    assert_eq!(auth, format!("Basic {want}"));
    assert!(body.starts_with(&format!("token={token}")), "{body}");
    assert!(body.contains("token_type_hint=access_token"), "{body}");

    // Cached: the same token again does not call the endpoint.
    assert_eq!(transfer(&w, &token).status, 200);
    assert_eq!(ep.calls.load(Ordering::SeqCst), 1);
    // Actions that do not ask never call it.
    let r = w.writ.get("/balance", Some(&token));
    assert_eq!(r.status, 200);
    assert_eq!(ep.calls.load(Ordering::SeqCst), 1);

    // Another token the AS says is inactive: 401 token_revoked, backend untouched.
    ep.mode.store(1, Ordering::SeqCst);
    w.backend.clear();
    let other = w.keys.token().sub("bob").scope("payments:send").sign();
    let r = transfer(&w, &other);
    r.assert_invalid_token("token_revoked");
    w.backend.assert_untouched();
    let rid = "rid-introspect";
    let r = support::request(
        w.writ.addr(),
        "POST",
        "/transfers",
        &[
            ("authorization", &format!("Bearer {other}")),
            ("x-request-id", rid),
        ],
        b"{}",
    );
    assert_eq!(r.status, 401);
    let line = w.writ.log_line_for(rid);
    assert_eq!(line["introspection"], json!("inactive"), "{line}");
    assert_eq!(line["reason"], json!("token_revoked"), "{line}");
}

#[test]
fn an_unreachable_or_failing_endpoint_fails_closed_with_503() {
    let w = start(&format!("http://{}/introspect", closed_port_addr()), "30s");
    let token = w.keys.token().scope("payments:send").sign();
    let r = transfer(&w, &token);
    r.assert_problem(503, "introspection_unavailable");
    assert!(r.header("www-authenticate").is_none(), "{}", r.describe());
    w.backend.assert_untouched();

    let ep = Endpoint::start();
    let w = start(&format!("http://{}/introspect", ep.addr), "30s");
    for mode in [2, 3] {
        ep.mode.store(mode, Ordering::SeqCst);
        let t = w
            .keys
            .token()
            .sub(&format!("u{mode}"))
            .scope("payments:send")
            .sign();
        transfer(&w, &t).assert_problem(503, "introspection_unavailable");
        // Failures are not cached: the endpoint recovering is seen at once.
        ep.mode.store(0, Ordering::SeqCst);
        assert_eq!(transfer(&w, &t).status, 200);
    }
    w.backend.clear();
}

#[test]
fn a_cached_answer_never_outlives_the_token() {
    let ep = Endpoint::start();
    let w = start(&format!("http://{}/introspect", ep.addr), "1h");
    // Expires in 2 s: the answer may be reused until then, not for the hour.
    let token = w.keys.token().scope("payments:send").exp_in(2).sign();
    assert_eq!(transfer(&w, &token).status, 200);
    assert_eq!(transfer(&w, &token).status, 200);
    assert_eq!(ep.calls.load(Ordering::SeqCst), 1);
    std::thread::sleep(std::time::Duration::from_millis(2200));
    // The token is expired now (leeway 30s keeps it valid for writ): the cache must ask again.
    assert_eq!(transfer(&w, &token).status, 200);
    assert_eq!(ep.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn introspect_without_an_issuer_endpoint_is_a_config_error() {
    let dir = support::tempdir();
    let cfg = support::write(
        dir.path(),
        "writ.yaml",
        &format!(
            "listen: 127.0.0.1:8080\nupstream: {{ url: \"http://127.0.0.1:3000\" }}\nissuers:\n  - issuer: https://i/\n    audiences: [a]\n    algorithms: [ES256]\n    jwks_file: \"{}\"\nactions:\n  - name: wire\n    methods: [POST]\n    path: /t\n    require: {{ scopes: [s], introspect: true }}\n",
            support::repo_path("config/demo/jwks.json").display()
        ),
    );
    let out = support::run(support::writ().arg("check").arg("--config").arg(&cfg));
    out.expect_code(1);
    let (line, col) = support::pos(&std::fs::read_to_string(&cfg).unwrap(), "true }");
    assert!(
        out.stderr.contains(&format!(
            ":{line}:{col}: action `wire` requires introspection, but no issuer has `introspection`"
        )),
        "{}",
        out.dump()
    );
}

#[test]
fn a_slow_endpoint_times_out_into_a_503_instead_of_hanging() {
    let ep = Endpoint::start();
    ep.mode.store(4, Ordering::SeqCst);
    let w = start(&format!("http://{}/introspect", ep.addr), "30s");
    let token = w.keys.token().scope("payments:send").sign();
    let started = std::time::Instant::now();
    transfer(&w, &token).assert_problem(503, "introspection_unavailable");
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_millis(2500),
        "answered after {took:?}: the 1 s timeout must cut the 3 s endpoint off"
    );
    w.backend.assert_untouched();
}

#[test]
fn concurrent_requests_for_one_token_share_one_call() {
    let ep = Endpoint::start();
    ep.delay_ms.store(400, Ordering::SeqCst);
    let w = start(&format!("http://{}/introspect", ep.addr), "30s");
    let token = w.keys.token().scope("payments:send").sign();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| transfer(&w, &token).status))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses, vec![200; 8]);
    assert_eq!(
        ep.calls.load(Ordering::SeqCst),
        1,
        "8 concurrent requests, one introspection call"
    );
}
