//! The admin listener: `/healthz`, `/readyz`, `/metrics`, nothing else.

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
        ("GET", "/metrics") => text(
            StatusCode::OK,
            shared.metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n", plain),
    })
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
