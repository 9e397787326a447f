//! Deciding recorded decision-log lines again under another policy (`writ
//! replay`, `writ explain --log-line`), through the same [`decide`] as `writ
//! run`, each at its own `ts`. What a line cannot tell is counted
//! `not_replayable` with its cause, never guessed.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde::Serialize;

use crate::authenticate::Credentials;
use crate::clock::Clock;
use crate::decide::{Context, Decision, decide};
use crate::decision::{Denial, Reason};
use crate::policy::Policy;
use crate::record::{Credential, LoggedDecision};
use crate::request::{Origin, Request};

/// Why a line cannot be decided again. Each is a fact the log does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReplayable {
    /// Not JSON, or not the decision log's shape.
    #[error("not a decision-log line: {0}")]
    NotALine(String),
    /// Written before writ recorded what decisions rest on (`credential`).
    #[error("written before the log recorded what decisions rest on")]
    OldFormat,
    /// Refused before normalization: the raw target is never logged.
    #[error("refused before normalization (the raw request is never logged)")]
    NotNormalized,
    /// A `ts` that is not RFC 3339.
    #[error("`ts` is not an RFC 3339 time")]
    BadTime,
    /// The token was not looked at then, and the new policy needs it.
    #[error("the token was not checked when logged, and the new policy needs it")]
    TokenUnchecked,
    /// The new policy binds a claim the line does not record.
    #[error("the new policy binds claim `{0}`, which the line does not record")]
    ClaimNotRecorded(String),
    /// The new policy needs introspection the line did not record.
    #[error("the new policy needs an introspection answer the line does not record")]
    IntrospectionNotRecorded,
}

/// Parses one decision-log line.
pub fn parse_line(text: &str) -> Result<LoggedDecision, NotReplayable> {
    serde_json::from_str(text).map_err(|e| NotReplayable::NotALine(e.to_string()))
}

/// Decides `line` again under `policy` at the line's own `ts`; `trace` keeps
/// every check (`explain --log-line`).
pub fn replay(
    policy: &Policy,
    line: &LoggedDecision,
    trace: bool,
) -> Result<Decision, NotReplayable> {
    let Some(path) = line.path.as_deref() else {
        return Err(NotReplayable::NotNormalized);
    };
    let Some(credential) = line.credential else {
        return Err(NotReplayable::OldFormat);
    };
    let Ok(Clock::Fixed(now)) = Clock::parse_rfc3339(&line.ts) else {
        return Err(NotReplayable::BadTime);
    };
    let credentials = match credential {
        Credential::Verified => Credentials::Claims(line.claims().ok_or(NotReplayable::OldFormat)?),
        Credential::Rejected => {
            let reason = Reason::parse(&line.reason)
                .filter(|r| r.is_invalid_token() || *r == Reason::MalformedToken)
                .ok_or_else(|| {
                    NotReplayable::NotALine(format!(
                        "credential `rejected` with reason `{}`",
                        line.reason
                    ))
                })?;
            Credentials::Refused(Denial::new(reason, "the token was refused when logged"))
        }
        Credential::None | Credential::Unchecked => Credentials::Header,
    };
    let headers = HeaderMap::new();
    let req = Request {
        method: &line.method,
        target: path,
        host: line.host.as_deref(),
        headers: &headers,
        form_body: None,
        json_body: None,
        // A front door's line is decided again as a front door (its strictness rule).
        origin: match line.frontend.as_deref() {
            Some("ext_authz_grpc" | "ext_authz_http") => Origin::FrontDoor,
            _ => Origin::Proxy,
        },
    };
    let cx = Context {
        now,
        credentials: &credentials,
        cache: None,
        trace,
        introspection: line.introspection,
    };
    let d = decide(policy, &req, &cx);
    if d.introspect.is_some() {
        return Err(NotReplayable::IntrospectionNotRecorded);
    }
    let reason = d.verdict.reason();
    if credential == Credential::Unchecked && reason == Reason::NoToken {
        return Err(NotReplayable::TokenUnchecked);
    }
    if reason == Reason::ClaimMismatch
        && let Some(a) = d.action
        && let Some((name, _)) = policy
            .action(a)
            .require
            .claims
            .iter()
            .find(|(n, _)| !line.basis.claims.contains_key(n))
    {
        return Err(NotReplayable::ClaimNotRecorded(name.clone()));
    }
    Ok(d)
}

/// An outcome as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Outcome {
    /// `allow`, `deny` or `audit_deny` (the metric label).
    pub decision: String,
    /// The reason.
    pub reason: String,
}

impl Outcome {
    fn forwarded(&self) -> bool {
        self.decision != "deny"
    }
}

/// One kind of change: every line that went from `from` to `to` on `action`.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The action under the new policy (the logged one when none matches now).
    pub action: Option<String>,
    /// As logged.
    pub from: Outcome,
    /// As decided now.
    pub to: Outcome,
    /// How many lines.
    pub count: u64,
    /// Up to [`EXAMPLES`] request ids, in log order.
    pub examples: Vec<String>,
}

/// How many example request ids a change keeps.
pub const EXAMPLES: usize = 3;

/// What a replay found (SPEC: `writ replay --json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Lines read.
    pub total: u64,
    /// Same decision and reason.
    pub unchanged: u64,
    /// Forwarded then, refused now.
    pub allow_to_deny: u64,
    /// Refused then, forwarded now.
    pub deny_to_allow: u64,
    /// Same side, another decision label or reason.
    pub reason_changed: u64,
    /// Lines that cannot be decided again.
    pub not_replayable: u64,
    /// Each change, most frequent first (see [`Report::finish`]).
    pub changes: Vec<Change>,
    /// Not-replayable lines by cause, with the first line number of each.
    #[serde(skip)]
    pub not_replayable_causes: BTreeMap<String, (u64, String)>,
    #[serde(skip)]
    index: BTreeMap<(Option<String>, Outcome, Outcome), usize>,
}

impl Report {
    /// Counts one line: its replay (or why there is none). `at` names the line
    /// (`FILE:LINE`) for the first line of each not-replayable cause.
    pub fn add(
        &mut self,
        policy: &Policy,
        line: Result<&LoggedDecision, NotReplayable>,
        decided: Option<&Decision>,
        at: impl FnOnce() -> String,
    ) {
        self.total += 1;
        let (line, d) = match (line, decided) {
            (Ok(l), Some(d)) => (l, d),
            (Err(why), _) => return self.skip(why, at),
            (Ok(_), None) => return self.skip(NotReplayable::OldFormat, at),
        };
        let from = Outcome {
            decision: line.outcome().to_string(),
            reason: line.reason.clone(),
        };
        let to = Outcome {
            decision: d.verdict.labels().metric.to_string(),
            reason: d.verdict.reason().as_str().to_string(),
        };
        // A backend failure is not a policy decision: what the policy decided
        // then is the label; the new one is compared on that alone.
        let upstream = matches!(
            line.reason.as_str(),
            "upstream_unavailable" | "upstream_timeout"
        );
        let same = if upstream {
            from.decision == to.decision
        } else {
            from == to
        };
        if same {
            self.unchanged += 1;
            return;
        }
        match (from.forwarded(), to.forwarded()) {
            (true, false) => self.allow_to_deny += 1,
            (false, true) => self.deny_to_allow += 1,
            _ => self.reason_changed += 1,
        }
        let action = d
            .action
            .map(|i| policy.action(i).name.clone())
            .or_else(|| line.action.clone());
        let key = (action.clone(), from.clone(), to.clone());
        let i = *self.index.entry(key).or_insert_with(|| {
            self.changes.push(Change {
                action,
                from,
                to,
                count: 0,
                examples: Vec::new(),
            });
            self.changes.len() - 1
        });
        let c = &mut self.changes[i];
        c.count += 1;
        if c.examples.len() < EXAMPLES {
            c.examples.push(line.request_id.clone());
        }
    }

    fn skip(&mut self, why: NotReplayable, at: impl FnOnce() -> String) {
        self.not_replayable += 1;
        let cause = match &why {
            // One bucket for every parse error; the first one is shown in full.
            NotReplayable::NotALine(_) => "not a decision-log line".to_string(),
            other => other.to_string(),
        };
        self.not_replayable_causes
            .entry(cause)
            .and_modify(|(n, _)| *n += 1)
            .or_insert_with(|| (1, format!("{}: {why}", at())));
    }

    /// Adds `other` (a later part of the same logs) to this report.
    pub fn merge(&mut self, other: Report) {
        self.total += other.total;
        self.unchanged += other.unchanged;
        self.allow_to_deny += other.allow_to_deny;
        self.deny_to_allow += other.deny_to_allow;
        self.reason_changed += other.reason_changed;
        self.not_replayable += other.not_replayable;
        for (cause, (n, first)) in other.not_replayable_causes {
            self.not_replayable_causes
                .entry(cause)
                .and_modify(|(m, _)| *m += n)
                .or_insert((n, first));
        }
        for c in other.changes {
            let key = (c.action.clone(), c.from.clone(), c.to.clone());
            match self.index.get(&key) {
                Some(&i) => {
                    let mine = &mut self.changes[i];
                    mine.count += c.count;
                    let room = EXAMPLES.saturating_sub(mine.examples.len());
                    mine.examples.extend(c.examples.into_iter().take(room));
                }
                None => {
                    self.index.insert(key, self.changes.len());
                    self.changes.push(c);
                }
            }
        }
    }

    /// Sorts the changes, most frequent first (ties: by action, then outcome).
    pub fn finish(&mut self) {
        self.changes.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.action.cmp(&b.action))
                .then_with(|| (&a.from, &a.to).cmp(&(&b.from, &b.to)))
        });
        self.index.clear();
    }

    /// Whether any line would be decided differently.
    pub fn changed(&self) -> bool {
        self.allow_to_deny + self.deny_to_allow + self.reason_changed > 0
    }
}

#[cfg(test)]
mod tests;
