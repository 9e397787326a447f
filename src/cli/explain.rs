//! `writ explain`: the engine's reasoning for one request. Exit 0 allow, 1 deny,
//! 2 usage or config error.

use std::path::PathBuf;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use writ_engine::authenticate::Credentials;
use writ_engine::clock::Clock;
use writ_engine::decision::Verdict;
use writ_engine::policy::Policy;
use writ_engine::request::Origin;
use writ_engine::{Context, Decision, Request, decide};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "WRIT_CONFIG")]
    config: PathBuf,
    #[arg(long)]
    method: String,
    #[arg(long)]
    path: String,
    #[arg(long)]
    host: Option<String>,
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

pub fn run(args: Args) -> u8 {
    let policy = match writ_engine::config::load(&args.config) {
        Ok(c) => c.policy,
        Err(e) => return usage(format!("invalid config:\n{e}")),
    };
    let mut headers = match parse_headers(&args.headers) {
        Ok(h) => h,
        Err(e) => return usage(e),
    };
    let clock = match &args.now {
        Some(s) => match Clock::parse_rfc3339(s) {
            Ok(c) => c,
            Err(e) => return usage(e),
        },
        None => Clock::System,
    };
    let creds = match &args.claims {
        Some(p) => match load_claims(p) {
            Ok(c) => Credentials::Claims(c),
            Err(e) => return usage(e),
        },
        None => Credentials::Header,
    };
    if let Some(t) = &args.token {
        match HeaderValue::from_str(&format!("Bearer {t}")) {
            Ok(v) => {
                headers.insert(http::header::AUTHORIZATION, v);
            }
            Err(_) => return usage("token has characters a header cannot carry"),
        }
    }
    let method = args.method.clone();
    let req = Request {
        method: &method,
        target: &args.path,
        host: args.host.as_deref(),
        headers: &headers,
        form_body: None,
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
    };
    let d = decide(&policy, &req, &cx);
    let allowed = !matches!(d.verdict, Verdict::Deny(_));
    if args.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&to_json(&policy, &args, &d)).unwrap_or_default()
        );
    } else {
        print_text(&policy, &args, &d);
    }
    if allowed { 0 } else { 1 }
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

fn to_json(policy: &Policy, args: &Args, d: &Decision) -> serde_json::Value {
    let file = args.config.display().to_string();
    let (decision, status, reason, detail, enforced) = outcome(d);
    json!({
        "method": args.method,
        "path": args.path,
        "normalized_path": d.target.as_ref().map(|t| t.path.clone()),
        "host": d.host,
        "action": action_json(policy, &file, d),
        "checks": d.checks.iter().map(|c| json!({"stage": c.stage, "check": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
        "decision": decision,
        "enforced": enforced,
        "status": status,
        "reason": reason,
        "detail": detail,
    })
}

fn print_text(policy: &Policy, args: &Args, d: &Decision) {
    let file = args.config.display().to_string();
    out!(
        "request     {} {}{}",
        args.method,
        args.path,
        args.host
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
