//! Stage 4: authorize. Delegation (mode → actor → depth → expiry), then scopes,
//! then claim conditions, then step-up. The first failure is the reason. Only
//! this stage mints a [`Permit`].

use serde_json::Value;

use crate::authenticate::token::Verified;
pub use crate::decision::Introspected;
use crate::decision::{Denial, Permit, Reason, Staged};
use crate::escape::decode_path_value;
use crate::policy::{Action, ClaimRule, Policy};
use crate::vocab::{ClaimScalar, DelegationMode, glob_match};

/// The authorize stage: only it mints a [`Permit`].
pub fn authorize(
    policy: &Policy,
    action: &Action,
    params: &[(String, String)],
    v: &Verified,
    now: f64,
) -> Staged<Permit> {
    Staged::run(|steps| {
        steps.ran("authorize", "delegation");
        delegation(policy, action, v, now)?;
        steps.ran("authorize", "scopes");
        scopes(action, v)?;
        steps.ran("authorize", "claims");
        claims(action, params, v)?;
        steps.ran("authorize", "step-up");
        step_up(action, v, now)?;
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

fn claims(action: &Action, params: &[(String, String)], v: &Verified) -> Result<(), Denial> {
    for (name, rule) in &action.require.claims {
        let Some(claim) = v.claims.raw.get(name) else {
            return Err(Denial::new(
                Reason::ClaimMismatch,
                format!("claim `{name}` is missing"),
            ));
        };
        // Bindings compare the segment as the backend decodes it (`m%C3%BCnchen`
        // is `münchen`; `a%20b` is `a b`), never the escaped text.
        let bound = match rule {
            ClaimRule::Equals(_) => None,
            ClaimRule::Param(p) => match params.iter().find(|(n, _)| n == p) {
                None => None,
                Some((_, raw)) => match decode_path_value(raw) {
                    Some(v) => Some(v),
                    None => {
                        return Err(Denial::new(
                            Reason::BadRequest,
                            format!("path parameter `{p}` is not UTF-8 once percent-decoded"),
                        ));
                    }
                },
            },
        };
        let one = |c: &Value| match rule {
            ClaimRule::Equals(w) => scalar_eq(c, w),
            ClaimRule::Param(_) => bound.as_deref().is_some_and(|val| param_eq(c, val)),
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
