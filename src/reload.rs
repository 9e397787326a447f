//! Live reload: SIGHUP, or a change of the config file or any key file it names
//! (in-place writes, atomic renames, Kubernetes ConfigMap `..data` symlink swaps:
//! metadata is read through symlinks, so a swap shows as a new inode). The new
//! config is validated fully, then swapped atomically; in-flight requests keep
//! the snapshot they pinned. An invalid config leaves the old one serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::policy::Policy;
use crate::proxy::Shared;
use crate::proxy::upstream::Upstream;

const POLL: Duration = Duration::from_millis(500);

type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(p: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| {
        (
            m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            m.len(),
            m.ino(),
        )
    })
}

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files.iter().map(|f| stamp(f)).collect()
}

pub async fn watch(
    shared: Arc<Shared>,
    path: PathBuf,
    mut hup: Option<tokio::signal::unix::Signal>,
) {
    let mut files = shared.policy.load().watched_files.clone();
    let mut last = stamps(&files);
    loop {
        let by_signal = tokio::select! {
            _ = tokio::time::sleep(POLL) => false,
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = stamps(&files);
        if !by_signal && now == last {
            continue;
        }
        reload(
            &shared,
            &path,
            if by_signal { "signal" } else { "file change" },
        );
        files = shared.policy.load().watched_files.clone();
        last = stamps(&files);
    }
}

/// Loads, validates and swaps; returns whether the new config is in force.
pub fn reload(shared: &Shared, path: &Path, trigger: &str) -> bool {
    let old = shared.policy.load_full();
    match crate::config::load(path) {
        Err(errs) => {
            for e in &errs.0 {
                tracing::error!(trigger, "Config reload refused: {e}");
            }
            shared
                .metrics
                .config_reloads
                .with_label_values(&["failure"])
                .inc();
            false
        }
        Ok(mut new) => {
            new.generation = old.generation + 1;
            shared.jwks.attach(&mut new, &shared.metrics.jwks_refresh);
            if new.listen != old.listen
                || new.admin != old.admin
                || new.tls.is_some() != old.tls.is_some()
            {
                tracing::warn!(
                    "Listener, admin or TLS settings changed: they take effect after a restart"
                );
                new.listen = old.listen;
                new.admin = old.admin;
            }
            if new.decision_log != old.decision_log {
                tracing::warn!("decision_log changed: it takes effect after a restart");
            }
            let upstream_changed = format!("{:?}", new.upstream) != format!("{:?}", old.upstream);
            if upstream_changed {
                match Upstream::new(&new.upstream) {
                    Ok(u) => shared.upstream.store(Arc::new(u)),
                    Err(e) => {
                        tracing::error!(trigger, "Config reload refused: upstream: {e}");
                        shared
                            .metrics
                            .config_reloads
                            .with_label_values(&["failure"])
                            .inc();
                        return false;
                    }
                }
            }
            let (added, removed, modified) = diff(&old, &new);
            tracing::info!(
                trigger,
                generation = new.generation,
                actions = new.actions.len(),
                issuers = new.issuers.len(),
                added = ?added,
                removed = ?removed,
                modified = ?modified,
                "Config reloaded"
            );
            shared.metrics.config_generation.set(new.generation as i64);
            shared.policy.store(Arc::new(new));
            shared
                .metrics
                .config_reloads
                .with_label_values(&["success"])
                .inc();
            true
        }
    }
}

/// Action names added, removed and modified between two policies.
fn diff(old: &Policy, new: &Policy) -> (Vec<String>, Vec<String>, Vec<String>) {
    let index = |p: &Policy| -> BTreeMap<String, String> {
        p.actions
            .iter()
            .map(|a| {
                let mut a = a.clone();
                a.location = (0, 0);
                (a.name.clone(), format!("{a:?}"))
            })
            .collect()
    };
    let (o, n) = (index(old), index(new));
    let added = n.keys().filter(|k| !o.contains_key(*k)).cloned().collect();
    let removed = o.keys().filter(|k| !n.contains_key(*k)).cloned().collect();
    let modified = n
        .iter()
        .filter(|(k, v)| o.get(*k).is_some_and(|ov| ov != *v))
        .map(|(k, _)| k.clone())
        .collect();
    (added, removed, modified)
}
