//! Request smuggling and HTTP/1.1 framing attacks (THREATS.md "Request smuggling / framing"),
//! written byte for byte on raw sockets: no HTTP client normalizes anything here.
//!
//! Every test ends in one of two states:
//!
//! * **refused**: a 4xx (or a closed connection) and the backend saw nothing of the smuggled
//!   part (usually: not a single byte);
//! * **forwarded**: exactly one well-framed request reached the backend, the one writ decided
//!   (cross-checked against the decision log through `x-request-id`).
//!
//! The smuggled payload is, on purpose, a request writ would *allow* on its own
//! (`GET /public/smuggled`): if any framing desync turned body bytes into a request, the
//! backend would record it even though writ's policy is correct. Requests to `/admin` without
//! a token are the "denied" carriers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use support::{Env, RawConn, RawResponse, Recorded, build_request, chunked};

const ACTIONS: &str = r#"
  - name: public
    methods: [GET, POST]
    path: /public/{*rest}
    public: true
  - name: admin
    methods: [GET, POST]
    path: /admin
    require: { scopes: [admin] }
  - name: run-job
    methods: [POST]
    path: /jobs/{job}/run
    execution: true
    require: { scopes: [jobs:execute] }
"#;

/// The path of the request hidden in bodies; writ would allow it if it ever parsed it as one.
const SMUGGLED: &str = "/public/smuggled";
/// How long to wait for a response after the first one (a smuggled request answers in ms).
const SHORT: Duration = Duration::from_millis(400);

fn env() -> Env {
    Env::start(ACTIONS)
}

/// `GET /public/smuggled` as a complete HTTP/1.1 request.
fn smuggled(addr: SocketAddr) -> String {
    format!("GET {SMUGGLED} HTTP/1.1\r\nHost: {addr}\r\n\r\n")
}

/// What one connection produced.
#[derive(Debug)]
struct Exchange {
    responses: Vec<RawResponse>,
    /// The server closed the connection after the responses read.
    closed: bool,
}

impl Exchange {
    fn first(&self) -> Option<&RawResponse> {
        self.responses.first()
    }

    fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.status).collect()
    }
}

/// Writes `bytes` on one connection and reads every response that comes (see [`read_all`]),
/// expecting one.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Exchange {
    exchange_n(addr, bytes, 1)
}

/// Writes `bytes` on one connection and reads every response that comes, expecting `expected`.
fn exchange_n(addr: SocketAddr, bytes: &[u8], expected: usize) -> Exchange {
    let mut conn = RawConn::connect(addr).expect("connect to writ");
    let _ = conn.send(bytes);
    read_all(&mut conn, expected)
}

/// Reads responses until the connection closes or goes quiet: the first `expected` ones with
/// the harness timeout, any further one (which would be a smuggled request's answer) with
/// [`SHORT`]. Also reports whether the server closed the connection.
fn read_all(conn: &mut RawConn, expected: usize) -> Exchange {
    let mut responses = Vec::new();
    let closed;
    loop {
        match conn.read_response(false) {
            Ok(r) => {
                responses.push(r);
                if responses.len() >= expected {
                    let _ = conn.set_read_timeout(SHORT);
                }
            }
            Err(e) => {
                closed = !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
                break;
            }
        }
        assert!(responses.len() <= 8, "too many responses: {responses:#?}");
    }
    // Let anything writ may still be forwarding land at the backend before we look.
    thread::sleep(Duration::from_millis(100));
    Exchange { responses, closed }
}

/// No request the client did not send as a request ever reached the backend.
#[track_caller]
fn assert_nothing_smuggled(env: &Env) {
    for seen in env.backend.requests() {
        assert_ne!(
            seen.path(),
            SMUGGLED,
            "body bytes were executed by the backend as a request: {seen:#?}"
        );
        assert_ne!(
            seen.path(),
            "/admin",
            "a request writ would deny reached the backend: {seen:#?}"
        );
    }
}

/// Every request the backend received carries the `x-request-id` of a decision-log line that
/// allowed exactly that path: nothing reaches the backend that writ did not decide.
#[track_caller]
fn assert_all_forwarded_were_decided(env: &Env) {
    for seen in env.backend.requests() {
        let rid = seen
            .header("x-request-id")
            .unwrap_or_else(|| panic!("forwarded request without x-request-id: {seen:#?}"));
        let line = env.writ.log_line_for(rid);
        assert_eq!(
            line["decision"], "allow",
            "forwarded request {seen:#?} was not allowed: {line}"
        );
        assert_eq!(
            line["path"].as_str(),
            Some(seen.path()),
            "the backend executed another path than writ decided: {line} vs {seen:#?}"
        );
    }
}

/// Refused by the parser or by writ: every response is one of `statuses` (none at all is a
/// closed connection), at most one response, and the backend received not a single byte.
#[track_caller]
fn assert_refused(env: &Env, ex: &Exchange, statuses: &[u16], case: &str) {
    assert!(
        ex.responses.len() <= 1,
        "{case}: one request was sent, but {} responses came back: {:?}",
        ex.responses.len(),
        ex.statuses()
    );
    if let Some(r) = ex.first() {
        assert!(
            statuses.contains(&r.status),
            "{case}: expected one of {statuses:?}, got {}",
            r.describe()
        );
    }
    assert!(
        env.backend.requests().is_empty() && env.backend.raw_bytes() == 0,
        "{case}: a refused request must never reach the backend, got {:#?}",
        env.backend.requests()
    );
}

/// The only request the backend received (since the last clear).
#[track_caller]
fn only_request(env: &Env, case: &str) -> Recorded {
    let reqs = env.backend.requests();
    assert_eq!(
        reqs.len(),
        1,
        "{case}: exactly one request must reach the backend, got {reqs:#?}"
    );
    reqs.into_iter().next().unwrap()
}

/// A forwarded request must be well framed: never both Content-Length and Transfer-Encoding,
/// a single Content-Length equal to the body length when present.
#[track_caller]
fn assert_well_framed(seen: &Recorded, case: &str) {
    let cl = seen.header_all("content-length");
    let te = seen.header_all("transfer-encoding");
    assert!(
        cl.is_empty() || te.is_empty(),
        "{case}: forwarded with both Content-Length and Transfer-Encoding: {seen:#?}"
    );
    assert!(
        cl.len() <= 1,
        "{case}: forwarded with several Content-Length fields: {seen:#?}"
    );
    if let Some(v) = cl.first() {
        assert_eq!(
            *v,
            seen.body.len().to_string(),
            "{case}: forwarded Content-Length must be one decimal equal to the body length: {seen:#?}"
        );
    }
}

fn is_parser_400(r: &RawResponse) -> bool {
    r.status == 400
}

// ==========================================================================================
// === Content-Length / Transfer-Encoding ===
// ==========================================================================================

#[test]
fn content_length_and_transfer_encoding_together_never_smuggle() {
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    let chunk_of_s = format!("{:x}\r\n{s}\r\n0\r\n\r\n", s.len());
    let tail_body = format!("5\r\nhello\r\n0\r\n\r\n{s}");
    // (name, head fields, body, the body a TE-framed reading yields)
    let cases: Vec<(&str, String, String, Vec<u8>)> = vec![
        (
            "CL covers a request after the last chunk (CL.TE)",
            format!(
                "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                tail_body.len()
            ),
            tail_body.clone(),
            b"hello".to_vec(),
        ),
        (
            "TE before CL",
            format!(
                "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                tail_body.len()
            ),
            tail_body.clone(),
            b"hello".to_vec(),
        ),
        (
            "CL shorter than the chunked body (TE.CL)",
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n".to_string(),
            chunk_of_s.clone(),
            s.clone().into_bytes(),
        ),
        (
            "CL zero, request in the chunk",
            "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n".to_string(),
            chunk_of_s.clone(),
            s.clone().into_bytes(),
        ),
    ];
    for (case, fields, body, te_body) in cases {
        env.backend.clear();
        let req = format!("POST /public/x HTTP/1.1\r\nHost: {addr}\r\n{fields}\r\n{body}");
        let ex = exchange(addr, req.as_bytes());
        assert_nothing_smuggled(&env);
        match ex.first() {
            Some(r) if r.status == 200 => {
                // RFC 9112 §6.1/§6.3: process by Transfer-Encoding alone, drop Content-Length,
                // and close the connection after responding.
                let seen = only_request(&env, case);
                assert_eq!(seen.method, "POST", "{case}");
                assert_eq!(seen.path(), "/public/x", "{case}");
                assert_eq!(
                    seen.body, te_body,
                    "{case}: body must be read by Transfer-Encoding alone"
                );
                assert_well_framed(&seen, case);
                assert_eq!(ex.responses.len(), 1, "{case}: {:?}", ex.statuses());
                assert!(
                    ex.closed,
                    "{case}: RFC 9112 §6.3: the server MUST close the connection after a \
                     request with both Content-Length and Transfer-Encoding"
                );
                assert_all_forwarded_were_decided(&env);
            }
            _ => assert_refused(&env, &ex, &[400], case),
        }
    }
}

#[test]
fn content_length_and_transfer_encoding_on_a_denied_action_reach_nothing() {
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    let body = format!("0\r\n\r\n{s}");
    let req = format!(
        "POST /admin HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    let ex = exchange(addr, req.as_bytes());
    assert_refused(&env, &ex, &[400, 401], "CL+TE on /admin without token");
}

#[test]
fn duplicate_content_length_with_different_values_is_400() {
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    for (a, b) in [(5, s.len() + 5), (s.len() + 5, 5), (0, 5)] {
        env.backend.clear();
        let req = format!(
            "POST /public/x HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {a}\r\nContent-Length: {b}\r\n\r\nhello{s}"
        );
        let ex = exchange(addr, req.as_bytes());
        assert_refused(&env, &ex, &[400], &format!("Content-Length {a} and {b}"));
        assert!(
            ex.closed,
            "Content-Length {a}/{b}: framing is unknown, the connection must be closed"
        );
    }
}

#[test]
fn duplicate_content_length_with_the_same_value_is_refused_or_framed_once() {
    let env = env();
    let addr = env.writ.addr();
    for fields in [
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5, 5\r\n",
    ] {
        env.backend.clear();
        let mut req =
            format!("POST /public/x HTTP/1.1\r\nHost: {addr}\r\n{fields}\r\nhello").into_bytes();
        // A pipelined request right after the 5 body bytes: it exists only if framing used 5.
        req.extend(build_request(addr, "GET", "/public/next", &[], b""));
        let ex = exchange_n(addr, &req, 2);
        assert_nothing_smuggled(&env);
        match ex.first() {
            Some(r) if r.status == 200 => {
                let reqs = env.backend.requests();
                assert_eq!(
                    reqs.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(),
                    vec!["/public/x", "/public/next"],
                    "{fields:?}: both requests, framed with length 5: {reqs:#?}"
                );
                assert_eq!(reqs[0].body, b"hello", "{fields:?}");
                assert_well_framed(&reqs[0], fields);
                assert_eq!(ex.statuses(), vec![200, 200], "{fields:?}");
                assert_all_forwarded_were_decided(&env);
            }
            _ => assert_refused(&env, &ex, &[400], fields),
        }
    }
}

#[test]
fn invalid_content_length_values_are_400() {
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    for value in [
        "+5",
        "-5",
        "5 5",
        "",
        "0x5",
        "5a",
        "5.0",
        "5, 6",
        "5,",
        "99999999999999999999999",
        "\u{0665}", // ARABIC-INDIC DIGIT FIVE
    ] {
        env.backend.clear();
        let req = format!(
            "POST /public/x HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {value}\r\n\r\nhello{s}"
        );
        let ex = exchange(addr, req.as_bytes());
        assert_refused(&env, &ex, &[400], &format!("Content-Length: {value:?}"));
    }
}

#[test]
fn transfer_encoding_not_ending_in_chunked_is_refused() {
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    let body = format!("5\r\nhello\r\n0\r\n\r\n{s}");
    for fields in [
        "Transfer-Encoding: chunked, gzip\r\n".to_string(),
        "Transfer-Encoding: gzip\r\n".to_string(),
        "Transfer-Encoding: identity\r\n".to_string(),
        "Transfer-Encoding: xchunked\r\n".to_string(),
        "Transfer-Encoding: chunkedx\r\n".to_string(),
        "Transfer-Encoding: chunked-false\r\n".to_string(),
        "Transfer-Encoding: \"chunked\"\r\n".to_string(),
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n".to_string(),
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n".to_string(),
        format!(
            "Transfer-Encoding: chunked, identity\r\nContent-Length: {}\r\n",
            body.len()
        ),
        format!(
            "Transfer-Encoding: xchunked\r\nContent-Length: {}\r\n",
            body.len()
        ),
    ] {
        env.backend.clear();
        let req = format!("POST /public/x HTTP/1.1\r\nHost: {addr}\r\n{fields}\r\n{body}");
        let ex = exchange(addr, req.as_bytes());
        // RFC 9112 §6.3: a request whose final coding is not chunked → 400 and close
        // (501 is allowed for an unknown coding).
        assert_refused(&env, &ex, &[400, 501], &format!("{fields:?}"));
    }
}

#[test]
fn transfer_encoding_on_http_1_0_is_refused() {
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    let req = format!(
        "POST /public/x HTTP/1.0\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n{s}"
    );
    let ex = exchange(addr, req.as_bytes());
    assert_refused(&env, &ex, &[400], "HTTP/1.0 with Transfer-Encoding");
}

#[test]
fn transfer_encoding_with_obs_fold_is_refused() {
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    let body = format!("0\r\n\r\n{s}");
    for fields in [
        "Transfer-Encoding:\r\n chunked\r\n".to_string(),
        "Transfer-Encoding: identity\r\n chunked\r\n".to_string(),
        "Transfer-Encoding: chunked\r\n\tx\r\n".to_string(),
        format!(
            "Content-Length: {}\r\nTransfer-Encoding:\r\n chunked\r\n",
            body.len()
        ),
        format!(
            "X-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
            body.len()
        ),
    ] {
        env.backend.clear();
        let req = format!("POST /public/x HTTP/1.1\r\nHost: {addr}\r\n{fields}\r\n{body}");
        let ex = exchange(addr, req.as_bytes());
        assert_refused(&env, &ex, &[400], &format!("{fields:?}"));
    }
}

#[test]
fn chunked_transfer_coding_is_framed_once_when_valid() {
    // The positive control for the refusals above: a proper chunked body followed by a
    // pipelined request yields exactly these two requests at the backend.
    let env = env();
    let addr = env.writ.addr();
    for te in ["chunked", "CHUNKED", "Chunked"] {
        env.backend.clear();
        let mut req =
            format!("POST /public/x HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: {te}\r\n\r\n")
                .into_bytes();
        req.extend(chunked(b"hello world", 4));
        req.extend(build_request(addr, "GET", "/public/next", &[], b""));
        let ex = exchange_n(addr, &req, 2);
        assert_nothing_smuggled(&env);
        assert_eq!(ex.statuses(), vec![200, 200], "{te}");
        let reqs = env.backend.requests();
        assert_eq!(
            reqs.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(),
            vec!["/public/x", "/public/next"],
            "{te}: {reqs:#?}"
        );
        assert_eq!(reqs[0].body, b"hello world", "{te}");
        assert_well_framed(&reqs[0], te);
        assert_all_forwarded_were_decided(&env);
    }
}

#[test]
fn transfer_coding_before_chunked_is_not_silently_dropped() {
    // `Transfer-Encoding: gzip, chunked`: the body is gzip-coded, then chunked. A proxy that
    // removes the chunked framing must either decode gzip too, keep `gzip` in the forwarded
    // Transfer-Encoding (RFC 9112 §6.1: "corresponding changes are made to the
    // Transfer-Encoding field value"), or refuse a coding it does not implement with 501
    // (RFC 9112 §6.1). Forwarding the still-coded bytes as if they were the content changes
    // what the backend executes.
    let env = env();
    let addr = env.writ.addr();
    let mut req = format!(
        "POST /public/x HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    )
    .into_bytes();
    let coded = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03not-really-gzip";
    req.extend(chunked(coded, 5));
    let ex = exchange(addr, &req);
    assert_nothing_smuggled(&env);
    match ex.first() {
        Some(r) if r.status == 200 => {
            let seen = only_request(&env, "gzip, chunked");
            let te = seen
                .header_all("transfer-encoding")
                .join(",")
                .to_ascii_lowercase();
            assert!(
                te.contains("gzip"),
                "the backend received gzip-coded bytes with the gzip coding removed \
                 (Transfer-Encoding {te:?}); body {:?}",
                String::from_utf8_lossy(&seen.body)
            );
        }
        _ => assert_refused(&env, &ex, &[400, 501], "gzip, chunked"),
    }
}

#[test]
fn malformed_chunk_framing_never_smuggles() {
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    for (case, chunks) in [
        ("hex prefix", format!("0x5\r\nhello\r\n0\r\n\r\n{s}")),
        ("negative size", format!("-5\r\nhello\r\n0\r\n\r\n{s}")),
        (
            "size overflow",
            format!("ffffffffffffffff1\r\nhello\r\n0\r\n\r\n{s}"),
        ),
        (
            "chunk longer than size",
            format!("3\r\nhello\r\n0\r\n\r\n{s}"),
        ),
        ("space in size", format!("5 5\r\nhello\r\n0\r\n\r\n{s}")),
        ("missing CRLF after data", format!("5\r\nhello0\r\n\r\n{s}")),
        ("bare LF chunk lines", format!("5\nhello\n0\n\n{s}")),
    ] {
        env.backend.clear();
        // On a denied action: nothing at all may reach the backend.
        let req = format!(
            "POST /admin HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}"
        );
        let ex = exchange(addr, req.as_bytes());
        assert_refused(&env, &ex, &[400, 401], &format!("/admin, {case}"));

        // On a public action the head may already be forwarded when the body turns out
        // broken: at most that one request, never the smuggled one, never a second response.
        env.backend.clear();
        let req = format!(
            "POST /public/x HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}"
        );
        let ex = exchange(addr, req.as_bytes());
        assert_nothing_smuggled(&env);
        let reqs = env.backend.requests();
        assert!(
            reqs.len() <= 1 && reqs.iter().all(|r| r.path() == "/public/x"),
            "/public/x, {case}: {reqs:#?}"
        );
        assert!(
            ex.responses.len() <= 1,
            "/public/x, {case}: a broken body produced {:?}",
            ex.statuses()
        );
        if let Some(r) = ex.first() {
            assert_ne!(
                r.status, 200,
                "/public/x, {case}: a broken body cannot succeed"
            );
        }
    }
}

#[test]
fn malformed_chunked_body_on_an_allowed_request_is_a_client_error() {
    // The client broke the framing, not the backend: RFC 9112 §7.1 / RFC 9110 §15.5.1 → 400
    // (or a closed connection). SPEC reserves 502 `upstream_unavailable` and
    // `writ_upstream_errors_total` for a backend that is unreachable.
    let env = env();
    let addr = env.writ.addr();
    for (case, chunks) in [
        ("hex prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
        ("bare LF chunk lines", "5\nhello\n0\n\n"),
    ] {
        let req = format!(
            "POST /public/x HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}"
        );
        let ex = exchange(addr, req.as_bytes());
        if let Some(r) = ex.first() {
            assert_eq!(
                r.status,
                400,
                "{case}: a malformed request body is the client's error: {}",
                r.describe()
            );
        }
        assert_nothing_smuggled(&env);
    }
    let scrape = env.writ.metrics();
    assert!(
        support::metric_value(&scrape, "writ_upstream_errors_total", &[]).unwrap_or(0.0) == 0.0,
        "a client's broken body must not count as an upstream error:\n{scrape}"
    );
}

// ==========================================================================================
// === header syntax ===
// ==========================================================================================

#[test]
fn obs_fold_in_any_header_is_refused() {
    let env = env();
    let addr = env.writ.addr();
    let token = env.token("admin");
    for (target, fields) in [
        ("/public/x", "X-Note: a\r\n b\r\n".to_string()),
        ("/public/x", "X-Note: a\r\n\tb\r\n".to_string()),
        ("/public/x", "Host2: a\r\n Host: evil\r\n".to_string()),
        // A token folded onto a continuation line must never authenticate.
        ("/admin", format!("Authorization: Bearer\r\n {token}\r\n")),
        (
            "/admin",
            format!("X-Pad: x\r\n Authorization: Bearer {token}\r\n"),
        ),
    ] {
        env.backend.clear();
        let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{fields}\r\n");
        let ex = exchange(addr, req.as_bytes());
        assert_refused(&env, &ex, &[400], &format!("{target} {fields:?}"));
    }
}

#[test]
fn whitespace_before_colon_is_refused() {
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    let body = format!("0\r\n\r\n{s}");
    for (target, fields) in [
        ("/public/x", "Host : evil.example\r\n".to_string()),
        ("/public/x", "X-Note\t: a\r\n".to_string()),
        (
            "/public/x",
            format!(
                "Transfer-Encoding : chunked\r\nContent-Length: {}\r\n",
                body.len()
            ),
        ),
        ("/public/x", "Content-Length : 0\r\n".to_string()),
        (
            "/admin",
            format!("Authorization : Bearer {}\r\n", env.token("admin")),
        ),
    ] {
        env.backend.clear();
        let req = format!("POST {target} HTTP/1.1\r\nHost: {addr}\r\n{fields}\r\n{body}");
        let ex = exchange(addr, req.as_bytes());
        assert_refused(&env, &ex, &[400], &format!("{target} {fields:?}"));
    }
}

#[test]
fn bare_lf_line_endings_are_refused_or_framed_exactly_once() {
    // RFC 9112 §2.2: a recipient MAY accept a bare LF as line terminator. Either way, the
    // backend gets at most the one request, re-framed with CRLF, with exactly its body.
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    for (case, req, body) in [
        (
            "all LF, no body",
            format!("GET /public/x HTTP/1.1\nHost: {addr}\n\n"),
            String::new(),
        ),
        (
            "all LF, CL body followed by a request in the body",
            format!(
                "POST /public/x HTTP/1.1\nHost: {addr}\nContent-Length: {}\n\n{s}",
                s.len()
            ),
            s.clone(),
        ),
        (
            "mixed endings",
            format!("POST /public/x HTTP/1.1\r\nHost: {addr}\nContent-Length: 5\r\n\nhello"),
            "hello".to_string(),
        ),
    ] {
        env.backend.clear();
        let ex = exchange(addr, req.as_bytes());
        assert_nothing_smuggled(&env);
        match ex.first() {
            Some(r) if r.status == 200 => {
                let seen = only_request(&env, case);
                assert_eq!(seen.path(), "/public/x", "{case}");
                assert_eq!(seen.body, body.as_bytes(), "{case}");
                assert_well_framed(&seen, case);
                assert_all_forwarded_were_decided(&env);
            }
            _ => {
                let reqs = env.backend.requests();
                assert!(
                    reqs.iter().all(|r| r.path() == "/public/x"),
                    "{case}: {reqs:#?}"
                );
                assert!(
                    ex.first().is_none_or(is_parser_400),
                    "{case}: {:?}",
                    ex.statuses()
                );
            }
        }
    }
}

#[test]
fn bare_lf_cannot_hide_a_header_from_writ() {
    // `X-Pad: a\nX-Writ-Subject: root` is either two fields (and writ strips the client's
    // identity header like any other) or refused; it can never be one field to writ and two
    // to the backend.
    let env = env();
    let addr = env.writ.addr();
    let req =
        format!("GET /admin HTTP/1.1\r\nHost: {addr}\r\nX-Pad: a\nX-Writ-Subject: root\r\n\r\n");
    let ex = exchange(addr, req.as_bytes());
    assert_refused(&env, &ex, &[400, 401], "LF-split field on /admin");
    env.backend.clear();
    let req =
        format!("GET /public/x HTTP/1.1\r\nHost: {addr}\r\nX-Pad: a\nX-Writ-Subject: root\r\n\r\n");
    let ex = exchange(addr, req.as_bytes());
    if ex.first().is_some_and(|r| r.status == 200) {
        let seen = only_request(&env, "LF-split field");
        assert!(
            seen.header_all("x-writ-subject").is_empty(),
            "a client x-writ-subject smuggled behind a bare LF reached the backend: {seen:#?}"
        );
    } else {
        assert_refused(&env, &ex, &[400], "LF-split field on /public/x");
    }
}

#[test]
fn nul_and_cr_in_header_fields_are_refused() {
    let env = env();
    let addr = env.writ.addr();
    let token = env.token("admin");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("NUL in value", b"X-Note: a\0b\r\n".to_vec()),
        ("NUL at end of value", b"X-Note: ab\0\r\n".to_vec()),
        ("CR in value", b"X-Note: a\rb\r\n".to_vec()),
        (
            "CR before a TE field",
            b"X-Note: a\rTransfer-Encoding: chunked\r\n".to_vec(),
        ),
        ("NUL in name", b"X-No\0te: a\r\n".to_vec()),
        ("CR in name", b"X-No\rte: a\r\n".to_vec()),
        (
            "NUL inside the token",
            format!("Authorization: Bearer {token}\0\r\n").into_bytes(),
        ),
        ("NUL in Host", b"Host: a\0.example\r\n".to_vec()),
    ];
    for (case, field) in cases {
        for target in ["/public/x", "/admin"] {
            env.backend.clear();
            let mut req = format!("GET {target} HTTP/1.1\r\n").into_bytes();
            if !case.contains("Host") {
                req.extend(format!("Host: {addr}\r\n").into_bytes());
            }
            req.extend(&field);
            req.extend(b"\r\n");
            req.extend(smuggled(addr).into_bytes());
            let ex = exchange(addr, &req);
            assert_refused(&env, &ex, &[400], &format!("{case} on {target}"));
        }
    }
}

#[test]
fn request_line_games_are_refused() {
    let env = env();
    let addr = env.writ.addr();
    for line in [
        "GET  /public/x HTTP/1.1",
        "GET /public/x  HTTP/1.1",
        "GET /public/x HTTP/1.1 extra",
        "GET\t/public/x HTTP/1.1",
        "GET /public/x\0 HTTP/1.1",
        "GET /public/x HTTP/1.1\r",
        "GET /public/x HTTP/1.2",
        "GET /public/x HTTP/2.0",
        "GET /public/x http/1.1",
        "GET /public/x",
        " GET /public/x HTTP/1.1",
    ] {
        env.backend.clear();
        let req = format!("{line}\r\nHost: {addr}\r\n\r\n");
        let ex = exchange(addr, req.as_bytes());
        assert_refused(&env, &ex, &[400, 505], &format!("{line:?}"));
    }
}

// ==========================================================================================
// === pipelining and bodies of denied requests ===
// ==========================================================================================

#[test]
fn pipelined_denied_then_denied_reaches_nothing() {
    let env = env();
    let addr = env.writ.addr();
    let mut bytes = build_request(addr, "POST", "/admin", &[], b"{\"a\":1}");
    bytes.extend(build_request(addr, "GET", "/admin", &[], b""));
    bytes.extend(build_request(addr, "POST", "/jobs/7/run", &[], b"x"));
    let ex = exchange_n(addr, &bytes, 3);
    assert!(!ex.responses.is_empty(), "no response at all");
    assert!(ex.responses.len() <= 3, "{:?}", ex.statuses());
    for r in &ex.responses {
        r.assert_problem(401, "no_token");
    }
    assert!(
        ex.responses.len() == 3 || ex.closed,
        "each pipelined request is answered, or the connection closed: {:?}",
        ex.statuses()
    );
    env.backend.assert_untouched();
}

#[test]
fn pipelined_denied_then_public_forwards_exactly_the_second() {
    let env = env();
    let addr = env.writ.addr();
    for (case, denied) in [
        ("no body", build_request(addr, "GET", "/admin", &[], b"")),
        (
            "CL body",
            build_request(addr, "POST", "/admin", &[], b"0123456789"),
        ),
        (
            "chunked body",
            [
                build_request(
                    addr,
                    "POST",
                    "/jobs/7/run",
                    &[("Transfer-Encoding", "chunked")],
                    b"",
                ),
                chunked(b"0123456789abcdef", 3),
            ]
            .concat(),
        ),
    ] {
        env.backend.clear();
        let mut bytes = denied;
        bytes.extend(build_request(
            addr,
            "POST",
            "/public/next",
            &[("X-Case", case)],
            b"next-body",
        ));
        let ex = exchange_n(addr, &bytes, 2);
        let first = ex.first().unwrap_or_else(|| panic!("{case}: no response"));
        first.assert_problem(401, "no_token");
        assert_nothing_smuggled(&env);
        if ex.responses.len() == 2 {
            assert_eq!(
                ex.responses[1].status,
                200,
                "{case}: {}",
                ex.responses[1].describe()
            );
            let seen = only_request(&env, case);
            assert_eq!(seen.target, "/public/next", "{case}");
            assert_eq!(seen.body, b"next-body", "{case}");
            assert_eq!(seen.header("x-case"), Some(case));
            assert_all_forwarded_were_decided(&env);
        } else {
            // Closing instead of draining is allowed; then nothing reached the backend.
            assert_eq!(ex.responses.len(), 1, "{case}: {:?}", ex.statuses());
            assert!(ex.closed, "{case}");
            env.backend.assert_untouched();
        }
    }
}

#[test]
fn denied_body_that_looks_like_a_request_is_never_executed() {
    let env = env();
    let addr = env.writ.addr();
    let token = env.token("admin");
    // The body is a complete request, even one carrying a valid admin token: it is body.
    let inner_admin = build_request(
        addr,
        "GET",
        "/admin",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    let inner_public = smuggled(addr).into_bytes();
    let payload = [inner_public.clone(), inner_admin.clone()].concat();
    let big = [vec![b'x'; 256 * 1024], payload.clone()].concat();
    for (case, bytes) in [
        ("CL", build_request(addr, "POST", "/admin", &[], &payload)),
        (
            "chunked",
            [
                build_request(
                    addr,
                    "POST",
                    "/admin",
                    &[("Transfer-Encoding", "chunked")],
                    b"",
                ),
                chunked(&payload, 7),
            ]
            .concat(),
        ),
        (
            "execution action, CL",
            build_request(addr, "POST", "/jobs/1/run", &[], &payload),
        ),
        (
            "large CL body",
            build_request(addr, "POST", "/admin", &[], &big),
        ),
        (
            "HTTP/1.0 keep-alive",
            [
                format!(
                    "POST /admin HTTP/1.0\r\nHost: {addr}\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n",
                    payload.len()
                )
                .into_bytes(),
                payload.clone(),
            ]
            .concat(),
        ),
    ] {
        env.backend.clear();
        let mut conn = RawConn::connect(addr).unwrap();
        let _ = conn.send(&bytes);
        let ex = read_all(&mut conn, 1);
        let first = ex.first().unwrap_or_else(|| panic!("{case}: no response"));
        first.assert_problem(401, "no_token");
        assert_eq!(
            ex.responses.len(),
            1,
            "{case}: the body produced responses of its own: {:?}",
            ex.statuses()
        );
        env.backend.assert_untouched();
        // If the connection is still open, it is in sync: the next request is decided alone.
        if !ex.closed && conn.send(&build_request(addr, "GET", "/public/after", &[], b"")).is_ok() {
            let _ = conn.set_read_timeout(support::IO_TIMEOUT);
            if let Ok(r) = conn.read_response(false) {
                assert_eq!(r.status, 200, "{case}: {}", r.describe());
                let seen = only_request(&env, case);
                assert_eq!(seen.target, "/public/after", "{case}");
            }
        }
        assert_nothing_smuggled(&env);
    }
}

/// Reads one response head (status line and fields) off a plain socket, interim responses
/// included: `read_response` skips `100 Continue`, this does not.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + support::IO_TIMEOUT;
    while !head.ends_with(b"\r\n\r\n") {
        if Instant::now() > deadline {
            return None;
        }
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return (!head.is_empty()).then(|| String::from_utf8_lossy(&head).into_owned()),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

#[test]
fn expect_100_continue_on_a_denied_request_gets_the_final_status_only() {
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    for target in ["/admin", "/jobs/9/run"] {
        env.backend.clear();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(support::IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(support::IO_TIMEOUT)).unwrap();
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            s.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let first = read_head(&mut stream).expect("a response without sending the body");
        assert!(
            first.starts_with("HTTP/1.1 401"),
            "{target}: the first thing writ sends must be the final 401, not 100 Continue: {first:?}"
        );
        // A client that does not wait sends the body anyway: it is body, never a request.
        let _ = stream.write_all(s.as_bytes());
        let _ = stream.set_read_timeout(Some(SHORT));
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        let rest = String::from_utf8_lossy(&rest);
        assert_eq!(
            rest.matches("HTTP/1.1 ").count(),
            0,
            "{target}: the unsent-then-sent body produced a response: {rest:?}"
        );
        thread::sleep(Duration::from_millis(100));
        env.backend.assert_untouched();
    }
}

#[test]
fn expect_100_continue_on_an_allowed_request_delivers_the_body_once() {
    let env = env();
    let addr = env.writ.addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(support::IO_TIMEOUT)).unwrap();
    let head = format!(
        "POST /public/x HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let interim = read_head(&mut stream).expect("100 Continue or a final answer");
    if interim.starts_with("HTTP/1.1 100") {
        stream.write_all(b"hello").unwrap();
        let fin = read_head(&mut stream).expect("final response");
        assert!(fin.starts_with("HTTP/1.1 200"), "{fin:?}");
        let seen = env.backend.single();
        assert_eq!(seen.body, b"hello");
    } else {
        // Answering without 100 is allowed only if nothing was forwarded without the body.
        panic!("an allowed request with Expect must get 100 Continue, got {interim:?}");
    }
}

// ==========================================================================================
// === Upgrade ===
// ==========================================================================================

#[test]
fn h2c_upgrade_is_not_honoured_and_not_forwarded() {
    let env = env();
    let addr = env.writ.addr();
    let mut conn = RawConn::connect(addr).unwrap();
    let mut bytes = build_request(
        addr,
        "GET",
        "/public/x",
        &[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
        b"",
    );
    bytes.extend(build_request(addr, "GET", "/public/second", &[], b""));
    conn.send(&bytes).unwrap();
    let ex = read_all(&mut conn, 2);
    let first = ex.first().expect("a response");
    assert_ne!(
        first.status,
        101,
        "writ must not switch to h2c: {}",
        first.describe()
    );
    assert_eq!(first.status, 200, "{}", first.describe());
    assert!(
        first.header("upgrade").is_none(),
        "no Upgrade offered back: {}",
        first.describe()
    );
    // The connection stays HTTP/1.1: the second request is an HTTP/1.1 request.
    assert_eq!(ex.statuses(), vec![200, 200], "{ex:#?}");
    let reqs = env.backend.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for seen in &reqs {
        assert!(
            seen.header("upgrade").is_none()
                && seen.header("http2-settings").is_none()
                && seen
                    .header_all("connection")
                    .iter()
                    .all(|v| !v.to_ascii_lowercase().contains("upgrade")),
            "upgrade negotiation must not be forwarded: {seen:#?}"
        );
    }
    assert_all_forwarded_were_decided(&env);
}

#[test]
fn h2c_upgrade_on_a_denied_request_is_a_plain_401() {
    let env = env();
    let addr = env.writ.addr();
    let bytes = build_request(
        addr,
        "GET",
        "/admin",
        &[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
        b"",
    );
    let ex = exchange(addr, &bytes);
    let first = ex.first().expect("a response");
    first.assert_problem(401, "no_token");
    env.backend.assert_untouched();
}

#[test]
fn websocket_upgrade_header_is_not_forwarded() {
    let env = env();
    let addr = env.writ.addr();
    let mut bytes = build_request(
        addr,
        "GET",
        "/public/ws",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    );
    // Bytes a tunnel would carry: if writ opened one, these would reach the backend raw.
    bytes.extend(smuggled(addr).into_bytes());
    let ex = exchange_n(addr, &bytes, 2);
    let first = ex.first().expect("a response");
    assert_ne!(first.status, 101, "{}", first.describe());
    let reqs = env.backend.requests();
    let ws: Vec<_> = reqs.iter().filter(|r| r.path() == "/public/ws").collect();
    assert_eq!(ws.len(), 1, "{reqs:#?}");
    assert!(
        ws[0].header("upgrade").is_none(),
        "Upgrade is hop-by-hop and must not be forwarded: {:#?}",
        ws[0]
    );
    assert!(
        ws[0]
            .header_all("connection")
            .iter()
            .all(|v| !v.to_ascii_lowercase().contains("upgrade")),
        "{:#?}",
        ws[0]
    );
    // What followed is the next HTTP/1.1 request, decided (and logged) on its own.
    assert_all_forwarded_were_decided(&env);
}

// ==========================================================================================
// === trailers ===
// ==========================================================================================

#[test]
fn trailers_never_authenticate() {
    let env = env();
    let addr = env.writ.addr();
    let token = env.token("jobs:execute admin");
    for target in ["/jobs/7/run", "/admin"] {
        env.backend.clear();
        let req = format!(
            "POST {target} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nTrailer: Authorization\r\nTE: trailers\r\n\r\n4\r\nbody\r\n0\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        let ex = exchange(addr, req.as_bytes());
        let first = ex
            .first()
            .unwrap_or_else(|| panic!("{target}: no response"));
        first.assert_problem(401, "no_token");
        assert_eq!(
            first.header("www-authenticate"),
            Some("Bearer realm=\"writ\""),
            "{target}"
        );
        env.backend.assert_untouched();
    }
}

#[test]
fn trailers_cannot_replace_the_header_token() {
    // A header token with too little scope, and a trailer token with enough: the header decides.
    let env = env();
    let addr = env.writ.addr();
    let weak = env.token("other");
    let strong = env.token("jobs:execute");
    let req = format!(
        "POST /jobs/7/run HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {weak}\r\nTransfer-Encoding: chunked\r\nTrailer: Authorization\r\n\r\n4\r\nbody\r\n0\r\nAuthorization: Bearer {strong}\r\n\r\n"
    );
    let ex = exchange(addr, req.as_bytes());
    let first = ex.first().expect("a response");
    first.assert_problem(403, "insufficient_scope");
    env.backend.assert_untouched();
}

// ==========================================================================================
// === limits and header-name games ===
// ==========================================================================================

#[test]
fn very_long_header_name_is_refused() {
    let env = env();
    let addr = env.writ.addr();
    for (target, len) in [
        ("/admin", 70 * 1024),
        ("/public/x", 70 * 1024),
        ("/public/x", 65_536 + 14),
    ] {
        env.backend.clear();
        let name = "X".repeat(len);
        let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{name}: v\r\n\r\n");
        let ex = exchange(addr, req.as_bytes());
        assert_refused(
            &env,
            &ex,
            &[431, 400],
            &format!("{len}-byte name on {target}"),
        );
    }
}

#[test]
fn header_name_length_overflow_does_not_create_a_content_length() {
    // HAProxy CVE-2021-40346: a 256-byte name starting with `Content-Length` overflowed an
    // 8-bit length and was read as `Content-Length`. A long name is an ordinary field; framing
    // comes from the real Content-Length only.
    let env = env();
    let addr = env.writ.addr();
    let s = smuggled(addr);
    for total in [256usize, 512, 65_536 - 256] {
        env.backend.clear();
        let name = format!(
            "Content-Length{}",
            "a".repeat(total - "Content-Length".len())
        );
        assert_eq!(name.len(), total);
        let req = format!(
            "POST /public/x HTTP/1.1\r\nHost: {addr}\r\n{name}: 0\r\nContent-Length: {}\r\n\r\n{s}",
            s.len()
        );
        let ex = exchange(addr, req.as_bytes());
        assert_nothing_smuggled(&env);
        match ex.first() {
            Some(r) if r.status == 200 => {
                let seen = only_request(&env, &name[..20]);
                assert_eq!(seen.body, s.as_bytes(), "{total}-byte name");
                assert_well_framed(&seen, "long name");
                assert_eq!(ex.responses.len(), 1, "{:?}", ex.statuses());
                assert_all_forwarded_were_decided(&env);
            }
            _ => assert_refused(&env, &ex, &[400, 431], &format!("{total}-byte name")),
        }
    }
}

#[test]
fn empty_header_name_is_400() {
    let env = env();
    let addr = env.writ.addr();
    let token = env.token("admin");
    for (target, fields) in [
        ("/public/x", ": x\r\n".to_string()),
        ("/public/x", ":\r\n".to_string()),
        (
            "/admin",
            format!(": x\r\nAuthorization: Bearer {token}\r\n"),
        ),
        ("/public/x", " : x\r\n".to_string()),
    ] {
        env.backend.clear();
        let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{fields}\r\n");
        let ex = exchange(addr, req.as_bytes());
        let first = ex
            .first()
            .unwrap_or_else(|| panic!("{target} {fields:?}: expected a 400, connection closed"));
        assert_eq!(
            first.status,
            400,
            "{target} {fields:?}: {}",
            first.describe()
        );
        assert_refused(&env, &ex, &[400], &format!("{target} {fields:?}"));
    }
}

fn request_with_fields(addr: SocketAddr, target: &str, fields: usize) -> Vec<u8> {
    // `fields` counts every header line, Host included.
    let names: Vec<String> = (1..fields).map(|i| format!("X-F{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    build_request(addr, "GET", target, &headers, b"")
}

#[test]
fn one_hundred_and_one_header_fields_is_431() {
    let env = env();
    let addr = env.writ.addr();
    for target in ["/public/x", "/admin"] {
        let ex = exchange(addr, &request_with_fields(addr, target, 101));
        let first = ex
            .first()
            .unwrap_or_else(|| panic!("{target}: 101 fields must get a 431, connection closed"));
        assert_eq!(first.status, 431, "{target}: {}", first.describe());
        assert_refused(&env, &ex, &[431], target);
    }
    // The boundary: 100 fields are fine.
    let ex = exchange(addr, &request_with_fields(addr, "/public/x", 100));
    assert_eq!(ex.statuses(), vec![200], "100 fields");
    assert_eq!(env.backend.single().target, "/public/x");
}

#[test]
fn request_target_over_8_kib_is_414() {
    let env = env();
    let addr = env.writ.addr();
    let token = env.token("admin");
    let auth = format!("Bearer {token}");
    for (target, headers) in [
        (format!("/public/{}", "a".repeat(8 * 1024)), vec![]),
        (format!("/public/x?q={}", "b".repeat(8 * 1024)), vec![]),
        (
            format!("/admin?{}", "c".repeat(9 * 1024)),
            vec![("Authorization", auth.as_str())],
        ),
        (format!("/{}/../public/x", "d".repeat(9 * 1024)), vec![]),
    ] {
        env.backend.clear();
        assert!(target.len() > 8192);
        let ex = exchange(addr, &build_request(addr, "GET", &target, &headers, b""));
        let first = ex
            .first()
            .unwrap_or_else(|| panic!("{}-byte target: no response", target.len()));
        // writ itself refuses it (hyper accepts targets up to 64 KiB): problem+json.
        first.assert_problem(414, "bad_request");
        assert_refused(&env, &ex, &[414], &format!("{}-byte target", target.len()));
    }
}
