//! MCP tool calls through writ (SPEC "Request bodies: ... agent tool calls (MCP), approved
//! transactions"), against a REAL MCP server: the official Python SDK (`mcp` on PyPI, installed
//! by `.ci/setup`) serving tools over Streamable HTTP, with SSE and with JSON responses. The
//! server records every tool it executes, so each test asserts what the client got AND what the
//! server ran.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Config, Keys, RawResponse, Writ, free_port, now};

const ACTIONS: &str = r#"
  - name: mcp-session
    methods: [POST]
    path: /mcp
    mcp: { method: "initialize" }
    require: { scopes: [mcp:read] }
  - name: mcp-notifications
    methods: [POST]
    path: /mcp
    mcp: { method: "notifications/*" }
    require: { scopes: [mcp:read] }
  - name: mcp-list
    methods: [POST]
    path: /mcp
    mcp: { method: "tools/list" }
    require: { scopes: [mcp:read] }
  - name: mcp-read-tools
    methods: [POST]
    path: /mcp
    mcp: { tool: "get_*" }
    require: { scopes: [mcp:read] }
  - name: mcp-balance
    methods: [POST]
    path: /mcp
    mcp: { tool: get_balance }
    require:
      scopes: [mcp:read]
      claims: { tenant: "{args.tenant}" }
  - name: mcp-refund
    methods: [POST]
    path: /mcp
    mcp: { tool: create_refund }
    execution: true
    require:
      scopes: [refunds:write]
      claims: { tenant: "{args.tenant}" }
      authorization_details:
        type: refund
        match: { order_id: "{args.order_id}", currency: "{args.currency}" }
        limits: { max_amount: "{args.amount}" }
    delegation: { mode: require, actors: ["agent:*"], max_age: 5m }
  - name: mcp-reset-password
    methods: [POST]
    path: /mcp
    mcp: { tool: reset_password }
    execution: true
    require: { scopes: [users:admin], auth_max_age: 5m }
"#;

/// The Python SDK server, killed on drop.
struct McpServer {
    child: Child,
    port: u16,
    calls: PathBuf,
    _dir: tempfile::TempDir,
}

impl McpServer {
    fn start(mode: &str) -> McpServer {
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls.jsonl");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backends/mcp_server.py");
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&calls)
            .arg(mode)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for the MCP server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!("the MCP server did not start (pip install mcp; .ci/setup does)");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        McpServer {
            child,
            port,
            calls,
            _dir: dir,
        }
    }

    /// Every tool the server executed, as (tool, args).
    fn calls(&self) -> Vec<(String, Value)> {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["tool"].as_str().unwrap().to_string(), v["args"].clone())
            })
            .collect()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// writ in front of a real MCP server. Field order = drop order.
struct Mcp {
    writ: Writ,
    server: McpServer,
    keys: Keys,
}

fn config() -> Config {
    Config::new(ACTIONS)
        .set("defaults", "\n  delegation: { mode: allow }")
        .set(
        "protected_resource",
        "\n  resource: https://mcp.example.com/mcp\n  authorization_servers: [\"https://login.example.com/\"]",
    )
}

impl Mcp {
    fn start(mode: &str) -> Mcp {
        let keys = Keys::new();
        let server = McpServer::start(mode);
        let url = format!("http://127.0.0.1:{}", server.port);
        let writ = Writ::start(&config().render(), &url, &keys);
        Mcp { writ, server, keys }
    }

    fn post(&self, token: Option<&str>, body: &[u8], extra: &[(&str, &str)]) -> RawResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        headers.extend_from_slice(extra);
        self.writ.send("POST", "/mcp", &headers, body)
    }

    fn call(&self, token: &str, tool: &str, args: Value) -> RawResponse {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                          "params": {"name": tool, "arguments": args}});
        self.post(Some(token), &serde_json::to_vec(&body).unwrap(), &[])
    }

    fn reader(&self) -> String {
        self.keys.token().scope("mcp:read").sign()
    }

    /// A delegated refund token with one approval.
    fn refund_token(&self, approval: Value) -> String {
        self.keys
            .token()
            .scope("refunds:write")
            .claim("tenant", json!("acme"))
            .act("agent:shopper")
            .claim("authorization_details", json!([approval]))
            .sign()
    }
}

/// The JSON-RPC message of a response: the body (JSON) or the first `data:` event (SSE).
fn message(resp: &RawResponse) -> Value {
    let text = resp.body_text();
    if resp
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        let data = text
            .lines()
            .find_map(|l| l.strip_prefix("data:"))
            .unwrap_or_else(|| panic!("no SSE data in {}", resp.describe()));
        return serde_json::from_str(data.trim()).unwrap();
    }
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {}", resp.describe()))
}

/// Asserts a JSON-RPC error carrying writ's problem object; returns the problem.
#[track_caller]
fn assert_rpc_denial(resp: &RawResponse, status: u16, reason: &str, id: Value) -> Value {
    assert_eq!(resp.status, status, "{}", resp.describe());
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{}",
        resp.describe()
    );
    let m = resp.json();
    assert_eq!(m["jsonrpc"], "2.0", "{m}");
    assert_eq!(m["id"], id, "{m}");
    assert_eq!(m["error"]["code"], -32001, "{m}");
    let problem = &m["error"]["data"];
    assert_eq!(problem["reason"], reason, "{m}");
    assert_eq!(problem["status"], status, "{m}");
    assert_eq!(m["error"]["message"], problem["title"], "{m}");
    assert_eq!(
        problem["request_id"].as_str(),
        resp.header("x-request-id"),
        "{m}"
    );
    problem.clone()
}

fn sorted_tools(calls: &[(String, Value)]) -> Vec<&str> {
    calls.iter().map(|(t, _)| t.as_str()).collect()
}

#[test]
fn allowed_tool_calls_reach_the_server_over_sse_and_json() {
    for mode in ["sse", "json"] {
        let mcp = Mcp::start(mode);
        let resp = mcp.call(&mcp.reader(), "get_order", json!({"order_id": "42"}));
        assert_eq!(resp.status, 200, "{mode}: {}", resp.describe());
        let m = message(&resp);
        assert_eq!(m["id"], 7, "{m}");
        assert_eq!(
            m["result"]["content"][0]["text"], "order 42: 2 items",
            "{m}"
        );
        assert_eq!(
            mcp.server.calls(),
            vec![("get_order".to_string(), json!({"order_id": "42"}))]
        );
        let line = mcp.writ.wait_log_lines(1).pop().unwrap();
        assert_eq!(line["action"], "mcp-read-tools", "{line}");
        assert_eq!(line["tool"], "get_order", "{line}");
        assert!(
            !line.to_string().contains("\"42\""),
            "argument values are never logged: {line}"
        );
    }
}

#[test]
fn denied_tool_calls_answer_in_json_rpc_and_the_server_runs_nothing() {
    let mcp = Mcp::start("sse");
    let reader = mcp.reader();
    // A reader calling an execution tool: scope.
    let resp = mcp.call(&reader, "reset_password", json!({"user": "bob"}));
    assert_rpc_denial(&resp, 403, "insufficient_scope", json!(7));
    assert!(
        resp.header("www-authenticate")
            .is_some_and(|w| w.contains("insufficient_scope") && w.contains("users:admin")),
        "{}",
        resp.describe()
    );
    // A tool no action names.
    let resp = mcp.call(&reader, "deploy", json!({"service": "api"}));
    let problem = assert_rpc_denial(&resp, 403, "no_matching_action", json!(7));
    assert!(problem["action"].is_null());
    // Step-up: the right scope, an old authentication.
    let admin = mcp
        .keys
        .token()
        .scope("users:admin")
        .claim("auth_time", json!(now() - 3600))
        .sign();
    let resp = mcp.call(&admin, "reset_password", json!({"user": "bob"}));
    assert_rpc_denial(&resp, 401, "step_up_required", json!(7));
    // Claim bound to an argument.
    let resp = mcp.call(&reader, "get_balance", json!({"tenant": "globex"}));
    assert_rpc_denial(&resp, 403, "claim_mismatch", json!(7));
    assert!(mcp.server.calls().is_empty(), "{:?}", mcp.server.calls());
    // Fresh authentication, and a bound tenant: both run.
    let admin = mcp
        .keys
        .token()
        .scope("users:admin")
        .claim("auth_time", json!(now() - 10))
        .sign();
    assert_eq!(
        mcp.call(&admin, "reset_password", json!({"user": "bob"}))
            .status,
        200
    );
    let acme_reader = mcp
        .keys
        .token()
        .scope("mcp:read")
        .claim("tenant", json!("acme"))
        .sign();
    assert_eq!(
        mcp.call(&acme_reader, "get_balance", json!({"tenant": "acme"}))
            .status,
        200
    );
    assert_eq!(
        sorted_tools(&mcp.server.calls()),
        vec!["reset_password", "get_balance"]
    );
}

#[test]
fn a_refund_inside_its_approval_runs_and_one_outside_does_not() {
    let mcp = Mcp::start("json");
    let approval = json!({"type": "refund", "order_id": "42", "currency": ["EUR", "USD"],
                          "max_amount": 120});
    let token = mcp.refund_token(approval.clone());
    let args = json!({"order_id": "42", "amount": 80.5, "currency": "EUR", "tenant": "acme"});
    let resp = mcp.call(&token, "create_refund", args.clone());
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(
        mcp.server.calls(),
        vec![("create_refund".to_string(), args)]
    );
    for (what, args) in [
        (
            "over the limit",
            json!({"order_id": "42", "amount": 120.01, "currency": "EUR", "tenant": "acme"}),
        ),
        (
            "another order",
            json!({"order_id": "43", "amount": 1, "currency": "EUR", "tenant": "acme"}),
        ),
        (
            "a currency not approved",
            json!({"order_id": "42", "amount": 1, "currency": "GBP", "tenant": "acme"}),
        ),
        (
            "an amount that is not a number",
            json!({"order_id": "42", "amount": "1", "currency": "EUR", "tenant": "acme"}),
        ),
        (
            "no amount",
            json!({"order_id": "42", "currency": "EUR", "tenant": "acme"}),
        ),
    ] {
        let resp = mcp.call(&token, "create_refund", args);
        assert_eq!(resp.status, 403, "{what}: {}", resp.describe());
        assert_rpc_denial(&resp, 403, "authorization_details_mismatch", json!(7));
    }
    // Conditions must hold for ONE entry: order from one approval, amount from another.
    let split = mcp
        .keys
        .token()
        .scope("refunds:write")
        .claim("tenant", json!("acme"))
        .act("agent:shopper")
        .claim(
            "authorization_details",
            json!([
                {"type": "refund", "order_id": "42", "currency": "EUR", "max_amount": 1},
                {"type": "refund", "order_id": "99", "currency": "EUR", "max_amount": 1000},
                {"type": "payment", "order_id": "42", "currency": "EUR", "max_amount": 1000}
            ]),
        )
        .sign();
    let args = json!({"order_id": "42", "amount": 50, "currency": "EUR", "tenant": "acme"});
    assert_rpc_denial(
        &mcp.call(&split, "create_refund", args),
        403,
        "authorization_details_mismatch",
        json!(7),
    );
    // Not delegated: the delegation rule speaks first.
    let direct = mcp
        .keys
        .token()
        .scope("refunds:write")
        .claim("tenant", json!("acme"))
        .claim("authorization_details", json!([approval]))
        .sign();
    let args = json!({"order_id": "42", "amount": 1, "currency": "EUR", "tenant": "acme"});
    assert_rpc_denial(
        &mcp.call(&direct, "create_refund", args),
        403,
        "delegation_required",
        json!(7),
    );
    assert_eq!(mcp.server.calls().len(), 1, "{:?}", mcp.server.calls());
}

/// (what, body, extra headers, the id the error must carry).
type Refused = (
    &'static str,
    Vec<u8>,
    Vec<(&'static str, &'static str)>,
    Value,
);

#[test]
fn refused_json_rpc_shapes_and_header_mismatches_are_400() {
    let mcp = Mcp::start("sse");
    let token = mcp.reader();
    let call = |name: &str| {
        serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": "a-1", "method": "tools/call",
                                   "params": {"name": name, "arguments": {"order_id": "42"}}}),
        )
        .unwrap()
    };
    let cases: Vec<Refused> = vec![
        (
            "batch",
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_order","arguments":{"order_id":"42"}}}]"#.to_vec(),
            vec![],
            Value::Null,
        ),
        (
            "non-string method",
            br#"{"jsonrpc":"2.0","id":3,"method":["tools/call"],"params":{"name":"get_order"}}"#.to_vec(),
            vec![],
            json!(3),
        ),
        (
            "tools/call without a string name",
            br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":7}}"#.to_vec(),
            vec![],
            json!(4),
        ),
        (
            "duplicate name: one parser would run get_order, another reset_password",
            br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get_order","name":"reset_password","arguments":{"user":"bob"}}}"#.to_vec(),
            vec![],
            Value::Null,
        ),
        (
            "a JSON-RPC response instead of a request",
            br#"{"jsonrpc":"2.0","id":6,"result":{}}"#.to_vec(),
            vec![],
            json!(6),
        ),
        (
            "lone surrogate in the tool name",
            br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"get_\udc00"}}"#.to_vec(),
            vec![],
            Value::Null,
        ),
        ("Mcp-Method disagrees", call("get_order"), vec![("Mcp-Method", "tools/list")], json!("a-1")),
        ("Mcp-Name disagrees", call("reset_password"), vec![("Mcp-Method", "tools/call"), ("Mcp-Name", "get_order")], json!("a-1")),
        ("Mcp-Param disagrees", call("get_order"), vec![("Mcp-Param-Order_Id", "43")], json!("a-1")),
        ("Mcp-Name base64 disagrees", call("get_order"), vec![("Mcp-Name", "=?base64?ZGVwbG95?=")], json!("a-1")),
    ];
    for (what, body, headers, id) in cases {
        let resp = mcp.post(Some(&token), &body, &headers);
        assert_eq!(resp.status, 400, "{what}: {}", resp.describe());
        assert_rpc_denial(&resp, 400, "bad_request", id);
    }
    let resp = mcp.writ.send(
        "POST",
        "/mcp",
        &[
            ("Content-Type", "text/plain"),
            ("Authorization", &format!("Bearer {token}")),
        ],
        &call("get_order"),
    );
    assert_rpc_denial(&resp, 400, "bad_request", Value::Null);
    assert!(mcp.server.calls().is_empty(), "{:?}", mcp.server.calls());
    // Headers that agree (plain and base64) pass.
    let resp = mcp.post(
        Some(&token),
        &call("get_order"),
        &[
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "=?base64?Z2V0X29yZGVy?="),
            ("Mcp-Param-Order_Id", "42"),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(sorted_tools(&mcp.server.calls()), vec!["get_order"]);
}

#[test]
fn a_401_links_the_protected_resource_metadata_writ_serves() {
    let mcp = Mcp::start("sse");
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_order","arguments":{"order_id":"42"}}}"#;
    let resp = mcp.post(None, body, &[]);
    assert_rpc_denial(&resp, 401, "no_token", json!(1));
    let url = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
    assert_eq!(
        resp.header("www-authenticate"),
        Some(format!(r#"Bearer realm="writ", resource_metadata="{url}""#).as_str())
    );
    let bad = mcp.post(Some("not.a.jwt"), body, &[]);
    assert!(
        bad.header("www-authenticate")
            .is_some_and(|w| w.contains("invalid_token") && w.contains(url)),
        "{}",
        bad.describe()
    );
    let doc = mcp
        .writ
        .get("/.well-known/oauth-protected-resource/mcp", None);
    assert_eq!(doc.status, 200, "{}", doc.describe());
    assert_eq!(
        doc.json(),
        json!({
            "resource": "https://mcp.example.com/mcp",
            "authorization_servers": ["https://login.example.com/"],
            "scopes_supported": ["mcp:read", "refunds:write", "users:admin"],
            "bearer_methods_supported": ["header"],
        })
    );
    assert!(mcp.server.calls().is_empty());
}

#[test]
fn the_mcp_handshake_passes_through_for_a_reader() {
    let mcp = Mcp::start("json");
    let token = mcp.reader();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "writ-test", "version": "1"}}});
    let resp = mcp.post(Some(&token), &serde_json::to_vec(&init).unwrap(), &[]);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(message(&resp)["result"]["serverInfo"].is_object());
    let note = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let resp = mcp.post(Some(&token), note, &[]);
    assert!(resp.status < 300, "{}", resp.describe());
    // Without the scope: a notification's denial has id null.
    let other = mcp.keys.token().scope("other").sign();
    assert_rpc_denial(
        &mcp.post(Some(&other), note, &[]),
        403,
        "insufficient_scope",
        Value::Null,
    );
    // A method no action names.
    let ping = br#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#;
    assert_rpc_denial(
        &mcp.post(Some(&token), ping, &[]),
        403,
        "no_matching_action",
        json!(9),
    );
}

fn listed(resp: &RawResponse) -> Vec<String> {
    let m = message(resp);
    let mut names: Vec<String> = m["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {m}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn tools_list_shows_only_what_the_caller_could_call_in_json_and_sse() {
    for mode in ["sse", "json"] {
        let mcp = Mcp::start(mode);
        let list = br#"{"jsonrpc":"2.0","id":"l1","method":"tools/list"}"#;
        let resp = mcp.post(Some(&mcp.reader()), list, &[]);
        assert_eq!(resp.status, 200, "{mode}: {}", resp.describe());
        let ct = resp.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with(if mode == "sse" {
                "text/event-stream"
            } else {
                "application/json"
            }),
            "{}",
            resp.describe()
        );
        // get_balance binds `tenant` to an argument: a token without a tenant can never call it.
        assert_eq!(listed(&resp), vec!["get_order"], "{mode}");
        // Someone who may refund (delegated, scoped) and may read, with a tenant: the
        // argument bindings are not checked without arguments, everything else is.
        let both = mcp
            .keys
            .token()
            .scope("mcp:read refunds:write")
            .act("agent:shopper")
            .claim("tenant", json!("acme"))
            .claim(
                "authorization_details",
                json!([{"type": "refund", "order_id": "42", "max_amount": 5}]),
            )
            .sign();
        let resp = mcp.post(Some(&both), list, &[]);
        assert_eq!(
            listed(&resp),
            vec!["create_refund", "get_balance", "get_order"],
            "{mode}"
        );
        // Without an approval of the type, no call could pass: create_refund is hidden.
        // A fresh admin sees reset_password; deploy has no action: never listed.
        let admin = mcp
            .keys
            .token()
            .scope("mcp:read users:admin")
            .claim("auth_time", json!(now()))
            .sign();
        let resp = mcp.post(Some(&admin), list, &[]);
        assert_eq!(listed(&resp), vec!["get_order", "reset_password"], "{mode}");
        assert!(mcp.server.calls().is_empty());
    }
}
