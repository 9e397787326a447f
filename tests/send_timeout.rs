//! Send timeout (`limits.send_timeout`): a response that waits on a client that takes no
//! data (an HTTP/2 stream window of 0, an HTTP/1 socket nobody reads) must not pin a
//! connection slot forever; a response that is slow because the *backend* is slow must not
//! be cut.
//!
//! The attacks are the real thing: raw HTTP/2 frames (`SETTINGS_INITIAL_WINDOW_SIZE=0`, no
//! WINDOW_UPDATE ever) and raw HTTP/1 sockets that are never read, filling every
//! `max_connections` slot of the real binary, while a normal client tries to get through.
//! Every loop is bounded in count and time; all traffic stays on 127.0.0.1.
//!
//! The tests take a file-wide lock: they measure timings on a small machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use support::{
    ACK, Config, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, Keys, PING, PREFACE, RST_STREAM,
    RawConn, SETTINGS, SETTINGS_INITIAL_WINDOW_SIZE, Server, Writ, block_on_within, build_request,
    frame, frame_head, h2_client, headers_status, req, request_block, serial, serve_http1,
    temp_dir, writ,
};

const ACTIONS: &str = r"
  - name: public
    methods: [GET]
    path: /public/{*rest}
    public: true
  - name: admin
    methods: [GET]
    path: /admin
    require: { scopes: [admin] }
";

const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a normal client may wait for its answer while attackers hold every slot.
const BOUND: Duration = Duration::from_secs(5);
const MIB: usize = 1024 * 1024;
/// The `/public/big` body: far more than the socket buffers between writ and a client.
const BIG: usize = 16 * MIB;
/// The `/public/body` body.
const BODY: usize = 32 * 1024;
/// Pause before the first body byte of `/public/slow-body`, before the head of
/// `/public/slow-head`, and between the chunks of `/public/trickle`.
const SLOW_FIRST: Duration = Duration::from_millis(2500);
const TRICKLE_PAUSE: Duration = Duration::from_millis(1600);
const TRICKLE: [&str; 3] = ["first,", "second,", "third"];

fn config(max_connections: usize) -> Config {
    Config::new(ACTIONS)
        .set(
            "upstream",
            "\n  url: \"{{UPSTREAM}}\"\n  connect_timeout: 2s\n  timeout: 10s",
        )
        .set(
            "limits",
            // header_read_timeout far above the bounds measured here: only the send
            // timeout may free the slots.
            &format!(
                "\n  max_connections: {max_connections}\n  header_read_timeout: 30s\n  send_timeout: 1s"
            ),
        )
}

// ==========================================================================================
// === a scripted backend ===
// ==========================================================================================

/// A response body that yields each chunk after its pause.
struct Scripted {
    steps: VecDeque<(Duration, Bytes)>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Scripted {
    fn new(steps: Vec<(Duration, Bytes)>) -> Scripted {
        Scripted {
            steps: steps.into(),
            sleep: None,
        }
    }
}

impl http_body::Body for Scripted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let pause = match this.steps.front() {
            Some((pause, _)) => *pause,
            None => return Poll::Ready(None),
        };
        if !pause.is_zero() {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
            std::task::ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        let (_, chunk) = this.steps.pop_front().expect("a step");
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.steps.is_empty()
    }
}

type BackendBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// An HTTP/1.1 upstream whose answer depends on the path:
/// `/public/big` 16 MiB, `/public/body` 32 KiB, `/public/slow-head` its head after 2.5 s,
/// `/public/slow-body` its head at once and its body after 2.5 s, `/public/trickle` three
/// chunks 1.6 s apart, anything else `backend-ok`.
struct ScriptedBackend {
    server: Server,
    requests: Arc<AtomicUsize>,
}

impl ScriptedBackend {
    fn start() -> ScriptedBackend {
        let requests = Arc::new(AtomicUsize::new(0));
        let n = requests.clone();
        let big = Bytes::from(vec![b'b'; BIG]);
        let body = Bytes::from(vec![b'd'; BODY]);
        let server = Server::start_local(move |stream| {
            let (n, big, body) = (n.clone(), big.clone(), body.clone());
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    n.fetch_add(1, Ordering::SeqCst);
                    let (big, body) = (big.clone(), body.clone());
                    async move {
                        let b: BackendBody = match req.uri().path() {
                            "/public/big" => Full::new(big).boxed(),
                            "/public/body" => Full::new(body).boxed(),
                            "/public/slow-head" => {
                                tokio::time::sleep(SLOW_FIRST).await;
                                Full::new(Bytes::from_static(b"slow-head-body")).boxed()
                            }
                            "/public/slow-body" => Scripted::new(vec![(
                                SLOW_FIRST,
                                Bytes::from_static(b"slow-body-body"),
                            )])
                            .boxed(),
                            "/public/trickle" => Scripted::new(
                                TRICKLE
                                    .iter()
                                    .map(|c| (TRICKLE_PAUSE, Bytes::from_static(c.as_bytes())))
                                    .collect(),
                            )
                            .boxed(),
                            _ => Full::new(Bytes::from_static(b"backend-ok")).boxed(),
                        };
                        Ok::<_, Infallible>(hyper::Response::new(b))
                    }
                });
            serve_http1(stream, svc)
        });
        ScriptedBackend { server, requests }
    }

    fn url(&self) -> String {
        self.server.url()
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// writ in front of a [`ScriptedBackend`]. Field order = drop order: writ first.
struct World {
    writ: Writ,
    backend: ScriptedBackend,
    _keys: Keys,
}

fn world(max_connections: usize) -> World {
    let keys = Keys::new();
    let backend = ScriptedBackend::start();
    let writ = Writ::start(&config(max_connections).render(), &backend.url(), &keys);
    World {
        writ,
        backend,
        _keys: keys,
    }
}

/// One `GET /public/ok` on a fresh HTTP/1.1 connection, run on its own thread; the handle
/// yields how long the 200 took.
fn normal_client(addr: SocketAddr) -> thread::JoinHandle<Result<Duration, String>> {
    thread::spawn(move || {
        let started = Instant::now();
        let mut conn = RawConn::connect(addr).map_err(|e| format!("connect: {e}"))?;
        conn.set_read_timeout(BOUND + Duration::from_secs(1))
            .map_err(|e| format!("set timeout: {e}"))?;
        conn.send(&build_request(addr, "GET", "/public/ok", &[], b""))
            .map_err(|e| format!("send: {e}"))?;
        let r = conn
            .read_response(false)
            .map_err(|e| format!("no answer after {:?}: {e}", started.elapsed()))?;
        if r.status == 200 && r.body == b"backend-ok" {
            Ok(started.elapsed())
        } else {
            Err(format!("unexpected answer: {}", r.describe()))
        }
    })
}

#[track_caller]
fn assert_served_within_bound(client: thread::JoinHandle<Result<Duration, String>>) -> Duration {
    let took = client.join().expect("client thread").unwrap_or_else(|e| {
        panic!("a normal client was locked out by the stalled connections: {e}")
    });
    assert!(
        took <= BOUND,
        "a normal client waited {took:?}, more than send_timeout ({SEND_TIMEOUT:?}) plus margin \
         ({BOUND:?} in all)"
    );
    took
}

// ==========================================================================================
// === raw HTTP/2 ===
// ==========================================================================================

/// An HTTP/2 client that announces a stream window of 0, sends one request on stream 1,
/// and never sends WINDOW_UPDATE: writ's answer can never get its body out.
struct ZeroWindow {
    stream: TcpStream,
    /// Bytes read but not yet parsed into frames.
    pending: Vec<u8>,
    /// When the response HEADERS for stream 1 arrived, and their `:status`.
    answered: Option<(Instant, Option<u16>)>,
    /// DATA payload bytes received on stream 1 (must stay 0: the window is 0).
    data_bytes: usize,
    /// When and how writ ended the connection.
    closed: Option<(Instant, String)>,
}

impl ZeroWindow {
    /// Connects, sends preface, `SETTINGS(INITIAL_WINDOW_SIZE=0)` and `GET path`, and waits
    /// (at most 5 s) until writ has sent the response HEADERS.
    fn open(addr: SocketAddr, path: &str) -> ZeroWindow {
        let stream = TcpStream::connect_timeout(&addr, support::IO_TIMEOUT).expect("connect");
        let _ = stream.set_nodelay(true);
        let mut hello = PREFACE.to_vec();
        let mut settings = SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes().to_vec();
        settings.extend(0u32.to_be_bytes());
        hello.extend(frame(SETTINGS, 0, 0, &settings));
        let block = request_block(addr, "GET", path.as_bytes(), &[]);
        hello.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        (&stream)
            .write_all(&hello)
            .expect("send preface and request");
        stream.set_nonblocking(true).expect("nonblocking");
        let mut c = ZeroWindow {
            stream,
            pending: Vec::new(),
            answered: None,
            data_bytes: 0,
            closed: None,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.answered.is_none() && c.closed.is_none() && Instant::now() < deadline {
            c.pump();
            thread::sleep(Duration::from_millis(5));
        }
        assert!(
            c.answered.is_some(),
            "writ did not send response HEADERS for {path} within 5 s (closed: {:?})",
            c.closed
        );
        c
    }

    /// Reads whatever arrived (non-blocking) and handles complete frames; records a close.
    fn pump(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            match (&self.stream).read(&mut buf) {
                Ok(0) => {
                    self.closed = Some((Instant::now(), "EOF".into()));
                    break;
                }
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.closed = Some((Instant::now(), format!("read error: {e}")));
                    break;
                }
            }
        }
        while self.pending.len() >= 9 {
            let (len, kind, flags, sid) = frame_head(&self.pending);
            if self.pending.len() < 9 + len {
                break;
            }
            let payload: Vec<u8> = self.pending[9..9 + len].to_vec();
            self.pending.drain(..9 + len);
            match kind {
                // A polite attacker: it acknowledges settings and answers pings, it just
                // never opens its window.
                SETTINGS if flags & ACK == 0 => {
                    let _ = (&self.stream).write_all(&frame(SETTINGS, ACK, 0, &[]));
                }
                PING if flags & ACK == 0 => {
                    let _ = (&self.stream).write_all(&frame(PING, ACK, 0, &payload));
                }
                HEADERS if sid == 1 && self.answered.is_none() => {
                    self.answered = Some((Instant::now(), headers_status(flags, &payload)));
                }
                DATA if sid == 1 => self.data_bytes += len,
                RST_STREAM if sid == 1 && self.closed.is_none() => {
                    self.closed = Some((Instant::now(), "RST_STREAM".into()));
                }
                GOAWAY if self.closed.is_none() => {
                    self.closed = Some((Instant::now(), "GOAWAY".into()));
                }
                _ => {}
            }
        }
    }

    /// From the response HEADERS to writ closing the connection.
    fn held_for(&self) -> Option<Duration> {
        let (answered, _) = self.answered?;
        let (closed, _) = self.closed.as_ref()?;
        Some(closed.duration_since(answered))
    }
}

/// Fills every slot of `max_connections` with zero-window HTTP/2 connections whose request
/// on `path` is answered with `status` and a body, then shows that a normal client is served
/// within [`BOUND`] and that writ closed every attacker after about `send_timeout`.
fn zero_window_attack(path: &str, status: u16) {
    let _serial = serial();
    const SLOTS: usize = 8;
    let w = world(SLOTS);
    let addr = w.writ.addr();
    let started = Instant::now();
    let mut attackers: Vec<ZeroWindow> = (0..SLOTS).map(|_| ZeroWindow::open(addr, path)).collect();
    let setup = started.elapsed();
    for (i, a) in attackers.iter().enumerate() {
        assert_eq!(
            a.answered.and_then(|(_, s)| s),
            Some(status),
            "attacker {i}: writ's answer to {path}"
        );
    }
    let client = normal_client(addr);
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline && attackers.iter().any(|a| a.closed.is_none()) {
        for a in &mut attackers {
            a.pump();
        }
        thread::sleep(Duration::from_millis(10));
    }
    let took = assert_served_within_bound(client);
    let report: Vec<String> = attackers
        .iter()
        .map(|a| {
            format!(
                "held {:?}, closed by {:?}",
                a.held_for(),
                a.closed.as_ref().map(|c| &c.1)
            )
        })
        .collect();
    eprintln!(
        "{path}: {SLOTS} zero-window connections set up in {setup:?}; normal client served after \
         {took:?}; attackers: {report:#?}"
    );
    for (i, a) in attackers.iter().enumerate() {
        assert_eq!(
            a.data_bytes, 0,
            "attacker {i}: writ sent DATA beyond a window of 0"
        );
        let held = a.held_for().unwrap_or_else(|| {
            panic!("attacker {i} was never closed within {BOUND:?} (send_timeout {SEND_TIMEOUT:?}): {report:#?}")
        });
        // Never cut before send_timeout (a little slack for when the client saw the HEADERS
        // versus when writ created the response), and not much after.
        assert!(
            held >= SEND_TIMEOUT - Duration::from_millis(100),
            "attacker {i} was cut after {held:?}, before send_timeout {SEND_TIMEOUT:?}"
        );
        assert!(
            held <= Duration::from_secs(3),
            "attacker {i} was held {held:?} (send_timeout {SEND_TIMEOUT:?}): {report:#?}"
        );
    }
    assert_eq!(
        w.backend.count(),
        usize::from(status == 200) * SLOTS + 1,
        "requests that reached the backend"
    );
}

#[test]
fn h2_zero_window_denied_answers_cannot_pin_every_connection_slot() {
    // A 401 problem+json body that can never be sent.
    zero_window_attack("/admin", 401);
}

#[test]
fn h2_zero_window_forwarded_answers_cannot_pin_every_connection_slot() {
    // A 32 KiB backend body that can never be sent.
    zero_window_attack("/public/body", 200);
}

// ==========================================================================================
// === HTTP/1: a client that never reads ===
// ==========================================================================================

/// Reads a stalled connection now: what was left in the socket buffers, then its end.
/// Panics when it is still open (or still sending) after a bounded wait: it was not cut.
fn read_until_closed(s: &TcpStream, i: usize) -> (usize, String) {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let end = loop {
        match (&*s).read(&mut buf) {
            Ok(0) => break Ok("EOF".to_string()),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break Err(format!("still open after {got} bytes"));
            }
            Err(e) => break Ok(format!("{e}")),
        }
        if Instant::now() > deadline {
            break Err(format!("still sending after {got} bytes"));
        }
    };
    let end = end.unwrap_or_else(|e| panic!("stalled connection {i} was not closed: {e}"));
    (got, end)
}

#[test]
fn h1_client_that_never_reads_a_large_answer_cannot_pin_every_connection_slot() {
    let _serial = serial();
    const SLOTS: usize = 4;
    let w = world(SLOTS);
    let addr = w.writ.addr();
    // Each asks for 16 MiB and never reads a byte: writ's writes block once the socket
    // buffers are full.
    let stalled: Vec<TcpStream> = (0..SLOTS)
        .map(|_| {
            let s = TcpStream::connect_timeout(&addr, support::IO_TIMEOUT).expect("connect");
            (&s).write_all(&build_request(addr, "GET", "/public/big", &[], b""))
                .expect("send");
            s
        })
        .collect();
    let forwarded = support::eventually_within(Duration::from_secs(5), || {
        (w.backend.count() == SLOTS).then_some(())
    });
    assert!(
        forwarded.is_some(),
        "the stalled requests never reached the backend ({} of {SLOTS})",
        w.backend.count()
    );
    let client = normal_client(addr);
    let took = assert_served_within_bound(client);
    // By now every stalled connection has waited well over send_timeout. Each must have
    // been closed before its answer was complete: reading it now gives what was in the
    // socket buffers, then the end of the connection. (Reading earlier would be taking
    // data, which rightly keeps a connection alive.)
    thread::sleep(SEND_TIMEOUT * 2);
    let mut report = Vec::new();
    for (i, s) in stalled.iter().enumerate() {
        let (got, end) = read_until_closed(s, i);
        assert!(
            got < BIG,
            "stalled connection {i} got the whole answer ({got} bytes): it was not cut"
        );
        report.push(format!("{got} bytes, then {end}"));
    }
    eprintln!("normal client served after {took:?}; stalled connections: {report:#?}");
}

#[test]
fn h1_client_that_pipelines_requests_and_never_reads_cannot_pin_every_connection_slot() {
    // Each answer is small and handed to hyper whole: what waits on the client is the
    // socket, not a response body.
    let _serial = serial();
    const SLOTS: usize = 2;
    const PIPELINED: usize = 400;
    let w = world(SLOTS);
    let addr = w.writ.addr();
    let one = build_request(addr, "GET", "/public/body", &[], b"");
    let stalled: Vec<TcpStream> = (0..SLOTS)
        .map(|_| {
            let s = TcpStream::connect_timeout(&addr, support::IO_TIMEOUT).expect("connect");
            s.set_write_timeout(Some(support::IO_TIMEOUT)).unwrap();
            (&s).write_all(&one.repeat(PIPELINED)).expect("send");
            s
        })
        .collect();
    let client = normal_client(addr);
    let took = assert_served_within_bound(client);
    thread::sleep(SEND_TIMEOUT * 2);
    let mut report = Vec::new();
    for (i, s) in stalled.iter().enumerate() {
        let (got, end) = read_until_closed(s, i);
        assert!(
            got < PIPELINED * BODY,
            "stalled connection {i} got every answer ({got} bytes): it was not cut"
        );
        report.push(format!("{got} bytes, then {end}"));
    }
    eprintln!(
        "pipelined: normal client served after {took:?}; {} requests forwarded; stalled \
         connections: {report:#?}",
        w.backend.count()
    );
}

// ==========================================================================================
// === a slow backend is not the client's fault ===
// ==========================================================================================

/// `GET path` over HTTP/1.1 on a fresh connection: status, body and how long it took.
fn h1_get(addr: SocketAddr, path: &'static str) -> thread::JoinHandle<(u16, Vec<u8>, Duration)> {
    thread::spawn(move || {
        let started = Instant::now();
        let mut conn = RawConn::connect(addr).expect("connect");
        conn.set_read_timeout(Duration::from_secs(10)).unwrap();
        conn.send(&build_request(addr, "GET", path, &[], b""))
            .unwrap();
        let r = conn
            .read_response(false)
            .unwrap_or_else(|e| panic!("HTTP/1.1 {path}: {e} after {:?}", started.elapsed()));
        (r.status, r.body, started.elapsed())
    })
}

/// `GET` every path concurrently on one h2c (prior knowledge) connection.
fn h2_gets(
    addr: SocketAddr,
    paths: &'static [&'static str],
) -> thread::JoinHandle<Vec<(u16, Vec<u8>, Duration)>> {
    thread::spawn(move || {
        block_on_within(Duration::from_secs(15), async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let sender = h2_client(tcp).await;
            let started = Instant::now();
            let gets = paths.iter().map(|path| {
                let mut sender = sender.clone();
                async move {
                    let resp = sender
                        .send_request(req("GET", &format!("http://{addr}{path}"), &[], b""))
                        .await
                        .unwrap_or_else(|e| panic!("h2 {path}: {e}"));
                    let status = resp.status().as_u16();
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .unwrap_or_else(|e| panic!("h2 {path} body: {e}"))
                        .to_bytes()
                        .to_vec();
                    (status, body, started.elapsed())
                }
            });
            let mut out = Vec::new();
            for r in futures_join_all(gets).await {
                out.push(r);
            }
            out
        })
    })
}

/// Runs futures concurrently on the current task (no extra dependency).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, o) in set.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => done = false,
                }
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    out.into_iter().map(|o| o.expect("finished")).collect()
}

#[track_caller]
fn assert_full(what: &str, got: &(u16, Vec<u8>, Duration), body: &[u8], at_least: Duration) {
    let (status, got_body, took) = got;
    assert_eq!(*status, 200, "{what}: status");
    assert_eq!(
        String::from_utf8_lossy(got_body),
        String::from_utf8_lossy(body),
        "{what}: the client must receive the whole body"
    );
    assert!(
        *took >= at_least,
        "{what}: answered after {took:?}, the backend was not as slow as scripted"
    );
}

#[test]
fn backend_slow_to_send_its_first_byte_is_not_cut_by_send_timeout() {
    let _serial = serial();
    let w = world(16);
    let addr = w.writ.addr();
    let head = h1_get(addr, "/public/slow-head");
    let body = h1_get(addr, "/public/slow-body");
    let h2 = h2_gets(addr, &["/public/slow-head", "/public/slow-body"]);
    let (head, body, h2) = (
        head.join().expect("h1 slow-head"),
        body.join().expect("h1 slow-body"),
        h2.join().expect("h2"),
    );
    eprintln!(
        "h1 slow-head {:?}, h1 slow-body {:?}, h2 {:?} (send_timeout {SEND_TIMEOUT:?})",
        head.2,
        body.2,
        h2.iter().map(|r| r.2).collect::<Vec<_>>()
    );
    assert_full("h1 slow-head", &head, b"slow-head-body", SLOW_FIRST);
    assert_full("h1 slow-body", &body, b"slow-body-body", SLOW_FIRST);
    assert_full("h2 slow-head", &h2[0], b"slow-head-body", SLOW_FIRST);
    assert_full("h2 slow-body", &h2[1], b"slow-body-body", SLOW_FIRST);
}

#[test]
fn backend_trickling_with_pauses_longer_than_send_timeout_is_not_cut() {
    let _serial = serial();
    let w = world(16);
    let addr = w.writ.addr();
    let whole = TRICKLE.concat();
    let h1 = h1_get(addr, "/public/trickle");
    let h2 = h2_gets(addr, &["/public/trickle"]);
    let (h1, h2) = (h1.join().expect("h1"), h2.join().expect("h2"));
    eprintln!(
        "trickle: h1 {:?}, h2 {:?} (pauses {TRICKLE_PAUSE:?}, send_timeout {SEND_TIMEOUT:?})",
        h1.2, h2[0].2
    );
    let scripted = TRICKLE_PAUSE * u32::try_from(TRICKLE.len()).unwrap();
    assert_full("h1 trickle", &h1, whole.as_bytes(), scripted);
    assert_full("h2 trickle", &h2[0], whole.as_bytes(), scripted);
}

// ==========================================================================================
// === config ===
// ==========================================================================================

#[test]
fn send_timeout_of_zero_is_a_config_error_at_its_position() {
    let dir = temp_dir("writ-send-timeout-");
    let check = |name: &str, value: &str| {
        let text = format!(
            "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:3000\nlimits:\n  send_timeout: {value}\n"
        );
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = writ()
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("run writ check");
        (path, out)
    };
    for (i, zero) in ["0s", "0", "0ms"].iter().enumerate() {
        let (path, out) = check(&format!("zero{i}.yaml"), zero);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "send_timeout: {zero}\n{stderr}");
        let want = format!("{}:5:17: send_timeout must be more than 0", path.display());
        assert!(
            stderr.lines().any(|l| l.trim() == want),
            "send_timeout: {zero} must be reported as `{want}`, got:\n{stderr}"
        );
    }
    let (path, out) = check("words.yaml", "\"1 minute\"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:5:17: ", path.display())),
        "a malformed send_timeout is reported at its value:\n{stderr}"
    );
    let (_, out) = check("ok.yaml", "250ms");
    assert_eq!(
        out.status.code(),
        Some(0),
        "send_timeout: 250ms is valid\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
