//! The compiled, immutable policy snapshot that every request is decided under.
//! Built once per (re)load by `config::load`; the proxy pins one `Arc<Policy>`
//! per request, so a reload never changes a decision half-way.

pub mod router;
pub mod template;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderName;
use jsonwebtoken::Algorithm;

use crate::auth::keys::KeySet;
use crate::config::raw::{DelegationMode, Mode};
use crate::pipeline::normalize::{Choice, PathPolicy};
use router::{Methods, Router};
use template::Template;

pub use crate::config::raw::ClaimScalar;

#[derive(Debug)]
pub struct Policy {
    /// Bumped by every successful (re)load.
    pub generation: u64,
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub upstream: Upstream,
    pub issuers: Vec<Issuer>,
    pub requests: Requests,
    pub identity: IdentityHeaders,
    pub forward_token: bool,
    pub decision_log: LogTarget,
    pub defaults: Defaults,
    pub actions: Vec<Action>,
    pub router: Router,
    /// Every method some action names (for the "unknown method" 405).
    pub named_methods: HashSet<String>,
    /// Whether some action lists `"*"` (then every method is named).
    pub any_method: bool,
    pub workers: Option<usize>,
    pub shutdown_grace: Duration,
    pub limits: Limits,
    /// Files whose change triggers a reload (the config and key files).
    pub watched_files: Vec<PathBuf>,
}

impl Policy {
    pub fn action(&self, i: usize) -> &Action {
        &self.actions[i]
    }

    pub fn issuer_by_name(&self, iss: &str) -> Option<usize> {
        self.issuers.iter().position(|i| i.issuer == iss)
    }

    /// Whether every issuer has keys to verify with (`/readyz`).
    pub fn keys_ready(&self) -> bool {
        self.issuers.iter().all(|i| !i.keys.load().is_empty())
    }
}

/// Connection and resource limits (`limits:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub max_h2_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_h2_streams: 256,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme_https: bool,
    /// `host:port` to connect to.
    pub authority: String,
    /// Path prefix of the upstream URL, without trailing `/` ("" for none).
    pub base_path: String,
    pub ca: Option<PathBuf>,
    pub server_name: Option<String>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum KeySource {
    File(PathBuf),
    Url(String),
    Pem,
    Secret,
}

#[derive(Debug)]
pub struct Issuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub source: KeySource,
    /// Swapped by JWKS refresh without a config reload.
    pub keys: Arc<ArcSwap<KeySet>>,
    /// For `jwks_url`: asks the fetcher for an early refresh (unknown `kid`).
    pub kick: Option<Arc<tokio::sync::Notify>>,
    pub jwks_refresh: Duration,
    /// Trust for an https `jwks_url` (system roots when `None`).
    pub jwks_ca: Option<PathBuf>,
    pub leeway: Duration,
    pub require_typ: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Requests {
    pub path: PathPolicy,
    pub case_sensitive: bool,
    pub method_override: Choice,
    pub url_override: Choice,
    pub max_token_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub subject: HeaderName,
    pub actor: HeaderName,
    pub action: HeaderName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
    Off,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Defaults {
    pub unmatched_allow: bool,
    pub mode: Mode,
    pub delegation: Delegation,
}

#[derive(Debug, Clone)]
pub struct Delegation {
    pub mode: DelegationMode,
    /// Anchored globs on the current actor; `None` = any actor.
    pub actors: Option<Vec<String>>,
    pub max_depth: Option<usize>,
    pub max_age: Option<Duration>,
}

impl Delegation {
    pub fn forbid() -> Self {
        Delegation {
            mode: DelegationMode::Forbid,
            actors: None,
            max_depth: None,
            max_age: None,
        }
    }
}

/// What a claim must equal.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimRule {
    Equals(ClaimScalar),
    /// Bound to a path parameter.
    Param(String),
}

#[derive(Debug, Clone, Default)]
pub struct Require {
    pub scopes: Vec<String>,
    pub any_scope: Vec<String>,
    pub claims: Vec<(String, ClaimRule)>,
    pub auth_max_age: Option<Duration>,
    pub acr: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    /// Where it is defined (line, column) in the config file.
    pub location: (u64, u64),
    pub methods: Methods,
    pub template: Template,
    pub host: Option<String>,
    pub execution: bool,
    pub mode: Option<Mode>,
    pub public: bool,
    pub require: Require,
    /// `None`: `defaults.delegation` applies.
    pub delegation: Option<Delegation>,
}

impl Action {
    /// Whether `iat` must be present: `max_age` applies (to a delegated token)
    /// or `auth_max_age` does (SPEC settled questions).
    pub fn needs_iat(&self, defaults: &Defaults, delegated: bool) -> bool {
        let d = self.delegation.as_ref().unwrap_or(&defaults.delegation);
        (delegated && d.max_age.is_some()) || self.require.auth_max_age.is_some()
    }
}

/// Parses a `Host` / `:authority` strictly (SPEC: classify what the backend
/// executes, or refuse): a DNS name (letters, digits, `-`, `_`, non-empty labels,
/// at most one trailing dot), an IPv4 address or a bracketed IPv6 literal,
/// optionally `:` and 1-5 digits. Returns the canonical host (lowercase, no
/// trailing dot) and the port text; `None` for anything a backend could read
/// differently (`host:abc`, `host:1:2`, `user@host`, `host..`).
pub fn parse_host(h: &str) -> Option<(String, Option<&str>)> {
    let (name, port) = if let Some(rest) = h.strip_prefix('[') {
        let end = rest.find(']')?;
        let lit = &rest[..end];
        if lit.is_empty()
            || !lit
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        (&h[..end + 2], port)
    } else {
        match h.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (h, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    if !name.starts_with('[') {
        let bare = name.strip_suffix('.').unwrap_or(name);
        if bare.is_empty()
            || bare.split('.').any(|l| {
                l.is_empty()
                    || !l
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
        {
            return None;
        }
        return Some((bare.to_ascii_lowercase(), port));
    }
    Some((name.to_ascii_lowercase(), port))
}

/// Normalizes a host for matching: lowercase, no port, no trailing dot.
pub fn normalize_host(h: &str) -> String {
    let h = h.trim();
    let no_port = if let Some(rest) = h.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => &h[..end + 2],
            None => h,
        }
    } else {
        match h.rfind(':') {
            Some(i) if h[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &h[..i],
            _ => h,
        }
    };
    no_port.trim_end_matches('.').to_ascii_lowercase()
}

/// Anchored glob: `*` matches any run of characters, everything else literally.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let p = pattern.as_bytes();
    let t = s.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_host_syntax() {
        assert_eq!(
            parse_host("API.example.com."),
            Some(("api.example.com".into(), None))
        );
        assert_eq!(parse_host("a.b:8443"), Some(("a.b".into(), Some("8443"))));
        assert_eq!(parse_host("[::1]:80"), Some(("[::1]".into(), Some("80"))));
        assert_eq!(parse_host("10.0.0.1"), Some(("10.0.0.1".into(), None)));
        for bad in [
            "a.b:abc",
            "a.b:443:443",
            "u@a.b",
            "a.b..",
            "a..b",
            "",
            ":80",
            "a.b:",
            "[::1",
            "[zz]",
            "a b",
            "a.b:123456",
        ] {
            assert_eq!(parse_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(normalize_host("API.Example.com."), "api.example.com");
        assert_eq!(normalize_host("api.example.com:8443"), "api.example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
    }

    #[test]
    fn globs_are_anchored() {
        assert!(glob_match("agent:ci-*", "agent:ci-7"));
        assert!(!glob_match("agent:ci-*", "xagent:ci-7"));
        assert!(!glob_match("svc:copilot", "svc:copilot2"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b", "aXXbY"));
    }
}
