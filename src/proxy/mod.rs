//! The proxy service: one [`handle`] per request that runs the stages in order,
//! like pingora's phase list. Per-request state pins one policy snapshot.
//!
//! admit → decide (normalize, classify, authenticate, authorize) → forward or
//! reject → record (always, exactly once).

pub mod body;
pub mod forward;
pub mod pool;
pub mod respond;
pub mod tools_list;
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

use crate::telemetry::decision_log::{DecisionLog, DecisionRecord, at};
use crate::telemetry::metrics::{Counted, Frontend, Metrics, UNMATCHED};
use upstream::{Forwarding, UpstreamError};
use writ_engine::authenticate::Credentials;
use writ_engine::authenticate::cache::TokenCache;
use writ_engine::authorize::Introspected;
use writ_engine::clock::Clock;
use writ_engine::config::Config;
use writ_engine::decision::{Denial, Labels, Reason, Verdict};
use writ_engine::request::{MAX_FORM_BODY, is_form_body};
use writ_engine::{Context, Decision, Request as EngineRequest, decide};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// State shared by every connection.
pub struct Shared {
    pub cache: TokenCache,
    pub metrics: Metrics,
    pub log: DecisionLog,
    /// The config in force (decision policy and server settings) and a client
    /// per upstream of it, swapped whole by a reload: a request pins the pair,
    /// so it sees one consistent config and the clients built for it.
    pub forwarding: ArcSwap<Forwarding>,
    pub shutting_down: AtomicBool,
    pub jwks: crate::jwks::JwksRegistry,
    /// The shared revocation store's follower, when `revocation.redis` is set.
    pub revocation: Option<Arc<crate::revocation_store::Follower>>,
    /// The Shared Signals receiver's memory (replayed `jti`s).
    pub ssf: Arc<crate::ssf::Receiver>,
    /// RFC 7662 introspection client and answer cache.
    pub introspector: crate::introspect::Introspector,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    /// The config in force, for everything that does not forward.
    pub fn config(&self) -> Arc<Config> {
        self.forwarding.load().config.clone()
    }

    pub fn ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed)
            && self.config().policy.keys_ready()
            && self.revocation.as_ref().is_none_or(|r| r.loaded())
    }
}

/// Connection facts the request path needs.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer's address as an `X-Forwarded-For` element, formatted once per
    /// connection rather than on every request.
    pub peer_ip: HeaderValue,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, tls: bool) -> ConnInfo {
        // An IP address is ASCII digits, dots, colons and hex: always a valid value.
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ConnInfo { peer, tls, peer_ip }
    }
}

/// hyper's own limit on request header fields (`DEFAULT_MAX_HEADERS`, private to
/// hyper; `tests/resource_limits.rs` pins 100 accepted and 101 refused with 431).
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// SPEC's limit of 100 header fields on a server connection. hyper enforces its
/// default (the same 100) with arrays on the stack; an explicit `max_headers`
/// makes it fill two 100-slot arrays element by element on every parse (about
/// 1,700 instructions per request in callgrind), so it is set only if the
/// limits ever differ.
pub fn limit_header_fields<E>(h1: &mut hyper_util::server::conn::auto::Http1Builder<'_, E>) {
    if writ_engine::vocab::MAX_HEADER_FIELDS != HYPER_DEFAULT_MAX_HEADERS {
        h1.max_headers(writ_engine::vocab::MAX_HEADER_FIELDS);
    }
}

/// The client's `X-Request-Id` when it is a sane token, else a fresh one.
pub fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(&forward::X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(new_request_id)
}

/// A fresh request id: a random per-process prefix and a counter. Unique, and
/// cheaper than a random UUID per request (no system call on the hot path).
fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicU64;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        if aws_lc_rs::rand::fill(&mut b).is_err() {
            b = (std::process::id() as u64).to_le_bytes();
        }
        u64::from_le_bytes(b)
    });
    // Hex by hand: `format!` costs ten times as much on every request.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    for (half, n) in [*prefix, NEXT.fetch_add(1, Ordering::Relaxed)]
        .into_iter()
        .enumerate()
    {
        for (i, byte) in id[half * 16..half * 16 + 16].iter_mut().enumerate() {
            *byte = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    std::str::from_utf8(&id)
        .map(str::to_owned)
        .unwrap_or_default()
}

/// The target and host as the client gave them. HTTP/2 always carries scheme
/// and authority in the URI; for HTTP/1 an authority means absolute-form.
fn target_and_host(req: &http::request::Parts) -> Result<(String, Option<String>), Denial> {
    let uri = &req.uri;
    let host_header = req
        .headers
        .get(http::header::HOST)
        .map(|h| h.to_str().map(str::to_string));
    let host_header = match host_header {
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => return Err(Denial::new(Reason::BadRequest, "Host header is not ASCII")),
        None => None,
    };
    if req.version == Version::HTTP_2 {
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

/// Per-request state, pinned at admission (stage 0). The front doors build one
/// too, so every door records the same metrics and log line.
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub config: Arc<Config>,
    pub rid: String,
    pub method: String,
    pub start: Instant,
    /// The door the request came in through (a metrics label, a log field).
    pub frontend: Frontend,
}

/// How a request ended, for the record stage.
pub struct Outcome<'a> {
    pub action: Option<&'a str>,
    pub reason: Reason,
    /// From the verdict (an upstream failure keeps the verdict's labels).
    pub labels: Labels,
    pub status: u16,
}

/// The one decision of a live request, for the proxy and the front doors: the
/// engine decides; when the action needs introspection (and every other check
/// passed), the issuer (or the cache) is asked and the engine decides again with
/// the answer. Times the decision and fills the credential the log records.
pub async fn decide_live(
    shared: &Shared,
    policy: &writ_engine::Policy,
    request: &EngineRequest<'_>,
) -> Decision {
    let (d, took) = decide_untimed(shared, policy, request).await;
    shared.metrics.decision_duration.observe(took.as_secs_f64());
    d
}

/// [`decide_live`] without observing `writ_decision_duration_seconds`: for a
/// request decided twice (again once its JSON body is read), which is one
/// decision to the histogram. Returns how long deciding took.
async fn decide_untimed(
    shared: &Shared,
    policy: &writ_engine::Policy,
    request: &EngineRequest<'_>,
) -> (Decision, std::time::Duration) {
    let decided = Instant::now();
    let context = Context {
        now: Clock::System.now(),
        credentials: &Credentials::Header,
        cache: Some(&shared.cache),
        trace: false,
        introspection: None,
    };
    let mut d = decide(policy, request, &context);
    if let Some(issuer) = d.introspect {
        let answer = introspect(shared, policy, issuer, request.headers, &d).await;
        let again = Context {
            introspection: Some(answer),
            ..context
        };
        d = decide(policy, request, &again);
    }
    if shared.log.enabled() {
        d.credential = writ_engine::decide::logged_credential(d.credential, request.headers);
    }
    (d, decided.elapsed())
}

/// Asks `issuer`'s introspection endpoint (or the cache) about the request's
/// bearer token: what [`Decision::introspect`] asks for.
async fn introspect(
    shared: &Shared,
    policy: &writ_engine::Policy,
    issuer: usize,
    headers: &http::HeaderMap,
    d: &Decision,
) -> Introspected {
    match (
        writ_engine::authenticate::bearer(headers),
        &policy.issuers[issuer].introspection,
    ) {
        (Ok(Some(token)), Some(endpoint)) => {
            let exp = d
                .token
                .as_ref()
                .and_then(|t| t.claims.times.as_ref().ok().and_then(|x| x.exp));
            shared.introspector.ask(endpoint, token, exp).await
        }
        _ => Introspected::Unavailable,
    }
}

pub async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let forwarding = shared.forwarding.load_full();
    let cx = Ctx {
        config: forwarding.config.clone(),
        shared,
        rid: request_id(&parts.headers),
        method: parts.method.as_str().to_string(),
        start: Instant::now(),
        frontend: Frontend::Proxy,
    };
    let (target, client_host) = match target_and_host(&parts) {
        Ok(x) => x,
        Err(e) => return Ok(cx.reject(None, &e)),
    };
    if let Some(resp) = respond::resource_metadata(&cx.config.policy, &parts.method, &target) {
        return Ok(cx.with_id(resp));
    }
    // A form body may carry `_method` (Rails, Laravel, Symfony): it is read,
    // bounded, before deciding, and the bytes read are the bytes forwarded.
    let limit = cx.config.settings.limits.header_read_timeout;
    let (form, mut body) = if is_form_body(&parts.headers) {
        match read_body(&parts.headers, body, limit, MAX_FORM_BODY, "form").await {
            Ok(b) => (Some(b), None),
            Err(e) => return Ok(cx.reject(None, &e)),
        }
    } else {
        (None, Some(body))
    };
    // Deciding time excludes the wait for a body.
    let mut request = EngineRequest {
        method: &cx.method,
        target: &target,
        host: client_host.as_deref(),
        headers: &parts.headers,
        form_body: form.as_deref(),
        json_body: None,
        origin: writ_engine::request::Origin::Proxy,
    };
    let (mut d, mut deciding) = decide_untimed(&cx.shared, &cx.config.policy, &request).await;
    let observe = |took: std::time::Duration| {
        let histogram = &cx.shared.metrics.decision_duration;
        histogram.observe(took.as_secs_f64());
    };
    // The action reads a JSON body (`body: json`, an MCP endpoint): only now is
    // it read, bounded, and the request decided again on it. The bytes parsed
    // are the bytes forwarded. One decision to the histogram either way.
    let mut json: Option<Bytes> = None;
    if d.needs_body
        && let Some(stream) = body.take()
    {
        let max = cx.config.policy.requests.max_json_body;
        match read_body(&parts.headers, stream, limit, max, "JSON").await {
            Ok(b) => json = Some(b),
            Err(e) => {
                observe(deciding);
                return Ok(cx.reject(Some(&d), &e));
            }
        }
        request.json_body = json.as_deref();
        let (again, took) = decide_untimed(&cx.shared, &cx.config.policy, &request).await;
        (d, deciding) = (again, deciding + took);
    }
    observe(deciding);

    let permit = match &d.verdict {
        Verdict::Deny(e) => return Ok(cx.reject(Some(&d), e)),
        Verdict::Allow { permit, .. } | Verdict::AuditDeny { permit, .. } => permit.clone(),
    };
    let labels = d.verdict.labels();
    let action = d.action.map(|i| cx.config.policy.action(i).name.as_str());
    let Some(target) = d.target.as_ref() else {
        return Ok(cx.reject(Some(&d), &Denial::new(Reason::BadRequest, "no target")));
    };

    // Stage 5a: forward.
    let client_version = parts.version;
    let body = match (body, form) {
        (Some(stream), _) => body::ClientBody::new(stream),
        (None, None) if json.is_some() => {
            let bytes = json.unwrap_or_default();
            parts
                .headers
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            body::ClientBody::buffered(bytes)
        }
        (None, form) => {
            let bytes = match &d.form_body {
                Some(stripped) => Bytes::copy_from_slice(stripped),
                None => form.unwrap_or_default(),
            };
            parts
                .headers
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            body::ClientBody::buffered(bytes)
        }
    };
    let up = forwarding.upstream_for(d.action);
    let out = forward::Outbound {
        policy: &cx.config.policy,
        upstream: &up.config,
        permit: &permit,
        target,
        action: d
            .action
            .and_then(|i| forwarding.action_headers.get(i)?.as_ref()),
        request_id: &cx.rid,
        peer_ip: &conn.peer_ip,
        tls: conn.tls,
        host: client_host.as_deref(),
    };
    if forward::prepare(&mut parts, &out).is_err() {
        let e = Denial::new(Reason::BadRequest, "target cannot be forwarded");
        return Ok(cx.reject(Some(&d), &e));
    }
    let tools = tools_filter(&cx, &d);
    if tools.is_some() {
        // The answer is rewritten: it must come in a coding writ can read.
        parts.headers.remove(http::header::ACCEPT_ENCODING);
    }
    let (body, client_failed) = body;
    match up.send(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let (mut rp, rb) = resp.into_parts();
            forward::strip_hop_by_hop(&mut rp.headers);
            // The client's connection has its own version and persistence: an
            // HTTP/1.0 backend must not turn the answer into an HTTP/1.0 close.
            rp.version = client_version;
            let rb = match tools {
                Some(filter) if status == 200 => {
                    match filter_tools_list(&filter, &mut rp.headers, rb.boxed()).await {
                        Ok(b) => b,
                        Err(tools_list::Unfilterable) => {
                            let e = Denial::new(
                                Reason::UpstreamUnavailable,
                                "the tools/list answer could not be filtered",
                            );
                            return Ok(cx.reject(Some(&d), &e));
                        }
                    }
                }
                _ => rb.boxed(),
            };
            let reason = d.verdict.reason();
            cx.record(
                Some(&d),
                Outcome {
                    action,
                    reason,
                    labels,
                    status,
                },
            );
            Ok(cx.with_id(Response::from_parts(rp, rb)))
        }
        Err(err) => {
            let e = if client_failed.load(Ordering::Relaxed) {
                // The client broke its own body framing: its error, not the backend's.
                Denial::new(Reason::BadRequest, "the request body is malformed")
            } else {
                up.count_error(&err);
                tracing::warn!(
                    request.id = %cx.rid,
                    upstream = up.name(),
                    upstream.error = err.kind(),
                    "Upstream request failed"
                );
                match err {
                    UpstreamError::Timeout => Denial::new(
                        Reason::UpstreamTimeout,
                        "the backend did not answer in time",
                    ),
                    _ => Denial::new(Reason::UpstreamUnavailable, "the backend is unavailable"),
                }
            };
            let outcome = Outcome {
                action,
                reason: e.reason,
                labels,
                status: e.status,
            };
            cx.record(Some(&d), outcome);
            let mcp = d.mcp.as_ref();
            Ok(cx.with_id(respond::denial(&e, action, &cx.rid, mcp, &cx.config.policy)))
        }
    }
}

/// Whether a body carries a content coding (writ reads only identity bodies).
fn content_coded(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// The `tools/list` filter for a forwarded request, when it is one on an MCP endpoint.
fn tools_filter(cx: &Ctx, d: &Decision) -> Option<tools_list::ToolFilter> {
    let call = d.mcp.as_ref()?;
    if call.method.as_deref() != Some(writ_engine::policy::mcp::TOOLS_LIST) {
        return None;
    }
    let group = cx.config.policy.action(d.action?).mcp_group?;
    Some(tools_list::ToolFilter {
        config: cx.config.clone(),
        group,
        params: d.params.clone(),
        token: d.token.clone(),
        now: d.now,
        id: call.id.clone().unwrap_or(serde_json::Value::Null),
    })
}

/// A `tools/list` answer, filtered: JSON read whole, SSE event by event.
async fn filter_tools_list(
    filter: &tools_list::ToolFilter,
    headers: &mut http::HeaderMap,
    rb: Body,
) -> Result<Body, tools_list::Unfilterable> {
    if content_coded(headers) {
        return Err(tools_list::Unfilterable);
    }
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("text/event-stream") {
        headers.remove(http::header::CONTENT_LENGTH);
        return Ok(tools_list::Sse::new(rb, filter.clone()).boxed());
    }
    if !ct.starts_with("application/json") {
        return Err(tools_list::Unfilterable);
    }
    let bytes = tools_list::json(filter, rb).await?;
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Ok(respond::full(bytes))
}

/// Reads a whole body writ must decide on (a form body, a JSON body): at most
/// `max` bytes (413 otherwise), within `deadline` (a client trickling its body
/// must not hold a connection slot), and only without a content coding writ
/// could not read.
async fn read_body(
    headers: &http::HeaderMap,
    body: Incoming,
    deadline: std::time::Duration,
    max: usize,
    what: &str,
) -> Result<Bytes, Denial> {
    let too_large = || {
        Denial::new(
            Reason::BodyTooLarge,
            format!("{what} bodies are read before deciding and may be at most {max} bytes"),
        )
    };
    if content_coded(headers) {
        return Err(Denial::new(
            Reason::BadRequest,
            format!("a {what} body with a content coding cannot be checked"),
        ));
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, max);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Err(_) => Err(Denial::new(
            Reason::BadRequest,
            format!("the {what} body did not arrive in time"),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(Denial::new(
            Reason::BadRequest,
            "the request body is malformed",
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

impl Ctx {
    fn with_id(&self, mut resp: Response<Body>) -> Response<Body> {
        if let Ok(v) = HeaderValue::from_str(&self.rid) {
            resp.headers_mut().insert(forward::X_REQUEST_ID, v);
        }
        resp
    }

    /// Stage 5b: reject. The backend sees nothing of the request.
    fn reject(&self, d: Option<&Decision>, e: &Denial) -> Response<Body> {
        let action = d
            .and_then(|d| d.action)
            .map(|i| self.config.policy.action(i).name.as_str());
        let outcome = Outcome {
            action,
            reason: e.reason,
            labels: Labels::DENY,
            status: e.status,
        };
        self.record(d, outcome);
        let mcp = d.and_then(|d| d.mcp.as_ref());
        self.with_id(respond::denial(
            e,
            action,
            &self.rid,
            mcp,
            &self.config.policy,
        ))
    }

    /// The upstream a proxied request goes to: its action's, or the default for
    /// an unmatched request that is forwarded. Front doors forward nothing.
    fn upstream_name(&self, d: Option<&Decision>) -> Option<String> {
        let d = d.filter(|_| self.frontend == Frontend::Proxy)?;
        let routed = d.action.is_some() || !matches!(d.verdict, Verdict::Deny(_));
        routed.then(|| self.config.upstream_for(d.action).name.clone())
    }

    /// Stage 6: metrics and one decision-log line, exactly once per request.
    pub fn record(&self, d: Option<&Decision>, o: Outcome<'_>) {
        let label_action = o.action.unwrap_or(UNMATCHED);
        let metric_decision = o.labels.metric;
        let m = &self.shared.metrics;
        let elapsed = self.start.elapsed();
        m.count(&Counted {
            generation: self.config.policy.generation,
            actions: self.config.policy.actions.len(),
            index: d.and_then(|d| d.action).filter(|_| o.action.is_some()),
            action: label_action,
            decision: metric_decision,
            reason: o.reason.as_str(),
            frontend: self.frontend,
            seconds: elapsed.as_secs_f64(),
        });
        if metric_decision == Labels::AUDIT_DENY.metric
            && let Some(i) = d.and_then(|d| d.action)
            && self.config.policy.action(i).execution
        {
            m.audit_execution_denials
                .with_label_values(&[label_action])
                .inc();
        }
        if !self.shared.log.enabled() {
            return;
        }
        let execution = d
            .and_then(|d| d.action)
            .is_some_and(|i| self.config.policy.action(i).execution);
        // The claims and the timestamp are formatted on the writer thread.
        self.shared.log.record(DecisionRecord {
            at: d.map_or_else(std::time::SystemTime::now, |d| at(d.now)),
            request_id: self.rid.clone(),
            method: self.method.clone(),
            path: d.and_then(|d| d.target.as_ref()).map(|t| t.path.clone()),
            host: d.and_then(|d| d.host.clone()),
            action: o.action.map(str::to_string),
            execution,
            decision: o.labels.log,
            enforced: o.labels.enforced,
            reason: o.reason.as_str(),
            status: o.status,
            token: d.and_then(|d| d.token.clone()),
            bound_claims: self.config.policy.bound_claims.clone(),
            duration_us: elapsed.as_micros() as u64,
            credential: d.map(|d| d.credential),
            revocation: d.and_then(|d| d.revoked.as_ref()).map(|e| e.kind()),
            introspection: d.and_then(|d| d.introspected),
            frontend: self.frontend.as_str(),
            upstream: self.upstream_name(d),
            tool: d.and_then(|d| d.mcp.as_ref()).and_then(|m| m.tool.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_request_ids_are_32_lowercase_hex_and_distinct() {
        let (a, b) = (new_request_id(), new_request_id());
        for id in [&a, &b] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                "{id}"
            );
        }
        // Same process prefix, next counter value.
        assert_eq!(a[..16], b[..16]);
        let (na, nb) = (
            u64::from_str_radix(&a[16..], 16).ok(),
            u64::from_str_radix(&b[16..], 16).ok(),
        );
        assert_eq!(na.map(|n| n + 1), nb);
    }

    #[test]
    fn peer_ip_is_formatted_once_per_connection() {
        let v4 = ConnInfo::new(
            "10.1.2.3:5555".parse().unwrap_or_else(|_| unreachable!()),
            false,
        );
        assert_eq!(v4.peer_ip, "10.1.2.3");
        let v6 = ConnInfo::new(
            "[2001:db8::1]:443"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            true,
        );
        assert_eq!(v6.peer_ip, "2001:db8::1");
    }
}
