//! The Shared Signals receiver (SPEC: Revocation, OpenID SSF 1.0): Security
//! Event Tokens pushed to `POST /ssf/events` on the admin listener (RFC 8935) or
//! polled from a transmitter (RFC 8936), verified by the engine
//! (`writ_engine::signals`), and turned into revocation entries in the
//! configured store, so that the replica that receives an event revokes for the
//! whole fleet (Redis) or the file every replica reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus::IntCounterVec;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::revocation_store::{admin, file};
use writ_engine::clock::Clock;
use writ_engine::config::Config;
use writ_engine::revocation::Entry;
use writ_engine::signals::{self, Effect, EventKind, SetError, Transmitter};

/// A SET larger than this is refused.
pub const MAX_SET_BYTES: usize = 64 * 1024;
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_MAX_EVENTS: u64 = 100;

/// What the receiver remembers between SETs.
#[derive(Debug, Default)]
pub struct Receiver {
    /// `jti` → when it may be forgotten (a SET older than `MAX_AGE_SECS` is
    /// refused anyway, so that is how long a replay must be recognized).
    seen: std::sync::Mutex<HashMap<String, f64>>,
    /// One store write at a time (the file is read, changed and written back).
    writing: Mutex<()>,
}

/// How a SET ended, for the answer and the poll acknowledgement.
#[derive(Debug)]
pub enum Outcome {
    /// Verified and applied (or a replay, acknowledged and ignored).
    Accepted,
    /// Refused, with its RFC 8935 error.
    Refused(SetError),
}

/// A store write that failed: the SET is not acknowledged, so the transmitter
/// (or the next poll) delivers it again.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("revocation store: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("revocation file: {0}")]
    File(#[from] file::FileError),
    #[error("no revocation store is configured")]
    NoStore,
}

impl Receiver {
    /// Verifies one SET under `config` and applies its events.
    pub async fn receive(
        &self,
        config: &Config,
        set: &str,
        metrics: &IntCounterVec,
    ) -> Result<Outcome, ApplyError> {
        let now = Clock::System.now();
        let ev = match signals::verify(&config.signals, set, now) {
            Ok(ev) => ev,
            Err(e) => {
                let issuer = issuer_label(&config.signals, set);
                metrics
                    .with_label_values(&[issuer, "none", "rejected"])
                    .inc();
                tracing::warn!(ssf.err = e.code(), error = %e, "Security event refused");
                return Ok(Outcome::Refused(e));
            }
        };
        let issuer = config.signals[ev.transmitter].issuer.as_str();
        // One SET at a time: a replay is recognized under the same lock that
        // applies, so two copies of one SET are never both applied.
        let _one = self.writing.lock().await;
        // Scoped by transmitter, and shared by the fleet through Redis (a SET
        // captured once must not be replayed to another replica, or after a
        // restart, to lift a revocation).
        let seen_key = format!("{issuer} {}", ev.jti);
        let seen = self.seen_before(&seen_key, now)
            || match &config.settings.revocation_redis {
                Some(url) => admin::seen(url, &seen_key).await?,
                None => false,
            };
        if seen {
            for e in &ev.events {
                metrics
                    .with_label_values(&[issuer, e.kind.label(), "duplicate"])
                    .inc();
            }
            return Ok(Outcome::Accepted);
        }
        for e in &ev.events {
            let result = match &e.effect {
                Effect::Revoke(entry) => {
                    store_change(config, entry, true).await?;
                    log_applied(issuer, e.kind, &ev.jti, "revoked", entry);
                    "applied"
                }
                Effect::Lift(entry) => {
                    store_change(config, entry, false).await?;
                    log_applied(issuer, e.kind, &ev.jti, "lifted", entry);
                    "applied"
                }
                Effect::Ignore(why) => {
                    tracing::info!(ssf.issuer = issuer, ssf.event = e.kind.label(), ssf.jti = %ev.jti, why = %why, "Security event ignored");
                    "ignored"
                }
            };
            metrics
                .with_label_values(&[issuer, e.kind.label(), result])
                .inc();
        }
        // Remembered only once applied: a SET the store could not take is not
        // acknowledged, and its retry must not count as a replay.
        if let Some(url) = &config.settings.revocation_redis {
            admin::mark_seen(
                url,
                &seen_key,
                signals::MAX_AGE_SECS + signals::IAT_LEEWAY_SECS,
            )
            .await?;
        }
        self.remember(seen_key, now);
        Ok(Outcome::Accepted)
    }

    fn seen_before(&self, key: &str, now: f64) -> bool {
        self.seen
            .lock()
            .map(|m| m.get(key).is_some_and(|&until| until > now))
            .unwrap_or(false)
    }

    fn remember(&self, key: String, now: f64) {
        if let Ok(mut m) = self.seen.lock() {
            m.retain(|_, until| *until > now);
            m.insert(key, now + signals::MAX_AGE_SECS + signals::IAT_LEEWAY_SECS);
        }
    }
}

/// The metric label for a refused SET: a configured issuer when the SET names
/// one, else `unknown` (a client never creates a series).
fn issuer_label<'a>(ts: &'a [Transmitter], set: &str) -> &'a str {
    use base64::Engine;
    let claimed = set
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("iss").and_then(Value::as_str).map(str::to_string));
    ts.iter()
        .find(|t| claimed.as_deref() == Some(t.issuer.as_str()))
        .map_or("unknown", |t| t.issuer.as_str())
}

fn log_applied(issuer: &str, kind: EventKind, jti: &str, what: &str, entry: &Entry) {
    // The entry kind, not the subject: the log records what happened, the store holds who.
    tracing::info!(
        ssf.issuer = issuer,
        ssf.event = kind.label(),
        ssf.jti = jti,
        revocation = %entry.kind(),
        "Security event applied: {what}"
    );
}

/// Adds (or removes) `entry` in the configured store: Redis when set, so every
/// replica follows; else the file, which every replica re-reads.
async fn store_change(config: &Config, entry: &Entry, add: bool) -> Result<(), ApplyError> {
    let s = &config.settings;
    if let Some(url) = &s.revocation_redis {
        if add {
            admin::add(url, entry).await?;
        } else {
            admin::remove(url, entry).await?;
        }
        return Ok(());
    }
    let Some(path) = &s.revocation_file else {
        return Err(ApplyError::NoStore);
    };
    let path = path.clone();
    let entry = entry.clone();
    tokio::task::spawn_blocking(move || {
        let mut entries = file::read(&path)?;
        if add {
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        } else {
            entries.retain(|e| e != &entry);
        }
        file::write(&path, &entries)
    })
    .await
    .map_err(|_| ApplyError::NoStore)??;
    Ok(())
}

/// The RFC 8935 §2.3 error body.
pub fn error_body(e: &SetError) -> Bytes {
    Bytes::from(json!({"err": e.code(), "description": e.to_string()}).to_string())
}

/// Polls one transmitter (RFC 8936) forever: each request acknowledges what the
/// previous answer's SETs became (`ack`, `setErrs`).
pub async fn poll_loop(
    t: Transmitter,
    receiver: Arc<Receiver>,
    config: impl Fn() -> Arc<Config>,
    metrics: IntCounterVec,
) {
    let Some(poll) = t.poll.clone() else { return };
    let client = match crate::tls::connector(None, None, POLL_TIMEOUT) {
        Ok(c) => Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(c),
        Err(e) => {
            tracing::error!(ssf.poll = %poll.url, error = %e, "Cannot build the SSF poll client");
            return;
        }
    };
    let token = poll.token_env.as_ref().and_then(|v| std::env::var(v).ok());
    let mut ack: Vec<String> = Vec::new();
    let mut errs = serde_json::Map::new();
    loop {
        let body = json!({"ack": ack, "setErrs": errs, "maxEvents": POLL_MAX_EVENTS, "returnImmediately": true});
        let mut req = Request::post(&poll.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        if let Some(tok) = &token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {tok}"));
        }
        let answer = match req.body(Full::new(Bytes::from(body.to_string()))) {
            Ok(r) => fetch(&client, r).await,
            Err(e) => Err(e.to_string()),
        };
        match answer {
            Ok(v) => {
                ack.clear();
                errs.clear();
                let sets = v
                    .get("sets")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let config = config();
                for (jti, set) in sets {
                    let Some(set) = set.as_str() else { continue };
                    match receiver.receive(&config, set, &metrics).await {
                        Ok(Outcome::Accepted) => ack.push(jti),
                        Ok(Outcome::Refused(e)) => {
                            errs.insert(
                                jti,
                                json!({"err": e.code(), "description": e.to_string()}),
                            );
                        }
                        // Not acknowledged: the transmitter delivers it again.
                        Err(e) => {
                            tracing::warn!(error = %e, "Security event not applied; will be polled again")
                        }
                    }
                }
                if v.get("moreAvailable").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
            }
            Err(e) => tracing::warn!(ssf.poll = %poll.url, error = %e, "SSF poll failed"),
        }
        tokio::time::sleep(poll.every).await;
    }
}

type PollClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

async fn fetch(client: &PollClient, req: Request<Full<Bytes>>) -> Result<Value, String> {
    let resp = tokio::time::timeout(POLL_TIMEOUT, client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = tokio::time::timeout(
        POLL_TIMEOUT,
        Limited::new(resp.into_body(), 4 * 1024 * 1024).collect(),
    )
    .await
    .map_err(|_| "body timed out".to_string())?
    .map_err(|e| e.to_string())?
    .to_bytes();
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}
