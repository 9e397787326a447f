//! Shared Signals (OpenID SSF 1.0, CAEP and RISC events): verifying a Security
//! Event Token (RFC 8417) from a configured transmitter and turning its events
//! into revocation changes. Pure: the keys come from the caller, the answers go
//! back as data; `writ` receives (push, RFC 8935; poll, RFC 8936) and stores.

use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::authenticate::token::{parse_alg, typ_matches};
use crate::claims::parse_json_object;
use crate::keys::KeySet;
use crate::revocation::Entry;

/// How far in the future a SET's `iat` may be (clock skew).
pub const IAT_LEEWAY_SECS: f64 = 60.0;
/// How old a SET may be: older ones are refused, so replay protection needs to
/// remember `jti`s for this long only.
pub const MAX_AGE_SECS: f64 = 24.0 * 3600.0;

/// A transmitter writ accepts events from (`signals:` in the config).
#[derive(Debug, Clone)]
pub struct Transmitter {
    /// The SET's `iss`.
    pub issuer: String,
    /// Must be in the SET's `aud`.
    pub audience: String,
    /// The transmitter's keys (a file, or a URL `writ` refreshes).
    pub keys: Arc<ArcSwap<KeySet>>,
    /// `jwks_url`, when the keys are fetched.
    pub jwks_url: Option<String>,
    /// RFC 8936 polling, when configured.
    pub poll: Option<Poll>,
}

/// `poll:` of a transmitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    /// The transmitter's polling endpoint.
    pub url: String,
    /// How often to poll.
    pub every: std::time::Duration,
    /// The environment variable holding the bearer token for the endpoint.
    pub token_env: Option<String>,
}

/// Why a SET is refused: the RFC 8935 §2.3 error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// Not a SET writ can read (shape, `typ`, claims).
    #[error("{0}")]
    InvalidRequest(String),
    /// No acceptable key (unknown `kid`, algorithm not allowed).
    #[error("{0}")]
    InvalidKey(String),
    /// `iss` is no configured transmitter.
    #[error("issuer is not a configured transmitter")]
    InvalidIssuer,
    /// `aud` does not name this receiver.
    #[error("audience does not name this receiver")]
    InvalidAudience,
    /// The signature does not verify.
    #[error("signature does not verify")]
    AuthenticationFailed,
}

impl SetError {
    /// The `err` code of the answer.
    pub fn code(&self) -> &'static str {
        match self {
            SetError::InvalidRequest(_) => "invalid_request",
            SetError::InvalidKey(_) => "invalid_key",
            SetError::InvalidIssuer => "invalid_issuer",
            SetError::InvalidAudience => "invalid_audience",
            SetError::AuthenticationFailed => "authentication_failed",
        }
    }
}

/// The events writ acts on, and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// CAEP `session-revoked`.
    SessionRevoked,
    /// CAEP `credential-change`.
    CredentialChange,
    /// CAEP `token-claims-change`.
    TokenClaimsChange,
    /// CAEP `assurance-level-change`.
    AssuranceLevelChange,
    /// RISC `credential-compromise`.
    CredentialCompromise,
    /// RISC `account-disabled`.
    AccountDisabled,
    /// RISC `account-enabled`.
    AccountEnabled,
    /// Anything else: acknowledged, counted, ignored.
    Other,
}

const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";

impl EventKind {
    /// The kind of an event-type URI.
    pub fn of(uri: &str) -> EventKind {
        match (uri.strip_prefix(CAEP), uri.strip_prefix(RISC)) {
            (Some("session-revoked"), _) => EventKind::SessionRevoked,
            (Some("credential-change"), _) => EventKind::CredentialChange,
            (Some("token-claims-change"), _) => EventKind::TokenClaimsChange,
            (Some("assurance-level-change"), _) => EventKind::AssuranceLevelChange,
            (_, Some("credential-compromise")) => EventKind::CredentialCompromise,
            (_, Some("account-disabled")) => EventKind::AccountDisabled,
            (_, Some("account-enabled")) => EventKind::AccountEnabled,
            _ => EventKind::Other,
        }
    }

    /// The metric label (a fixed set: a transmitter cannot create series).
    pub fn label(self) -> &'static str {
        match self {
            EventKind::SessionRevoked => "session-revoked",
            EventKind::CredentialChange => "credential-change",
            EventKind::TokenClaimsChange => "token-claims-change",
            EventKind::AssuranceLevelChange => "assurance-level-change",
            EventKind::CredentialCompromise => "credential-compromise",
            EventKind::AccountDisabled => "account-disabled",
            EventKind::AccountEnabled => "account-enabled",
            EventKind::Other => "other",
        }
    }
}

/// What one event does to the revocation set.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Add this entry.
    Revoke(Entry),
    /// Remove this entry (`account-enabled` lifting `account-disabled`).
    Lift(Entry),
    /// Nothing (an event writ does not act on, or a subject format it cannot map).
    Ignore(String),
}

/// One event of a SET.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Which event.
    pub kind: EventKind,
    /// What it does.
    pub effect: Effect,
}

/// A verified SET.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityEvent {
    /// Its `jti` (replays are acknowledged and ignored by the caller).
    pub jti: String,
    /// The transmitter (index into the slice given to [`verify`]).
    pub transmitter: usize,
    /// Its events.
    pub events: Vec<Event>,
}

fn bad(msg: impl Into<String>) -> SetError {
    SetError::InvalidRequest(msg.into())
}

/// Verifies a SET from one of `transmitters` at `now` and reads its events.
pub fn verify(
    transmitters: &[Transmitter],
    set: &str,
    now: f64,
) -> Result<SecurityEvent, SetError> {
    let set = set.trim();
    let mut parts = set.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not a compact JWS"));
    };
    let decode = |s: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad(format!("{what} is not base64url")))
    };
    let header =
        parse_json_object(&decode(h64, "header")?).map_err(|e| bad(format!("header {e}")))?;
    let claims =
        parse_json_object(&decode(p64, "payload")?).map_err(|e| bad(format!("payload {e}")))?;
    if header.contains_key("crit") {
        return Err(bad("`crit` header parameter is not understood"));
    }
    match header.get("typ").and_then(Value::as_str) {
        Some(t) if typ_matches(t, "secevent+jwt") => {}
        _ => return Err(bad("`typ` must be `secevent+jwt`")),
    }
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no `iss`"))?;
    let t = transmitters
        .iter()
        .position(|t| t.issuer == iss)
        .ok_or(SetError::InvalidIssuer)?;
    let tx = &transmitters[t];
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(parse_alg)
        .filter(|a| {
            !matches!(
                a,
                jsonwebtoken::Algorithm::HS256
                    | jsonwebtoken::Algorithm::HS384
                    | jsonwebtoken::Algorithm::HS512
            )
        })
        .ok_or_else(|| SetError::InvalidKey("algorithm not accepted".into()))?;
    let kid = header.get("kid").and_then(Value::as_str);
    let keys = tx.keys.load();
    let key = keys.find(kid, alg).ok_or_else(|| {
        SetError::InvalidKey("no key of the transmitter matches `kid` and `alg`".into())
    })?;
    let message = &set.as_bytes()[..h64.len() + 1 + p64.len()];
    if !matches!(
        jsonwebtoken::crypto::verify(s64, message, &key.key, alg),
        Ok(true)
    ) {
        return Err(SetError::AuthenticationFailed);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == tx.audience,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(tx.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(SetError::InvalidAudience);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad("no numeric `iat`"))?;
    if iat > now + IAT_LEEWAY_SECS {
        return Err(bad("`iat` is in the future"));
    }
    if now - iat > MAX_AGE_SECS {
        return Err(bad("`iat` is older than 24 hours"));
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| bad("no `jti`"))?
        .to_string();
    let events = claims
        .get("events")
        .and_then(Value::as_object)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| bad("`events` must be a non-empty object"))?;
    let top_subject = claims.get("sub_id");
    let mut out = Vec::new();
    for (uri, payload) in events {
        let kind = EventKind::of(uri);
        let payload = payload.as_object().cloned().unwrap_or_default();
        let effect = effect(kind, &payload, top_subject, iat);
        out.push(Event { kind, effect });
    }
    Ok(SecurityEvent {
        jti,
        transmitter: t,
        events: out,
    })
}

/// The token `sub` (and issuer) an SSF subject names (RFC 9493): `iss_sub` and
/// `opaque` map; other formats cannot name a token's subject.
fn subject(s: &Value) -> Result<(String, Option<String>), String> {
    let o = s.as_object().ok_or("subject is not an object")?;
    let field = |k: &str| o.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    match field("format") {
        Some("iss_sub") => match (field("sub"), field("iss")) {
            (Some(sub), Some(iss)) => Ok((sub.to_string(), Some(iss.to_string()))),
            _ => Err("iss_sub subject without `iss` and `sub`".into()),
        },
        Some("opaque") => field("id")
            .map(|id| (id.to_string(), None))
            .ok_or_else(|| "opaque subject without `id`".into()),
        Some(other) => Err(format!("subject format `{other}` is not mapped to tokens")),
        None => Err("subject without `format`".into()),
    }
}

fn effect(kind: EventKind, payload: &Map<String, Value>, top: Option<&Value>, iat: f64) -> Effect {
    if kind == EventKind::Other {
        return Effect::Ignore("event type not acted on".into());
    }
    let Some(s) = payload.get("subject").or(top) else {
        return Effect::Ignore("no subject".into());
    };
    let (sub, issuer) = match subject(s) {
        Ok(x) => x,
        Err(why) => return Effect::Ignore(why),
    };
    // An event cannot be later than its SET (a far-future time would revoke
    // forever, and overflow the date arithmetic).
    let at = payload
        .get("event_timestamp")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite())
        .unwrap_or(iat)
        .clamp(0.0, iat);
    let entry = |before: Option<f64>| Entry {
        jti: None,
        sub: Some(sub.clone()),
        actor: None,
        issuer: issuer.clone(),
        issued_before: before.map(rfc3339),
        until: None,
    };
    match kind {
        EventKind::AccountDisabled => Effect::Revoke(entry(None)),
        EventKind::AccountEnabled => Effect::Lift(entry(None)),
        // Token dates are whole seconds: a token issued in the event's own second
        // may predate it, so that second is revoked too (fail closed).
        _ => Effect::Revoke(entry(Some(at.floor() + 1.0))),
    }
}

/// Whole seconds since the epoch as RFC 3339 (UTC).
fn rfc3339(t: f64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0.0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests;
