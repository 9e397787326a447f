//! MCP and JSON-body config rules (SPEC "Request bodies"): mistakes are load-time errors at
//! FILE:LINE:COL, and `writ explain` decides tool calls and JSON bodies like the proxy does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;

use support::{
    diagnostics, explain_json, json_action, json_reason, pos, repo_path, tempdir, writ_run,
};

const HEAD: &str = r#"listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:3000
issuers:
  - issuer: https://login.example.com/
    audiences: [mcp-api]
    algorithms: [ES256]
    jwks_file: JWKS
    require_typ: at+jwt
actions:
"#;

fn check(actions: &str) -> (String, std::path::PathBuf, support::Out) {
    let dir = tempdir();
    let jwks = repo_path("config/demo/jwks.json").display().to_string();
    let text = format!("{}{actions}", HEAD.replace("JWKS", &jwks));
    let p = dir.path().join("writ.yaml");
    fs::write(&p, &text).unwrap();
    let out = writ_run([
        std::ffi::OsStr::new("check"),
        "--config".as_ref(),
        p.as_os_str(),
    ]);
    std::mem::forget(dir);
    (text, p, out)
}

#[test]
fn equal_mcp_shapes_on_one_endpoint_are_a_conflict_at_file_line_col() {
    let (text, p, out) = check(
        r#"  - name: a
    methods: [POST]
    path: /mcp
    mcp: { tool: "get_*" }
    require: { scopes: [x] }
  - name: b
    methods: [POST]
    path: /mcp
    mcp: { tool: "get_*" }
    require: { scopes: [y] }
  - name: c
    methods: [POST]
    path: /mcp
    mcp: { tool: get_order }
    require: { scopes: [y] }
"#,
    );
    out.expect_code(1);
    let d = diagnostics(&out.stderr, &p);
    assert_eq!(d.len(), 1, "{}", out.dump());
    let (line, col) = pos(&text, "{ tool: \"get_*\" }\n    require: { scopes: [y] }");
    assert_eq!((d[0].line, d[0].col), (line, col), "{}", out.dump());
    let (al, ac) = pos(&text, "a\n");
    assert!(
        d[0].message.contains(&format!(
            "action `b` conflicts with action `a` at {}:{al}:{ac}",
            p.display()
        )),
        "{}",
        out.dump()
    );
}

#[test]
fn mcp_and_body_mistakes_are_load_time_errors() {
    for (actions, needle, words) in [
        (
            "  - name: a\n    methods: [POST]\n    path: /mcp\n    mcp: { tool: x, method: y }\n    require: { scopes: [x] }\n",
            "{ tool: x",
            "exactly one of",
        ),
        (
            "  - name: a\n    methods: [GET]\n    path: /mcp\n    mcp: { tool: x }\n    require: { scopes: [x] }\n",
            "[GET]",
            "methods: [POST]",
        ),
        (
            "  - name: a\n    methods: [POST]\n    path: /mcp\n    mcp: { method: tools/call }\n    require: { scopes: [x] }\n",
            "tools/call",
            "mcp.tool",
        ),
        (
            "  - name: a\n    methods: [POST]\n    path: /x\n    require: { scopes: [x], claims: { t: \"{body.t}\" } }\n",
            "\"{body.t}\"",
            "body: json",
        ),
        (
            "  - name: a\n    methods: [POST]\n    path: /mcp\n    mcp: { method: initialize }\n    require: { scopes: [x], claims: { t: \"{args.t}\" } }\n",
            "\"{args.t}\"",
            "mcp.tool",
        ),
        (
            "  - name: a\n    methods: [POST]\n    path: /x\n    body: json\n    require: { scopes: [x], claims: { t: \"{body..t}\" } }\n",
            "\"{body..t}\"",
            "dotted",
        ),
        (
            "  - name: a\n    methods: [POST]\n    path: /x\n    body: json\n    require:\n      scopes: [x]\n      authorization_details: { type: refund, limits: { max: \"{nope}\" } }\n",
            "\"{nope}\"",
            "does not have",
        ),
    ] {
        let (text, p, out) = check(actions);
        out.expect_code(1);
        let d = diagnostics(&out.stderr, &p);
        let (line, col) = pos(&text, needle);
        assert!(
            d.iter()
                .any(|d| d.line == line && d.col == col && d.message.contains(words)),
            "{needle}: {}",
            out.dump()
        );
    }
}

#[test]
fn explain_decides_a_tool_call_and_a_body_file() {
    let config = repo_path("config/examples/mcp-server.yaml");
    let dir = tempdir();
    let claims = dir.path().join("claims.json");
    fs::write(
        &claims,
        r#"{"iss":"https://login.example.com/","aud":"mcp-api","sub":"carol","scope":"mcp:read orders:write",
            "tenant":"acme","iat":1700000000,"exp":4102444800}"#,
    )
    .unwrap();
    let c = claims.display().to_string();
    let (out, v) = explain_json(
        &config,
        "POST",
        "/mcp",
        &[
            "--claims",
            &c,
            "--mcp-tool",
            "get_order",
            "--mcp-args",
            r#"{"order_id":"42"}"#,
        ],
    );
    out.expect_code(0);
    assert_eq!(json_action(&v).as_deref(), Some("mcp-read-tools"), "{v}");
    assert_eq!(v["tool"], "get_order", "{v}");
    let (out, v) = explain_json(
        &config,
        "POST",
        "/mcp",
        &["--claims", &c, "--mcp-tool", "reset_password"],
    );
    out.expect_code(1);
    assert_eq!(json_reason(&v), "insufficient_scope", "{v}");
    let body = dir.path().join("body.json");
    fs::write(&body, r#"{"tenant":"globex"}"#).unwrap();
    let b = body.display().to_string();
    let (out, v) = explain_json(
        &config,
        "POST",
        "/v1/orders/42/notes",
        &["--claims", &c, "--body", &b],
    );
    out.expect_code(1);
    assert_eq!(json_reason(&v), "claim_mismatch", "{v}");
    fs::write(&body, r#"{"tenant":"acme","tenant":"globex"}"#).unwrap();
    let (out, v) = explain_json(
        &config,
        "POST",
        "/v1/orders/42/notes",
        &["--claims", &c, "--body", &b],
    );
    out.expect_code(1);
    assert_eq!(json_reason(&v), "bad_request", "{v}");
}

/// `authorization_details` with dotted names on both sides: entry fields reached through nested
/// objects, request values through `{body.a.b}` and `{param}`; array membership for `match`.
#[test]
fn authorization_details_reach_nested_fields_with_dotted_names() {
    let dir = tempdir();
    let jwks = repo_path("config/demo/jwks.json").display().to_string();
    let text = format!(
        "{}{}",
        HEAD.replace("JWKS", &jwks),
        r#"  - name: pay
    methods: [POST]
    path: /shops/{shop}/payments
    body: json
    require:
      scopes: [pay]
      authorization_details:
        type: payment_initiation
        match: { "creditor.shop": "{shop}", "instructedAmount.currency": "{body.amount.currency}" }
        limits: { "instructedAmount.amount": "{body.amount.value}" }
"#
    );
    let config = dir.path().join("writ.yaml");
    fs::write(&config, text).unwrap();
    let claims = dir.path().join("claims.json");
    fs::write(
        &claims,
        r#"{"iss":"https://login.example.com/","aud":"mcp-api","sub":"carol","scope":"pay","exp":4102444800,
            "authorization_details":[
              {"type":"payment_initiation","creditor":{"shop":"s1"},
               "instructedAmount":{"currency":["EUR","CHF"],"amount":"ignored-not-a-number"}},
              {"type":"payment_initiation","creditor":{"shop":"s1"},
               "instructedAmount":{"currency":["EUR","CHF"],"amount":100.5}}]}"#,
    )
    .unwrap();
    let c = claims.display().to_string();
    let body = dir.path().join("body.json");
    let b = body.display().to_string();
    for (path, json, code, reason) in [
        (
            "/shops/s1/payments",
            r#"{"amount":{"currency":"CHF","value":100.5}}"#,
            0,
            "allowed",
        ),
        (
            "/shops/s1/payments",
            r#"{"amount":{"currency":"CHF","value":100.51}}"#,
            1,
            "authorization_details_mismatch",
        ),
        (
            "/shops/s2/payments",
            r#"{"amount":{"currency":"EUR","value":1}}"#,
            1,
            "authorization_details_mismatch",
        ),
        (
            "/shops/s1/payments",
            r#"{"amount":{"currency":"USD","value":1}}"#,
            1,
            "authorization_details_mismatch",
        ),
        (
            "/shops/s1/payments",
            r#"{"amount":{"currency":"EUR"}}"#,
            1,
            "authorization_details_mismatch",
        ),
    ] {
        fs::write(&body, json).unwrap();
        let (out, v) = explain_json(&config, "POST", path, &["--claims", &c, "--body", &b]);
        out.expect_code(code);
        assert_eq!(json_reason(&v), reason, "{path} {json}: {v}");
    }
}
