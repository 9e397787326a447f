//! The forward-auth front door (SPEC: Front doors): a REAL nginx (Debian's
//! package, installed by .ci/setup) with `auth_request`, started with the shipped
//! `deploy/frontdoors/nginx.conf` in its own prefix, in front of the recording
//! backend; and the Traefik/Caddy dialect (`X-Forwarded-Method/-Uri/-Host`)
//! called directly. Allow, denial classes, spoofed identity, audit, strictness,
//! and forward-auth headers from an untrusted peer refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// method, target, headers, status from nginx, SPEC status, reason
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, u16, &'a str);

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

const SUITE_BUDGET: Duration = Duration::from_secs(90);

/// `$NGINX_BIN`, `nginx` on PATH, or Debian's /usr/sbin/nginx (root's PATH may
/// lack /usr/sbin).
fn nginx_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NGINX_BIN") {
        return p.into();
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nginx").is_file()));
    if on_path {
        "nginx".into()
    } else {
        "/usr/sbin/nginx".into()
    }
}

struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts nginx (foreground, own prefix) with the shipped config in front of
    /// `backend`, asking writ's forward-auth door on `http_port`.
    fn start(backend: SocketAddr, http_port: u16) -> Nginx {
        let template = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/frontdoors/nginx.conf"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = template
            .replace("@PREFIX@", &dir.path().display().to_string())
            .replace("@PORT@", &port.to_string())
            .replace("@BACKEND_PORT@", &backend.port().to_string())
            .replace("@WRIT_HTTP_PORT@", &http_port.to_string());
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .args(["-e", "stderr"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nginx: {e}; .ci/setup installs it (apt)"));
        let nginx = Nginx {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(nginx.addr).is_err() {
            let log =
                std::fs::read_to_string(nginx.dir.path().join("stderr.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "nginx did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    fn send(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
        request(self.addr, method, target, headers, b"")
    }
}

fn start(trusted: &str) -> (Env, u16) {
    let port = free_port();
    let config = Config::new(ACTIONS).set(
        "ext_authz",
        &format!("\n  http: \"127.0.0.1:{port}\"\n  trusted_proxies: {trusted}"),
    );
    (Env::with_config(&config), port)
}

#[test]
fn through_nginx_allow_denials_spoofing_and_audit() {
    let started = Instant::now();
    let (env, port) = start("[127.0.0.1/32]");
    let nginx = Nginx::start(env.backend.addr(), port);
    let auth = format!("Bearer {}", env.token("profile"));

    let resp = nginx.send(
        "GET",
        "/profile?q=1",
        &[
            ("Authorization", &auth),
            ("X-Writ-Subject", "admin"),
            ("X_Writ_Actor", "agent:root"),
            ("X-Writ-Action", "delete-all"),
            ("X-Forwarded-User", "root"),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.target, "/profile?q=1");
    seen.assert_writ_identity("alice", "profile");
    let rid = seen
        .header("x-request-id")
        .expect("writ's request id")
        .to_string();
    let line = env.writ.log_line_for(&rid);
    assert_eq!(line["frontend"], "ext_authz_http", "{line}");
    assert_eq!(line["path"], "/profile", "{line}");
    env.backend.clear();

    // Denials: nginx passes only 401 and 403; writ's status and reason make the
    // problem+json body of the error page.
    let read = format!("Bearer {}", env.token("read"));
    let cases: [Case<'_>; 6] = [
        ("GET", "/profile", vec![], 401, 401, "no_token"),
        (
            "GET",
            "/profile",
            vec![("Authorization", &read)],
            403,
            403,
            "insufficient_scope",
        ),
        ("GET", "/elsewhere", vec![], 403, 403, "no_matching_action"),
        ("DELETE", "/profile", vec![], 403, 405, "method_not_allowed"),
        ("GET", "/public/../admin", vec![], 403, 400, "bad_request"),
        ("GET", "/public/%61", vec![], 403, 400, "bad_request"),
    ];
    for (method, target, headers, status, spec_status, reason) in cases {
        let resp = nginx.send(method, target, &headers);
        assert_eq!(
            resp.status,
            status,
            "{method} {target}: {}",
            resp.describe()
        );
        let body = resp.json();
        assert_eq!(body["reason"], reason, "{method} {target}: {body}");
        assert_eq!(body["status"], spec_status, "{body}");
        if status == 401 {
            let challenge = resp.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{}", resp.describe());
        }
    }
    env.backend.assert_untouched();

    // Audit: through, no identity set, the client's dropped, logged as a would-be denial.
    let resp = nginx.send("GET", "/shadow", &[("X-Writ-Subject", "admin")]);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert!(seen.header_folded("x-writ-subject").is_empty(), "{seen:#?}");
    let rid = seen.header("x-request-id").unwrap().to_string();
    let line = env.writ.log_line_for(&rid);
    assert_eq!(line["decision"], "deny", "{line}");
    assert_eq!(line["enforced"], false, "{line}");
    env.writ.assert_metric(
        "writ_requests_total",
        &[("frontend", "ext_authz_http"), ("reason", "no_token")],
        2.0,
    );
    assert!(started.elapsed() < SUITE_BUDGET);
}

#[test]
fn through_nginx_an_untrusted_peer_gets_nothing_through() {
    let (env, port) = start("[10.0.0.0/8]");
    let nginx = Nginx::start(env.backend.addr(), port);
    let auth = format!("Bearer {}", env.token("profile"));
    let resp = nginx.send("GET", "/profile", &[("Authorization", &auth)]);
    assert_eq!(resp.status, 403, "{}", resp.describe());
    env.backend.assert_untouched();
    env.writ.assert_metric(
        "writ_frontdoor_untrusted_total",
        &[("frontend", "ext_authz_http")],
        1.0,
    );
}

/// Traefik ForwardAuth and Caddy forward_auth: the real status and body pass
/// through to the client, so writ answers SPEC's response as is.
#[test]
fn traefik_dialect_called_directly() {
    let (env, port) = start("[127.0.0.1/32]");
    let door = SocketAddr::from(([127, 0, 0, 1], port));
    let auth = format!("Bearer {}", env.token("profile"));
    let ask = |method: &str, uri: &str, extra: &[(&str, &str)]| {
        let mut h = vec![
            ("X-Forwarded-Method", method),
            ("X-Forwarded-Uri", uri),
            ("X-Forwarded-Host", "api.example"),
            ("X-Forwarded-Proto", "https"),
        ];
        h.extend_from_slice(extra);
        request(door, "GET", "/", &h, b"")
    };
    let resp = ask("GET", "/profile", &[("Authorization", &auth)]);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.header("x-writ-subject"), Some("alice"));
    assert_eq!(resp.header("x-writ-action"), Some("profile"));

    let resp = ask("DELETE", "/profile", &[]);
    resp.assert_problem(405, "method_not_allowed");
    assert_eq!(resp.header("allow"), Some("GET"));
    let resp = ask("GET", "/profile", &[]);
    resp.assert_problem(401, "no_token");
    let resp = ask("GET", "//profile", &[("Authorization", &auth)]);
    resp.assert_problem(400, "bad_request");
    // A spelling of an identity header the ingress cannot remove is refused.
    let resp = ask("GET", "/public/x", &[("X_Writ_Subject", "admin")]);
    resp.assert_problem(400, "bad_request");
    // No X-Forwarded-Host: the client's virtual host is not guessed.
    let resp = request(
        door,
        "GET",
        "/",
        &[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/profile"),
            ("Authorization", &auth),
        ],
        b"",
    );
    resp.assert_problem(400, "bad_request");
    // Neither dialect, or both: not guessed.
    let resp = request(door, "GET", "/profile", &[("Authorization", &auth)], b"");
    resp.assert_problem(400, "bad_request");
    // (With nginx's headers present, the status is nginx's 403, SPEC's in X-Writ-Status.)
    let resp = ask(
        "GET",
        "/profile",
        &[
            ("X-Original-URI", "/public/x"),
            ("X-Original-Method", "GET"),
        ],
    );
    assert_eq!(resp.status, 403, "{}", resp.describe());
    assert_eq!(resp.header("x-writ-status"), Some("400"));
    assert_eq!(resp.header("x-writ-reason"), Some("bad_request"));
    env.backend.assert_untouched();
    env.writ.assert_metric(
        "writ_requests_total",
        &[("frontend", "ext_authz_http"), ("decision", "allow")],
        1.0,
    );
}

#[test]
fn traefik_dialect_from_an_untrusted_peer_is_refused() {
    let (env, port) = start("[192.0.2.0/24]");
    let door = SocketAddr::from(([127, 0, 0, 1], port));
    let auth = format!("Bearer {}", env.token("profile"));
    let resp = request(
        door,
        "GET",
        "/",
        &[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/profile"),
            ("Authorization", &auth),
        ],
        b"",
    );
    assert_eq!(resp.status, 403, "{}", resp.describe());
    assert!(resp.header("x-writ-subject").is_none());
    assert!(env.writ.decision_log_lines().is_empty(), "not a decision");
}

/// nginx forwards the target as the client sent it, so writ's strictness rule
/// alone decides: every bypass class from tests/normalization_bypass.rs that
/// nginx lets through is refused unless it is already in normal form, and the
/// backend gets exactly what writ allowed.
#[test]
fn bypass_classes_through_nginx_never_reach_the_backend_unapproved() {
    let started = Instant::now();
    let (env, port) = start("[127.0.0.1/32]");
    let nginx = Nginx::start(env.backend.addr(), port);
    let auth = format!("Bearer {}", env.token("profile public"));
    for target in [
        "/admin",
        "/ADMIN",
        "/%61dmin",
        "//admin",
        "/./admin/./",
        "/admin/",
        "/admin;",
        "/admin%3B",
        "/admin%2F",
        "/admin%5C",
        "/admin%00",
        "/../admin",
        "/%2e%2e/admin",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%252e%252e/admin",
        "/public/..;/admin",
        "/public/..%3B/admin",
        "/public/..\\admin",
        "/public\\..\\admin",
        "/public/%2e%2e%2fadmin",
        "/public/..%2fadmin",
        "/public/%C0%AE%C0%AE/admin",
        "//public/%2e%2e//%61dmin",
        "/public/x?_method=DELETE",
        "/public/x",
        "/public/a/b",
    ] {
        let _ = try_request(nginx.addr, "GET", target, &[("Authorization", &auth)], b"");
        assert!(started.elapsed() < SUITE_BUDGET, "suite took too long");
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
        let rid = r.header("x-request-id").expect("request id");
        let line = env.writ.log_line_for(rid);
        assert_eq!(line["decision"], "allow", "{line}");
        assert_eq!(line["path"].as_str(), Some(path), "{} vs {line}", r.target);
    }
}
