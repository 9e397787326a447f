//! `writ test`: run policy cases (SPEC: Policy test cases). Prints each failure
//! with expected vs actual, ends with `N passed, N failed`; exit 0 iff all pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::config::duration;
use crate::config::raw::Sp;
use crate::decision::Verdict;
use crate::pipeline::{self, Credentials, RequestParts};
use crate::policy::Policy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: Sp<String>,
    pub request: CaseRequest,
    /// Claims taken as verified; numeric dates may be `now`, `now-5m`, `now+1h`.
    pub claims: Option<Map<String, Value>>,
    /// Or a signed token, verified with the config's keys.
    pub token: Option<String>,
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub decision: String,
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub action: Option<String>,
}

/// What a case produced, in the terms of `Expect`.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub decision: &'static str,
    pub status: u16,
    pub reason: &'static str,
    pub action: Option<String>,
}

/// Replaces `now`, `now-5m`, `now+1h` strings (at any depth) by numeric dates.
pub fn resolve_dates(v: &mut Value, now: f64) -> Result<(), String> {
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

/// Runs one case against the engine.
pub fn evaluate(policy: &Policy, case: &Case, now: f64) -> Result<Outcome, String> {
    let mut headers = HeaderMap::new();
    for (k, v) in &case.request.headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name `{k}`"))?;
        let value = HeaderValue::from_str(v).map_err(|_| format!("bad value for header `{k}`"))?;
        headers.append(name, value);
    }
    if let Some(t) = &case.token {
        let v = HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| "token is not a valid header value".to_string())?;
        headers.insert(http::header::AUTHORIZATION, v);
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
    let req = RequestParts {
        method: &case.request.method,
        target: &case.request.path,
        host: case.request.host.as_deref(),
        headers: &headers,
        form_body: None,
    };
    let d = pipeline::decide(policy, None, &req, &creds, now, false);
    let action = d.action.map(|i| policy.action(i).name.clone());
    Ok(match &d.verdict {
        Verdict::Allow { reason, .. } => Outcome {
            decision: "allow",
            status: 200,
            reason: reason.as_str(),
            action,
        },
        Verdict::Deny(x) => Outcome {
            decision: "deny",
            status: x.status,
            reason: x.reason.as_str(),
            action,
        },
        Verdict::AuditDeny { denial, .. } => Outcome {
            decision: "audit_deny",
            status: 200,
            reason: denial.reason.as_str(),
            action,
        },
    })
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

pub fn load_cases(path: &Path) -> Result<CaseFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}:0:0: cannot read: {e}", path.display()))?;
    serde_saphyr::from_str(&text).map_err(|e| {
        let (l, c) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let msg = e.without_snippet().to_string();
        let msg = msg
            .rfind(" at line ")
            .map(|i| msg[..i].to_string())
            .unwrap_or(msg);
        format!("{}:{l}:{c}: {msg}", path.display())
    })
}

pub fn run(config: &Path, cases: &[PathBuf]) -> u8 {
    let policy = match crate::config::load(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            println!("0 passed, 1 failed");
            return 1;
        }
    };
    let now = Clock::System.now();
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in cases {
        let cf = match load_cases(file) {
            Ok(c) => c,
            Err(e) => {
                println!("FAIL {e}");
                failed += 1;
                continue;
            }
        };
        for case in &cf.cases {
            let at = format!("{}:{}", file.display(), case.name.line());
            match evaluate(&policy, case, now) {
                Ok(got) => match mismatch(&case.expect, &got) {
                    None => {
                        passed += 1;
                        println!("ok   {}", case.name.get());
                    }
                    Some(why) => {
                        failed += 1;
                        println!("FAIL {} ({at})\n     {why}", case.name.get());
                    }
                },
                Err(e) => {
                    failed += 1;
                    println!("FAIL {} ({at})\n     invalid case: {e}", case.name.get());
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 { 0 } else { 1 }
}
