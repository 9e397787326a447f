//! Stage 3: authenticate. Finds the bearer token, verifies it (or takes a cached
//! verification), then checks what depends on the clock on every request:
//! time claims, then the `act` shape.

use std::sync::Arc;

use http::HeaderMap;

pub mod cache;
pub mod token;

use cache::TokenCache;
use token::Verified;

use crate::decision::{Denial, Reason, Staged, Steps};
use crate::policy::{Action, Policy};

/// Where the token comes from.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// The request's `Authorization: Bearer` header (proxy, `explain --token`).
    Header,
    /// Claims taken as verified (`explain --claims`, `writ test`).
    Claims(serde_json::Map<String, serde_json::Value>),
    /// A token known to fail authentication with this denial: `writ replay` of a
    /// line whose token was refused (the log never holds the token itself).
    Refused(Denial),
}

/// The bearer token of a request; `Ok(None)` when there is none (a non-Bearer
/// scheme counts as none). Tokens are never read from the query or cookies.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Denial> {
    let Some(v) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let Ok(v) = v.to_str() else {
        return Err(malformed("Authorization header is not ASCII"));
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
        return Err(malformed("Bearer credentials must be one token"));
    }
    Ok(Some(rest))
}

/// The authenticate stage: the token from `credentials` (verified, or a cached
/// verification still valid under this policy and key set), then the checks that
/// depend on the clock, on every request.
pub fn authenticate(
    policy: &Policy,
    cache: Option<&TokenCache>,
    headers: &HeaderMap,
    credentials: &Credentials,
    action: &Action,
    now: f64,
) -> Staged<Arc<Verified>> {
    Staged::run(|steps| {
        let verified = match credentials {
            Credentials::Refused(d) => {
                steps.ran("token", "refused when the line was logged");
                return Err(d.clone());
            }
            Credentials::Claims(c) => {
                steps.ran("claims", "iss / aud");
                Arc::new(token::from_claims(policy, c.clone())?)
            }
            Credentials::Header => {
                let tok = bearer(headers)?;
                let Some(tok) = tok else {
                    steps.ran("token", "present");
                    return Err(Denial::new(Reason::NoToken, "a bearer token is required"));
                };
                if tok.len() > policy.requests.max_token_bytes {
                    steps.ran("token", "size");
                    return Err(Denial::new(
                        Reason::TokenTooLarge,
                        "token exceeds max_token_bytes",
                    ));
                }
                verify_cached(policy, cache, tok, steps)?
            }
        };
        steps.ran("token", "time claims and act shape");
        check_time_and_shape(policy, &verified, action, now)?;
        Ok(verified)
    })
}

/// The revocation step: after authentication (cached tokens included), before
/// authorization. The detail is SPEC's `error_description`; the matching entry
/// is for `explain` and the log ([`Decision::revoked`](crate::Decision)), never
/// for the client.
pub fn check_revocation(policy: &Policy, v: &Verified, now: f64) -> Staged<()> {
    Staged::run(|steps| {
        steps.ran("token", "revocation");
        match policy.revocation.find(&v.claims, now) {
            Some(_) => Err(Denial::new(Reason::TokenRevoked, "token revoked")),
            None => Ok(()),
        }
    })
}

fn verify_cached(
    policy: &Policy,
    cache: Option<&TokenCache>,
    tok: &str,
    steps: &mut Steps,
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
            steps.ran("token", "signature (cached)");
            return Ok(hit);
        }
        cache.remove(tok);
    }
    steps.ran("token", "parse, alg, key, signature, iss, aud, typ");
    let v = Arc::new(token::verify(policy, tok)?);
    if let Some(cache) = cache {
        cache.insert(tok, v.clone());
    }
    Ok(v)
}

fn malformed(detail: impl Into<String>) -> Denial {
    Denial::new(Reason::MalformedToken, detail)
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
    let times = c.times.as_ref().map_err(|e| malformed(e.to_string()))?;
    let Some(exp) = times.exp else {
        return Err(malformed("`exp` is required"));
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
            return Err(malformed("`iat` is in the future"));
        }
        None if action.needs_iat(&policy.defaults, c.is_delegated()) => {
            return Err(malformed("`iat` is required by this action"));
        }
        _ => {}
    }
    if let Some(at) = times.auth_time
        && at > now + leeway
    {
        // A future `auth_time` would satisfy `auth_max_age` forever.
        return Err(malformed("`auth_time` is in the future"));
    }
    if c.names_collide {
        return Err(malformed("claim names differ only by case"));
    }
    if let Err(e) = &c.act {
        return Err(malformed(format!("malformed delegation: {e}")));
    }
    // Identities travel upstream in headers: a subject that is missing, empty or
    // that a header cannot carry is refused rather than dropped (RFC 9068
    // requires `sub`; a call must never look anonymous).
    // Header parsers strip surrounding whitespace (`" admin"` arrives as
    // `admin`), so such a subject is refused too.
    let unsafe_id =
        |s: &str| s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) || s.trim() != s;
    if c.sub.as_deref().is_none_or(unsafe_id) {
        return Err(malformed(
            "`sub` must be a non-empty string without control characters or surrounding whitespace",
        ));
    }
    let actors = c.act.as_deref().unwrap_or(&[]);
    if actors.iter().any(|a| unsafe_id(&a.sub)) {
        return Err(malformed(
            "`act.sub` contains control characters or surrounding whitespace",
        ));
    }
    if c.has_cnf {
        return Err(malformed("sender-constrained tokens are not supported"));
    }
    Ok(())
}
