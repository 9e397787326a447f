//! Live reload: SIGHUP, or a change of the config file or any key file it names
//! (in-place writes, atomic renames, Kubernetes ConfigMap `..data` symlink swaps:
//! metadata is read through symlinks, so a swap shows as a new inode). The new
//! config is validated fully, then swapped atomically; in-flight requests keep
//! the snapshot they pinned. An invalid config leaves the old one serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::proxy::Shared;
use crate::proxy::upstream::Forwarding;
use writ_engine::policy::Policy;

const POLL: Duration = Duration::from_millis(250);
/// After a change is seen, the files must read the same twice this far apart
/// before they are loaded: an in-place write (truncate, then write) is read
/// once it is finished, not half-way.
const SETTLE: Duration = Duration::from_millis(50);
/// A writer that never stops changing the file still gets a reload this often.
const SETTLE_MAX: Duration = Duration::from_secs(2);
/// How long an invalid file must stay as it is before it counts as a failed
/// reload: an editor or `kubectl cp` may pause between truncating and writing.
const FAILURE_GRACE: Duration = Duration::from_secs(1);

/// What a watched file looks like: metadata and a hash of its content. The
/// content matters: two writes within one tick of the kernel's coarse file
/// clock can leave mtime, size and inode all equal.
type Stamp = Option<(SystemTime, u64, u64, u64)>;

fn stamp(p: &Path) -> Stamp {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    let content = std::fs::read(p).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    content.hash(&mut h);
    Some((
        m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        m.len(),
        m.ino(),
        h.finish(),
    ))
}

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files.iter().map(|f| stamp(f)).collect()
}

/// A file whose mtime is at least this far in the past cannot be written again
/// without its mtime moving: the coarse-clock tie that makes hashing necessary
/// is over.
const STABLE_AGE: Duration = Duration::from_secs(2);

/// [`stamps`] for the steady poll: a file whose metadata is still what `seen`
/// recorded, and whose mtime is older than [`STABLE_AGE`], keeps its recorded
/// hash without being read. Reading and hashing every file four times a second
/// cost the worker about a millisecond per poll with a 10,000-action config.
/// (A tool that rewrites a file in place and then restores its mtime, size and
/// inode is not noticed until the next SIGHUP.)
fn restamp(files: &[PathBuf], seen: &[Stamp]) -> Vec<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let unchanged = |f: &Path, (t, len, ino, _): &(SystemTime, u64, u64, u64)| {
        std::fs::metadata(f).is_ok_and(|m| {
            m.modified().is_ok_and(|mt| mt == *t)
                && m.len() == *len
                && m.ino() == *ino
                && SystemTime::now()
                    .duration_since(*t)
                    .is_ok_and(|age| age > STABLE_AGE)
        })
    };
    files
        .iter()
        .enumerate()
        .map(|(i, f)| match seen.get(i) {
            Some(Some(prev)) if unchanged(f, prev) => Some(*prev),
            _ => stamp(f),
        })
        .collect()
}

/// Waits until the files read the same twice in a row (or `SETTLE_MAX`).
async fn settled(files: &[PathBuf], mut seen: Vec<Stamp>) -> Vec<Stamp> {
    let deadline = tokio::time::Instant::now() + SETTLE_MAX;
    loop {
        tokio::time::sleep(SETTLE).await;
        let now = stamps(files);
        if now == seen || tokio::time::Instant::now() >= deadline {
            return now;
        }
        seen = now;
    }
}

/// Whether the files differ from `seen` at some check within `grace`.
async fn changes_within(files: &[PathBuf], seen: &[Stamp], grace: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(SETTLE).await;
        if stamps(files) != seen {
            return true;
        }
    }
    false
}

pub async fn watch(
    shared: Arc<Shared>,
    path: PathBuf,
    mut hup: Option<tokio::signal::unix::Signal>,
) {
    let mut files = shared.config().watched_files.clone();
    let mut last = stamps(&files);
    // The config was loaded before this watcher took its first stamps: a write in
    // between would look like no change at all. The digest of the text in force
    // tells; a differing file is reloaded at once.
    let written = std::fs::read_to_string(&path).map(|t| writ_engine::config::digest(&t));
    if written.is_ok_and(|d| d != shared.config().digest) {
        last.clear();
    }
    loop {
        let by_signal = tokio::select! {
            _ = tokio::time::sleep(POLL) => false,
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = if by_signal {
            stamps(&files)
        } else {
            restamp(&files, &last)
        };
        if !by_signal && now == last {
            continue;
        }
        let trigger = if by_signal { "signal" } else { "file change" };
        // What is loaded is what was stamped before loading: a write that lands
        // during the load differs from `last` and is picked up on the next poll,
        // never marked as seen without being applied.
        let before = if by_signal {
            now
        } else {
            settled(&files, now).await
        };
        match try_reload(&shared, &path, trigger) {
            Ok(()) => {
                let new_files = shared.config().watched_files.clone();
                // The new config may name other key files: those are stamped now.
                last = if new_files == files {
                    before
                } else {
                    stamps(&new_files)
                };
                files = new_files;
            }
            Err(errors) => {
                // A file that changes again soon after was caught mid-write: not
                // a failed reload, just one to retry. One that stays the same for
                // FAILURE_GRACE is really invalid: counted once, then left alone
                // until it changes. A signal means "done editing": no grace.
                if !by_signal && changes_within(&files, &before, FAILURE_GRACE).await {
                    continue;
                }
                report_failure(&shared, trigger, &errors);
                last = before;
            }
        }
    }
}

fn report_failure(shared: &Shared, trigger: &str, errors: &[String]) {
    for e in errors {
        tracing::error!(trigger, "Config reload refused: {e}");
    }
    shared
        .metrics
        .config_reloads
        .with_label_values(&["failure"])
        .inc();
}

/// Loads, validates and swaps. A success is logged and counted here; a
/// failure is returned uncounted, for the caller to decide whether it was a
/// half-written file (retried) or a real failure (reported).
fn try_reload(shared: &Shared, path: &Path, trigger: &str) -> Result<(), Vec<String>> {
    let old = shared.config();
    let mut new = writ_engine::config::load(path)
        .map_err(|errs| errs.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    crate::overrides::apply(&mut new.settings).map_err(|e| vec![e.to_string()])?;
    new.policy.generation = old.policy.generation + 1;
    crate::telemetry::log_findings(&new.findings);
    shared
        .jwks
        .attach_signals(&mut new, &shared.metrics.jwks_refresh);
    if let Some(f) = &shared.revocation {
        // The store's set outlives configs (a store change needs a restart).
        new.policy.revocation.shared = f.set.clone();
    }
    shared
        .jwks
        .attach(&mut new.policy, &shared.metrics.jwks_refresh);
    let restart = old.settings.restart_needed(&new.settings);
    if !restart.is_empty() {
        tracing::warn!(
            settings = ?restart,
            "Settings changed that take effect after a restart; the rest of the reload applies"
        );
    }
    new.settings = old.settings.live_part_of(new.settings);
    // The clients for the new upstreams (an unchanged upstream keeps its client
    // and warm pool; requests in flight keep the client they started with until
    // they finish). The last step that can fail; it starts health checks.
    let new = Arc::new(new);
    let previous = shared.forwarding.load_full();
    let forwarding = Forwarding::build(new.clone(), Some(&previous), &shared.metrics)
        .map_err(|e| vec![e.to_string()])?;
    let (added, removed, modified) = diff(&old.policy, &new.policy);
    tracing::info!(
        trigger,
        generation = new.policy.generation,
        actions = new.policy.actions.len(),
        issuers = new.policy.issuers.len(),
        added = ?added,
        removed = ?removed,
        modified = ?modified,
        "Config reloaded"
    );
    // A removed upstream's last state must not stay behind as "down".
    previous.retire_removed(&forwarding, &shared.metrics);
    shared
        .metrics
        .set_config(new.policy.generation, &new.digest);
    shared.forwarding.store(Arc::new(forwarding));
    shared
        .metrics
        .config_reloads
        .with_label_values(&["success"])
        .inc();
    Ok(())
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

#[cfg(test)]
mod restamp_tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    fn write_at(path: &Path, content: &[u8], mtime: SystemTime) {
        let mut f = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(content).unwrap_or_else(|e| panic!("{e}"));
        f.set_modified(mtime).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_recent_file_is_always_read_again() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("writ.yaml");
        let recent = SystemTime::now();
        write_at(&path, b"listen: a", recent);
        let seen = stamps(std::slice::from_ref(&path));
        // Same size, same inode, same mtime (one coarse clock tick): only the hash differs.
        write_at(&path, b"listen: b", recent);
        assert_ne!(restamp(std::slice::from_ref(&path), &seen), seen);
    }

    #[test]
    fn an_old_unchanged_file_keeps_its_hash_without_being_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("writ.yaml");
        let old = SystemTime::now() - Duration::from_secs(60);
        write_at(&path, b"listen: a", old);
        let seen = stamps(std::slice::from_ref(&path));
        assert_eq!(restamp(std::slice::from_ref(&path), &seen), seen);
        // Any real edit moves the mtime: read again, seen as changed.
        write_at(&path, b"listen: b", SystemTime::now());
        assert_ne!(restamp(std::slice::from_ref(&path), &seen), seen);
    }
}
