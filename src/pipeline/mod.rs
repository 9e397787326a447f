//! The decision engine: one pure function from (policy, request, time) to a
//! [`Decision`]. The proxy, `explain`, `test` and `demo` all call [`decide`].

pub mod authenticate;
pub mod authorize;
pub mod normalize;

use std::sync::Arc;

use http::HeaderMap;

use crate::auth::cache::TokenCache;
use crate::auth::token::Verified;
use crate::config::raw::Mode;
use crate::decision::{Denial, Permit, Reason, Verdict};
use crate::policy::router::NoMatch;
use crate::policy::{Policy, normalize_host};
pub use authenticate::Credentials;
use normalize::{Choice, NormalizedTarget};

/// Standard methods: any other method must be named by an action (SPEC).
pub const STANDARD_METHODS: [&str; 7] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

/// SPEC: more than 100 header fields is 431.
pub const MAX_HEADER_FIELDS: usize = 100;

/// Client headers that make some backends execute another method.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
/// Client headers that make some backends route to another URL.
pub const URL_OVERRIDE_HEADERS: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// A request as the engine sees it: plain data, no hyper types.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The request target as received (origin-form expected).
    pub target: &'a str,
    /// `Host` (or `:authority`) as received.
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The whole body of an `application/x-www-form-urlencoded` request (see
    /// [`is_form_body`]), read by the caller up to [`MAX_FORM_BODY`] bytes:
    /// frameworks take `_method` from it. `None` where there is no body to read.
    pub form_body: Option<&'a [u8]>,
}

/// The most of a form body writ reads to look for `_method`; larger is 413.
pub const MAX_FORM_BODY: usize = 1024 * 1024;

/// Whether the request carries a form body that must be read before deciding
/// (`Content-Type: application/x-www-form-urlencoded`, parameters allowed).
pub fn is_form_body(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::CONTENT_TYPE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b';')
            .next()
            .map(|t| t.trim_ascii())
            .is_some_and(|t| t.eq_ignore_ascii_case(b"application/x-www-form-urlencoded"))
    })
}

/// One check for `writ explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub stage: &'static str,
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Records checks only when asked (explain); free otherwise.
#[derive(Debug, Default)]
pub struct Trace(Option<Vec<Check>>);

impl Trace {
    pub fn enabled() -> Self {
        Trace(Some(Vec::new()))
    }
    pub fn off() -> Self {
        Trace(None)
    }
    pub fn check(&mut self, stage: &'static str, name: &'static str, failed: Option<&Denial>) {
        if let Some(v) = &mut self.0 {
            v.push(Check {
                stage,
                name,
                ok: failed.is_none(),
                detail: failed
                    .map(|d| format!("{}: {}", d.reason, d.detail))
                    .unwrap_or_else(|| "ok".into()),
            });
        }
    }
    pub fn into_checks(self) -> Vec<Check> {
        self.0.unwrap_or_default()
    }
}

/// Everything the engine concluded about one request.
#[derive(Debug)]
pub struct Decision {
    pub verdict: Verdict,
    /// Index of the matched action.
    pub action: Option<usize>,
    pub target: Option<NormalizedTarget>,
    pub host: Option<String>,
    pub params: Vec<(String, String)>,
    pub token: Option<Arc<Verified>>,
    pub checks: Vec<Check>,
    /// The form body to forward instead of the client's, when `method_override:
    /// strip` removed `_method` pairs from it.
    pub form_body: Option<Vec<u8>>,
}

/// Header names are compared case-insensitively with `_` and `.` read as `-`,
/// the way CGI/WSGI and PHP backends fold them into `HTTP_X_WRIT_SUBJECT`
/// (oauth2-proxy CVE-2025-64484).
pub fn header_is(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || ((a == b'_' || a == b'.') && b == b'-'))
}

pub fn decide(
    policy: &Policy,
    cache: Option<&TokenCache>,
    req: &RequestParts<'_>,
    creds: &Credentials,
    now: f64,
    trace: bool,
) -> Decision {
    let mut t = if trace {
        Trace::enabled()
    } else {
        Trace::off()
    };
    let mut d = Decision {
        verdict: Verdict::Deny(Denial::new(Reason::BadRequest, "")),
        action: None,
        target: None,
        host: req.host.map(normalize_host),
        params: Vec::new(),
        token: None,
        checks: Vec::new(),
        form_body: None,
    };
    d.verdict = run(policy, cache, req, creds, now, &mut t, &mut d);
    d.checks = t.into_checks();
    d
}

fn run(
    policy: &Policy,
    cache: Option<&TokenCache>,
    req: &RequestParts<'_>,
    creds: &Credentials,
    now: f64,
    t: &mut Trace,
    d: &mut Decision,
) -> Verdict {
    // Stage 1: normalize (method, target, headers).
    if let Err(e) = admit(policy, req) {
        t.check("normalize", "request", Some(&e));
        return Verdict::Deny(e);
    }
    let target = match normalize::normalize_target(req.target, &policy.requests.path) {
        Ok(n) => n,
        Err(e) => {
            t.check("normalize", "target", Some(&e));
            return Verdict::Deny(e);
        }
    };
    t.check("normalize", "target", None);
    let mut target = target;
    if let Some(q) = &target.query
        && normalize::query_has_method_override(q)
    {
        if policy.requests.method_override == Choice::Reject {
            let e = Denial::new(
                Reason::MethodOverride,
                "`_method` query parameter is refused",
            );
            t.check("normalize", "override inputs", Some(&e));
            return Verdict::Deny(e);
        }
        target.query = normalize::strip_method_override(q);
    }
    if let Some(body) = req.form_body
        && normalize::form_has_method_override(body)
    {
        let stripped = (policy.requests.method_override != Choice::Reject)
            .then(|| normalize::strip_form_method_override(body))
            .flatten();
        match stripped {
            Some(b) => d.form_body = Some(b),
            None => {
                let e = Denial::new(
                    Reason::MethodOverride,
                    "`_method` in a form body is refused",
                );
                t.check("normalize", "override inputs", Some(&e));
                return Verdict::Deny(e);
            }
        }
    }
    t.check("normalize", "override inputs", None);

    // Stage 2: classify.
    let found = policy
        .router
        .lookup(req.method, d.host.as_deref(), &target.segments());
    d.target = Some(target);
    let m = match found {
        Ok(m) => m,
        Err(NoMatch::MethodNotAllowed(allow)) if !policy.defaults.unmatched_allow => {
            let mut e = Denial::new(
                Reason::MethodNotAllowed,
                format!("method {} is not allowed on this path", req.method),
            );
            e.allow = allow;
            t.check("classify", "method", Some(&e));
            return Verdict::Deny(e);
        }
        Err(_) => {
            if policy.defaults.unmatched_allow {
                t.check("classify", "action", None);
                return Verdict::Allow {
                    permit: Permit::unauthenticated(),
                    reason: Reason::Allowed,
                };
            }
            let e = Denial::new(Reason::NoMatchingAction, "no action matches this request");
            t.check("classify", "action", Some(&e));
            return audit_or_deny(policy.defaults.mode, e, false);
        }
    };
    t.check("classify", "action", None);
    d.action = Some(m.action);
    d.params = m.params;
    let action = policy.action(m.action);
    let mode = action.mode.unwrap_or(policy.defaults.mode);
    if action.public {
        return Verdict::Allow {
            permit: Permit::unauthenticated(),
            reason: Reason::Public,
        };
    }

    // Stage 3: authenticate.
    let v = match authenticate::authenticate(policy, cache, req.headers, creds, action, now, t) {
        Ok(v) => v,
        Err(e) => return audit_or_deny(mode, e, false),
    };
    d.token = Some(v.clone());

    // Stage 4: authorize.
    match authorize::authorize(policy, action, &d.params, &v, now, t) {
        Ok(permit) => Verdict::Allow {
            permit,
            reason: Reason::Allowed,
        },
        Err(e) => audit_or_deny(mode, e, true),
    }
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

/// Method rules and header rules that hold before the target is looked at.
fn admit(policy: &Policy, req: &RequestParts<'_>) -> Result<(), Denial> {
    let m = req.method;
    if m == "CONNECT" || m == "TRACE" {
        return Err(Denial::new(
            Reason::MethodNotAllowed,
            format!("{m} is never allowed"),
        ));
    }
    // `delete` or `Get` is neither DELETE nor an extension method: frameworks
    // that upper-case methods (Werkzeug, Django) would run the DELETE handler,
    // so a case variant never reaches a `*` action (round-two settlement).
    if !STANDARD_METHODS.contains(&m)
        && (STANDARD_METHODS.iter().any(|s| s.eq_ignore_ascii_case(m))
            || m.eq_ignore_ascii_case("CONNECT")
            || m.eq_ignore_ascii_case("TRACE"))
    {
        return Err(Denial::new(
            Reason::MethodNotAllowed,
            "method names are case-sensitive: a case variant of a standard method is refused",
        ));
    }
    if !STANDARD_METHODS.contains(&m) && !policy.named_methods.contains(m) && !policy.any_method {
        return Err(Denial::new(
            Reason::MethodNotAllowed,
            "method is neither standard nor named by any action",
        ));
    }
    if let Some(h) = req.host
        && crate::policy::parse_host(h).is_none()
    {
        return Err(Denial::new(Reason::BadRequest, "malformed Host"));
    }
    // HTTP/1 heads over 100 fields never get here (hyper answers 431); HTTP/2
    // has only a byte limit, so the field count is enforced here.
    if req.headers.len() > MAX_HEADER_FIELDS {
        return Err(
            Denial::new(Reason::BadRequest, "more than 100 header fields").with_status(431),
        );
    }
    let mut auth = 0;
    let mut hosts = 0;
    for (name, _) in req.headers.iter() {
        let n = name.as_str();
        if n == "authorization" {
            auth += 1;
        } else if n == "host" {
            hosts += 1;
        } else if policy.requests.method_override == Choice::Reject
            && METHOD_OVERRIDE_HEADERS.iter().any(|h| header_is(n, h))
        {
            return Err(Denial::new(
                Reason::MethodOverride,
                "method override headers are refused",
            ));
        } else if policy.requests.url_override == Choice::Reject
            && URL_OVERRIDE_HEADERS.iter().any(|h| header_is(n, h))
        {
            return Err(Denial::new(
                Reason::UrlOverride,
                "URL override headers are refused",
            ));
        }
    }
    // Only `chunked` is decoded (by hyper); any other coding would reach the
    // backend relabelled as plain content (RFC 9112 §6.1: 501).
    for v in req.headers.get_all(http::header::TRANSFER_ENCODING) {
        let ok = v.to_str().is_ok_and(|v| {
            v.split(',')
                .all(|c| c.trim().eq_ignore_ascii_case("chunked"))
        });
        if !ok {
            return Err(Denial::new(
                Reason::BadRequest,
                "only the chunked transfer coding is supported",
            )
            .with_status(501));
        }
    }
    if auth > 1 {
        return Err(Denial::new(
            Reason::BadRequest,
            "more than one Authorization header",
        ));
    }
    if hosts > 1 {
        return Err(Denial::new(Reason::BadRequest, "more than one Host header"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
