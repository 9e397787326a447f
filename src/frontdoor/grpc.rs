//! Envoy's external authorization over gRPC
//! (`envoy.service.auth.v3.Authorization/Check`, the Istio `CUSTOM` provider),
//! on tonic with the published protos (`envoy-types`), beside the standard gRPC
//! health service. The request's method, target, host and headers come from
//! `attributes.request.http`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue as EnvoyHeader, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::rpc;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use super::{Answer, Asked};
use crate::proxy::Shared;
use crate::proxy::respond::problem_body;
use crate::telemetry::metrics::Frontend;
use writ_engine::decision::{Denial, Reason};

/// google.rpc.Code values Envoy reads from `CheckResponse.status`.
const CODE_OK: i32 = 0;
const CODE_PERMISSION_DENIED: i32 = 7;
const CODE_UNAUTHENTICATED: i32 = 16;

/// HTTP/2 PING keep-alive: a mesh keeps one long-lived connection per Envoy;
/// a dead peer is noticed within interval + timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The Authorization service.
#[derive(Debug, Clone)]
pub struct Door {
    shared: Arc<Shared>,
    in_flight: Arc<InFlight>,
}

/// Checks being answered: a drain waits for these, not for idle connections
/// (a peer that never sends a request must not hold up the exit).
#[derive(Debug, Default)]
struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

struct Entered(Arc<InFlight>);

impl InFlight {
    fn enter(this: &Arc<InFlight>) -> Entered {
        this.count.fetch_add(1, Ordering::SeqCst);
        Entered(this.clone())
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// After the last in-flight check, how long connections get to close on
/// their own (Envoy answers GOAWAY by closing) before they are dropped.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

#[tonic::async_trait]
impl Authorization for Door {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let _entered = InFlight::enter(&self.in_flight);
        let trusted = request
            .remote_addr()
            .is_some_and(|peer| super::trusted(&self.shared, Frontend::ExtAuthzGrpc, peer));
        if !trusted {
            return Err(Status::permission_denied(
                "this peer is not in ext_authz.trusted_proxies",
            ));
        }
        Ok(Response::new(
            check(&self.shared, &request.into_inner()).await,
        ))
    }
}

/// Decides one `CheckRequest`: the protocol mapping in, the answer out.
pub async fn check(shared: &Arc<Shared>, req: &CheckRequest) -> CheckResponse {
    let http = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let Some(http) = http else {
        let e = Denial::new(
            Reason::BadRequest,
            "the CheckRequest has no attributes.request.http",
        );
        let a = super::refuse(shared, Frontend::ExtAuthzGrpc, &HeaderMap::new(), "", e);
        return respond(a);
    };
    let headers = match header_map(http) {
        Ok(h) => h,
        Err(e) => {
            let a = super::refuse(
                shared,
                Frontend::ExtAuthzGrpc,
                &HeaderMap::new(),
                &http.method,
                e,
            );
            return respond(a);
        }
    };
    if http.method.is_empty() || http.path.is_empty() {
        let e = Denial::new(Reason::BadRequest, "the CheckRequest has no method or path");
        let a = super::refuse(shared, Frontend::ExtAuthzGrpc, &headers, &http.method, e);
        return respond(a);
    }
    let asked = Asked {
        method: &http.method,
        // Envoy's `path` is the request target as received: path and query, undecoded.
        target: &http.path,
        host: (!http.host.is_empty()).then_some(http.host.as_str()),
        headers: &headers,
    };
    respond(super::ask(shared, Frontend::ExtAuthzGrpc, &asked).await)
}

/// The client's headers: `header_map` (raw values, with `encode_raw_headers`)
/// or the `headers` map. Pseudo-headers are Envoy's, not the client's fields.
fn header_map(http: &HttpRequest) -> Result<HeaderMap, Denial> {
    let bad = |what: &str| Denial::new(Reason::BadRequest, format!("a header {what} is invalid"));
    let mut out = HeaderMap::new();
    let mut add = |k: &str, v: &[u8]| -> Result<(), Denial> {
        if k.starts_with(':') {
            return Ok(());
        }
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad("name"))?;
        let value = HeaderValue::from_bytes(v).map_err(|_| bad("value"))?;
        out.append(name, value);
        Ok(())
    };
    match &http.header_map {
        Some(m) if !m.headers.is_empty() => {
            for h in &m.headers {
                let v = if h.raw_value.is_empty() {
                    h.value.as_bytes()
                } else {
                    &h.raw_value
                };
                add(&h.key, v)?;
            }
        }
        _ => {
            for (k, v) in &http.headers {
                add(k, v.as_bytes())?;
            }
        }
    }
    Ok(out)
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    header_bytes(key, value.as_bytes())
}

/// A header to set. A UTF-8 identity (obs-text, as the proxy forwards it)
/// goes in `value`, whose bytes Envoy sets as they are (its ext_authz client
/// reads `value`, not `raw_value`); other bytes cannot occur (claims are JSON
/// strings) but would go in `raw_value` rather than be dropped.
fn header_bytes(key: &str, value: &[u8]) -> HeaderValueOption {
    let (value, raw_value) = match std::str::from_utf8(value) {
        Ok(v) => (v.to_string(), Vec::new()),
        Err(_) => (String::new(), value.to_vec()),
    };
    HeaderValueOption {
        header: Some(EnvoyHeader {
            key: key.to_string(),
            value,
            raw_value,
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// The answer as a `CheckResponse`: OK with headers to set and remove, or a
/// `DeniedHttpResponse` carrying SPEC's status, challenge and problem+json.
fn respond(answer: Answer) -> CheckResponse {
    match answer {
        Answer::Allow { set, remove, .. } => CheckResponse {
            status: Some(rpc::Status {
                code: CODE_OK,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: set
                    .iter()
                    .map(|(k, v)| header_bytes(k.as_str(), v.as_bytes()))
                    .collect(),
                headers_to_remove: remove,
                ..Default::default()
            })),
            ..Default::default()
        },
        Answer::Deny {
            denial,
            action,
            request_id,
        } => {
            let mut headers = vec![
                header("content-type", "application/problem+json"),
                header("cache-control", "no-store"),
                header("x-request-id", &request_id),
            ];
            if let Some(c) = denial.www_authenticate() {
                headers.push(header("www-authenticate", &c));
            }
            if denial.status == 405 {
                headers.push(header("allow", &denial.allow.join(", ")));
            }
            let body = problem_body(&denial, action.as_deref(), &request_id);
            let code = if denial.status == 401 {
                CODE_UNAUTHENTICATED
            } else {
                CODE_PERMISSION_DENIED
            };
            CheckResponse {
                status: Some(rpc::Status {
                    code,
                    message: denial.reason.as_str().to_string(),
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(denial.status),
                    }),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                })),
                ..Default::default()
            }
        }
    }
}

/// Serves the Authorization and health services on `listener` until `stop`
/// resolves, then drains: in-flight checks finish, connections get GOAWAY.
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AuthorizationServer<Door>>().await;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let in_flight = Arc::new(InFlight::default());
    let door = Door {
        shared,
        in_flight: in_flight.clone(),
    };
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        stop.await;
        health.set_not_serving::<AuthorizationServer<Door>>().await;
        let _ = stopping_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(health_service)
        .add_service(AuthorizationServer::new(door))
        .serve_with_incoming_shutdown(incoming, stop);
    tokio::pin!(server);
    // tonic's graceful shutdown waits for every connection to close; writ's
    // drain waits for in-flight checks only, like the proxy's.
    let drained = async {
        if stopping.await.is_ok() {
            in_flight.wait_idle().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = &mut server => r,
        _ = drained => {
            let _ = tokio::time::timeout(CLOSE_WAIT, &mut server).await;
            Ok(())
        }
    }
}
