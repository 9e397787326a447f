//! Policy test cases (SPEC: Policy test cases): the case format, `now±DUR`
//! dates, and evaluation through [`decide`], the same engine `writ run` uses.
//! `writ test` prints the results; the fuzz crate evaluates the same cases.

use std::collections::{BTreeMap, BTreeSet};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::authenticate::Credentials;
use crate::config::Sp;
use crate::config::duration::{self, DurationError};
use crate::decide::{Context, Decision, decide};
use crate::decision::{Reason, Verdict};
use crate::policy::Policy;
use crate::request::Request;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// One case file: `cases:` and its list.
pub struct CaseFile {
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// One policy test case (SPEC: Policy test cases).
pub struct Case {
    /// Shown in the results; its line locates a failure.
    pub name: Sp<String>,
    /// The request to decide.
    pub request: CaseRequest,
    /// Claims taken as verified; numeric dates may be `now`, `now-5m`, `now+1h`.
    pub claims: Option<Map<String, Value>>,
    /// Or a signed token, verified with the config's keys.
    pub token: Option<String>,
    /// What the decision must be.
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// The request of a case.
pub struct CaseRequest {
    /// Method, exactly as a client would send it.
    pub method: String,
    /// Request target (path and query).
    pub path: String,
    /// `Host`, if the case needs a virtual host.
    pub host: Option<String>,
    #[serde(default)]
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// A JSON body (sent with `Content-Type: application/json` unless the
    /// headers say otherwise): a mapping or list is serialized, a string is
    /// sent as written (to test bodies writ refuses).
    pub body: Option<Value>,
    /// An MCP `tools/call` (a JSON-RPC body built from `tool` and `args`).
    pub mcp: Option<CaseMcp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// An MCP tool call in a case.
pub struct CaseMcp {
    /// The tool's name (`params.name`).
    pub tool: String,
    /// Its arguments (`params.arguments`).
    #[serde(default = "empty_object")]
    pub args: Value,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl CaseRequest {
    /// The body bytes the case sends, if any.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        if let Some(m) = &self.mcp {
            return Some(crate::policy::mcp::tools_call_body(&m.tool, &m.args));
        }
        match self.body.as_ref()? {
            Value::String(s) => Some(s.as_bytes().to_vec()),
            v => serde_json::to_vec(v).ok(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// What a case expects; fields left out are not checked.
pub struct Expect {
    /// `allow`, `deny` or `audit_deny`.
    pub decision: String,
    /// The HTTP status (200 for anything forwarded).
    pub status: Option<u16>,
    /// The reason (SPEC Responses table).
    pub reason: Option<String>,
    /// The matched action's name.
    pub action: Option<String>,
}

/// What a case produced, in the terms of `Expect`.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `allow`, `deny` or `audit_deny` (the metric label).
    pub decision: &'static str,
    /// The status a client would get (200 for anything forwarded).
    pub status: u16,
    /// The reason of the verdict.
    pub reason: &'static str,
    /// The matched action, if any.
    pub action: Option<String>,
}

/// A case that cannot be run as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    /// `now-5x` and the like.
    #[error(transparent)]
    Date(#[from] DurationError),
    /// A request header name HTTP does not allow.
    #[error("bad header name `{0}`")]
    HeaderName(String),
    /// A request header value HTTP does not allow.
    #[error("bad value for header `{0}`")]
    HeaderValue(String),
    /// A token with bytes a header cannot carry.
    #[error("token is not a valid header value")]
    Token,
}

/// A case file that does not parse, with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct CaseFileError {
    /// The file as named to [`parse_cases`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

/// Replaces `now`, `now-5m`, `now+1h` strings (at any depth) by numeric dates.
pub fn resolve_dates(v: &mut Value, now: f64) -> Result<(), CaseError> {
    match v {
        Value::String(s) if s == "now" || s.starts_with("now-") || s.starts_with("now+") => {
            let t = if s == "now" {
                now
            } else {
                let d = duration::parse(&s[4..])?.as_secs_f64();
                if s.as_bytes()[3] == b'-' {
                    now - d
                } else {
                    now + d
                }
            };
            *v = Value::from(t.floor() as i64);
        }
        Value::Object(m) => {
            for x in m.values_mut() {
                resolve_dates(x, now)?;
            }
        }
        Value::Array(a) => {
            for x in a {
                resolve_dates(x, now)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Runs one case against the engine and says what it produced.
pub fn evaluate(policy: &Policy, case: &Case, now: f64) -> Result<Outcome, CaseError> {
    let d = decide_case(policy, case, now)?;
    let action = d.action.map(|i| policy.action(i).name.clone());
    // An enforced denial answers with its own status; anything forwarded is
    // taken as the backend's 200.
    let status = match &d.verdict {
        Verdict::Deny(x) => x.status,
        Verdict::Allow { .. } | Verdict::AuditDeny { .. } => 200,
    };
    Ok(Outcome {
        decision: d.verdict.labels().metric,
        status,
        reason: d.verdict.reason().as_str(),
        action,
    })
}

/// The decision for one case: its request, and its claims (dates resolved
/// against `now`) or token, through [`decide`].
pub fn decide_case(policy: &Policy, case: &Case, now: f64) -> Result<Decision, CaseError> {
    let mut headers = HeaderMap::new();
    for (k, v) in &case.request.headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| CaseError::HeaderName(k.clone()))?;
        let value = HeaderValue::from_str(v).map_err(|_| CaseError::HeaderValue(k.clone()))?;
        headers.append(name, value);
    }
    if let Some(t) = &case.token {
        let v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| CaseError::Token)?;
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let body = case.request.body_bytes();
    if body.is_some() && !headers.contains_key(http::header::CONTENT_TYPE) {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let creds = match &case.claims {
        Some(c) => {
            let mut m = c.clone();
            for v in m.values_mut() {
                resolve_dates(v, now)?;
            }
            Credentials::Claims(m)
        }
        None => Credentials::Header,
    };
    let req = Request {
        method: &case.request.method,
        target: &case.request.path,
        host: case.request.host.as_deref(),
        headers: &headers,
        form_body: None,
        json_body: body.as_deref(),
        origin: crate::request::Origin::Proxy,
    };
    let cx = Context {
        now,
        credentials: &creds,
        cache: None,
        trace: false,
        introspection: None,
    };
    Ok(decide(policy, &req, &cx))
}

/// Compares an outcome with what a case expects; `None` when it passes.
pub fn mismatch(expect: &Expect, got: &Outcome) -> Option<String> {
    let mut bad = Vec::new();
    if expect.decision != got.decision {
        bad.push(format!(
            "decision: expected {}, got {}",
            expect.decision, got.decision
        ));
    }
    if let Some(s) = expect.status
        && s != got.status
    {
        bad.push(format!("status: expected {s}, got {}", got.status));
    }
    if let Some(r) = &expect.reason
        && r != got.reason
    {
        bad.push(format!("reason: expected {r}, got {}", got.reason));
    }
    if let Some(a) = &expect.action
        && Some(a) != got.action.as_ref()
    {
        bad.push(format!(
            "action: expected {a}, got {}",
            got.action.as_deref().unwrap_or("(none)")
        ));
    }
    if bad.is_empty() {
        None
    } else {
        Some(bad.join("; "))
    }
}

/// Parses a case file's text; errors name `file:line:col`.
pub fn parse_cases(text: &str, file: &str) -> Result<CaseFile, CaseFileError> {
    serde_saphyr::from_str(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((1, 1));
        let msg = e.without_snippet().to_string();
        let message = msg
            .rfind(" at line ")
            .map(|i| msg[..i].to_string())
            .unwrap_or(msg);
        CaseFileError {
            file: file.to_string(),
            line,
            col,
            message,
        }
    })
}

/// Reasons a policy case can never produce: they come from the backend or the
/// body reader, not from [`decide`].
const NOT_FROM_CASES: [Reason; 3] = [
    Reason::UpstreamUnavailable,
    Reason::UpstreamTimeout,
    Reason::BodyTooLarge,
];

/// What a set of cases exercised (`writ test --coverage`).
#[derive(Debug, Default)]
pub struct Coverage {
    exercised: BTreeSet<String>,
    denied: BTreeSet<String>,
    reasons: BTreeSet<&'static str>,
}

/// The coverage of a policy by its cases.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageReport {
    /// Actions some case matched.
    pub exercised: usize,
    /// All actions.
    pub total: usize,
    /// Actions no case matched, in file order.
    pub unexercised: Vec<String>,
    /// Execution actions no case sees denied, in file order.
    pub execution_never_denied: Vec<String>,
    /// Reasons `decide` can give that no case produced, in SPEC's order.
    pub reasons_never_produced: Vec<&'static str>,
}

impl CoverageReport {
    /// Share of actions exercised, in percent (100 for a policy without actions).
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            self.exercised as f64 * 100.0 / self.total as f64
        }
    }
}

impl Coverage {
    /// Counts one case's outcome.
    pub fn record(&mut self, got: &Outcome) {
        self.reasons.insert(got.reason);
        if let Some(a) = &got.action {
            self.exercised.insert(a.clone());
            if got.decision != "allow" {
                self.denied.insert(a.clone());
            }
        }
    }

    /// What `policy`'s cases left uncovered.
    pub fn report(&self, policy: &Policy) -> CoverageReport {
        let names = || policy.actions.iter();
        CoverageReport {
            exercised: names().filter(|a| self.exercised.contains(&a.name)).count(),
            total: policy.actions.len(),
            unexercised: names()
                .filter(|a| !self.exercised.contains(&a.name))
                .map(|a| a.name.clone())
                .collect(),
            execution_never_denied: names()
                .filter(|a| a.execution && !self.denied.contains(&a.name))
                .map(|a| a.name.clone())
                .collect(),
            reasons_never_produced: Reason::ALL
                .into_iter()
                .filter(|r| !NOT_FROM_CASES.contains(r))
                .map(Reason::as_str)
                .filter(|r| !self.reasons.contains(r))
                .collect(),
        }
    }
}
