//! Downstream TLS (HTTP/1.1 and h2 by ALPN), h2c prior knowledge, HTTP/2 framing abuse, and
//! HTTPS upstreams (SPEC: `tls:`, `upstream.url: https://…`, `ca:`, `server_name:`).
//!
//! Certificates are generated per test with rcgen. Clients are hyper's own (http1 / http2
//! over tokio-rustls) where hyper can express the request; HTTP/2 messages hyper refuses to
//! build (uppercase names, connection-specific fields, a lying content-length) are written as
//! raw frames with a literal-only HPACK encoder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use support::{
    Cert, Config, DATA, END_HEADERS, END_STREAM, Env, Field, H2Outcome, HEADERS, Keys, TlsBackend,
    Writ, block_on, collect, frame, h1_client, h2_client, hpack, raw_h2, raw_h2_paced, req,
    request_block, tls_connect,
};

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
