use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;

const NOW: f64 = 1_800_000_000.0;
const ISS: &str = "https://idp.example.com/";
const AUD: &str = "https://writ.example.com/";

fn demo(file: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/demo")
            .join(file),
    )
    .unwrap()
}

fn transmitters() -> Vec<Transmitter> {
    let keys = KeySet::from_jwks(&demo("jwks.json")).unwrap();
    vec![Transmitter {
        issuer: ISS.into(),
        audience: AUD.into(),
        keys: Arc::new(ArcSwap::from_pointee(keys)),
        jwks_url: None,
        poll: None,
    }]
}

fn kid() -> String {
    let v: Value = serde_json::from_slice(&demo("jwks.json")).unwrap();
    v["keys"][0]["kid"].as_str().unwrap().to_string()
}

fn sign_with(typ: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some(typ.into());
    h.kid = Some(kid());
    encode(
        &h,
        claims,
        &EncodingKey::from_ec_pem(&demo("demo-key.pem")).unwrap(),
    )
    .unwrap()
}

fn set(events: Value) -> Value {
    json!({"iss": ISS, "aud": AUD, "iat": NOW - 5.0, "jti": "set-1", "events": events})
}

fn caep(name: &str) -> String {
    format!("https://schemas.openid.net/secevent/caep/event-type/{name}")
}

fn risc(name: &str) -> String {
    format!("https://schemas.openid.net/secevent/risc/event-type/{name}")
}

fn iss_sub(sub: &str) -> Value {
    json!({"format": "iss_sub", "iss": "https://login.example.com/", "sub": sub})
}

#[test]
fn caep_session_revoked_revokes_tokens_issued_before_the_event() {
    let claims = set(
        json!({caep("session-revoked"): {"subject": iss_sub("alice"), "event_timestamp": NOW - 30.0}}),
    );
    let ev = verify(&transmitters(), &sign_with("secevent+jwt", &claims), NOW).unwrap();
    assert_eq!(ev.jti, "set-1");
    assert_eq!(ev.events.len(), 1);
    assert_eq!(ev.events[0].kind, EventKind::SessionRevoked);
    let Effect::Revoke(e) = &ev.events[0].effect else {
        panic!("{ev:?}")
    };
    assert_eq!(e.sub.as_deref(), Some("alice"));
    assert_eq!(e.issuer.as_deref(), Some("https://login.example.com/"));
    assert_eq!(e.issued_before.as_deref(), Some("2027-01-15T07:59:31Z"));
}

#[test]
fn every_listed_event_maps_and_others_are_ignored() {
    for (uri, kind) in [
        (caep("credential-change"), EventKind::CredentialChange),
        (caep("token-claims-change"), EventKind::TokenClaimsChange),
        (
            caep("assurance-level-change"),
            EventKind::AssuranceLevelChange,
        ),
        (
            risc("credential-compromise"),
            EventKind::CredentialCompromise,
        ),
    ] {
        // SSF 1.0 puts the subject in `sub_id`; the event timestamp defaults to `iat`.
        let mut c = set(json!({uri.clone(): {}}));
        c["sub_id"] = json!({"format": "opaque", "id": "u-7"});
        let ev = verify(&transmitters(), &sign_with("secevent+jwt", &c), NOW).unwrap();
        assert_eq!(ev.events[0].kind, kind, "{uri}");
        let Effect::Revoke(e) = &ev.events[0].effect else {
            panic!("{uri}")
        };
        assert_eq!((e.sub.as_deref(), e.issuer.as_deref()), (Some("u-7"), None));
        assert_eq!(e.issued_before.as_deref(), Some("2027-01-15T07:59:56Z"));
    }
    let disabled = set(json!({risc("account-disabled"): {"subject": iss_sub("bob")}}));
    let ev = verify(&transmitters(), &sign_with("secevent+jwt", &disabled), NOW).unwrap();
    let Effect::Revoke(d) = &ev.events[0].effect else {
        panic!()
    };
    assert_eq!(d.issued_before, None, "disabled until enabled: every token");
    let enabled = set(json!({risc("account-enabled"): {"subject": iss_sub("bob")}}));
    let ev = verify(&transmitters(), &sign_with("secevent+jwt", &enabled), NOW).unwrap();
    assert_eq!(ev.events[0].effect, Effect::Lift(d.clone()));
    let other = set(
        json!({"https://example.com/event/x": {"subject": iss_sub("bob")},
                           caep("session-revoked"): {"subject": {"format": "email", "email": "a@b"}}}),
    );
    let ev = verify(&transmitters(), &sign_with("secevent+jwt", &other), NOW).unwrap();
    assert!(
        ev.events
            .iter()
            .all(|e| matches!(e.effect, Effect::Ignore(_))),
        "{ev:?}"
    );
}

#[test]
fn refusals_carry_the_rfc_8935_codes() {
    let good = set(json!({caep("session-revoked"): {"subject": iss_sub("alice")}}));
    let t = transmitters();
    let code = |s: &str| verify(&t, s, NOW).unwrap_err().code();
    assert_eq!(code("not.a.set.at.all"), "invalid_request");
    assert_eq!(code(&sign_with("JWT", &good)), "invalid_request");
    let mut c = good.clone();
    c["iss"] = json!("https://other/");
    assert_eq!(code(&sign_with("secevent+jwt", &c)), "invalid_issuer");
    let mut c = good.clone();
    c["aud"] = json!(["https://someone-else/"]);
    assert_eq!(code(&sign_with("secevent+jwt", &c)), "invalid_audience");
    let mut c = good.clone();
    c["iat"] = json!(NOW - 2.0 * 86400.0);
    assert_eq!(code(&sign_with("secevent+jwt", &c)), "invalid_request");
    let mut c = good.clone();
    c["iat"] = json!(NOW + 3600.0);
    assert_eq!(code(&sign_with("secevent+jwt", &c)), "invalid_request");
    let signed = sign_with("secevent+jwt", &good);
    let (head, sig) = signed.rsplit_once('.').unwrap();
    let flipped = format!(
        "{head}.{}{}",
        if sig.starts_with('A') { "B" } else { "A" },
        &sig[1..]
    );
    assert_eq!(code(&flipped), "authentication_failed");
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("secevent+jwt".into());
    h.kid = Some("unknown".into());
    let unknown = encode(
        &h,
        &good,
        &EncodingKey::from_ec_pem(&demo("demo-key.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(code(&unknown), "invalid_key");
    let mut c = good;
    c.as_object_mut().unwrap().remove("jti");
    assert_eq!(code(&sign_with("secevent+jwt", &c)), "invalid_request");
}

#[test]
fn an_event_time_after_its_set_is_clamped_to_the_set() {
    let far = set(
        json!({caep("session-revoked"): {"subject": iss_sub("alice"), "event_timestamp": 1.0e30}}),
    );
    let ev = verify(&transmitters(), &sign_with("secevent+jwt", &far), NOW).unwrap();
    let Effect::Revoke(e) = &ev.events[0].effect else {
        panic!("{ev:?}")
    };
    assert_eq!(e.issued_before.as_deref(), Some("2027-01-15T07:59:56Z"));
}
