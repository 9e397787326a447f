//! Stage 3: authenticate. Finds the bearer token, verifies it (or takes a cached
//! verification), then checks what depends on the clock on every request:
//! time claims, then the `act` shape.

use std::sync::Arc;

use http::HeaderMap;

use super::Trace;
use crate::auth::cache::TokenCache;
use crate::auth::token::{self, Verified};
use crate::decision::{Denial, Reason};
use crate::policy::{Action, Policy};

/// Where the token comes from.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// The request's `Authorization: Bearer` header (proxy, `explain --token`).
    Header,
    /// Claims taken as verified (`explain --claims`, `writ test`).
    Claims(serde_json::Map<String, serde_json::Value>),
}

/// The bearer token of a request; `Ok(None)` when there is none (a non-Bearer
/// scheme counts as none). Tokens are never read from the query or cookies.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Denial> {
    let Some(v) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let Ok(v) = v.to_str() else {
        return Err(Denial::new(
            Reason::MalformedToken,
            "Authorization header is not ASCII",
        ));
    };
    let v = v.trim();
    let (scheme, rest) = match v.find(' ') {
        Some(i) => (&v[..i], v[i..].trim_start()),
        None => (v, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    if rest.is_empty() || rest.contains(' ') {
        return Err(Denial::new(
            Reason::MalformedToken,
            "Bearer credentials must be one token",
        ));
    }
    Ok(Some(rest))
}

pub fn authenticate(
    policy: &Policy,
    cache: Option<&TokenCache>,
    headers: &HeaderMap,
    creds: &Credentials,
    action: &Action,
    now: f64,
    trace: &mut Trace,
) -> Result<Arc<Verified>, Denial> {
    let verified = match creds {
        Credentials::Claims(c) => {
            let v = token::from_claims(policy, c.clone());
            trace.check("claims", "iss / aud", v.as_ref().err());
            Arc::new(v?)
        }
        Credentials::Header => {
            let tok = bearer(headers)?;
            let Some(tok) = tok else {
                let d = Denial::new(Reason::NoToken, "a bearer token is required");
                trace.check("token", "present", Some(&d));
                return Err(d);
            };
            if tok.len() > policy.requests.max_token_bytes {
                let d = Denial::new(Reason::TokenTooLarge, "token exceeds max_token_bytes");
                trace.check("token", "size", Some(&d));
                return Err(d);
            }
            verify_cached(policy, cache, tok, trace)?
        }
    };
    let r = check_time_and_shape(policy, &verified, action, now);
    trace.check("token", "time claims and act shape", r.as_ref().err());
    r?;
    Ok(verified)
}

fn verify_cached(
    policy: &Policy,
    cache: Option<&TokenCache>,
    tok: &str,
    trace: &mut Trace,
) -> Result<Arc<Verified>, Denial> {
    if let Some(cache) = cache
        && let Some(hit) = cache.get(tok)
    {
        let key_present = hit.key_fingerprint.is_some_and(|fp| {
            policy
                .issuers
                .get(hit.issuer)
                .is_some_and(|i| i.keys.load().contains_fingerprint(fp))
        });
        if hit.generation == policy.generation && key_present {
            trace.check("token", "signature (cached)", None);
            return Ok(hit);
        }
        cache.remove(tok);
    }
    let v = token::verify(policy, tok);
    trace.check(
        "token",
        "parse, alg, key, signature, iss, aud, typ",
        v.as_ref().err(),
    );
    let v = Arc::new(v?);
    if let Some(cache) = cache {
        cache.insert(tok, v.clone());
    }
    Ok(v)
}

/// Time claims (with the issuer's leeway) then the `act` shape and `cnf`.
pub fn check_time_and_shape(
    policy: &Policy,
    v: &Verified,
    action: &Action,
    now: f64,
) -> Result<(), Denial> {
    let issuer = &policy.issuers[v.issuer];
    let leeway = issuer.leeway.as_secs_f64();
    let c = &v.claims;
    let times = c
        .times
        .as_ref()
        .map_err(|e| Denial::new(Reason::MalformedToken, e.clone()))?;
    let Some(exp) = times.exp else {
        return Err(Denial::new(Reason::MalformedToken, "`exp` is required"));
    };
    if now >= exp + leeway {
        return Err(Denial::new(Reason::TokenExpired, "token has expired"));
    }
    if let Some(nbf) = times.nbf
        && now + leeway < nbf
    {
        return Err(Denial::new(
            Reason::TokenNotYetValid,
            "token is not valid yet",
        ));
    }
    match times.iat {
        Some(iat) if iat > now + leeway => {
            return Err(Denial::new(
                Reason::MalformedToken,
                "`iat` is in the future",
            ));
        }
        None if action.needs_iat(&policy.defaults, c.is_delegated()) => {
            return Err(Denial::new(
                Reason::MalformedToken,
                "`iat` is required by this action",
            ));
        }
        _ => {}
    }
    if let Some(at) = times.auth_time
        && at > now + leeway
    {
        // A future `auth_time` would satisfy `auth_max_age` forever.
        return Err(Denial::new(
            Reason::MalformedToken,
            "`auth_time` is in the future",
        ));
    }
    if c.names_collide {
        return Err(Denial::new(
            Reason::MalformedToken,
            "claim names differ only by case",
        ));
    }
    if let Err(e) = &c.act {
        return Err(Denial::new(
            Reason::MalformedToken,
            format!("malformed delegation: {e}"),
        ));
    }
    // Identities travel upstream in headers: a subject that is missing, empty or
    // that a header cannot carry is refused rather than dropped (RFC 9068
    // requires `sub`; a call must never look anonymous).
    // Header parsers strip surrounding whitespace (`" admin"` arrives as
    // `admin`), so such a subject is refused too.
    let unsafe_id =
        |s: &str| s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) || s.trim() != s;
    if c.sub.as_deref().is_none_or(unsafe_id) {
        return Err(Denial::new(
            Reason::MalformedToken,
            "`sub` must be a non-empty string without control characters or surrounding whitespace",
        ));
    }
    let actors = c.act.as_deref().unwrap_or(&[]);
    if actors.iter().any(|a| unsafe_id(&a.sub)) {
        return Err(Denial::new(
            Reason::MalformedToken,
            "`act.sub` contains control characters or surrounding whitespace",
        ));
    }
    if c.has_cnf {
        return Err(Denial::new(
            Reason::MalformedToken,
            "sender-constrained tokens are not supported",
        ));
    }
    Ok(())
}
