//! The admin listener: `/healthz`, `/readyz`, `/metrics`, and the Shared Signals
//! push endpoint `POST /ssf/events` when `signals:` are configured.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::proxy::respond::full;
use crate::proxy::{Body, Shared};
use writ_engine::signals::SetError;

fn text(status: StatusCode, body: impl Into<Bytes>, ctype: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let plain = "text/plain; charset=utf-8";
    Ok(match (req.method().as_str(), req.uri().path()) {
        ("GET" | "HEAD", "/healthz") => text(StatusCode::OK, "ok\n", plain),
        ("GET" | "HEAD", "/readyz") => {
            if shared.ready() {
                text(StatusCode::OK, "ready\n", plain)
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n", plain)
            }
        }
        ("GET", "/metrics") => {
            shared.metrics.ready.set(i64::from(shared.ready()));
            text(
                StatusCode::OK,
                shared.metrics.render(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        }
        ("POST", "/ssf/events") if !shared.config().signals.is_empty() => {
            ssf_push(&shared, req).await
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n", plain),
    })
}

/// RFC 8935 push: one SET per request; 202 when accepted (a replay too), 400
/// with `{"err", "description"}` when refused, 503 when the store could not take
/// it (the transmitter retries).
async fn ssf_push(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    use http_body_util::{BodyExt, Limited};
    let json = "application/json";
    let refuse = |e: SetError| text(StatusCode::BAD_REQUEST, crate::ssf::error_body(&e), json);
    let ctype_ok = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/secevent+jwt"));
    if !ctype_ok {
        return refuse(SetError::InvalidRequest(
            "Content-Type must be application/secevent+jwt".into(),
        ));
    }
    let body = Limited::new(req.into_body(), crate::ssf::MAX_SET_BYTES).collect();
    let bytes = match tokio::time::timeout(std::time::Duration::from_secs(5), body).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return refuse(SetError::InvalidRequest(format!(
                "the body is not a SET of at most {} bytes",
                crate::ssf::MAX_SET_BYTES
            )));
        }
        Err(_) => {
            return refuse(SetError::InvalidRequest(
                "the body did not arrive in time".into(),
            ));
        }
    };
    let Ok(set) = std::str::from_utf8(&bytes) else {
        return refuse(SetError::InvalidRequest("the body is not UTF-8".into()));
    };
    let config = shared.config();
    match shared
        .ssf
        .receive(&config, set, &shared.metrics.security_events)
        .await
    {
        Ok(crate::ssf::Outcome::Accepted) => text(StatusCode::ACCEPTED, "", "text/plain"),
        Ok(crate::ssf::Outcome::Refused(e)) => refuse(e),
        Err(e) => {
            tracing::error!(error = %e, "Security event could not be stored");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the revocation store is unavailable\n",
                "text/plain; charset=utf-8",
            )
        }
    }
}

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
