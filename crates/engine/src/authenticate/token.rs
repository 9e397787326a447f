//! Compact JWS parsing and verification, up to and including the `typ` check
//! (SPEC check order: size → parse → alg allowlist → key (kid) → signature →
//! iss → aud → typ). Everything after that depends on the time and is checked
//! on every request by `pipeline::authenticate`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::claims::{Claims, parse_json_object};
use crate::decision::{Denial, Reason};
use crate::policy::{Issuer, Policy};

/// A token whose signature (or, for `--claims`, whose provenance) is settled.
#[derive(Debug)]
pub struct Verified {
    /// The token's claims, parsed once.
    pub claims: Claims,
    /// Index into `Policy::issuers`.
    pub issuer: usize,
    /// Fingerprint of the key that verified it (`None` for claims given as verified).
    pub key_fingerprint: Option<u64>,
    /// The policy generation it was verified under; a reload makes it stale.
    pub generation: u64,
    /// Rough memory cost, the cache's weight.
    pub approx_size: usize,
}

fn malformed(detail: impl Into<String>) -> Denial {
    Denial::new(Reason::MalformedToken, detail)
}

/// The algorithm named `s` (`ES256`, `RS256`, `EdDSA`, `HS256`...), if writ supports it.
pub fn parse_alg(s: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match s {
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        _ => return None,
    })
}

/// Compares `typ` per RFC 7515 §4.1.9: case-insensitive, `application/` optional.
pub fn typ_matches(got: &str, want: &str) -> bool {
    fn strip(s: &str) -> String {
        let l = s.to_ascii_lowercase();
        l.strip_prefix("application/")
            .map(str::to_string)
            .unwrap_or(l)
    }
    strip(got) == strip(want)
}

/// Verifies a compact JWS against the policy's issuers.
pub fn verify(policy: &Policy, token: &str) -> Result<Verified, Denial> {
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not a compact JWS (three dot-separated parts)"));
    };
    let header_bytes = URL_SAFE_NO_PAD
        .decode(h64)
        .map_err(|_| malformed("header is not base64url"))?;
    let header = parse_json_object(&header_bytes).map_err(|e| malformed(format!("header {e}")))?;
    let payload_bytes = URL_SAFE_NO_PAD
        .decode(p64)
        .map_err(|_| malformed("payload is not base64url"))?;
    let payload =
        parse_json_object(&payload_bytes).map_err(|e| malformed(format!("payload {e}")))?;
    if header.contains_key("crit") {
        return Err(malformed("`crit` header parameter is not understood"));
    }
    let alg_name = match header.get("alg") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(malformed("header has no `alg`")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(malformed("`kid` is not a string")),
    };
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(malformed("`typ` is not a string")),
    };
    let claims = Claims::parse(payload);

    // The issuer whose keys may verify: the one named by `iss` (bound by the
    // signature), else every issuer in turn (the `iss` check then fails).
    let named = claims.iss.as_deref().and_then(|i| policy.issuer_by_name(i));
    let candidates: Vec<usize> = match named {
        Some(i) => vec![i],
        None => (0..policy.issuers.len()).collect(),
    };
    let alg = parse_alg(alg_name);
    let allowed: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| alg.is_some_and(|a| policy.issuers[i].algorithms.contains(&a)))
        .collect();
    let Some(alg) = alg.filter(|_| !allowed.is_empty()) else {
        return Err(Denial::new(
            Reason::AlgNotAllowed,
            format!("algorithm `{}` is not allowed", sanitize(alg_name)),
        ));
    };
    let mut found = None;
    for &i in &allowed {
        let keys = policy.issuers[i].keys.load();
        if let Some(k) = keys.find(kid, alg) {
            found = Some((i, k.fingerprint, keys.clone()));
            break;
        }
    }
    let Some((issuer_idx, fp, keys)) = found else {
        for &i in &allowed {
            if let Some(k) = &policy.issuers[i].kick {
                k.request_refresh();
            }
        }
        return Err(Denial::new(
            Reason::UnknownKey,
            "no key matches the token's `kid` and `alg`",
        ));
    };
    let key = keys
        .find(kid, alg)
        .ok_or_else(|| Denial::new(Reason::UnknownKey, "key disappeared"))?;
    let message_len = h64.len() + 1 + p64.len();
    let message = &token.as_bytes()[..message_len];
    match jsonwebtoken::crypto::verify(s64, message, &key.key, alg) {
        Ok(true) => {}
        _ => {
            return Err(Denial::new(
                Reason::BadSignature,
                "signature does not verify",
            ));
        }
    }
    let issuer = &policy.issuers[issuer_idx];
    check_iss_aud(issuer, &claims)?;
    if let Some(want) = &issuer.require_typ {
        match &typ {
            Some(t) if typ_matches(t, want) => {}
            _ => {
                return Err(Denial::new(
                    Reason::WrongTokenType,
                    format!("token type must be `{want}`"),
                ));
            }
        }
    }
    Ok(Verified {
        approx_size: payload_bytes.len() * 3,
        claims,
        issuer: issuer_idx,
        key_fingerprint: Some(fp),
        generation: policy.generation,
    })
}

/// `iss` exact, then `aud` (string or array containing one of the audiences).
pub fn check_iss_aud(issuer: &Issuer, claims: &Claims) -> Result<(), Denial> {
    if claims.iss.as_deref() != Some(issuer.issuer.as_str()) {
        return Err(Denial::new(Reason::WrongIssuer, "issuer is not trusted"));
    }
    let ok = claims
        .aud
        .as_ref()
        .is_some_and(|a| a.iter().any(|x| issuer.audiences.contains(x)));
    if !ok {
        return Err(Denial::new(
            Reason::WrongAudience,
            "audience is not accepted",
        ));
    }
    Ok(())
}

/// Claims given as already verified (`writ explain --claims`, `writ test`):
/// header checks are skipped, the issuer is chosen by `iss`.
pub fn from_claims(
    policy: &Policy,
    raw: serde_json::Map<String, Value>,
) -> Result<Verified, Denial> {
    let claims = Claims::parse(raw);
    let Some(i) = claims.iss.as_deref().and_then(|i| policy.issuer_by_name(i)) else {
        return Err(Denial::new(Reason::WrongIssuer, "issuer is not trusted"));
    };
    check_iss_aud(&policy.issuers[i], &claims)?;
    Ok(Verified {
        approx_size: 0,
        claims,
        issuer: i,
        key_fingerprint: None,
        generation: policy.generation,
    })
}

/// Keeps client-controlled text printable and short before it lands in a detail.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(32)
        .collect()
}
