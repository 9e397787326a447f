//! Stage 4: authorize. Delegation (mode → actor → depth → expiry), then scopes,
//! then claim conditions, then step-up, then the approved transaction
//! (`authorization_details`). The first failure is the reason. Only this stage
//! mints a [`Permit`].

mod details;

use serde_json::Value;

use crate::authenticate::token::Verified;
pub use crate::decision::Introspected;
use crate::decision::{Denial, Permit, Reason, Staged};
use crate::escape::decode_path_value;
use crate::policy::{Action, ClaimRule, Policy};
use crate::vocab::{ClaimScalar, DelegationMode, glob_match};

/// What a request binds: its path parameters and, for an action that reads
/// one, its parsed JSON body. `body: None` on such an action means "no
/// arguments known" (a `tools/list` entry decided as a call): conditions on
/// the body are then not checked, everything else is.
#[derive(Debug, Clone, Copy)]
pub struct Bound<'a> {
    /// Path parameters, as normalized.
    pub params: &'a [(String, String)],
    /// The strictly parsed body.
    pub body: Option<&'a Value>,
}

/// The authorize stage: only it mints a [`Permit`].
pub fn authorize(
    policy: &Policy,
    action: &Action,
    bound: Bound<'_>,
    v: &Verified,
    now: f64,
) -> Staged<Permit> {
    Staged::run(|steps| {
        steps.ran("authorize", "delegation");
        delegation(policy, action, v, now)?;
        steps.ran("authorize", "scopes");
        scopes(action, v)?;
        steps.ran("authorize", "claims");
        claims(action, bound, v)?;
        steps.ran("authorize", "step-up");
        step_up(action, v, now)?;
        if let Some(ad) = &action.require.authorization_details {
            steps.ran("authorize", "authorization_details");
            details::check(ad, bound, v)?;
        }
        let chain = v.claims.act.as_deref().unwrap_or(&[]);
        Ok(Permit::verified(
            v.claims.sub.clone(),
            chain.first().map(|a| a.sub.clone()),
        ))
    })
}

fn delegation(policy: &Policy, action: &Action, v: &Verified, now: f64) -> Result<(), Denial> {
    let rule = action
        .delegation
        .as_ref()
        .unwrap_or(&policy.defaults.delegation);
    let chain = v.claims.act.as_deref().unwrap_or(&[]);
    let delegated = !chain.is_empty();
    match rule.mode {
        DelegationMode::Forbid if delegated => {
            return Err(Denial::new(
                Reason::DelegationForbidden,
                format!("action `{}` does not accept delegated tokens", action.name),
            ));
        }
        DelegationMode::Require if !delegated => {
            return Err(Denial::new(
                Reason::DelegationRequired,
                format!(
                    "action `{}` must be called by a delegated agent",
                    action.name
                ),
            ));
        }
        _ => {}
    }
    let Some(current) = chain.first() else {
        return Ok(());
    };
    if let Some(globs) = &rule.actors {
        // An actor asserted by another issuer never matches (SPEC settled questions).
        let same_issuer = current.iss.is_none() || current.iss == v.claims.iss;
        if !same_issuer || !globs.iter().any(|g| glob_match(g, &current.sub)) {
            return Err(Denial::new(
                Reason::ActorNotAllowed,
                "the acting agent is not allowed for this action",
            ));
        }
    }
    if let Some(max) = rule.max_depth
        && chain.len() > max
    {
        return Err(Denial::new(
            Reason::DelegationTooDeep,
            format!("delegation chain of {} exceeds {max}", chain.len()),
        ));
    }
    if let Some(exp) = current.exp
        && now > exp
    {
        return Err(Denial::new(
            Reason::DelegationExpired,
            "delegation has expired",
        ));
    }
    if let Some(max_age) = rule.max_age {
        let iat = v.claims.times.as_ref().ok().and_then(|t| t.iat);
        match iat {
            Some(iat) if now - iat > max_age.as_secs_f64() => {
                return Err(Denial::new(
                    Reason::DelegationExpired,
                    "delegation is older than max_age",
                ));
            }
            Some(_) => {}
            None => {
                return Err(Denial::new(
                    Reason::MalformedToken,
                    "`iat` is required by this action",
                ));
            }
        }
    }
    Ok(())
}

fn scopes(action: &Action, v: &Verified) -> Result<(), Denial> {
    let have = v.claims.scopes.as_deref().unwrap_or(&[]);
    let req = &action.require;
    let all = req.scopes.iter().all(|s| have.contains(s));
    let any = req.any_scope.is_empty() || req.any_scope.iter().any(|s| have.contains(s));
    if all && any {
        return Ok(());
    }
    let mut d = Denial::new(
        Reason::InsufficientScope,
        "the token lacks a required scope",
    );
    let mut needed: Vec<&str> = req.scopes.iter().map(String::as_str).collect();
    if !any {
        needed.extend(req.any_scope.iter().map(String::as_str));
    }
    d.challenge.scope = Some(needed.join(" "));
    Err(d)
}

fn scalar_eq(claim: &Value, want: &ClaimScalar) -> bool {
    match (claim, want) {
        (Value::String(s), ClaimScalar::Str(w)) => s == w,
        (Value::Bool(b), ClaimScalar::Bool(w)) => b == w,
        (Value::Number(n), ClaimScalar::Int(w)) => n.as_i64() == Some(*w),
        _ => false,
    }
}

/// A path parameter equals a string claim, or a number claim written the same.
fn param_eq(claim: &Value, want: &str) -> bool {
    match claim {
        Value::String(s) => s == want,
        Value::Number(n) => n.to_string() == want,
        _ => false,
    }
}

/// A bound request value: a path segment as the backend decodes it, or a
/// value of the body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Given<'a> {
    /// A percent-decoded path parameter.
    Text(String),
    /// A JSON value of the body.
    Json(&'a Value),
}

/// The request's value for `rule`: `Ok(None)` when the request has none (a
/// missing body field), `Err(None)` when the body is not known (listing),
/// `Err(Some(denial))` when the value cannot be read.
pub(crate) fn resolve<'a>(
    rule: &ClaimRule,
    bound: Bound<'a>,
) -> Result<Option<Given<'a>>, Option<Denial>> {
    match rule {
        ClaimRule::Equals(_) => Ok(None),
        // Bindings compare the segment as the backend decodes it (`m%C3%BCnchen`
        // is `münchen`; `a%20b` is `a b`), never the escaped text.
        ClaimRule::Param(p) => match bound.params.iter().find(|(n, _)| n == p) {
            None => Ok(None),
            Some((_, raw)) => match decode_path_value(raw) {
                Some(v) => Ok(Some(Given::Text(v.into_owned()))),
                None => Err(Some(Denial::new(
                    Reason::BadRequest,
                    format!("path parameter `{p}` is not UTF-8 once percent-decoded"),
                ))),
            },
        },
        ClaimRule::Body(path) => match bound.body {
            None => Err(None),
            Some(b) => Ok(crate::json::lookup(b, path).map(Given::Json)),
        },
    }
}

/// A claim (or entry field) equals a bound request value: strings to
/// strings, numbers to numbers (a path segment to a number written the same),
/// booleans to booleans.
pub(crate) fn bound_eq(claim: &Value, want: &Given<'_>) -> bool {
    match want {
        Given::Text(t) => param_eq(claim, t),
        Given::Json(Value::String(s)) => param_eq(claim, s),
        Given::Json(Value::Number(n)) => match claim {
            Value::Number(c) => details::num_cmp(c, n) == Some(std::cmp::Ordering::Equal),
            Value::String(c) => *c == n.to_string(),
            _ => false,
        },
        Given::Json(Value::Bool(b)) => claim.as_bool() == Some(*b),
        Given::Json(_) => false,
    }
}

fn claims(action: &Action, bound: Bound<'_>, v: &Verified) -> Result<(), Denial> {
    for (name, rule) in &action.require.claims {
        let Some(claim) = v.claims.raw.get(name) else {
            return Err(Denial::new(
                Reason::ClaimMismatch,
                format!("claim `{name}` is missing"),
            ));
        };
        let value = match resolve(rule, bound) {
            Ok(v) => v,
            Err(None) => continue,
            Err(Some(d)) => return Err(d),
        };
        let one = |c: &Value| match rule {
            ClaimRule::Equals(w) => scalar_eq(c, w),
            _ => value.as_ref().is_some_and(|val| bound_eq(c, val)),
        };
        let ok = match claim {
            Value::Array(items) => items.iter().any(one),
            c => one(c),
        };
        if !ok {
            return Err(Denial::new(
                Reason::ClaimMismatch,
                format!("claim `{name}` does not match"),
            ));
        }
    }
    Ok(())
}

fn step_up(action: &Action, v: &Verified, now: f64) -> Result<(), Denial> {
    let req = &action.require;
    if let Some(max) = req.auth_max_age {
        let auth_time = v.claims.times.as_ref().ok().and_then(|t| t.auth_time);
        let fresh = auth_time.is_some_and(|t| now - t <= max.as_secs_f64());
        if !fresh {
            let mut d = Denial::new(Reason::StepUpRequired, "authentication is too old");
            d.challenge.max_age = Some(max.as_secs());
            return Err(d);
        }
    }
    if let Some(acr) = &req.acr {
        let ok = v.claims.acr.as_ref().is_some_and(|a| acr.contains(a));
        if !ok {
            let mut d = Denial::new(
                Reason::StepUpRequired,
                "a stronger authentication is required",
            );
            d.challenge.acr_values = Some(acr.join(" "));
            return Err(d);
        }
    }
    Ok(())
}

/// The introspection step of an action with `require: { introspect: true }`,
/// run once everything else passed (a denied request costs the AS nothing).
/// `None`: nobody asked yet; the caller asks the issuer and decides again.
pub fn introspection(policy: &Policy, v: &Verified, answer: Option<Introspected>) -> Staged<()> {
    Staged::run(|steps| {
        steps.ran("authorize", "introspection");
        match answer {
            Some(Introspected::Active) => Ok(()),
            Some(Introspected::Inactive) => Err(Denial::new(Reason::TokenRevoked, "token revoked")),
            Some(Introspected::Unavailable) => Err(Denial::new(
                Reason::IntrospectionUnavailable,
                "the introspection endpoint did not answer",
            )),
            None if policy.issuers[v.issuer].introspection.is_none() => Err(Denial::new(
                Reason::IntrospectionUnavailable,
                "the token's issuer has no introspection endpoint",
            )),
            None => Err(Denial::new(
                Reason::IntrospectionUnavailable,
                "introspection was not performed",
            )),
        }
    })
}
