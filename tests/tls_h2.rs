//! Downstream TLS (HTTP/1.1 and h2 by ALPN), h2c prior knowledge, HTTP/2 framing abuse, and
//! HTTPS upstreams (SPEC: `tls:`, `upstream.url: https://…`, `ca:`, `server_name:`).
//!
//! Certificates are generated per test with rcgen. Clients are hyper's own (http1 / http2
//! over tokio-rustls) where hyper can express the request; HTTP/2 messages hyper refuses to
//! build (uppercase names, connection-specific fields, a lying content-length) are written as
//! raw frames with a literal-only HPACK encoder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use support::{Config, Env, Keys, Recorded, Writ};
use tempfile::TempDir;

const ACTIONS: &str = r#"
  - name: public
    methods: [GET, POST]
    path: /public/{*rest}
    public: true
  - name: orders
    methods: [GET, POST]
    path: /orders/{id}
    require: { scopes: [orders:read] }
  - name: admin
    methods: [GET, POST]
    path: /admin
    require: { scopes: [admin] }
"#;

/// Upper bound for any async exchange in this file.
const ASYNC_TIMEOUT: Duration = Duration::from_secs(10);

// ==========================================================================================
// === certificates ===
// ==========================================================================================

/// A self-signed certificate and its key, written as PEM files.
struct Cert {
    _dir: TempDir,
    cert_path: PathBuf,
    key_path: PathBuf,
    der: CertificateDer<'static>,
    key_pem: String,
    cert_pem: String,
}

impl Cert {
    fn new(names: &[&str]) -> Cert {
        let names: Vec<String> = names.iter().map(|s| (*s).to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
        let dir = tempfile::Builder::new()
            .prefix("writ-tls-")
            .tempdir()
            .unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        let cert_pem = ck.cert.pem();
        let key_pem = ck.signing_key.serialize_pem();
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, &key_pem).unwrap();
        Cert {
            _dir: dir,
            cert_path,
            key_path,
            der: ck.cert.der().clone(),
            key_pem,
            cert_pem,
        }
    }

    fn server_config(&self, alpn: &[&[u8]]) -> rustls::ServerConfig {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }

    /// A client that trusts exactly this certificate and offers these ALPN protocols.
    fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }
}

fn tls_config(cert: &Cert) -> Config {
    Config::new(ACTIONS).set(
        "tls",
        &format!(
            "\n  cert: \"{}\"\n  key: \"{}\"",
            cert.cert_path.display(),
            cert.key_path.display()
        ),
    )
}

// ==========================================================================================
// === async plumbing ===
// ==========================================================================================

fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        tokio::time::timeout(ASYNC_TIMEOUT, fut)
            .await
            .expect("async exchange timed out")
    })
}

type ClientBody = Full<Bytes>;

/// A collected response.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    version: hyper::Version,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A writ rejection: status, problem+json, reason, request id matches the header.
    #[track_caller]
    fn assert_problem(&self, status: u16, reason: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/problem+json"),
            "content-type {ct:?}: {self:?}"
        );
        let body = self.json();
        assert_eq!(body["reason"], reason, "{body}");
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(
            body["request_id"].as_str(),
            self.header("x-request-id"),
            "{body}"
        );
        body
    }
}

async fn collect(resp: Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Answer {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: body.to_vec(),
    }
}

async fn tls_connect(
    addr: SocketAddr,
    cert: &Cert,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cert.client_config(alpn)));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with writ")
}

/// An h2 client over any stream (TLS with ALPN h2, or plain TCP: prior knowledge).
async fn h2_client<S>(io: S) -> hyper::client::conn::http2::SendRequest<ClientBody>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

async fn h1_client<S>(io: S) -> hyper::client::conn::http1::SendRequest<ClientBody>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    sender
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Request<ClientBody> {
    let mut b = Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Full::new(Bytes::copy_from_slice(body))).unwrap()
}

// ==========================================================================================
// === downstream TLS ===
// ==========================================================================================

#[test]
fn https_http1_allowed_request_reaches_backend_with_identity_and_forwarded_proto() {
    let cert = Cert::new(&["localhost", "127.0.0.1"]);
    let env = Env::with_config(&tls_config(&cert));
    let addr = env.writ.addr();
    let token = env.token("orders:read");
    let auth = format!("Bearer {token}");
    let (alpn, ok, denied) = block_on(async {
        let tls = tls_connect(addr, &cert, &[b"http/1.1"]).await;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut c = h1_client(tls).await;
        let ok = collect(
            c.send_request(req(
                "GET",
                "/orders/42?x=1",
                &[
                    ("host", "localhost"),
                    ("authorization", &auth),
                    ("x-forwarded-proto", "http"),
                    ("x-writ-subject", "mallory"),
                ],
                b"",
            ))
            .await
            .expect("allowed request"),
        )
        .await;
        let denied = collect(
            c.send_request(req("GET", "/orders/42", &[("host", "localhost")], b""))
                .await
                .expect("denied request"),
        )
        .await;
        (alpn, ok, denied)
    });
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.version, hyper::Version::HTTP_11);
    let seen = env.backend.single();
    assert_eq!(seen.target, "/orders/42?x=1");
    assert_eq!(
        seen.header_all("x-writ-subject"),
        vec!["alice"],
        "{seen:#?}"
    );
    assert_eq!(
        seen.header_all("x-writ-action"),
        vec!["orders"],
        "{seen:#?}"
    );
    assert_eq!(
        seen.header_all("x-forwarded-proto"),
        vec!["https"],
        "writ terminated TLS: the backend must learn https, never the client's claim: {seen:#?}"
    );
    denied.assert_problem(401, "no_token");
    assert_eq!(
        env.backend.count(),
        1,
        "the denied request must not be forwarded"
    );
}

#[test]
fn plain_http_to_the_tls_listener_is_not_served() {
    let cert = Cert::new(&["localhost", "127.0.0.1"]);
    let env = Env::with_config(&tls_config(&cert));
    let req = support::build_request(env.writ.addr(), "GET", "/public/x", &[], b"");
    let result = support::try_send_raw(env.writ.addr(), &req);
    if let Ok(r) = &result {
        assert!(
            r.status == 400,
            "cleartext on the TLS port must not be proxied: {}",
            r.describe()
        );
    }
    env.backend.assert_untouched();
}

#[test]
fn alpn_h2_is_negotiated_and_requests_work_over_h2() {
    let cert = Cert::new(&["localhost", "127.0.0.1"]);
    let env = Env::with_config(&tls_config(&cert));
    let addr = env.writ.addr();
    let port = addr.port();
    let token = env.token("orders:read");
    let auth = format!("Bearer {token}");
    let (alpn, ok, post, denied) = block_on(async {
        let tls = tls_connect(addr, &cert, &[b"h2", b"http/1.1"]).await;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut c = h2_client(tls).await;
        let ok = collect(
            c.send_request(req(
                "GET",
                &format!("https://localhost:{port}/orders/7?q=%20a"),
                &[("authorization", &auth)],
                b"",
            ))
            .await
            .expect("h2 allowed"),
        )
        .await;
        let post = collect(
            c.send_request(req(
                "POST",
                &format!("https://localhost:{port}/public/upload"),
                &[],
                b"h2 body bytes",
            ))
            .await
            .expect("h2 post"),
        )
        .await;
        let denied = collect(
            c.send_request(req(
                "GET",
                &format!("https://localhost:{port}/admin"),
                &[],
                b"",
            ))
            .await
            .expect("h2 denied"),
        )
        .await;
        (alpn, ok, post, denied)
    });
    assert_eq!(
        alpn.as_deref(),
        Some(&b"h2"[..]),
        "writ must offer h2 by ALPN"
    );
    assert_eq!(ok.version, hyper::Version::HTTP_2);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(post.status, 200, "{post:?}");
    let reqs = env.backend.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let get = &reqs[0];
    assert_eq!(get.target, "/orders/7?q=%20a");
    assert_eq!(get.header_all("x-writ-subject"), vec!["alice"], "{get:#?}");
    assert_eq!(get.header_all("x-writ-action"), vec!["orders"]);
    assert_eq!(get.header_all("x-forwarded-proto"), vec!["https"]);
    let host = get.header("host").unwrap_or("");
    assert!(
        host.eq_ignore_ascii_case(&format!("localhost:{port}")),
        "the backend must get the :authority as Host: {get:#?}"
    );
    let up = &reqs[1];
    assert_eq!(up.method, "POST");
    assert_eq!(up.target, "/public/upload");
    assert_eq!(up.body, b"h2 body bytes");
    assert_eq!(up.header_all("x-writ-action"), vec!["public"]);
    // The denied one: 401 problem+json over h2, with the RFC 6750 challenge.
    assert_eq!(denied.version, hyper::Version::HTTP_2);
    denied.assert_problem(401, "no_token");
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Bearer realm=\"writ\"")
    );
}

#[test]
fn h2c_prior_knowledge_works_on_the_plain_listener() {
    let env = Env::start(ACTIONS);
    let addr = env.writ.addr();
    let token = env.token("orders:read");
    let auth = format!("Bearer {token}");
    let (ok, denied, bad_token) = block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = h2_client(tcp).await;
        let uri = |p: &str| format!("http://{addr}{p}");
        let ok = collect(
            c.send_request(req(
                "GET",
                &uri("/orders/1"),
                &[("authorization", &auth)],
                b"",
            ))
            .await
            .expect("h2c allowed"),
        )
        .await;
        let denied = collect(
            c.send_request(req("POST", &uri("/admin"), &[], b"{\"x\":1}"))
                .await
                .expect("h2c denied"),
        )
        .await;
        let bad_token = collect(
            c.send_request(req(
                "GET",
                &uri("/orders/1"),
                &[("authorization", "Bearer not.a.jwt")],
                b"",
            ))
            .await
            .expect("h2c bad token"),
        )
        .await;
        (ok, denied, bad_token)
    });
    assert_eq!(ok.version, hyper::Version::HTTP_2);
    assert_eq!(ok.status, 200, "{ok:?}");
    let seen = env.backend.single();
    assert_eq!(seen.target, "/orders/1");
    assert_eq!(seen.header_all("x-writ-subject"), vec!["alice"]);
    assert_eq!(seen.header_all("x-forwarded-proto"), vec!["http"]);
    denied.assert_problem(401, "no_token");
    bad_token.assert_problem(401, "malformed_token");
    assert_eq!(
        env.backend.count(),
        1,
        "denied h2 streams must not be forwarded"
    );
}

#[test]
fn h2_cookie_crumbs_reach_an_http1_backend_as_one_line_rfc9113_8_2_3() {
    let env = Env::start(ACTIONS);
    let addr = env.writ.addr();
    let answer = block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = h2_client(tcp).await;
        collect(
            c.send_request(req(
                "GET",
                &format!("http://{addr}/public/page"),
                &[
                    ("cookie", "a=1"),
                    ("cookie", "b=2"),
                    ("cookie", "session=x y"),
                ],
                b"",
            ))
            .await
            .expect("h2c request"),
        )
        .await
    });
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = env.backend.single();
    assert_eq!(seen.header_all("cookie"), vec!["a=1; b=2; session=x y"]);
}

#[test]
fn h2_denied_streams_never_reach_the_backend_even_interleaved() {
    let env = Env::start(ACTIONS);
    let addr = env.writ.addr();
    let weak = env.token("orders:read");
    let weak_auth = format!("Bearer {weak}");
    let answers = block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let c = h2_client(tcp).await;
        let mut tasks = Vec::new();
        for i in 0..12 {
            let mut c = c.clone();
            let (method, path, auth) = match i % 3 {
                0 => ("POST", "/admin", None),
                1 => ("GET", "/admin", Some(weak_auth.clone())),
                _ => ("POST", "/public/ok", None),
            };
            let uri = format!("http://{addr}{path}");
            tasks.push(tokio::spawn(async move {
                let mut headers = vec![("x-seq", i.to_string())];
                if let Some(a) = auth {
                    headers.push(("authorization", a));
                }
                let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let r = c
                    .send_request(req(method, &uri, &h, format!("body-{i}").as_bytes()))
                    .await
                    .expect("stream");
                (i, collect(r).await)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for (i, a) in &answers {
        match i % 3 {
            0 => {
                a.assert_problem(401, "no_token");
            }
            1 => {
                a.assert_problem(403, "insufficient_scope");
            }
            _ => assert_eq!(a.status, 200, "{a:?}"),
        }
    }
    let reqs = env.backend.requests();
    assert_eq!(reqs.len(), 4, "only the 4 public streams: {reqs:#?}");
    for r in &reqs {
        assert_eq!(r.target, "/public/ok");
        let seq = r.header("x-seq").unwrap();
        assert_eq!(
            r.body,
            format!("body-{seq}").as_bytes(),
            "each stream's body must stay with its own request"
        );
    }
}

#[test]
fn h2_authority_and_host_that_disagree_are_400() {
    let env = Env::start(ACTIONS);
    let addr = env.writ.addr();
    let token = env.token("admin");
    let auth = format!("Bearer {token}");
    let (disagree, agree_case, disagree_admin) = block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = h2_client(tcp).await;
        let disagree = collect(
            c.send_request(req(
                "GET",
                "http://public.example/public/x",
                &[("host", "internal.example")],
                b"",
            ))
            .await
            .expect("stream"),
        )
        .await;
        let agree_case = collect(
            c.send_request(req(
                "GET",
                "http://Public.Example/public/y",
                &[("host", "public.example")],
                b"",
            ))
            .await
            .expect("stream"),
        )
        .await;
        let disagree_admin = collect(
            c.send_request(req(
                "GET",
                "http://a.example/admin",
                &[("host", "b.example"), ("authorization", &auth)],
                b"",
            ))
            .await
            .expect("stream"),
        )
        .await;
        (disagree, agree_case, disagree_admin)
    });
    disagree.assert_problem(400, "bad_request");
    disagree_admin.assert_problem(400, "bad_request");
    assert_eq!(agree_case.status, 200, "{agree_case:?}");
    let seen = env.backend.single();
    assert_eq!(seen.target, "/public/y");
    assert!(
        seen.header("host")
            .is_some_and(|h| h.eq_ignore_ascii_case("public.example")),
        "{seen:#?}"
    );
}

// ==========================================================================================
// === raw HTTP/2 frames ===
// ==========================================================================================

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < (1 << 14), "keep frames under the default max size");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK integer with an `n`-bit prefix, first byte ORed with `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | u8::try_from(v).unwrap());
        return;
    }
    out.push(first | u8::try_from(max).unwrap());
    v -= max;
    while v >= 128 {
        out.push(u8::try_from(v % 128).unwrap() | 0x80);
        v /= 128;
    }
    out.push(u8::try_from(v).unwrap());
}

/// One raw header field: name and value bytes.
type Field<'a> = (&'a [u8], &'a [u8]);

/// A header block of "literal without indexing, new name" fields, bytes exactly as given
/// (no Huffman, no lower-casing, no validation).
fn hpack(fields: &[Field<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, n.len());
        out.extend_from_slice(n);
        hpack_int(&mut out, 0, 7, v.len());
        out.extend_from_slice(v);
    }
    out
}

/// What the server did with stream 1.
#[derive(Debug, PartialEq)]
enum H2Outcome {
    /// A response HEADERS frame; the `:status` if it could be decoded.
    Response(Option<u16>),
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
    /// The connection closed with no answer for the stream.
    Closed,
    /// Nothing within the timeout.
    Silence,
}

impl H2Outcome {
    fn is_refusal(&self) -> bool {
        match self {
            H2Outcome::Response(Some(s)) => (400..500).contains(s),
            H2Outcome::Reset(_) | H2Outcome::GoAway(_) | H2Outcome::Closed => true,
            _ => false,
        }
    }
}

fn read_exact_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Option<bool> {
    let mut got = 0;
    while got < buf.len() {
        if Instant::now() > deadline {
            return None;
        }
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Some(false),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(false),
        }
    }
    Some(true)
}

/// Decodes the `:status` at the start of a response header block (static-table index, or a
/// literal with the `:status` name whose value is plain or Huffman-coded digits).
fn decode_status(block: &[u8]) -> Option<u16> {
    let mut i = 0;
    // Skip dynamic table size updates (001xxxxx).
    while i < block.len() && block[i] & 0xe0 == 0x20 {
        i += 1;
        if block[i - 1] & 0x1f == 0x1f {
            while i < block.len() && block[i] & 0x80 != 0 {
                i += 1;
            }
            i += 1;
        }
    }
    let b = *block.get(i)?;
    if b & 0x80 != 0 {
        return match b & 0x7f {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    let idx = if b & 0xc0 == 0x40 {
        b & 0x3f
    } else if b & 0xe0 == 0x00 {
        b & 0x0f
    } else {
        return None;
    };
    if !(8..=14).contains(&idx) {
        return None;
    }
    let lb = *block.get(i + 1)?;
    let len = usize::from(lb & 0x7f);
    let raw = block.get(i + 2..i + 2 + len)?;
    let digits = if lb & 0x80 == 0 {
        String::from_utf8(raw.to_vec()).ok()?
    } else {
        // Huffman: '0'-'2' are 5-bit 00000..00010, '3'-'9' are 6-bit 011001..011111.
        let bits: Vec<u8> = raw
            .iter()
            .flat_map(|byte| (0..8).rev().map(move |k| (byte >> k) & 1))
            .collect();
        let mut out = String::new();
        let mut p = 0;
        while out.len() < 3 && p + 5 <= bits.len() {
            let v5 = bits[p..p + 5].iter().fold(0u8, |a, b| a << 1 | b);
            if v5 <= 2 {
                out.push(char::from(b'0' + v5));
                p += 5;
            } else if p + 6 <= bits.len() {
                let v6 = bits[p..p + 6].iter().fold(0u8, |a, b| a << 1 | b);
                if (0x19..=0x1f).contains(&v6) {
                    out.push(char::from(b'0' + 3 + (v6 - 0x19)));
                    p += 6;
                } else {
                    return None;
                }
            } else {
                return None;
            }
        }
        out
    };
    digits.parse().ok()
}

/// Opens a prior-knowledge h2 connection, sends the preface, empty SETTINGS and `frames`,
/// then reads until the server answers stream 1 (acknowledging its SETTINGS, answering PING).
fn raw_h2(addr: SocketAddr, frames: &[Vec<u8>]) -> H2Outcome {
    raw_h2_paced(addr, frames, Duration::ZERO)
}

/// Like [`raw_h2`], but waits `pause` before each frame after the first (so that writ has
/// decided and started forwarding before the next frame arrives).
fn raw_h2_paced(addr: SocketAddr, frames: &[Vec<u8>], pause: Duration) -> H2Outcome {
    let mut s = TcpStream::connect_timeout(&addr, support::IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.set_write_timeout(Some(support::IO_TIMEOUT)).unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for (i, f) in frames.iter().enumerate() {
        if i > 0 && !pause.is_zero() {
            if s.write_all(&out).is_err() {
                return H2Outcome::Closed;
            }
            out.clear();
            thread::sleep(pause);
        }
        out.extend_from_slice(f);
    }
    if s.write_all(&out).is_err() {
        return H2Outcome::Closed;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut head = [0u8; 9];
        match read_exact_by(&mut s, &mut head, deadline) {
            None => return H2Outcome::Silence,
            Some(false) => return H2Outcome::Closed,
            Some(true) => {}
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let sid = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        match read_exact_by(&mut s, &mut payload, deadline) {
            None => return H2Outcome::Silence,
            Some(false) => return H2Outcome::Closed,
            Some(true) => {}
        }
        match kind {
            SETTINGS if flags & ACK == 0 => {
                let _ = s.write_all(&frame(SETTINGS, ACK, 0, &[]));
            }
            PING if flags & ACK == 0 => {
                let _ = s.write_all(&frame(PING, ACK, 0, &payload));
            }
            HEADERS if sid == 1 => {
                let mut block = &payload[..];
                if flags & 0x8 != 0 {
                    let pad = usize::from(block[0]);
                    block = &block[1..block.len() - pad];
                }
                if flags & 0x20 != 0 {
                    block = &block[5..];
                }
                return H2Outcome::Response(decode_status(block));
            }
            RST_STREAM if sid == 1 => {
                return H2Outcome::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()));
            }
            GOAWAY => {
                return H2Outcome::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
            }
            _ => {}
        }
    }
}

/// The standard pseudo-headers for a request to writ, then `extra` fields.
fn request_block(addr: SocketAddr, method: &str, path: &[u8], extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let authority = addr.to_string();
    let mut fields: Vec<Field<'_>> = vec![
        (b":method", method.as_bytes()),
        (b":scheme", b"http"),
        (b":authority", authority.as_bytes()),
        (b":path", path),
    ];
    fields.extend_from_slice(extra);
    hpack(&fields)
}

#[test]
fn raw_h2_control_request_is_answered() {
    // The positive control for the raw-frame tests below: a well-formed request built by the
    // same encoder is forwarded and answered 200.
    let env = Env::start(ACTIONS);
    let addr = env.writ.addr();
    let block = request_block(addr, "GET", b"/public/raw", &[(b"x-probe", b"1")]);
    let outcome = raw_h2(addr, &[frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)]);
    assert_eq!(outcome, H2Outcome::Response(Some(200)));
    let seen = env.backend.single();
    assert_eq!(seen.target, "/public/raw");
    assert_eq!(seen.header("x-probe"), Some("1"));
    // And a denied one is answered with 401, decoded from the literal :status.
    let block = request_block(addr, "GET", b"/admin", &[]);
    let outcome = raw_h2(addr, &[frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)]);
    assert_eq!(outcome, H2Outcome::Response(Some(401)));
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn h2_uppercase_header_name_is_a_protocol_error() {
    // RFC 9113 §8.2.1: a field name with uppercase characters is malformed.
    let env = Env::start(ACTIONS);
    let addr = env.writ.addr();
    let token = env.token("admin");
    let auth = format!("Bearer {token}");
    for (path, field) in [
        (&b"/public/x"[..], (&b"X-Upper"[..], &b"v"[..])),
        (b"/public/x", (b"x-writ-Subject", b"root")),
        (b"/admin", (b"Authorization", auth.as_bytes())),
    ] {
        let block = request_block(addr, "GET", path, &[field]);
        let outcome = raw_h2(addr, &[frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)]);
        assert!(
            outcome.is_refusal(),
            "{:?}: uppercase name must be refused, got {outcome:?}",
            String::from_utf8_lossy(field.0)
        );
    }
    env.backend.assert_untouched();
}

#[test]
fn h2_connection_specific_fields_are_refused() {
    // RFC 9113 §8.2.2: connection-specific fields make a request malformed; in particular
    // `transfer-encoding` must never reach an HTTP/1.1 backend next to h2 framing (H2.TE).
    let env = Env::start(ACTIONS);
    let addr = env.writ.addr();
    let smuggled = format!("0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    for field in [
        (&b"transfer-encoding"[..], &b"chunked"[..]),
        (b"connection", b"keep-alive"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-connection", b"keep-alive"),
        (b"upgrade", b"websocket"),
        (b"te", b"gzip"),
    ] {
        let block = request_block(addr, "POST", b"/public/x", &[field]);
        let outcome = raw_h2(
            addr,
            &[
                frame(HEADERS, END_HEADERS, 1, &block),
                frame(DATA, END_STREAM, 1, smuggled.as_bytes()),
            ],
        );
        assert!(
            outcome.is_refusal(),
            "{:?}: must be refused, got {outcome:?}",
            String::from_utf8_lossy(field.0)
        );
    }
    env.backend.assert_untouched();
}

#[test]
fn h2_content_length_that_lies_never_smuggles_h2_cl() {
    // H2.CL: `content-length: 0` with a DATA frame holding a request. Downgraded to HTTP/1.1
    // by a naive proxy, the DATA would become the next request on the backend connection.
    let env = Env::start(ACTIONS);
    let addr = env.writ.addr();
    let smuggled = format!("GET /public/smuggled HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    for pause in [Duration::ZERO, Duration::from_millis(300)] {
        for (path, cl) in [
            (&b"/public/x"[..], &b"0"[..]),
            (b"/public/x", b"3"),
            (b"/admin", b"0"),
        ] {
            env.backend.clear();
            let block = request_block(addr, "POST", path, &[(b"content-length", cl)]);
            let outcome = raw_h2_paced(
                addr,
                &[
                    frame(HEADERS, END_HEADERS, 1, &block),
                    frame(DATA, END_STREAM, 1, smuggled.as_bytes()),
                ],
                pause,
            );
            thread::sleep(Duration::from_millis(100));
            let case = format!(
                "{} content-length {} + {} DATA bytes, pause {pause:?}: {outcome:?}",
                String::from_utf8_lossy(path),
                String::from_utf8_lossy(cl),
                smuggled.len()
            );
            let reqs = env.backend.requests();
            assert!(reqs.len() <= 1, "{case}: {reqs:#?}");
            for seen in &reqs {
                assert_eq!(seen.path(), "/public/x", "{case}: {seen:#?}");
                assert!(
                    seen.body.len() <= 3 && !seen.body.starts_with(b"GET"),
                    "{case}: more body than content-length allowed reached the backend: {seen:#?}"
                );
            }
            if path == b"/admin" {
                assert!(reqs.is_empty(), "{case}");
            }
        }
    }
}

#[test]
fn h2_pseudo_header_abuse_is_refused() {
    let env = Env::start(ACTIONS);
    let addr = env.writ.addr();
    let authority = addr.to_string();
    let a = authority.as_bytes();
    let cases: Vec<(&str, Vec<Field<'_>>)> = vec![
        (
            "duplicate :path",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", a),
                (b":path", b"/public/x"),
                (b":path", b"/admin"),
            ],
        ),
        (
            "missing :path",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", a),
            ],
        ),
        (
            "missing :method",
            vec![
                (b":scheme", b"http"),
                (b":authority", a),
                (b":path", b"/public/x"),
            ],
        ),
        (
            "pseudo-header after a regular field",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b"x-a", b"b"),
                (b":authority", a),
                (b":path", b"/public/x"),
            ],
        ),
        (
            "unknown pseudo-header",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", a),
                (b":path", b"/public/x"),
                (b":writ", b"x"),
            ],
        ),
        (
            "empty :path",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", a),
                (b":path", b""),
            ],
        ),
        (
            "CRLF request-line injection in :path",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", a),
                (
                    b":path",
                    b"/public/x HTTP/1.1\r\nHost: x\r\n\r\nGET /public/smuggled",
                ),
            ],
        ),
        (
            "space in :path",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", a),
                (b":path", b"/public/x /admin"),
            ],
        ),
        (
            "CRLF field injection in a value",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", a),
                (b":path", b"/public/x"),
                (b"x-a", b"b\r\nx-writ-subject: root"),
            ],
        ),
        (
            "NUL in a value",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", a),
                (b":path", b"/public/x"),
                (b"x-a", b"b\0c"),
            ],
        ),
        (
            "colon inside a field name",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", a),
                (b":path", b"/public/x"),
                (b"x-writ-subject:root", b"v"),
            ],
        ),
        (
            "space inside a field name",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", a),
                (b":path", b"/public/x"),
                (b"x writ", b"v"),
            ],
        ),
        (
            "absolute-form in :path",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", a),
                (b":path", b"http://evil.example/admin"),
            ],
        ),
        (
            "CONNECT with a path",
            vec![
                (b":method", b"CONNECT"),
                (b":authority", a),
                (b":path", b"/public/x"),
            ],
        ),
    ];
    for (case, fields) in cases {
        let outcome = raw_h2(
            addr,
            &[frame(HEADERS, END_HEADERS | END_STREAM, 1, &hpack(&fields))],
        );
        assert!(
            outcome.is_refusal(),
            "{case}: must be refused (4xx, RST_STREAM or GOAWAY), got {outcome:?}"
        );
    }
    env.backend.assert_untouched();
}

// ==========================================================================================
// === HTTPS upstream ===
// ==========================================================================================

/// A recording HTTP/1.1 backend behind TLS.
struct TlsBackend {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    handshakes: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TlsBackend {
    fn start(cert: &Cert) -> TlsBackend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor =
            tokio_rustls::TlsAcceptor::from(Arc::new(cert.server_config(&[b"http/1.1"])));
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let handshakes: Arc<AtomicUsize> = Arc::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (reqs, hs) = (requests.clone(), handshakes.clone());
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let (acceptor, reqs, hs) = (acceptor.clone(), reqs.clone(), hs.clone());
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            hs.fetch_add(1, Ordering::SeqCst);
                            let svc = hyper::service::service_fn(
                                move |r: Request<hyper::body::Incoming>| {
                                    let reqs = reqs.clone();
                                    async move {
                                        let method = r.method().to_string();
                                        let target = r.uri().to_string();
                                        let headers = r
                                            .headers()
                                            .iter()
                                            .map(|(n, v)| {
                                                (
                                                    n.as_str().to_string(),
                                                    String::from_utf8_lossy(v.as_bytes())
                                                        .into_owned(),
                                                )
                                            })
                                            .collect();
                                        let body = r
                                            .into_body()
                                            .collect()
                                            .await
                                            .map(|b| b.to_bytes().to_vec())
                                            .unwrap_or_default();
                                        reqs.lock().unwrap().push(Recorded {
                                            method,
                                            target,
                                            headers,
                                            body,
                                            trailers: Vec::new(),
                                        });
                                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                            Bytes::from_static(b"tls-backend-ok"),
                                        )))
                                    }
                                },
                            );
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tls), svc)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = rx => {}
                }
            });
        });
        TlsBackend {
            addr,
            requests,
            handshakes,
            shutdown: Some(tx),
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// writ in front of an https upstream; `extra` is appended to the `upstream:` block.
fn writ_with_tls_upstream(url: &str, ca: &Cert, extra: &str, keys: &Keys) -> Writ {
    let config = Config::new(ACTIONS).set(
        "upstream",
        &format!(
            "\n  url: \"{url}\"\n  ca: \"{}\"\n  connect_timeout: 2s\n  timeout: 5s{extra}",
            ca.cert_path.display()
        ),
    );
    Writ::start(&config.render(), "unused", keys)
}

#[test]
fn https_upstream_with_configured_ca_forwards_over_tls() {
    let cert = Cert::new(&["localhost"]);
    let backend = TlsBackend::start(&cert);
    let keys = Keys::new();
    let url = format!("https://localhost:{}", backend.addr.port());
    let writ = writ_with_tls_upstream(&url, &cert, "", &keys);
    let token = keys.token_with_scope("orders:read");
    let resp = writ.get("/orders/9?z=1", Some(&token));
    assert_eq!(resp.status, 200, "{}\n{}", resp.describe(), writ.stderr());
    assert_eq!(resp.body_text(), "tls-backend-ok");
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let seen = &reqs[0];
    assert_eq!(seen.target, "/orders/9?z=1");
    assert_eq!(seen.header_all("x-writ-subject"), vec!["alice"]);
    assert_eq!(seen.header_all("x-writ-action"), vec!["orders"]);
    assert!(backend.handshakes.load(Ordering::SeqCst) >= 1);
    // Denied requests still never reach it.
    let denied = writ.get("/admin", None);
    denied.assert_problem(401, "no_token");
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn https_upstream_server_name_override_is_used_for_verification() {
    // The certificate names only `localhost`; the URL says 127.0.0.1. Only `server_name`
    // makes verification succeed.
    let cert = Cert::new(&["localhost"]);
    let backend = TlsBackend::start(&cert);
    let keys = Keys::new();
    let url = format!("https://127.0.0.1:{}", backend.addr.port());
    let writ = writ_with_tls_upstream(&url, &cert, "\n  server_name: localhost", &keys);
    let resp = writ.get("/public/sni", None);
    assert_eq!(resp.status, 200, "{}\n{}", resp.describe(), writ.stderr());
    assert_eq!(backend.requests().len(), 1);
    assert_eq!(backend.requests()[0].target, "/public/sni");
}

#[test]
fn https_upstream_with_wrong_server_name_is_502_and_counted_as_tls() {
    let cert = Cert::new(&["localhost"]);
    let backend = TlsBackend::start(&cert);
    let keys = Keys::new();
    let url = format!("https://localhost:{}", backend.addr.port());
    let writ = writ_with_tls_upstream(&url, &cert, "\n  server_name: wrong.example", &keys);
    let resp = writ.get("/public/x", None);
    resp.assert_problem_action(502, "upstream_unavailable", Some("public"));
    assert!(
        backend.requests().is_empty(),
        "nothing may be sent over an unverified connection"
    );
    assert_eq!(backend.handshakes.load(Ordering::SeqCst), 0);
    writ.assert_metric("writ_upstream_errors_total", &[("kind", "tls")], 1.0);
}

#[test]
fn https_upstream_signed_by_an_untrusted_ca_is_502_and_counted_as_tls() {
    let real = Cert::new(&["localhost"]);
    let other = Cert::new(&["localhost"]);
    let backend = TlsBackend::start(&real);
    let keys = Keys::new();
    let url = format!("https://localhost:{}", backend.addr.port());
    let writ = writ_with_tls_upstream(&url, &other, "", &keys);
    let resp = writ.get("/public/x", None);
    resp.assert_problem(502, "upstream_unavailable");
    assert!(backend.requests().is_empty());
    writ.assert_metric("writ_upstream_errors_total", &[("kind", "tls")], 1.0);
}
