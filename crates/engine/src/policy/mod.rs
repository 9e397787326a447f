//! The compiled, immutable policy snapshot that every request is decided under.
//! Built once per (re)load by `config::load`; the proxy pins one `Arc<Policy>`
//! per request, so a reload never changes a decision half-way.

pub mod router;
pub mod template;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderName;
use jsonwebtoken::Algorithm;

use crate::keys::{KeyRefresh, KeySet};
use crate::vocab::{Choice, PathPolicy};
use crate::vocab::{ClaimScalar, DelegationMode, Mode};
use router::{Methods, Router};
use template::Template;

/// What every request is decided under: issuers, request rules, identity
/// headers, defaults and actions. Server settings (listeners, TLS, upstream,
/// limits, log sink) are `config::Settings`, not here.
#[derive(Debug)]
pub struct Policy {
    /// Bumped by every successful (re)load.
    pub generation: u64,
    /// The config file it was loaded from.
    pub source: PathBuf,
    pub issuers: Vec<Issuer>,
    pub requests: Requests,
    pub identity: IdentityHeaders,
    pub forward_token: bool,
    pub defaults: Defaults,
    pub actions: Vec<Action>,
    pub router: Router,
    /// Every method some action names (for the "unknown method" 405).
    pub named_methods: HashSet<String>,
    /// Whether some action lists `"*"` (then every method is named).
    pub any_method: bool,
}

impl Policy {
    pub fn action(&self, i: usize) -> &Action {
        &self.actions[i]
    }

    pub fn issuer_by_name(&self, iss: &str) -> Option<usize> {
        self.issuers.iter().position(|i| i.issuer == iss)
    }

    /// Whether every issuer has keys to verify with (`/readyz`).
    pub fn keys_ready(&self) -> bool {
        self.issuers.iter().all(|i| !i.keys.load().is_empty())
    }
}

#[derive(Debug, Clone)]
pub enum KeySource {
    File(PathBuf),
    Url(String),
    Pem,
    Secret,
}

#[derive(Debug)]
pub struct Issuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub source: KeySource,
    /// Swapped by JWKS refresh without a config reload.
    pub keys: Arc<ArcSwap<KeySet>>,
    /// For `jwks_url`: asks the fetcher for an early refresh (unknown `kid`).
    pub kick: Option<Arc<dyn KeyRefresh>>,
    pub jwks_refresh: Duration,
    /// Trust for an https `jwks_url` (system roots when `None`).
    pub jwks_ca: Option<PathBuf>,
    pub leeway: Duration,
    pub require_typ: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Requests {
    pub path: PathPolicy,
    pub case_sensitive: bool,
    pub method_override: Choice,
    pub url_override: Choice,
    pub max_token_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub subject: HeaderName,
    pub actor: HeaderName,
    pub action: HeaderName,
}

#[derive(Debug, Clone)]
pub struct Defaults {
    pub unmatched_allow: bool,
    pub mode: Mode,
    pub delegation: Delegation,
}

#[derive(Debug, Clone)]
pub struct Delegation {
    pub mode: DelegationMode,
    /// Anchored globs on the current actor; `None` = any actor.
    pub actors: Option<Vec<String>>,
    pub max_depth: Option<usize>,
    pub max_age: Option<Duration>,
}

impl Delegation {
    pub fn forbid() -> Self {
        Delegation {
            mode: DelegationMode::Forbid,
            actors: None,
            max_depth: None,
            max_age: None,
        }
    }
}

/// What a claim must equal.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimRule {
    Equals(ClaimScalar),
    /// Bound to a path parameter.
    Param(String),
}

#[derive(Debug, Clone, Default)]
pub struct Require {
    pub scopes: Vec<String>,
    pub any_scope: Vec<String>,
    pub claims: Vec<(String, ClaimRule)>,
    pub auth_max_age: Option<Duration>,
    pub acr: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    /// Where it is defined (line, column) in the config file.
    pub location: (u64, u64),
    pub methods: Methods,
    pub template: Template,
    pub host: Option<String>,
    pub execution: bool,
    pub mode: Option<Mode>,
    pub public: bool,
    pub require: Require,
    /// `None`: `defaults.delegation` applies.
    pub delegation: Option<Delegation>,
}

impl Action {
    /// Whether `iat` must be present: `max_age` applies (to a delegated token)
    /// or `auth_max_age` does (SPEC settled questions).
    pub fn needs_iat(&self, defaults: &Defaults, delegated: bool) -> bool {
        let d = self.delegation.as_ref().unwrap_or(&defaults.delegation);
        (delegated && d.max_age.is_some()) || self.require.auth_max_age.is_some()
    }
}
