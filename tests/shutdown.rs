//! Shutdown (SPEC "Operations: Shutdown", "Settled questions: Config" `shutdown_grace`): on
//! SIGTERM or SIGINT writ stops accepting, stops being ready, lets in-flight requests finish
//! within `shutdown_grace`, and exits 0 as soon as they are done, or when the grace ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use support::{BackendOptions, Config, Env, RawResponse, eventually_within, try_request};

const ACTIONS: &str = r#"
  - name: slow
    methods: [GET]
    path: /slow
    public: true
"#;

fn env(grace: &str, delay: Duration) -> Env {
    Env::with_config_and_backend(
        &Config::new(ACTIONS).set("shutdown_grace", grace),
        BackendOptions {
            delay,
            ..BackendOptions::default()
        },
    )
}

/// Starts `GET /slow` on its own thread and waits until the backend has received it.
fn in_flight(env: &Env) -> thread::JoinHandle<std::io::Result<RawResponse>> {
    let addr = env.writ.addr();
    let handle = thread::spawn(move || try_request(addr, "GET", "/slow", &[], b""));
    let arrived = eventually_within(Duration::from_secs(3), || {
        (env.backend.count() == 1).then_some(())
    });
    assert!(
        arrived.is_some(),
        "the slow request never reached the backend\n--- stderr ---\n{}",
        env.writ.stderr()
    );
    handle
}

/// `true` when a new TCP connection to `addr` is refused.
fn refused(addr: std::net::SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

/// SIGTERM/SIGINT with a 1.5 s request in flight: not ready and not accepting at once, the
/// request completes, exit 0 right after it (well before the 10 s grace).
fn drains_in_flight_request(sig: &str) {
    let delay = Duration::from_millis(1500);
    let env = env("10s", delay);
    assert_eq!(
        try_request(env.writ.admin_addr(), "GET", "/readyz", &[], b"")
            .unwrap()
            .status,
        200
    );
    let request = in_flight(&env);
    let signalled = Instant::now();
    env.writ.signal(sig);

    // During the drain: /readyz is 503 (or the admin port is closed), the proxy port refuses.
    let not_ready = eventually_within(Duration::from_millis(500), || {
        match try_request(env.writ.admin_addr(), "GET", "/readyz", &[], b"") {
            Ok(r) if r.status == 503 => Some("503"),
            Ok(_) => None,
            Err(_) => Some("admin closed"),
        }
    });
    assert!(
        not_ready.is_some(),
        "/readyz still 200 after SIG{sig}\n--- stderr ---\n{}",
        env.writ.stderr()
    );
    let closed = eventually_within(Duration::from_millis(500), || {
        refused(env.writ.addr()).then_some(())
    });
    assert!(
        closed.is_some(),
        "new connections to the proxy port are still accepted after SIG{sig}"
    );
    assert!(
        signalled.elapsed() < delay,
        "the drain checks must happen while the request is still in flight ({:?})",
        signalled.elapsed()
    );
    assert!(
        env.writ.try_exit_status().is_none(),
        "writ exited with a request in flight"
    );

    let resp = request
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the in-flight request was cut off by SIG{sig}: {e}"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.body, b"backend-ok");

    let code = env.writ.wait_exit(Duration::from_secs(3));
    let elapsed = signalled.elapsed();
    assert_eq!(
        code,
        Some(Some(0)),
        "writ should exit 0 after draining (waited {elapsed:?})\n--- stderr ---\n{}",
        env.writ.stderr()
    );
    assert!(
        elapsed < delay + Duration::from_millis(1500),
        "exit as soon as the in-flight request is done, not at the end of the grace: {elapsed:?}"
    );
}

#[test]
fn sigterm_drains_the_in_flight_request_then_exits_0() {
    drains_in_flight_request("TERM");
}

#[test]
fn sigint_drains_the_in_flight_request_then_exits_0() {
    drains_in_flight_request("INT");
}

fn exits_promptly_when_idle(sig: &str) {
    let env = env("10s", Duration::ZERO);
    // Some traffic first, including an idle keep-alive-capable exchange that has finished.
    for _ in 0..3 {
        let r = env.get("/slow", None);
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    let signalled = Instant::now();
    env.writ.signal(sig);
    let code = env.writ.wait_exit(Duration::from_secs(2));
    assert_eq!(
        code,
        Some(Some(0)),
        "an idle writ should exit 0 within 2 s of SIG{sig} (grace is 10 s), waited {:?}\n--- stderr ---\n{}",
        signalled.elapsed(),
        env.writ.stderr()
    );
}

#[test]
fn idle_writ_exits_0_promptly_on_sigterm() {
    exits_promptly_when_idle("TERM");
}

#[test]
fn idle_writ_exits_0_promptly_on_sigint() {
    exits_promptly_when_idle("INT");
}

#[test]
fn an_idle_keep_alive_connection_does_not_hold_up_the_exit() {
    let env = env("10s", Duration::ZERO);
    // A client that keeps its connection open after a complete exchange.
    let mut conn = support::RawConn::connect(env.writ.addr()).unwrap();
    conn.send(&support::build_request(
        env.writ.addr(),
        "GET",
        "/slow",
        &[],
        b"",
    ))
    .unwrap();
    let r = conn.read_response(false).unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    let signalled = Instant::now();
    env.writ.signal("TERM");
    let code = env.writ.wait_exit(Duration::from_secs(2));
    assert_eq!(
        code,
        Some(Some(0)),
        "an idle keep-alive connection must not keep writ alive until the grace ends (waited {:?})",
        signalled.elapsed()
    );
    drop(conn);
}

#[test]
fn a_request_running_past_the_grace_does_not_keep_writ_alive() {
    let env = env("1s", Duration::from_secs(5));
    let request = in_flight(&env);
    let signalled = Instant::now();
    env.writ.signal("TERM");
    let code = env.writ.wait_exit(Duration::from_millis(2500));
    let elapsed = signalled.elapsed();
    assert!(
        code.is_some(),
        "writ still running {elapsed:?} after SIGTERM with shutdown_grace 1s\n--- stderr ---\n{}",
        env.writ.stderr()
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "exit by ~grace + 1 s, took {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "the in-flight request gets its grace before the exit ({elapsed:?})"
    );
    assert_eq!(
        code,
        Some(Some(0)),
        "exit status after the grace ended\n--- stderr ---\n{}",
        env.writ.stderr()
    );
    // The client is not left hanging: its connection is gone with the process.
    let r = request.join().unwrap();
    assert!(
        r.as_ref().map_or(true, |r| r.status != 200),
        "the request was cut at the grace, it cannot have completed: {:?}",
        r.map(|r| r.describe())
    );
}
