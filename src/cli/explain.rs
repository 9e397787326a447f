//! `writ explain`: the engine's reasoning for one request. Exit 0 allow, 1 deny,
//! 2 usage or config error.

use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use writ_engine::authenticate::Credentials;
use writ_engine::clock::Clock;
use writ_engine::config::Upstream;
use writ_engine::decision::Verdict;
use writ_engine::policy::Policy;
use writ_engine::record::LoggedDecision;
use writ_engine::replay::{NotReplayable, parse_line, replay};
use writ_engine::request::Origin;
use writ_engine::{Context, Decision, Request, decide};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "WRIT_CONFIG")]
    config: PathBuf,
    #[arg(long, required_unless_present = "log_line")]
    method: Option<String>,
    #[arg(long, required_unless_present = "log_line")]
    path: Option<String>,
    #[arg(long)]
    host: Option<String>,
    /// A decision-log line (JSON): decide it again, at its own time, and show each check.
    #[arg(long, conflicts_with_all = ["method", "path", "host", "headers", "token", "claims", "now"])]
    log_line: Option<String>,
    /// Extra request header, `K: V` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// A signed token, verified with the config's keys.
    #[arg(long, conflicts_with = "claims")]
    token: Option<String>,
    /// A JSON or YAML claims object taken as verified.
    #[arg(long)]
    claims: Option<PathBuf>,
    /// Evaluate at this RFC 3339 time instead of now.
    #[arg(long)]
    now: Option<String>,
    #[arg(long)]
    json: bool,
    /// Decide as a front door (ext_authz, forward-auth) does: a target that
    /// normalization would change is denied.
    #[arg(long)]
    front_door: bool,
    /// A file holding the request's JSON body (sent as `application/json`
    /// unless a `--header` says otherwise).
    #[arg(long, conflicts_with_all = ["mcp_tool", "log_line"])]
    body: Option<PathBuf>,
    /// An MCP `tools/call` of this tool (a JSON-RPC body is built).
    #[arg(long, conflicts_with = "log_line")]
    mcp_tool: Option<String>,
    /// The tool's arguments, a JSON object (with `--mcp-tool`).
    #[arg(long, requires = "mcp_tool")]
    mcp_args: Option<String>,
}

fn usage(msg: impl std::fmt::Display) -> u8 {
    eprintln!("writ explain: {msg}");
    2
}

/// A `--header` or `--claims` argument that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error("header `{0}` must be `Name: value`")]
    HeaderShape(String),
    #[error("`{0}` is not a header name")]
    HeaderName(String),
    #[error("header `{0}` has an invalid value")]
    HeaderValue(String),
    #[error("cannot read {}: {source}", path.display())]
    ClaimsRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a JSON or YAML object: {detail}", path.display())]
    ClaimsSyntax { path: PathBuf, detail: String },
    #[error("{}: claims must be an object", .0.display())]
    ClaimsNotObject(PathBuf),
}

/// Parses `K: V` header arguments into a map.
pub fn parse_headers(raw: &[String]) -> Result<HeaderMap, ArgError> {
    let mut map = HeaderMap::new();
    for h in raw {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| ArgError::HeaderShape(h.clone()))?;
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| ArgError::HeaderName(k.trim().to_string()))?;
        let value = HeaderValue::from_str(v.trim())
            .map_err(|_| ArgError::HeaderValue(k.trim().to_string()))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Loads a claims object from JSON or YAML.
pub fn load_claims(path: &PathBuf) -> Result<serde_json::Map<String, serde_json::Value>, ArgError> {
    let text = std::fs::read_to_string(path).map_err(|source| ArgError::ClaimsRead {
        path: path.clone(),
        source,
    })?;
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => serde_saphyr::from_str(&text).map_err(|e| ArgError::ClaimsSyntax {
            path: path.clone(),
            detail: e.without_snippet().to_string(),
        })?,
    };
    match v {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(ArgError::ClaimsNotObject(path.clone())),
    }
}

/// The request as the user gave it (or as the log line recorded it).
struct Shown {
    method: String,
    path: String,
    host: Option<String>,
    /// `--log-line`: the logged outcome and when it was decided.
    logged: Option<LoggedDecision>,
}

pub fn run(args: Args) -> u8 {
    let config = match writ_engine::config::load(&args.config) {
        Ok(c) => c,
        Err(e) => return usage(format!("invalid config:\n{e}")),
    };
    let policy = &config.policy;
    let (shown, d) = match &args.log_line {
        Some(text) => match decide_log_line(policy, text) {
            Ok(x) => x,
            Err(e) => return usage(e),
        },
        None => match decide_args(policy, &args) {
            Ok(x) => x,
            Err(code) => return code,
        },
    };
    let allowed = !matches!(d.verdict, Verdict::Deny(_));
    // Where the proxy would send it: the action's upstream, or the default one
    // for an unmatched request it forwards. A front door forwards nothing.
    let front_door = args.front_door
        || shown
            .logged
            .as_ref()
            .and_then(|l| l.frontend.as_deref())
            .is_some_and(|f| f != "proxy");
    let upstream =
        (!front_door && (d.action.is_some() || allowed)).then(|| config.upstream_for(d.action));
    if args.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&to_json(policy, &args.config, &shown, &d, upstream))
                .unwrap_or_default()
        );
    } else {
        print_text(policy, &args.config, &shown, &d, upstream);
    }
    if allowed { 0 } else { 1 }
}

/// `--log-line`: the line's request and credential, decided at its own `ts`.
fn decide_log_line(policy: &Policy, text: &str) -> Result<(Shown, Decision), NotReplayable> {
    let line = parse_line(text)?;
    let d = replay(policy, &line, true)?;
    let shown = Shown {
        method: line.method.clone(),
        path: line.path.clone().unwrap_or_default(),
        host: line.host.clone(),
        logged: Some(line),
    };
    Ok((shown, d))
}

fn decide_args(policy: &Policy, args: &Args) -> Result<(Shown, Decision), u8> {
    let mut headers = parse_headers(&args.headers).map_err(usage)?;
    let clock = match &args.now {
        Some(s) => Clock::parse_rfc3339(s).map_err(usage)?,
        None => Clock::System,
    };
    let creds = match &args.claims {
        Some(p) => Credentials::Claims(load_claims(p).map_err(usage)?),
        None => Credentials::Header,
    };
    if let Some(t) = &args.token {
        match HeaderValue::from_str(&format!("Bearer {t}")) {
            Ok(v) => {
                headers.insert(http::header::AUTHORIZATION, v);
            }
            Err(_) => return Err(usage("token has characters a header cannot carry")),
        }
    }
    let body = match (&args.body, &args.mcp_tool) {
        (Some(p), _) => {
            Some(std::fs::read(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?)
        }
        (None, Some(tool)) => {
            let a: serde_json::Value = match &args.mcp_args {
                None => json!({}),
                Some(text) => serde_json::from_str(text)
                    .map_err(|e| usage(format!("--mcp-args is not JSON: {e}")))?,
            };
            if !a.is_object() {
                return Err(usage("--mcp-args must be a JSON object"));
            }
            Some(writ_engine::policy::mcp::tools_call_body(tool, &a))
        }
        (None, None) => None,
    };
    if body.is_some() && !headers.contains_key(http::header::CONTENT_TYPE) {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let shown = Shown {
        method: args.method.clone().unwrap_or_default(),
        path: args.path.clone().unwrap_or_default(),
        host: args.host.clone(),
        logged: None,
    };
    let req = Request {
        method: &shown.method,
        target: &shown.path,
        host: shown.host.as_deref(),
        headers: &headers,
        form_body: None,
        json_body: body.as_deref(),
        origin: if args.front_door {
            Origin::FrontDoor
        } else {
            Origin::Proxy
        },
    };
    let cx = Context {
        now: clock.now(),
        credentials: &creds,
        cache: None,
        trace: true,
        introspection: None,
    };
    let d = decide(policy, &req, &cx);
    Ok((shown, d))
}

fn action_json(policy: &Policy, file: &str, d: &Decision) -> serde_json::Value {
    match d.action.map(|i| policy.action(i)) {
        None => serde_json::Value::Null,
        Some(a) => json!({
            "name": a.name,
            "execution": a.execution,
            "public": a.public,
            "template": a.template.source,
            "location": format!("{file}:{}:{}", a.location.0, a.location.1),
            "params": d.params.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }),
    }
}

fn outcome(d: &Decision) -> (&'static str, u16, &'static str, String, bool) {
    let labels = d.verdict.labels();
    match &d.verdict {
        Verdict::Allow { reason, .. } => (labels.log, 200, reason.as_str(), String::new(), true),
        Verdict::Deny(x) | Verdict::AuditDeny { denial: x, .. } => (
            labels.log,
            x.status,
            x.reason.as_str(),
            x.detail.clone(),
            labels.enforced,
        ),
    }
}

fn to_json(
    policy: &Policy,
    config: &Path,
    shown: &Shown,
    d: &Decision,
    upstream: Option<&Upstream>,
) -> serde_json::Value {
    let file = config.display().to_string();
    let (decision, status, reason, detail, enforced) = outcome(d);
    let logged = shown.logged.as_ref().map(|l| {
        json!({"ts": l.ts, "request_id": l.request_id, "decision": l.outcome(), "reason": l.reason, "action": l.action})
    });
    json!({
        "method": shown.method,
        "path": shown.path,
        "logged": logged,
        "revoked_by": d.revoked.as_ref().and_then(|e| serde_json::to_value(e).ok()),
        "normalized_path": d.target.as_ref().map(|t| t.path.clone()),
        "host": d.host,
        "action": action_json(policy, &file, d),
        "upstream": upstream.map(|u| json!({"name": u.name, "url": u.url()})),
        "tool": d.mcp.as_ref().and_then(|m| m.tool.clone()),
        "checks": d.checks.iter().map(|c| json!({"stage": c.stage, "check": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
        "decision": decision,
        "enforced": enforced,
        "status": status,
        "reason": reason,
        "detail": detail,
    })
}

fn print_text(
    policy: &Policy,
    config: &Path,
    shown: &Shown,
    d: &Decision,
    upstream: Option<&Upstream>,
) {
    let file = config.display().to_string();
    if let Some(l) = &shown.logged {
        out!(
            "logged      {} ({}) on {}  at {}  request {}",
            l.outcome(),
            l.reason,
            l.action.as_deref().unwrap_or("(no action)"),
            l.ts,
            l.request_id
        );
    }
    out!(
        "request     {} {}{}",
        shown.method,
        shown.path,
        shown
            .host
            .as_ref()
            .map(|h| format!("  (host {h})"))
            .unwrap_or_default()
    );
    match &d.target {
        Some(t) => out!("normalized  {}", t.path),
        None => out!("normalized  (refused before normalization completed)"),
    }
    match d.action.map(|i| policy.action(i)) {
        Some(a) => {
            out!(
                "action      {}{}{}  [{} {}]  at {file}:{}:{}",
                a.name,
                if a.execution { " (execution)" } else { "" },
                if a.public { " (public)" } else { "" },
                match &a.methods {
                    writ_engine::policy::router::Methods::Any => "*".to_string(),
                    writ_engine::policy::router::Methods::List(l) => l.join(","),
                },
                a.template.source,
                a.location.0,
                a.location.1
            );
            if !d.params.is_empty() {
                let p: Vec<String> = d.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out!("params      {}", p.join(" "));
            }
        }
        None => out!("action      (none)"),
    }
    if let Some(u) = upstream {
        out!("upstream    {} ({})", u.name, u.url());
    }
    out!("checks");
    for c in &d.checks {
        out!(
            "  [{}] {:<10} {:<44} {}",
            if c.ok { "pass" } else { "FAIL" },
            c.stage,
            c.name,
            c.detail
        );
    }
    if let Some(e) = &d.revoked {
        out!("revoked by  {e}");
    }
    let (decision, status, reason, detail, enforced) = outcome(d);
    let audit = if enforced {
        ""
    } else {
        " (audit mode: not enforced, forwarded)"
    };
    if detail.is_empty() {
        out!("decision    {decision} ({reason}){audit}");
    } else {
        out!("decision    {decision}: {status} {reason}: {detail}{audit}");
    }
}
