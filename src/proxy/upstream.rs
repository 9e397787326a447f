//! The upstream clients: one connection pool per named upstream (plain TCP or
//! rustls, each with its own TLS settings; [`super::pool`]), their health, and
//! the [`Forwarding`] set a request pins together with its config.

use std::sync::{Arc, OnceLock};

use http::{Request, Response};

use super::body::ClientBody;
use super::pool::{Pool, PoolError, PooledBody};
use crate::telemetry::metrics::Metrics;
use crate::tls::connector;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec};
use writ_engine::config::{Config, HealthCheck, Upstream as UpstreamConfig};

#[derive(Debug)]
pub enum UpstreamError {
    Connect,
    Timeout,
    Reset,
    Tls,
    Protocol,
}

impl UpstreamError {
    /// Label for `writ_upstream_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Reset => "reset",
            UpstreamError::Tls => "tls",
            UpstreamError::Protocol => "protocol",
        }
    }
}

/// One upstream's client: its own connection pool and TLS settings, and its
/// health as seen by requests and (when configured) its health check.
pub struct Upstream {
    /// The settings it was built from: a reload keeps the client (and its warm
    /// pool) when they did not change.
    pub config: UpstreamConfig,
    pool: Arc<Pool>,
    health: Health,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({})", self.config.name)
    }
}

/// `writ_upstream_up{upstream}` and `writ_upstream_errors_total{upstream,kind}`
/// for one upstream. The gauge's series is made with its first observation (no
/// series before anything was seen), then set without a label lookup.
struct Health {
    up_vec: IntGaugeVec,
    up: OnceLock<IntGauge>,
    errors: IntCounterVec,
    /// A reload removed the upstream: requests still in flight on it must not
    /// bring its `writ_upstream_up` series back.
    retired: std::sync::atomic::AtomicBool,
}

impl Health {
    fn set_up(&self, name: &str, up: bool) {
        if self.retired.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let gauge = self
            .up
            .get_or_init(|| self.up_vec.with_label_values(&[name]));
        let v = i64::from(up);
        if gauge.get() != v {
            gauge.set(v);
        }
    }
}

impl Upstream {
    /// Must run inside the runtime (the pool starts its idle sweeper).
    pub fn new(cfg: &UpstreamConfig, metrics: &Metrics) -> Result<Upstream, crate::tls::TlsError> {
        let connector = connector(
            cfg.ca.as_deref(),
            cfg.server_name.as_deref(),
            cfg.connect_timeout,
        )?;
        // The engine checked the authority when it loaded the config.
        let pool = Pool::new(connector, cfg.scheme_https, &cfg.authority)
            .map_err(|e| crate::tls::TlsError::ServerName(format!("{}: {e}", cfg.authority)))?;
        Ok(Upstream {
            config: cfg.clone(),
            pool,
            health: Health {
                up_vec: metrics.upstream_up.clone(),
                up: OnceLock::new(),
                errors: metrics.upstream_errors.clone(),
                retired: Default::default(),
            },
        })
    }

    /// The upstream's name (a metric label, a decision-log field).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Sends `req` (already rewritten for this upstream) and waits at most the
    /// upstream's `timeout` for the response head. An answer marks it up; a
    /// failure is the caller's to count ([`Upstream::count_error`]), since a
    /// client that broke its own body framing is not the backend's fault.
    pub async fn send(
        &self,
        req: Request<ClientBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        match tokio::time::timeout(self.config.timeout, self.pool.send(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(r)) => {
                self.health.set_up(self.name(), true);
                Ok(r)
            }
            Ok(Err(e)) => Err(classify(&e)),
        }
    }

    /// Counts a failed request; one that never reached a working backend also
    /// marks it down. A reset or protocol error mid-exchange says the backend
    /// was reached, so it does not.
    pub fn count_error(&self, e: &UpstreamError) {
        self.health
            .errors
            .with_label_values(&[self.name(), e.kind()])
            .inc();
        if matches!(
            e,
            UpstreamError::Connect | UpstreamError::Tls | UpstreamError::Timeout
        ) {
            self.health.set_up(self.name(), false);
        }
    }

    /// One health check: `GET base_path + path`; 2xx or 3xx within the
    /// upstream's timeout (at most the interval) is up, anything else down.
    async fn check(&self, hc: &HealthCheck) {
        let cfg = &self.config;
        let uri = format!("{}{}", cfg.base_path, hc.path);
        let req = Request::get(uri)
            .header(http::header::USER_AGENT, "writ-health-check")
            .body(ClientBody::buffered(bytes::Bytes::new()).0);
        let Ok(req) = req else {
            self.health.set_up(self.name(), false);
            return;
        };
        let wait = cfg.timeout.min(hc.every);
        let up = match tokio::time::timeout(wait, self.pool.send(req)).await {
            Ok(Ok(resp)) => {
                let ok = resp.status().is_success() || resp.status().is_redirection();
                // Drain so the connection goes back to the pool; bounded, as an
                // endless body must not stall the checks.
                let drain = http_body_util::BodyExt::collect(resp.into_body());
                let _ = tokio::time::timeout(wait, drain).await;
                ok
            }
            Ok(Err(_)) | Err(_) => false,
        };
        self.health.set_up(self.name(), up);
    }
}

/// Runs `upstream`'s health check every interval for as long as the upstream is
/// in use: a reload that drops or replaces it ends the loop (the loop holds it
/// weakly, only for the length of one check).
pub fn spawn_health_check(upstream: &Arc<Upstream>) {
    let Some(hc) = upstream.config.health_check.clone() else {
        return;
    };
    let weak = Arc::downgrade(upstream);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(hc.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(up) = weak.upgrade() else { return };
            up.check(&hc).await;
        }
    });
}

/// The config the proxy decides under and a client per upstream (indexed like
/// `settings.upstreams`), swapped as one: a request pins both, so an action's
/// upstream index always points into the client list built for that config.
#[derive(Debug)]
pub struct Forwarding {
    pub config: Arc<Config>,
    pub upstreams: Vec<Arc<Upstream>>,
    /// Each action's name as an identity header value, indexed like
    /// `policy.actions`: built once per config, cloned per request.
    pub action_headers: Vec<Option<http::HeaderValue>>,
}

impl Forwarding {
    /// Clients for `config`'s upstreams: an unchanged upstream (same name, same
    /// settings) keeps its client from `previous`, so its pool stays warm and
    /// its in-flight requests are untouched; a new or changed one gets a fresh
    /// client and, when configured, a health check. Must run inside the runtime.
    pub fn build(
        config: Arc<Config>,
        previous: Option<&Forwarding>,
        metrics: &Metrics,
    ) -> Result<Forwarding, ForwardingError> {
        let mut upstreams = Vec::with_capacity(config.settings.upstreams.len());
        for cfg in &config.settings.upstreams {
            let kept = previous.and_then(|p| p.upstreams.iter().find(|u| u.config == *cfg));
            let u = match kept {
                Some(u) => u.clone(),
                None => {
                    let u = Arc::new(Upstream::new(cfg, metrics).map_err(|source| {
                        ForwardingError {
                            upstream: cfg.name.clone(),
                            source,
                        }
                    })?);
                    spawn_health_check(&u);
                    u
                }
            };
            upstreams.push(u);
        }
        let action_headers = config
            .policy
            .actions
            .iter()
            .map(|a| http::HeaderValue::from_bytes(a.name.as_bytes()).ok())
            .collect();
        Ok(Forwarding {
            config,
            upstreams,
            action_headers,
        })
    }

    /// Retires the upstreams `next` no longer has and removes their
    /// `writ_upstream_up` series: a request still in flight on one does not
    /// bring the series back.
    pub fn retire_removed(&self, next: &Forwarding, metrics: &Metrics) {
        for u in &self.upstreams {
            if !next.upstreams.iter().any(|n| n.name() == u.name()) {
                u.health
                    .retired
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = metrics.upstream_up.remove_label_values(&[u.name()]);
            }
        }
    }

    /// The client a request decided as `action` is forwarded with.
    pub fn upstream_for(&self, action: Option<usize>) -> &Arc<Upstream> {
        &self.upstreams[self.config.upstream_index(action)]
    }
}

/// An upstream whose client could not be built (its CA file, say).
#[derive(Debug, thiserror::Error)]
#[error("upstream `{upstream}`: {source}")]
pub struct ForwardingError {
    upstream: String,
    source: crate::tls::TlsError,
}

/// Whether a rustls error is anywhere in the chain. io::Error wrappers (tokio-rustls
/// wraps rustls errors, hyper-rustls wraps those again) hide their payload from
/// `source()`, so they are opened with `get_ref`.
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.is::<rustls::Error>() {
        return true;
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && is_tls(inner)
    {
        return true;
    }
    e.source().is_some_and(is_tls)
}

fn classify(e: &PoolError) -> UpstreamError {
    match e {
        PoolError::Connect(e) => {
            tracing::debug!(error = %crate::telemetry::error_chain(e.as_ref()), "Upstream connect error");
            if is_tls(e.as_ref()) {
                return UpstreamError::Tls;
            }
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
            while let Some(s) = src {
                if let Some(io) = s.downcast_ref::<std::io::Error>()
                    && io.kind() == std::io::ErrorKind::TimedOut
                {
                    return UpstreamError::Timeout;
                }
                src = s.source();
            }
            UpstreamError::Connect
        }
        PoolError::Exchange(e) => {
            tracing::debug!(error = %crate::telemetry::error_chain(e), "Upstream error");
            if is_tls(e) {
                return UpstreamError::Tls;
            }
            if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
                return UpstreamError::Reset;
            }
            let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
            while let Some(s) = src {
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    return match io.kind() {
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                            UpstreamError::Reset
                        }
                        std::io::ErrorKind::TimedOut => UpstreamError::Timeout,
                        _ => UpstreamError::Protocol,
                    };
                }
                src = s.source();
            }
            UpstreamError::Protocol
        }
    }
}
