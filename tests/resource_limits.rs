//! Resource limits: slowloris, header floods, connection caps, streaming uploads, memory.
//!
//! writ's `limits:` section (`max_connections`, default 10000; `header_read_timeout`, default
//! 10s; `max_h2_streams`, default 256) and SPEC's fixed head limits (target > 8 KiB → 414,
//! headers > 64 KiB or > 100 fields → 431) must keep one hostile client from starving the
//! others or blowing up the sidecar's memory. Every test here is bounded in time (all loops
//! have deadlines) and asserts on writ's own `/proc/<pid>/status` where memory is the point.
//!
//! The tests take a file-wide lock: they measure timings and peak memory of a process on a
//! small machine, and must not measure each other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{
    Config, Env, Keys, RawConn, RawResponse, Server, Writ, build_request, frame, serial,
    serve_http1, try_request,
};

const ACTIONS: &str = r"
  - name: ok
    methods: [GET]
    path: /ok
    public: true
  - name: upload
    methods: [POST]
    path: /upload
    public: true
";

fn env_with_limits(limits: &str) -> Env {
    Env::with_config(&Config::new(ACTIONS).set("limits", limits))
}

const KIB: usize = 1024;
const MIB: u64 = 1024 * 1024;

// ==========================================================================================
// === helpers ===
// ==========================================================================================

/// writ's resident set and its peak, in bytes.
#[derive(Clone, Copy, Debug)]
struct Mem {
    rss: u64,
    hwm: u64,
}

fn mem(pid: u32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing in /proc/{pid}/status:\n{status}"))
            * 1024
    };
    Mem {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
    }
}

fn mib(bytes: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / 1024.0 / 1024.0
}

/// One `GET /ok` on a fresh connection with a tight timeout; `Ok` only for a 200.
fn quick_get(addr: SocketAddr, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut conn = RawConn::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(timeout)
        .map_err(|e| format!("set timeout: {e}"))?;
    conn.send(&build_request(addr, "GET", "/ok", &[], b""))
        .map_err(|e| format!("send: {e}"))?;
    let r = conn
        .read_response(false)
        .map_err(|e| format!("read: {e}"))?;
    if r.status == 200 {
        Ok(started.elapsed())
    } else {
        Err(format!("status {}", r.status))
    }
}

/// A client connection that writ is expected to close on its own.
struct Victim {
    stream: TcpStream,
    kind: &'static str,
    opened: Instant,
    /// How long after it was opened writ closed it (EOF or reset).
    closed_at: Option<Duration>,
    /// Whatever writ wrote before closing (e.g. a 408).
    got: Vec<u8>,
}

impl Victim {
    fn open(addr: SocketAddr, kind: &'static str, first_bytes: &[u8]) -> Victim {
        let opened = Instant::now();
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect ({kind}): {e}"));
        let _ = stream.set_nodelay(true);
        if !first_bytes.is_empty() {
            stream.write_all(first_bytes).expect("write partial head");
        }
        stream.set_nonblocking(true).expect("nonblocking");
        Victim {
            stream,
            kind,
            opened,
            closed_at: None,
            got: Vec::new(),
        }
    }

    /// Non-blocking check: records the close if writ has closed the connection.
    fn poll_closed(&mut self) {
        if self.closed_at.is_some() {
            return;
        }
        let at = self.opened.elapsed();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed_at = Some(at);
                    return;
                }
                Ok(n) => {
                    if self.got.len() < 4096 {
                        self.got.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed_at = Some(at);
                    return;
                }
            }
        }
    }

    /// Sends one more byte of the never-ending head; a write error means writ closed it.
    fn trickle(&mut self, byte: u8) {
        if self.closed_at.is_some() {
            return;
        }
        let at = self.opened.elapsed();
        match self.stream.write(&[byte]) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(_) => self.closed_at = Some(at),
        }
    }

    /// writ answered this connection with a success: it treated a never-completed head as a
    /// request.
    fn answered_success(&self) -> bool {
        self.got.starts_with(b"HTTP/1.1 2") || self.got.starts_with(b"HTTP/1.0 2")
    }
}

/// Watches `victims` until all are closed or `deadline` (from now) passes; trickles one byte
/// into each open one every `trickle_every` (if given).
fn watch_victims(
    victims: &mut [Victim],
    deadline: Duration,
    trickle_every: Option<(Duration, u8)>,
) {
    let start = Instant::now();
    let mut next_trickle = Duration::ZERO;
    loop {
        let at = start.elapsed();
        if let Some((every, byte)) = trickle_every
            && at >= next_trickle
        {
            for v in victims.iter_mut() {
                v.trickle(byte);
            }
            next_trickle = at + every;
        }
        for v in victims.iter_mut() {
            v.poll_closed();
        }
        if victims.iter().all(|v| v.closed_at.is_some()) || at >= deadline {
            return;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

fn close_report(victims: &[Victim]) -> String {
    let mut kinds: Vec<&str> = victims.iter().map(|v| v.kind).collect();
    kinds.dedup();
    let mut out = String::new();
    for kind in kinds {
        let of_kind: Vec<&Victim> = victims.iter().filter(|v| v.kind == kind).collect();
        let closed: Vec<Duration> = of_kind.iter().filter_map(|v| v.closed_at).collect();
        let max = closed.iter().max().copied();
        let min = closed.iter().min().copied();
        out.push_str(&format!(
            "  {kind}: {} of {} closed by writ (after {min:?} at the earliest, {max:?} at the \
             latest)\n",
            closed.len(),
            of_kind.len()
        ));
    }
    out
}

/// A partial HTTP/1.1 request head that is never finished.
fn partial_head(addr: SocketAddr, i: usize) -> Vec<u8> {
    format!("GET /ok?slow={i} HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").into_bytes()
}

// ==========================================================================================
// === slowloris ===
// ==========================================================================================

#[test]
fn slowloris_connections_are_cut_off_and_do_not_starve_other_clients() {
    let _serial = serial();
    let env = env_with_limits("\n  header_read_timeout: 1s");
    let addr = env.writ.addr();
    let before = mem(env.writ.pid());

    let mut victims: Vec<Victim> = (0..300)
        .map(|i| {
            Victim::open(
                addr,
                "partial head, 1 byte / 300 ms",
                &partial_head(addr, i),
            )
        })
        .collect();

    // A normal client keeps asking while the slow ones trickle.
    let normal = thread::spawn(move || {
        let mut results = Vec::new();
        for _ in 0..8 {
            results.push(quick_get(addr, Duration::from_secs(2)));
            thread::sleep(Duration::from_millis(150));
        }
        results
    });

    watch_victims(
        &mut victims,
        Duration::from_secs(4),
        Some((Duration::from_millis(300), b'a')),
    );
    let results = normal.join().expect("normal client thread");
    let after = mem(env.writ.pid());
    let report = close_report(&victims);
    println!(
        "slowloris: RSS {:.1} -> {:.1} MiB, peak {:.1} MiB\n{report}normal client: {results:?}",
        mib(before.rss),
        mib(after.rss),
        mib(after.hwm)
    );

    // Normal clients are served promptly throughout.
    for (i, r) in results.iter().enumerate() {
        let latency = r
            .as_ref()
            .unwrap_or_else(|e| panic!("normal request {i} failed during slowloris: {e}"));
        assert!(
            *latency < Duration::from_secs(2),
            "normal request {i} took {latency:?} during slowloris"
        );
    }
    // Every slow connection was closed by writ, although it kept sending: the timeout bounds
    // the whole head, it is not reset by each byte.
    let open: Vec<usize> = (0..victims.len())
        .filter(|&i| victims[i].closed_at.is_none())
        .collect();
    assert!(
        open.is_empty(),
        "{} slowloris connections still open 4 s after start with header_read_timeout 1s \
         (first: {:?})\n{report}",
        open.len(),
        &open[..open.len().min(10)]
    );
    let latest = victims.iter().filter_map(|v| v.closed_at).max().unwrap();
    assert!(
        latest <= Duration::from_secs(3),
        "slow connections must be closed within ~2-3 s of a 1 s header_read_timeout, the last \
         one took {latest:?}\n{report}"
    );
    let earliest = victims.iter().filter_map(|v| v.closed_at).min().unwrap();
    assert!(
        earliest >= Duration::from_millis(900),
        "a slow connection was cut off after {earliest:?}, before header_read_timeout (1s)\n{report}"
    );
    assert!(
        !victims.iter().any(Victim::answered_success),
        "writ answered a never-completed request head with a success"
    );
    // The backend saw the normal requests and nothing else.
    let reqs = env.backend.requests();
    assert_eq!(
        reqs.len(),
        results.len(),
        "backend must see exactly the normal requests, got {:?}",
        reqs.iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    assert!(
        reqs.iter()
            .all(|r| r.header("x-slow").is_none() && !r.target.contains("slow")),
        "a slowloris head reached the backend"
    );
    // And writ still serves afterwards.
    quick_get(addr, Duration::from_secs(2)).expect("request after slowloris");
}

#[test]
fn silent_and_partial_preface_connections_are_closed_after_header_read_timeout() {
    let _serial = serial();
    let env = env_with_limits("\n  header_read_timeout: 1s");
    let addr = env.writ.addr();

    // Connections that send nothing at all, and ones that stop inside the HTTP/2 client
    // preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`): neither has delivered a request head.
    let mut victims: Vec<Victim> = Vec::new();
    for _ in 0..50 {
        victims.push(Victim::open(addr, "silent (no byte sent)", b""));
    }
    for _ in 0..50 {
        victims.push(Victim::open(
            addr,
            "stopped inside the h2 preface",
            b"PRI * HTTP/2.0\r\n",
        ));
    }
    for i in 0..50 {
        victims.push(Victim::open(
            addr,
            "partial h1 head (control)",
            &partial_head(addr, i),
        ));
    }
    watch_victims(&mut victims, Duration::from_secs(4), None);
    let report = close_report(&victims);
    println!("idle connections:\n{report}");

    let open = victims.iter().filter(|v| v.closed_at.is_none()).count();
    assert_eq!(
        open, 0,
        "connections that never delivered a request head must be closed after \
         header_read_timeout (1s); {open} still open after 4 s:\n{report}"
    );
    let latest = victims.iter().filter_map(|v| v.closed_at).max().unwrap();
    assert!(
        latest <= Duration::from_secs(3),
        "idle connections closed too late ({latest:?}):\n{report}"
    );
    env.backend.assert_untouched();
    quick_get(addr, Duration::from_secs(2)).expect("request after idle connections");
}

// ==========================================================================================
// === connection limit ===
// ==========================================================================================

#[test]
fn max_connections_holds_the_next_client_until_a_slot_frees() {
    let _serial = serial();
    let env = env_with_limits("\n  max_connections: 20\n  header_read_timeout: 10s");
    let addr = env.writ.addr();

    // 20 keep-alive connections, each served once, then left idle.
    let mut held: Vec<RawConn> = (0..20)
        .map(|i| {
            let mut c = RawConn::connect(addr).expect("connect");
            c.send(&build_request(addr, "GET", "/ok", &[], b""))
                .unwrap();
            let r = c
                .read_response(false)
                .unwrap_or_else(|e| panic!("held connection {i} not served: {e}"));
            assert_eq!(r.status, 200, "held connection {i}: {}", r.describe());
            c
        })
        .collect();
    assert_eq!(env.backend.count(), 20);

    // The 21st connects (the kernel accepts it into the backlog) but is not served.
    let mut extra = RawConn::connect(addr).expect("connect 21st");
    extra
        .send(&build_request(
            addr,
            "GET",
            "/ok",
            &[("x-extra", "21")],
            b"",
        ))
        .expect("send 21st");
    extra.set_read_timeout(Duration::from_millis(1000)).unwrap();
    match extra.read_response(false) {
        Ok(r) => panic!(
            "the 21st connection was served while 20 of max_connections 20 were held: {}",
            r.describe()
        ),
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the 21st connection must wait, not fail: {e}"
        ),
    }
    assert_eq!(
        env.backend.count(),
        20,
        "the 21st request reached the backend while the limit was reached"
    );

    // The admin listener (health checks) is not subject to the proxy's connection limit.
    let health = try_request(env.writ.admin_addr(), "GET", "/healthz", &[], b"");
    assert!(
        health.as_ref().is_ok_and(|r| r.status == 200),
        "/healthz must answer while the proxy is at max_connections: {health:?}"
    );

    // One held connection goes away: the 21st is served promptly.
    drop(held.remove(0));
    let freed = Instant::now();
    extra.set_read_timeout(Duration::from_secs(3)).unwrap();
    let r = extra
        .read_response(false)
        .unwrap_or_else(|e| panic!("21st connection not served after a slot freed: {e}"));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        freed.elapsed() < Duration::from_secs(2),
        "the 21st connection was served {:?} after a slot freed",
        freed.elapsed()
    );
    assert_eq!(env.backend.count(), 21);
    assert_eq!(
        env.backend
            .requests()
            .last()
            .and_then(|r| r.header("x-extra").map(String::from)),
        Some("21".to_string())
    );

    // The remaining held connections still work.
    let c = &mut held[0];
    c.send(&build_request(addr, "GET", "/ok", &[], b""))
        .unwrap();
    assert_eq!(
        c.read_response(false)
            .expect("held connection reused")
            .status,
        200
    );
}

#[test]
fn silent_connections_cannot_pin_every_connection_slot() {
    let _serial = serial();
    let env = env_with_limits("\n  max_connections: 20\n  header_read_timeout: 1s");
    let addr = env.writ.addr();
    // An attacker fills every slot with connections that never send a byte.
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect"))
        .collect();
    thread::sleep(Duration::from_millis(200));
    // A legitimate client must get through once header_read_timeout has cut them off.
    let result = quick_get(addr, Duration::from_secs(4));
    drop(silent);
    assert!(
        result.is_ok(),
        "20 silent connections pinned all max_connections=20 slots past header_read_timeout \
         (1s): a legitimate request got no answer within 4 s ({result:?})"
    );
}

// ==========================================================================================
// === header flood ===
// ==========================================================================================

/// How a request with an oversized head ended.
fn flood_outcome(addr: SocketAddr, bytes: &[u8]) -> Result<u16, String> {
    match support::try_send_raw(addr, bytes) {
        Ok(r) => Ok(r.status),
        Err(e) => Err(e.to_string()),
    }
}

fn big_header_request(addr: SocketAddr, value_len: usize) -> Vec<u8> {
    let value = "a".repeat(value_len);
    build_request(addr, "GET", "/ok", &[("X-Flood", &value)], b"")
}

fn many_fields_request(addr: SocketAddr, fields: usize) -> Vec<u8> {
    // `fields` counts every header field, Host included.
    let names: Vec<(String, String)> = (1..fields)
        .map(|i| (format!("X-Flood-{i}"), format!("v{i}")))
        .collect();
    let headers: Vec<(&str, &str)> = names
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    build_request(addr, "GET", "/ok", &headers, b"")
}

/// `threads` clients each send `per_thread` oversized heads: 65 KiB and 256 KiB header values,
/// `fields` header fields, and 1000 header fields, in turn. Returns every head that was not
/// refused.
fn run_header_flood(
    addr: SocketAddr,
    threads: usize,
    per_thread: usize,
    fields: usize,
) -> Vec<String> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            thread::spawn(move || {
                let mut bad = Vec::new();
                for i in 0..per_thread {
                    let (what, bytes) = match (t + i) % 4 {
                        0 => (
                            "65 KiB header".to_string(),
                            big_header_request(addr, 65 * KIB),
                        ),
                        1 => (
                            "256 KiB header".to_string(),
                            big_header_request(addr, 256 * KIB),
                        ),
                        2 => (
                            format!("{fields} fields"),
                            many_fields_request(addr, fields),
                        ),
                        _ => ("1000 fields".to_string(), many_fields_request(addr, 1000)),
                    };
                    match flood_outcome(addr, &bytes) {
                        Ok(431) | Err(_) => {}
                        Ok(s) => bad.push(format!("{what}: status {s}")),
                    }
                }
                bad
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("flood thread"))
        .collect()
}

#[test]
fn header_flood_is_refused_with_431_and_never_reaches_the_backend() {
    let _serial = serial();
    let env = env_with_limits("\n  header_read_timeout: 5s");
    let addr = env.writ.addr();
    let mut problems: Vec<String> = Vec::new();

    // At the limits: accepted (so the refusals below are about size, nothing else).
    let at_fields = flood_outcome(addr, &many_fields_request(addr, 100));
    if at_fields != Ok(200) {
        problems.push(format!(
            "100 fields (Host included): expected 200, got {at_fields:?}"
        ));
    }
    let near_size = flood_outcome(addr, &big_header_request(addr, 60 * KIB));
    if near_size != Ok(200) {
        problems.push(format!("a 60 KiB header: expected 200, got {near_size:?}"));
    }
    let accepted = env.backend.count();
    env.backend.clear();

    // Just over the limits, one by one: SPEC says 431 (a closed connection is tolerated).
    for (what, bytes) in [
        ("101 fields (Host included)", many_fields_request(addr, 101)),
        ("102 fields", many_fields_request(addr, 102)),
        ("65 KiB header", big_header_request(addr, 65 * KIB)),
    ] {
        match flood_outcome(addr, &bytes) {
            Ok(431) | Err(_) => {}
            Ok(s) => problems.push(format!("{what}: expected 431, got {s}")),
        }
    }

    // The flood: 8 clients in parallel, 320 oversized heads.
    let started = Instant::now();
    let bad = run_header_flood(addr, 8, 40, 101);
    let took = started.elapsed();
    println!(
        "header flood: 320 oversized heads in {took:?}, {} not refused",
        bad.len()
    );
    if !bad.is_empty() {
        let mut kinds: Vec<&String> = bad.iter().collect();
        kinds.dedup();
        problems.push(format!(
            "{} of 320 flooded oversized heads were not refused: {:?}",
            bad.len(),
            &kinds[..kinds.len().min(5)]
        ));
    }
    let leaked = env.backend.requests();
    if !leaked.is_empty() {
        problems.push(format!(
            "{} oversized requests reached the backend (first with {} header fields)",
            leaked.len(),
            leaked[0].headers.len()
        ));
    }
    // writ still serves normally.
    env.backend.clear();
    if let Err(e) = quick_get(addr, Duration::from_secs(2)) {
        problems.push(format!("request after the header flood failed: {e}"));
    }
    assert!(
        problems.is_empty(),
        "header limits (SPEC: headers > 64 KiB or > 100 fields → 431, never forwarded):\n  - {}",
        problems.join("\n  - ")
    );
    assert_eq!(accepted, 2, "both at-limit requests reached the backend");
    assert_eq!(env.backend.count(), 1);
}

// ==========================================================================================
// === memory ===
// ==========================================================================================

#[test]
fn memory_stays_bounded_under_slowloris_and_header_flood() {
    let _serial = serial();
    let env = env_with_limits("\n  header_read_timeout: 2s");
    let addr = env.writ.addr();
    quick_get(addr, Duration::from_secs(2)).expect("warm-up request");
    env.backend.clear();
    let before = mem(env.writ.pid());

    // 500 slow connections, each parked with ~48 KiB of an unfinished head (under the 64 KiB
    // limit, so writ must buffer it), while 8 clients flood oversized heads.
    let filler = format!("X-Pad: {}\r\n", "p".repeat(48 * KIB));
    let mut victims: Vec<Victim> = (0..500)
        .map(|i| {
            let head = format!("GET /ok?slow={i} HTTP/1.1\r\nHost: {addr}\r\n{filler}X-Slow: ");
            Victim::open(addr, "48 KiB partial head", head.as_bytes())
        })
        .collect();
    let flood = thread::spawn(move || run_header_flood(addr, 8, 30, 150));
    let peak_watch = Arc::new(AtomicBool::new(true));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (run, peak, pid) = (peak_watch.clone(), peak_rss.clone(), env.writ.pid());
        thread::spawn(move || {
            while run.load(Ordering::SeqCst) {
                peak.fetch_max(mem(pid).rss, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    watch_victims(
        &mut victims,
        Duration::from_secs(6),
        Some((Duration::from_millis(300), b'a')),
    );
    let bad = flood.join().expect("flood thread");
    peak_watch.store(false, Ordering::SeqCst);
    sampler.join().expect("sampler");
    let after = mem(env.writ.pid());
    let report = close_report(&victims);
    println!(
        "memory: RSS before {:.1} MiB, sampled peak {:.1} MiB, after {:.1} MiB, VmHWM {:.1} MiB\n\
         {report}",
        mib(before.rss),
        mib(peak_rss.load(Ordering::SeqCst)),
        mib(after.rss),
        mib(after.hwm)
    );
    assert!(bad.is_empty(), "oversized heads were not refused: {bad:?}");
    assert!(
        after.hwm < 200 * MIB,
        "writ's peak RSS (VmHWM) reached {:.1} MiB under 500 slow 48 KiB heads + a header flood; \
         bound is 200 MiB",
        mib(after.hwm)
    );
    assert!(
        victims.iter().all(|v| v.closed_at.is_some()),
        "slow connections still open after header_read_timeout 2s + 4 s:\n{report}"
    );
    env.backend.assert_untouched();
    quick_get(addr, Duration::from_secs(2)).expect("request after the memory test");
}

// ==========================================================================================
// === streaming upload ===
// ==========================================================================================

/// An upstream that counts body bytes instead of storing them, and remembers when the first
/// body byte arrived.
struct CountingBackend {
    server: Server,
    bytes: Arc<AtomicU64>,
    first_byte: Arc<Mutex<Option<Instant>>>,
    requests: Arc<AtomicU64>,
}

impl CountingBackend {
    fn start() -> CountingBackend {
        let bytes = Arc::new(AtomicU64::new(0));
        let first_byte = Arc::new(Mutex::new(None));
        let requests = Arc::new(AtomicU64::new(0));
        let (b, f, n) = (bytes.clone(), first_byte.clone(), requests.clone());
        let server = Server::start_local(move |stream| {
            let (b, f, n) = (b.clone(), f.clone(), n.clone());
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (b, f, n) = (b.clone(), f.clone(), n.clone());
                    async move {
                        use http_body_util::BodyExt as _;
                        n.fetch_add(1, Ordering::SeqCst);
                        let mut body = req.into_body();
                        let mut total: u64 = 0;
                        while let Some(frame) = body.frame().await {
                            let Ok(frame) = frame else { break };
                            if let Some(data) = frame.data_ref() {
                                if total == 0 && !data.is_empty() {
                                    let mut first = f.lock().unwrap();
                                    first.get_or_insert_with(Instant::now);
                                }
                                total += data.len() as u64;
                                b.fetch_add(data.len() as u64, Ordering::SeqCst);
                            }
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(total.to_string())),
                        ))
                    }
                });
            serve_http1(stream, svc)
        });
        CountingBackend {
            server,
            bytes,
            first_byte,
            requests,
        }
    }

    fn url(&self) -> String {
        self.server.url()
    }
}

#[test]
fn large_chunked_upload_is_streamed_not_buffered() {
    const TOTAL: u64 = 256 * MIB;
    const CHUNK: usize = 64 * KIB;
    let _serial = serial();
    let backend = CountingBackend::start();
    let keys = Keys::new();
    let config = Config::new(ACTIONS).set(
        "upstream",
        "\n  url: \"{{UPSTREAM}}\"\n  connect_timeout: 2s\n  timeout: 60s",
    );
    let writ = Writ::start(&config.render(), &backend.url(), &keys);
    let addr = writ.addr();
    let before = mem(writ.pid());

    let mut conn = RawConn::connect(addr).expect("connect");
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    conn.send(head.as_bytes()).expect("write head");
    // One chunk's framing + data, reused: the body is generated on the fly, never held.
    let mut piece = format!("{CHUNK:x}\r\n").into_bytes();
    piece.extend((0..CHUNK).map(|i| u8::try_from(i % 251).unwrap()));
    piece.extend_from_slice(b"\r\n");
    let started = Instant::now();
    let chunks = TOTAL / CHUNK as u64;
    let mut sent = 0u64;
    for i in 0..chunks {
        if let Err(e) = conn.send(&piece) {
            panic!(
                "upload write failed after {sent} bytes (chunk {i}): {e}; backend has {} bytes\n\
                 --- writ stderr ---\n{}",
                backend.bytes.load(Ordering::SeqCst),
                writ.stderr()
            );
        }
        sent += CHUNK as u64;
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "upload too slow: {sent} bytes in {:?}",
            started.elapsed()
        );
    }
    conn.send(b"0\r\n\r\n").expect("write last chunk");
    let finished_sending = Instant::now();
    conn.set_read_timeout(Duration::from_secs(20)).unwrap();
    let resp: RawResponse = conn
        .read_response(false)
        .unwrap_or_else(|e| panic!("no response to the upload: {e}\n{}", writ.stderr()));
    let took = started.elapsed();
    let after = mem(writ.pid());
    let got = backend.bytes.load(Ordering::SeqCst);
    println!(
        "upload: {} MiB in {took:?}; writ RSS {:.1} -> {:.1} MiB, VmHWM {:.1} -> {:.1} MiB",
        TOTAL / MIB,
        mib(before.rss),
        mib(after.rss),
        mib(before.hwm),
        mib(after.hwm)
    );

    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(got, TOTAL, "backend received {got} of {TOTAL} body bytes");
    assert_eq!(
        resp.body_text(),
        TOTAL.to_string(),
        "the backend's byte count, as returned through writ"
    );
    assert_eq!(backend.requests.load(Ordering::SeqCst), 1);
    let first = backend
        .first_byte
        .lock()
        .unwrap()
        .expect("backend saw body bytes");
    assert!(
        first < finished_sending,
        "the backend got its first body byte only after the client had sent all 256 MiB: writ \
         buffered the upload"
    );
    let growth = after.hwm.saturating_sub(before.hwm);
    assert!(
        growth < 64 * MIB,
        "writ's peak RSS grew by {:.1} MiB during a 256 MiB streamed upload (bound 64 MiB): \
         the body is being buffered",
        mib(growth)
    );
}

// ==========================================================================================
// === idle HTTP/2 connections ===
// ==========================================================================================

/// HEADERS for `GET /ok` (HPACK: :method GET, :scheme http, literal :path, literal :authority).
fn h2_get_ok(stream: u32) -> Vec<u8> {
    let (path, authority) = (b"/ok", b"example.org");
    let mut block = vec![0x82, 0x86, 0x44, path.len() as u8];
    block.extend(path);
    block.extend([0x41, authority.len() as u8]);
    block.extend(authority);
    frame(1, 0x5, stream, &block)
}

#[test]
fn idle_http2_connection_is_closed_even_if_it_ignores_the_goaway_ping() {
    let _serial = serial();
    let env = env_with_limits("\n  header_read_timeout: 1s");
    let mut s = std::net::TcpStream::connect(env.writ.addr()).unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(4, 0, 0, &[]));
    hello.extend(h2_get_ok(1));
    s.write_all(&hello).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Read until the server closes; the client never acknowledges anything after
    // its first request (a socket held open on purpose).
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let closed_after = loop {
        match s.read(&mut buf) {
            Ok(0) => break Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break Some(start.elapsed()),
        }
        if start.elapsed() > Duration::from_secs(8) {
            break None;
        }
    };
    let closed_after = closed_after.expect("an idle HTTP/2 connection must be closed");
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed before header_read_timeout: {closed_after:?}"
    );
    assert_eq!(env.backend.count(), 1, "the one request was served");
}
