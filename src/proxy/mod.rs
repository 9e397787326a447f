//! The proxy service: one [`handle`] per request that runs the stages in order,
//! like pingora's phase list. Per-request state pins one policy snapshot.
//!
//! admit → decide (normalize, classify, authenticate, authorize) → forward or
//! reject → record (always, exactly once).

pub mod forward;
pub mod respond;
pub mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;

use crate::auth::cache::TokenCache;
use crate::clock::Clock;
use crate::decision::{Denial, Reason, Verdict};
use crate::pipeline::{self, Credentials, RequestParts};
use crate::policy::Policy;
use crate::telemetry::decision_log::{DecisionLog, DecisionRecord, now_rfc3339};
use crate::telemetry::metrics::{Metrics, UNMATCHED};
use upstream::{Upstream, UpstreamError};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// State shared by every connection.
pub struct Shared {
    pub policy: ArcSwap<Policy>,
    pub cache: TokenCache,
    pub metrics: Metrics,
    pub log: DecisionLog,
    pub upstream: ArcSwap<Upstream>,
    pub shutting_down: AtomicBool,
    pub jwks: crate::auth::jwks::JwksRegistry,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    pub fn ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed) && self.policy.load().keys_ready()
    }
}

/// Connection facts the request path needs.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

fn request_id(req: &Request<Incoming>) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The target and host as the client gave them. HTTP/2 always carries scheme
/// and authority in the URI; for HTTP/1 an authority means absolute-form.
fn target_and_host(req: &Request<Incoming>) -> Result<(String, Option<String>), Denial> {
    let uri = req.uri();
    let host_header = req
        .headers()
        .get(http::header::HOST)
        .map(|h| h.to_str().map(str::to_string));
    let host_header = match host_header {
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => return Err(Denial::new(Reason::BadRequest, "Host header is not ASCII")),
        None => None,
    };
    if req.version() == Version::HTTP_2 {
        let target = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let authority = uri.authority().map(|a| a.as_str().to_string());
        if let (Some(a), Some(h)) = (&authority, &host_header)
            && !a.eq_ignore_ascii_case(h)
        {
            return Err(Denial::new(
                Reason::BadRequest,
                ":authority and Host disagree",
            ));
        }
        return Ok((target, authority.or(host_header)));
    }
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(Denial::new(
            Reason::BadRequest,
            "request target must be origin-form",
        ));
    }
    let target = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.to_string());
    Ok((target, host_header))
}

pub async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let policy = shared.policy.load_full();
    let rid = request_id(&req);
    let method = req.method().as_str().to_string();

    let decided = Instant::now();
    let (decision, early) = match target_and_host(&req) {
        Ok((target, host)) => {
            let parts = RequestParts {
                method: &method,
                target: &target,
                host: host.as_deref(),
                headers: req.headers(),
            };
            let d = pipeline::decide(
                &policy,
                Some(&shared.cache),
                &parts,
                &Credentials::Header,
                Clock::System.now(),
                false,
            );
            (Some((d, host)), None)
        }
        Err(e) => (None, Some(e)),
    };
    shared
        .metrics
        .decision_duration
        .observe(decided.elapsed().as_secs_f64());

    let (d, client_host) = match (decision, early) {
        (Some(x), _) => x,
        (None, e) => {
            let e = e.unwrap_or_else(|| Denial::new(Reason::BadRequest, "bad request"));
            let resp = with_id(respond::problem(&e, None, &rid), &rid);
            record(
                &shared, &policy, &rid, &method, None, None, e.reason, "deny", true, e.status,
                start,
            );
            return Ok(resp);
        }
    };
    let action = d.action.map(|i| policy.action(i));
    let action_name = action.map(|a| a.name.as_str());

    let (permit, audit_denial) = match &d.verdict {
        Verdict::Deny(e) => {
            let resp = with_id(respond::problem(e, action_name, &rid), &rid);
            record(
                &shared,
                &policy,
                &rid,
                &method,
                Some(&d),
                action_name,
                e.reason,
                "deny",
                true,
                e.status,
                start,
            );
            return Ok(resp);
        }
        Verdict::Allow { permit, .. } => (permit.clone(), None),
        Verdict::AuditDeny { permit, denial } => (permit.clone(), Some(denial.clone())),
    };
    let Some(target) = d.target.as_ref() else {
        let e = Denial::new(Reason::BadRequest, "no target");
        return Ok(with_id(respond::problem(&e, action_name, &rid), &rid));
    };

    let (mut parts, body) = req.into_parts();
    let out = forward::Outbound {
        policy: &policy,
        permit: &permit,
        target,
        action: action_name,
        request_id: &rid,
        peer: conn.peer,
        tls: conn.tls,
        host: client_host.as_deref(),
    };
    if forward::prepare(&mut parts, &out).is_err() {
        let e = Denial::new(Reason::BadRequest, "target cannot be forwarded");
        record(
            &shared,
            &policy,
            &rid,
            &method,
            Some(&d),
            action_name,
            e.reason,
            "deny",
            true,
            e.status,
            start,
        );
        return Ok(with_id(respond::problem(&e, action_name, &rid), &rid));
    }
    let upstream_req = Request::from_parts(parts, body);
    let up = shared.upstream.load_full();
    let result = up.send(upstream_req, policy.upstream.timeout).await;
    let reason = d.verdict.reason();
    let (decision_label, enforced) = match &audit_denial {
        Some(_) => ("deny", false),
        None => ("allow", true),
    };
    match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let (mut rp, rb) = resp.into_parts();
            forward::strip_hop_by_hop(&mut rp.headers);
            let resp = Response::from_parts(rp, rb.boxed());
            record(
                &shared,
                &policy,
                &rid,
                &method,
                Some(&d),
                action_name,
                reason,
                decision_label,
                enforced,
                status,
                start,
            );
            Ok(with_id(resp, &rid))
        }
        Err(err) => {
            let kind = err.kind();
            shared
                .metrics
                .upstream_errors
                .with_label_values(&[kind])
                .inc();
            let e = match err {
                UpstreamError::Timeout => Denial::new(
                    Reason::UpstreamTimeout,
                    "the backend did not answer in time",
                ),
                _ => Denial::new(Reason::UpstreamUnavailable, "the backend is unavailable"),
            };
            tracing::warn!(request.id = %rid, upstream.error = kind, "Upstream request failed");
            let label = if audit_denial.is_some() {
                "deny"
            } else {
                "allow"
            };
            record(
                &shared,
                &policy,
                &rid,
                &method,
                Some(&d),
                action_name,
                e.reason,
                label,
                enforced,
                e.status,
                start,
            );
            Ok(with_id(respond::problem(&e, action_name, &rid), &rid))
        }
    }
}

fn with_id(mut resp: Response<Body>, rid: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Stage 6: metrics and one decision-log line.
#[allow(clippy::too_many_arguments)]
fn record(
    shared: &Shared,
    policy: &Policy,
    rid: &str,
    method: &str,
    d: Option<&pipeline::Decision>,
    action: Option<&str>,
    reason: Reason,
    decision: &'static str,
    enforced: bool,
    status: u16,
    start: Instant,
) {
    let label_action = action.unwrap_or(UNMATCHED);
    let metric_decision = match (decision, enforced) {
        ("deny", false) => "audit_deny",
        (d, _) => d,
    };
    let m = &shared.metrics;
    m.requests
        .with_label_values(&[label_action, metric_decision, reason.as_str()])
        .inc();
    let elapsed = start.elapsed();
    m.request_duration
        .with_label_values(&[label_action])
        .observe(elapsed.as_secs_f64());
    if !shared.log.enabled() {
        return;
    }
    let token = d.and_then(|d| d.token.as_ref());
    let claims = token.map(|t| &t.claims);
    let execution = d
        .and_then(|d| d.action)
        .map(|i| policy.action(i).execution)
        .unwrap_or(false);
    shared.log.record(DecisionRecord {
        ts: now_rfc3339(),
        request_id: rid.to_string(),
        method: method.to_string(),
        path: d.and_then(|d| d.target.as_ref()).map(|t| t.path.clone()),
        host: d.and_then(|d| d.host.clone()),
        action: action.map(str::to_string),
        execution,
        decision,
        enforced,
        reason: reason.as_str(),
        status,
        subject: claims.and_then(|c| c.sub.clone()),
        actor_chain: claims
            .and_then(|c| c.act.as_ref().ok())
            .map(|a| a.iter().map(|x| x.sub.clone()).collect())
            .unwrap_or_default(),
        client_id: claims.and_then(|c| c.client_id.clone()),
        issuer: claims.and_then(|c| c.iss.clone()),
        duration_us: elapsed.as_micros() as u64,
    });
}
