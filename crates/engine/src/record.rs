//! What the decision log records about a decision beyond its outcome: the
//! facts it rested on (SPEC: Rule owner's tools), so that `writ replay` and
//! `writ explain --log-line` can decide the same request again under another
//! policy. Values of verified claims only: never a token, a signature or a
//! header value (docs/decisions/0010-decision-log-basis.md says why each field
//! is safe to ship to a log store).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::claims::Claims;

/// What writ knew of the request's credential when it decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Credential {
    /// No bearer token was sent (a `Basic` header counts as none).
    None,
    /// A token was verified; the [`Basis`] holds what the checks read from it.
    Verified,
    /// A token was sent and refused by authentication (the reason says why).
    Rejected,
    /// A token was sent but the decision did not need it (public action,
    /// malformed request, no matching action).
    Unchecked,
}

/// The claims a decision rested on. Absent fields were absent from the token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Basis {
    /// `jti`: an identifier, not a credential (revocation entries name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `scope` / `scp`, split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// `aud`, as a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    /// `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<Number>,
    /// `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<Number>,
    /// `nbf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<Number>,
    /// `auth_time` (step-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<Number>,
    /// `acr` (step-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The current actor's `act.iat`, when the token carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act_iat: Option<Number>,
    /// The current actor's `act.exp` (delegation expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act_exp: Option<Number>,
    /// The current actor's `act.iss` (an actor of another issuer never matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act_iss: Option<String>,
    /// Every claim some action of the policy binds, `null` when the token has none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, Value>,
}

impl Basis {
    /// What the checks read from a verified token's `claims`; `bound` names the
    /// claims the policy binds ([`Policy::bound_claims`](crate::Policy)).
    pub fn of(claims: &Claims, bound: &[String]) -> Basis {
        let r = BasisRef::of(claims, bound);
        Basis {
            jti: r.jti.map(str::to_string),
            scopes: r.scopes.map(<[String]>::to_vec),
            aud: r.aud.map(<[String]>::to_vec),
            claims: r.claims().map(|(k, v)| (k.clone(), v.clone())).collect(),
            iat: r.iat,
            exp: r.exp,
            nbf: r.nbf,
            auth_time: r.auth_time,
            acr: r.acr.map(str::to_string),
            act_iat: r.act_iat,
            act_exp: r.act_exp,
            act_iss: r.act_iss.map(str::to_string),
        }
    }
}

/// The same facts as [`Basis`], borrowed from the claims: for a reader that
/// only writes them out (the decision log's writer), nothing copied.
#[derive(Debug, Clone)]
pub struct BasisRef<'a> {
    /// `jti`.
    pub jti: Option<&'a str>,
    /// `scope` / `scp`, split.
    pub scopes: Option<&'a [String]>,
    /// `aud`, as a list.
    pub aud: Option<&'a [String]>,
    /// `iat`.
    pub iat: Option<Number>,
    /// `exp`.
    pub exp: Option<Number>,
    /// `nbf`.
    pub nbf: Option<Number>,
    /// `auth_time`.
    pub auth_time: Option<Number>,
    /// `acr`.
    pub acr: Option<&'a str>,
    /// The current actor's `act.iat`.
    pub act_iat: Option<Number>,
    /// The current actor's `act.exp`.
    pub act_exp: Option<Number>,
    /// The current actor's `act.iss`.
    pub act_iss: Option<&'a str>,
    raw: &'a Map<String, Value>,
    bound: &'a [String],
}

/// A bound claim the token does not carry.
static NULL: Value = Value::Null;

impl<'a> BasisRef<'a> {
    /// See [`Basis::of`].
    pub fn of(claims: &'a Claims, bound: &'a [String]) -> BasisRef<'a> {
        let times = claims.times.as_ref().ok();
        let date = |f: fn(&crate::claims::Times) -> Option<f64>| times.and_then(f).map(number);
        let current = claims.act.as_ref().ok().and_then(|a| a.first());
        BasisRef {
            jti: claims.raw.get("jti").and_then(Value::as_str),
            scopes: claims.scopes.as_ref().ok().map(Vec::as_slice),
            aud: claims.aud.as_deref(),
            iat: date(|t| t.iat),
            exp: date(|t| t.exp),
            nbf: date(|t| t.nbf),
            auth_time: date(|t| t.auth_time),
            acr: claims.acr.as_deref(),
            act_iat: claims
                .raw
                .get("act")
                .and_then(|a| a.get("iat"))
                .and_then(Value::as_f64)
                .map(number),
            act_exp: current.and_then(|a| a.exp).map(number),
            act_iss: current.and_then(|a| a.iss.as_deref()),
            raw: &claims.raw,
            bound,
        }
    }

    /// Every bound claim and its value (`null` when the token has none), in
    /// `bound`'s order ([`Policy::bound_claims`](crate::Policy) is sorted and
    /// deduplicated, the order [`Basis::claims`] iterates in).
    pub fn claims(&self) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        let raw = self.raw;
        self.bound
            .iter()
            .map(move |n| (n, raw.get(n).unwrap_or(&NULL)))
    }
}

/// A numeric date as JSON: an integer when it is one (the common case).
fn number(t: f64) -> Number {
    if t.fract() == 0.0 && t.abs() < 9.0e15 {
        Number::from(t as i64)
    } else {
        Number::from_f64(t).unwrap_or_else(|| Number::from(0))
    }
}

/// One decision-log line as `writ replay` and `explain --log-line` read it.
/// Fields a line may carry beyond these (`duration_us`, `execution`...) are
/// ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct LoggedDecision {
    /// When it was decided (RFC 3339).
    pub ts: String,
    /// The request id.
    pub request_id: String,
    /// The method as sent.
    pub method: String,
    /// The normalized path; `null` when the request was refused before.
    pub path: Option<String>,
    /// The host as matched.
    pub host: Option<String>,
    /// The matched action.
    pub action: Option<String>,
    /// `allow` or `deny` (`enforced: false` for an audit-mode would-be denial).
    pub decision: String,
    /// False when audit mode forwarded a denial.
    #[serde(default = "yes")]
    pub enforced: bool,
    /// The reason.
    pub reason: String,
    /// The status answered.
    pub status: u16,
    /// The verified `sub`.
    pub subject: Option<String>,
    /// The `act` chain, current actor first.
    #[serde(default)]
    pub actor_chain: Vec<String>,
    /// `client_id` / `azp`.
    pub client_id: Option<String>,
    /// The verified `iss`.
    pub issuer: Option<String>,
    /// Absent from lines written before writ recorded what decisions rest on.
    pub credential: Option<Credential>,
    /// The introspection answer the decision used, if it needed one.
    #[serde(default)]
    pub introspection: Option<crate::decision::Introspected>,
    /// The door it came in through (`proxy`, `ext_authz_grpc`, `ext_authz_http`).
    #[serde(default)]
    pub frontend: Option<String>,
    /// What the checks read from the token.
    #[serde(flatten)]
    pub basis: Basis,
}

fn yes() -> bool {
    true
}

impl LoggedDecision {
    /// The outcome label as the metrics spell it: `allow`, `deny`, `audit_deny`.
    pub fn outcome(&self) -> &str {
        if self.decision == "deny" && !self.enforced {
            "audit_deny"
        } else {
            &self.decision
        }
    }

    /// The verified token's claims as the checks read them, rebuilt from the
    /// line (scopes as `scope`, the `act` chain nested again). `None` unless
    /// the line says a token was verified.
    pub fn claims(&self) -> Option<serde_json::Map<String, Value>> {
        if self.credential != Some(Credential::Verified) {
            return None;
        }
        let b = &self.basis;
        let mut m: serde_json::Map<String, Value> = b
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put("iss", self.issuer.clone().map(Value::String));
        put("sub", self.subject.clone().map(Value::String));
        put("client_id", self.client_id.clone().map(Value::String));
        put("jti", b.jti.clone().map(Value::String));
        put(
            "aud",
            b.aud
                .clone()
                .map(|a| a.into_iter().map(Value::String).collect()),
        );
        put(
            "scope",
            b.scopes.as_ref().map(|s| Value::String(s.join(" "))),
        );
        for (k, v) in [
            ("iat", &b.iat),
            ("exp", &b.exp),
            ("nbf", &b.nbf),
            ("auth_time", &b.auth_time),
        ] {
            put(k, v.clone().map(Value::Number));
        }
        put("acr", b.acr.clone().map(Value::String));
        // The chain, innermost (earliest) actor first, then wrapped outwards.
        let mut act: Option<Value> = None;
        for (i, sub) in self.actor_chain.iter().enumerate().rev() {
            let mut o = serde_json::Map::new();
            o.insert("sub".into(), Value::String(sub.clone()));
            if i == 0 {
                if let Some(x) = &b.act_exp {
                    o.insert("exp".into(), Value::Number(x.clone()));
                }
                if let Some(x) = &b.act_iat {
                    o.insert("iat".into(), Value::Number(x.clone()));
                }
                if let Some(x) = &b.act_iss {
                    o.insert("iss".into(), Value::String(x.clone()));
                }
            }
            if let Some(inner) = act.take() {
                o.insert("act".into(), inner);
            }
            act = Some(Value::Object(o));
        }
        put("act", act);
        Some(m)
    }
}
