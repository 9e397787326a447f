//! `writ webhook`: the mutating admission webhook (SPEC: Kubernetes). `POST /inject`
//! takes an `AdmissionReview` v1 and answers with the injection of `crate::inject` as a
//! JSON Patch: the pod before and after injection, typed (`k8s-openapi`), diffed by
//! `json_patch::diff`. The API server's namespace selector is the opt-in, so every
//! pod it sends is injected unless annotated `writ.dev/inject: disabled`.
//!
//! It never blocks a pod: a pod it cannot inject (no port to front) is allowed
//! unchanged, with an admission warning and a log line. Input that is not an
//! AdmissionReview is a 400 with a log line. Bodies are bounded, reads time out, and
//! the certificate files are reloaded when they change (cert-manager renewals).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::inject::{self, Options, Outcome};
use crate::tls::TlsError;

/// Largest AdmissionReview accepted (the API server's own request limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// Deadline for a request head, a TLS handshake, and a whole request body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a shutdown waits for in-flight reviews.
pub const DRAIN: Duration = Duration::from_secs(5);
/// How often the certificate files are looked at.
const CERT_POLL: Duration = Duration::from_secs(1);
const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
const REVIEW_KIND: &str = "AdmissionReview";

/// The fields of an `AdmissionReview` request writ reads (`admission.k8s.io/v1`;
/// `k8s-openapi` has no admission types, and `kube-core`'s pull in a client stack).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    api_version: String,
    kind: String,
    request: Option<RequestIn>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn {
    uid: String,
    kind: Option<GroupVersionKind>,
    namespace: Option<String>,
    object: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    kind: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// Why a request body is not an AdmissionReview writ can answer (a 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("not JSON, or not an AdmissionReview: {0}")]
    Parse(serde_json::Error),
    #[error("apiVersion/kind `{0}/{1}`, want admission.k8s.io/v1 AdmissionReview")]
    WrongKind(String, String),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request has an empty uid")]
    NoUid,
    #[error("request object is not a Pod: {0}")]
    BadPod(serde_json::Error),
    #[error("cannot encode the patch: {0}")]
    Encode(serde_json::Error),
}

/// What one review decided, for the log line.
#[derive(Debug)]
pub struct Reviewed {
    /// The AdmissionReview response, JSON.
    pub body: Vec<u8>,
    /// `injected`, `already-injected`, `disabled`, `not-selected`, `not-a-pod`, `skipped`.
    pub outcome: &'static str,
    /// The pod's namespace/name (or generateName), for the log.
    pub pod: String,
}

/// Answers one AdmissionReview: the pure part of the webhook.
pub fn review(body: &[u8], opts: &Options) -> Result<Reviewed, ReviewError> {
    let review: ReviewIn = serde_json::from_slice(body).map_err(ReviewError::Parse)?;
    if review.api_version != REVIEW_API_VERSION || review.kind != REVIEW_KIND {
        return Err(ReviewError::WrongKind(review.api_version, review.kind));
    }
    let request = review.request.ok_or(ReviewError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    let mut response = ResponseOut {
        uid: request.uid,
        allowed: true,
        patch_type: None,
        patch: None,
        warnings: Vec::new(),
    };
    let is_pod = request
        .kind
        .as_ref()
        .is_some_and(|k| k.group.is_empty() && k.kind == "Pod");
    let (outcome, pod_name) = match request.object.filter(|_| is_pod) {
        None => ("not-a-pod", String::new()),
        Some(object) => {
            let mut pod: Pod = serde_json::from_value(object).map_err(ReviewError::BadPod)?;
            let name = pod_name(&pod, request.namespace.as_deref());
            let before = serde_json::to_value(&pod).map_err(ReviewError::Encode)?;
            let outcome = match pod.spec.as_mut() {
                None => Ok(Outcome::NotSelected),
                Some(spec) => inject::inject_pod(&mut pod.metadata, spec, opts),
            };
            let label = match outcome {
                Ok(Outcome::Injected(_)) => {
                    let after = serde_json::to_value(&pod).map_err(ReviewError::Encode)?;
                    let patch = json_patch::diff(&before, &after);
                    let json = serde_json::to_vec(&patch).map_err(ReviewError::Encode)?;
                    response.patch_type = Some("JSONPatch");
                    response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
                    "injected"
                }
                Ok(Outcome::AlreadyInjected) => "already-injected",
                Ok(Outcome::Disabled) => "disabled",
                Ok(Outcome::NotSelected) => "not-selected",
                Err(e) => {
                    response
                        .warnings
                        .push(format!("writ was not injected into {name}: {e}"));
                    "skipped"
                }
            };
            (label, name)
        }
    };
    let body = serde_json::to_vec(&ReviewOut {
        api_version: REVIEW_API_VERSION,
        kind: REVIEW_KIND,
        response,
    })
    .map_err(ReviewError::Encode)?;
    Ok(Reviewed {
        body,
        outcome,
        pod: pod_name,
    })
}

fn pod_name(pod: &Pod, namespace: Option<&str>) -> String {
    let m = &pod.metadata;
    let name = m
        .name
        .as_deref()
        .or(m.generate_name.as_deref())
        .unwrap_or("?");
    match namespace.or(m.namespace.as_deref()) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The TLS acceptor for the current certificate files, swapped when they change.
pub struct Certs {
    cert: PathBuf,
    key: PathBuf,
    acceptor: ArcSwap<TlsAcceptor>,
}

impl Certs {
    /// Loads the certificate and key; an error names the file at fault.
    pub fn load(cert: &Path, key: &Path) -> Result<Certs, TlsError> {
        Ok(Certs {
            acceptor: ArcSwap::from_pointee(crate::tls::acceptor(cert, key)?),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// Polls the files (through symlinks: a Secret volume swaps its `..data` link)
    /// and swaps in a new acceptor when their content changes. A half-written or
    /// mismatched pair is logged and the old certificate keeps serving; the next
    /// change is tried again.
    pub async fn watch(self: Arc<Self>) {
        let read = |p: &Path| std::fs::read(p).ok();
        let mut seen = (read(&self.cert), read(&self.key));
        loop {
            tokio::time::sleep(CERT_POLL).await;
            let now = (read(&self.cert), read(&self.key));
            if now == seen {
                continue;
            }
            seen = now;
            match crate::tls::acceptor(&self.cert, &self.key) {
                Ok(a) => {
                    self.acceptor.store(Arc::new(a));
                    tracing::info!(cert = %self.cert.display(), "webhook certificate reloaded");
                }
                Err(e) => tracing::warn!(error = %e, "webhook certificate not reloaded"),
            }
        }
    }
}

/// Serves `/inject` and `/healthz` over TLS until `shutdown` resolves, then lets
/// in-flight reviews finish (within `DRAIN`): a review cut off mid-way fails a pod
/// creation under `failurePolicy: Fail`.
pub async fn serve(
    listener: TcpListener,
    certs: Arc<Certs>,
    opts: Arc<Options>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::spawn(certs.clone().watch());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = certs.acceptor.load_full();
        let opts = opts.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let svc = hyper::service::service_fn(move |req| {
                let opts = opts.clone();
                async move { Ok::<_, Infallible>(handle(req, &opts, peer).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            let _ = watcher.watch(conn).await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("webhook: connections still open after the drain; closing them");
    }
}

async fn handle(req: Request<Incoming>, opts: &Options, peer: SocketAddr) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::POST, "/inject") => {
            let limited = Limited::new(req.into_body(), MAX_BODY);
            let body = match tokio::time::timeout(READ_TIMEOUT, limited.collect()).await {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    tracing::warn!(%peer, limit = MAX_BODY, "webhook: AdmissionReview too large");
                    return text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
                }
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "webhook: body read failed");
                    return text(StatusCode::BAD_REQUEST, "body read failed\n");
                }
                Err(_) => {
                    tracing::warn!(%peer, "webhook: body read timed out");
                    return text(StatusCode::REQUEST_TIMEOUT, "body read timed out\n");
                }
            };
            match review(&body, opts) {
                Ok(r) => {
                    tracing::info!(pod = %r.pod, outcome = r.outcome, "admission review");
                    let mut resp = Response::new(Full::new(Bytes::from(r.body)));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("application/json"),
                    );
                    resp
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "webhook: bad AdmissionReview");
                    text(
                        StatusCode::BAD_REQUEST,
                        &format!("bad AdmissionReview: {e}\n"),
                    )
                }
            }
        }
        (_, "/inject" | "/healthz") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
