//! The checks behind every fuzz target, shared by the fuzz binaries (through
//! the `writ_fuzz` library) and by `tests/fuzz_regressions.rs` (which compiles
//! this file with `#[path]`), so that a corpus or crash input replays through
//! exactly the same code under `cargo test`.
//!
//! Each `check_*` takes raw bytes. For no input may it panic, hang or allocate
//! without bound, except through an `assert!` here, which names a property the
//! engine promises (SPEC) and the input broke.
//!
//! Only crates writ itself depends on are used here: the root package compiles
//! this file without any extra dependency.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use writ_engine::authenticate::Credentials;
use writ_engine::cases::{CaseFile, decide_case, parse_cases};
use writ_engine::claims::{Claims, MAX_ACT_DEPTH, parse_json_object};
use writ_engine::decision::{Reason, Verdict};
use writ_engine::normalize::{
    MAX_TARGET_BYTES, NormalizedTarget, normalize_target, query_has_method_override,
    strip_method_override,
};
use writ_engine::policy::Policy;
use writ_engine::vocab::{Choice, DelegationMode, Mode, PathPolicy, SegmentPolicy};
use writ_engine::{Context, Decision, Request, decide};

/// Every target, by the name of its binary and of its corpus folder.
pub const TARGETS: [&str; 6] = [
    "normalize",
    "config",
    "token",
    "act_chain",
    "cases",
    "jsonrpc",
];

/// Runs the check of `target` (one of [`TARGETS`]) on one input.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "normalize" => check_normalize(data),
        "config" => check_config(data),
        "token" => check_token(data),
        "act_chain" => check_act_chain(data),
        "cases" => check_cases(data),
        "jsonrpc" => check_jsonrpc(data),
        _ => panic!("unknown fuzz target `{target}`"),
    }
}

/// The context of every decision here: the fixed clock, no cache.
fn ctx(credentials: &Credentials, trace: bool) -> Context<'_> {
    Context {
        now: NOW,
        credentials,
        cache: None,
        trace,
        introspection: None,
    }
}

/// The clock of every check: a fuzz run must be deterministic. The seed tokens
/// in `fuzz/corpus/token` were minted with `iat` 1700000000, `exp` 2000000000.
pub const NOW: f64 = 1_700_000_100.0;

/// The repository root: this file is compiled both by the root package and by
/// `fuzz/`, whose manifest directories differ.
pub fn repo_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if dir.join("config/demo/jwks.json").is_file() {
        dir.to_path_buf()
    } else {
        dir.parent().unwrap_or(dir).to_path_buf()
    }
}

// ---------------------------------------------------------------- normalize

/// Every combination of the path rules of `requests:`.
pub fn path_policies() -> Vec<PathPolicy> {
    let mut out = Vec::new();
    for encoded_slash in [Choice::Reject, Choice::Keep] {
        for semicolon in [Choice::Reject, Choice::Keep] {
            for strict_trailing_slash in [false, true] {
                out.push(PathPolicy {
                    segment: SegmentPolicy {
                        encoded_slash,
                        semicolon,
                    },
                    strict_trailing_slash,
                });
            }
        }
    }
    out
}

/// `normalize_target` under every path policy: what it accepts has the SPEC
/// shape and is a fixed point; `_method` detection agrees with stripping.
pub fn check_normalize(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    for policy in path_policies() {
        let Ok(n) = normalize_target(&raw, &policy) else {
            continue;
        };
        assert_normal_form(&n, &policy, &raw);
        // What is forwarded must fit the limit the target was admitted under,
        // or the backend (and writ itself) would refuse it on a second look.
        assert!(
            n.path_and_query().len() <= MAX_TARGET_BYTES,
            "normalized target is {} bytes, over MAX_TARGET_BYTES ({MAX_TARGET_BYTES}), \
             from a {}-byte target",
            n.path_and_query().len(),
            raw.len()
        );
        let again = normalize_target(&n.path_and_query(), &policy);
        assert_eq!(
            again.as_ref().ok(),
            Some(&n),
            "not idempotent under {policy:?}: {raw:?} -> {:?} -> {again:?}",
            n.path_and_query()
        );
        if let Some(q) = &n.query {
            check_query(q);
        }
    }
    check_query(&raw);
}

fn assert_normal_form(n: &NormalizedTarget, policy: &PathPolicy, raw: &str) {
    let p = &n.path;
    let why = |what: &str| format!("{what}: {raw:?} -> {p:?} under {policy:?}");
    assert!(
        p.starts_with('/'),
        "{}",
        why("path does not start with `/`")
    );
    assert!(!p.contains("//"), "{}", why("path has `//`"));
    assert!(
        p.bytes().all(|b| b.is_ascii_graphic()),
        "{}",
        why("path has a space, control or non-ASCII byte")
    );
    for bad in ['?', '#', '\\'] {
        assert!(!p.contains(bad), "{}", why("path has `?`, `#` or `\\`"));
    }
    assert!(
        p.split('/').all(|s| s != "." && s != ".."),
        "{}",
        why("path has a dot segment")
    );
    if policy.segment.encoded_slash == Choice::Reject {
        assert!(!p.contains("%2F"), "{}", why("path keeps %2F"));
    }
    if policy.segment.semicolon == Choice::Reject {
        assert!(
            !p.contains(';') && !p.contains("%3B"),
            "{}",
            why("path keeps a semicolon")
        );
    }
    if !policy.strict_trailing_slash {
        assert!(
            p == "/" || !p.ends_with('/'),
            "{}",
            why("trailing slash kept")
        );
    }
    assert!(
        p.len() <= 3 * raw.len() + 1,
        "{}",
        why("path grew beyond 3x")
    );
    if let Some(q) = &n.query {
        assert!(
            raw.ends_with(q.as_str()),
            "query not kept verbatim: {raw:?} -> {q:?}"
        );
    }
}

/// `_method` detection and stripping agree (SPEC: override inputs).
fn check_query(q: &str) {
    let has = query_has_method_override(q);
    let stripped = strip_method_override(q);
    if let Some(s) = &stripped {
        assert!(
            !query_has_method_override(s),
            "`_method` survives stripping: {q:?} -> {s:?}"
        );
    }
    if !has {
        assert_eq!(
            stripped.as_deref(),
            Some(q),
            "query without `_method` changed by stripping"
        );
    }
}

// ------------------------------------------------------------------- config

/// `config::load_str` on arbitrary text returns, and what it returns is usable.
pub fn check_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // The loader reads the files a config names (keys, CA, TLS). An operator
    // who names /dev/zero gets what they asked for; the fuzzer should not.
    if ["dev/", "proc/", "sys/"].iter().any(|d| text.contains(d)) {
        return;
    }
    let base = repo_root().join("config/demo");
    match writ_engine::config::load_str(&text, "fuzz.yaml", &base, base.join("fuzz.yaml")) {
        Ok(c) => probe_policy(&c.policy),
        Err(errs) => {
            assert!(!errs.0.is_empty(), "config refused without any error");
            let shown = errs.to_string();
            assert!(shown.starts_with("fuzz.yaml:"), "error: {shown:?}");
        }
    }
}

/// A few requests through a fuzzed policy: every action's own path, with claims
/// from its first issuer, and some that match nothing.
fn probe_policy(policy: &Policy) {
    let claims = match policy.issuers.first() {
        Some(i) => json!({
            "iss": i.issuer,
            "aud": i.audiences.first(),
            "sub": "fuzz",
            "scope": "jobs:read jobs:execute admin",
            "iat": NOW - 60.0,
            "exp": NOW + 600.0,
        }),
        None => json!({}),
    };
    let Value::Object(claims) = claims else {
        return;
    };
    let creds = Credentials::Claims(claims);
    let mut targets = vec!["/".to_string(), "/a/../b;c/%2F?_method=PUT".to_string()];
    for a in policy.actions.iter().take(16) {
        let mut t = String::new();
        for s in &a.template.segments {
            use writ_engine::policy::template::Segment;
            t.push('/');
            match s {
                Segment::Literal(l) => t.push_str(l),
                Segment::Param(_) => t.push('p'),
                Segment::Rest(_) => t.push_str("r/s"),
            }
        }
        if t.is_empty() {
            t.push('/');
        }
        targets.push(t);
    }
    let headers = HeaderMap::new();
    for target in &targets {
        for method in ["GET", "POST", "DELETE", "PURGE"] {
            let req = Request {
                method,
                target,
                host: Some("Example.COM."),
                headers: &headers,
                form_body: None,
                json_body: None,
                origin: writ_engine::request::Origin::Proxy,
            };
            let d = decide(policy, &req, &ctx(&creds, true));
            assert_sound(policy, &d);
        }
    }
}

// -------------------------------------------------------------- fixed policy

/// The policy of the token and act_chain targets: the demo's, with its JWKS
/// named by an absolute path, plus step-up and audit-mode actions.
pub fn fixed_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let root = repo_root();
        let jwks = root.join("config/demo/jwks.json");
        let yaml = FIXED_POLICY.replace("JWKS_FILE", &format!("{:?}", jwks.display().to_string()));
        writ_engine::config::load_str(&yaml, "fixed.yaml", &root, root.join("fixed.yaml"))
            .unwrap_or_else(|e| panic!("fixed fuzz policy does not load:\n{e}"))
            .policy
    })
}

const FIXED_POLICY: &str = r#"
listen: 127.0.0.1:8080
upstream: { url: http://127.0.0.1:3000 }
issuers:
  - issuer: https://login.example.com/
    audiences: [orders-api]
    algorithms: [ES256]
    jwks_file: JWKS_FILE
    leeway: 30s
    require_typ: at+jwt
decision_log: "off"
requests: { method_override: reject, url_override: reject }
defaults:
  unmatched: deny
  mode: enforce
  delegation: { mode: forbid }
actions:
  - name: run-job
    methods: [POST]
    path: /tenants/{tenant}/jobs/{job}/run
    execution: true
    require:
      scopes: [jobs:execute]
      claims: { tenant: "{tenant}" }
    delegation:
      mode: allow
      actors: ["agent:ci-*", "svc:copilot"]
      max_depth: 1
      max_age: 5m
  - name: read-job
    methods: [GET]
    path: /tenants/{tenant}/jobs/{job}
    require:
      scopes: [jobs:read]
      claims: { tenant: "{tenant}" }
    delegation: { mode: allow }
  - name: delete-tenant
    methods: [DELETE]
    path: /tenants/{tenant}
    require:
      scopes: [admin]
      acr: [mfa]
      auth_max_age: 10m
    delegation: { mode: require, max_depth: 3 }
  - name: files
    methods: ["*"]
    path: /files/{*rest}
    mode: audit
  - name: health
    methods: [GET]
    path: /healthz
    public: true
"#;

/// Requests that reach each action of [`fixed_policy`] (and one that reaches none).
const FIXED_REQUESTS: [(&str, &str); 6] = [
    ("POST", "/tenants/t1/jobs/j1/run"),
    ("GET", "/tenants/t1/jobs/j1?x=1"),
    ("DELETE", "/tenants/t1"),
    ("PURGE", "/files/a/b"),
    ("GET", "/healthz"),
    ("GET", "/nothing"),
];

fn decide_fixed(headers: &HeaderMap, creds: &Credentials) {
    let policy = fixed_policy();
    for (method, target) in FIXED_REQUESTS {
        let req = Request {
            method,
            target,
            host: Some("orders.example.com"),
            headers,
            form_body: None,
            json_body: None,
            origin: writ_engine::request::Origin::Proxy,
        };
        let d = decide(policy, &req, &ctx(creds, false));
        assert_sound(policy, &d);
    }
}

/// What must hold whenever the engine lets a request through as `allowed`
/// (or audit-passes it): an independent restatement of the SPEC check order.
pub fn assert_sound(policy: &Policy, d: &Decision) {
    let reason = match &d.verdict {
        Verdict::Allow { reason, .. } => *reason,
        Verdict::Deny(x) => {
            assert_ne!(x.reason, Reason::Allowed, "a denial with reason `allowed`");
            return;
        }
        Verdict::AuditDeny { .. } => {
            let mode = d
                .action
                .and_then(|i| policy.action(i).mode)
                .unwrap_or(policy.defaults.mode);
            assert_eq!(mode, Mode::Audit, "audit pass in enforce mode");
            return;
        }
    };
    let Some(i) = d.action else {
        assert!(policy.defaults.unmatched_allow, "allowed without an action");
        return;
    };
    let action = policy.action(i);
    if reason == Reason::Public || action.public {
        assert!(action.public && reason == Reason::Public, "public mismatch");
        return;
    }
    let v = d.token.as_ref().expect("allowed without a verified token");
    let c = &v.claims;
    let issuer = &policy.issuers[v.issuer];
    assert_eq!(
        c.iss.as_deref(),
        Some(issuer.issuer.as_str()),
        "wrong issuer allowed"
    );
    assert!(
        c.aud
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| issuer.audiences.contains(x))),
        "wrong audience allowed"
    );
    let times = c
        .times
        .as_ref()
        .expect("allowed with malformed time claims");
    let leeway = issuer.leeway.as_secs_f64();
    let exp = times.exp.expect("allowed without `exp`");
    assert!(NOW < exp + leeway, "expired token allowed");
    if let Some(nbf) = times.nbf {
        assert!(NOW + leeway >= nbf, "token allowed before `nbf`");
    }
    assert!(!c.has_cnf, "sender-constrained token allowed");
    let chain = c.act.as_ref().expect("allowed with a malformed `act`");
    assert!(
        chain.len() <= MAX_ACT_DEPTH,
        "act chain deeper than the limit"
    );
    let rule = action
        .delegation
        .as_ref()
        .unwrap_or(&policy.defaults.delegation);
    match rule.mode {
        DelegationMode::Forbid => assert!(chain.is_empty(), "delegated token allowed"),
        DelegationMode::Require => assert!(!chain.is_empty(), "direct token allowed"),
        DelegationMode::Allow => {}
    }
    if let Some(max) = rule.max_depth {
        assert!(chain.len() <= max, "act chain deeper than max_depth");
    }
    let have = c.scopes.as_deref().unwrap_or(&[]);
    for s in &action.require.scopes {
        assert!(have.contains(s), "allowed without scope `{s}`");
    }
    for (name, _) in &action.require.claims {
        assert!(c.raw.contains_key(name), "allowed without claim `{name}`");
    }
}

// -------------------------------------------------------------------- token

/// `auth::token::verify` on an arbitrary token, then the whole engine with it
/// as a bearer token.
pub fn check_token(data: &[u8]) {
    let policy = fixed_policy();
    let token = String::from_utf8_lossy(data);
    if let Ok(v) = writ_engine::authenticate::token::verify(policy, &token) {
        let issuer = &policy.issuers[v.issuer];
        assert_eq!(v.claims.iss.as_deref(), Some(issuer.issuer.as_str()));
        assert!(v.key_fingerprint.is_some(), "verified without a key");
    }
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(data);
    let Ok(value) = HeaderValue::from_bytes(&value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value);
    decide_fixed(&headers, &Credentials::Header);
}

// ---------------------------------------------------------------- act_chain

/// `parse_json_object` then `Claims::parse` on arbitrary bytes, then the whole
/// engine with the object taken as verified claims (as `writ test` does).
pub fn check_act_chain(data: &[u8]) {
    let Ok(map) = parse_json_object(data) else {
        return;
    };
    let again = serde_json::to_vec(&map).expect("a parsed object serializes");
    assert!(
        parse_json_object(&again).is_ok(),
        "a parsed object does not parse again"
    );
    let claims = Claims::parse(map.clone());
    match &claims.act {
        Ok(chain) => {
            assert!(chain.len() <= MAX_ACT_DEPTH, "act chain over the limit");
            assert_eq!(claims.is_delegated(), !chain.is_empty());
            // The chain is the `act` objects, outermost (current actor) first.
            let mut cur = map.get("act");
            for actor in chain {
                let o = cur
                    .and_then(Value::as_object)
                    .expect("actor without object");
                assert_eq!(
                    o.get("sub").and_then(Value::as_str),
                    Some(actor.sub.as_str())
                );
                cur = o.get("act");
            }
            assert!(cur.is_none(), "act chain cut short");
        }
        Err(_) => {
            assert!(map.contains_key("act"), "act error without `act`");
            assert!(!claims.is_delegated());
        }
    }
    decide_fixed(&HeaderMap::new(), &Credentials::Claims(map));
}

// -------------------------------------------------------------------- cases

// The case format and evaluation are the engine's (`writ_engine::cases`), the
// same code `writ test` runs.

/// The policies the seed case files are written for: the shipped examples and
/// the `writ test` fixture.
pub fn example_policies() -> &'static [Policy] {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let root = repo_root();
        let mut out = Vec::new();
        for name in [
            "config/examples/agent-delegation.yaml",
            "config/examples/job-runner-sidecar.yaml",
            "config/examples/legacy-admin-gateway.yaml",
            "tests/fixtures/policy/spec-jobs.yaml",
        ] {
            let p = root.join(name);
            let policy = writ_engine::config::load(&p)
                .unwrap_or_else(|e| panic!("{} does not load:\n{e}", p.display()))
                .policy;
            out.push(policy);
        }
        out
    })
}

/// A case file as `writ test` loads it (YAML into the case types, errors shown
/// the way `load_cases` shows them), then every case against every example.
pub fn check_cases(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(file): Result<CaseFile, _> = parse_cases(&text, "fuzz.cases.yaml") else {
        return;
    };
    for case in &file.cases {
        let _ = (case.name.get(), case.name.line());
        for policy in example_policies() {
            if let Ok(d) = decide_case(policy, case, NOW) {
                assert_sound(policy, &d);
            }
        }
    }
}

// ------------------------------------------------------------------ jsonrpc

/// The MCP example's policy (`config/examples/mcp-server.yaml`).
pub fn mcp_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let p = repo_root().join("config/examples/mcp-server.yaml");
        writ_engine::config::load(&p)
            .unwrap_or_else(|e| panic!("{} does not load:\n{e}", p.display()))
            .policy
    })
}

/// A JSON-RPC body on the MCP endpoint, decided with claims that pass every
/// check but the body's: the classifier must never panic, and whatever it
/// allows must be one strict JSON-RPC request whose method (and tool) a
/// second parser reads the same, classified to the action that names it. A
/// first line starting with `Mcp-` is sent as mirrored headers (`Name: value`,
/// `;`-separated) and must agree with the body when allowed.
pub fn check_jsonrpc(data: &[u8]) {
    let _ = jsonrpc_allowed(data);
}

/// [`check_jsonrpc`], saying whether the body was allowed.
pub fn jsonrpc_allowed(data: &[u8]) -> bool {
    let policy = mcp_policy();
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut body = data;
    if data.starts_with(b"Mcp-") {
        let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
        for pair in data[..end].split(|&b| b == b';') {
            let text = String::from_utf8_lossy(pair);
            if let Some((k, v)) = text.split_once(':')
                && let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.trim().as_bytes()),
                    HeaderValue::from_str(v.trim()),
                )
            {
                headers.append(k, v);
            }
        }
        body = data.get(end + 1..).unwrap_or_default();
    }
    let claims = json!({
        "iss": "https://login.example.com/", "aud": "mcp-api", "sub": "carol",
        "scope": "mcp:read refunds:write users:admin orders:write", "tenant": "acme",
        "iat": NOW - 10.0, "auth_time": NOW - 10.0, "exp": NOW + 600.0,
        "act": {"sub": "agent:fuzz"},
        "authorization_details": [{"type": "refund", "order_id": "42",
                                   "currency": "EUR", "max_amount": 100}],
    });
    let Value::Object(claims) = claims else {
        return false;
    };
    let creds = Credentials::Claims(claims);
    let req = Request {
        method: "POST",
        target: "/mcp",
        host: None,
        headers: &headers,
        form_body: None,
        json_body: Some(body),
        origin: writ_engine::request::Origin::Proxy,
    };
    let d = decide(policy, &req, &ctx(&creds, false));
    assert_sound(policy, &d);
    if !matches!(d.verdict, Verdict::Allow { .. }) {
        return false;
    }
    // Allowed: a second parser must read one request with the same method/tool.
    let v: Value = serde_json::from_slice(body).expect("allowed body is JSON");
    let method = v["method"]
        .as_str()
        .expect("allowed body has a string method");
    let call = d.mcp.as_ref().expect("an MCP endpoint");
    assert_eq!(call.method.as_deref(), Some(method));
    let action = policy.action(d.action.expect("allowed with an action"));
    let m = action.mcp.as_ref().expect("an mcp action");
    if method == "tools/call" {
        let tool = v["params"]["name"].as_str().expect("tools/call has a name");
        assert_eq!(call.tool.as_deref(), Some(tool));
        assert!(m.matches(tool), "{tool} classified to {}", action.name);
    } else {
        assert!(m.matches(method), "{method} classified to {}", action.name);
    }
    if let Some(h) = headers.get("mcp-method") {
        assert_eq!(h.as_bytes(), method.as_bytes());
    }
    true
}
