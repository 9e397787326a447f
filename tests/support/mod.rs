//! Black-box test harness for the `writ` binary (SPEC.md is the contract).
//!
//! Every suite declares `mod support;` and builds its world from these pieces:
//!
//! * [`Keys`]: a fresh ES256 key pair per test, published as `jwks.json` in a temp dir, plus a
//!   "rogue" key that is *not* in the JWKS; [`TokenBuilder`] mints compact JWTs with either.
//! * [`Backend`]: a real hyper HTTP/1.1 server on `127.0.0.1:0` that records every request it
//!   receives (method, target as received, headers, body) and every byte read from its sockets.
//! * [`Writ`]: the real binary (`CARGO_BIN_EXE_writ`) started with `run --config FILE` on
//!   reserved loopback ports; waits for `/readyz`, is killed on drop.
//! * [`send_raw`] / [`request`]: a byte-exact HTTP/1.1 client over `std::net::TcpStream` that never
//!   normalizes the request target (the point of half of these tests) and never hangs.
//! * [`metric_value`]: a Prometheus text-format parser.
//! * [`eventually`] / `assert_eventually!`: retry helpers for asynchronous effects (log lines,
//!   counters).
//!
//! Style: every test is a plain `#[test]`; the backend runs its own tokio runtime on its own
//! thread, the client is blocking std I/O with timeouts everywhere.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::missing_panics_doc,
    clippy::must_use_candidate
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use tempfile::TempDir;

/// The issuer every default config trusts and every default token carries.
pub const ISSUER: &str = "https://issuer.test/";
/// The audience every default config accepts and every default token carries.
pub const AUDIENCE: &str = "orders-api";
/// The `kid` of the trusted key in the JWKS.
pub const KID: &str = "key-1";
/// The `kid` of the rogue key (never in the JWKS).
pub const ROGUE_KID: &str = "rogue-1";
/// Leeway configured for the default issuer.
pub const LEEWAY_SECS: i64 = 5;

/// Upper bound for anything the harness waits on over the network.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for writ to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Patience for asynchronous effects, `WRIT_TEST_PATIENCE_MS` overrides (default 2 s).
pub fn patience() -> Duration {
    std::env::var("WRIT_TEST_PATIENCE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(2000), Duration::from_millis)
}

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs(),
    )
    .expect("time fits i64")
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ==========================================================================================
// === retry helpers ===
// ==========================================================================================

/// Calls `f` until it returns `Some`, for up to `timeout`; returns the last result.
pub fn eventually_within<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Calls `f` until it returns `Some`, for up to [`patience`].
pub fn eventually<T>(f: impl FnMut() -> Option<T>) -> Option<T> {
    eventually_within(patience(), f)
}

/// Retries a boolean condition for up to [`patience`], then panics with the message.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr $(,)?) => {
        $crate::assert_eventually!($cond, "condition never became true: {}", stringify!($cond))
    };
    ($cond:expr, $($arg:tt)+) => {{
        let ok = $crate::support::eventually(|| if $cond { Some(()) } else { None }).is_some();
        assert!(ok, $($arg)+);
    }};
}

// ==========================================================================================
// === Keys ===
// ==========================================================================================

/// Per-test signing keys and the JWKS file writ is configured with.
pub struct Keys {
    dir: TempDir,
    jwks_path: PathBuf,
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
    rogue_pkcs8: Vec<u8>,
    rogue_pair: EcdsaKeyPair,
    p384_pkcs8: Vec<u8>,
}

fn generate(alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm) -> (Vec<u8>, EcdsaKeyPair) {
    let doc = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).expect("generate key");
    let bytes = doc.as_ref().to_vec();
    let pair = EcdsaKeyPair::from_pkcs8(alg, &bytes).expect("parse generated key");
    (bytes, pair)
}

fn ec_jwk(pair: &EcdsaKeyPair, kid: &str) -> Value {
    let point = pair.public_key().as_ref();
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    assert_eq!(point[0], 0x04);
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(&point[1..33]),
        "y": b64url(&point[33..65]),
        "kid": kid,
        "alg": "ES256",
        "use": "sig",
    })
}

impl Default for Keys {
    fn default() -> Self {
        Self::new()
    }
}

impl Keys {
    /// Generates the trusted key (`kid` [`KID`]), a rogue key and a P-384 key, and writes
    /// `jwks.json` holding only the trusted key.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("writ-keys-")
            .tempdir()
            .expect("tempdir");
        let (pkcs8, pair) = generate(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let (rogue_pkcs8, rogue_pair) = generate(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let (p384_pkcs8, _) = generate(&ECDSA_P384_SHA384_FIXED_SIGNING);
        let jwks_path = dir.path().join("jwks.json");
        let keys = Keys {
            dir,
            jwks_path,
            pkcs8,
            pair,
            rogue_pkcs8,
            rogue_pair,
            p384_pkcs8,
        };
        keys.write_jwks(&[keys.jwk()]);
        keys
    }

    /// Path of the JWKS file (what `{{JWKS}}` expands to).
    pub fn jwks_path(&self) -> &Path {
        &self.jwks_path
    }

    /// The trusted public key as a JWK.
    pub fn jwk(&self) -> Value {
        ec_jwk(&self.pair, KID)
    }

    /// The rogue public key as a JWK (under `kid`).
    pub fn rogue_jwk(&self, kid: &str) -> Value {
        ec_jwk(&self.rogue_pair, kid)
    }

    /// Raw uncompressed public point of the trusted key (for HS256 key-confusion attacks).
    pub fn public_point(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// Overwrites the JWKS file with the given keys.
    pub fn write_jwks(&self, keys: &[Value]) {
        let text = serde_json::to_string_pretty(&json!({ "keys": keys })).expect("jwks json");
        fs::write(&self.jwks_path, text).expect("write jwks");
    }

    /// A token builder with the default claims (valid for the default config).
    pub fn token(&self) -> TokenBuilder<'_> {
        TokenBuilder::new(self)
    }

    /// Shorthand: a valid token with `sub` alice and the given space-delimited scope.
    pub fn token_with_scope(&self, scope: &str) -> String {
        self.token().scope(scope).sign()
    }

    /// ES256 (raw r||s) signature of `message` with the trusted key.
    pub fn sign_message(&self, message: &[u8]) -> Vec<u8> {
        es256(&self.pair, message)
    }

    /// Signs `header.payload` as given (header JSON is not interpreted) with the trusted key.
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        raw_jws(header, claims, |m| es256(&self.pair, m))
    }

    /// Signs `header.payload` as given with the rogue key.
    pub fn rogue_sign_raw(&self, header: &Value, claims: &Value) -> String {
        raw_jws(header, claims, |m| es256(&self.rogue_pair, m))
    }
}

fn es256(pair: &EcdsaKeyPair, message: &[u8]) -> Vec<u8> {
    pair.sign(&SystemRandom::new(), message)
        .expect("sign")
        .as_ref()
        .to_vec()
}

fn raw_jws(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let h = b64url(&serde_json::to_vec(header).expect("header json"));
    let p = b64url(&serde_json::to_vec(claims).expect("claims json"));
    let msg = format!("{h}.{p}");
    let sig = sign(msg.as_bytes());
    format!("{msg}.{}", b64url(&sig))
}

/// Re-encodes a token's payload after `patch` edits it, keeping the original signature.
pub fn tamper_claims(token: &str, patch: impl FnOnce(&mut Map<String, Value>)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64 payload"))
            .expect("json payload");
    patch(claims.as_object_mut().expect("claims object"));
    let p = b64url(&serde_json::to_vec(&claims).expect("json"));
    format!("{}.{p}.{}", parts[0], parts[2])
}

/// Decodes the (unverified) payload of a compact JWS.
pub fn token_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

// ==========================================================================================
// === TokenBuilder ===
// ==========================================================================================

#[derive(Clone, Debug)]
enum Signer {
    /// The trusted ES256 key (via `jsonwebtoken::encode`).
    Trusted,
    /// The rogue ES256 key (via `jsonwebtoken::encode`).
    Rogue,
    /// A P-384 key, alg ES384 (via `jsonwebtoken::encode`).
    Es384,
    /// HMAC-SHA256 with the given secret (via `jsonwebtoken::encode`).
    Hs256(Vec<u8>),
    /// `alg: none`, empty signature (hand-built).
    AlgNone,
    /// ES256 header, signature of 64 zero bytes (`r = s = 0`, CVE-2022-21449).
    ZeroSignature,
    /// Hand-built compact JWS signed with the trusted key; header JSON used verbatim.
    RawTrusted,
}

/// Fluent builder for signed compact JWTs.
///
/// Defaults: header `{alg: ES256, kid: key-1, typ: at+jwt}`, claims `iss` [`ISSUER`], `aud`
/// [`AUDIENCE`], `sub` alice, `client_id` test-client, `iat` now, `exp` now + 10 min.
#[derive(Clone)]
pub struct TokenBuilder<'k> {
    keys: &'k Keys,
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signer: Signer,
}

impl<'k> TokenBuilder<'k> {
    fn new(keys: &'k Keys) -> Self {
        let t = now();
        let mut header = Map::new();
        header.insert("alg".into(), json!("ES256"));
        header.insert("kid".into(), json!(KID));
        header.insert("typ".into(), json!("at+jwt"));
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(ISSUER));
        claims.insert("aud".into(), json!(AUDIENCE));
        claims.insert("sub".into(), json!("alice"));
        claims.insert("client_id".into(), json!("test-client"));
        claims.insert("iat".into(), json!(t));
        claims.insert("exp".into(), json!(t + 600));
        TokenBuilder {
            keys,
            header,
            claims,
            signer: Signer::Trusted,
        }
    }

    /// Sets any claim.
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.into(), value);
        self
    }

    /// Removes a claim.
    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    pub fn iss(self, iss: &str) -> Self {
        self.claim("iss", json!(iss))
    }

    pub fn aud(self, aud: &str) -> Self {
        self.claim("aud", json!(aud))
    }

    pub fn aud_value(self, aud: Value) -> Self {
        self.claim("aud", aud)
    }

    pub fn sub(self, sub: &str) -> Self {
        self.claim("sub", json!(sub))
    }

    /// Space-delimited `scope` (RFC 9068).
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", json!(scope))
    }

    /// `scp` claim (array or string).
    pub fn scp(self, scp: Value) -> Self {
        self.claim("scp", scp)
    }

    /// `exp` = now + `secs` (negative: in the past).
    pub fn exp_in(self, secs: i64) -> Self {
        self.claim("exp", json!(now() + secs))
    }

    /// `iat` = now − `secs`.
    pub fn iat_ago(self, secs: i64) -> Self {
        self.claim("iat", json!(now() - secs))
    }

    /// `nbf` = now + `secs`.
    pub fn nbf_in(self, secs: i64) -> Self {
        self.claim("nbf", json!(now() + secs))
    }

    /// `auth_time` = now − `secs`.
    pub fn auth_time_ago(self, secs: i64) -> Self {
        self.claim("auth_time", json!(now() - secs))
    }

    /// Delegation chain, current actor first: `["agent:a", "user:b"]` builds
    /// `act: {sub: agent:a, act: {sub: user:b}}`.
    pub fn act_chain(self, chain: &[&str]) -> Self {
        self.claim("act", act_value(chain))
    }

    /// A single actor (`act: {sub}`).
    pub fn act(self, sub: &str) -> Self {
        self.act_chain(&[sub])
    }

    /// `act` claim given verbatim.
    pub fn act_value(self, act: Value) -> Self {
        self.claim("act", act)
    }

    /// Sets a JOSE header parameter (verbatim).
    pub fn header(mut self, name: &str, value: Value) -> Self {
        self.header.insert(name.into(), value);
        self
    }

    /// Removes a JOSE header parameter.
    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    pub fn kid(self, kid: &str) -> Self {
        self.header("kid", json!(kid))
    }

    pub fn typ(self, typ: &str) -> Self {
        self.header("typ", json!(typ))
    }

    /// Signs with the rogue key (not in the JWKS); the `kid` is left as set.
    pub fn signed_by_rogue(mut self) -> Self {
        self.signer = Signer::Rogue;
        self
    }

    /// Signs with a P-384 key as ES384.
    pub fn es384(mut self) -> Self {
        self.signer = Signer::Es384;
        self.header.insert("alg".into(), json!("ES384"));
        self
    }

    /// Signs as HS256 with `secret` (e.g. the public key bytes: key confusion).
    pub fn hs256(mut self, secret: &[u8]) -> Self {
        self.signer = Signer::Hs256(secret.to_vec());
        self.header.insert("alg".into(), json!("HS256"));
        self
    }

    /// `alg: none` with an empty signature.
    pub fn alg_none(mut self) -> Self {
        self.signer = Signer::AlgNone;
        self.header.insert("alg".into(), json!("none"));
        self
    }

    /// ES256 header with an all-zero signature.
    pub fn zero_signature(mut self) -> Self {
        self.signer = Signer::ZeroSignature;
        self
    }

    /// Hand-build the JWS (header used verbatim, signed with the trusted key) instead of going
    /// through `jsonwebtoken`: for header shapes `jsonwebtoken::Header` cannot express.
    pub fn raw(mut self) -> Self {
        self.signer = Signer::RawTrusted;
        self
    }

    /// Current claims (for assertions).
    pub fn claims(&self) -> Value {
        Value::Object(self.claims.clone())
    }

    /// Produces the compact JWS.
    pub fn sign(self) -> String {
        let header = Value::Object(self.header);
        let claims = Value::Object(self.claims);
        let via_lib = |key: jsonwebtoken::EncodingKey| -> String {
            let h: jsonwebtoken::Header =
                serde_json::from_value(header.clone()).expect("header fits jsonwebtoken::Header");
            jsonwebtoken::encode(&h, &claims, &key).expect("jsonwebtoken::encode")
        };
        match self.signer {
            Signer::Trusted => via_lib(jsonwebtoken::EncodingKey::from_ec_der(&self.keys.pkcs8)),
            Signer::Rogue => via_lib(jsonwebtoken::EncodingKey::from_ec_der(
                &self.keys.rogue_pkcs8,
            )),
            Signer::Es384 => via_lib(jsonwebtoken::EncodingKey::from_ec_der(
                &self.keys.p384_pkcs8,
            )),
            Signer::Hs256(secret) => via_lib(jsonwebtoken::EncodingKey::from_secret(&secret)),
            Signer::AlgNone => raw_jws(&header, &claims, |_| Vec::new()),
            Signer::ZeroSignature => raw_jws(&header, &claims, |_| vec![0u8; 64]),
            Signer::RawTrusted => self.keys.sign_raw(&header, &claims),
        }
    }
}

/// Builds a nested `act` object from a chain, current actor first.
pub fn act_value(chain: &[&str]) -> Value {
    let mut act: Option<Value> = None;
    for sub in chain.iter().rev() {
        let mut obj = Map::new();
        obj.insert("sub".into(), json!(sub));
        if let Some(inner) = act.take() {
            obj.insert("act".into(), inner);
        }
        act = Some(Value::Object(obj));
    }
    act.expect("non-empty chain")
}

/// `Authorization: Bearer <token>` as a header pair.
pub fn bearer(token: &str) -> (String, String) {
    ("Authorization".to_string(), format!("Bearer {token}"))
}

// ==========================================================================================
// === Backend ===
// ==========================================================================================

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Request target exactly as received (origin-form: path + query).
    pub target: String,
    /// Every header line as (lower-case name, value), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, as (lower-case name, value).
    pub trailers: Vec<(String, String)>,
}

impl Recorded {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header (name compared case-insensitively).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// All values of every header whose name, read case-insensitively and with `_` as `-`,
    /// equals `name` (how WSGI/CGI backends fold header names).
    pub fn header_folded(&self, name: &str) -> Vec<&str> {
        let want = fold_header_name(name);
        self.headers
            .iter()
            .filter(|(n, _)| fold_header_name(n) == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// Lower-case, `_` read as `-`.
pub fn fold_header_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// How the backend answers.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering (after the request body was read).
    pub delay: Duration,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            status: 200,
            body: b"backend-ok".to_vec(),
            headers: vec![("content-type".into(), "text/plain".into())],
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct BackendState {
    requests: Mutex<Vec<Recorded>>,
    raw_bytes: AtomicU64,
    connections: AtomicUsize,
}

/// A recording HTTP/1.1 upstream on `127.0.0.1:0`.
pub struct Backend {
    addr: SocketAddr,
    state: Arc<BackendState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Backend {
    /// Starts a backend answering `200 backend-ok`.
    pub fn start() -> Backend {
        Self::start_with(BackendOptions::default())
    }

    /// Starts a backend with custom answers.
    pub fn start_with(opts: BackendOptions) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        Self::serve(listener, opts)
    }

    /// Starts a default backend on a given address; `None` if it cannot be bound.
    pub fn start_on(addr: SocketAddr) -> Option<Backend> {
        let listener = TcpListener::bind(addr).ok()?;
        Some(Self::serve(listener, BackendOptions::default()))
    }

    fn serve(listener: TcpListener, opts: BackendOptions) -> Backend {
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("backend addr");
        let state = Arc::new(BackendState::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = Arc::clone(&state);
        let opts = Arc::new(opts);
        thread::Builder::new()
            .name(format!("backend-{}", addr.port()))
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let accept_loop = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            st.connections.fetch_add(1, Ordering::SeqCst);
                            let st = Arc::clone(&st);
                            let opts = Arc::clone(&opts);
                            tokio::spawn(serve_backend_conn(stream, st, opts));
                        }
                    };
                    tokio::select! {
                        () = accept_loop => {}
                        _ = rx => {}
                    }
                });
            })
            .expect("spawn backend thread");
        Backend {
            addr,
            state,
            shutdown: Some(tx),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (what `{{UPSTREAM}}` expands to).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.state.requests.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Bytes read from all backend sockets so far (also counts requests hyper could not parse).
    pub fn raw_bytes(&self) -> u64 {
        self.state.raw_bytes.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        if let Ok(mut r) = self.state.requests.lock() {
            r.clear();
        }
        self.state.raw_bytes.store(0, Ordering::SeqCst);
    }

    /// The only request received; panics unless exactly one arrived.
    pub fn single(&self) -> Recorded {
        let reqs = self.requests();
        assert_eq!(
            reqs.len(),
            1,
            "backend should have received exactly one request, got {reqs:#?}"
        );
        reqs.into_iter().next().expect("one request")
    }

    /// Asserts that not a single byte reached the backend since start / last `clear()`.
    #[track_caller]
    pub fn assert_untouched(&self) {
        let reqs = self.requests();
        assert!(
            reqs.is_empty(),
            "a refused request must never reach the backend, but it received {reqs:#?}"
        );
        assert_eq!(
            self.raw_bytes(),
            0,
            "a refused request must never reach the backend, but bytes were written to it"
        );
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn serve_backend_conn(
    stream: tokio::net::TcpStream,
    state: Arc<BackendState>,
    opts: Arc<BackendOptions>,
) {
    use http_body_util::BodyExt as _;

    let io = hyper_util::rt::TokioIo::new(CountingStream {
        inner: stream,
        state: Arc::clone(&state),
    });
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = Arc::clone(&state);
        let opts = Arc::clone(&opts);
        async move {
            let method = req.method().to_string();
            let target = req.uri().to_string();
            let headers = req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let (body, trailers) = match req.into_body().collect().await {
                Ok(b) => {
                    let trailers = b
                        .trailers()
                        .map(|t| {
                            t.iter()
                                .map(|(n, v)| {
                                    (
                                        n.as_str().to_string(),
                                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (b.to_bytes().to_vec(), trailers)
                }
                Err(_) => (Vec::new(), Vec::new()),
            };
            if let Ok(mut r) = state.requests.lock() {
                r.push(Recorded {
                    method,
                    target,
                    headers,
                    body,
                    trailers,
                });
            }
            if !opts.delay.is_zero() {
                tokio::time::sleep(opts.delay).await;
            }
            let mut resp = hyper::Response::builder().status(opts.status);
            for (n, v) in &opts.headers {
                resp = resp.header(n.as_str(), v.as_str());
            }
            let resp = resp
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    opts.body.clone(),
                )))
                .unwrap_or_else(|_| hyper::Response::new(http_body_util::Full::default()));
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    // writ adds forwarding and identity headers: the backend must accept more
    // fields than the 100 a client may send.
    let _ = hyper::server::conn::http1::Builder::new()
        .max_headers(256)
        .serve_connection(io, svc)
        .await;
}

/// A TCP stream that counts every byte read into the backend's state.
struct CountingStream {
    inner: tokio::net::TcpStream,
    state: Arc<BackendState>,
}

impl tokio::io::AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.state
            .raw_bytes
            .fetch_add(u64::try_from(read).unwrap_or(0), Ordering::SeqCst);
        res
    }
}

impl tokio::io::AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A loopback address with nothing listening on it (bound, then released).
pub fn closed_port_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

// ==========================================================================================
// === Config ===
// ==========================================================================================

/// A writ YAML config under construction: ordered top-level sections, placeholders left in.
///
/// Placeholders filled by [`Writ::start`]: `{{LISTEN}}`, `{{ADMIN}}`, `{{UPSTREAM}}`, `{{JWKS}}`,
/// `{{LOG}}`, `{{DIR}}` (the config's temp dir).
#[derive(Clone, Debug)]
pub struct Config {
    sections: Vec<(String, String)>,
}

/// The `issuers:` block for the default issuer with a given leeway and `require_typ`.
pub fn issuer_section(leeway: &str, require_typ: Option<&str>) -> String {
    let typ = require_typ
        .map(|t| format!("\n    require_typ: {t}"))
        .unwrap_or_default();
    format!(
        "\n  - issuer: \"{ISSUER}\"\n    audiences: [{AUDIENCE}]\n    algorithms: [ES256]\n    jwks_file: \"{{{{JWKS}}}}\"\n    leeway: {leeway}{typ}"
    )
}

impl Config {
    /// The default config (one ES256 issuer, decision log to a file) with these `actions`.
    ///
    /// `actions` is the block under `actions:`, each item indented by two spaces, e.g.
    /// `"  - name: x\n    methods: [GET]\n    path: /x\n    public: true\n"`.
    pub fn new(actions: &str) -> Config {
        let mut c = Config {
            sections: Vec::new(),
        };
        c = c
            .set("listen", "\"{{LISTEN}}\"")
            .set("admin", "\"{{ADMIN}}\"")
            .set(
                "upstream",
                "\n  url: \"{{UPSTREAM}}\"\n  connect_timeout: 2s\n  timeout: 10s",
            )
            .set(
                "issuers",
                &issuer_section(&format!("{LEEWAY_SECS}s"), Some("at+jwt")),
            )
            .set("decision_log", "\"{{LOG}}\"")
            .set("actions", &format!("\n{}", actions.trim_matches('\n')));
        c
    }

    /// Sets (replaces or appends) a top-level key. A value starting with `\n` is a block
    /// (already indented); anything else follows `key: ` on the same line.
    pub fn set(mut self, key: &str, value: &str) -> Config {
        if let Some(slot) = self.sections.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value.to_string();
        } else {
            self.sections.push((key.to_string(), value.to_string()));
        }
        self
    }

    /// Removes a top-level key.
    pub fn unset(mut self, key: &str) -> Config {
        self.sections.retain(|(k, _)| k != key);
        self
    }

    /// The YAML text (placeholders not yet filled).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.sections {
            if v.starts_with('\n') {
                let _ = writeln!(out, "{k}:{v}");
            } else {
                let _ = writeln!(out, "{k}: {v}");
            }
        }
        out
    }
}

// ==========================================================================================
// === Writ ===
// ==========================================================================================

/// A running `writ run` process.
pub struct Writ {
    child: Mutex<Child>,
    pid: u32,
    dir: TempDir,
    addr: SocketAddr,
    admin: SocketAddr,
    config_path: PathBuf,
    log_path: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

/// Reserves a free loopback port (bind, read, release).
pub fn free_port() -> u16 {
    closed_port_addr().port()
}

impl Writ {
    /// Writes `config` (a template, see [`Config`]) and starts writ in front of `upstream`, with
    /// `keys`' JWKS. Waits until `/readyz` answers 200; panics with writ's stderr otherwise.
    pub fn start(config: &str, upstream: &str, keys: &Keys) -> Writ {
        let mut last_err = String::new();
        for _ in 0..3 {
            let writ = Self::spawn(config, upstream, keys);
            match writ.wait_ready(READY_TIMEOUT) {
                Ok(()) => return writ,
                Err(e) => {
                    let retry = e.contains("in use") || e.contains("AddrInUse");
                    last_err = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("writ did not become ready:\n{last_err}\n--- config ---\n{config}");
    }

    /// Starts writ without waiting for readiness.
    pub fn spawn(config: &str, upstream: &str, keys: &Keys) -> Writ {
        Writ::spawn_placed(config, upstream, keys, &|dir, text| {
            let path = dir.join("writ.yaml");
            fs::write(&path, text).expect("write config");
            path
        })
    }

    /// Polls `/readyz` until 200.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(code) = self.exit_code_now() {
                return Err(format!(
                    "writ exited early ({code:?})\n--- stderr ---\n{}\n--- stdout ---\n{}",
                    self.stderr(),
                    self.stdout()
                ));
            }
            match try_request(self.admin, "GET", "/readyz", &[], b"") {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("/readyz answered {}", r.status),
                Err(e) => last = format!("/readyz: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready after {timeout:?} ({last})\n--- stderr ---\n{}\n--- stdout ---\n{}",
                    self.stderr(),
                    self.stdout()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn exit_code_now(&self) -> Option<Option<i32>> {
        let mut child = self.child.lock().ok()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.code()),
            _ => None,
        }
    }

    /// Has the process exited? Returns its exit code (None: killed by a signal) if so.
    pub fn try_exit_status(&self) -> Option<Option<i32>> {
        self.exit_code_now()
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.try_exit_status() {
                return Some(code);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Proxy listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Raw contents of the decision-log file.
    pub fn decision_log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Complete (newline-terminated) decision-log lines, parsed. Panics on a line that is not a
    /// JSON object: the log is one JSON object per line.
    pub fn decision_log_lines(&self) -> Vec<Value> {
        let text = self.decision_log_text();
        let Some(end) = text.rfind('\n') else {
            return Vec::new();
        };
        text[..end]
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("decision log line is not JSON ({e}): {l}"));
                assert!(v.is_object(), "decision log line is not an object: {l}");
                v
            })
            .collect()
    }

    /// Waits until at least `n` decision-log lines exist, and returns them all.
    pub fn wait_log_lines(&self, n: usize) -> Vec<Value> {
        eventually(|| {
            let lines = self.decision_log_lines();
            (lines.len() >= n).then_some(lines)
        })
        .unwrap_or_else(|| {
            panic!(
                "expected at least {n} decision-log lines, got:\n{}\n--- stderr ---\n{}",
                self.decision_log_text(),
                self.stderr()
            )
        })
    }

    /// Waits for the decision-log line with this `request_id`.
    pub fn log_line_for(&self, request_id: &str) -> Value {
        eventually(|| {
            self.decision_log_lines()
                .into_iter()
                .find(|l| l.get("request_id").and_then(Value::as_str) == Some(request_id))
        })
        .unwrap_or_else(|| {
            panic!(
                "no decision-log line with request_id {request_id:?}; log:\n{}",
                self.decision_log_text()
            )
        })
    }

    /// Scrapes `GET /metrics` on the admin listener.
    pub fn metrics(&self) -> String {
        let r = request(self.admin, "GET", "/metrics", &[], b"");
        assert_eq!(r.status, 200, "/metrics status");
        r.body_text()
    }

    /// Waits until `metric_value(name, labels) == expected`; panics with the scrape otherwise.
    #[track_caller]
    pub fn assert_metric(&self, name: &str, labels: &[(&str, &str)], expected: f64) {
        let mut last = String::new();
        let ok = eventually(|| {
            last = self.metrics();
            (metric_value(&last, name, labels) == Some(expected)).then_some(())
        });
        assert!(
            ok.is_some(),
            "expected {name}{labels:?} == {expected}, got {:?}\n--- scrape ---\n{last}",
            metric_value(&last, name, labels)
        );
    }

    /// Waits until `metric_value(name, labels) >= min`; returns the value.
    #[track_caller]
    pub fn assert_metric_at_least(&self, name: &str, labels: &[(&str, &str)], min: f64) -> f64 {
        let mut last = String::new();
        let v = eventually(|| {
            last = self.metrics();
            metric_value(&last, name, labels).filter(|v| *v >= min)
        });
        v.unwrap_or_else(|| {
            panic!(
                "expected {name}{labels:?} >= {min}, got {:?}\n--- scrape ---\n{last}",
                metric_value(&last, name, labels)
            )
        })
    }

    /// Sends a signal by name (`TERM`, `HUP`) with the `kill` utility.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// A request to the proxy listener.
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        request(self.addr, method, target, headers, body)
    }

    /// `GET target` with an optional bearer token.
    pub fn get(&self, target: &str, token: Option<&str>) -> RawResponse {
        self.send_with_token("GET", target, token, &[])
    }

    /// `METHOD target` with an optional bearer token and extra headers.
    pub fn send_with_token(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> RawResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        headers.extend_from_slice(extra);
        let body: &[u8] = b"";
        self.send(method, target, &headers, body)
    }
}

impl Drop for Writ {
    fn drop(&mut self) {
        let child = match self.child.get_mut() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = child.kill();
        let _ = child.wait();
    }
}

// ==========================================================================================
// === Env: the common trio ===
// ==========================================================================================

/// Keys + backend + writ, started from a [`Config`]. Field order = drop order: writ first.
pub struct Env {
    pub writ: Writ,
    pub backend: Backend,
    pub keys: Keys,
}

impl Env {
    /// Default config with these actions.
    pub fn start(actions: &str) -> Env {
        Self::with_config(&Config::new(actions))
    }

    /// Any config (template).
    pub fn with_config(config: &Config) -> Env {
        Self::with_config_and_backend(config, BackendOptions::default())
    }

    /// Any config and backend behaviour.
    pub fn with_config_and_backend(config: &Config, opts: BackendOptions) -> Env {
        let keys = Keys::new();
        let backend = Backend::start_with(opts);
        let writ = Writ::start(&config.render(), &backend.url(), &keys);
        Env {
            writ,
            backend,
            keys,
        }
    }

    /// A valid token (default claims) with this scope.
    pub fn token(&self, scope: &str) -> String {
        self.keys.token_with_scope(scope)
    }

    pub fn get(&self, target: &str, token: Option<&str>) -> RawResponse {
        self.writ.get(target, token)
    }

    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        self.writ.send(method, target, headers, body)
    }

    pub fn send_with_token(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> RawResponse {
        self.writ.send_with_token(method, target, token, extra)
    }

    /// Raw bytes to the proxy listener.
    pub fn send_raw(&self, bytes: &[u8]) -> RawResponse {
        send_raw(self.writ.addr(), bytes)
    }
}

// ==========================================================================================
// === Raw HTTP/1.1 client ===
// ==========================================================================================

/// A response as read off the wire.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub reason_phrase: String,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header (case-insensitive name).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body otherwise.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.body_text()
            )
        })
    }

    /// Asserts a writ rejection: status, `application/problem+json`, every RFC 9457 field SPEC
    /// requires, `reason`, and `request_id` equal to the `x-request-id` response header.
    /// Returns the problem body.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, reason: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "status (expected reason {reason}); response: {}",
            self.describe()
        );
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.to_ascii_lowercase()
                .starts_with("application/problem+json"),
            "content-type should be application/problem+json, got {ct:?}; {}",
            self.describe()
        );
        let body = self.json();
        assert_eq!(
            body.get("reason").and_then(Value::as_str),
            Some(reason),
            "problem reason; {}",
            self.describe()
        );
        assert_eq!(
            body.get("status").and_then(Value::as_u64),
            Some(u64::from(status)),
            "problem status field; {}",
            self.describe()
        );
        for field in ["title", "detail"] {
            assert!(
                body.get(field).is_some_and(Value::is_string),
                "problem body must carry a string {field:?}; {}",
                self.describe()
            );
        }
        let action = body.get("action");
        assert!(
            action.is_some_and(|a| a.is_string() || a.is_null()),
            "problem body must carry `action` (string or null); {}",
            self.describe()
        );
        let rid = body.get("request_id").and_then(Value::as_str);
        assert!(
            rid.is_some_and(|r| !r.is_empty()),
            "problem body must carry a request_id; {}",
            self.describe()
        );
        assert_eq!(
            self.header("x-request-id"),
            rid,
            "x-request-id header must equal the body's request_id; {}",
            self.describe()
        );
        body
    }

    /// Like [`assert_problem`](Self::assert_problem) and also checks the body's `action`.
    #[track_caller]
    pub fn assert_problem_action(&self, status: u16, reason: &str, action: Option<&str>) -> Value {
        let body = self.assert_problem(status, reason);
        match action {
            Some(a) => assert_eq!(
                body.get("action").and_then(Value::as_str),
                Some(a),
                "problem action; {}",
                self.describe()
            ),
            None => assert!(
                body.get("action").is_some_and(Value::is_null),
                "problem action should be null; {}",
                self.describe()
            ),
        }
        body
    }

    /// Asserts a 401 `invalid_token` rejection with this reason.
    #[track_caller]
    pub fn assert_invalid_token(&self, reason: &str) -> Value {
        let body = self.assert_problem(401, reason);
        let www = self.header("www-authenticate").unwrap_or("");
        assert!(
            www.starts_with("Bearer ") && www.contains("error=\"invalid_token\""),
            "WWW-Authenticate should be Bearer error=\"invalid_token\", got {www:?}; {}",
            self.describe()
        );
        assert!(
            www.contains("error_description=\""),
            "invalid_token challenge should carry error_description, got {www:?}"
        );
        body
    }

    /// Short description for assertion messages.
    pub fn describe(&self) -> String {
        let body = self.body_text();
        let body = if body.len() > 600 {
            format!("{}…", &body[..600])
        } else {
            body
        };
        format!(
            "HTTP {} {} headers={:?} body={body:?}",
            self.status, self.reason_phrase, self.headers
        )
    }
}

/// A client connection for sending several requests in a row (pipelining, keep-alive).
pub struct RawConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        let writer = stream.try_clone()?;
        Ok(RawConn {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Writes bytes as given. A write error is returned (the peer may have closed early).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Half-closes the write side.
    pub fn finish_writing(&mut self) {
        let _ = self.writer.shutdown(Shutdown::Write);
    }

    /// Reads one response (`head_request`: the request was HEAD, no body follows).
    pub fn read_response(&mut self, head_request: bool) -> io::Result<RawResponse> {
        read_response(&mut self.reader, head_request)
    }

    /// Reads until the peer closes (or times out); returns everything read.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.reader.read_to_end(&mut out);
        out
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = r.read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn read_response(r: &mut impl BufRead, head_request: bool) -> io::Result<RawResponse> {
    loop {
        let status_line = read_line(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            ));
        }
        let status: u16 = parts.next().unwrap_or("").parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
        let reason_phrase = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        if (100..200).contains(&status) && status != 101 {
            continue; // interim response
        }
        let mut resp = RawResponse {
            status,
            reason_phrase,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || status == 101 {
            return Ok(resp);
        }
        let chunked = resp
            .header_all("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let size_line = read_line(r)?;
                let size_hex = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk size {size_line:?}"),
                    )
                })?;
                if size == 0 {
                    // trailers
                    loop {
                        if read_line(r)?.is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0u8; size];
                r.read_exact(&mut chunk)?;
                resp.body.extend_from_slice(&chunk);
                let _ = read_line(r)?; // CRLF after chunk
            }
        } else if let Some(cl) = resp.header("content-length") {
            let len: usize = cl.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad content-length {cl:?}"),
                )
            })?;
            let mut body = vec![0u8; len];
            r.read_exact(&mut body)?;
            resp.body = body;
        } else {
            r.read_to_end(&mut resp.body)?;
        }
        return Ok(resp);
    }
}

fn is_head(bytes: &[u8]) -> bool {
    bytes.starts_with(b"HEAD ")
}

/// Sends bytes as given and reads one response.
pub fn try_send_raw(addr: SocketAddr, bytes: &[u8]) -> io::Result<RawResponse> {
    let mut conn = RawConn::connect(addr)?;
    // The server may answer and close before reading everything: still read its answer.
    let write_result = conn.send(bytes);
    match conn.read_response(is_head(bytes)) {
        Ok(r) => Ok(r),
        Err(e) => Err(write_result.err().unwrap_or(e)),
    }
}

/// Sends bytes as given and reads one response; panics if none arrives within the timeouts.
#[track_caller]
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    try_send_raw(addr, bytes).unwrap_or_else(|e| {
        panic!(
            "no HTTP response from {addr} to {:?}: {e}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )
    })
}

/// Builds `METHOD TARGET HTTP/1.1\r\n` + headers byte for byte as given. Adds `Host: ADDR` unless a
/// Host header is given, and `Content-Length` when a body is given (or for POST/PUT/PATCH) unless
/// Content-Length or Transfer-Encoding is given.
pub fn build_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(format!("{method} {target} HTTP/1.1\r\n").as_bytes());
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        out.extend_from_slice(format!("Host: {addr}\r\n").as_bytes());
    }
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let framed = has("content-length") || has("transfer-encoding");
    if !framed && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A request written byte for byte (see [`build_request`]); returns the response or an error.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<RawResponse> {
    try_send_raw(addr, &build_request(addr, method, target, headers, body))
}

/// A request written byte for byte (see [`build_request`]); panics if no response arrives.
#[track_caller]
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    send_raw(addr, &build_request(addr, method, target, headers, body))
}

/// Encodes `body` with chunked transfer coding, in pieces of `chunk` bytes.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// ==========================================================================================
// === Prometheus text format ===
// ==========================================================================================

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped, label values unescaped).
/// Panics on a malformed sample line: writ's exposition must be parseable.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_sample(l).unwrap_or_else(|| panic!("malformed metrics line: {l:?}")))
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if rest.starts_with('{') {
        let mut chars = rest[1..].char_indices().peekable();
        let base = 1;
        let end;
        loop {
            // skip whitespace and commas
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let &(i, c) = chars.peek()?;
            if c == '}' {
                end = Some(base + i + 1);
                break;
            }
            let mut key = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    break;
                }
                key.push(c);
                chars.next();
            }
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.next()?.1 != '=' {
                return None;
            }
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    other => value.push(other),
                }
            }
            labels.insert(key, value);
        }
        rest = &rest[end?..];
    }
    let value_str = rest.split_whitespace().next()?;
    let value = match value_str {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Sum of the values of every `name` sample whose labels include all of `labels` (any order;
/// other labels ignored). `None` when no sample matches.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = parse_metrics(text)
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    if matching.is_empty() {
        None
    } else {
        Some(matching.iter().sum())
    }
}

/// The `# TYPE` declared for a metric family.
pub fn metric_type(text: &str, family: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("# TYPE ")?;
        let mut it = rest.split_whitespace();
        (it.next()? == family).then(|| it.next().unwrap_or("").to_string())
    })
}

/// Every sample of `name`.
pub fn metric_samples(text: &str, name: &str) -> Vec<Sample> {
    parse_metrics(text)
        .into_iter()
        .filter(|s| s.name == name)
        .collect()
}

// ==========================================================================================
// === small helpers ===
// ==========================================================================================

/// Is `s` an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`)?
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// A URL-safe unique-ish string for request ids etc.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{t:x}-{n}", std::process::id())
}

// ==========================================================================================
// === live operations (reload, key rotation, shutdown) ===
// ==========================================================================================

impl Writ {
    /// Fills a config template's placeholders exactly as [`Writ::spawn`] did for this process
    /// (same listeners, decision log and dir), so a rewritten config changes only what the
    /// template changes.
    pub fn fill(&self, template: &str, upstream: &str, keys: &Keys) -> String {
        template
            .replace("{{LISTEN}}", &self.addr.to_string())
            .replace("{{ADMIN}}", &self.admin.to_string())
            .replace("{{UPSTREAM}}", upstream)
            .replace("{{JWKS}}", &keys.jwks_path().display().to_string())
            .replace("{{LOG}}", &self.log_path.display().to_string())
            .replace("{{DIR}}", &self.dir.path().display().to_string())
    }

    /// Like [`Writ::spawn`], but `place(dir, text)` lays the filled-in config out under the
    /// run's temp dir and returns the path writ is started with (e.g. a Kubernetes
    /// ConfigMap-style symlink).
    pub fn spawn_placed(
        config: &str,
        upstream: &str,
        keys: &Keys,
        place: &dyn Fn(&Path, &str) -> PathBuf,
    ) -> Writ {
        let dir = tempfile::Builder::new()
            .prefix("writ-run-")
            .tempdir()
            .expect("tempdir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log_path = dir.path().join("decisions.log");
        let text = config
            .replace("{{LISTEN}}", &addr.to_string())
            .replace("{{ADMIN}}", &admin.to_string())
            .replace("{{UPSTREAM}}", upstream)
            .replace("{{JWKS}}", &keys.jwks_path().display().to_string())
            .replace("{{LOG}}", &log_path.display().to_string())
            .replace("{{DIR}}", &dir.path().display().to_string());
        let config_path = place(dir.path(), &text);
        let stdout_path = dir.path().join("stdout.txt");
        let stderr_path = dir.path().join("stderr.txt");
        let child = Command::new(env!("CARGO_BIN_EXE_writ"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .current_dir(dir.path())
            .env_remove("WRIT_CONFIG")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn writ binary");
        let pid = child.id();
        Writ {
            child: Mutex::new(child),
            pid,
            dir,
            addr,
            admin,
            config_path,
            log_path,
            stdout_path,
            stderr_path,
        }
    }

    /// [`Writ::spawn_placed`], then waits for `/readyz` like [`Writ::start`].
    pub fn start_placed(
        config: &str,
        upstream: &str,
        keys: &Keys,
        place: &dyn Fn(&Path, &str) -> PathBuf,
    ) -> Writ {
        let mut last_err = String::new();
        for _ in 0..3 {
            let writ = Self::spawn_placed(config, upstream, keys, place);
            match writ.wait_ready(READY_TIMEOUT) {
                Ok(()) => return writ,
                Err(e) => {
                    let retry = e.contains("in use") || e.contains("AddrInUse");
                    last_err = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("writ did not become ready:\n{last_err}\n--- config ---\n{config}");
    }

    /// Current value of a metric (`0` when the series does not exist yet: series are not
    /// pre-created).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels).unwrap_or(0.0)
    }
}

/// Replaces `path` atomically: writes a sibling temp file, then renames it over `path`.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        unique("w")
    ));
    fs::write(&tmp, text).expect("write temp file");
    fs::rename(&tmp, path).expect("rename over file");
}

// ==========================================================================================
// === appended helpers (smuggling / TLS suites) ===
// ==========================================================================================

impl RawConn {
    /// Changes the read timeout of this connection (default [`IO_TIMEOUT`]).
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.writer.set_read_timeout(Some(timeout))
    }
}

#[cfg(test)]
mod self_tests {
    use super::*;

    #[test]
    fn metrics_parser_handles_labels_in_any_order_and_escapes() {
        let text = "# HELP x y\n# TYPE writ_requests_total counter\n\
            writ_requests_total{reason=\"allowed\",action=\"a\",decision=\"allow\"} 3\n\
            writ_requests_total{action=\"a\", decision=\"deny\", reason=\"no_token\"} 2 1700000000\n\
            writ_build_info{version=\"0.1.0\"} 1\n\
            weird{l=\"a\\\"b\\\\c\"} +Inf\n\
            plain 4.5e0\n";
        assert_eq!(
            metric_value(
                text,
                "writ_requests_total",
                &[
                    ("action", "a"),
                    ("decision", "allow"),
                    ("reason", "allowed")
                ]
            ),
            Some(3.0)
        );
        assert_eq!(
            metric_value(text, "writ_requests_total", &[("action", "a")]),
            Some(5.0)
        );
        assert_eq!(
            metric_value(text, "writ_requests_total", &[("action", "b")]),
            None
        );
        assert_eq!(
            metric_value(text, "weird", &[("l", "a\"b\\c")]),
            Some(f64::INFINITY)
        );
        assert_eq!(metric_value(text, "plain", &[]), Some(4.5));
        assert_eq!(
            metric_type(text, "writ_requests_total").as_deref(),
            Some("counter")
        );
    }

    #[test]
    fn rfc3339_checker() {
        assert!(is_rfc3339("2026-01-02T03:04:05Z"));
        assert!(is_rfc3339("2026-01-02T03:04:05.123456Z"));
        assert!(is_rfc3339("2026-01-02T03:04:05+01:00"));
        assert!(!is_rfc3339("2026-01-02 03:04:05"));
        assert!(!is_rfc3339("1700000000"));
    }

    #[test]
    fn act_chain_nests_current_actor_outermost() {
        assert_eq!(
            act_value(&["agent:a", "user:b"]),
            json!({"sub": "agent:a", "act": {"sub": "user:b"}})
        );
    }
}
