//! The pooled upstream client (hyper-util legacy client over plain TCP or rustls).

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::body::ClientBody;
use crate::tls::connector;
use writ_engine::config::Upstream as UpstreamConfig;

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

pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, ClientBody>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upstream")
    }
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig) -> Result<Upstream, crate::tls::TlsError> {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(connector(
                cfg.ca.as_deref(),
                cfg.server_name.as_deref(),
                cfg.connect_timeout,
            )?);
        Ok(Upstream { client })
    }

    pub async fn send(
        &self,
        req: Request<ClientBody>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(classify(&e)),
        }
    }
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

fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamError {
    tracing::debug!(error = %crate::telemetry::error_chain(e), "Upstream error");
    if std::error::Error::source(e).is_some_and(is_tls) {
        return UpstreamError::Tls;
    }
    if e.is_connect() {
        let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = src {
            if let Some(io) = s.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return UpstreamError::Timeout;
            }
            src = s.source();
        }
        return UpstreamError::Connect;
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
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_closed())
        {
            return UpstreamError::Reset;
        }
        src = s.source();
    }
    UpstreamError::Protocol
}
