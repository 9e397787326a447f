//! The Shared Signals receiver (SPEC "Revocation", SSF 1.0 with CAEP and RISC events):
//! SETs signed by a test transmitter key, pushed to `POST /ssf/events` (RFC 8935 answers) or
//! polled from a transmitter that records acknowledgements (RFC 8936); each event becomes a
//! revocation entry in the configured store (the file; Redis across two replicas), so the
//! token it names is refused on its next use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::{
    Config, Env, ISSUER, Keys, RawResponse, Redis, eventually, eventually_within, free_port,
    metric_value, now, try_request, unique,
};

const TRANSMITTER: &str = "https://idp.test/";
const RECEIVER: &str = "https://writ.test/";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";

const ACTIONS: &str = r#"
  - name: read
    methods: [GET]
    path: /items/{id}
    require: { scopes: [items:read] }
"#;

/// The transmitter's own key pair (not the token issuer's).
struct Transmitter(Keys);

impl Transmitter {
    fn sign(&self, claims: &Value) -> String {
        self.0.sign_raw(
            &json!({"alg": "ES256", "kid": support::KID, "typ": "secevent+jwt"}),
            claims,
        )
    }

    fn event(&self, uri: &str, sub: &str) -> (String, String) {
        let jti = unique("set");
        let set = self.sign(&json!({
            "iss": TRANSMITTER, "aud": RECEIVER, "iat": now(), "jti": jti,
            "events": {uri: {"subject": {"format": "iss_sub", "iss": ISSUER, "sub": sub},
                             "event_timestamp": now()}}
        }));
        (jti, set)
    }
}

fn signals(t: &Transmitter, extra: &str) -> String {
    format!(
        "\n  - issuer: \"{TRANSMITTER}\"\n    audience: \"{RECEIVER}\"\n    jwks_file: \"{}\"{extra}",
        t.0.jwks_path().display()
    )
}

fn revoked_file() -> (tempfile::TempDir, PathBuf) {
    let dir = support::tempdir();
    let p = dir.path().join("revoked.yaml");
    std::fs::write(&p, "revoked: []\n").unwrap();
    (dir, p)
}

fn file_env(t: &Transmitter, file: &Path, extra: &str) -> Env {
    Env::with_config(
        &Config::new(ACTIONS)
            .set("revocation", &format!("{{ file: \"{}\" }}", file.display()))
            .set("signals", &signals(t, extra)),
    )
}

fn push(env: &Env, set: &str, ctype: &str) -> RawResponse {
    try_request(
        env.writ.admin_addr(),
        "POST",
        "/ssf/events",
        &[("content-type", ctype)],
        set.as_bytes(),
    )
    .unwrap()
}

fn status(env: &Env, token: &str) -> u16 {
    env.get("/items/1", Some(token)).status
}

fn token(env: &Env, sub: &str) -> String {
    env.keys.token().sub(sub).scope("items:read").sign()
}

fn events(env: &Env, event: &str, result: &str) -> f64 {
    metric_value(
        &env.writ.metrics(),
        "writ_security_events_total",
        &[
            ("issuer", TRANSMITTER),
            ("event", event),
            ("result", result),
        ],
    )
    .unwrap_or(0.0)
}

#[test]
fn a_pushed_session_revoked_event_ends_the_sessions_tokens() {
    let t = Transmitter(Keys::new());
    let (_d, file) = revoked_file();
    let env = file_env(&t, &file, "");
    let alice = token(&env, "alice");
    let bob = token(&env, "bob");
    assert_eq!(status(&env, &alice), 200);

    let (_, set) = t.event(&format!("{CAEP}session-revoked"), "alice");
    let r = push(&env, &set, "application/secevent+jwt");
    assert_eq!(r.status, 202, "{}", r.describe());
    assert!(
        eventually(|| (status(&env, &alice) == 401).then_some(())).is_some(),
        "alice's token still works\n{}",
        env.writ.stderr()
    );
    env.get("/items/1", Some(&alice))
        .assert_invalid_token("token_revoked");
    assert_eq!(status(&env, &bob), 200);
    assert_eq!(events(&env, "session-revoked", "applied"), 1.0);
    assert!(
        env.writ.stderr().contains("Security event applied"),
        "{}",
        env.writ.stderr()
    );
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(
        stored.contains(r#""sub":"alice""#) && stored.contains("issued_before"),
        "{stored}"
    );

    // A token issued after the event works: only what was issued before is revoked.
    std::thread::sleep(Duration::from_millis(1100));
    let fresh = token(&env, "alice");
    assert_eq!(status(&env, &fresh), 200);

    // The same SET again is acknowledged and ignored.
    let again = push(&env, &set, "application/secevent+jwt");
    assert_eq!(again.status, 202);
    assert_eq!(events(&env, "session-revoked", "duplicate"), 1.0);
}

#[test]
fn risc_account_disabled_holds_until_account_enabled() {
    let t = Transmitter(Keys::new());
    let (_d, file) = revoked_file();
    let env = file_env(&t, &file, "");
    let (_, disabled) = t.event(&format!("{RISC}account-disabled"), "bob");
    assert_eq!(
        push(&env, &disabled, "application/secevent+jwt").status,
        202
    );
    assert!(eventually(|| (status(&env, &token(&env, "bob")) == 401).then_some(())).is_some());
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        status(&env, &token(&env, "bob")),
        401,
        "new tokens too, until enabled"
    );
    let (_, enabled) = t.event(&format!("{RISC}account-enabled"), "bob");
    assert_eq!(push(&env, &enabled, "application/secevent+jwt").status, 202);
    assert!(eventually(|| (status(&env, &token(&env, "bob")) == 200).then_some(())).is_some());
}

#[test]
fn refused_sets_get_rfc_8935_errors_and_change_nothing() {
    let t = Transmitter(Keys::new());
    let (_d, file) = revoked_file();
    let env = file_env(&t, &file, "");
    let err = |r: RawResponse| -> String {
        assert_eq!(r.status, 400, "{}", r.describe());
        r.json()["err"].as_str().unwrap().to_string()
    };
    let base = |iss: &str, aud: &str| {
        json!({"iss": iss, "aud": aud, "iat": now(), "jti": unique("set"),
               "events": {format!("{CAEP}session-revoked"): {"subject": {"format": "opaque", "id": "alice"}}}})
    };
    let good = t.sign(&base(TRANSMITTER, RECEIVER));
    assert_eq!(err(push(&env, &good, "application/jwt")), "invalid_request");
    assert_eq!(
        err(push(&env, "not a set", "application/secevent+jwt")),
        "invalid_request"
    );
    assert_eq!(
        err(push(
            &env,
            &t.sign(&base("https://evil/", RECEIVER)),
            "application/secevent+jwt"
        )),
        "invalid_issuer"
    );
    assert_eq!(
        err(push(
            &env,
            &t.sign(&base(TRANSMITTER, "https://other/")),
            "application/secevent+jwt"
        )),
        "invalid_audience"
    );
    let forged = t.0.rogue_sign_raw(
        &json!({"alg": "ES256", "kid": support::KID, "typ": "secevent+jwt"}),
        &base(TRANSMITTER, RECEIVER),
    );
    assert_eq!(
        err(push(&env, &forged, "application/secevent+jwt")),
        "authentication_failed"
    );
    let jwt_typ = t.0.sign_raw(
        &json!({"alg": "ES256", "kid": support::KID, "typ": "JWT"}),
        &base(TRANSMITTER, RECEIVER),
    );
    assert_eq!(
        err(push(&env, &jwt_typ, "application/secevent+jwt")),
        "invalid_request"
    );
    let big = "a".repeat(70 * 1024);
    assert_eq!(
        err(push(&env, &big, "application/secevent+jwt")),
        "invalid_request"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "revoked: []\n");
    assert_eq!(status(&env, &token(&env, "alice")), 200);
    let rejected = metric_value(
        &env.writ.metrics(),
        "writ_security_events_total",
        &[("result", "rejected")],
    );
    assert!(rejected.is_some(), "{}", env.writ.metrics());
}

/// A transmitter's RFC 8936 poll endpoint: hands out `sets` once, records every request body.
struct PollServer {
    addr: std::net::SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl PollServer {
    fn start(sets: Value) -> PollServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            let mut pending = Some(sets);
            for conn in l.incoming().take(200) {
                let Ok(mut c) = conn else { continue };
                let (_, body) = support::read_request(&c);
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.lock().unwrap().push(v);
                let answer =
                    json!({"sets": pending.take().unwrap_or(json!({})), "moreAvailable": false});
                let text = answer.to_string();
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        PollServer { addr, bodies }
    }
}

#[test]
fn polled_events_are_applied_and_acknowledged() {
    let t = Transmitter(Keys::new());
    let (_d, file) = revoked_file();
    let (jti, set) = t.event(&format!("{CAEP}credential-change"), "alice");
    let server = PollServer::start(json!({jti.clone(): set}));
    let env = Env::with_config(
        &Config::new(ACTIONS)
            .set("revocation", &format!("{{ file: \"{}\" }}", file.display()))
            .set(
                "signals",
                &signals(
                    &t,
                    &format!(
                        "\n    poll: {{ url: \"http://{}/poll\", every: 200ms }}",
                        server.addr
                    ),
                ),
            ),
    );
    let alice = env
        .keys
        .token()
        .sub("alice")
        .scope("items:read")
        .iat_ago(5)
        .sign();
    assert!(
        eventually(|| (status(&env, &alice) == 401).then_some(())).is_some(),
        "the polled event was not applied\n{}",
        env.writ.stderr()
    );
    // The next poll acknowledges it.
    let acked = eventually(|| {
        let b = server.bodies.lock().unwrap();
        b.iter().any(|v| v["ack"] == json!([jti])).then_some(())
    });
    assert!(acked.is_some(), "{:?}", server.bodies.lock().unwrap());
    assert_eq!(events(&env, "credential-change", "applied"), 1.0);
}

#[test]
fn an_event_received_by_one_replica_revokes_across_the_fleet() {
    let t = Transmitter(Keys::new());
    let redis = Redis::start_on(free_port());
    let cfg = Config::new(ACTIONS)
        .set("revocation", &format!("{{ redis: \"{}\" }}", redis.url()))
        .set("signals", &signals(&t, ""));
    let a = Env::with_config(&cfg);
    let b = Env::with_config(&cfg);
    let (ta, tb) = (token(&a, "alice"), token(&b, "alice"));
    assert_eq!((status(&a, &ta), status(&b, &tb)), (200, 200));
    let (_, set) = t.event(&format!("{RISC}credential-compromise"), "alice");
    assert_eq!(push(&a, &set, "application/secevent+jwt").status, 202);
    let both = eventually_within(Duration::from_secs(1), || {
        (status(&a, &ta) == 401 && status(&b, &tb) == 401).then_some(())
    });
    assert!(
        both.is_some(),
        "replica b did not follow the event received by a"
    );
    // The same SET replayed to the other replica is recognized fleet-wide (Redis), not
    // applied again: a captured `account-enabled` cannot lift a later revocation.
    assert_eq!(push(&b, &set, "application/secevent+jwt").status, 202);
    assert_eq!(events(&b, "credential-compromise", "duplicate"), 1.0);
    assert_eq!(events(&b, "credential-compromise", "applied"), 0.0);
    drop(redis);
}
