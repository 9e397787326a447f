//! `writ token` mints RS256 and EdDSA tokens (SPEC: token), verified end to end by
//! `writ explain --token` against a `public_key_pem` issuer holding the public key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::path::Path;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use support::{jwt_header, pem, tempdir, writ_run};

fn header_alg(token: &str) -> String {
    let v = jwt_header(token);
    assert_eq!(v["typ"], "at+jwt");
    assert!(v["kid"].as_str().is_some_and(|k| k.len() == 43), "{v}");
    v["alg"].as_str().unwrap().to_string()
}

/// Mints with `private`, then checks the token is allowed by a config trusting
/// `public` for `alg`, and refused by one trusting another key.
fn round_trip(dir: &Path, private_pem: &str, public_pem: &str, other_public_pem: &str, alg: &str) {
    std::fs::write(dir.join("key.pem"), private_pem).unwrap();
    std::fs::write(dir.join("pub.pem"), public_pem).unwrap();
    std::fs::write(dir.join("other.pem"), other_public_pem).unwrap();
    let out = writ_run([
        "token",
        "--key",
        dir.join("key.pem").to_str().unwrap(),
        "--iss",
        "https://issuer.test/",
        "--aud",
        "api",
        "--sub",
        "alice",
        "--scope",
        "run",
    ]);
    assert!(out.code == Some(0), "{}", out.stderr);
    let token = out.stdout.trim().to_string();
    assert_eq!(header_alg(&token), alg);
    for (key, expect_ok) in [("pub.pem", true), ("other.pem", false)] {
        let cfg = dir.join(format!("{key}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:0\nupstream: {{ url: http://127.0.0.1:9 }}\nissuers:\n  - issuer: https://issuer.test/\n    audiences: [api]\n    algorithms: [{alg}]\n    public_key_pem: {key}\nactions:\n  - {{ name: run, methods: [POST], path: /run, require: {{ scopes: [run] }} }}\n"
            ),
        )
        .unwrap();
        let out = writ_run([
            "explain",
            "--config",
            cfg.to_str().unwrap(),
            "--method",
            "POST",
            "--path",
            "/run",
            "--token",
            &token,
            "--json",
        ]);
        let v: serde_json::Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{}", out.stderr));
        if expect_ok {
            assert_eq!(out.code, Some(0), "{v}");
            assert_eq!(v["reason"], "allowed");
        } else {
            assert_eq!(out.code, Some(1), "{v}");
            assert_eq!(v["reason"], "bad_signature");
        }
    }
}

#[test]
fn rs256_token_from_a_pkcs8_rsa_key_verifies_end_to_end() {
    let dir = tempdir();
    let k = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let other = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let private: Pkcs8V1Der = k.as_der().unwrap();
    let public: PublicKeyX509Der = k.public_key().as_der().unwrap();
    let other_public: PublicKeyX509Der = other.public_key().as_der().unwrap();
    round_trip(
        dir.path(),
        &pem("PRIVATE KEY", private.as_ref()),
        &pem("PUBLIC KEY", public.as_ref()),
        &pem("PUBLIC KEY", other_public.as_ref()),
        "RS256",
    );
}

#[test]
fn eddsa_token_from_a_pkcs8_ed25519_key_verifies_end_to_end() {
    let dir = tempdir();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    let other = Ed25519KeyPair::generate().unwrap();
    let public: PublicKeyX509Der = pair.public_key().as_der().unwrap();
    let other_public: PublicKeyX509Der = other.public_key().as_der().unwrap();
    round_trip(
        dir.path(),
        &pem("PRIVATE KEY", doc.as_ref()),
        &pem("PUBLIC KEY", public.as_ref()),
        &pem("PUBLIC KEY", other_public.as_ref()),
        "EdDSA",
    );
}
