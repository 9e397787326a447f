//! `writ token`: mint a signed token for testing (SPEC: settled questions).

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};

use crate::mint::{SigningKey, act_chain, read_private_key, sign, thumbprint};

use writ_engine::authenticate::token::parse_alg;
use writ_engine::clock::Clock;
use writ_engine::config::duration;

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

fn fail(msg: impl std::fmt::Display) -> u8 {
    eprintln!("writ token: {msg}");
    2
}

pub fn run(args: Args) -> u8 {
    let key = match (&args.key, &args.hmac_secret_env) {
        (Some(p), _) => match std::fs::read(p) {
            Err(e) => return fail(format!("cannot read {}: {e}", p.display())),
            Ok(b) => match read_private_key(&b) {
                Ok(k) => k,
                Err(e) => return fail(e),
            },
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
            out!("{t}");
            0
        }
        Err(e) => fail(e),
    }
}
