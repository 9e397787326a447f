//! Outcomes of the pipeline as data: the fixed reason vocabulary of SPEC's Responses
//! table, denials, and the permit that forwarding requires.

use std::fmt;

/// Every reason writ can give, one variant per entry of SPEC's Responses table.
/// Metric labels and log fields come only from `as_str`, so a client can never
/// create a new label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Forwarded: every check passed.
    Allowed,
    /// Forwarded: the action is public.
    Public,
    /// 400: a request writ will not classify (normalization, duplicate headers, bad Host).
    BadRequest,
    /// 400: an override input (`X-HTTP-Method-Override`, `_method`).
    MethodOverride,
    /// 400: a URL override header (`X-Original-URL`, `X-Rewrite-URL`).
    UrlOverride,
    /// 405: the method is refused here (with `Allow`).
    MethodNotAllowed,
    /// 401: a protected action without a bearer token.
    NoToken,
    /// 401: a token writ cannot read, or one with a forbidden shape.
    MalformedToken,
    /// 401: the signature does not verify.
    BadSignature,
    /// 401: no key of the issuer matches the token's `kid` and `alg`.
    UnknownKey,
    /// 401: the algorithm is not in the issuer's allowlist.
    AlgNotAllowed,
    /// 401: `exp` has passed.
    TokenExpired,
    /// 401: `nbf` is in the future.
    TokenNotYetValid,
    /// 401: `iss` is not a configured issuer.
    WrongIssuer,
    /// 401: `aud` names none of the issuer's audiences.
    WrongAudience,
    /// 401: `typ` is not what `require_typ` demands.
    WrongTokenType,
    /// 401: the token exceeds `max_token_bytes`.
    TokenTooLarge,
    /// 401: the delegation expired (`act.exp`, `max_age`).
    DelegationExpired,
    /// 403: a required scope is missing.
    InsufficientScope,
    /// 403: a claim condition failed.
    ClaimMismatch,
    /// 403: the action does not accept delegated tokens.
    DelegationForbidden,
    /// 403: the action must be called by a delegated agent.
    DelegationRequired,
    /// 403: the current actor matches no `actors` glob.
    ActorNotAllowed,
    /// 403: the `act` chain is longer than `max_depth`.
    DelegationTooDeep,
    /// 403: no action matches the request.
    NoMatchingAction,
    /// 401: authentication too old or too weak (RFC 9470).
    StepUpRequired,
    /// 502: the backend could not be reached.
    UpstreamUnavailable,
    /// 504: the backend did not answer in time.
    UpstreamTimeout,
    /// 413: a body writ must read is larger than allowed.
    BodyTooLarge,
    /// 401: the token matches an entry of the revocation set (or introspection says inactive).
    TokenRevoked,
    /// 503: the introspection endpoint did not answer.
    IntrospectionUnavailable,
    /// 403: the request is outside the token's approved `authorization_details`.
    AuthorizationDetailsMismatch,
}

impl Reason {
    /// Every reason, in SPEC's table order.
    pub const ALL: [Reason; 32] = [
        Reason::Allowed,
        Reason::Public,
        Reason::BadRequest,
        Reason::MethodOverride,
        Reason::UrlOverride,
        Reason::MethodNotAllowed,
        Reason::NoToken,
        Reason::MalformedToken,
        Reason::BadSignature,
        Reason::UnknownKey,
        Reason::AlgNotAllowed,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::WrongTokenType,
        Reason::TokenTooLarge,
        Reason::DelegationExpired,
        Reason::InsufficientScope,
        Reason::ClaimMismatch,
        Reason::DelegationForbidden,
        Reason::DelegationRequired,
        Reason::ActorNotAllowed,
        Reason::DelegationTooDeep,
        Reason::NoMatchingAction,
        Reason::StepUpRequired,
        Reason::UpstreamUnavailable,
        Reason::UpstreamTimeout,
        Reason::BodyTooLarge,
        Reason::TokenRevoked,
        Reason::IntrospectionUnavailable,
        Reason::AuthorizationDetailsMismatch,
    ];

    /// The reason as it appears in responses, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::Public => "public",
            Reason::BadRequest => "bad_request",
            Reason::MethodOverride => "method_override",
            Reason::UrlOverride => "url_override",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::NoToken => "no_token",
            Reason::MalformedToken => "malformed_token",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownKey => "unknown_key",
            Reason::AlgNotAllowed => "alg_not_allowed",
            Reason::TokenExpired => "token_expired",
            Reason::TokenNotYetValid => "token_not_yet_valid",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::WrongTokenType => "wrong_token_type",
            Reason::TokenTooLarge => "token_too_large",
            Reason::DelegationExpired => "delegation_expired",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::ClaimMismatch => "claim_mismatch",
            Reason::DelegationForbidden => "delegation_forbidden",
            Reason::DelegationRequired => "delegation_required",
            Reason::ActorNotAllowed => "actor_not_allowed",
            Reason::DelegationTooDeep => "delegation_too_deep",
            Reason::NoMatchingAction => "no_matching_action",
            Reason::StepUpRequired => "step_up_required",
            Reason::UpstreamUnavailable => "upstream_unavailable",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::BodyTooLarge => "body_too_large",
            Reason::TokenRevoked => "token_revoked",
            Reason::IntrospectionUnavailable => "introspection_unavailable",
            Reason::AuthorizationDetailsMismatch => "authorization_details_mismatch",
        }
    }

    /// The reason spelled `s`, if any.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The row of SPEC's Responses table this reason belongs to: the one place
    /// each reason is sorted; status, title and challenge derive from it.
    pub fn class(self) -> Class {
        match self {
            Reason::Allowed | Reason::Public => Class::Allowed,
            Reason::BadRequest | Reason::MethodOverride | Reason::UrlOverride => Class::BadRequest,
            Reason::MethodNotAllowed => Class::MethodNotAllowed,
            Reason::NoToken => Class::NoToken,
            Reason::MalformedToken
            | Reason::BadSignature
            | Reason::UnknownKey
            | Reason::AlgNotAllowed
            | Reason::TokenExpired
            | Reason::TokenNotYetValid
            | Reason::WrongIssuer
            | Reason::WrongAudience
            | Reason::WrongTokenType
            | Reason::TokenTooLarge
            | Reason::DelegationExpired
            | Reason::TokenRevoked => Class::InvalidToken,
            Reason::InsufficientScope => Class::InsufficientScope,
            Reason::ClaimMismatch
            | Reason::DelegationForbidden
            | Reason::DelegationRequired
            | Reason::ActorNotAllowed
            | Reason::DelegationTooDeep
            | Reason::NoMatchingAction
            | Reason::AuthorizationDetailsMismatch => Class::Forbidden,
            Reason::StepUpRequired => Class::StepUp,
            Reason::UpstreamUnavailable => Class::BadGateway,
            Reason::UpstreamTimeout => Class::GatewayTimeout,
            Reason::BodyTooLarge => Class::TooLarge,
            Reason::IntrospectionUnavailable => Class::Unavailable,
        }
    }

    /// HTTP status of a rejection with this reason (SPEC Responses table).
    /// Allowed reasons answer with the backend's status; 200 stands in for it here.
    pub fn status(self) -> u16 {
        self.class().status()
    }

    /// Short human title for the problem+json body (RFC 9457 `title`).
    pub fn title(self) -> &'static str {
        self.class().title()
    }

    /// Whether the reason belongs in `WWW-Authenticate: Bearer error="invalid_token"`.
    pub fn is_invalid_token(self) -> bool {
        self.class() == Class::InvalidToken
    }
}

/// A row of SPEC's Responses table: reasons that answer alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Forwarded (`allowed`, `public`).
    Allowed,
    /// 400: a request writ will not classify.
    BadRequest,
    /// 405, with `Allow`.
    MethodNotAllowed,
    /// 401 with a bare `Bearer realm` challenge.
    NoToken,
    /// 401 `error="invalid_token"`.
    InvalidToken,
    /// 403 `error="insufficient_scope"`.
    InsufficientScope,
    /// 403 without a challenge.
    Forbidden,
    /// 401 `error="insufficient_user_authentication"` (RFC 9470).
    StepUp,
    /// 502.
    BadGateway,
    /// 504.
    GatewayTimeout,
    /// 413.
    TooLarge,
    /// 503, no challenge (fail closed).
    Unavailable,
}

impl Class {
    /// The HTTP status of the row (200 stands in for the backend's own).
    pub fn status(self) -> u16 {
        match self {
            Class::Allowed => 200,
            Class::BadRequest => 400,
            Class::MethodNotAllowed => 405,
            Class::NoToken | Class::InvalidToken | Class::StepUp => 401,
            Class::InsufficientScope | Class::Forbidden => 403,
            Class::BadGateway => 502,
            Class::GatewayTimeout => 504,
            Class::TooLarge => 413,
            Class::Unavailable => 503,
        }
    }

    /// The problem+json `title` of the row.
    pub fn title(self) -> &'static str {
        match self {
            Class::Allowed => "Allowed",
            Class::BadRequest => "Bad Request",
            Class::MethodNotAllowed => "Method Not Allowed",
            Class::NoToken => "Authentication required",
            Class::InvalidToken => "Invalid token",
            Class::InsufficientScope => "Insufficient scope",
            Class::Forbidden => "Forbidden",
            Class::StepUp => "Stronger authentication required",
            Class::BadGateway => "Bad Gateway",
            Class::GatewayTimeout => "Gateway Timeout",
            Class::TooLarge => "Content Too Large",
            Class::Unavailable => "Service Unavailable",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Extra data a challenge needs (RFC 6750 `scope=`, RFC 9470 `max_age=` / `acr_values=`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChallengeParams {
    /// `scope=`: the scopes the action requires.
    pub scope: Option<String>,
    /// `max_age=`: the step-up freshness in seconds.
    pub max_age: Option<u64>,
    /// `acr_values=`: the acceptable authentication classes.
    pub acr_values: Option<String>,
}

/// A refusal: the reason, a human detail (never token bytes) and challenge data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The reason (SPEC Responses table).
    pub reason: Reason,
    /// Usually `reason.status()`; 414 and 431 are `bad_request` with their own status.
    pub status: u16,
    /// Human detail for the problem body; never client bytes beyond what is safe to echo.
    pub detail: String,
    /// What the `WWW-Authenticate` challenge names.
    pub challenge: ChallengeParams,
    /// Methods for the `Allow` header of a 405.
    pub allow: Vec<String>,
}

impl Denial {
    /// A denial with the reason's own status.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Denial {
            reason,
            status: reason.status(),
            detail: detail.into(),
            challenge: ChallengeParams::default(),
            allow: Vec::new(),
        }
    }

    /// The same denial with another status (414, 431, 501 share `bad_request`).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The `WWW-Authenticate` value for this denial, if its status calls for one.
    pub fn www_authenticate(&self) -> Option<String> {
        let r = self.reason;
        if r == Reason::NoToken {
            return Some(r#"Bearer realm="writ""#.to_string());
        }
        if r.is_invalid_token() {
            return Some(format!(
                r#"Bearer realm="writ", error="invalid_token", error_description="{}""#,
                quote_safe(&self.detail)
            ));
        }
        if r == Reason::InsufficientScope {
            let scope = self.challenge.scope.as_deref().unwrap_or("");
            return Some(format!(
                r#"Bearer realm="writ", error="insufficient_scope", scope="{}""#,
                quote_safe(scope)
            ));
        }
        if r == Reason::StepUpRequired {
            let mut v = String::from(
                r#"Bearer realm="writ", error="insufficient_user_authentication", error_description="a stronger or more recent authentication is required""#,
            );
            if let Some(max_age) = self.challenge.max_age {
                v.push_str(&format!(", max_age={max_age}"));
            }
            if let Some(acr) = &self.challenge.acr_values {
                v.push_str(&format!(r#", acr_values="{}""#, quote_safe(acr)));
            }
            return Some(v);
        }
        None
    }
}

/// Keeps a value safe inside a quoted-string: no quotes, backslashes or control bytes.
fn quote_safe(s: &str) -> std::borrow::Cow<'_, str> {
    let ok = |c: char| c != '"' && c != '\\' && !c.is_control();
    // Nearly always there is nothing to drop: no copy then.
    if s.chars().all(ok) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(s.chars().filter(|c| ok(*c)).collect())
}

/// Proof that authorization allowed a request. Only the pipeline can mint one
/// (private field), and forwarding takes one, so no code path can forward a
/// request that was not decided (linkerd's `Permitted<T>`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::manual_non_exhaustive)] // the private field is the point: no minting outside
pub struct Permit {
    /// Identity headers to set: verified `sub` and the current actor.
    pub subject: Option<String>,
    /// The current actor (`act.sub`), set as the actor header when delegated.
    pub actor: Option<String>,
    /// Whether identity headers are set at all: false for an audit pass, whose
    /// denial must not be dressed up as a verified identity.
    pub set_identity: bool,
    /// Whether writ verified the request's bearer token itself: only then may
    /// `Authorization` be forwarded (a backend that reads claims from it would
    /// otherwise trust a forgery writ never checked).
    pub token_verified: bool,
    _private: (),
}

impl Permit {
    /// Forward with this verified identity (the token was verified).
    pub(crate) fn verified(subject: Option<String>, actor: Option<String>) -> Self {
        Permit {
            subject,
            actor,
            set_identity: true,
            token_verified: true,
            _private: (),
        }
    }

    /// Forward without a verified token: a public action, or an unmatched
    /// request under `unmatched: allow`.
    pub(crate) fn unauthenticated() -> Self {
        Permit {
            subject: None,
            actor: None,
            set_identity: true,
            token_verified: false,
            _private: (),
        }
    }

    /// An audit-mode would-be denial, forwarded without identity headers;
    /// `token_verified` says whether authentication itself passed.
    pub(crate) fn audit_pass(token_verified: bool) -> Self {
        Permit {
            subject: None,
            actor: None,
            set_identity: false,
            token_verified,
            _private: (),
        }
    }
}

/// How a verdict is recorded: the one place these label values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels {
    /// `writ_requests_total{decision}`: allow, deny, audit_deny.
    pub metric: &'static str,
    /// The decision log's `decision`: an audit-mode pass is a `deny` (SPEC).
    pub log: &'static str,
    /// The decision log's `enforced`: false only for an audit-mode pass.
    pub enforced: bool,
}

impl Labels {
    /// An allowed request.
    pub const ALLOW: Labels = Labels {
        metric: "allow",
        log: "allow",
        enforced: true,
    };
    /// A refused request (also anything refused before a decision).
    pub const DENY: Labels = Labels {
        metric: "deny",
        log: "deny",
        enforced: true,
    };
    /// A would-be denial that audit mode forwarded.
    pub const AUDIT_DENY: Labels = Labels {
        metric: "audit_deny",
        log: "deny",
        enforced: false,
    };
}

/// What the pipeline decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the request upstream.
    Allow {
        /// What forwarding may set.
        permit: Permit,
        /// `allowed` or `public`.
        reason: Reason,
    },
    /// Refuse with this denial; the backend sees nothing.
    Deny(Denial),
    /// Audit mode: the denial is recorded, the request is forwarded anyway.
    AuditDeny {
        /// What forwarding may set (no identity).
        permit: Permit,
        /// The denial audit mode let through.
        denial: Denial,
    },
}

impl Verdict {
    /// The reason to record.
    pub fn reason(&self) -> Reason {
        match self {
            Verdict::Allow { reason, .. } => *reason,
            Verdict::Deny(d) | Verdict::AuditDeny { denial: d, .. } => d.reason,
        }
    }

    /// The permit, if the request is forwarded.
    pub fn permit(&self) -> Option<&Permit> {
        match self {
            Verdict::Allow { permit, .. } | Verdict::AuditDeny { permit, .. } => Some(permit),
            Verdict::Deny(_) => None,
        }
    }

    /// How the verdict is recorded: metric and log labels, enforcement.
    pub fn labels(&self) -> Labels {
        match self {
            Verdict::Allow { .. } => Labels::ALLOW,
            Verdict::Deny(_) => Labels::DENY,
            Verdict::AuditDeny { .. } => Labels::AUDIT_DENY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SPEC Responses table, row by row.
    #[test]
    fn statuses_match_spec_table() {
        let table: &[(&str, u16)] = &[
            ("bad_request", 400),
            ("method_override", 400),
            ("url_override", 400),
            ("method_not_allowed", 405),
            ("no_token", 401),
            ("malformed_token", 401),
            ("bad_signature", 401),
            ("unknown_key", 401),
            ("alg_not_allowed", 401),
            ("token_expired", 401),
            ("token_not_yet_valid", 401),
            ("wrong_issuer", 401),
            ("wrong_audience", 401),
            ("wrong_token_type", 401),
            ("token_too_large", 401),
            ("delegation_expired", 401),
            ("insufficient_scope", 403),
            ("claim_mismatch", 403),
            ("delegation_forbidden", 403),
            ("delegation_required", 403),
            ("actor_not_allowed", 403),
            ("delegation_too_deep", 403),
            ("no_matching_action", 403),
            ("step_up_required", 401),
            ("upstream_unavailable", 502),
            ("upstream_timeout", 504),
        ];
        for (name, status) in table {
            let r = Reason::parse(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(r.status(), *status, "{name}");
            assert_eq!(r.as_str(), *name);
        }
    }

    #[test]
    fn challenges_match_spec_table() {
        assert_eq!(
            Denial::new(Reason::NoToken, "x")
                .www_authenticate()
                .as_deref(),
            Some(r#"Bearer realm="writ""#)
        );
        let c = Denial::new(Reason::TokenExpired, "token expired \"x\"")
            .www_authenticate()
            .unwrap();
        assert!(c.contains(r#"error="invalid_token""#), "{c}");
        assert!(c.contains(r#"error_description="token expired x""#), "{c}");
        let mut d = Denial::new(Reason::InsufficientScope, "x");
        d.challenge.scope = Some("jobs:execute".into());
        assert!(
            d.www_authenticate()
                .unwrap()
                .contains(r#"error="insufficient_scope", scope="jobs:execute""#)
        );
        let mut d = Denial::new(Reason::StepUpRequired, "x");
        d.challenge.max_age = Some(600);
        d.challenge.acr_values = Some("mfa".into());
        let c = d.www_authenticate().unwrap();
        assert!(c.contains(r#"error="insufficient_user_authentication""#));
        assert!(c.contains("max_age=600") && c.contains(r#"acr_values="mfa""#));
        for r in [
            Reason::ClaimMismatch,
            Reason::BadRequest,
            Reason::UpstreamTimeout,
        ] {
            assert_eq!(Denial::new(r, "x").www_authenticate(), None);
        }
    }
}

/// Most checks one stage runs (authenticate: size, presence, verification,
/// time claims and shape).
const MAX_STEPS: usize = 6;

/// The checks one stage ran, in order, as `(stage label, check name)`. When the
/// stage failed, the last one is the check that failed. Plain data with no
/// allocation, so stages return it on every request, traced or not.
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    ran: [(&'static str, &'static str); MAX_STEPS],
    len: usize,
}

impl Steps {
    /// No check yet.
    pub const fn new() -> Self {
        Steps {
            ran: [("", ""); MAX_STEPS],
            len: 0,
        }
    }

    /// Records that a check is about to run.
    pub fn ran(&mut self, stage: &'static str, name: &'static str) {
        if let Some(slot) = self.ran.get_mut(self.len) {
            *slot = (stage, name);
            self.len += 1;
        }
    }

    /// The checks in the order they ran.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.ran[..self.len].iter().copied()
    }
}

impl Default for Steps {
    fn default() -> Self {
        Steps::new()
    }
}

/// What a stage returns: its result and the checks it ran to get there.
#[derive(Debug)]
pub struct Staged<T> {
    /// Checks run, in order (the last one failed if `result` is an error).
    pub steps: Steps,
    /// The stage's output, or the denial of its first failing check.
    pub result: Result<T, Denial>,
}

impl<T> Staged<T> {
    /// Runs a stage body that records its checks in the `Steps` it is given.
    pub fn run(body: impl FnOnce(&mut Steps) -> Result<T, Denial>) -> Staged<T> {
        let mut steps = Steps::new();
        let result = body(&mut steps);
        Staged { steps, result }
    }
}

/// One check as `writ explain` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The stage label (`normalize`, `classify`, `token`, `claims`, `authorize`).
    pub stage: &'static str,
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// `ok`, or `reason: detail` of the failure.
    pub detail: String,
}

impl Check {
    /// The checks of one stage's run, with the failure (if any) on the last one.
    pub fn from_steps(steps: &Steps, failed: Option<&Denial>, out: &mut Vec<Check>) {
        let n = steps.len;
        for (i, (stage, name)) in steps.iter().enumerate() {
            let failure = if i + 1 == n { failed } else { None };
            out.push(Check {
                stage,
                name,
                ok: failure.is_none(),
                detail: failure
                    .map(|d| format!("{}: {}", d.reason, d.detail))
                    .unwrap_or_else(|| "ok".into()),
            });
        }
    }
}

/// What the issuer's introspection endpoint said about this request's token
/// (`writ` asks and caches; the engine only reads the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Introspected {
    /// `active: true`.
    Active,
    /// `active: false`: the token is no longer good (`token_revoked`).
    Inactive,
    /// No usable answer (unreachable, error, garbage): fail closed.
    Unavailable,
}
