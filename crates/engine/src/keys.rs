//! Verification keys: one [`KeySet`] per issuer, indexed by `kid`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Why key material was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not a JWKS JSON document.
    #[error("not a JWKS document: {0}")]
    NotJwks(serde_json::Error),
    /// A JWKS with no key writ can verify with.
    #[error("JWKS has no usable signing key")]
    NoUsableKey,
    /// PEM text that does not parse.
    #[error("bad PEM: {0}")]
    BadPem(pem::PemError),
    /// PEM that is not text.
    #[error("PEM is not text")]
    NotText,
    /// No `PUBLIC KEY` block.
    #[error("no PUBLIC KEY block in PEM")]
    NoPublicKey,
    /// A public key type writ does not verify with.
    #[error("unsupported public key type in PEM")]
    UnsupportedKeyType,
    /// A PKCS#1 RSA key that does not load.
    #[error("bad RSA public key: {0}")]
    BadRsaKey(jsonwebtoken::errors::Error),
    /// An SPKI key that does not load.
    #[error("bad public key: {0}")]
    BadKey(jsonwebtoken::errors::Error),
}

/// Asks whoever fetches an issuer's keys (the `jwks_url` refresher, outside the
/// engine) for an early refresh: a token named a `kid` the set does not have.
pub trait KeyRefresh: Send + Sync + std::fmt::Debug {
    /// Requests a refresh; returns at once (rate limiting is the fetcher's).
    fn request_refresh(&self);
}

/// What kind of key this is; decides which `alg` values it may verify, so a
/// token can never pick an algorithm the key was not made for (RS/HS confusion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// HMAC secret (HS*).
    Hmac,
    /// RSA public key (RS*, PS*).
    Rsa,
    /// EC P-256 public key (ES256).
    EcP256,
    /// EC P-384 public key (ES384).
    EcP384,
    /// Ed25519 public key (EdDSA).
    Ed25519,
}

impl KeyFamily {
    /// Whether a key of this family may verify `alg` (no RS/HS confusion).
    pub fn accepts(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyFamily::Hmac => matches!(alg, HS256 | HS384 | HS512),
            KeyFamily::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyFamily::EcP256 => alg == ES256,
            KeyFamily::EcP384 => alg == ES384,
            KeyFamily::Ed25519 => alg == EdDSA,
        }
    }
}

/// One verification key.
pub struct KeyEntry {
    /// Its `kid`; `None` verifies tokens whatever `kid` they carry.
    pub kid: Option<String>,
    /// What algorithms it may verify.
    pub family: KeyFamily,
    /// The public key (or HMAC secret) signatures are verified with.
    pub key: DecodingKey,
    /// Identity of the key material: cached verifications are valid only while
    /// a key with this fingerprint is still in the set.
    pub fingerprint: u64,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
/// An issuer's keys.
pub struct KeySet {
    entries: Vec<KeyEntry>,
    by_kid: HashMap<String, usize>,
}

fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

impl KeySet {
    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn push(&mut self, e: KeyEntry) {
        if let Some(kid) = &e.kid {
            self.by_kid.entry(kid.clone()).or_insert(self.entries.len());
        }
        self.entries.push(e);
    }

    /// Parses a JWKS document. Keys for encryption and key types we cannot
    /// verify with are skipped; a document with no usable key is an error.
    pub fn from_jwks(bytes: &[u8]) -> Result<KeySet, KeyError> {
        let set: JwkSet = serde_json::from_slice(bytes).map_err(KeyError::NotJwks)?;
        let mut out = KeySet::default();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let family = match &jwk.algorithm {
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => KeyFamily::EcP256,
                    EllipticCurve::P384 => KeyFamily::EcP384,
                    _ => continue,
                },
                AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
                AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Ed25519,
                // Symmetric secrets never travel in a JWKS we trust.
                _ => continue,
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let material = serde_json::to_vec(&jwk.algorithm).unwrap_or_default();
            let kid = jwk.common.key_id.clone();
            out.push(KeyEntry {
                fingerprint: fingerprint(&[kid.as_deref().unwrap_or("").as_bytes(), &material]),
                kid,
                family,
                key,
            });
        }
        if out.is_empty() {
            return Err(KeyError::NoUsableKey);
        }
        Ok(out)
    }

    /// Parses one PEM public key (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`).
    pub fn from_public_pem(pem: &[u8]) -> Result<KeySet, KeyError> {
        let text = std::str::from_utf8(pem).map_err(|_| KeyError::NotText)?;
        let (family, key) = if text.contains("BEGIN RSA PUBLIC KEY") {
            (
                KeyFamily::Rsa,
                DecodingKey::from_rsa_pem(pem).map_err(KeyError::BadRsaKey)?,
            )
        } else {
            let blocks = pem::parse_many(pem).map_err(KeyError::BadPem)?;
            let spki = blocks
                .iter()
                .find(|b| b.tag() == "PUBLIC KEY")
                .ok_or(KeyError::NoPublicKey)?;
            let der = spki.contents();
            let (family, load) = spki_family(der).ok_or(KeyError::UnsupportedKeyType)?;
            let key = load(pem).map_err(KeyError::BadKey)?;
            (family, key)
        };
        let mut out = KeySet::default();
        out.push(KeyEntry {
            kid: None,
            family,
            key,
            fingerprint: fingerprint(&[pem]),
        });
        Ok(out)
    }

    /// The key set of one HMAC secret.
    pub fn from_secret(secret: &[u8]) -> KeySet {
        let mut out = KeySet::default();
        out.push(KeyEntry {
            kid: None,
            family: KeyFamily::Hmac,
            key: DecodingKey::from_secret(secret),
            fingerprint: fingerprint(&[secret]),
        });
        out
    }

    /// The key for a token: by `kid` when it has one; keys configured without a
    /// `kid` (a PEM or an HMAC secret) fit any token whose `alg` their family
    /// accepts, whatever `kid` the token names.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&KeyEntry> {
        let by_kid = kid
            .and_then(|k| self.by_kid.get(k))
            .map(|&i| &self.entries[i])
            .filter(|e| e.family.accepts(alg));
        by_kid.or_else(|| {
            self.entries
                .iter()
                .find(|e| (kid.is_none() || e.kid.is_none()) && e.family.accepts(alg))
        })
    }

    /// Whether a key with this fingerprint is still in the set (cached verifications need it).
    pub fn contains_fingerprint(&self, fp: u64) -> bool {
        self.entries.iter().any(|e| e.fingerprint == fp)
    }

    /// The families of the keys held.
    pub fn families(&self) -> impl Iterator<Item = KeyFamily> + '_ {
        self.entries.iter().map(|e| e.family)
    }
}

/// How a PEM public key of some family is loaded.
type PemLoader = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

/// Reads the algorithm OID of an SPKI structure: the key's family and its loader.
fn spki_family(der: &[u8]) -> Option<(KeyFamily, PemLoader)> {
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    if has(RSA) {
        Some((KeyFamily::Rsa, DecodingKey::from_rsa_pem))
    } else if has(P256) {
        Some((KeyFamily::EcP256, DecodingKey::from_ec_pem))
    } else if has(P384) {
        Some((KeyFamily::EcP384, DecodingKey::from_ec_pem))
    } else if has(ED25519) {
        Some((KeyFamily::Ed25519, DecodingKey::from_ed_pem))
    } else {
        None
    }
}
