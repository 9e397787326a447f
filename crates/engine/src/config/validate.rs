//! raw -> [`Policy`]: every semantic check, each problem collected with its
//! position so that one `writ check` run shows them all.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderName;
use jsonwebtoken::Algorithm;

use super::raw::{self, RawConfig, RejectKeep, RejectStrip, Sp, TrailingSlash};
use super::settings::{ExtAuthz, HealthCheck, Limits, LogTarget, Settings, TlsFiles, Upstream};
use super::{Config, ConfigError, ConfigErrors, duration};
use crate::authenticate::token::parse_alg;
use crate::clock::Clock;
use crate::keys::{KeyFamily, KeySet};
use crate::policy::router::{Methods, Router};
use crate::policy::template::{Segment, Template};
use crate::policy::{
    Action, Defaults, Delegation, IdentityHeaders, Introspection, Issuer, KeySource, Policy,
    Requests, Require,
};
use crate::revocation::Revocations;
use crate::signals::{Poll, Transmitter};
use crate::vocab::{
    Choice, DelegationMode, Mode, PathPolicy, STANDARD_METHODS, SegmentPolicy, normalize_host,
};

mod bodies;

struct Ctx<'a> {
    file: &'a str,
    base: &'a Path,
    errors: Vec<ConfigError>,
    /// Errors located in another file (the revocation file), reported after ours.
    foreign: Vec<ConfigError>,
    watched: Vec<PathBuf>,
}

impl Ctx<'_> {
    fn err_at(&mut self, line: u64, col: u64, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: line.max(1),
            col: col.max(1),
            message: message.into(),
        });
    }

    fn err<T>(&mut self, at: &Sp<T>, message: impl Into<String>) {
        self.err_at(at.line(), at.col(), message);
    }

    fn duration(&mut self, v: &Option<Sp<String>>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match duration::parse(s.get()) {
                Ok(d) => d,
                Err(e) => {
                    self.err(s, e.to_string());
                    default
                }
            },
        }
    }

    fn opt_duration(&mut self, v: &Option<Sp<String>>) -> Option<Duration> {
        v.as_ref().map(|s| match duration::parse(s.get()) {
            Ok(d) => d,
            Err(e) => {
                self.err(s, e.to_string());
                Duration::ZERO
            }
        })
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn addr(&mut self, v: &Sp<String>) -> SocketAddr {
        match v.get().parse() {
            Ok(a) => a,
            Err(_) => {
                self.err(v, format!("`{}` is not an IP:port address", v.get()));
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
        }
    }

    fn header(&mut self, v: &Option<Sp<String>>, default: &'static str) -> HeaderName {
        match v {
            None => HeaderName::from_static(default),
            Some(s) => match HeaderName::from_bytes(s.get().to_ascii_lowercase().as_bytes()) {
                Ok(h) => h,
                Err(_) => {
                    self.err(s, format!("`{}` is not a valid header name", s.get()));
                    HeaderName::from_static(default)
                }
            },
        }
    }
}

pub(super) fn compile(
    raw: RawConfig,
    file: &str,
    base: &Path,
    source: PathBuf,
) -> Result<Config, ConfigErrors> {
    let mut cx = Ctx {
        file,
        base,
        errors: Vec::new(),
        foreign: Vec::new(),
        watched: vec![source.clone()],
    };
    let listen = match &raw.listen {
        Some(l) => cx.addr(l),
        None => {
            cx.err_at(1, 1, "missing required key `listen`");
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    };
    let admin = match &raw.admin {
        Some(a) => cx.addr(a),
        None => SocketAddr::from(([127, 0, 0, 1], 9901)),
    };
    let tls = raw.tls.as_ref().map(|t| {
        let cert = cx.path(t.cert.get());
        let key = cx.path(t.key.get());
        for (p, at) in [(&cert, &t.cert), (&key, &t.key)] {
            if let Err(e) = std::fs::metadata(p) {
                cx.err(at, format!("cannot read `{}`: {e}", p.display()));
            }
        }
        cx.watched.push(cert.clone());
        cx.watched.push(key.clone());
        TlsFiles { cert, key }
    });
    let upstreams = upstreams(&mut cx, &raw);
    let issuers: Vec<Issuer> = raw.issuers.iter().map(|i| issuer(&mut cx, i)).collect();
    let mut seen_iss: HashSet<&str> = HashSet::new();
    for i in &raw.issuers {
        if !seen_iss.insert(i.issuer.get().as_str()) {
            cx.err(
                &i.issuer,
                format!("issuer `{}` is configured twice", i.issuer.get()),
            );
        }
    }

    let r = &raw.requests;
    let requests = Requests {
        path: PathPolicy {
            segment: SegmentPolicy {
                encoded_slash: keep(r.encoded_slash),
                semicolon: keep(r.semicolon),
            },
            strict_trailing_slash: r.trailing_slash == Some(TrailingSlash::Strict),
        },
        case_sensitive: r.case_sensitive.unwrap_or(true),
        method_override: strip(r.method_override),
        url_override: strip(r.url_override),
        max_token_bytes: match &r.max_token_bytes {
            Some(v) if *v.get() < 64 => {
                cx.err(v, "max_token_bytes must be at least 64");
                8192
            }
            Some(v) => *v.get(),
            None => 8192,
        },
        max_json_body: bodies::max_json_body(&mut cx, &r.max_json_body),
    };

    let ih = &raw.identity_headers;
    let identity = IdentityHeaders {
        subject: cx.header(&ih.subject, "x-writ-subject"),
        actor: cx.header(&ih.actor, "x-writ-actor"),
        action: cx.header(&ih.action, "x-writ-action"),
    };

    let decision_log = match raw.decision_log.as_ref().map(|s| s.get().as_str()) {
        None | Some("stdout") => LogTarget::Stdout,
        Some("stderr") => LogTarget::Stderr,
        Some("off") => LogTarget::Off,
        Some("") => {
            if let Some(s) = &raw.decision_log {
                cx.err(s, "decision_log must be stdout, stderr, off or a file path");
            }
            LogTarget::Off
        }
        Some(p) => LogTarget::File(cx.path(p)),
    };

    let defaults = Defaults {
        unmatched_allow: raw
            .defaults
            .unmatched
            .as_ref()
            .is_some_and(|u| *u.get() == raw::Unmatched::Allow),
        mode: raw
            .defaults
            .mode
            .as_ref()
            .map_or(Mode::Enforce, |m| Mode::from(*m.get())),
        delegation: match &raw.defaults.delegation {
            Some(d) => delegation(&mut cx, d),
            None => Delegation::forbid(),
        },
        upstream: default_upstream(&mut cx, &raw, &upstreams),
    };

    let workers = raw.workers.as_ref().map(|w| {
        if *w.get() == 0 {
            cx.err(w, "workers must be at least 1");
        }
        (*w.get()).max(1)
    });
    let shutdown_grace = cx.duration(&raw.shutdown_grace, Duration::from_secs(10));
    let limits = limits(&mut cx, &raw.limits);
    let ext_authz = raw.ext_authz.as_ref().map(|e| ext_authz(&mut cx, e));

    let mut router = Router::new(requests.case_sensitive);
    let mut actions: Vec<Action> = Vec::new();
    let mut names: HashMap<String, (u64, u64)> = HashMap::new();
    let mut named_methods = HashSet::new();
    let mut endpoints = bodies::Endpoints::default();
    for a in &raw.actions {
        let Some(mut action) = action(&mut cx, a, &requests, &upstreams, defaults.upstream) else {
            continue;
        };
        if let Some((l, c)) = names.get(&action.name) {
            cx.err(
                &a.name,
                format!(
                    "action name `{}` is already used at {file}:{l}:{c}",
                    action.name
                ),
            );
            continue;
        }
        names.insert(action.name.clone(), action.location);
        if !action.public && issuers.is_empty() {
            cx.err(
                &a.name,
                format!(
                    "action `{}` needs a token but no issuer is configured",
                    action.name
                ),
            );
        }
        if let Methods::List(l) = &action.methods {
            named_methods.extend(l.iter().cloned());
        }
        let idx = actions.len();
        match endpoints.join(&mut cx, a, &mut action, idx, &actions) {
            Ok(Some(_)) => {
                actions.push(action);
                continue;
            }
            Ok(None) => {}
            Err(()) => continue,
        }
        if let Err(c) = router.insert(
            idx,
            &action.template,
            action.host.clone(),
            action.methods.clone(),
        ) {
            let other = &actions[c.existing];
            cx.err(
                &a.path,
                format!(
                    "action `{}` conflicts with action `{}` at {file}:{}:{}: same method ({}), host and path shape",
                    action.name, other.name, other.location.0, other.location.1, c.method
                ),
            );
            continue;
        }
        endpoints.open(&mut action, idx);
        actions.push(action);
    }
    let protected_resource = raw
        .protected_resource
        .as_ref()
        .map(|p| bodies::protected_resource(&mut cx, p, &actions));

    let (revocation, revocation_redis, revocation_file) =
        revocation(&mut cx, raw.revocation.as_ref());
    let signals: Vec<Transmitter> = raw.signals.iter().map(|s| signal(&mut cx, s)).collect();
    if let Some(first) = raw.signals.first()
        && revocation_redis.is_none()
        && revocation_file.is_none()
    {
        cx.err(
            &first.issuer,
            "`signals` need a revocation store to write to: set `revocation.redis` or `revocation.file`",
        );
    }
    if !issuers.iter().any(|i| i.introspection.is_some()) {
        for a in &raw.actions {
            if let Some(at) = a.require.as_ref().and_then(|r| r.introspect.as_ref())
                && *at.get()
            {
                cx.err(
                    at,
                    format!(
                        "action `{}` requires introspection, but no issuer has `introspection`",
                        a.name.get()
                    ),
                );
            }
        }
    }
    for (line, col, message) in super::lint::unknown_codes(&raw) {
        cx.err_at(line, col, message);
    }
    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|e| (e.line, e.col));
        cx.errors.append(&mut cx.foreign);
        return Err(ConfigErrors(cx.errors));
    }
    let any_method = actions.iter().any(|a| matches!(a.methods, Methods::Any));
    let mut bound_claims: Vec<String> = actions
        .iter()
        .flat_map(|a| a.require.claims.iter().map(|(name, _)| name.clone()))
        .collect();
    bound_claims.sort();
    bound_claims.dedup();
    let policy = Policy {
        any_method,
        generation: 0,
        source,
        issuers,
        requests,
        identity,
        forward_token: raw.forward_token.as_ref().is_none_or(|f| *f.get()),
        defaults,
        actions,
        router,
        named_methods,
        bound_claims: bound_claims.into(),
        revocation,
        mcp_groups: endpoints.groups,
        protected_resource,
    };
    let findings = super::lint::lint(&raw, &policy, file);
    Ok(Config {
        policy,
        findings,
        signals,
        settings: Settings {
            listen,
            admin,
            tls,
            upstreams,
            decision_log,
            workers,
            shutdown_grace,
            limits,
            revocation_redis,
            revocation_file,
            ext_authz,
        },
        watched_files: cx.watched,
        digest: String::new(),
    })
}

/// The revocation file, read now (its errors become this load's errors, in that
/// file), and the Redis URL, checked for shape; `writ run` connects to it.
fn revocation(
    cx: &mut Ctx<'_>,
    r: Option<&raw::RawRevocation>,
) -> (Revocations, Option<String>, Option<PathBuf>) {
    let mut out = Revocations::default();
    let Some(r) = r else {
        return (out, None, None);
    };
    let mut file = None;
    if let Some(f) = &r.file {
        let path = cx.path(f.get());
        match super::revoked::load(&path, Clock::System.now()) {
            Ok(set) => out.file = Arc::new(set),
            Err(errs) if errs.0.iter().all(|e| e.line == 0) => {
                let why = errs
                    .0
                    .first()
                    .map(|e| e.message.clone())
                    .unwrap_or_default();
                cx.err(
                    f,
                    format!(
                        "{why} (`{}`; an empty set is the line `revoked: []`)",
                        path.display()
                    ),
                );
            }
            Err(errs) => {
                // Reported in the revocation file itself, with its positions.
                cx.foreign.extend(errs.0);
                cx.err(f, format!("`{}` has invalid entries", path.display()));
            }
        }
        cx.watched.push(path.clone());
        file = Some(path);
    }
    let redis = r.redis.as_ref().map(|u| {
        let url = u.get();
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://")
            || url.starts_with("unix://"))
        {
            cx.err(
                u,
                "revocation.redis must be a redis://, rediss:// or unix:// URL",
            );
        }
        url.clone()
    });
    (out, redis, file)
}

/// One `signals:` transmitter: its keys now (a file) or later (a URL `writ`
/// fetches), and its polling.
fn signal(cx: &mut Ctx<'_>, s: &raw::RawSignal) -> Transmitter {
    for v in [&s.issuer, &s.audience] {
        if v.get().is_empty() {
            cx.err(v, "must not be empty");
        }
    }
    let mut keys = KeySet::default();
    let mut jwks_url = None;
    match (&s.jwks_file, &s.jwks_url) {
        (Some(f), None) => {
            let path = cx.path(f.get());
            match std::fs::read(&path) {
                Ok(bytes) => match KeySet::from_jwks(&bytes) {
                    Ok(k) => keys = k,
                    Err(e) => cx.err(f, format!("`{}`: {e}", path.display())),
                },
                Err(e) => cx.err(f, format!("cannot read `{}`: {e}", path.display())),
            }
            cx.watched.push(path);
        }
        (None, Some(u)) => {
            if !(u.get().starts_with("https://") || u.get().starts_with("http://")) {
                cx.err(u, "jwks_url must be an http(s) URL");
            }
            jwks_url = Some(u.get().clone());
        }
        _ => cx.err(
            &s.issuer,
            "a transmitter needs exactly one of jwks_file, jwks_url",
        ),
    }
    let poll = s.poll.as_ref().map(|p| {
        if !(p.url.get().starts_with("https://") || p.url.get().starts_with("http://")) {
            cx.err(&p.url, "poll.url must be an http(s) URL");
        }
        Poll {
            url: p.url.get().clone(),
            every: cx.duration(&p.every, Duration::from_secs(5)),
            token_env: p.token_env.as_ref().map(|t| t.get().clone()),
        }
    });
    Transmitter {
        issuer: s.issuer.get().clone(),
        audience: s.audience.get().clone(),
        keys: Arc::new(ArcSwap::from_pointee(keys)),
        jwks_url,
        poll,
    }
}

/// `ext_authz:`: at least one listener; trusted peers as CIDRs (a bare IP is
/// one host), loopback only when the list is absent.
fn ext_authz(cx: &mut Ctx<'_>, e: &Sp<raw::RawExtAuthz>) -> ExtAuthz {
    let raw = e.get();
    if raw.grpc.is_none() && raw.http.is_none() {
        cx.err(e, "ext_authz needs `grpc` or `http` (a listener address)");
    }
    let grpc = raw.grpc.as_ref().map(|a| cx.addr(a));
    let http = raw.http.as_ref().map(|a| cx.addr(a));
    let trusted_proxies = match &raw.trusted_proxies {
        None => vec![
            ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1])),
            ipnet::IpNet::from(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
        ],
        Some(list) => list
            .iter()
            .filter_map(|c| {
                let text = c.get().trim();
                let net = text
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
                match net {
                    Ok(n) => Some(n.trunc()),
                    Err(_) => {
                        cx.err(
                            c,
                            format!("`{text}` is not a CIDR (`10.0.0.0/8`) or an IP address"),
                        );
                        None
                    }
                }
            })
            .collect(),
    };
    ExtAuthz {
        grpc,
        http,
        trusted_proxies,
    }
}

fn limits(cx: &mut Ctx<'_>, l: &raw::RawLimits) -> Limits {
    let d = Limits::default();
    let positive = |cx: &mut Ctx<'_>, v: &Option<Sp<usize>>, name: &str, default: usize| match v {
        Some(x) if *x.get() == 0 => {
            cx.err(x, format!("{name} must be at least 1"));
            default
        }
        Some(x) => *x.get(),
        None => default,
    };
    let mut nonzero = |v: &Option<Sp<String>>, name: &str, default: Duration| {
        let d = cx.duration(v, default);
        match v {
            Some(x) if d.is_zero() => {
                cx.err(x, format!("{name} must be more than 0"));
                default
            }
            _ => d,
        }
    };
    let header_read_timeout = nonzero(
        &l.header_read_timeout,
        "header_read_timeout",
        d.header_read_timeout,
    );
    let send_timeout = nonzero(&l.send_timeout, "send_timeout", d.send_timeout);
    Limits {
        max_connections: positive(cx, &l.max_connections, "max_connections", d.max_connections),
        header_read_timeout,
        max_h2_streams: match &l.max_h2_streams {
            Some(x) if *x.get() == 0 => {
                cx.err(x, "max_h2_streams must be at least 1");
                d.max_h2_streams
            }
            Some(x) => *x.get(),
            None => d.max_h2_streams,
        },
        send_timeout,
    }
}

fn keep(v: Option<RejectKeep>) -> Choice {
    match v {
        Some(RejectKeep::Keep) => Choice::Keep,
        _ => Choice::Reject,
    }
}

fn strip(v: Option<RejectStrip>) -> Choice {
    match v {
        Some(RejectStrip::Strip) => Choice::Keep,
        _ => Choice::Reject,
    }
}

/// `upstream:` (one backend, named `default`) or `upstreams:` (several by name,
/// in name order); exactly one of the two.
fn upstreams(cx: &mut Ctx<'_>, raw: &RawConfig) -> Vec<Upstream> {
    match (&raw.upstream, &raw.upstreams) {
        (Some(_), Some(many)) => {
            cx.err(
                many,
                "`upstream` and `upstreams` are exclusive: name the one backend under `upstreams` too, or drop `upstreams`",
            );
            vec![missing_upstream()]
        }
        (Some(one), None) => vec![upstream(cx, Upstream::DEFAULT_NAME, one)],
        (None, Some(many)) if many.get().is_empty() => {
            cx.err(many, "`upstreams` must name at least one backend");
            vec![missing_upstream()]
        }
        (None, Some(many)) => many
            .get()
            .iter()
            .map(|(name, u)| {
                if name.is_empty()
                    || name.len() > 64
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    cx.err(
                        u,
                        format!(
                            "upstream name `{name}` must be 1 to 64 letters, digits, `-`, `_` or `.`"
                        ),
                    );
                }
                upstream(cx, name, u)
            })
            .collect(),
        (None, None) => {
            cx.err_at(1, 1, "missing required key `upstream` (or `upstreams`)");
            vec![missing_upstream()]
        }
    }
}

/// The index of the upstream `at` names; an unknown name is an error at `at`.
fn upstream_named(cx: &mut Ctx<'_>, upstreams: &[Upstream], at: &Sp<String>) -> Option<usize> {
    let found = upstreams.iter().position(|u| u.name == *at.get());
    if found.is_none() {
        let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
        cx.err(
            at,
            format!(
                "unknown upstream `{}` (known: {})",
                at.get(),
                known.join(", ")
            ),
        );
    }
    found
}

/// `defaults.upstream`: required when `upstreams` names more than one.
fn default_upstream(cx: &mut Ctx<'_>, raw: &RawConfig, upstreams: &[Upstream]) -> usize {
    match (&raw.defaults.upstream, &raw.upstreams) {
        (Some(at), _) => upstream_named(cx, upstreams, at).unwrap_or(0),
        (None, Some(many)) if many.get().len() > 1 => {
            cx.err(
                many,
                "`defaults.upstream` is required when `upstreams` names more than one backend",
            );
            0
        }
        (None, _) => 0,
    }
}

fn missing_upstream() -> Upstream {
    Upstream {
        name: Upstream::DEFAULT_NAME.to_string(),
        health_check: None,
        scheme_https: false,
        authority: String::new(),
        base_path: String::new(),
        ca: None,
        server_name: None,
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(30),
    }
}

fn upstream(cx: &mut Ctx<'_>, name: &str, at: &Sp<raw::RawUpstream>) -> Upstream {
    let u = at.get();
    let Some(url_sp) = &u.url else {
        cx.err(at, "missing required key `url` in `upstream`");
        return missing_upstream();
    };
    let url = url_sp.get();
    let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        cx.err(
            url_sp,
            format!("upstream url `{url}` must start with http:// or https://"),
        );
        (false, "")
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !rest.is_empty() && (authority.is_empty() || authority.contains('@')) {
        cx.err(url_sp, format!("upstream url `{url}` has no usable host"));
    }
    if path.contains('?') || path.contains('#') {
        cx.err(url_sp, "upstream url must not have a query or fragment");
    }
    let authority = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:{}", if https { 443 } else { 80 })
    };
    let ca = u.ca.as_ref().map(|c| {
        let p = cx.path(c.get());
        if let Err(e) = std::fs::metadata(&p) {
            cx.err(c, format!("cannot read CA file `{}`: {e}", p.display()));
        }
        if !https {
            cx.err(c, "`ca` only applies to an https upstream");
        }
        p
    });
    let health_check = u.health_check.as_ref().map(|h| {
        let hc = h.get();
        let path = hc.path.get();
        if !path.starts_with('/') || path.contains(['?', '#']) || path.contains(char::is_whitespace)
        {
            cx.err(
                &hc.path,
                format!(
                    "health_check path `{path}` must be an absolute path without query or fragment"
                ),
            );
        }
        let every = cx.duration(&hc.every, Duration::from_secs(10));
        if every < Duration::from_secs(1)
            && let Some(e) = &hc.every
        {
            cx.err(e, "health_check every must be at least 1s");
        }
        HealthCheck {
            path: path.clone(),
            every: every.max(Duration::from_secs(1)),
        }
    });
    Upstream {
        name: name.to_string(),
        health_check,
        scheme_https: https,
        authority,
        base_path: path.trim_end_matches('/').to_string(),
        ca,
        server_name: u.server_name.as_ref().map(|s| s.get().clone()),
        connect_timeout: cx.duration(&u.connect_timeout, Duration::from_secs(2)),
        timeout: cx.duration(&u.timeout, Duration::from_secs(30)),
    }
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn issuer(cx: &mut Ctx<'_>, i: &raw::RawIssuer) -> Issuer {
    let mut algorithms = Vec::new();
    for a in i.algorithms.get() {
        if a.get().eq_ignore_ascii_case("none") {
            cx.err(a, "algorithm `none` is never allowed");
            continue;
        }
        match parse_alg(a.get()) {
            Some(alg) => algorithms.push(alg),
            None => cx.err(a, format!("unknown algorithm `{}`", a.get())),
        }
    }
    if algorithms.is_empty() && cx.errors.iter().all(|e| e.line != i.algorithms.line()) {
        cx.err(&i.algorithms, "algorithms must list at least one algorithm");
    }
    let hmac = algorithms.iter().any(|a| is_hmac(*a));
    let asym = algorithms.iter().any(|a| !is_hmac(*a));
    if hmac && asym {
        cx.err(
            &i.algorithms,
            "HS* algorithms cannot be mixed with asymmetric ones (algorithm confusion)",
        );
    }
    if i.audiences.get().is_empty() {
        cx.err(&i.audiences, "audiences must list at least one audience");
    }
    let sources: Vec<(&str, &Sp<String>)> = [
        ("jwks_file", &i.jwks_file),
        ("jwks_url", &i.jwks_url),
        ("public_key_pem", &i.public_key_pem),
        ("hmac_secret_env", &i.hmac_secret_env),
    ]
    .into_iter()
    .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
    .collect();
    let mut keys = KeySet::default();
    let mut source = KeySource::Pem;
    match sources.as_slice() {
        [] => cx.err(
            &i.issuer,
            "issuer needs exactly one key source: jwks_file, jwks_url, public_key_pem or hmac_secret_env",
        ),
        [(kind, v)] => match *kind {
            "jwks_file" => {
                let p = cx.path(v.get());
                source = KeySource::File(p.clone());
                cx.watched.push(p.clone());
                match std::fs::read(&p) {
                    Ok(b) => match KeySet::from_jwks(&b) {
                        Ok(k) => keys = k,
                        Err(e) => cx.err(v, format!("`{}`: {e}", p.display())),
                    },
                    Err(e) => cx.err(v, format!("cannot read `{}`: {e}", p.display())),
                }
            }
            "jwks_url" => {
                let u = v.get();
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    cx.err(v, "jwks_url must be an http(s) URL");
                }
                source = KeySource::Url(u.clone());
            }
            "public_key_pem" => {
                let text = v.get();
                let bytes = if text.contains("-----BEGIN") {
                    Some(text.as_bytes().to_vec())
                } else {
                    let p = cx.path(text);
                    cx.watched.push(p.clone());
                    match std::fs::read(&p) {
                        Ok(b) => Some(b),
                        Err(e) => {
                            cx.err(v, format!("cannot read `{}`: {e}", p.display()));
                            None
                        }
                    }
                };
                if let Some(b) = bytes {
                    match KeySet::from_public_pem(&b) {
                        Ok(k) => keys = k,
                        Err(e) => cx.err(v, e.to_string()),
                    }
                }
            }
            _ => {
                source = KeySource::Secret;
                match std::env::var(v.get()) {
                    Ok(s) if s.len() >= 32 => keys = KeySet::from_secret(s.as_bytes()),
                    Ok(_) => cx.err(v, format!("secret in `{}` must be at least 32 bytes", v.get())),
                    Err(_) => cx.err(v, format!("environment variable `{}` is not set", v.get())),
                }
            }
        },
        [_, (n2, v2), ..] => cx.err(
            v2,
            format!("issuer has more than one key source (`{n2}` and another); use exactly one"),
        ),
    }
    // The key material must fit the allowlist, or no token could ever verify.
    if !keys.is_empty() {
        let fits = keys
            .families()
            .any(|f| algorithms.iter().any(|a| f.accepts(*a)));
        let secret = keys.families().any(|f| f == KeyFamily::Hmac);
        if secret && asym {
            cx.err(
                &i.algorithms,
                "an HMAC secret can only verify HS* algorithms",
            );
        } else if !fits && !algorithms.is_empty() {
            cx.err(
                &i.algorithms,
                "no configured key can verify any of these algorithms",
            );
        }
    }
    let leeway = cx.duration(&i.leeway, Duration::from_secs(30));
    let jwks_refresh = cx.duration(&i.jwks_refresh, Duration::from_secs(300));
    if let Some(r) = &i.jwks_refresh
        && i.jwks_url.is_none()
    {
        cx.err(r, "jwks_refresh only applies to jwks_url");
    }
    let jwks_ca = i.jwks_ca.as_ref().map(|c| {
        let p = cx.path(c.get());
        if let Err(e) = std::fs::metadata(&p) {
            cx.err(c, format!("cannot read CA file `{}`: {e}", p.display()));
        }
        if i.jwks_url.is_none() {
            cx.err(c, "jwks_ca only applies to jwks_url");
        }
        cx.watched.push(p.clone());
        p
    });
    Issuer {
        jwks_ca,
        issuer: i.issuer.get().clone(),
        audiences: i.audiences.get().clone(),
        algorithms,
        source,
        keys: Arc::new(ArcSwap::from_pointee(keys)),
        kick: None,
        jwks_refresh,
        leeway,
        require_typ: i.require_typ.as_ref().map(|t| t.get().clone()),
        introspection: i.introspection.as_ref().map(|x| {
            if !(x.url.get().starts_with("https://") || x.url.get().starts_with("http://")) {
                cx.err(&x.url, "introspection.url must be an http(s) URL");
            }
            if x.client_secret_env.get().is_empty() {
                cx.err(&x.client_secret_env, "must name an environment variable");
            }
            Introspection {
                url: x.url.get().clone(),
                client_id: x.client_id.get().clone(),
                client_secret_env: x.client_secret_env.get().clone(),
                cache: cx.duration(&x.cache, Duration::from_secs(30)),
                timeout: cx.duration(&x.timeout, Duration::from_secs(5)),
            }
        }),
    }
}

fn delegation(cx: &mut Ctx<'_>, d: &raw::RawDelegation) -> Delegation {
    let actors = d.actors.as_ref().map(|a| {
        for g in a {
            if g.get().is_empty() {
                cx.err(g, "an actor glob must not be empty");
            }
        }
        a.iter().map(|g| g.get().clone()).collect()
    });
    if let Some(m) = &d.max_depth
        && *m.get() == 0
    {
        cx.err(
            m,
            "max_depth must be at least 1 (a delegated token has a chain of 1 or more)",
        );
    }
    Delegation {
        mode: d.mode.map_or(DelegationMode::Forbid, DelegationMode::from),
        actors,
        max_depth: d.max_depth.as_ref().map(|m| *m.get()),
        max_age: cx.opt_duration(&d.max_age),
    }
}

fn action(
    cx: &mut Ctx<'_>,
    a: &raw::RawAction,
    requests: &Requests,
    upstreams: &[Upstream],
    default_upstream: usize,
) -> Option<Action> {
    let name = a.name.get().clone();
    let mut ok = true;
    let upstream = match &a.upstream {
        Some(at) => upstream_named(cx, upstreams, at).unwrap_or(default_upstream),
        None => default_upstream,
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        cx.err(
            &a.name,
            format!("action name `{name}` must be letters, digits, `-`, `_`, `.` or `:`"),
        );
        ok = false;
    }
    if name.starts_with('_') {
        cx.err(&a.name, "action names starting with `_` are reserved");
        ok = false;
    }
    let ms = a.methods.get();
    let methods = if ms.is_empty() {
        cx.err(
            &a.methods,
            "methods must list at least one method (or \"*\")",
        );
        ok = false;
        Methods::Any
    } else if ms.iter().any(|m| m.get() == "*") {
        if ms.len() > 1 {
            cx.err(
                &a.methods,
                "\"*\" already names every method; list it alone",
            );
        }
        Methods::Any
    } else {
        let mut list = Vec::new();
        for m in ms {
            let v = m.get();
            if v.is_empty()
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                cx.err(m, format!("`{v}` is not a valid HTTP method"));
                ok = false;
            } else if v.eq_ignore_ascii_case("CONNECT") || v.eq_ignore_ascii_case("TRACE") {
                cx.err(
                    m,
                    format!("{v} is always refused by writ and cannot be named"),
                );
                ok = false;
            } else if STANDARD_METHODS.iter().any(|s| s.eq_ignore_ascii_case(v))
                && !STANDARD_METHODS.contains(&v.as_str())
            {
                cx.err(
                    m,
                    format!(
                        "method names are case-sensitive: write `{}`",
                        v.to_ascii_uppercase()
                    ),
                );
                ok = false;
            } else {
                list.push(v.clone());
            }
        }
        Methods::List(list)
    };
    let template = match Template::parse(a.path.get(), requests.path.strict_trailing_slash) {
        Ok(t) => Some(t),
        Err(e) => {
            cx.err(&a.path, e.to_string());
            ok = false;
            None
        }
    };
    let public = a.public.as_ref().is_some_and(|p| *p.get());
    if public && a.execution {
        cx.err(
            a.public.as_ref()?,
            format!("action `{name}` is execution-triggering and can never be public"),
        );
        ok = false;
    }
    if public && (a.require.is_some() || a.delegation.is_some()) {
        cx.err(
            a.public.as_ref()?,
            format!("action `{name}` is public: `require` and `delegation` would never be checked"),
        );
        ok = false;
    }
    let host = a.host.as_ref().map(|h| {
        let n = normalize_host(h.get());
        if n.is_empty() || n.contains('/') {
            cx.err(h, format!("`{}` is not a host name", h.get()));
        }
        n
    });
    let params: Vec<String> = template
        .as_ref()
        .map(Template::param_names)
        .unwrap_or_default();
    let mcp = match bodies::mcp_block(cx, a) {
        Ok(m) => m,
        Err(()) => {
            ok = false;
            None
        }
    };
    let mut require = Require::default();
    if let Some(r) = &a.require {
        require.scopes = r.scopes.clone();
        require.any_scope = r.any_scope.clone();
        require.acr = r.acr.clone();
        require.auth_max_age = cx.opt_duration(&r.auth_max_age);
        require.introspect = r.introspect.as_ref().is_some_and(|b| *b.get());
        for (claim, v) in &r.claims {
            let what = format!("claim `{claim}`");
            match bodies::binding(cx, v, &what, a, &params, mcp.as_ref()) {
                Some(rule) => require.claims.push((claim.clone(), rule)),
                None => ok = false,
            }
        }
        if let Some(ad) = &r.authorization_details {
            require.authorization_details =
                bodies::authorization_details(cx, ad, a, &params, mcp.as_ref());
            ok &= require.authorization_details.is_some();
        }
    }
    let delegation_rule = a.delegation.as_ref().map(|d| delegation(cx, d));
    let template = template?;
    if template
        .segments
        .iter()
        .any(|s| matches!(s, Segment::Literal(l) if l.is_empty()))
        && !requests.path.strict_trailing_slash
    {
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(Action {
        name,
        location: (a.name.line(), a.name.col()),
        methods,
        template,
        host,
        execution: a.execution,
        mode: a.mode.as_ref().map(|m| Mode::from(*m.get())),
        public,
        require,
        delegation: delegation_rule,
        upstream,
        body_json: a.body.is_some() || mcp.is_some(),
        mcp,
        mcp_group: None,
    })
}
