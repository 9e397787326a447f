//! The one entry point: [`decide`] runs the stages in request order and turns
//! their results into a [`Decision`]. The proxy, `explain`, `test`, `demo`, the
//! benches and the fuzz targets all call it; a new front door is one more caller,
//! a new check one more step in a stage.

use std::sync::Arc;

use crate::authenticate::cache::TokenCache;
use crate::authenticate::token::Verified;
use crate::authenticate::{Credentials, authenticate, bearer, check_revocation};
use crate::authorize::{Bound, Introspected, authorize, introspection};
use crate::classify::body::{BodyFacts, McpCall, classify_body};
use crate::classify::classify;
use crate::decision::{Check, Denial, Permit, Reason, Staged, Verdict};
use crate::normalize::{NormalizedTarget, normalize};
use crate::policy::Policy;
use crate::record::Credential;
use crate::request::Request;
use crate::revocation::Entry;
use crate::vocab::{Mode, normalize_host};

/// What a decision depends on besides the policy and the request.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Seconds since the Unix epoch (fractional).
    pub now: f64,
    /// Where the token comes from.
    pub credentials: &'a Credentials,
    /// Verified tokens from earlier requests (`None`: verify every time).
    pub cache: Option<&'a TokenCache>,
    /// Whether to list every check (`explain`, a failing `writ test` case).
    pub trace: bool,
    /// The introspection answer for this request's token, once `writ` asked
    /// (see [`Decision::introspect`]).
    pub introspection: Option<Introspected>,
}

/// Everything the engine concluded about one request.
#[derive(Debug)]
pub struct Decision {
    /// Allow, deny, or an audit-mode would-be denial.
    pub verdict: Verdict,
    /// Index of the matched action.
    pub action: Option<usize>,
    /// The normalized target (what is classified and forwarded).
    pub target: Option<NormalizedTarget>,
    /// The host as matched (lowercase, no port, no trailing dot).
    pub host: Option<String>,
    /// Path parameters of the matched template, as normalized.
    pub params: Vec<(String, String)>,
    /// The verified token, when authentication passed.
    pub token: Option<Arc<Verified>>,
    /// Every check in order; empty unless [`Context::trace`] was set.
    pub checks: Vec<Check>,
    /// The form body to forward instead of the client's, when `method_override:
    /// strip` removed `_method` pairs from it.
    pub form_body: Option<Vec<u8>>,
    /// The time it was decided at ([`Context::now`]); the decision log's `ts`.
    pub now: f64,
    /// What became of the request's credential (for the decision log).
    /// `None` also when authentication never ran: whether a token was sent
    /// then is [`logged_credential`]'s business, paid only when logging.
    pub credential: Credential,
    /// The revocation entry that refused the token (`explain`; the log records its kind).
    pub revoked: Option<Box<Entry>>,
    /// Set when the action needs introspection and [`Context::introspection`] had
    /// no answer: the issuer to ask (index). The caller asks, then decides again
    /// with the answer; a caller that cannot ask keeps the 503.
    pub introspect: Option<usize>,
    /// The introspection answer this decision used (for the decision log and replay).
    pub introspected: Option<Introspected>,
    /// The action reads a JSON body and [`Request::json_body`] was `None`: the
    /// caller reads it (bounded by `requests.max_json_body`) and decides again;
    /// a caller that cannot read it keeps the 400.
    pub needs_body: bool,
    /// The JSON-RPC call, when the request reached an MCP endpoint (a denial
    /// then answers as a JSON-RPC error; the log records the tool).
    pub mcp: Option<McpCall>,
}

/// Decides one request under `policy`.
pub fn decide(policy: &Policy, req: &Request<'_>, cx: &Context<'_>) -> Decision {
    let mut d = Decision {
        verdict: Verdict::Deny(Denial::new(Reason::BadRequest, "")),
        action: None,
        target: None,
        host: req.host.map(normalize_host),
        params: Vec::new(),
        token: None,
        checks: Vec::new(),
        form_body: None,
        now: cx.now,
        credential: Credential::None,
        revoked: None,
        introspect: None,
        introspected: None,
        needs_body: false,
        mcp: None,
    };
    d.verdict = run(policy, req, cx, &mut d);
    d
}

/// The credential as the decision log records it: a decision that never
/// reached authentication (`None`) is `Unchecked` when the request carried a
/// token (a `Basic` header is none; a malformed `Bearer` header is one). Kept
/// out of [`decide`] so that only a request that is logged pays for it.
pub fn logged_credential(c: Credential, headers: &http::HeaderMap) -> Credential {
    match c {
        Credential::None if !matches!(bearer(headers), Ok(None)) => Credential::Unchecked,
        c => c,
    }
}

/// Takes a stage's result, adding its checks to the trace when one is kept.
fn take<T>(cx: &Context<'_>, d: &mut Decision, staged: Staged<T>) -> Result<T, Denial> {
    if cx.trace {
        Check::from_steps(&staged.steps, staged.result.as_ref().err(), &mut d.checks);
    }
    staged.result
}

fn run(policy: &Policy, req: &Request<'_>, cx: &Context<'_>, d: &mut Decision) -> Verdict {
    let normalized = match take(cx, d, normalize(policy, req)) {
        Ok(n) => n,
        Err(e) => return Verdict::Deny(e),
    };
    d.form_body = normalized.form_body;
    let staged = classify(policy, req.method, d.host.as_deref(), &normalized.target);
    d.target = Some(normalized.target);
    let found = match take(cx, d, staged) {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Verdict::Allow {
                permit: Permit::unauthenticated(),
                reason: Reason::Allowed,
            };
        }
        Err(e) if e.reason == Reason::NoMatchingAction => {
            return audit_or_deny(policy.defaults.mode, e, false);
        }
        Err(e) => return Verdict::Deny(e),
    };
    // An MCP endpoint's routed action is only its first; the body picks the one.
    if policy.action(found.action).mcp_group.is_none() {
        d.action = Some(found.action);
    }
    let mut facts = BodyFacts::default();
    let staged = classify_body(policy, req, found, &mut facts);
    d.needs_body = facts.needs_body;
    d.mcp = facts.mcp;
    let (found, body) = match take(cx, d, staged) {
        Ok(c) => (c.route, c.body),
        Err(e) if e.reason == Reason::NoMatchingAction => {
            return audit_or_deny(policy.defaults.mode, e, false);
        }
        Err(e) => return Verdict::Deny(e),
    };
    d.action = Some(found.action);
    d.params = found.params;
    let action = policy.action(found.action);
    let mode = action.mode.unwrap_or(policy.defaults.mode);
    if action.public {
        return Verdict::Allow {
            permit: Permit::unauthenticated(),
            reason: Reason::Public,
        };
    }

    let staged = authenticate(
        policy,
        cx.cache,
        req.headers,
        cx.credentials,
        action,
        cx.now,
    );
    let token = match take(cx, d, staged) {
        Ok(v) => v,
        Err(e) => {
            if e.reason != Reason::NoToken {
                d.credential = Credential::Rejected;
            }
            return audit_or_deny(mode, e, false);
        }
    };
    // Kept for the log (who tried) even when revoked below.
    d.token = Some(token.clone());
    if let Err(e) = take(cx, d, check_revocation(policy, &token, cx.now)) {
        d.credential = Credential::Rejected;
        d.revoked = policy.revocation.find(&token.claims, cx.now).map(Box::new);
        return audit_or_deny(mode, e, false);
    }
    d.credential = Credential::Verified;

    let bound = Bound {
        params: &d.params,
        body: body.as_ref(),
    };
    let permit = match take(cx, d, authorize(policy, action, bound, &token, cx.now)) {
        Ok(permit) => permit,
        Err(e) => return audit_or_deny(mode, e, true),
    };
    if action.require.introspect {
        d.introspected = cx.introspection;
    }
    if action.require.introspect
        && let Err(e) = take(cx, d, introspection(policy, &token, cx.introspection))
    {
        if cx.introspection.is_none() && policy.issuers[token.issuer].introspection.is_some() {
            d.introspect = Some(token.issuer);
        }
        if e.reason == Reason::TokenRevoked {
            d.credential = Credential::Rejected;
        }
        return audit_or_deny(mode, e, true);
    }
    Verdict::Allow {
        permit,
        reason: Reason::Allowed,
    }
}

/// Whether a `tools/list` entry stays listed (SPEC: the answer is filtered to
/// the tools the caller's token could call): the tool is classified on the
/// same endpoint as a `tools/call` and authorized as one, without arguments,
/// so conditions on arguments are not checked and everything else is. The
/// token is the one the `tools/list` request itself was decided with.
pub fn tool_visible(
    policy: &Policy,
    group: usize,
    params: &[(String, String)],
    token: Option<&Verified>,
    tool: &str,
    now: f64,
) -> bool {
    let Some(i) = policy
        .mcp_groups
        .get(group)
        .and_then(|g| g.select(crate::policy::mcp::TOOLS_CALL, Some(tool)))
    else {
        return false;
    };
    let action = policy.action(i);
    if action.public || action.mode.unwrap_or(policy.defaults.mode) == Mode::Audit {
        return true;
    }
    let Some(token) = token else {
        return false;
    };
    let bound = Bound { params, body: None };
    authorize(policy, action, bound, token, now).result.is_ok()
}

/// `token_verified`: whether authentication passed before the denial.
fn audit_or_deny(mode: Mode, e: Denial, token_verified: bool) -> Verdict {
    match mode {
        Mode::Audit => Verdict::AuditDeny {
            permit: Permit::audit_pass(token_verified),
            denial: e,
        },
        Mode::Enforce => Verdict::Deny(e),
    }
}

#[cfg(test)]
mod tests;
