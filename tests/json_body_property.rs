//! Property (SPEC "Request bodies"): for generated JSON bodies, what writ bound is what a second,
//! independent parser reads from the bytes the backend received. Bodies vary in key order,
//! nesting, escapes (`\uXXXX`, surrogate pairs, `\/`), whitespace and duplicate keys; the
//! decision (allow / claim_mismatch / bad_request) must follow from `serde_json::Value` on the
//! forwarded bytes, and a body a second parser could read differently (duplicates) never
//! reaches the backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use serde_json::{Value, json};
use support::Env;

const ACTIONS: &str = r#"
  - name: refund
    methods: [POST]
    path: /refunds
    body: json
    require:
      scopes: [refunds:write]
      claims: { tenant: "{body.order.tenant}" }
"#;

/// The tenant the token carries.
const TENANT: &str = "aé\"/\\b😀";

/// A string as a JSON string literal, each character written plainly or escaped at random.
fn encode(s: &str, escapes: &[bool]) -> String {
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        let escape = escapes
            .get(i % escapes.len().max(1))
            .copied()
            .unwrap_or(false);
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if escape => out.push_str("\\/"),
            c if escape || (c as u32) < 0x20 => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zé😀\"\\\\ ]{0,6}".prop_map(Value::String),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One generated body: the bytes sent, and whether it has a duplicate key.
#[derive(Debug, Clone)]
struct Body {
    bytes: Vec<u8>,
    duplicate: bool,
}

fn body() -> impl Strategy<Value = Body> {
    (
        prop_oneof![Just(TENANT.to_string()), "[aé\"/\\\\b😀]{0,8}"],
        prop::collection::vec(any::<bool>(), 1..8),
        tree(),
        any::<bool>(),
        0usize..3,
        "[ \n\t]{0,2}",
    )
        .prop_map(|(tenant, escapes, extra, tenant_first, dup, ws)| {
            let t = encode(&tenant, &escapes);
            let other = encode("globex", &escapes);
            // dup: 0 none, 1 the bound key twice, 2 the parent object twice.
            let inner = match dup {
                1 => format!("{{\"tenant\":{t},{ws}\"tenant\":{other}}}"),
                _ => format!("{{{ws}\"tenant\"{ws}:{ws}{t}{ws}}}"),
            };
            let extra = serde_json::to_string(&extra).unwrap();
            let mut members = vec![format!("\"order\":{inner}"), format!("\"extra\":{extra}")];
            if dup == 2 {
                members.push(format!("\"order\":{{\"tenant\":{other}}}"));
            }
            if !tenant_first {
                members.reverse();
            }
            Body {
                bytes: format!("{ws}{{{}}}{ws}", members.join(&format!(",{ws}"))).into_bytes(),
                duplicate: dup != 0,
            }
        })
}

#[test]
fn what_writ_binds_is_what_a_second_parser_reads_from_the_forwarded_bytes() {
    let env = Env::start(ACTIONS);
    let token = env
        .keys
        .token()
        .scope("refunds:write")
        .claim("tenant", json!(TENANT))
        .sign();
    let auth = format!("Bearer {token}");
    let mut runner = TestRunner::new(PropConfig {
        cases: 96,
        failure_persistence: None,
        ..PropConfig::default()
    });
    let counts = std::cell::Cell::new((0u32, 0u32, 0u32));
    let bump = |i: usize| {
        let mut c = counts.get();
        match i {
            0 => c.0 += 1,
            1 => c.1 += 1,
            _ => c.2 += 1,
        }
        counts.set(c);
    };
    runner
        .run(&body(), |b| {
            env.backend.clear();
            let resp = env.send(
                "POST",
                "/refunds",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                &b.bytes,
            );
            if b.duplicate {
                prop_assert_eq!(resp.status, 400, "{}", resp.describe());
                prop_assert_eq!(env.backend.count(), 0);
                bump(2);
                return Ok(());
            }
            match resp.status {
                200 => {
                    let seen = env.backend.single();
                    prop_assert_eq!(&seen.body, &b.bytes);
                    let second: Value = serde_json::from_slice(&seen.body).unwrap();
                    prop_assert_eq!(second["order"]["tenant"].as_str(), Some(TENANT));
                    bump(0);
                }
                403 => {
                    let problem = resp.json();
                    prop_assert_eq!(problem["reason"].as_str(), Some("claim_mismatch"));
                    prop_assert_eq!(env.backend.count(), 0);
                    let second: Value = serde_json::from_slice(&b.bytes).unwrap();
                    prop_assert_ne!(second["order"]["tenant"].as_str(), Some(TENANT));
                    bump(1);
                }
                _ => prop_assert!(false, "{}", resp.describe()),
            }
            Ok(())
        })
        .unwrap();
    let (allowed, mismatched, refused) = counts.get();
    assert!(
        allowed > 0 && mismatched > 0 && refused > 0,
        "{allowed} allowed, {mismatched} mismatched, {refused} refused: every outcome must be exercised"
    );
}
