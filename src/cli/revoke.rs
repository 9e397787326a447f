//! `writ revoke`: add, list or remove revocation entries in the configured store
//! (`revocation.redis`, which every replica follows, or `revocation.file`, which
//! `writ run` re-reads on change). Exit 0 done, 1 nothing to remove, 2 usage,
//! config or store error.

use std::path::PathBuf;

use writ_engine::revocation::Entry;

use crate::revocation_store::admin;
use crate::revocation_store::file::{self, FileError};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "WRIT_CONFIG")]
    config: PathBuf,
    /// The token's `jti`.
    #[arg(long)]
    jti: Option<String>,
    /// The token's `sub`.
    #[arg(long)]
    sub: Option<String>,
    /// An actor anywhere in the token's `act` chain.
    #[arg(long)]
    actor: Option<String>,
    /// The token's `iss`.
    #[arg(long)]
    issuer: Option<String>,
    /// Tokens issued before this time (RFC 3339): "log out everywhere".
    #[arg(long)]
    issued_before: Option<String>,
    /// The entry lapses at this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Print the live set instead.
    #[arg(long, conflicts_with_all = ["remove", "jti", "sub", "actor", "issuer", "issued_before", "until"])]
    list: bool,
    /// Remove the entry with exactly these fields.
    #[arg(long)]
    remove: bool,
    /// Which store, when the config names both (default: redis).
    #[arg(long, value_enum)]
    store: Option<StoreKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    File,
    Redis,
}

enum Store {
    File(PathBuf),
    Redis(String),
}

#[derive(Debug, thiserror::Error)]
enum RevokeError {
    #[error("invalid config:\n{0}")]
    Config(writ_engine::config::ConfigErrors),
    #[error("the config has no `revocation:` store (file or redis)")]
    NoStore,
    #[error("the config has no `revocation.{0}`")]
    NotConfigured(&'static str),
    #[error("{0}")]
    Entry(#[from] writ_engine::revocation::EntryError),
    #[error("`{0}` is not an RFC 3339 time")]
    Time(String),
    #[error("{0}")]
    File(#[from] FileError),
    #[error("revocation store: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Runtime(std::io::Error),
}

pub fn run(args: Args) -> u8 {
    match revoke(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("writ revoke: {e}");
            2
        }
    }
}

fn store(args: &Args) -> Result<Store, RevokeError> {
    let c = writ_engine::config::load(&args.config).map_err(RevokeError::Config)?;
    let s = c.settings;
    match (args.store, s.revocation_redis, s.revocation_file) {
        (Some(StoreKind::File), _, Some(f)) | (None, None, Some(f)) => Ok(Store::File(f)),
        (Some(StoreKind::Redis) | None, Some(u), _) => Ok(Store::Redis(u)),
        (Some(StoreKind::File), _, None) => Err(RevokeError::NotConfigured("file")),
        (Some(StoreKind::Redis), None, _) => Err(RevokeError::NotConfigured("redis")),
        (None, None, None) => Err(RevokeError::NoStore),
    }
}

/// A time as given, written back in one canonical form (UTC, seconds): an
/// entry's text is its identity in the store, so `--remove` must spell it alike.
/// `round_up`: a fractional cut-off (`issued_before`) rounds up, so no token of
/// that second escapes it.
fn canonical_time(t: &Option<String>, round_up: bool) -> Result<Option<String>, RevokeError> {
    let Some(s) = t else { return Ok(None) };
    let secs = writ_engine::clock::rfc3339_seconds(s).map_err(|_| RevokeError::Time(s.clone()))?;
    let secs = if round_up { secs.ceil() } else { secs.floor() };
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(secs.max(0.0));
    Ok(Some(humantime::format_rfc3339_seconds(at).to_string()))
}

fn entry(args: &Args) -> Result<Entry, RevokeError> {
    let e = Entry {
        jti: args.jti.clone(),
        sub: args.sub.clone(),
        actor: args.actor.clone(),
        issuer: args.issuer.clone(),
        issued_before: canonical_time(&args.issued_before, true)?,
        until: canonical_time(&args.until, false)?,
    };
    e.clone().compile()?;
    Ok(e)
}

fn revoke(args: &Args) -> Result<u8, RevokeError> {
    let store = store(args)?;
    if args.list {
        let lines = match &store {
            Store::File(p) => file::read(p)?.iter().map(ToString::to_string).collect(),
            Store::Redis(u) => block_on(admin::list(u))??,
        };
        for l in lines {
            out!("{l}");
        }
        return Ok(0);
    }
    let e = entry(args)?;
    match (&store, args.remove) {
        (Store::Redis(u), false) => block_on(admin::add(u, &e))??,
        (Store::Redis(u), true) => {
            if !block_on(admin::remove(u, &e))?? {
                eprintln!("writ revoke: no such entry: {e}");
                return Ok(1);
            }
        }
        (Store::File(p), remove) => {
            let mut entries = file::read(p)?;
            if remove {
                let before = entries.len();
                entries.retain(|x| x != &e);
                if entries.len() == before {
                    eprintln!("writ revoke: no such entry: {e}");
                    return Ok(1);
                }
            } else if !entries.contains(&e) {
                entries.push(e.clone());
            }
            file::write(p, &entries)?;
        }
    }
    out!("{}{e}", if args.remove { "removed " } else { "" });
    Ok(0)
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, RevokeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RevokeError::Runtime)?;
    Ok(rt.block_on(f))
}
