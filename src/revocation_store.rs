//! The Redis (or Valkey) revocation store a fleet shares (SPEC: Revocation).
//!
//! Key layout (documented in the README):
//! - `writ:revoked`: a set; each member is one entry as compact JSON
//!   (`writ_engine::revocation::Entry`'s `Display`), so the member is its identity;
//! - `writ:revoked:changes`: a channel; `+<json>` after an add, `-<json>` after a
//!   removal.
//!
//! The follower subscribes first, then loads the whole set (so no change falls
//! between the two), then applies changes as they come, coalescing bursts into
//! one rebuild. On any error it marks the store down, keeps serving the last set,
//! and reconnects with backoff, loading the whole set again: a missed message is
//! never a missed revocation for longer than the outage.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use redis::AsyncCommands;

use crate::telemetry::metrics::StoreMetrics;
use writ_engine::clock::Clock;
use writ_engine::revocation::{Compiled, Entry, RevocationSet};

/// The set every entry lives in.
pub const SET_KEY: &str = "writ:revoked";
/// Where changes are announced.
pub const CHANGES: &str = "writ:revoked:changes";
/// Security Event Tokens the fleet applied: `writ:ssf:seen:<issuer> <jti>`, expiring.
pub const SEEN_PREFIX: &str = "writ:ssf:seen:";

/// How often a quiet connection is pinged: a dead Redis is noticed within this.
const PING_EVERY: Duration = Duration::from_secs(2);
/// Changes arriving within this of each other are applied in one rebuild.
const COALESCE: Duration = Duration::from_millis(20);
/// ...but a burst is never held back longer than this.
const COALESCE_AT_MOST: Duration = Duration::from_millis(100);
/// Connecting, subscribing: a store that does not answer is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Lapsed entries are dropped from the index this often.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The follower's state as the rest of writ sees it.
pub struct Follower {
    /// The set decisions read; attached to every policy (`Revocations::shared`).
    pub set: Arc<ArcSwap<RevocationSet>>,
    /// Whether the whole set was loaded once (readiness).
    pub loaded: AtomicBool,
}

impl Follower {
    /// Starts following `url` on the current runtime.
    pub fn start(url: String, metrics: StoreMetrics) -> Arc<Follower> {
        let f = Arc::new(Follower {
            set: Arc::new(ArcSwap::from_pointee(RevocationSet::default())),
            loaded: AtomicBool::new(false),
        });
        tokio::spawn(follow(url, f.clone(), metrics));
        f
    }

    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Relaxed)
    }
}

/// A store failure, for the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the change stream ended")]
    StreamEnded,
    #[error("the store did not answer in time")]
    Timeout,
}

async fn follow(url: String, f: Arc<Follower>, m: StoreMetrics) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&url, &f, &m, &mut backoff).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Revocation store unreachable; serving the last loaded set")
            }
        }
        m.up.set(0);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: subscribe, load everything, follow changes.
async fn session(
    url: &str,
    f: &Follower,
    m: &StoreMetrics,
    backoff: &mut Duration,
) -> Result<(), StoreError> {
    let client = redis::Client::open(url)?;
    let late = |_| StoreError::Timeout;
    let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(late)??;
    tokio::time::timeout(CONNECT_TIMEOUT, pubsub.subscribe(CHANGES))
        .await
        .map_err(late)??;
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(late)??;
    // A large set takes a while to transfer: more time, but not forever.
    let members: Vec<String> = tokio::time::timeout(CONNECT_TIMEOUT * 6, conn.smembers(SET_KEY))
        .await
        .map_err(late)??;
    let mut entries: HashMap<String, Compiled> = HashMap::with_capacity(members.len());
    for m in members {
        add(&mut entries, &m);
    }
    publish(f, m, &entries);
    f.loaded.store(true, Ordering::Relaxed);
    m.up.set(1);
    *backoff = Duration::from_millis(100);
    tracing::info!(
        entries = entries.len(),
        "Revocation set loaded from the store"
    );

    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return Err(StoreError::StreamEnded) };
                apply(&mut entries, msg.get_payload_bytes());
                // Coalesce a burst (an SSF storm, a scripted bulk revoke) into one
                // rebuild, but never hold changes back longer than COALESCE_AT_MOST.
                let until = tokio::time::Instant::now() + COALESCE_AT_MOST;
                while let Ok(Ok(Some(more))) = tokio::time::timeout_at(
                    until,
                    tokio::time::timeout(COALESCE, stream.next()),
                )
                .await
                {
                    apply(&mut entries, more.get_payload_bytes());
                }
                publish(f, m, &entries);
            }
            _ = ping.tick() => {
                // In subscribed mode the answer is `["pong", ""]`, not `PONG`.
                let _: redis::Value = tokio::time::timeout(PING_EVERY, sink.ping())
                    .await
                    .map_err(|_| StoreError::Timeout)??;
            }
            _ = prune.tick() => publish(f, m, &entries),
        }
    }
}

fn add(entries: &mut HashMap<String, Compiled>, json: &str) {
    match serde_json::from_str::<Entry>(json).map(Entry::compile) {
        Ok(Ok(c)) => {
            entries.insert(json.to_string(), c);
        }
        Ok(Err(e)) => {
            tracing::warn!(entry = json, error = %e, "Ignoring a bad revocation entry in the store")
        }
        Err(e) => {
            tracing::warn!(error = %e, "Ignoring a revocation store member that is not an entry")
        }
    }
}

fn apply(entries: &mut HashMap<String, Compiled>, payload: &[u8]) {
    let Ok(text) = std::str::from_utf8(payload) else {
        return;
    };
    match text.split_at_checked(1) {
        Some(("+", json)) => add(entries, json),
        Some(("-", json)) => {
            entries.remove(json);
        }
        _ => tracing::warn!("Ignoring a malformed revocation change message"),
    }
}

/// Rebuilds the index (dropping lapsed entries) and swaps it in.
fn publish(f: &Follower, m: &StoreMetrics, entries: &HashMap<String, Compiled>) {
    let set = RevocationSet::new(entries.values().cloned(), Clock::System.now());
    m.entries.set(set.len() as i64);
    f.set.store(Arc::new(set));
}

/// `writ revoke` against the store: add, remove, list.
pub mod admin {
    use redis::AsyncCommands;

    use super::{CHANGES, SEEN_PREFIX, SET_KEY};
    use writ_engine::revocation::Entry;

    pub async fn add(url: &str, e: &Entry) -> redis::RedisResult<()> {
        let client = redis::Client::open(url)?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let json = e.to_string();
        let _: i64 = c.sadd(SET_KEY, &json).await?;
        let _: i64 = c.publish(CHANGES, format!("+{json}")).await?;
        Ok(())
    }

    /// Whether it was there.
    pub async fn remove(url: &str, e: &Entry) -> redis::RedisResult<bool> {
        let client = redis::Client::open(url)?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let json = e.to_string();
        let n: i64 = c.srem(SET_KEY, &json).await?;
        let _: i64 = c.publish(CHANGES, format!("-{json}")).await?;
        Ok(n > 0)
    }

    /// Whether the fleet already applied the Security Event Token `key`
    /// (`<issuer> <jti>`).
    pub async fn seen(url: &str, key: &str) -> redis::RedisResult<bool> {
        let client = redis::Client::open(url)?;
        let mut c = client.get_multiplexed_async_connection().await?;
        c.exists(format!("{SEEN_PREFIX}{key}")).await
    }

    /// Records that the fleet applied SET `key`, for `secs` (after which an
    /// old SET is refused by its `iat` anyway).
    pub async fn mark_seen(url: &str, key: &str, secs: f64) -> redis::RedisResult<()> {
        let client = redis::Client::open(url)?;
        let mut c = client.get_multiplexed_async_connection().await?;
        c.set_ex(format!("{SEEN_PREFIX}{key}"), 1, secs.ceil() as u64)
            .await
    }

    pub async fn list(url: &str) -> redis::RedisResult<Vec<String>> {
        let client = redis::Client::open(url)?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let mut v: Vec<String> = c.smembers(SET_KEY).await?;
        v.sort();
        Ok(v)
    }
}

/// The revocation file as a store: `writ revoke` and the Shared Signals
/// receiver read it, change it and write it back whole (atomically); `writ
/// run` re-reads it like a key file.
pub mod file {
    use std::path::{Path, PathBuf};

    use writ_engine::revocation::Entry;

    #[derive(Debug, thiserror::Error)]
    pub enum FileError {
        #[error("{}: {source}", path.display())]
        Io {
            path: PathBuf,
            source: std::io::Error,
        },
        #[error("{0}")]
        Entries(writ_engine::config::ConfigErrors),
    }

    pub fn read(p: &Path) -> Result<Vec<Entry>, FileError> {
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(FileError::Io {
                    path: p.to_path_buf(),
                    source,
                });
            }
        };
        let parsed = writ_engine::config::revoked::parse(&text, &p.display().to_string())
            .map_err(FileError::Entries)?;
        Ok(parsed.into_iter().map(|c| c.entry().clone()).collect())
    }

    /// Writes the whole file to a temporary neighbour and renames it into place, so
    /// a reload never reads half a file. Comments in the file are not kept.
    pub fn write(p: &Path, entries: &[Entry]) -> Result<(), FileError> {
        let mut text = String::from(
            "# Revoked tokens (SPEC: Revocation). Written by `writ revoke`; comments are not kept.\nrevoked:\n",
        );
        for e in entries {
            // One entry per line, as a JSON (YAML flow) mapping.
            text.push_str(&format!("  - {e}\n"));
        }
        if entries.is_empty() {
            text = text.replace("revoked:\n", "revoked: []\n");
        }
        let io = |source| FileError::Io {
            path: p.to_path_buf(),
            source,
        };
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Unique per writer, so two writers never clobber each other's half-written file.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, p).map_err(io)?;
        Ok(())
    }
}
