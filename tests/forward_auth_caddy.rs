//! The forward-auth front door behind a REAL Caddy (Debian's package, installed
//! by .ci/setup) running the shipped `deploy/frontdoors/Caddyfile`: Caddy's
//! `forward_auth` speaks the Traefik dialect (`X-Forwarded-Method/-Uri/-Host`) and
//! passes writ's denial (status, `WWW-Authenticate`, problem+json) to the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const ACTIONS: &str = r#"
  - name: public
    methods: [GET, POST]
    path: /public/{*rest}
    public: true
  - name: profile
    methods: [GET]
    path: /profile
    require: { scopes: [profile] }
  - name: admin
    methods: [GET]
    path: /admin
    require: { scopes: [admin] }
  - name: shadow
    methods: [GET]
    path: /shadow
    mode: audit
    require: { scopes: [shadow] }
"#;

struct Caddy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Caddy {
    fn start(backend: SocketAddr, http_port: u16) -> Caddy {
        let template = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/frontdoors/Caddyfile"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = template
            .replace("@PORT@", &port.to_string())
            .replace("@BACKEND_PORT@", &backend.port().to_string())
            .replace("@WRIT_HTTP_PORT@", &http_port.to_string());
        let path = dir.path().join("Caddyfile");
        std::fs::write(&path, conf).unwrap();
        let log = dir.path().join("caddy.log");
        let child = Command::new("caddy")
            .arg("run")
            .arg("--config")
            .arg(&path)
            .args(["--adapter", "caddyfile"])
            // Caddy keeps state under HOME/XDG dirs: the test's own.
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start caddy: {e}; .ci/setup installs it (apt)"));
        let caddy = Caddy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(caddy.addr).is_err() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(Instant::now() < deadline, "caddy did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
        caddy
    }
}

#[test]
fn through_caddy_allow_denials_spoofing_audit_and_bypasses() {
    let port = free_port();
    let config = Config::new(ACTIONS).set(
        "ext_authz",
        &format!("\n  http: \"127.0.0.1:{port}\"\n  trusted_proxies: [127.0.0.1/32]"),
    );
    let env = Env::with_config(&config);
    let caddy = Caddy::start(env.backend.addr(), port);
    let auth = format!("Bearer {}", env.token("profile"));
    let send = |method: &str, target: &str, headers: &[(&str, &str)]| {
        request(caddy.addr, method, target, headers, b"")
    };

    let resp = send(
        "GET",
        "/profile?q=1",
        &[
            ("Authorization", &auth),
            ("X-Writ-Subject", "admin"),
            ("X-Writ-Actor", "agent:root"),
            ("X-Forwarded-User", "root"),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.target, "/profile?q=1");
    seen.assert_writ_identity("alice", "profile");
    env.backend.clear();

    // Caddy passes writ's denial through: SPEC's status, challenge and body.
    let resp = send("GET", "/profile", &[]);
    resp.assert_problem(401, "no_token");
    assert!(
        resp.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer"))
    );
    send("DELETE", "/profile", &[]).assert_problem(405, "method_not_allowed");
    send("GET", "/elsewhere", &[]).assert_problem(403, "no_matching_action");
    env.backend.assert_untouched();

    // Audit: through, no identity, the client's removed.
    let resp = send("GET", "/shadow", &[("X-Writ-Subject", "admin")]);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert!(seen.header_folded("x-writ-subject").is_empty(), "{seen:#?}");
    env.backend.clear();

    for target in [
        "/admin",
        "/%61dmin",
        "//admin",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/..;/admin",
        "/public/..%2fadmin",
        "/public\\..\\admin",
        "/public/%252e%252e/admin",
        "/public/x",
        "/public/a/b",
    ] {
        let _ = try_request(caddy.addr, "GET", target, &[("Authorization", &auth)], b"");
    }
    let seen = env.backend.requests();
    assert!(
        !seen.is_empty(),
        "the honest public targets must get through"
    );
    for r in &seen {
        let path = r.target.split('?').next().unwrap_or_default();
        let route = lenient_route(path);
        assert_eq!(
            route.first().map(String::as_str),
            Some("public"),
            "{}",
            r.target
        );
        assert_eq!(r.header_folded("x-writ-action"), vec!["public"], "{r:#?}");
    }
    env.writ.assert_metric_at_least(
        "writ_requests_total",
        &[("frontend", "ext_authz_http"), ("decision", "deny")],
        5.0,
    );
}
