//! Remote key sets (SPEC "Operations: Keys", "Verified-token cache"): `jwks_url` is fetched at
//! start (not ready until it succeeds), refreshed on `jwks_refresh` (or sooner per
//! `Cache-Control: max-age`) and early on an unknown `kid` (at most once per 30 s); on fetch
//! failure (status, garbage, oversized body, timeout) the last good keys stay; a key that
//! disappears from the JWKS invalidates what it signed.
//!
//! The JWKS endpoint is a tiny HTTP/1.1 server in this file whose answer (status, body,
//! headers, delay) can be changed at run time and which counts fetches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{
    AUDIENCE, Backend, Config, ISSUER, Keys, Writ, closed_port_addr, eventually_within, unique,
};

// ==========================================================================================
// === the JWKS endpoint ===
// ==========================================================================================

#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    delay: Duration,
}

impl Reply {
    fn jwks(keys: &[Value]) -> Reply {
        Reply {
            status: 200,
            body: serde_json::to_vec(&json!({ "keys": keys })).unwrap(),
            headers: vec![("content-type".into(), "application/json".into())],
            delay: Duration::ZERO,
        }
    }
}

struct JwksState {
    reply: Mutex<Reply>,
    fetches: AtomicUsize,
    stop: AtomicBool,
}

/// A JWKS endpoint on loopback; stops accepting when dropped.
struct JwksServer {
    addr: SocketAddr,
    state: Arc<JwksState>,
}

impl JwksServer {
    fn start(reply: Reply) -> JwksServer {
        Self::start_on("127.0.0.1:0".parse().unwrap(), reply).expect("bind JWKS server")
    }

    /// Binds `addr` (retrying briefly: it was reserved and released by this test).
    fn start_on(addr: SocketAddr, reply: Reply) -> Option<JwksServer> {
        let listener = (0..50).find_map(|_| {
            TcpListener::bind(addr).ok().or_else(|| {
                thread::sleep(Duration::from_millis(20));
                None
            })
        })?;
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(JwksState {
            reply: Mutex::new(reply),
            fetches: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let st = Arc::clone(&state);
        thread::spawn(move || {
            while !st.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let st = Arc::clone(&st);
                        thread::spawn(move || serve_jwks_conn(stream, &st));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Some(JwksServer { addr, state })
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn set(&self, reply: Reply) {
        *self.state.reply.lock().unwrap() = reply;
    }

    fn set_keys(&self, keys: &[Value]) {
        self.set(Reply::jwks(keys));
    }

    /// Requests answered or being answered so far.
    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_jwks_conn(mut stream: TcpStream, st: &JwksState) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if !head.starts_with(b"GET ") {
        return;
    }
    st.fetches.fetch_add(1, Ordering::SeqCst);
    let reply = st.reply.lock().unwrap().clone();
    if !reply.delay.is_zero() {
        thread::sleep(reply.delay);
    }
    let mut out = format!("HTTP/1.1 {} X\r\n", reply.status).into_bytes();
    for (n, v) in &reply.headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            reply.body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&reply.body);
    let _ = stream.write_all(&out);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    // Let the client read before the socket goes away.
    let _ = stream.read(&mut buf);
}

// ==========================================================================================
// === writ with a `jwks_url` issuer ===
// ==========================================================================================

const ACTIONS: &str = r#"
  - name: items
    methods: [GET]
    path: /items/{id}
    require: { scopes: [items:read] }
"#;

/// The second key's `kid` (the harness's "rogue" key pair, published here on purpose).
const KID2: &str = "key-2";

fn config(url: &str, refresh: &str) -> String {
    Config::new(ACTIONS)
        .set(
            "issuers",
            &format!(
                "\n  - issuer: \"{ISSUER}\"\n    audiences: [{AUDIENCE}]\n    algorithms: [ES256]\n    jwks_url: \"{url}\"\n    jwks_refresh: {refresh}\n    leeway: 5s\n    require_typ: at+jwt"
            ),
        )
        .render()
}

struct World {
    writ: Writ,
    backend: Backend,
    keys: Keys,
    jwks: JwksServer,
}

impl World {
    /// JWKS endpoint serving the trusted key, writ started (ready) against it.
    fn start(refresh: &str) -> World {
        let keys = Keys::new();
        let jwks = JwksServer::start(Reply::jwks(&[keys.jwk()]));
        let backend = Backend::start();
        let writ = Writ::start(&config(&jwks.url(), refresh), &backend.url(), &keys);
        World {
            writ,
            backend,
            keys,
            jwks,
        }
    }

    /// A fresh token of the trusted key (ECDSA signatures are randomized: never a cache hit).
    fn token1(&self) -> String {
        self.keys.token_with_scope("items:read")
    }

    /// A fresh token of the second key.
    fn token2(&self) -> String {
        self.keys
            .token()
            .kid(KID2)
            .signed_by_rogue()
            .scope("items:read")
            .sign()
    }

    fn jwk2(&self) -> Value {
        self.keys.rogue_jwk(KID2)
    }

    fn status(&self, token: &str) -> u16 {
        self.writ.get("/items/1", Some(token)).status
    }

    #[track_caller]
    fn assert_allowed(&self, token: &str, what: &str) {
        let r = self.writ.get("/items/1", Some(token));
        assert_eq!(
            r.status,
            200,
            "{what}: {}\n--- stderr ---\n{}",
            r.describe(),
            self.writ.stderr()
        );
        assert_eq!(r.body, b"backend-ok");
    }

    fn refreshes(&self, result: &str) -> f64 {
        self.writ.metric(
            "writ_jwks_refresh_total",
            &[("issuer", ISSUER), ("result", result)],
        )
    }

    /// Waits (up to `within`) until the refresh counter for `result` reaches `min`.
    #[track_caller]
    fn wait_refreshes(&self, result: &str, min: f64, within: Duration) -> f64 {
        eventually_within(within, || {
            let v = self.refreshes(result);
            (v >= min).then_some(v)
        })
        .unwrap_or_else(|| {
            panic!(
                "writ_jwks_refresh_total{{result={result:?}}} never reached {min} (now {}, {} fetches)\n--- stderr ---\n{}",
                self.refreshes(result),
                self.jwks.fetches(),
                self.writ.stderr()
            )
        })
    }

    fn readyz(&self) -> u16 {
        support::try_request(self.writ.admin_addr(), "GET", "/readyz", &[], b"")
            .map_or(0, |r| r.status)
    }
}

// ==========================================================================================
// === start ===
// ==========================================================================================

#[test]
fn not_ready_until_the_first_fetch_succeeds() {
    let keys = Keys::new();
    let backend = Backend::start();
    let jwks_addr = closed_port_addr();
    let url = format!("http://{jwks_addr}/.well-known/jwks.json");
    let writ = Writ::spawn(&config(&url, "5m"), &backend.url(), &keys);

    // The process is up (healthz) but not ready while the endpoint refuses connections.
    let healthy = eventually_within(Duration::from_secs(5), || {
        support::try_request(writ.admin_addr(), "GET", "/healthz", &[], b"")
            .ok()
            .filter(|r| r.status == 200)
    });
    assert!(
        healthy.is_some(),
        "writ never answered /healthz\n--- stderr ---\n{}",
        writ.stderr()
    );
    let until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < until {
        let r = support::request(writ.admin_addr(), "GET", "/readyz", &[], b"");
        assert_eq!(r.status, 503, "/readyz before any key was fetched");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        writ.metric(
            "writ_jwks_refresh_total",
            &[("issuer", ISSUER), ("result", "failure")]
        ) >= 1.0,
        "failed fetches are counted"
    );
    let r = writ.get("/items/1", Some(&keys.token_with_scope("items:read")));
    assert_ne!(r.status, 200, "no key yet: nothing verifies");
    assert_eq!(backend.count(), 0);

    // The endpoint comes up: ready soon after, and a token verifies.
    let jwks = JwksServer::start_on(jwks_addr, Reply::jwks(&[keys.jwk()]))
        .expect("rebind the reserved JWKS port");
    writ.wait_ready(Duration::from_secs(6))
        .unwrap_or_else(|e| panic!("not ready after the JWKS endpoint came up: {e}"));
    assert!(jwks.fetches() >= 1);
    let r = writ.get("/items/1", Some(&keys.token_with_scope("items:read")));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        writ.metric(
            "writ_jwks_refresh_total",
            &[("issuer", ISSUER), ("result", "success")]
        ) >= 1.0
    );
}

// ==========================================================================================
// === unknown kid ===
// ==========================================================================================

#[test]
fn rotation_to_a_new_kid_is_picked_up_early_on_first_use() {
    // Periodic refresh far away: only the unknown-kid trigger can find the new key in time.
    let w = World::start("5m");
    w.assert_allowed(&w.token1(), "trusted key");
    let initial = w.jwks.fetches();
    assert_eq!(initial, 1, "one fetch at start");

    // The IdP rotates: the endpoint now publishes the new key (and still the old one).
    w.jwks.set_keys(&[w.keys.jwk(), w.jwk2()]);
    let first = w.writ.get("/items/1", Some(&w.token2()));
    assert!(
        first.status == 200 || first.status == 401,
        "{}",
        first.describe()
    );
    let t0 = Instant::now();
    let ok = eventually_within(Duration::from_millis(2500), || {
        thread::sleep(Duration::from_millis(100));
        (w.status(&w.token2()) == 200).then_some(())
    });
    assert!(
        ok.is_some(),
        "a token of the newly published kid was still refused {:?} after its first use \
         ({} fetches since start): the unknown kid must trigger an early refresh\n--- stderr ---\n{}",
        t0.elapsed(),
        w.jwks.fetches() - initial,
        w.writ.stderr()
    );
    assert!(
        w.jwks.fetches() - initial <= 2,
        "one early refresh, not a fetch per request ({} extra fetches)",
        w.jwks.fetches() - initial
    );
    w.assert_allowed(&w.token1(), "old key still published");
}

#[test]
fn a_flood_of_unknown_kids_is_not_a_flood_of_fetches() {
    let w = World::start("5m");
    w.assert_allowed(&w.token1(), "trusted key");
    let initial = w.jwks.fetches();
    let forwarded = w.backend.count();
    let started = Instant::now();
    for _ in 0..200 {
        let token = w
            .keys
            .token()
            .kid(&unique("random-kid"))
            .signed_by_rogue()
            .scope("items:read")
            .sign();
        w.writ
            .get("/items/1", Some(&token))
            .assert_invalid_token("unknown_key");
    }
    // Give any (early) refreshes the flood triggered time to happen.
    thread::sleep(Duration::from_millis(1500));
    let extra = w.jwks.fetches() - initial;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the flood must fit in one 30 s window for this count to mean anything"
    );
    assert!(
        extra <= 2,
        "200 unknown kids within 30 s caused {extra} extra JWKS fetches (at most one early \
         refresh per 30 s)"
    );
    assert_eq!(
        w.backend.count(),
        forwarded,
        "no unknown-kid token reached the backend"
    );
    w.assert_allowed(&w.token1(), "known key after the flood");
}

// ==========================================================================================
// === periodic refresh and failures ===
// ==========================================================================================

#[test]
fn periodic_refresh_follows_jwks_refresh() {
    let w = World::start("1s");
    let before = w.refreshes("success");
    w.wait_refreshes("success", before + 2.0, Duration::from_secs(4));
    w.jwks.set_keys(&[w.jwk2()]);
    let ok = eventually_within(Duration::from_secs(3), || {
        (w.status(&w.token2()) == 200).then_some(())
    });
    assert!(
        ok.is_some(),
        "new key not picked up by the 1 s refresh\n--- stderr ---\n{}",
        w.writ.stderr()
    );
}

#[test]
fn cache_control_max_age_shortens_the_refresh_interval() {
    let keys = Keys::new();
    let mut reply = Reply::jwks(&[keys.jwk()]);
    reply
        .headers
        .push(("cache-control".into(), "public, max-age=1".into()));
    let jwks = JwksServer::start(reply);
    let backend = Backend::start();
    let writ = Writ::start(&config(&jwks.url(), "5m"), &backend.url(), &keys);
    let at_start = jwks.fetches();
    thread::sleep(Duration::from_millis(3300));
    let extra = jwks.fetches() - at_start;
    assert!(
        (2..=5).contains(&extra),
        "with max-age=1 and jwks_refresh 5m, ~3 refreshes in 3.3 s expected, got {extra}\n--- stderr ---\n{}",
        writ.stderr()
    );
}

#[test]
fn server_errors_keep_the_last_good_keys() {
    let w = World::start("1s");
    w.assert_allowed(&w.token1(), "before");
    let failures = w.refreshes("failure");
    w.jwks.set(Reply {
        status: 500,
        body: b"{\"error\":\"boom\"}".to_vec(),
        headers: Vec::new(),
        delay: Duration::ZERO,
    });
    w.wait_refreshes("failure", failures + 2.0, Duration::from_secs(4));
    w.assert_allowed(&w.token1(), "last good keys during 500s");
    assert_eq!(w.readyz(), 200, "still ready with the last good keys");
}

#[test]
fn garbage_documents_are_refused_and_the_last_good_keys_stay() {
    let w = World::start("1s");
    w.assert_allowed(&w.token1(), "before");
    for body in [
        &b"<html>maintenance</html>"[..],
        b"{\"keys\": \"nope\"}",
        b"{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\"",
        b"",
    ] {
        let failures = w.refreshes("failure");
        w.jwks.set(Reply {
            status: 200,
            body: body.to_vec(),
            headers: vec![("content-type".into(), "application/json".into())],
            delay: Duration::ZERO,
        });
        w.wait_refreshes("failure", failures + 1.0, Duration::from_secs(3));
        w.assert_allowed(
            &w.token1(),
            &format!(
                "last good keys after serving {:?}",
                String::from_utf8_lossy(body)
            ),
        );
    }
    assert_eq!(w.readyz(), 200);
}

/// A JWKS document holding only the second key, padded with an extra top-level member to
/// `total` bytes (valid JSON either way).
fn padded_jwks(w: &World, total: usize) -> Vec<u8> {
    let base = serde_json::to_vec(&json!({ "keys": [w.jwk2()], "padding": "" })).unwrap();
    let pad = total.saturating_sub(base.len());
    serde_json::to_vec(&json!({ "keys": [w.jwk2()], "padding": "x".repeat(pad) })).unwrap()
}

#[test]
fn an_oversized_document_is_refused_and_the_last_good_keys_stay() {
    let w = World::start("1s");
    w.assert_allowed(&w.token1(), "before");
    let failures = w.refreshes("failure");
    let big = padded_jwks(&w, 2 * 1024 * 1024);
    assert!(big.len() >= 2 * 1024 * 1024);
    w.jwks.set(Reply {
        status: 200,
        body: big,
        headers: vec![("content-type".into(), "application/json".into())],
        delay: Duration::ZERO,
    });
    w.wait_refreshes("failure", failures + 2.0, Duration::from_secs(4));
    w.assert_allowed(&w.token1(), "last good keys after a 2 MB document");
    w.writ
        .get("/items/1", Some(&w.token2()))
        .assert_invalid_token("unknown_key");

    // The same document, small: accepted (so it was the size that was refused).
    w.jwks.set(Reply {
        status: 200,
        body: padded_jwks(&w, 4096),
        headers: vec![("content-type".into(), "application/json".into())],
        delay: Duration::ZERO,
    });
    let ok = eventually_within(Duration::from_secs(3), || {
        (w.status(&w.token2()) == 200).then_some(())
    });
    assert!(
        ok.is_some(),
        "the small padded document should have been accepted\n--- stderr ---\n{}",
        w.writ.stderr()
    );
}

#[test]
fn a_hanging_endpoint_times_out_and_the_last_good_keys_stay() {
    let w = World::start("1s");
    w.assert_allowed(&w.token1(), "before");
    let failures = w.refreshes("failure");
    let mut slow = Reply::jwks(&[w.jwk2()]);
    slow.delay = Duration::from_secs(8);
    w.jwks.set(slow);
    let t0 = Instant::now();
    // Meanwhile requests keep being served with the last good keys.
    while t0.elapsed() < Duration::from_secs(2) {
        w.assert_allowed(&w.token1(), "during a hanging fetch");
        thread::sleep(Duration::from_millis(200));
    }
    // 5 s fetch timeout (+ up to 1 s until the next refresh starts, + slack).
    w.wait_refreshes("failure", failures + 1.0, Duration::from_millis(5500));
    assert!(
        t0.elapsed() < Duration::from_millis(7500),
        "the fetch should have timed out after ~5 s, not waited for the 8 s answer"
    );
    w.assert_allowed(&w.token1(), "after the timeout");
    assert_eq!(w.readyz(), 200);
}

// ==========================================================================================
// === key removal and the verified-token cache ===
// ==========================================================================================

#[test]
fn a_key_removed_from_the_jwks_invalidates_cached_tokens_it_signed() {
    let w = World::start("1s");
    w.jwks.set_keys(&[w.keys.jwk(), w.jwk2()]);
    let success = w.refreshes("success");
    w.wait_refreshes("success", success + 1.0, Duration::from_secs(3));
    let cached2 = w.token2();
    let cached1 = w.token1();
    for _ in 0..3 {
        w.assert_allowed(&cached2, "second key while published");
        w.assert_allowed(&cached1, "first key");
    }

    // The second key is withdrawn; wait for two full refreshes after the change.
    w.jwks.set_keys(&[w.keys.jwk()]);
    let success = w.refreshes("success");
    w.wait_refreshes("success", success + 2.0, Duration::from_secs(4));
    w.writ
        .get("/items/1", Some(&cached2))
        .assert_invalid_token("unknown_key");
    w.writ
        .get("/items/1", Some(&w.token2()))
        .assert_invalid_token("unknown_key");
    w.assert_allowed(&cached1, "the remaining key's cached token");
    w.assert_allowed(&w.token1(), "the remaining key");
}
