//! `writ token`: mint a signed token for testing (SPEC: settled questions).

use std::path::PathBuf;
use std::time::Duration;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    RsaKeyPair,
};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Map, Value, json};

use crate::auth::token::parse_alg;
use crate::clock::Clock;
use crate::config::duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    #[arg(long, required_unless_present = "hmac_secret_env")]
    key: Option<PathBuf>,
    /// Sign with the HMAC secret in this environment variable.
    #[arg(long, conflicts_with = "key")]
    hmac_secret_env: Option<String>,
    /// Algorithm (default: from the key: ES256, ES384, RS256, EdDSA, HS256).
    #[arg(long)]
    alg: Option<String>,
    #[arg(long)]
    kid: Option<String>,
    #[arg(long)]
    iss: Option<String>,
    #[arg(long)]
    aud: Option<String>,
    #[arg(long)]
    sub: Option<String>,
    /// Space-delimited scopes.
    #[arg(long)]
    scope: Option<String>,
    /// Actor subject; repeat for a chain, first = current actor.
    #[arg(long)]
    act: Vec<String>,
    /// Lifetime, e.g. `15m` (default `1h`).
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Extra claim `K=V`; V is read as JSON when it parses, else as a string.
    #[arg(long)]
    claim: Vec<String>,
}

/// A signing key with its default algorithm.
pub struct SigningKey {
    pub key: EncodingKey,
    pub alg: Algorithm,
}

/// Reads a PEM private key of any supported kind.
pub fn read_private_key(pem: &[u8]) -> Result<SigningKey, String> {
    let der =
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no private key in PEM: {e}"))?;
    match der {
        PrivateKeyDer::Pkcs1(_) => Ok(SigningKey {
            key: EncodingKey::from_rsa_pem(pem).map_err(|e| format!("bad RSA key: {e}"))?,
            alg: Algorithm::RS256,
        }),
        PrivateKeyDer::Sec1(k) => {
            for (alg, curve) in [
                (Algorithm::ES256, &ECDSA_P256_SHA256_FIXED_SIGNING),
                (Algorithm::ES384, &ECDSA_P384_SHA384_FIXED_SIGNING),
            ] {
                if let Ok(pair) = EcdsaKeyPair::from_private_key_der(curve, k.secret_sec1_der())
                    && let Ok(doc) = pair.to_pkcs8v1()
                {
                    return Ok(SigningKey {
                        key: EncodingKey::from_ec_der(doc.as_ref()),
                        alg,
                    });
                }
            }
            Err("unsupported EC curve (P-256 and P-384 are supported)".into())
        }
        PrivateKeyDer::Pkcs8(k) => {
            let der = k.secret_pkcs8_der();
            if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).is_ok() {
                return Ok(SigningKey {
                    key: EncodingKey::from_ec_der(der),
                    alg: Algorithm::ES256,
                });
            }
            if EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der).is_ok() {
                return Ok(SigningKey {
                    key: EncodingKey::from_ec_der(der),
                    alg: Algorithm::ES384,
                });
            }
            if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                // PKCS#8 v2 (with the public key) is normalized to v1, the form
                // the signer and the thumbprint expect.
                let v1 = pair
                    .to_pkcs8v1()
                    .map_err(|_| "cannot re-encode the Ed25519 key".to_string())?;
                return Ok(SigningKey {
                    key: EncodingKey::from_ed_der(v1.as_ref()),
                    alg: Algorithm::EdDSA,
                });
            }
            if RsaKeyPair::from_pkcs8(der).is_ok() {
                return Ok(SigningKey {
                    key: EncodingKey::from_rsa_pem(pem).map_err(|e| format!("bad RSA key: {e}"))?,
                    alg: Algorithm::RS256,
                });
            }
            Err("unsupported PKCS#8 key type".into())
        }
        _ => Err("unsupported private key format".into()),
    }
}

/// RFC 7638 thumbprint of the key's public part (the default `kid`).
pub fn thumbprint(key: &EncodingKey, alg: Algorithm) -> Result<String, String> {
    Jwk::from_encoding_key(key, alg)
        .and_then(|j| j.thumbprint(ThumbprintHash::SHA256))
        .map_err(|e| format!("cannot compute key thumbprint: {e}"))
}

/// Builds the nested `act` object from a chain (first = current actor).
pub fn act_chain(actors: &[String]) -> Option<Value> {
    actors.iter().rev().fold(None, |inner, sub| {
        let mut o = Map::new();
        o.insert("sub".into(), json!(sub));
        if let Some(i) = inner {
            o.insert("act".into(), i);
        }
        Some(Value::Object(o))
    })
}

/// Signs claims with `typ: at+jwt`.
pub fn sign(
    key: &SigningKey,
    alg: Algorithm,
    kid: Option<String>,
    claims: &Value,
) -> Result<String, String> {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header.kid = kid;
    jsonwebtoken::encode(&header, claims, &key.key).map_err(|e| format!("cannot sign: {e}"))
}

fn fail(msg: impl std::fmt::Display) -> u8 {
    eprintln!("writ token: {msg}");
    2
}

pub fn run(args: Args) -> u8 {
    let key = match (&args.key, &args.hmac_secret_env) {
        (Some(p), _) => match std::fs::read(p)
            .map_err(|e| format!("cannot read {}: {e}", p.display()))
            .and_then(|b| read_private_key(&b))
        {
            Ok(k) => k,
            Err(e) => return fail(e),
        },
        (None, Some(var)) => match std::env::var(var) {
            Ok(s) => SigningKey {
                key: EncodingKey::from_secret(s.as_bytes()),
                alg: Algorithm::HS256,
            },
            Err(_) => return fail(format!("environment variable `{var}` is not set")),
        },
        (None, None) => return fail("--key or --hmac-secret-env is required"),
    };
    let alg = match &args.alg {
        Some(a) => match parse_alg(a) {
            Some(a) => a,
            None => return fail(format!("unknown algorithm `{a}`")),
        },
        None => key.alg,
    };
    let ttl: Duration = match duration::parse(&args.ttl) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let kid = match &args.kid {
        Some(k) => Some(k.clone()),
        None => match thumbprint(&key.key, alg) {
            Ok(t) => Some(t),
            Err(e) => return fail(e),
        },
    };
    let now = Clock::System.now().floor() as i64;
    let mut claims = Map::new();
    for (k, v) in [
        ("iss", &args.iss),
        ("aud", &args.aud),
        ("sub", &args.sub),
        ("scope", &args.scope),
    ] {
        if let Some(v) = v {
            claims.insert(k.into(), json!(v));
        }
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl.as_secs() as i64));
    if let Some(a) = act_chain(&args.act) {
        claims.insert("act".into(), a);
    }
    for c in &args.claim {
        let Some((k, v)) = c.split_once('=') else {
            return fail(format!("--claim `{c}` must be K=V"));
        };
        let v = serde_json::from_str(v).unwrap_or_else(|_| json!(v));
        claims.insert(k.to_string(), v);
    }
    match sign(&key, alg, kid, &Value::Object(claims)) {
        Ok(t) => {
            println!("{t}");
            0
        }
        Err(e) => fail(e),
    }
}
