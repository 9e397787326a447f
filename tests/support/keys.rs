//! Signing keys: the per-test [`Keys`] and the JWKS file writ trusts, a bare P-256 [`EcKey`]
//! (PKCS#8 PEM, RFC 7638 thumbprint) for the CLI suites, PEM and base64url encoding.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::token::{TokenBuilder, raw_jws};
use super::util::{temp_dir, write};

/// The issuer every default config trusts and every default token carries.
pub const ISSUER: &str = "https://issuer.test/";
/// The audience every default config accepts and every default token carries.
pub const AUDIENCE: &str = "orders-api";
/// The `kid` of the trusted key in the JWKS.
pub const KID: &str = "key-1";
/// The `kid` of the rogue key (never in the JWKS).
pub const ROGUE_KID: &str = "rogue-1";
/// Leeway configured for the default issuer.
pub const LEEWAY_SECS: i64 = 5;

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs(),
    )
    .expect("time fits i64")
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("not base64url: {s}: {e}"))
}

/// PEM text for `der` under `label` (`PRIVATE KEY`, `PUBLIC KEY`, ...), 64 columns.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// RFC 7638 thumbprint of a P-256 public key given as base64url `x` and `y`: the SHA-256 of
/// the required members in lexicographic order, no whitespace.
pub fn ec_thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    b64url(d.as_ref())
}

// ==========================================================================================
// === EcKey ===
// ==========================================================================================

/// A freshly generated P-256 key pair.
pub struct EcKey {
    pub pkcs8: Vec<u8>,
    pub x: String,
    pub y: String,
}

impl EcKey {
    pub fn generate() -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("generate P-256 key");
        let pkcs8 = doc.as_ref().to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .expect("parse generated key");
        let point = pair.public_key().as_ref();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        assert_eq!(point[0], 0x04, "uncompressed point marker");
        EcKey {
            x: b64url(&point[1..33]),
            y: b64url(&point[33..65]),
            pkcs8,
        }
    }

    /// The key pair, for signing.
    pub fn pair(&self) -> EcdsaKeyPair {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.pkcs8)
            .expect("parse generated key")
    }

    /// The PKCS#8 PEM text (`-----BEGIN PRIVATE KEY-----`).
    pub fn pkcs8_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    /// RFC 7638 thumbprint, computed here.
    pub fn thumbprint(&self) -> String {
        ec_thumbprint(&self.x, &self.y)
    }

    /// The public key as a JWK with the given `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": kid,
            "alg": "ES256",
            "use": "sig",
        })
    }

    /// A JWKS text holding only this key under `kid`.
    pub fn jwks(&self, kid: &str) -> String {
        serde_json::to_string_pretty(&json!({ "keys": [self.jwk(kid)] })).expect("json")
    }

    /// Writes the private key PEM to `dir/name`.
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        write(dir, name, &self.pkcs8_pem())
    }
}

// ==========================================================================================
// === Keys ===
// ==========================================================================================

/// Per-test signing keys and the JWKS file writ is configured with.
pub struct Keys {
    dir: TempDir,
    jwks_path: PathBuf,
    pub(super) trusted: EcKey,
    pair: EcdsaKeyPair,
    pub(super) rogue: EcKey,
    rogue_pair: EcdsaKeyPair,
    pub(super) p384_pkcs8: Vec<u8>,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new()
    }
}

impl Keys {
    /// Generates the trusted key (`kid` [`KID`]), a rogue key and a P-384 key, and writes
    /// `jwks.json` holding only the trusted key.
    pub fn new() -> Self {
        let dir = temp_dir("writ-keys-");
        let trusted = EcKey::generate();
        let rogue = EcKey::generate();
        let p384_pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
                .expect("generate key")
                .as_ref()
                .to_vec();
        let jwks_path = dir.path().join("jwks.json");
        let keys = Keys {
            dir,
            jwks_path,
            pair: trusted.pair(),
            trusted,
            rogue_pair: rogue.pair(),
            rogue,
            p384_pkcs8,
        };
        keys.write_jwks(&[keys.jwk()]);
        keys
    }

    /// Path of the JWKS file (what `{{JWKS}}` expands to).
    pub fn jwks_path(&self) -> &Path {
        &self.jwks_path
    }

    /// The trusted public key as a JWK.
    pub fn jwk(&self) -> Value {
        self.trusted.jwk(KID)
    }

    /// The rogue public key as a JWK (under `kid`).
    pub fn rogue_jwk(&self, kid: &str) -> Value {
        self.rogue.jwk(kid)
    }

    /// Raw uncompressed public point of the trusted key (for HS256 key-confusion attacks).
    pub fn public_point(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// Overwrites the JWKS file with the given keys.
    pub fn write_jwks(&self, keys: &[Value]) {
        let text = serde_json::to_string_pretty(&json!({ "keys": keys })).expect("jwks json");
        fs::write(&self.jwks_path, text).expect("write jwks");
    }

    /// A token builder with the default claims (valid for the default config).
    pub fn token(&self) -> TokenBuilder<'_> {
        TokenBuilder::new(self)
    }

    /// Shorthand: a valid token with `sub` alice and the given space-delimited scope.
    pub fn token_with_scope(&self, scope: &str) -> String {
        self.token().scope(scope).sign()
    }

    /// ES256 (raw r||s) signature of `message` with the trusted key.
    pub fn sign_message(&self, message: &[u8]) -> Vec<u8> {
        es256(&self.pair, message)
    }

    /// Signs `header.payload` as given (header JSON is not interpreted) with the trusted key.
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        raw_jws(header, claims, |m| es256(&self.pair, m))
    }

    /// Signs `header.payload` as given with the rogue key.
    pub fn rogue_sign_raw(&self, header: &Value, claims: &Value) -> String {
        raw_jws(header, claims, |m| es256(&self.rogue_pair, m))
    }
}

fn es256(pair: &EcdsaKeyPair, message: &[u8]) -> Vec<u8> {
    pair.sign(&SystemRandom::new(), message)
        .expect("sign")
        .as_ref()
        .to_vec()
}
