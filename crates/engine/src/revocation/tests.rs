use serde_json::{Value, json};

use super::*;

const NOW: f64 = 1_800_000_000.0; // 2027-01-15T08:00:00Z

fn claims(v: Value) -> Claims {
    Claims::parse(v.as_object().unwrap().clone())
}

fn entry(v: Value) -> Compiled {
    serde_json::from_value::<Entry>(v)
        .unwrap()
        .compile()
        .unwrap()
}

fn set(entries: Vec<Value>) -> RevocationSet {
    RevocationSet::new(entries.into_iter().map(entry), NOW)
}

fn alice() -> Value {
    json!({"iss": "https://i/", "sub": "alice", "jti": "t-1", "iat": NOW - 600.0,
           "act": {"sub": "agent:ci-7", "act": {"sub": "svc:planner"}}})
}

#[test]
fn each_field_matches_what_it_names() {
    let c = claims(alice());
    for hit in [
        json!({"jti": "t-1"}),
        json!({"sub": "alice"}),
        json!({"actor": "agent:ci-7"}),
        json!({"actor": "svc:planner"}), // anywhere in the chain
        json!({"sub": "alice", "actor": "agent:ci-7"}),
        json!({"issuer": "https://i/"}),
        json!({"sub": "alice", "issuer": "https://i/"}),
        json!({"issued_before": "2027-01-15T08:00:00Z"}),
        json!({"sub": "alice", "issued_before": "2027-01-15T08:00:00Z"}),
    ] {
        assert!(set(vec![hit.clone()]).find(&c, NOW).is_some(), "{hit}");
    }
    for miss in [
        json!({"jti": "t-2"}),
        json!({"sub": "bob"}),
        json!({"actor": "agent:other"}),
        json!({"sub": "bob", "actor": "agent:ci-7"}), // the pair, not either
        json!({"sub": "alice", "issuer": "https://other/"}),
        json!({"sub": "alice", "issued_before": "2027-01-15T07:00:00Z"}), // issued after
        json!({"sub": "alice", "until": "2027-01-15T07:59:59Z"}),         // lapsed
    ] {
        assert!(set(vec![miss.clone()]).find(&c, NOW).is_none(), "{miss}");
    }
}

#[test]
fn an_entry_lapses_at_until_and_is_dropped_by_the_next_build() {
    let c = claims(alice());
    let s = set(vec![
        json!({"sub": "alice", "until": "2027-01-15T08:00:10Z"}),
    ]);
    assert!(s.find(&c, NOW).is_some());
    assert!(s.find(&c, NOW + 10.0).is_none());
    let later = RevocationSet::new(s.entries().cloned(), NOW + 10.0);
    assert!(later.is_empty());
}

#[test]
fn a_token_without_iat_cannot_prove_it_was_issued_after_the_cut_off() {
    let c = claims(json!({"iss": "https://i/", "sub": "alice"}));
    let s = set(vec![json!({"issued_before": "2027-01-15T08:00:00Z"})]);
    assert!(s.find(&c, NOW).is_some());
}

#[test]
fn entries_that_would_revoke_everything_or_do_not_parse_are_refused() {
    let bad = |v: Value| {
        serde_json::from_value::<Entry>(v)
            .unwrap()
            .compile()
            .unwrap_err()
    };
    assert_eq!(bad(json!({})), EntryError::MatchesEverything);
    assert_eq!(
        bad(json!({"until": "2027-01-15T08:00:00Z"})),
        EntryError::MatchesEverything
    );
    assert_eq!(bad(json!({"sub": ""})), EntryError::Empty("sub"));
    assert!(matches!(
        bad(json!({"sub": "a", "until": "tomorrow"})),
        EntryError::BadTime { field: "until", .. }
    ));
    assert!(serde_json::from_value::<Entry>(json!({"subject": "a"})).is_err());
}

#[test]
fn a_large_set_is_searched_by_index_not_by_scan() {
    // A million entries, none of them for alice: the lookup touches only the
    // buckets of her jti, sub and actors (and the empty broad list).
    let s = RevocationSet::new(
        (0..1_000_000).map(|i| {
            Entry {
                jti: None,
                sub: Some(format!("user-{i}")),
                actor: None,
                issuer: None,
                issued_before: None,
                until: None,
            }
            .compile()
            .unwrap()
        }),
        NOW,
    );
    assert_eq!(s.len(), 1_000_000);
    assert!(s.broad.is_empty());
    assert!(s.find(&claims(alice()), NOW).is_none());
    let c = claims(json!({"iss": "https://i/", "sub": "user-999999"}));
    assert_eq!(s.find(&c, NOW).unwrap().kind(), "sub");
}

#[test]
fn the_kind_names_the_fields_not_the_values() {
    let e: Entry = serde_json::from_value(
        json!({"sub": "alice", "actor": "agent:x", "issued_before": "2027-01-15T08:00:00Z"}),
    )
    .unwrap();
    assert_eq!(e.kind(), "sub+actor+issued_before");
}
