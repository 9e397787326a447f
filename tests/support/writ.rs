//! The real `writ run` process ([`Writ`]), the YAML [`Config`] template it is started from,
//! and [`Env`], the keys + backend + writ trio most suites start with.

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::backend::{Backend, BackendOptions};
use super::cli::writ;
use super::http1::{RawResponse, request, send_raw, try_request};
use super::keys::{AUDIENCE, ISSUER, Keys, LEEWAY_SECS};
use super::metrics::metric_value;
use super::util::temp_dir;
use super::wait::eventually;

/// How long to wait for writ to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback address with nothing listening on it (bound, then released).
pub fn closed_port_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

/// Reserves a free loopback port (bind, read, release).
pub fn free_port() -> u16 {
    closed_port_addr().port()
}

// ==========================================================================================
// === Config ===
// ==========================================================================================

/// A writ YAML config under construction: ordered top-level sections, placeholders left in.
///
/// Placeholders filled by [`Writ::start`]: `{{LISTEN}}`, `{{ADMIN}}`, `{{UPSTREAM}}`, `{{JWKS}}`,
/// `{{LOG}}`, `{{DIR}}` (the config's temp dir).
#[derive(Clone, Debug)]
pub struct Config {
    sections: Vec<(String, String)>,
}

/// The `issuers:` block for the default issuer with a given leeway and `require_typ`.
pub fn issuer_section(leeway: &str, require_typ: Option<&str>) -> String {
    let typ = require_typ
        .map(|t| format!("\n    require_typ: {t}"))
        .unwrap_or_default();
    format!(
        "\n  - issuer: \"{ISSUER}\"\n    audiences: [{AUDIENCE}]\n    algorithms: [ES256]\n    jwks_file: \"{{{{JWKS}}}}\"\n    leeway: {leeway}{typ}"
    )
}

impl Config {
    /// The default config (one ES256 issuer, decision log to a file) with these `actions`.
    ///
    /// `actions` is the block under `actions:`, each item indented by two spaces, e.g.
    /// `"  - name: x\n    methods: [GET]\n    path: /x\n    public: true\n"`.
    pub fn new(actions: &str) -> Config {
        let mut c = Config {
            sections: Vec::new(),
        };
        c = c
            .set("listen", "\"{{LISTEN}}\"")
            .set("admin", "\"{{ADMIN}}\"")
            .set(
                "upstream",
                "\n  url: \"{{UPSTREAM}}\"\n  connect_timeout: 2s\n  timeout: 10s",
            )
            .set(
                "issuers",
                &issuer_section(&format!("{LEEWAY_SECS}s"), Some("at+jwt")),
            )
            .set("decision_log", "\"{{LOG}}\"")
            .set("actions", &format!("\n{}", actions.trim_matches('\n')));
        c
    }

    /// Sets (replaces or appends) a top-level key. A value starting with `\n` is a block
    /// (already indented); anything else follows `key: ` on the same line.
    pub fn set(mut self, key: &str, value: &str) -> Config {
        if let Some(slot) = self.sections.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value.to_string();
        } else {
            self.sections.push((key.to_string(), value.to_string()));
        }
        self
    }

    /// Removes a top-level key.
    pub fn unset(mut self, key: &str) -> Config {
        self.sections.retain(|(k, _)| k != key);
        self
    }

    /// The YAML text (placeholders not yet filled).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.sections {
            if v.starts_with('\n') {
                let _ = writeln!(out, "{k}:{v}");
            } else {
                let _ = writeln!(out, "{k}: {v}");
            }
        }
        out
    }
}

// ==========================================================================================
// === Writ ===
// ==========================================================================================

/// A running `writ run` process.
pub struct Writ {
    child: Mutex<Child>,
    pid: u32,
    dir: TempDir,
    addr: SocketAddr,
    admin: SocketAddr,
    config_path: PathBuf,
    log_path: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

/// Fills a config template's placeholders (see [`Config`]).
fn expand(
    template: &str,
    addr: SocketAddr,
    admin: SocketAddr,
    upstream: &str,
    keys: &Keys,
    log_path: &Path,
    dir: &Path,
) -> String {
    template
        .replace("{{LISTEN}}", &addr.to_string())
        .replace("{{ADMIN}}", &admin.to_string())
        .replace("{{UPSTREAM}}", upstream)
        .replace("{{JWKS}}", &keys.jwks_path().display().to_string())
        .replace("{{LOG}}", &log_path.display().to_string())
        .replace("{{DIR}}", &dir.display().to_string())
}

/// Where [`Writ::start`] and [`Writ::spawn`] put the config: `DIR/writ.yaml`.
fn place_plain(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("writ.yaml");
    fs::write(&path, text).expect("write config");
    path
}

impl Writ {
    /// Writes `config` (a template, see [`Config`]) and starts writ in front of `upstream`, with
    /// `keys`' JWKS. Waits until `/readyz` answers 200; panics with writ's stderr otherwise.
    pub fn start(config: &str, upstream: &str, keys: &Keys) -> Writ {
        Self::start_placed(config, upstream, keys, &place_plain)
    }

    /// Starts writ without waiting for readiness.
    pub fn spawn(config: &str, upstream: &str, keys: &Keys) -> Writ {
        Self::spawn_placed(config, upstream, keys, &place_plain)
    }

    /// Like [`Writ::spawn`], but `place(dir, text)` lays the filled-in config out under the
    /// run's temp dir and returns the path writ is started with (e.g. a Kubernetes
    /// ConfigMap-style symlink).
    pub fn spawn_placed(
        config: &str,
        upstream: &str,
        keys: &Keys,
        place: &dyn Fn(&Path, &str) -> PathBuf,
    ) -> Writ {
        Self::spawn_placed_env(config, upstream, keys, place, &[])
    }

    /// [`Writ::start`] with extra environment variables for the process (secrets a
    /// config names by variable).
    pub fn start_with_env(config: &str, upstream: &str, keys: &Keys, env: &[(&str, &str)]) -> Writ {
        let writ = Self::spawn_placed_env(config, upstream, keys, &place_plain, env);
        if let Err(e) = writ.wait_ready(READY_TIMEOUT) {
            panic!("writ did not become ready:\n{e}\n--- config ---\n{config}");
        }
        writ
    }

    fn spawn_placed_env(
        config: &str,
        upstream: &str,
        keys: &Keys,
        place: &dyn Fn(&Path, &str) -> PathBuf,
        env: &[(&str, &str)],
    ) -> Writ {
        let dir = temp_dir("writ-run-");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log_path = dir.path().join("decisions.log");
        let text = expand(config, addr, admin, upstream, keys, &log_path, dir.path());
        let config_path = place(dir.path(), &text);
        let stdout_path = dir.path().join("stdout.txt");
        let stderr_path = dir.path().join("stderr.txt");
        let child = writ()
            .envs(env.iter().copied())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .current_dir(dir.path())
            .stdout(fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn writ binary");
        let pid = child.id();
        Writ {
            child: Mutex::new(child),
            pid,
            dir,
            addr,
            admin,
            config_path,
            log_path,
            stdout_path,
            stderr_path,
        }
    }

    /// [`Writ::spawn_placed`], then waits for `/readyz` (three tries when a reserved port was
    /// taken in between).
    pub fn start_placed(
        config: &str,
        upstream: &str,
        keys: &Keys,
        place: &dyn Fn(&Path, &str) -> PathBuf,
    ) -> Writ {
        let mut last_err = String::new();
        for _ in 0..3 {
            let writ = Self::spawn_placed(config, upstream, keys, place);
            match writ.wait_ready(READY_TIMEOUT) {
                Ok(()) => return writ,
                Err(e) => {
                    let retry = e.contains("in use") || e.contains("AddrInUse");
                    last_err = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("writ did not become ready:\n{last_err}\n--- config ---\n{config}");
    }

    /// Fills a config template's placeholders exactly as [`Writ::spawn`] did for this process
    /// (same listeners, decision log and dir), so a rewritten config changes only what the
    /// template changes.
    pub fn fill(&self, template: &str, upstream: &str, keys: &Keys) -> String {
        expand(
            template,
            self.addr,
            self.admin,
            upstream,
            keys,
            &self.log_path,
            self.dir.path(),
        )
    }

    /// Polls `/readyz` until 200.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(code) = self.exit_code_now() {
                return Err(format!(
                    "writ exited early ({code:?})\n--- stderr ---\n{}\n--- stdout ---\n{}",
                    self.stderr(),
                    self.stdout()
                ));
            }
            match try_request(self.admin, "GET", "/readyz", &[], b"") {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("/readyz answered {}", r.status),
                Err(e) => last = format!("/readyz: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready after {timeout:?} ({last})\n--- stderr ---\n{}\n--- stdout ---\n{}",
                    self.stderr(),
                    self.stdout()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn exit_code_now(&self) -> Option<Option<i32>> {
        let mut child = self.child.lock().ok()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.code()),
            _ => None,
        }
    }

    /// Has the process exited? Returns its exit code (None: killed by a signal) if so.
    pub fn try_exit_status(&self) -> Option<Option<i32>> {
        self.exit_code_now()
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.try_exit_status() {
                return Some(code);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Proxy listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Raw contents of the decision-log file.
    pub fn decision_log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Complete (newline-terminated) decision-log lines, parsed. Panics on a line that is not a
    /// JSON object: the log is one JSON object per line.
    pub fn decision_log_lines(&self) -> Vec<Value> {
        let text = self.decision_log_text();
        let Some(end) = text.rfind('\n') else {
            return Vec::new();
        };
        text[..end]
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("decision log line is not JSON ({e}): {l}"));
                assert!(v.is_object(), "decision log line is not an object: {l}");
                v
            })
            .collect()
    }

    /// Waits until at least `n` decision-log lines exist, and returns them all.
    pub fn wait_log_lines(&self, n: usize) -> Vec<Value> {
        eventually(|| {
            let lines = self.decision_log_lines();
            (lines.len() >= n).then_some(lines)
        })
        .unwrap_or_else(|| {
            panic!(
                "expected at least {n} decision-log lines, got:\n{}\n--- stderr ---\n{}",
                self.decision_log_text(),
                self.stderr()
            )
        })
    }

    /// Waits for the decision-log line with this `request_id`.
    pub fn log_line_for(&self, request_id: &str) -> Value {
        eventually(|| {
            self.decision_log_lines()
                .into_iter()
                .find(|l| l.get("request_id").and_then(Value::as_str) == Some(request_id))
        })
        .unwrap_or_else(|| {
            panic!(
                "no decision-log line with request_id {request_id:?}; log:\n{}",
                self.decision_log_text()
            )
        })
    }

    /// Scrapes `GET /metrics` on the admin listener.
    pub fn metrics(&self) -> String {
        let r = request(self.admin, "GET", "/metrics", &[], b"");
        assert_eq!(r.status, 200, "/metrics status");
        r.body_text()
    }

    /// Waits until `metric_value(name, labels) == expected`; panics with the scrape otherwise.
    #[track_caller]
    pub fn assert_metric(&self, name: &str, labels: &[(&str, &str)], expected: f64) {
        let mut last = String::new();
        let ok = eventually(|| {
            last = self.metrics();
            (metric_value(&last, name, labels) == Some(expected)).then_some(())
        });
        assert!(
            ok.is_some(),
            "expected {name}{labels:?} == {expected}, got {:?}\n--- scrape ---\n{last}",
            metric_value(&last, name, labels)
        );
    }

    /// Waits until `metric_value(name, labels) >= min`; returns the value.
    #[track_caller]
    pub fn assert_metric_at_least(&self, name: &str, labels: &[(&str, &str)], min: f64) -> f64 {
        let mut last = String::new();
        let v = eventually(|| {
            last = self.metrics();
            metric_value(&last, name, labels).filter(|v| *v >= min)
        });
        v.unwrap_or_else(|| {
            panic!(
                "expected {name}{labels:?} >= {min}, got {:?}\n--- scrape ---\n{last}",
                metric_value(&last, name, labels)
            )
        })
    }

    /// Sends a signal by name (`TERM`, `HUP`) with the `kill` utility.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// A request to the proxy listener.
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        request(self.addr, method, target, headers, body)
    }

    /// `GET target` with an optional bearer token.
    pub fn get(&self, target: &str, token: Option<&str>) -> RawResponse {
        self.send_with_token("GET", target, token, &[])
    }

    /// `METHOD target` with an optional bearer token and extra headers.
    pub fn send_with_token(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> RawResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        headers.extend_from_slice(extra);
        let body: &[u8] = b"";
        self.send(method, target, &headers, body)
    }

    /// Current value of a metric (`0` when the series does not exist yet: series are not
    /// pre-created).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels).unwrap_or(0.0)
    }
}

impl Drop for Writ {
    fn drop(&mut self) {
        let child = match self.child.get_mut() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = child.kill();
        let _ = child.wait();
    }
}

// ==========================================================================================
// === Env: the common trio ===
// ==========================================================================================

/// Keys + backend + writ, started from a [`Config`]. Field order = drop order: writ first.
pub struct Env {
    pub writ: Writ,
    pub backend: Backend,
    pub keys: Keys,
}

impl Env {
    /// Default config with these actions.
    pub fn start(actions: &str) -> Env {
        Self::with_config(&Config::new(actions))
    }

    /// Any config (template).
    pub fn with_config(config: &Config) -> Env {
        Self::with_config_and_backend(config, BackendOptions::default())
    }

    /// Any config and backend behaviour.
    pub fn with_config_and_backend(config: &Config, opts: BackendOptions) -> Env {
        let keys = Keys::new();
        let backend = Backend::start_with(opts);
        let writ = Writ::start(&config.render(), &backend.url(), &keys);
        Env {
            writ,
            backend,
            keys,
        }
    }

    /// A valid token (default claims) with this scope.
    pub fn token(&self, scope: &str) -> String {
        self.keys.token_with_scope(scope)
    }

    pub fn get(&self, target: &str, token: Option<&str>) -> RawResponse {
        self.writ.get(target, token)
    }

    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        self.writ.send(method, target, headers, body)
    }

    pub fn send_with_token(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> RawResponse {
        self.writ.send_with_token(method, target, token, extra)
    }

    /// Raw bytes to the proxy listener.
    pub fn send_raw(&self, bytes: &[u8]) -> RawResponse {
        send_raw(self.writ.addr(), bytes)
    }
}
