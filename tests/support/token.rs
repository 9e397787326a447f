//! Compact JWTs: the fluent [`TokenBuilder`] (from [`Keys::token`]), hand-built JWS, and
//! decoding/tampering helpers.

use serde_json::{Map, Value, json};

use super::keys::{AUDIENCE, ISSUER, KID, Keys, b64url, b64url_decode, now};

pub(super) fn raw_jws(
    header: &Value,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let h = b64url(&serde_json::to_vec(header).expect("header json"));
    let p = b64url(&serde_json::to_vec(claims).expect("claims json"));
    let msg = format!("{h}.{p}");
    let sig = sign(msg.as_bytes());
    format!("{msg}.{}", b64url(&sig))
}

/// The three dot-separated parts of a compact JWS; panics when it is not one.
pub fn jwt_parts(token: &str) -> (String, String, String) {
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token:?}");
    (
        parts[0].to_string(),
        parts[1].to_string(),
        parts[2].to_string(),
    )
}

/// The decoded JOSE header of a compact JWS.
pub fn jwt_header(token: &str) -> Value {
    let (h, _, _) = jwt_parts(token);
    serde_json::from_slice(&b64url_decode(&h)).expect("header is JSON")
}

/// The decoded (unverified) claims of a compact JWS.
pub fn jwt_claims(token: &str) -> Value {
    let (_, p, _) = jwt_parts(token);
    serde_json::from_slice(&b64url_decode(&p)).expect("payload is JSON")
}

/// Re-encodes a token's payload after `patch` edits it, keeping the original signature.
pub fn tamper_claims(token: &str, patch: impl FnOnce(&mut Map<String, Value>)) -> String {
    let (h, _, s) = jwt_parts(token);
    let mut claims = jwt_claims(token);
    patch(claims.as_object_mut().expect("claims object"));
    let p = b64url(&serde_json::to_vec(&claims).expect("json"));
    format!("{h}.{p}.{s}")
}

// ==========================================================================================
// === TokenBuilder ===
// ==========================================================================================

#[derive(Clone, Debug)]
enum Signer {
    /// The trusted ES256 key (via `jsonwebtoken::encode`).
    Trusted,
    /// The rogue ES256 key (via `jsonwebtoken::encode`).
    Rogue,
    /// A P-384 key, alg ES384 (via `jsonwebtoken::encode`).
    Es384,
    /// HMAC-SHA256 with the given secret (via `jsonwebtoken::encode`).
    Hs256(Vec<u8>),
    /// `alg: none`, empty signature (hand-built).
    AlgNone,
    /// ES256 header, signature of 64 zero bytes (`r = s = 0`, CVE-2022-21449).
    ZeroSignature,
    /// Hand-built compact JWS signed with the trusted key; header JSON used verbatim.
    RawTrusted,
}

/// Fluent builder for signed compact JWTs.
///
/// Defaults: header `{alg: ES256, kid: key-1, typ: at+jwt}`, claims `iss` [`ISSUER`], `aud`
/// [`AUDIENCE`], `sub` alice, `client_id` test-client, `iat` now, `exp` now + 10 min.
#[derive(Clone)]
pub struct TokenBuilder<'k> {
    keys: &'k Keys,
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signer: Signer,
}

impl<'k> TokenBuilder<'k> {
    pub(super) fn new(keys: &'k Keys) -> Self {
        let t = now();
        let mut header = Map::new();
        header.insert("alg".into(), json!("ES256"));
        header.insert("kid".into(), json!(KID));
        header.insert("typ".into(), json!("at+jwt"));
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(ISSUER));
        claims.insert("aud".into(), json!(AUDIENCE));
        claims.insert("sub".into(), json!("alice"));
        claims.insert("client_id".into(), json!("test-client"));
        claims.insert("iat".into(), json!(t));
        claims.insert("exp".into(), json!(t + 600));
        TokenBuilder {
            keys,
            header,
            claims,
            signer: Signer::Trusted,
        }
    }

    /// Sets any claim.
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.into(), value);
        self
    }

    /// Removes a claim.
    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    pub fn iss(self, iss: &str) -> Self {
        self.claim("iss", json!(iss))
    }

    pub fn aud(self, aud: &str) -> Self {
        self.claim("aud", json!(aud))
    }

    pub fn aud_value(self, aud: Value) -> Self {
        self.claim("aud", aud)
    }

    pub fn sub(self, sub: &str) -> Self {
        self.claim("sub", json!(sub))
    }

    /// Space-delimited `scope` (RFC 9068).
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", json!(scope))
    }

    /// `scp` claim (array or string).
    pub fn scp(self, scp: Value) -> Self {
        self.claim("scp", scp)
    }

    /// `exp` = now + `secs` (negative: in the past).
    pub fn exp_in(self, secs: i64) -> Self {
        self.claim("exp", json!(now() + secs))
    }

    /// `iat` = now − `secs`.
    pub fn iat_ago(self, secs: i64) -> Self {
        self.claim("iat", json!(now() - secs))
    }

    /// `nbf` = now + `secs`.
    pub fn nbf_in(self, secs: i64) -> Self {
        self.claim("nbf", json!(now() + secs))
    }

    /// `auth_time` = now − `secs`.
    pub fn auth_time_ago(self, secs: i64) -> Self {
        self.claim("auth_time", json!(now() - secs))
    }

    /// Delegation chain, current actor first: `["agent:a", "user:b"]` builds
    /// `act: {sub: agent:a, act: {sub: user:b}}`.
    pub fn act_chain(self, chain: &[&str]) -> Self {
        self.claim("act", act_value(chain))
    }

    /// A single actor (`act: {sub}`).
    pub fn act(self, sub: &str) -> Self {
        self.act_chain(&[sub])
    }

    /// `act` claim given verbatim.
    pub fn act_value(self, act: Value) -> Self {
        self.claim("act", act)
    }

    /// Sets a JOSE header parameter (verbatim).
    pub fn header(mut self, name: &str, value: Value) -> Self {
        self.header.insert(name.into(), value);
        self
    }

    /// Removes a JOSE header parameter.
    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    pub fn kid(self, kid: &str) -> Self {
        self.header("kid", json!(kid))
    }

    pub fn typ(self, typ: &str) -> Self {
        self.header("typ", json!(typ))
    }

    /// Signs with the rogue key (not in the JWKS); the `kid` is left as set.
    pub fn signed_by_rogue(mut self) -> Self {
        self.signer = Signer::Rogue;
        self
    }

    /// Signs with a P-384 key as ES384.
    pub fn es384(mut self) -> Self {
        self.signer = Signer::Es384;
        self.header.insert("alg".into(), json!("ES384"));
        self
    }

    /// Signs as HS256 with `secret` (e.g. the public key bytes: key confusion).
    pub fn hs256(mut self, secret: &[u8]) -> Self {
        self.signer = Signer::Hs256(secret.to_vec());
        self.header.insert("alg".into(), json!("HS256"));
        self
    }

    /// `alg: none` with an empty signature.
    pub fn alg_none(mut self) -> Self {
        self.signer = Signer::AlgNone;
        self.header.insert("alg".into(), json!("none"));
        self
    }

    /// ES256 header with an all-zero signature.
    pub fn zero_signature(mut self) -> Self {
        self.signer = Signer::ZeroSignature;
        self
    }

    /// Hand-build the JWS (header used verbatim, signed with the trusted key) instead of going
    /// through `jsonwebtoken`: for header shapes `jsonwebtoken::Header` cannot express.
    pub fn raw(mut self) -> Self {
        self.signer = Signer::RawTrusted;
        self
    }

    /// Current claims (for assertions).
    pub fn claims(&self) -> Value {
        Value::Object(self.claims.clone())
    }

    /// Produces the compact JWS.
    pub fn sign(self) -> String {
        let header = Value::Object(self.header);
        let claims = Value::Object(self.claims);
        let via_lib = |key: jsonwebtoken::EncodingKey| -> String {
            let h: jsonwebtoken::Header =
                serde_json::from_value(header.clone()).expect("header fits jsonwebtoken::Header");
            jsonwebtoken::encode(&h, &claims, &key).expect("jsonwebtoken::encode")
        };
        match self.signer {
            Signer::Trusted => via_lib(jsonwebtoken::EncodingKey::from_ec_der(
                &self.keys.trusted.pkcs8,
            )),
            Signer::Rogue => via_lib(jsonwebtoken::EncodingKey::from_ec_der(
                &self.keys.rogue.pkcs8,
            )),
            Signer::Es384 => via_lib(jsonwebtoken::EncodingKey::from_ec_der(
                &self.keys.p384_pkcs8,
            )),
            Signer::Hs256(secret) => via_lib(jsonwebtoken::EncodingKey::from_secret(&secret)),
            Signer::AlgNone => raw_jws(&header, &claims, |_| Vec::new()),
            Signer::ZeroSignature => raw_jws(&header, &claims, |_| vec![0u8; 64]),
            Signer::RawTrusted => self.keys.sign_raw(&header, &claims),
        }
    }
}

/// Builds a nested `act` object from a chain, current actor first.
pub fn act_value(chain: &[&str]) -> Value {
    let mut act: Option<Value> = None;
    for sub in chain.iter().rev() {
        let mut obj = Map::new();
        obj.insert("sub".into(), json!(sub));
        if let Some(inner) = act.take() {
            obj.insert("act".into(), inner);
        }
        act = Some(Value::Object(obj));
    }
    act.expect("non-empty chain")
}

/// `Authorization: Bearer <token>` as a header pair.
pub fn bearer(token: &str) -> (String, String) {
    ("Authorization".to_string(), format!("Bearer {token}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn act_chain_nests_current_actor_outermost() {
        assert_eq!(
            act_value(&["agent:a", "user:b"]),
            json!({"sub": "agent:a", "act": {"sub": "user:b"}})
        );
    }
}
