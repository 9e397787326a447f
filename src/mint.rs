//! Minting test tokens: reading PEM private keys, RFC 7638 thumbprints, `act`
//! chains, signing with `typ: at+jwt`. Used by `writ token` and the demo.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    RsaKeyPair,
};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Map, Value, json};

/// A signing key with its default algorithm.
pub struct SigningKey {
    pub key: EncodingKey,
    pub alg: Algorithm,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("no private key in PEM: {0}")]
    NoPrivateKey(rustls_pki_types::pem::Error),
    #[error("bad RSA key: {0}")]
    BadRsaKey(jsonwebtoken::errors::Error),
    #[error("unsupported EC curve (P-256 and P-384 are supported)")]
    UnsupportedCurve,
    #[error("cannot re-encode the Ed25519 key")]
    Ed25519Encoding,
    #[error("unsupported PKCS#8 key type")]
    UnsupportedPkcs8,
    #[error("unsupported private key format")]
    UnsupportedFormat,
    #[error("cannot compute key thumbprint: {0}")]
    Thumbprint(jsonwebtoken::errors::Error),
    #[error("cannot sign: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// Reads a PEM private key of any supported kind.
pub fn read_private_key(pem: &[u8]) -> Result<SigningKey, MintError> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(MintError::NoPrivateKey)?;
    match der {
        PrivateKeyDer::Pkcs1(_) => Ok(SigningKey {
            key: EncodingKey::from_rsa_pem(pem).map_err(MintError::BadRsaKey)?,
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
            Err(MintError::UnsupportedCurve)
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
                let v1 = pair.to_pkcs8v1().map_err(|_| MintError::Ed25519Encoding)?;
                return Ok(SigningKey {
                    key: EncodingKey::from_ed_der(v1.as_ref()),
                    alg: Algorithm::EdDSA,
                });
            }
            if RsaKeyPair::from_pkcs8(der).is_ok() {
                return Ok(SigningKey {
                    key: EncodingKey::from_rsa_pem(pem).map_err(MintError::BadRsaKey)?,
                    alg: Algorithm::RS256,
                });
            }
            Err(MintError::UnsupportedPkcs8)
        }
        _ => Err(MintError::UnsupportedFormat),
    }
}

/// RFC 7638 thumbprint of the key's public part (the default `kid`).
pub fn thumbprint(key: &EncodingKey, alg: Algorithm) -> Result<String, MintError> {
    Jwk::from_encoding_key(key, alg)
        .and_then(|j| j.thumbprint(ThumbprintHash::SHA256))
        .map_err(MintError::Thumbprint)
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
) -> Result<String, MintError> {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header.kid = kid;
    jsonwebtoken::encode(&header, claims, &key.key).map_err(MintError::Sign)
}
