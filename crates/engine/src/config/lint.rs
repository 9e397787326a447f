//! `writ lint`: mistakes a config can make while still being valid. Run on
//! every successful load (so `writ check` prints them as warnings), over the
//! YAML (for positions) and the compiled policy (for meaning). An action
//! silences a code with `lint: { allow: [CODE] }`; a top-level `lint:` block
//! silences it everywhere.

use std::fmt;
use std::time::Duration;

use super::Sp;
use super::raw::{RawAction, RawConfig, RawLint, Unmatched};
use crate::policy::router::Methods;
use crate::policy::template::{Segment, Template};
use crate::policy::{Action, ClaimRule, Policy};
use crate::vocab::{DelegationMode, Mode};

/// One kind of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    /// An execution action that any valid token of its issuers may call.
    ExecutionWithoutScopes,
    /// Delegated tokens accepted with no bound on their age.
    DelegationWithoutMaxAge,
    /// Delegated tokens accepted from any actor.
    ActorGlobMatchesAll,
    /// Requests matching no action are forwarded.
    UnmatchedAllow,
    /// An execution action whose denials are only logged.
    AuditModeExecution,
    /// An action another one always wins over.
    ShadowedTemplate,
    /// An issuer whose ID tokens would pass as access tokens.
    IssuerWithoutTyp,
    /// An execution action reachable by every method.
    ExecutionAnyMethod,
    /// A claim bound to a `{*rest}` parameter (several segments).
    ClaimBoundToRest,
    /// Clock-skew leeway beyond five minutes.
    LongLeeway,
    /// The caller's token forwarded to an execution backend.
    ForwardTokenExecution,
    /// An execution action whose `mcp.tool` is a glob: any tool the server
    /// adds under that name executes with this action's authority.
    ExecutionToolGlob,
}

impl Code {
    /// Every code, in the order `writ lint` documents them.
    pub const ALL: [Code; 12] = [
        Code::ExecutionWithoutScopes,
        Code::DelegationWithoutMaxAge,
        Code::ActorGlobMatchesAll,
        Code::UnmatchedAllow,
        Code::AuditModeExecution,
        Code::ShadowedTemplate,
        Code::IssuerWithoutTyp,
        Code::ExecutionAnyMethod,
        Code::ClaimBoundToRest,
        Code::LongLeeway,
        Code::ForwardTokenExecution,
        Code::ExecutionToolGlob,
    ];

    /// The code as written in findings and `lint.allow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ExecutionWithoutScopes => "execution-without-scopes",
            Code::DelegationWithoutMaxAge => "delegation-without-max-age",
            Code::ActorGlobMatchesAll => "actor-glob-matches-all",
            Code::UnmatchedAllow => "unmatched-allow",
            Code::AuditModeExecution => "audit-mode-execution",
            Code::ShadowedTemplate => "shadowed-template",
            Code::IssuerWithoutTyp => "issuer-without-typ",
            Code::ExecutionAnyMethod => "execution-any-method",
            Code::ClaimBoundToRest => "claim-bound-to-rest",
            Code::LongLeeway => "long-leeway",
            Code::ForwardTokenExecution => "forward-token-execution",
            Code::ExecutionToolGlob => "execution-tool-glob",
        }
    }

    /// The code spelled `s`.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// One line on how to fix it.
    pub fn hint(self) -> &'static str {
        match self {
            Code::ExecutionWithoutScopes => {
                "add `require: { scopes: [...] }` naming the permission this execution needs"
            }
            Code::DelegationWithoutMaxAge => {
                "add `max_age: 5m` to the delegation so an agent's authority ends soon after it was granted"
            }
            Code::ActorGlobMatchesAll => {
                "list the agents that may act, e.g. `actors: [\"agent:ci-*\"]`"
            }
            Code::UnmatchedAllow => {
                "set `defaults: { unmatched: deny }` and add an action for each route the backend serves"
            }
            Code::AuditModeExecution => {
                "prove the rule with `writ replay` over the audit log, then set `mode: enforce`"
            }
            Code::ShadowedTemplate => {
                "give this action the same `host`, or narrow the other action's template or methods"
            }
            Code::IssuerWithoutTyp => {
                "add `require_typ: at+jwt` so ID tokens and other JWTs of this issuer are refused (RFC 9068)"
            }
            Code::ExecutionAnyMethod => "list the methods that execute, e.g. `methods: [POST]`",
            Code::ClaimBoundToRest => {
                "bind the claim to a `{param}` of one segment, e.g. `/tenants/{tenant}/{*rest}`"
            }
            Code::LongLeeway => {
                "keep `leeway` at a few seconds to a minute; fix clocks with NTP instead"
            }
            Code::ForwardTokenExecution => {
                "set `forward_token: false` unless this backend verifies the token itself"
            }
            Code::ExecutionToolGlob => {
                "name each execution tool exactly, e.g. `mcp: { tool: create_refund }`"
            }
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The config file as named.
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub col: u64,
    /// Which mistake.
    pub code: Code,
    /// What is wrong here.
    pub message: String,
}

impl fmt::Display for Finding {
    /// `FILE:LINE:COL: warning[CODE]: message`, then an indented `help:` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: warning[{}]: {}\n  help: {}",
            self.file,
            self.line,
            self.col,
            self.code,
            self.message,
            self.code.hint()
        )
    }
}

/// Unknown codes in `lint.allow` blocks: `(line, col, message)` config errors.
pub(super) fn unknown_codes(raw: &RawConfig) -> Vec<(u64, u64, String)> {
    let blocks = raw
        .lint
        .iter()
        .chain(raw.actions.iter().filter_map(|a| a.lint.as_ref()));
    let known = || {
        Code::ALL
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    blocks
        .flat_map(|b| &b.allow)
        .filter(|c| Code::parse(c.get()).is_none())
        .map(|c| {
            (
                c.line(),
                c.col(),
                format!("unknown lint code `{}` (known: {})", c.get(), known()),
            )
        })
        .collect()
}

struct Lints<'a> {
    file: &'a str,
    global: Option<&'a RawLint>,
    found: Vec<Finding>,
}

impl Lints<'_> {
    fn allowed(block: Option<&RawLint>, code: Code) -> bool {
        block.is_some_and(|b| b.allow.iter().any(|c| c.get() == code.as_str()))
    }

    /// A finding, unless the action (or the top level) allows its code.
    fn add<T>(&mut self, action: Option<&RawAction>, at: &Sp<T>, code: Code, message: String) {
        if Self::allowed(self.global, code)
            || Self::allowed(action.and_then(|a| a.lint.as_ref()), code)
        {
            return;
        }
        self.found.push(Finding {
            file: self.file.to_string(),
            line: at.line(),
            col: at.col(),
            code,
            message,
        });
    }
}

const LONGEST_LEEWAY: Duration = Duration::from_secs(300);

/// Every finding for a config that compiled into `policy`, in file order.
/// `raw.actions` and `policy.actions` correspond one to one (a load with any
/// error never gets here); so do the issuers.
pub(super) fn lint(raw: &RawConfig, policy: &Policy, file: &str) -> Vec<Finding> {
    let mut l = Lints {
        file,
        global: raw.lint.as_ref(),
        found: Vec::new(),
    };
    if let Some(u) = &raw.defaults.unmatched
        && *u.get() == Unmatched::Allow
    {
        l.add(
            None,
            u,
            Code::UnmatchedAllow,
            "requests that match no action are forwarded without any check".into(),
        );
    }
    for (r, i) in raw.issuers.iter().zip(&policy.issuers) {
        if i.require_typ.is_none() {
            l.add(
                None,
                &r.issuer,
                Code::IssuerWithoutTyp,
                format!(
                    "issuer `{}` has no `require_typ`: any JWT it signs for these audiences is accepted, ID tokens included",
                    i.issuer
                ),
            );
        }
        if i.leeway > LONGEST_LEEWAY
            && let Some(at) = &r.leeway
        {
            l.add(
                None,
                at,
                Code::LongLeeway,
                format!(
                    "leeway of {}s keeps expired tokens working that long",
                    i.leeway.as_secs()
                ),
            );
        }
    }
    for (r, a) in raw.actions.iter().zip(&policy.actions) {
        action(&mut l, policy, r, a);
    }
    shadowed(&mut l, raw, policy);
    l.found.sort_by_key(|f| (f.line, f.col, f.code));
    l.found
}

fn action(l: &mut Lints<'_>, policy: &Policy, r: &RawAction, a: &Action) {
    let name = &a.name;
    if a.execution
        && let Some(m) = &a.mcp
        && m.kind == crate::policy::mcp::McpKind::Tool
        && m.pattern.contains('*')
        && let Some(at) = r.mcp.as_ref().and_then(|b| b.get().tool.as_ref())
    {
        l.add(
            Some(r),
            at,
            Code::ExecutionToolGlob,
            format!(
                "execution action `{name}` takes every tool matching `{}`, including tools the server adds later",
                m.pattern
            ),
        );
    }
    let own_delegation = a.delegation.is_some();
    let delegation = a.delegation.as_ref().unwrap_or(&policy.defaults.delegation);
    let from = if own_delegation {
        ""
    } else {
        " (from `defaults`)"
    };
    if delegation.mode != DelegationMode::Forbid && !a.public {
        if delegation.max_age.is_none() {
            l.add(
                Some(r),
                &r.name,
                Code::DelegationWithoutMaxAge,
                format!("action `{name}` accepts delegated tokens{from} of any age"),
            );
        }
        let everyone = |g: &str| !g.is_empty() && g.chars().all(|c| c == '*');
        let own_glob = r
            .delegation
            .as_ref()
            .and_then(|d| d.actors.as_ref())
            .and_then(|globs| globs.iter().find(|g| everyone(g.get())));
        match (&delegation.actors, own_glob) {
            (_, Some(g)) => l.add(
                Some(r),
                g,
                Code::ActorGlobMatchesAll,
                format!(
                    "actor glob `{}` lets any agent act for action `{name}`",
                    g.get()
                ),
            ),
            (None, None) => l.add(
                Some(r),
                &r.name,
                Code::ActorGlobMatchesAll,
                format!(
                    "action `{name}` accepts delegated tokens{from} from any actor (no `actors`)"
                ),
            ),
            (Some(globs), None) if globs.iter().any(|g| everyone(g)) => l.add(
                Some(r),
                &r.name,
                Code::ActorGlobMatchesAll,
                format!("action `{name}` accepts delegated tokens{from} from any actor"),
            ),
            _ => {}
        }
    }
    if a.execution {
        if a.require.scopes.is_empty() && a.require.any_scope.is_empty() {
            l.add(
                Some(r),
                &r.name,
                Code::ExecutionWithoutScopes,
                format!("execution action `{name}` requires no scope: any valid token may run it"),
            );
        }
        if a.mode.unwrap_or(policy.defaults.mode) == Mode::Audit {
            let how = if a.mode.is_some() {
                ""
            } else {
                " (from `defaults`)"
            };
            let message = format!(
                "execution action `{name}` is in audit mode{how}: its denials are logged and forwarded"
            );
            match &r.mode {
                Some(m) => l.add(Some(r), m, Code::AuditModeExecution, message),
                None => l.add(Some(r), &r.name, Code::AuditModeExecution, message),
            }
        }
        if matches!(a.methods, Methods::Any) {
            l.add(
                Some(r),
                &r.methods,
                Code::ExecutionAnyMethod,
                format!("execution action `{name}` is reachable by every method (`\"*\"`)"),
            );
        }
        if policy.forward_token {
            l.add(
                Some(r),
                &r.name,
                Code::ForwardTokenExecution,
                format!(
                    "the caller's bearer token is forwarded to the backend of execution action `{name}`, which could replay it elsewhere"
                ),
            );
        }
    }
    let rests: Vec<&str> = a
        .template
        .segments
        .iter()
        .filter_map(|s| match s {
            Segment::Rest(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    for (claim, rule) in &a.require.claims {
        if let ClaimRule::Param(p) = rule
            && rests.contains(&p.as_str())
            && let Some(at) = r.require.as_ref().and_then(|req| req.claims.get(claim))
        {
            l.add(
                Some(r),
                at,
                Code::ClaimBoundToRest,
                format!(
                    "claim `{claim}` is bound to `{{*{p}}}`, which captures several segments (`acme/x` never equals a tenant)"
                ),
            );
        }
    }
}

/// A host-less action is shadowed on a host where a host-bound action's
/// template matches every path it matches, for some of its methods: a matching
/// host decides before template specificity (SPEC settled questions).
fn shadowed(l: &mut Lints<'_>, raw: &RawConfig, policy: &Policy) {
    let case_sensitive = policy.requests.case_sensitive;
    for (r, b) in raw.actions.iter().zip(&policy.actions) {
        if b.host.is_some() {
            continue;
        }
        for a in &policy.actions {
            let Some(host) = &a.host else { continue };
            let methods = overlap(&a.methods, &b.methods);
            if methods.is_empty() || !covers(&a.template, &b.template, case_sensitive) {
                continue;
            }
            l.add(
                Some(r),
                &r.path,
                Code::ShadowedTemplate,
                format!(
                    "on host `{host}`, action `{}` ({} at {}:{}:{}) takes every {} request this action matches: a matching host decides before template specificity",
                    a.name,
                    a.template.source,
                    l.file,
                    a.location.0,
                    a.location.1,
                    methods.join("/")
                ),
            );
        }
    }
}

/// The methods both accept (`*` for "every method" on both sides).
fn overlap(a: &Methods, b: &Methods) -> Vec<String> {
    match (a, b) {
        (Methods::Any, Methods::Any) => vec!["*".into()],
        (Methods::Any, Methods::List(l)) => l.clone(),
        (Methods::List(l), Methods::Any) => l.clone(),
        (Methods::List(x), Methods::List(y)) => {
            x.iter().filter(|m| y.contains(m)).cloned().collect()
        }
    }
}

/// Whether every path `b` matches is matched by `a`.
fn covers(a: &Template, b: &Template, case_sensitive: bool) -> bool {
    let lit = |x: &str, y: &str| {
        if case_sensitive {
            x == y
        } else {
            x.eq_ignore_ascii_case(y)
        }
    };
    let (sa, sb) = (&a.segments, &b.segments);
    for (i, s) in sa.iter().enumerate() {
        match (s, sb.get(i)) {
            // `{*rest}` takes one segment or more: `b` must still have one here.
            (Segment::Rest(_), Some(_)) => return true,
            (_, None) => return false,
            (Segment::Literal(x), Some(Segment::Literal(y))) if lit(x, y) => {}
            (Segment::Literal(_), Some(_)) => return false,
            (Segment::Param(_), Some(Segment::Rest(_))) => return false,
            (Segment::Param(_), Some(_)) => {}
        }
    }
    sa.len() == sb.len()
}
