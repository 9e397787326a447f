//! The compiled, immutable policy snapshot that every request is decided under.
//! Built once per (re)load by `config::load`; the proxy pins one `Arc<Policy>`
//! per request, so a reload never changes a decision half-way.

pub mod mcp;
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
use crate::revocation::Revocations;
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
    /// Configured issuers, in file order.
    pub issuers: Vec<Issuer>,
    /// Normalization and override rules (`requests:`).
    pub requests: Requests,
    /// The identity header names writ strips and sets.
    pub identity: IdentityHeaders,
    /// Whether a verified `Authorization` is forwarded.
    pub forward_token: bool,
    /// What applies where an action says nothing.
    pub defaults: Defaults,
    /// Every action, in file order (indices are stable within a generation).
    pub actions: Vec<Action>,
    /// The classification index.
    pub router: Router,
    /// Every method some action names (for the "unknown method" 405).
    pub named_methods: HashSet<String>,
    /// Whether some action lists `"*"` (then every method is named).
    pub any_method: bool,
    /// Every claim name some action's `require.claims` names, sorted: the decision
    /// log records their values so a replay can bind them again. Shared: every
    /// decision-log record holds it until its line is written.
    pub bound_claims: std::sync::Arc<[String]>,
    /// Tokens whose authority ended before their `exp`.
    pub revocation: Revocations,
    /// MCP endpoints: the `mcp:` actions sharing one (see [`Action::mcp_group`]).
    pub mcp_groups: Vec<mcp::McpGroup>,
    /// `protected_resource:` (RFC 9728), served by writ and linked from every 401.
    pub protected_resource: Option<ProtectedResource>,
}

/// An RFC 9728 protected resource: what writ serves at
/// `/.well-known/oauth-protected-resource` + the resource's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    /// The resource identifier (an https URL).
    pub resource: String,
    /// Authorization servers that issue tokens for it.
    pub authorization_servers: Vec<String>,
    /// Every scope some action requires, sorted.
    pub scopes_supported: Vec<String>,
    /// The path the metadata document is served at.
    pub metadata_path: String,
    /// The absolute URL of that document (`resource_metadata=` on a 401).
    pub metadata_url: String,
}

impl Policy {
    /// The action at index `i` (from a classification).
    pub fn action(&self, i: usize) -> &Action {
        &self.actions[i]
    }

    /// The index of the issuer whose name is `iss`.
    pub fn issuer_by_name(&self, iss: &str) -> Option<usize> {
        self.issuers.iter().position(|i| i.issuer == iss)
    }

    /// Whether every issuer has keys to verify with (`/readyz`).
    pub fn keys_ready(&self) -> bool {
        self.issuers.iter().all(|i| !i.keys.load().is_empty())
    }
}

#[derive(Debug, Clone)]
/// Where an issuer's keys come from.
pub enum KeySource {
    /// `jwks_file`, re-read on change.
    File(PathBuf),
    /// `jwks_url`, fetched and refreshed outside the engine.
    Url(String),
    /// `public_key_pem`.
    Pem,
    /// `hmac_secret_env`.
    Secret,
}

#[derive(Debug)]
/// A trusted token issuer.
pub struct Issuer {
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// Algorithm allowlist.
    pub algorithms: Vec<Algorithm>,
    /// Where the keys come from.
    pub source: KeySource,
    /// Swapped by JWKS refresh without a config reload.
    pub keys: Arc<ArcSwap<KeySet>>,
    /// For `jwks_url`: asks the fetcher for an early refresh (unknown `kid`).
    pub kick: Option<Arc<dyn KeyRefresh>>,
    /// Periodic refresh of a `jwks_url`.
    pub jwks_refresh: Duration,
    /// Trust for an https `jwks_url` (system roots when `None`).
    pub jwks_ca: Option<PathBuf>,
    /// Clock skew allowed for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Required `typ` (e.g. `at+jwt`), compared case-insensitively.
    pub require_typ: Option<String>,
    /// RFC 7662 introspection endpoint (`writ` calls it; the engine reads the answer).
    pub introspection: Option<Introspection>,
}

/// An issuer's introspection endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspection {
    /// The endpoint (POST, form-encoded `token`).
    pub url: String,
    /// Client id for HTTP Basic authentication.
    pub client_id: String,
    /// Environment variable holding the client secret.
    pub client_secret_env: String,
    /// How long an answer is reused (never beyond the token's `exp`).
    pub cache: Duration,
    /// How long one call may take before the request is refused (503).
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy)]
/// The `requests:` rules.
pub struct Requests {
    /// How the path is normalized.
    pub path: PathPolicy,
    /// Whether literal segments match case-sensitively.
    pub case_sensitive: bool,
    /// Override headers and `_method`: reject, or strip (`Keep`).
    pub method_override: Choice,
    /// URL override headers: reject, or strip (`Keep`).
    pub url_override: Choice,
    /// Longer bearer tokens are `token_too_large`.
    pub max_token_bytes: usize,
    /// Larger JSON bodies (that writ must read) are `body_too_large`.
    pub max_json_body: usize,
}

#[derive(Debug, Clone)]
/// Identity header names.
pub struct IdentityHeaders {
    /// The verified subject.
    pub subject: HeaderName,
    /// The current actor.
    pub actor: HeaderName,
    /// The matched action.
    pub action: HeaderName,
}

#[derive(Debug, Clone)]
/// The `defaults:` block.
pub struct Defaults {
    /// Whether a request matching no action is forwarded.
    pub unmatched_allow: bool,
    /// Enforce or audit.
    pub mode: Mode,
    /// Delegation rule for actions that state none.
    pub delegation: Delegation,
    /// Index into the settings' upstreams: where unmatched forwarded requests
    /// and actions that name none go.
    pub upstream: usize,
}

#[derive(Debug, Clone)]
/// A delegation rule.
pub struct Delegation {
    /// Forbid, allow or require delegated tokens.
    pub mode: DelegationMode,
    /// Anchored globs on the current actor; `None` = any actor.
    pub actors: Option<Vec<String>>,
    /// Longest `act` chain accepted.
    pub max_depth: Option<usize>,
    /// A delegated token must be younger than this.
    pub max_age: Option<Duration>,
}

impl Delegation {
    /// The default rule: delegated tokens are refused.
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
    /// A literal value.
    Equals(ClaimScalar),
    /// Bound to a path parameter.
    Param(String),
    /// Bound to a value of the JSON body, by dotted path (`{body.a.b}`; an MCP
    /// `{args.NAME}` is `params.arguments.NAME`).
    Body(Vec<String>),
}

/// `require.authorization_details` (RFC 9396): one entry of the token's
/// `authorization_details` of this type must satisfy every condition.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationDetails {
    /// The entry's `type`.
    pub kind: String,
    /// Entry field (dotted) equals the value, or is an array holding it.
    pub matches: Vec<(Vec<String>, ClaimRule)>,
    /// Entry field (dotted) is a number ≥ the request's number.
    pub limits: Vec<(Vec<String>, ClaimRule)>,
}

#[derive(Debug, Clone, Default)]
/// What an action requires of a token.
pub struct Require {
    /// All of these scopes.
    pub scopes: Vec<String>,
    /// At least one of these scopes.
    pub any_scope: Vec<String>,
    /// Claim conditions, in file order.
    pub claims: Vec<(String, ClaimRule)>,
    /// Step-up: `auth_time` must be this recent.
    pub auth_max_age: Option<Duration>,
    /// Step-up: `acr` must be one of these.
    pub acr: Option<Vec<String>>,
    /// The issuer's introspection endpoint must answer `active: true`.
    pub introspect: bool,
    /// An approved transaction the request must stay inside.
    pub authorization_details: Option<AuthorizationDetails>,
}

#[derive(Debug, Clone)]
/// A named action: methods, path template and what it requires.
pub struct Action {
    /// Unique name; used in metric labels, the decision log and the action header.
    pub name: String,
    /// Where it is defined (line, column) in the config file.
    pub location: (u64, u64),
    /// Methods it accepts; other methods on its path are 405 unless another action takes them.
    pub methods: Methods,
    /// Path template, matched against the normalized path.
    pub template: Template,
    /// Virtual host it is limited to, canonical.
    pub host: Option<String>,
    /// Execution-triggering: never public.
    pub execution: bool,
    /// Per-action enforce or audit.
    pub mode: Option<Mode>,
    /// No token required.
    pub public: bool,
    /// What the token must carry.
    pub require: Require,
    /// `None`: `defaults.delegation` applies.
    pub delegation: Option<Delegation>,
    /// Index into the settings' upstreams (`upstream:`, else `defaults.upstream`).
    pub upstream: usize,
    /// Whether classification reads the JSON body (`body: json`, or an `mcp:` action).
    pub body_json: bool,
    /// The `mcp:` block.
    pub mcp: Option<mcp::McpMatch>,
    /// The MCP endpoint (index into [`Policy::mcp_groups`]) this action belongs to.
    pub mcp_group: Option<usize>,
}

impl Action {
    /// Whether `iat` must be present: `max_age` applies (to a delegated token)
    /// or `auth_max_age` does (SPEC settled questions).
    pub fn needs_iat(&self, defaults: &Defaults, delegated: bool) -> bool {
        let d = self.delegation.as_ref().unwrap_or(&defaults.delegation);
        (delegated && d.max_age.is_some()) || self.require.auth_max_age.is_some()
    }
}
