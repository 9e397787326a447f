//! Typed view of a token's claims, parsed once (and cached with the token).

use serde_json::{Map, Value};

/// `act` chains deeper than this are malformed (SPEC: Delegation).
pub const MAX_ACT_DEPTH: usize = 8;

/// One actor of an RFC 8693 `act` chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    /// The actor's subject.
    pub sub: String,
    /// The actor's issuer, when it says one (must equal the token's to match a glob).
    pub iss: Option<String>,
    /// `act.exp`: can only shorten the delegation.
    pub exp: Option<f64>,
}

/// A claim whose shape is wrong: reported as `malformed_token` at the step
/// SPEC's check order puts it (kept until then, so signatures come first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// A numeric date that is a number JSON cannot hold as `f64`.
    #[error("`{0}` is not a valid number")]
    BadNumber(String),
    /// A numeric date that is not a number (`"exp": "never"`).
    #[error("`{0}` is not a numeric date")]
    NotNumericDate(String),
    /// `scope` that is not a space-delimited string.
    #[error("`scope` is not a string")]
    ScopeNotString,
    /// `scp` that is neither a string nor an array of strings.
    #[error("`scp` is not a string or array")]
    ScpNotStringOrArray,
    /// An `scp` array with an entry that is not a string.
    #[error("`scp` has a non-string entry")]
    ScpEntryNotString,
    /// `act` (at some depth) that is not an object.
    #[error("`act` is not an object")]
    ActNotObject,
    /// An `act` chain longer than [`MAX_ACT_DEPTH`].
    #[error("`act` is nested deeper than {MAX_ACT_DEPTH}")]
    ActTooDeep,
    /// An `act` without a string `sub`.
    #[error("`act` has no string `sub`")]
    ActNoSub,
    /// An `act.exp` that is not a numeric date.
    #[error("in `act`: {0}")]
    ActDate(Box<ClaimError>),
    /// An `act.iss` that is not a string.
    #[error("`act.iss` is not a string")]
    ActIssNotString,
}

/// Numeric-date claims. Parse errors are kept and reported at the time-claims
/// step, so that the SPEC check order (signature before time claims) holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Times {
    /// `exp`: required.
    pub exp: Option<f64>,
    /// `nbf`: the token is not valid before this time.
    pub nbf: Option<f64>,
    /// `iat`: required where `max_age` or `auth_max_age` applies.
    pub iat: Option<f64>,
    /// `auth_time`: when the user last authenticated (step-up).
    pub auth_time: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
/// A token's claims, typed for the checks and kept raw for claim conditions.
pub struct Claims {
    /// `iss`: must equal a configured issuer exactly.
    pub iss: Option<String>,
    /// `sub`: the subject writ forwards (the delegator when delegated).
    pub sub: Option<String>,
    /// `client_id` (or `azp`), for the decision log.
    pub client_id: Option<String>,
    /// `aud` as a list; `None` when absent or not a string / array of strings.
    pub aud: Option<Vec<String>>,
    /// Numeric dates, or why they are malformed.
    pub times: Result<Times, ClaimError>,
    /// `acr`, for step-up.
    pub acr: Option<String>,
    /// `scope` (or `scp`) split into scopes, or why it is malformed.
    pub scopes: Result<Vec<String>, ClaimError>,
    /// Current actor first; empty when not delegated.
    pub act: Result<Vec<Actor>, ClaimError>,
    /// A `cnf` claim: sender-constrained tokens are refused until PoP exists.
    pub has_cnf: bool,
    /// Two member names (at any depth) equal under case folding: Go's
    /// `encoding/json` matches names case-insensitively, last one wins
    /// (golang/go#43664), so a backend could read another `sub` than writ.
    pub names_collide: bool,
    /// Every claim as sent, for claim conditions.
    pub raw: Map<String, Value>,
}

impl Claims {
    /// Types the claims of a verified (or given) token.
    pub fn parse(raw: Map<String, Value>) -> Claims {
        let string = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        let aud = match raw.get("aud") {
            Some(Value::String(s)) => Some(vec![s.clone()]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        };
        Claims {
            iss: string("iss"),
            sub: string("sub"),
            client_id: string("client_id").or_else(|| string("azp")),
            aud,
            times: parse_times(&raw),
            acr: string("acr"),
            scopes: parse_scopes(&raw),
            act: parse_act(raw.get("act")),
            has_cnf: raw.contains_key("cnf"),
            names_collide: names_collide(&raw),
            raw,
        }
    }

    /// Whether the token carries an `act` chain.
    pub fn is_delegated(&self) -> bool {
        matches!(&self.act, Ok(a) if !a.is_empty())
    }
}

/// Whether any object in `map` (itself included) has two member names that
/// fold to the same text. Folding is Unicode, upper then lower, so `ſ`/`s` and
/// the Kelvin sign/`k` collide as they do under Go's `strings.EqualFold`.
fn names_collide(map: &Map<String, Value>) -> bool {
    fn object(map: &Map<String, Value>) -> bool {
        let mut seen = std::collections::HashSet::with_capacity(map.len());
        map.keys()
            .any(|k| !seen.insert(k.to_uppercase().to_lowercase()))
            || map.values().any(value)
    }
    fn value(v: &Value) -> bool {
        match v {
            Value::Object(m) => object(m),
            Value::Array(a) => a.iter().any(value),
            _ => false,
        }
    }
    object(map)
}

fn numeric(raw: &Map<String, Value>, k: &str) -> Result<Option<f64>, ClaimError> {
    match raw.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| ClaimError::BadNumber(k.to_string())),
        Some(_) => Err(ClaimError::NotNumericDate(k.to_string())),
    }
}

fn parse_times(raw: &Map<String, Value>) -> Result<Times, ClaimError> {
    Ok(Times {
        exp: numeric(raw, "exp")?,
        nbf: numeric(raw, "nbf")?,
        iat: numeric(raw, "iat")?,
        auth_time: numeric(raw, "auth_time")?,
    })
}

/// `scope` (space-delimited, RFC 9068) wins over `scp` (array or string).
fn parse_scopes(raw: &Map<String, Value>) -> Result<Vec<String>, ClaimError> {
    let split = |s: &str| {
        s.split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    match raw.get("scope") {
        Some(Value::String(s)) => return Ok(split(s)),
        Some(_) => return Err(ClaimError::ScopeNotString),
        None => {}
    }
    match raw.get("scp") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(split(s)),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(ClaimError::ScpEntryNotString),
        Some(_) => Err(ClaimError::ScpNotStringOrArray),
    }
}

fn parse_act(v: Option<&Value>) -> Result<Vec<Actor>, ClaimError> {
    let mut chain = Vec::new();
    let mut cur = v;
    while let Some(v) = cur {
        let Value::Object(o) = v else {
            return Err(ClaimError::ActNotObject);
        };
        if chain.len() == MAX_ACT_DEPTH {
            return Err(ClaimError::ActTooDeep);
        }
        let Some(Value::String(sub)) = o.get("sub") else {
            return Err(ClaimError::ActNoSub);
        };
        let exp = numeric(o, "exp").map_err(|e| ClaimError::ActDate(Box::new(e)))?;
        let iss = match o.get("iss") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ClaimError::ActIssNotString),
        };
        chain.push(Actor {
            sub: sub.clone(),
            iss,
            exp,
        });
        cur = o.get("act");
    }
    Ok(chain)
}

/// Parses a JSON object, refusing duplicate member names at any depth: a
/// verifier that reads the last `sub` and a backend that reads the first one
/// would disagree about who is calling (APISIX CVE-2022-25757).
pub fn parse_json_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonObjectError> {
    match crate::json::parse_strict(bytes).map_err(JsonObjectError::Json)? {
        Value::Object(m) => Ok(m),
        _ => Err(JsonObjectError::NotObject),
    }
}

/// Why bytes are not a strict JSON object.
#[derive(Debug, thiserror::Error)]
pub enum JsonObjectError {
    /// Not strict JSON (a duplicate member name, a lone surrogate, too deep).
    #[error("{0}")]
    Json(crate::json::JsonError),
    /// Valid JSON, but not an object.
    #[error("not a JSON object")]
    NotObject,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        Claims::parse(v.as_object().unwrap().clone())
    }

    #[test]
    fn scope_wins_over_scp() {
        let c = claims(json!({"scope": "a b", "scp": ["c"]}));
        assert_eq!(c.scopes, Ok(vec!["a".into(), "b".into()]));
        let c = claims(json!({"scp": ["c", "d"]}));
        assert_eq!(c.scopes, Ok(vec!["c".into(), "d".into()]));
    }

    #[test]
    fn string_exp_is_an_error_not_absent() {
        assert!(claims(json!({"exp": "never"})).times.is_err());
        assert!(claims(json!({"nbf": "0"})).times.is_err());
        assert_eq!(claims(json!({"exp": 5})).times.unwrap().exp, Some(5.0));
    }

    #[test]
    fn act_chain_shapes() {
        let c = claims(json!({"act": {"sub": "a", "act": {"sub": "b"}}}));
        let chain = c.act.unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].sub, "a");
        assert!(claims(json!({"act": "agent"})).act.is_err());
        assert!(claims(json!({"act": {"iss": "x"}})).act.is_err());
        assert!(
            claims(json!({"act": {"sub": "a", "act": {"x": 1}}}))
                .act
                .is_err()
        );
        let mut deep = json!({"sub": "s"});
        for _ in 0..9 {
            deep = json!({"sub": "s", "act": deep});
        }
        assert!(claims(json!({ "act": deep })).act.is_err());
    }

    #[test]
    fn names_that_fold_alike_collide() {
        assert!(claims(json!({"sub": "a", "SUB": "b"})).names_collide);
        assert!(claims(json!({"scope": "a", "Scope": "b"})).names_collide);
        assert!(claims(json!({"act": {"sub": "a", "Sub": "b"}})).names_collide);
        assert!(claims(json!({"x": [{"k": 1, "\u{212a}": 2}]})).names_collide);
        assert!(claims(json!({"s": 1, "\u{17f}": 2})).names_collide);
        assert!(!claims(json!({"sub": "a", "scope": "b", "act": {"sub": "c"}})).names_collide);
    }

    #[test]
    fn duplicate_members_refused() {
        assert!(parse_json_object(br#"{"sub":"a","sub":"b"}"#).is_err());
        assert!(parse_json_object(br#"{"act":{"sub":"a","sub":"b"}}"#).is_err());
        assert!(parse_json_object(br#"[1]"#).is_err());
        assert!(parse_json_object(br#"{"sub":"a"}"#).is_ok());
    }

    #[test]
    fn empty_aud_array_is_empty_list() {
        assert_eq!(claims(json!({"aud": []})).aud, Some(vec![]));
        assert_eq!(claims(json!({"aud": [1]})).aud, None);
    }
}
