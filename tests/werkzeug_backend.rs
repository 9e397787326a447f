//! Round two, item 1, against a real Werkzeug backend (`tests/fixtures/backends/werkzeug_app.py`):
//! Werkzeug upper-cases methods, so `delete /api/admin/users/7` runs its DELETE handler when
//! reached directly. Through writ, with a token that may only use the `*` action `api-any`, the
//! same request is refused with 405 and Werkzeug never sees it; the real DELETE still needs
//! `admin`. `.ci/setup` installs Werkzeug; without it these tests fail with a message saying so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Config, Keys, Writ, free_port, send_raw};

const ACTIONS: &str = r#"
  - name: api-any
    methods: ["*"]
    path: /api/{*rest}
    require: { scopes: ["api:basic"] }
  - name: api-delete-user
    methods: [DELETE]
    path: /api/admin/users/{id}
    require: { scopes: [admin] }
"#;

/// The Werkzeug app, killed on drop.
struct Werkzeug {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Werkzeug {
    fn start() -> Werkzeug {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backends/werkzeug_app.py");
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for the Werkzeug backend");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx.recv_timeout(Duration::from_secs(15)).unwrap_or_default();
        if ready.trim() != "ready" {
            let _ = child.kill();
            panic!(
                "the Werkzeug backend did not start (pip install werkzeug; .ci/setup does): {ready:?}"
            );
        }
        Werkzeug {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests Werkzeug received, as (method it dispatched on, raw method, path).
    fn seen(&self) -> Vec<(String, String, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                (s("method"), s("raw_method"), s("path"))
            })
            .collect()
    }
}

impl Drop for Werkzeug {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn raw_request(port: u16, method: &str, target: &str, token: Option<&str>) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: api.example.com\r\n{auth}Connection: close\r\n\r\n"
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = send_raw(addr, req.as_bytes());
    format!("{} {}", r.status, String::from_utf8_lossy(&r.body))
}

#[test]
fn werkzeug_runs_the_delete_handler_for_a_lowercase_method_when_reached_directly() {
    // The precondition of the bypass, shown on the real backend.
    let w = Werkzeug::start();
    let answer = raw_request(w.port, "delete", "/api/admin/users/7", None);
    assert_eq!(answer, "200 deleted user 7");
    assert_eq!(
        w.seen(),
        vec![(
            "DELETE".into(),
            "delete".into(),
            "/api/admin/users/7".into()
        )]
    );
}

#[test]
fn lowercase_delete_through_writ_never_reaches_werkzeug() {
    let w = Werkzeug::start();
    let keys = Keys::new();
    let writ = Writ::start(&Config::new(ACTIONS).render(), &w.url(), &keys);
    let basic = keys.token_with_scope("api:basic");
    let admin = keys.token_with_scope("admin");
    let port = writ.addr().port();
    let deadline = Instant::now() + Duration::from_secs(30);
    for method in ["delete", "Delete", "dELETE"] {
        assert!(Instant::now() < deadline);
        let answer = raw_request(port, method, "/api/admin/users/7", Some(&basic));
        assert!(answer.starts_with("405 "), "{method}: {answer}");
        assert!(answer.contains("method_not_allowed"), "{method}: {answer}");
    }
    assert!(w.seen().is_empty(), "Werkzeug saw {:?}", w.seen());
    // The real DELETE is decided by its own action: `api:basic` is not enough...
    let answer = raw_request(port, "DELETE", "/api/admin/users/7", Some(&basic));
    assert!(answer.starts_with("403 "), "{answer}");
    assert!(w.seen().is_empty(), "Werkzeug saw {:?}", w.seen());
    // ...and `admin` is.
    let answer = raw_request(port, "DELETE", "/api/admin/users/7", Some(&admin));
    assert_eq!(answer, "200 deleted user 7");
    // A `*` action still serves what it names, with the method as sent.
    let answer = raw_request(port, "GET", "/api/reports", Some(&basic));
    assert_eq!(answer, "200 ok");
    assert_eq!(
        w.seen(),
        vec![
            (
                "DELETE".into(),
                "DELETE".into(),
                "/api/admin/users/7".into()
            ),
            ("GET".into(), "GET".into(), "/api/reports".into()),
        ]
    );
}
