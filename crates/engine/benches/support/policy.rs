//! The benchmark policy shared by `classify` and `decide`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use writ_engine::policy::Policy;

pub const ISSUER: &str = "https://login.example.com/";
pub const AUDIENCE: &str = "orders-api";

/// Everything of a bench config but its actions (up to `actions:`): the demo
/// issuer, `jwks.json` beside the config, no decision log.
pub fn head_yaml() -> String {
    format!(
        "listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:3000
issuers:
  - issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    algorithms: [ES256]
    jwks_file: jwks.json
    leeway: 30s
    require_typ: at+jwt
decision_log: \"off\"
actions:
"
    )
}

/// Config with `n` actions: for each service `i`, `GET /svc{i}/items/{id}` and
/// `POST /svc{i}/items/{id}/run` (the latter binds the `tenant` claim to `{id}`).
pub fn policy_yaml(n: usize) -> String {
    let mut s = head_yaml();
    for i in 0..n / 2 {
        write!(
            s,
            "  - name: read-{i}
    methods: [GET]
    path: /svc{i}/items/{{id}}
    require:
      scopes: [items:read]
  - name: run-{i}
    methods: [POST]
    path: /svc{i}/items/{{id}}/run
    execution: true
    require:
      scopes: [items:run]
      claims:
        tenant: \"{{id}}\"
"
        )
        .unwrap();
    }
    s
}

/// Compiles the policy; the temp dir holds the JWKS and must outlive it.
pub fn build_policy(n: usize) -> (Policy, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/demo/jwks.json");
    std::fs::copy(&jwks, dir.path().join("jwks.json")).expect("copy demo JWKS");
    let policy = writ_engine::config::load_str(
        &policy_yaml(n),
        "bench.yaml",
        dir.path(),
        PathBuf::from("bench.yaml"),
    )
    .unwrap_or_else(|e| panic!("bench policy does not load: {e}"))
    .policy;
    assert_eq!(policy.actions.len(), n);
    (policy, dir)
}

/// The measurement settings every writ bench uses: short runs that still give
/// stable medians on a shared 2-core machine.
pub fn criterion_config() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(30)
}

/// An ES256 access token from the demo key (kid = RFC 7638 thumbprint), with
/// scopes `items:read items:run` and `tenant: acme`.
#[allow(dead_code)] // not every bench that includes this file signs a token
pub fn demo_token(now: f64) -> String {
    use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let pem =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/demo/demo-key.pem"))
            .expect("read demo key");
    let key = EncodingKey::from_ec_pem(&pem).expect("demo key parses");
    let kid = Jwk::from_encoding_key(&key, Algorithm::ES256)
        .and_then(|j| j.thumbprint(ThumbprintHash::SHA256))
        .expect("thumbprint");
    let now = now as u64;
    let claims = serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user:alice",
        "client_id": "bench",
        "scope": "items:read items:run",
        "tenant": "acme",
        "iat": now,
        "exp": now + 3600,
    });
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}
