//! HTTP forward-auth, on hyper: nginx `auth_request` (`X-Original-Method`,
//! `X-Original-URI`), Traefik ForwardAuth and Caddy `forward_auth`
//! (`X-Forwarded-Method`, `-Uri`, `-Host`). Allow is 200 with the identity
//! headers for the ingress to copy; deny is SPEC's response, which the ingress
//! passes to the client (Traefik, Caddy) or maps (nginx `error_page`).
//!
//! The forward-auth headers say which request is asked about, so they are
//! believed only from `trusted_proxies` (the oauth2-proxy and Traefik bugs in
//! THREATS.md were exactly this); anyone else gets 403.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::{Answer, Asked};
use crate::proxy::respond::{full, problem};
use crate::proxy::{Body, Shared};
use crate::telemetry::metrics::Frontend;
use writ_engine::decision::{Denial, Reason};
use writ_engine::vocab::header_is;

/// Traefik and Caddy name the original request with these.
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// nginx `auth_request` snippets conventionally set these.
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");

/// Headers of the forward-auth protocol itself (and of the subrequest's own
/// hop), not of the client's request: left out of what is decided.
const PROTOCOL_HEADERS: [&str; 10] = [
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-original-method",
    "x-original-uri",
    "x-real-ip",
];

/// Serves forward-auth on `listener` until `stop` resolves, then lets the
/// connections in flight finish (bounded by the caller's grace).
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_read_timeout = shared.config().settings.limits.header_read_timeout;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        // The proxy listener's head limit (64 KiB).
        .max_buf_size(64 * 1024);
    crate::proxy::limit_header_fields(&mut builder.http1());
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "Forward-auth accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let svc = hyper::service::service_fn(move |req| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(handle(&shared, peer, &req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One forward-auth request.
pub async fn handle(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Body> {
    if !super::trusted(shared, Frontend::ExtAuthzHttp, peer) {
        // Not a decision about any request (none is believed): no reason,
        // no log line; counted in writ_frontdoor_untrusted_total.
        let body = serde_json::json!({
            "type": "about:blank",
            "status": 403,
            "title": "Forbidden",
            "detail": "this peer is not in ext_authz.trusted_proxies",
        });
        let mut resp = Response::new(full(Bytes::from(body.to_string())));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        return resp;
    }
    let h = req.headers();
    let one = |name: &HeaderName| -> Result<Option<&str>, Denial> {
        let mut all = h.get_all(name).iter();
        match (all.next(), all.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v
                .to_str()
                .map(Some)
                .map_err(|_| Denial::new(Reason::BadRequest, format!("{name} is not ASCII"))),
            (Some(_), Some(_)) => Err(Denial::new(
                Reason::BadRequest,
                format!("more than one {name} header"),
            )),
        }
    };
    // nginx's `auth_request` passes only 401 and 403 through (any other status
    // becomes its own 500): for nginx-style requests every other denial is
    // answered 403, the SPEC status and reason in headers for the error page.
    let nginx = h.contains_key(&X_ORIGINAL_URI) || h.contains_key(&X_ORIGINAL_METHOD);
    let asked = (|| {
        let forwarded = (one(&X_FORWARDED_METHOD)?, one(&X_FORWARDED_URI)?);
        let original = (one(&X_ORIGINAL_METHOD)?, one(&X_ORIGINAL_URI)?);
        let (method, target) = match (forwarded, original) {
            ((Some(m), Some(u)), (None, None)) | ((None, None), (Some(m), Some(u))) => (m, u),
            ((None, None), (None, None)) => {
                return Err(Denial::new(
                    Reason::BadRequest,
                    "a forward-auth request names the original request with X-Forwarded-Method and X-Forwarded-Uri, or X-Original-Method and X-Original-URI",
                ));
            }
            _ => {
                return Err(Denial::new(
                    Reason::BadRequest,
                    "incomplete or conflicting forward-auth headers",
                ));
            }
        };
        // The subrequest's own Host names writ, not the client's virtual host:
        // without X-Forwarded-Host a host-bound action could not be matched,
        // so the request is not guessed at.
        let host = one(&X_FORWARDED_HOST)?.ok_or_else(|| {
            Denial::new(
                Reason::BadRequest,
                "a forward-auth request names the client's host with X-Forwarded-Host",
            )
        })?;
        Ok((method, target, Some(host)))
    })();
    let mut headers = client_headers(h);
    let answer = match asked {
        Err(e) => super::refuse(
            shared,
            Frontend::ExtAuthzHttp,
            &headers,
            req.method().as_str(),
            e,
        ),
        Ok((method, target, host)) => {
            let policy = shared.config();
            match unremovable(&policy.policy, &headers) {
                Some(e) => super::refuse(shared, Frontend::ExtAuthzHttp, &headers, method, e),
                None => {
                    headers.remove(header::HOST);
                    let asked = Asked {
                        method,
                        target,
                        host,
                        headers: &headers,
                    };
                    super::ask(shared, Frontend::ExtAuthzHttp, &asked).await
                }
            }
        }
    };
    respond(answer, nginx)
}

/// The client's header fields: the subrequest's minus the forward-auth
/// protocol's own.
fn client_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = h.clone();
    for name in PROTOCOL_HEADERS {
        out.remove(name);
    }
    out
}

/// An ingress copies the identity headers writ answers with over the client's
/// same-named ones, but it cannot be told to remove other spellings
/// (`X_Writ_Subject`, `x.writ.subject`) that a backend would fold into the same
/// variable: a request carrying one is refused rather than let through.
fn unremovable(policy: &writ_engine::Policy, headers: &HeaderMap) -> Option<Denial> {
    let id = &policy.identity;
    let names = [&id.subject, &id.actor, &id.action];
    headers
        .keys()
        .find(|k| {
            names
                .iter()
                .any(|n| header_is(k.as_str(), n.as_str()) && k.as_str() != n.as_str())
        })
        .map(|k| {
            Denial::new(
                Reason::BadRequest,
                format!("`{k}` is a spelling of an identity header the ingress cannot remove"),
            )
        })
}

/// SPEC's status and reason of a denial, for an ingress to show (nginx maps
/// them into its error page; Traefik and Caddy get the real status anyway).
const X_WRIT_STATUS: HeaderName = HeaderName::from_static("x-writ-status");
const X_WRIT_REASON: HeaderName = HeaderName::from_static("x-writ-reason");

fn respond(answer: Answer, nginx: bool) -> Response<Body> {
    match answer {
        Answer::Allow {
            set, request_id, ..
        } => {
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() = StatusCode::OK;
            let h = resp.headers_mut();
            for (k, v) in set {
                h.insert(k, v);
            }
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                h.insert(crate::proxy::forward::X_REQUEST_ID, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Answer::Deny {
            denial,
            action,
            request_id,
        } => {
            let mut resp = problem(&denial, action.as_deref(), &request_id);
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                h.insert(crate::proxy::forward::X_REQUEST_ID, v);
            }
            h.insert(X_WRIT_STATUS, HeaderValue::from(denial.status));
            h.insert(
                X_WRIT_REASON,
                HeaderValue::from_static(denial.reason.as_str()),
            );
            if nginx && denial.status != 401 && denial.status != 403 {
                *resp.status_mut() = StatusCode::FORBIDDEN;
            }
            resp
        }
    }
}
