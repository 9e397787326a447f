//! Remote key sets (`jwks_url`): fetched at start (not ready until the first
//! success), refreshed every `jwks_refresh` (sooner when `Cache-Control:
//! max-age` says so), and early when a token names an unknown `kid`, at most
//! once per 30 s per endpoint so a flood of random kids is not a flood of
//! fetches. On failure the last good keys stay. Key sets survive config reloads:
//! a reload re-attaches issuers to the running fetchers by URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus::IntCounterVec;
use tokio::sync::Notify;
use tokio::time::Instant;

use writ_engine::keys::{KeyRefresh, KeySet};
use writ_engine::policy::{KeySource, Policy};

/// Early refreshes on an unknown `kid` are at most this frequent.
pub const EARLY_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// A JWKS document larger than this is refused.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One remote key set and the means to ask for an early refresh.
#[derive(Debug)]
pub struct RemoteKeys {
    pub keys: Arc<ArcSwap<KeySet>>,
    pub kick: Arc<Kick>,
}

/// The engine's "refresh early" request, delivered to this fetcher's loop.
#[derive(Debug, Default)]
pub struct Kick(Notify);

impl KeyRefresh for Kick {
    fn request_refresh(&self) {
        self.0.notify_one();
    }
}

/// Fetchers by URL, shared across reloads.
#[derive(Debug, Default)]
pub struct JwksRegistry {
    by_url: Mutex<HashMap<String, Arc<RemoteKeys>>>,
}

impl JwksRegistry {
    /// Points every `jwks_url` issuer of `policy` at its fetcher, starting new
    /// fetchers for URLs not seen before. Must run inside a tokio runtime.
    pub fn attach(&self, policy: &mut Policy, metrics: &IntCounterVec) {
        let Ok(mut map) = self.by_url.lock() else {
            return;
        };
        for issuer in &mut policy.issuers {
            let KeySource::Url(url) = &issuer.source else {
                continue;
            };
            let remote = map
                .entry(url.clone())
                .or_insert_with(|| {
                    let r = Arc::new(RemoteKeys {
                        keys: Arc::new(ArcSwap::from_pointee(KeySet::default())),
                        kick: Arc::new(Kick::default()),
                    });
                    tokio::spawn(fetch_loop(
                        url.clone(),
                        issuer.issuer.clone(),
                        issuer.jwks_refresh,
                        issuer.jwks_ca.clone(),
                        r.clone(),
                        metrics.clone(),
                    ));
                    r
                })
                .clone();
            issuer.keys = remote.keys.clone();
            issuer.kick = Some(remote.kick.clone() as Arc<dyn KeyRefresh>);
        }
    }
}

impl JwksRegistry {
    /// Points every `jwks_url` Shared Signals transmitter of `config` at its fetcher.
    pub fn attach_signals(
        &self,
        config: &mut writ_engine::config::Config,
        metrics: &IntCounterVec,
    ) {
        for t in &mut config.signals {
            if let Some(url) = &t.jwks_url
                && let Some(keys) = self.keys_for(url, &t.issuer, metrics)
            {
                t.keys = keys;
            }
        }
    }

    /// The key set at `url` for a Shared Signals transmitter, fetched and
    /// refreshed like an issuer's (one fetcher per URL, shared).
    pub fn keys_for(
        &self,
        url: &str,
        name: &str,
        metrics: &IntCounterVec,
    ) -> Option<Arc<ArcSwap<KeySet>>> {
        let mut map = self.by_url.lock().ok()?;
        let remote = map
            .entry(url.to_string())
            .or_insert_with(|| {
                let r = Arc::new(RemoteKeys {
                    keys: Arc::new(ArcSwap::from_pointee(KeySet::default())),
                    kick: Arc::new(Kick::default()),
                });
                tokio::spawn(fetch_loop(
                    url.to_string(),
                    name.to_string(),
                    Duration::from_secs(300),
                    None,
                    r.clone(),
                    metrics.clone(),
                ));
                r
            })
            .clone();
        Some(remote.keys.clone())
    }
}

async fn fetch_loop(
    url: String,
    issuer: String,
    refresh: Duration,
    ca: Option<std::path::PathBuf>,
    remote: Arc<RemoteKeys>,
    metrics: IntCounterVec,
) {
    let client = match crate::tls::connector(ca.as_deref(), None, FETCH_TIMEOUT) {
        Ok(c) => Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(c),
        Err(e) => {
            tracing::error!(jwks.url = %url, error = %e, "Cannot build JWKS client");
            return;
        }
    };
    let mut failures = 0u32;
    let mut last_early: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let next = match fetch(&client, &url).await {
            Ok((keys, max_age)) => {
                failures = 0;
                tracing::info!(jwks.url = %url, keys = keys.len(), "JWKS fetched");
                remote.keys.store(Arc::new(keys));
                metrics
                    .with_label_values(&[issuer.as_str(), "success"])
                    .inc();
                max_age
                    .map_or(refresh, |m| m.min(refresh))
                    .max(Duration::from_secs(1))
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(jwks.url = %url, error = %e, "JWKS fetch failed; keeping the last good keys");
                metrics
                    .with_label_values(&[issuer.as_str(), "failure"])
                    .inc();
                // Retry soon while we have no keys at all (not ready), else back off.
                let backoff = Duration::from_millis(250 * 2u64.saturating_pow(failures.min(7)));
                backoff.min(if remote.keys.load().is_empty() {
                    Duration::from_secs(10)
                } else {
                    refresh
                })
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = remote.kick.0.notified() => {
                // An unknown kid refreshes at once, unless an early refresh
                // already ran in the last 30 s: then at that window's end.
                if let Some(prev) = last_early {
                    let earliest = prev + EARLY_REFRESH_MIN_INTERVAL;
                    tokio::time::sleep_until(earliest.min(started + next)).await;
                }
                last_early = Some(Instant::now());
            }
        }
    }
}

/// Why one JWKS fetch failed (the last good keys stay).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bad URL: {0}")]
    Url(http::Error),
    #[error("timed out")]
    Timeout,
    #[error("request failed: {0}")]
    Request(String),
    #[error("status {0}")]
    Status(http::StatusCode),
    #[error("body timed out")]
    BodyTimeout,
    #[error("body refused: {0}")]
    Body(String),
    #[error(transparent)]
    Keys(#[from] writ_engine::keys::KeyError),
}

async fn fetch(
    client: &Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Empty<Bytes>,
    >,
    url: &str,
) -> Result<(KeySet, Option<Duration>), FetchError> {
    let req = Request::get(url)
        .header("accept", "application/json")
        .body(Empty::new())
        .map_err(FetchError::Url)?;
    let resp = tokio::time::timeout(FETCH_TIMEOUT, client.request(req))
        .await
        .map_err(|_| FetchError::Timeout)?
        .map_err(|e| FetchError::Request(crate::telemetry::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(FetchError::Status(resp.status()));
    }
    let max_age = resp
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|d| d.trim().strip_prefix("max-age="))
                .find_map(|n| n.trim().parse::<u64>().ok())
        })
        .map(Duration::from_secs);
    let body = tokio::time::timeout(
        FETCH_TIMEOUT,
        Limited::new(resp.into_body(), MAX_JWKS_BYTES).collect(),
    )
    .await
    .map_err(|_| FetchError::BodyTimeout)?
    .map_err(|e| FetchError::Body(e.to_string()))?
    .to_bytes();
    let keys = KeySet::from_jwks(&body)?;
    Ok((keys, max_age))
}
