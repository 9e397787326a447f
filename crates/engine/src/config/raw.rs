//! Serde mirror of the YAML file. Every value a semantic check may complain about
//! is wrapped in [`Sp`] so the complaint can name `FILE:LINE:COL`. Unknown keys
//! are errors (`deny_unknown_fields`): a typo must never silently widen a policy.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::vocab::{ClaimScalar, DelegationMode, Mode};

/// A value with the YAML position it came from. Transparent for the JSON Schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Sp<T>(pub Spanned<T>);

impl<T> Sp<T> {
    /// The value as parsed, without its position.
    pub fn get(&self) -> &T {
        &self.0.value
    }
    /// Its 1-based line in the file.
    pub fn line(&self) -> u64 {
        self.0.referenced.line()
    }
    /// Its 1-based column in the file.
    pub fn col(&self) -> u64 {
        self.0.referenced.column()
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

/// The whole config file (SPEC: Configuration).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Proxy listener address, e.g. `127.0.0.1:8080`. Required (checked by the
    /// validator, so a missing key is reported at the mapping that lacks it).
    #[schemars(required)]
    pub listen: Option<Sp<String>>,
    /// Downstream TLS (HTTP/1.1 and h2 by ALPN).
    pub tls: Option<RawTls>,
    /// Admin listener: /metrics /healthz /readyz. Default `127.0.0.1:9901`.
    pub admin: Option<Sp<String>>,
    /// The one backend (single-backend form). Exclusive with `upstreams`; one of
    /// the two is required.
    pub upstream: Option<Sp<RawUpstream>>,
    /// Several backends by name (gateway form); actions and `defaults` name one.
    pub upstreams: Option<Sp<BTreeMap<String, Sp<RawUpstream>>>>,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub requests: RawRequests,
    #[serde(default)]
    pub identity_headers: RawIdentityHeaders,
    /// Keep `Authorization` when forwarding. Default true.
    pub forward_token: Option<Sp<bool>>,
    /// `stdout`, `stderr`, `off` or a file path. Default `stdout`.
    pub decision_log: Option<Sp<String>>,
    #[serde(default)]
    pub defaults: RawDefaults,
    /// Proxy worker threads. Default: the CPUs the process may use.
    pub workers: Option<Sp<usize>>,
    /// How long in-flight requests may take to finish after SIGTERM. Default `10s`.
    pub shutdown_grace: Option<Sp<String>>,
    /// Connection and resource limits (writ extension; defaults shown in the docs).
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub actions: Vec<RawAction>,
    /// `writ lint` findings silenced everywhere (`allow: [CODE]`).
    pub lint: Option<RawLint>,
    /// Revoked tokens: a file, and/or a Redis (or Valkey) store shared by a fleet.
    pub revocation: Option<RawRevocation>,
    /// Shared Signals transmitters (SSF 1.0: CAEP and RISC events) whose events
    /// become revocation entries.
    #[serde(default)]
    pub signals: Vec<RawSignal>,
    /// Front doors: decide for a mesh (Envoy/Istio ext_authz over gRPC) or an
    /// ingress (HTTP forward-auth) instead of proxying. Listen only when set.
    pub ext_authz: Option<Sp<RawExtAuthz>>,
    /// RFC 9728 protected resource metadata, served by writ and linked from every 401.
    pub protected_resource: Option<Sp<RawProtectedResource>>,
}

/// `protected_resource:` (SPEC: Request bodies, MCP).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProtectedResource {
    /// The resource identifier, e.g. `https://mcp.example.com/mcp`.
    pub resource: Sp<String>,
    pub authorization_servers: Vec<Sp<String>>,
}

/// A byte size: a number, or a string with `B`, `KiB`, `MiB` or `GiB`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

/// What an action reads of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawBody {
    /// A strictly parsed JSON body: `{body.a.b}` may be bound.
    Json,
}

/// `mcp:`: exactly one of `tool`, `method`, `resource`, `prompt`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    /// `tools/call` by `params.name`: a name or glob.
    pub tool: Option<Sp<String>>,
    /// Any other JSON-RPC method: a name or glob.
    pub method: Option<Sp<String>>,
    /// `resources/read` by `params.uri`: a URI template.
    pub resource: Option<Sp<String>>,
    /// `prompts/get` by `params.name`: a name or glob.
    pub prompt: Option<Sp<String>>,
}

/// `require.authorization_details` (RFC 9396).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuthorizationDetails {
    /// An entry of this `type` must exist.
    #[serde(rename = "type")]
    pub kind: Sp<String>,
    /// Entry field (dotted) = value, or an array holding it.
    #[serde(default, rename = "match")]
    pub matches: BTreeMap<String, Sp<RawClaimScalar>>,
    /// Entry field (dotted) is a number ≥ the request's value.
    #[serde(default)]
    pub limits: BTreeMap<String, Sp<RawClaimScalar>>,
}

/// `ext_authz:` (SPEC: Front doors).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExtAuthz {
    /// `envoy.service.auth.v3.Authorization/Check` listener, e.g. `127.0.0.1:9191`.
    pub grpc: Option<Sp<String>>,
    /// Forward-auth listener (nginx `auth_request`, Traefik ForwardAuth, Caddy
    /// `forward_auth`), e.g. `127.0.0.1:9192`.
    pub http: Option<Sp<String>>,
    /// Peers (CIDR or single IP) allowed to call the front doors. Default loopback only.
    pub trusted_proxies: Option<Vec<Sp<String>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSignal {
    /// The SET's `iss`.
    pub issuer: Sp<String>,
    /// Must be in the SET's `aud`.
    pub audience: Sp<String>,
    pub jwks_file: Option<Sp<String>>,
    pub jwks_url: Option<Sp<String>>,
    /// RFC 8936 polling; omit for push (`POST /ssf/events` on the admin listener).
    pub poll: Option<RawPoll>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPoll {
    pub url: Sp<String>,
    /// Default `5s`.
    pub every: Option<Sp<String>>,
    /// Environment variable holding the bearer token for the poll endpoint.
    pub token_env: Option<Sp<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    /// `revoked: [ {jti|sub|actor|issuer|issued_before|until} ]`, hot-reloaded.
    pub file: Option<Sp<String>>,
    /// `redis://host:6379/0`: the set every replica follows.
    pub redis: Option<Sp<String>>,
}

/// Lint findings to silence, by code (`writ lint` lists the codes).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLint {
    #[serde(default)]
    pub allow: Vec<Sp<String>>,
}

/// Resource limits. SPEC fixes the request-head limits (8 KiB target, 64 KiB /
/// 100 header fields); these bound everything else.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Concurrent client connections; more wait in the listen backlog. Default 10000.
    pub max_connections: Option<Sp<usize>>,
    /// Time a client has to send a complete request head. Default `10s`.
    pub header_read_timeout: Option<Sp<String>>,
    /// Concurrent HTTP/2 streams per connection. Default 256.
    pub max_h2_streams: Option<Sp<u32>>,
    /// How long a response may wait for the client to take data (HTTP/2 flow-control
    /// window, socket send buffer) before the connection is closed. Default `30s`.
    pub send_timeout: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Sp<String>,
    pub key: Sp<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `http://` or `https://` base URL of the backend. Required.
    #[schemars(required)]
    pub url: Option<Sp<String>>,
    /// CA bundle (PEM) for an https upstream.
    pub ca: Option<Sp<String>>,
    /// TLS server name for an https upstream, when it differs from the URL host.
    pub server_name: Option<Sp<String>>,
    pub connect_timeout: Option<Sp<String>>,
    pub timeout: Option<Sp<String>>,
    /// Active health check; without it, `writ_upstream_up` follows real traffic only.
    pub health_check: Option<Sp<RawHealthCheck>>,
}

/// `health_check: { path, every }` on an upstream.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// Path (under the upstream URL's base path) answered with 2xx or 3xx when healthy.
    pub path: Sp<String>,
    /// Interval between checks. Default `10s`; at least `1s`.
    pub every: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    /// Must equal the token's `iss` exactly.
    pub issuer: Sp<String>,
    pub audiences: Sp<Vec<String>>,
    pub algorithms: Sp<Vec<Sp<String>>>,
    pub jwks_file: Option<Sp<String>>,
    pub jwks_url: Option<Sp<String>>,
    pub jwks_refresh: Option<Sp<String>>,
    /// CA bundle (PEM) to trust for an https `jwks_url` instead of the system roots.
    pub jwks_ca: Option<Sp<String>>,
    pub public_key_pem: Option<Sp<String>>,
    pub hmac_secret_env: Option<Sp<String>>,
    pub leeway: Option<Sp<String>>,
    pub require_typ: Option<Sp<String>>,
    /// RFC 7662 introspection, for actions with `require: { introspect: true }`.
    pub introspection: Option<RawIntrospection>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRequests {
    pub encoded_slash: Option<RejectKeep>,
    pub semicolon: Option<RejectKeep>,
    pub trailing_slash: Option<TrailingSlash>,
    pub case_sensitive: Option<bool>,
    pub method_override: Option<RejectStrip>,
    pub url_override: Option<RejectStrip>,
    pub max_token_bytes: Option<Sp<usize>>,
    /// Bodies writ must read (`body: json`, MCP): larger is 413. Default `1MiB`.
    pub max_json_body: Option<Sp<RawSize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RejectKeep {
    Reject,
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RejectStrip {
    Reject,
    Strip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrailingSlash {
    Ignore,
    Strict,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityHeaders {
    pub subject: Option<Sp<String>>,
    pub actor: Option<Sp<String>>,
    pub action: Option<Sp<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub unmatched: Option<Sp<Unmatched>>,
    pub mode: Option<Sp<RawMode>>,
    pub delegation: Option<RawDelegation>,
    /// The upstream for actions that name none and for forwarded unmatched
    /// requests. Required when `upstreams` names more than one.
    pub upstream: Option<Sp<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Mode")]
pub enum RawMode {
    Enforce,
    Audit,
}

impl From<RawMode> for Mode {
    fn from(m: RawMode) -> Mode {
        match m {
            RawMode::Enforce => Mode::Enforce,
            RawMode::Audit => Mode::Audit,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "DelegationMode")]
pub enum RawDelegationMode {
    Forbid,
    Allow,
    Require,
}

impl From<RawDelegationMode> for DelegationMode {
    fn from(m: RawDelegationMode) -> DelegationMode {
        match m {
            RawDelegationMode::Forbid => DelegationMode::Forbid,
            RawDelegationMode::Allow => DelegationMode::Allow,
            RawDelegationMode::Require => DelegationMode::Require,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDelegation {
    pub mode: Option<RawDelegationMode>,
    /// Globs on the current actor's `sub` (`*` matches any run of characters).
    pub actors: Option<Vec<Sp<String>>>,
    pub max_depth: Option<Sp<usize>>,
    pub max_age: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub name: Sp<String>,
    pub methods: Sp<Vec<Sp<String>>>,
    /// `/literal/{param}/{*rest}`.
    pub path: Sp<String>,
    pub host: Option<Sp<String>>,
    #[serde(default)]
    pub execution: bool,
    pub mode: Option<Sp<RawMode>>,
    #[serde(default)]
    pub public: Option<Sp<bool>>,
    pub require: Option<RawRequire>,
    pub delegation: Option<RawDelegation>,
    /// The `upstreams` entry this action forwards to (default: `defaults.upstream`).
    pub upstream: Option<Sp<String>>,
    /// `writ lint` findings silenced for this action.
    pub lint: Option<RawLint>,
    /// `json`: the body is read and strictly parsed; `{body.a.b}` may be bound.
    pub body: Option<Sp<RawBody>>,
    /// An MCP (JSON-RPC over Streamable HTTP) tool, method, resource or prompt.
    pub mcp: Option<Sp<RawMcp>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRequire {
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub any_scope: Vec<String>,
    /// Equality on claims; `"{param}"` binds to a path parameter.
    #[serde(default)]
    pub claims: BTreeMap<String, Sp<RawClaimScalar>>,
    pub auth_max_age: Option<Sp<String>>,
    pub acr: Option<Vec<String>>,
    /// The issuer's introspection endpoint must answer `active: true` for the token.
    pub introspect: Option<Sp<bool>>,
    /// An approved transaction (RFC 9396) the request must stay inside.
    pub authorization_details: Option<RawAuthorizationDetails>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    pub url: Sp<String>,
    pub client_id: Sp<String>,
    /// Environment variable holding the client secret (never the secret itself).
    pub client_secret_env: Sp<String>,
    /// How long an answer is reused for the same token (never beyond its `exp`). Default `30s`.
    pub cache: Option<Sp<String>>,
    /// How long one call may take; then the request is refused (503). Default `5s`.
    pub timeout: Option<Sp<String>>,
}

/// A claim's expected value: YAML scalars only.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "ClaimScalar")]
pub enum RawClaimScalar {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl From<RawClaimScalar> for ClaimScalar {
    fn from(c: RawClaimScalar) -> ClaimScalar {
        match c {
            RawClaimScalar::Bool(b) => ClaimScalar::Bool(b),
            RawClaimScalar::Int(i) => ClaimScalar::Int(i),
            RawClaimScalar::Str(s) => ClaimScalar::Str(s),
        }
    }
}
