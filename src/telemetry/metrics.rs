//! Every `writ_*` series of SPEC's metrics table, owned by one registry (no
//! statics). Label values come only from config names and `Reason::as_str`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub decision_duration: Histogram,
    pub upstream_errors: IntCounterVec,
    /// 1 while an upstream answers (real traffic or its health check), 0 once it
    /// does not.
    pub upstream_up: IntGaugeVec,
    pub jwks_refresh: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    /// `writ_config_info{digest}`: 1 for the config in force (alerts compare replicas).
    pub config_info: IntGaugeVec,
    /// 1 while `/readyz` would answer 200; set when scraped.
    pub ready: IntGauge,
    /// Would-be denials of execution actions in audit mode (a rollout not yet safe).
    pub audit_execution_denials: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub decision_log_dropped: IntCounter,
    pub security_events: IntCounterVec,
    /// Front-door calls refused because the peer is not a trusted proxy.
    pub frontdoor_untrusted: IntCounterVec,
    /// The proxy's per-action series handles for the config in force.
    hot: arc_swap::ArcSwap<HotSeries>,
}

/// What one request adds to `writ_requests_total` and
/// `writ_request_duration_seconds`.
pub struct Counted<'a> {
    /// `policy.generation` of the config the request was decided under.
    pub generation: u64,
    /// How many actions that config has.
    pub actions: usize,
    /// The action's index (`None`: unmatched).
    pub index: Option<usize>,
    pub action: &'a str,
    pub decision: &'static str,
    pub reason: &'static str,
    pub frontend: Frontend,
    pub seconds: f64,
}

/// Series handles of the proxy's requests, one slot per action of one config
/// generation (plus one for unmatched requests), each made by the first request
/// that needs it: `with_label_values` hashes every label and takes the vector's
/// read lock, on every request; a filled slot is a pointer away and lock-free.
/// A slot keeps the (decision, reason) pair it was made with, the common one;
/// any other outcome of that action goes through the labels.
struct HotSeries {
    generation: u64,
    slots: Box<[std::sync::OnceLock<ActionSeries>]>,
}

struct ActionSeries {
    decision: &'static str,
    reason: &'static str,
    requests: IntCounter,
    duration: Histogram,
}

impl HotSeries {
    fn new(generation: u64, slots: usize) -> HotSeries {
        HotSeries {
            generation,
            slots: (0..slots).map(|_| std::sync::OnceLock::new()).collect(),
        }
    }
}

/// Which door a request came in through: the `frontend` label and log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend {
    /// writ's own proxy listener.
    Proxy,
    /// `envoy.service.auth.v3.Authorization/Check` (Envoy, Istio `CUSTOM`).
    ExtAuthzGrpc,
    /// Forward-auth (nginx `auth_request`, Traefik ForwardAuth, Caddy).
    ExtAuthzHttp,
}

impl Frontend {
    pub fn as_str(self) -> &'static str {
        match self {
            Frontend::Proxy => "proxy",
            Frontend::ExtAuthzGrpc => "ext_authz_grpc",
            Frontend::ExtAuthzHttp => "ext_authz_http",
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The gauges of the shared revocation store's follower.
#[derive(Clone)]
pub struct StoreMetrics {
    /// `writ_revocation_store_up`.
    pub up: IntGauge,
    /// `writ_revocation_entries`.
    pub entries: IntGauge,
}

/// The label for requests that matched no action.
pub const UNMATCHED: &str = "_unmatched";

impl Metrics {
    /// The revocation store's gauges, registered only when a store is configured
    /// (a fleet without one must not look like one whose store is down).
    pub fn revocation_store(&self) -> Result<StoreMetrics, prometheus::Error> {
        let up = IntGauge::new(
            "writ_revocation_store_up",
            "1 while the revocation store (Redis) is connected and followed, else 0",
        )?;
        let entries = IntGauge::new(
            "writ_revocation_entries",
            "Live entries in the revocation set loaded from the store",
        )?;
        self.registry.register(Box::new(up.clone()))?;
        self.registry.register(Box::new(entries.clone()))?;
        Ok(StoreMetrics { up, entries })
    }

    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "writ_requests_total",
                "Requests decided, by action, decision, reason and frontend",
            ),
            &["action", "decision", "reason", "frontend"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "writ_request_duration_seconds",
                "Time from request to response head, by action",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["action"],
        )?;
        let decision_duration = Histogram::with_opts(
            HistogramOpts::new(
                "writ_decision_duration_seconds",
                "Time spent deciding (upstream excluded)",
            )
            .buckets(vec![
                0.000_001,
                0.000_002_5,
                0.000_005,
                0.000_01,
                0.000_025,
                0.000_05,
                0.000_1,
                0.000_25,
                0.000_5,
                0.001,
                0.005,
                0.01,
            ]),
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "writ_upstream_errors_total",
                "Upstream failures by upstream and kind: connect, timeout, reset, tls, protocol",
            ),
            &["upstream", "kind"],
        )?;
        let upstream_up = IntGaugeVec::new(
            Opts::new(
                "writ_upstream_up",
                "1 while the upstream answers (requests or health checks), 0 when it does not",
            ),
            &["upstream"],
        )?;
        let jwks_refresh = IntCounterVec::new(
            Opts::new(
                "writ_jwks_refresh_total",
                "JWKS fetches by issuer and result",
            ),
            &["issuer", "result"],
        )?;
        let config_reloads = IntCounterVec::new(
            Opts::new("writ_config_reloads_total", "Config reloads by result"),
            &["result"],
        )?;
        let config_generation = IntGauge::new(
            "writ_config_generation",
            "Generation of the config in force",
        )?;
        let config_info = IntGaugeVec::new(
            Opts::new(
                "writ_config_info",
                "1 for the config in force, by the SHA-256 digest of its text (same file, same digest on every replica)",
            ),
            &["digest"],
        )?;
        let ready = IntGauge::new(
            "writ_ready",
            "1 while /readyz answers 200 (keys loaded, revocation store loaded, not shutting down)",
        )?;
        let audit_execution_denials = IntCounterVec::new(
            Opts::new(
                "writ_audit_execution_denials_total",
                "Requests to execution actions in audit mode that enforcement would refuse, by action",
            ),
            &["action"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("writ_build_info", "Build information"),
            &["version"],
        )?;
        let decision_log_dropped = IntCounter::new(
            "writ_decision_log_dropped_total",
            "Decision-log lines dropped because the writer could not keep up",
        )?;
        let frontdoor_untrusted = IntCounterVec::new(
            Opts::new(
                "writ_frontdoor_untrusted_total",
                "Front-door calls refused because the peer is not in trusted_proxies",
            ),
            &["frontend"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(frontdoor_untrusted.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(decision_duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(upstream_up.clone()))?;
        registry.register(Box::new(jwks_refresh.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_generation.clone()))?;
        registry.register(Box::new(config_info.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(audit_execution_denials.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(decision_log_dropped.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let security_events = IntCounterVec::new(
            Opts::new(
                "writ_security_events_total",
                "Shared Signals events by transmitter, event and result (applied, ignored, duplicate, rejected)",
            ),
            &["issuer", "event", "result"],
        )?;
        registry.register(Box::new(security_events.clone()))?;
        Ok(Metrics {
            hot: arc_swap::ArcSwap::from_pointee(HotSeries::new(0, 0)),
            security_events,
            registry,
            requests,
            request_duration,
            decision_duration,
            upstream_errors,
            upstream_up,
            jwks_refresh,
            config_reloads,
            config_generation,
            config_info,
            ready,
            audit_execution_denials,
            build_info,
            decision_log_dropped,
            frontdoor_untrusted,
        })
    }

    /// Marks `digest` as the config in force (the previous one's series goes).
    pub fn set_config(&self, generation: u64, digest: &str) {
        self.config_generation.set(generation as i64);
        self.config_info.reset();
        self.config_info.with_label_values(&[digest]).set(1);
    }

    /// Counts one request and observes its duration: through the hot slots for
    /// the proxy, through the labels for the front doors and rare outcomes.
    pub fn count(&self, c: &Counted<'_>) {
        if c.frontend == Frontend::Proxy {
            let hot = self.hot.load();
            if hot.generation != c.generation || hot.slots.len() != c.actions + 1 {
                // A new config: fresh slots (a race between workers only costs a
                // few label lookups).
                self.hot.store(std::sync::Arc::new(HotSeries::new(
                    c.generation,
                    c.actions + 1,
                )));
            } else if let Some(slot) = hot
                .slots
                .get(c.index.unwrap_or(c.actions))
                .filter(|_| c.index.is_some() || c.action == UNMATCHED)
            {
                let s = slot.get_or_init(|| ActionSeries {
                    decision: c.decision,
                    reason: c.reason,
                    requests: self.requests.with_label_values(&[
                        c.action,
                        c.decision,
                        c.reason,
                        c.frontend.as_str(),
                    ]),
                    duration: self.request_duration.with_label_values(&[c.action]),
                });
                s.duration.observe(c.seconds);
                if s.decision == c.decision && s.reason == c.reason {
                    s.requests.inc();
                } else {
                    self.count_requests(c);
                }
                return;
            }
        }
        self.count_requests(c);
        self.request_duration
            .with_label_values(&[c.action])
            .observe(c.seconds);
    }

    fn count_requests(&self, c: &Counted<'_>) {
        self.requests
            .with_label_values(&[c.action, c.decision, c.reason, c.frontend.as_str()])
            .inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if enc.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod hot_series_tests {
    use super::*;

    fn counted<'a>(
        generation: u64,
        index: Option<usize>,
        action: &'a str,
        reason: &'static str,
    ) -> Counted<'a> {
        Counted {
            generation,
            actions: 2,
            index,
            action,
            decision: "allow",
            reason,
            frontend: Frontend::Proxy,
            seconds: 0.001,
        }
    }

    fn requests(m: &Metrics, labels: &[&str]) -> u64 {
        m.requests.with_label_values(labels).get()
    }

    #[test]
    fn the_hot_slots_count_exactly_what_the_labels_would() {
        let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        // The first request of a generation builds the slots; every later one uses them.
        for _ in 0..3 {
            m.count(&counted(1, Some(0), "run-job", "allowed"));
        }
        m.count(&counted(1, Some(0), "run-job", "audit_only"));
        m.count(&counted(1, None, UNMATCHED, "allowed"));
        // A reload (new generation) with other action indices.
        m.count(&counted(2, Some(1), "read-job", "allowed"));
        m.count(&counted(2, Some(1), "read-job", "allowed"));
        assert_eq!(requests(&m, &["run-job", "allow", "allowed", "proxy"]), 3);
        assert_eq!(
            requests(&m, &["run-job", "allow", "audit_only", "proxy"]),
            1
        );
        assert_eq!(requests(&m, &[UNMATCHED, "allow", "allowed", "proxy"]), 1);
        assert_eq!(requests(&m, &["read-job", "allow", "allowed", "proxy"]), 2);
        assert_eq!(
            m.request_duration
                .with_label_values(&["run-job"])
                .get_sample_count(),
            4
        );
        // Front doors go through the labels, never a proxy slot.
        let mut door = counted(2, Some(1), "read-job", "allowed");
        door.frontend = Frontend::ExtAuthzGrpc;
        m.count(&door);
        assert_eq!(
            requests(&m, &["read-job", "allow", "allowed", "ext_authz_grpc"]),
            1
        );
        assert_eq!(requests(&m, &["read-job", "allow", "allowed", "proxy"]), 2);
    }
}
