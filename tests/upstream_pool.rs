//! writ's upstream connections (`src/proxy/pool.rs`, decision 0015): kept alive and reused,
//! never reused when the backend closed them, said `Connection: close` or the client abandoned
//! the answer half-read, and a request that may have reached the backend is never sent twice.
//! Each backend here is a scripted raw HTTP/1.1 server that records which connection every
//! request head arrived on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{Config, Env, Keys, Writ};

const ACTIONS: &str = r#"
  - name: files
    methods: [GET, HEAD, POST]
    path: /files/{*rest}
    public: true
"#;

/// What the scripted backend does with the `n`th request (0-based) of its `c`th connection.
#[derive(Clone, Copy)]
enum Then {
    /// Write these bytes and wait for the next request on the same connection.
    Reply(&'static [u8]),
    /// Write these bytes, then close the connection after a short while.
    ReplyThenClose(&'static [u8]),
    /// Close at once without answering (the request head was read).
    Close,
    /// A 1 MB body of which 1 KiB is sent at once and the rest a second later.
    SlowBody,
}

/// Request heads as (connection number, request line), in arrival order.
type Heads = Arc<Mutex<Vec<(usize, String)>>>;

fn scripted(script: fn(usize, usize) -> Then) -> (SocketAddr, Heads) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let heads: Heads = Arc::default();
    let seen = heads.clone();
    thread::spawn(move || {
        for (conn, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let seen = seen.clone();
            thread::spawn(move || serve(conn, stream, script, &seen));
        }
    });
    (addr, heads)
}

fn serve(conn: usize, stream: TcpStream, script: fn(usize, usize) -> Then, seen: &Heads) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    for n in 0.. {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        let _ = r.read_exact(&mut body);
        seen.lock()
            .unwrap()
            .push((conn, line.trim_end().to_string()));
        match script(conn, n) {
            Then::Reply(bytes) => {
                let _ = out.write_all(bytes);
            }
            Then::ReplyThenClose(bytes) => {
                let _ = out.write_all(bytes);
                thread::sleep(Duration::from_millis(50));
                return;
            }
            Then::Close => return,
            Then::SlowBody => {
                let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n");
                let _ = out.write_all(&[b'x'; 1024]);
                thread::sleep(Duration::from_secs(1));
                let _ = out.write_all(&vec![b'x'; 1048576 - 1024]);
            }
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn front(addr: SocketAddr) -> (Writ, Keys) {
    let keys = Keys::new();
    // One worker: which connection a request gets is then deterministic (each
    // worker keeps its own idle connections; see the two-worker test).
    let cfg = Config::new(ACTIONS).set("workers", "1").set(
        "upstream",
        "\n  url: \"{{UPSTREAM}}\"\n  connect_timeout: 1s\n  timeout: 3s",
    );
    let writ = Writ::start(&cfg.render(), &format!("http://{addr}"), &keys);
    (writ, keys)
}

fn connections(heads: &Heads) -> Vec<usize> {
    heads.lock().unwrap().iter().map(|(c, _)| *c).collect()
}

#[test]
fn sequential_requests_share_one_upstream_connection() {
    let env = Env::with_config(&Config::new(ACTIONS).set("workers", "1"));
    for i in 0..20 {
        let r = env.send("GET", &format!("/files/{i}"), &[], b"");
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    // Bodiless answers (HEAD) give their connection back at once too.
    for i in 0..5 {
        let r = env.send("HEAD", &format!("/files/h{i}"), &[], b"");
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    assert_eq!(env.backend.count(), 25);
    assert_eq!(
        env.backend.connections(),
        1,
        "every request should reuse the first connection"
    );
}

#[test]
fn each_worker_keeps_its_own_upstream_connections() {
    // Client connections are handed to the two workers in turn; each worker reuses the
    // upstream connection it opened, and none is used from the other worker's thread.
    let env = Env::with_config(&Config::new(ACTIONS).set("workers", "2"));
    for i in 0..20 {
        let r = env.send("GET", &format!("/files/{i}"), &[], b"");
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    assert_eq!(env.backend.count(), 20);
    assert_eq!(
        env.backend.connections(),
        2,
        "one upstream connection per worker"
    );
}

#[test]
fn chunked_and_empty_answers_give_their_connection_back() {
    let (addr, heads) = scripted(|_, n| match n % 3 {
        0 => Then::Reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ),
        1 => Then::Reply(b"HTTP/1.1 204 No Content\r\n\r\n"),
        _ => Then::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    });
    let (writ, _keys) = front(addr);
    for i in 0..9 {
        let r = writ.send("GET", &format!("/files/{i}"), &[], b"");
        assert!(r.status == 200 || r.status == 204, "{}", r.describe());
        if i % 3 == 0 {
            assert_eq!(r.body_text(), "ok");
        }
    }
    assert_eq!(connections(&heads), vec![0; 9]);
}

#[test]
fn a_connection_the_backend_closed_while_idle_is_not_reused() {
    // Keep-alive by the headers, but the backend closes each connection after answering.
    let (addr, heads) = scripted(|_, _| Then::ReplyThenClose(OK));
    let (writ, _keys) = front(addr);
    for i in 0..4 {
        let r = writ.send("POST", &format!("/files/{i}"), &[], b"payload");
        assert_eq!(r.status, 200, "request {i}: {}", r.describe());
        thread::sleep(Duration::from_millis(200));
    }
    // Each request once, each on a connection of its own.
    assert_eq!(connections(&heads), vec![0, 1, 2, 3]);
}

#[test]
fn a_request_that_may_have_reached_the_backend_is_not_sent_again() {
    // The first request is answered on a kept-alive connection; the second one's head is
    // read on that same connection and then the backend closes it without answering.
    let (addr, heads) = scripted(|c, n| match (c, n) {
        (0, 0) => Then::Reply(OK),
        _ => Then::Close,
    });
    let (writ, _keys) = front(addr);
    let r = writ.send("GET", "/files/first", &[], b"");
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = writ.send("POST", "/files/pay", &[], b"amount=100");
    r.assert_problem(502, "upstream_unavailable");
    // Written once, on the reused connection: never replayed on a fresh one.
    thread::sleep(Duration::from_millis(200));
    let seen = heads.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1], (0, "POST /files/pay HTTP/1.1".to_string()));
}

#[test]
fn connection_close_from_the_backend_is_honoured() {
    // The backend says `Connection: close` but leaves the socket open: writ must not reuse it.
    let (addr, heads) = scripted(|_, _| {
        Then::Reply(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    });
    let (writ, _keys) = front(addr);
    for i in 0..3 {
        let r = writ.send("GET", &format!("/files/{i}"), &[], b"");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.body_text(), "ok");
    }
    assert_eq!(connections(&heads), vec![0, 1, 2]);
}

#[test]
fn an_answer_the_client_abandoned_does_not_hold_up_the_next_request() {
    let (addr, heads) = scripted(|c, _| {
        if c == 0 {
            Then::SlowBody
        } else {
            Then::Reply(OK)
        }
    });
    let (writ, _keys) = front(addr);
    // Read the head and the first bytes of the 1 MB answer, then go away.
    let mut conn = TcpStream::connect(writ.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET /files/big HTTP/1.1\r\nHost: files.test\r\n\r\n")
        .unwrap();
    let mut stream_bytes = [0u8; 512];
    let n = conn.read(&mut stream_bytes).unwrap();
    assert!(
        String::from_utf8_lossy(&stream_bytes[..n]).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&stream_bytes[..n])
    );
    drop(conn);
    // The next request is answered at once, on a connection of its own: the half-read one is
    // never handed out (it would have to wait for its body, or would carry its bytes).
    let started = Instant::now();
    let r = writ.send("GET", "/files/next", &[], b"");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.body_text(), "ok");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(connections(&heads), vec![0, 1]);
}

#[test]
fn a_request_without_host_gets_the_upstream_authority() {
    let env = Env::start(ACTIONS);
    let r = support::send_raw(env.writ.addr(), b"GET /files/old HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.describe());
    let seen = env.backend.single();
    assert_eq!(
        seen.header("host"),
        Some(env.backend.addr().to_string().as_str()),
        "{seen:#?}"
    );
}

#[test]
fn the_backend_gets_the_host_as_classified() {
    let env = Env::with_config(&Config::new(ACTIONS).set("workers", "1"));
    let cases = [
        ("files.test", "files.test"),
        ("Files.TEST.", "files.test"),
        ("files.test:8080", "files.test:8080"),
        ("FILES.test.:8080", "files.test:8080"),
        ("[::1]:8080", "[::1]:8080"),
        ("10.0.0.7", "10.0.0.7"),
    ];
    for (sent, _) in cases {
        let r = support::send_raw(
            env.writ.addr(),
            format!("GET /files/h HTTP/1.1\r\nHost: {sent}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 200, "{sent}: {}", r.describe());
    }
    let seen = env.backend.requests();
    assert_eq!(seen.len(), cases.len());
    for (req, (sent, want)) in seen.iter().zip(cases) {
        assert_eq!(req.header("host"), Some(want), "sent {sent}");
        assert_eq!(req.header("x-forwarded-host"), Some(want), "sent {sent}");
    }
}
