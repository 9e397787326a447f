//! Environment overrides of the listeners and the upstream address, for the injected
//! Kubernetes sidecar (SPEC: Kubernetes). One ConfigMap policy is shared by every pod
//! of a workload, but the ports writ listens on and the app port it forwards to are
//! chosen per pod template by `writ inject`; they reach `writ run` as environment
//! variables so the policy file never has to repeat them. Read at start and again
//! on every reload, so a reload never swaps the configured address back in.

use std::net::SocketAddr;

use writ_engine::config::Settings;

/// Proxy listener address, replaces `listen:`.
pub const LISTEN: &str = "WRIT_LISTEN";
/// Admin listener address, replaces `admin:`.
pub const ADMIN: &str = "WRIT_ADMIN";
/// `host:port` of the upstream, replaces the authority of `upstream.url` (scheme,
/// path prefix and timeouts stay as configured).
pub const UPSTREAM_ADDR: &str = "WRIT_UPSTREAM_ADDR";

/// An override variable whose value cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("{var}: `{value}` is not a HOST:PORT socket address")]
    NotAnAddress { var: &'static str, value: String },
    #[error("{UPSTREAM_ADDR} needs a config with exactly one upstream")]
    SeveralUpstreams,
}

/// Applies the override variables that are set to `settings`.
pub fn apply(settings: &mut Settings) -> Result<(), OverrideError> {
    if let Some(addr) = socket_addr(LISTEN)? {
        settings.listen = addr;
    }
    if let Some(addr) = socket_addr(ADMIN)? {
        settings.admin = addr;
    }
    if let Some(addr) = socket_addr(UPSTREAM_ADDR)? {
        // A sidecar fronts one app: with several upstreams, which one the
        // variable means would be a guess.
        match settings.upstreams.as_mut_slice() {
            [one] => one.authority = addr.to_string(),
            _ => return Err(OverrideError::SeveralUpstreams),
        }
    }
    Ok(())
}

fn socket_addr(var: &'static str) -> Result<Option<SocketAddr>, OverrideError> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value
            .parse()
            .map(Some)
            .map_err(|_| OverrideError::NotAnAddress { var, value }),
        _ => Ok(None),
    }
}
