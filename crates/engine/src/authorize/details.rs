//! `require.authorization_details` (RFC 9396; SPEC: Approved transactions): an
//! approval made at the authorization server arrives as an entry of the token's
//! `authorization_details`; the request must stay inside ONE entry of the
//! required type: every `match` field equal (or held by an array), every
//! `limits` field a number at least the request's.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::{Bound, Given, bound_eq, resolve};
use crate::authenticate::token::Verified;
use crate::decision::{Denial, Reason};
use crate::json::lookup;
use crate::policy::{AuthorizationDetails, ClaimRule};
use crate::vocab::ClaimScalar;

fn mismatch(detail: impl Into<String>) -> Denial {
    Denial::new(Reason::AuthorizationDetailsMismatch, detail)
}

/// Compares two JSON numbers exactly when both are integers, else as f64.
pub(crate) fn num_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// The request's value of a condition, as an owned JSON value, and whether
/// it came as text (a path segment, a literal string) rather than as a JSON
/// value of the body; `Ok(None)`: not known (a listing without arguments: the
/// condition is not checked).
fn request_value(
    rule: &ClaimRule,
    bound: Bound<'_>,
    field: &str,
) -> Result<Option<(Value, bool)>, Denial> {
    if let ClaimRule::Equals(c) = rule {
        return Ok(Some(match c {
            ClaimScalar::Str(s) => (Value::String(s.clone()), true),
            ClaimScalar::Int(i) => (Value::from(*i), false),
            ClaimScalar::Bool(b) => (Value::Bool(*b), false),
        }));
    }
    match resolve(rule, bound) {
        Ok(Some(Given::Text(t))) => Ok(Some((Value::String(t), true))),
        Ok(Some(Given::Json(v))) => Ok(Some((v.clone(), false))),
        Ok(None) => Err(mismatch(format!("the request has no value for `{field}`"))),
        Err(None) => Ok(None),
        Err(Some(d)) => Err(d),
    }
}

/// A request value as a number for a limit: a JSON number of the body, or a
/// path segment written as one. A JSON string of the body is not a number,
/// even when a server would coerce it.
fn as_number(v: &Value, text: bool) -> Option<Number> {
    match v {
        Value::Number(n) => Some(n.clone()),
        Value::String(s) if text => {
            let f: f64 = s.parse().ok().filter(|f: &f64| f.is_finite())?;
            // Integers stay exact.
            s.parse::<i64>()
                .map(Number::from)
                .ok()
                .or_else(|| Number::from_f64(f))
        }
        _ => None,
    }
}

pub(crate) fn check(
    ad: &AuthorizationDetails,
    bound: Bound<'_>,
    v: &Verified,
) -> Result<(), Denial> {
    let mut matches = Vec::with_capacity(ad.matches.len());
    for (path, rule) in &ad.matches {
        let field = path.join(".");
        matches.push((path, request_value(rule, bound, &field)?.map(|(v, _)| v)));
    }
    let mut limits = Vec::with_capacity(ad.limits.len());
    for (path, rule) in &ad.limits {
        let field = path.join(".");
        let value = match request_value(rule, bound, &field)? {
            None => None,
            Some((v, text)) => Some(
                as_number(&v, text)
                    .ok_or_else(|| mismatch(format!("the request's `{field}` is not a number")))?,
            ),
        };
        limits.push((path, value));
    }
    let entries = match v.claims.raw.get("authorization_details") {
        Some(Value::Array(a)) => a.as_slice(),
        _ => &[],
    };
    let mut typed = entries
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some(ad.kind.as_str()))
        .peekable();
    if typed.peek().is_none() {
        return Err(mismatch(format!(
            "the token approves no `{}` transaction",
            ad.kind
        )));
    }
    let inside = |entry: &Value| {
        let fields_match = matches.iter().all(|(path, want)| {
            let Some(want) = want else { return true };
            let given = Given::Json(want);
            match lookup(entry, path) {
                Some(Value::Array(items)) => items.iter().any(|i| bound_eq(i, &given)),
                Some(x) => bound_eq(x, &given),
                None => false,
            }
        });
        fields_match
            && limits.iter().all(|(path, want)| {
                let Some(want) = want else { return true };
                matches!(
                    lookup(entry, path),
                    Some(Value::Number(have))
                        if num_cmp(have, want).is_some_and(|o| o != Ordering::Less)
                )
            })
    };
    if typed.any(inside) {
        return Ok(());
    }
    Err(mismatch(format!(
        "the request is outside every approved `{}` transaction",
        ad.kind
    )))
}
