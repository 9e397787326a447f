//! The body-reading parts of a config (SPEC: Request bodies): `max_json_body`,
//! `body: json`, `mcp:` blocks and their endpoints, `{body.*}` / `{args.*}`
//! bindings, `authorization_details`, `protected_resource`.

use std::collections::{BTreeMap, HashMap};

use super::Ctx;
use super::raw::{self, RawClaimScalar, Sp};
use crate::json::DEFAULT_MAX_JSON_BODY;
use crate::policy::mcp::{McpGroup, McpKind, McpMatch};
use crate::policy::{Action, AuthorizationDetails, ClaimRule, ProtectedResource};
use crate::vocab::ClaimScalar;

/// `requests.max_json_body`.
pub(super) fn max_json_body(cx: &mut Ctx<'_>, v: &Option<Sp<raw::RawSize>>) -> usize {
    let Some(v) = v else {
        return DEFAULT_MAX_JSON_BODY;
    };
    let n = match v.get() {
        raw::RawSize::Bytes(n) => Some(*n),
        raw::RawSize::Text(t) => parse_size(t),
    };
    match n.and_then(|n| usize::try_from(n).ok()) {
        Some(n) if n >= 64 => n,
        Some(_) => {
            cx.err(v, "max_json_body must be at least 64 bytes");
            DEFAULT_MAX_JSON_BODY
        }
        None => {
            cx.err(
                v,
                "max_json_body must be a number of bytes or a size like `512KiB`, `1MiB`",
            );
            DEFAULT_MAX_JSON_BODY
        }
    }
}

fn parse_size(t: &str) -> Option<u64> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The `mcp:` block of an action (exactly one key), checked.
pub(super) fn mcp_block(cx: &mut Ctx<'_>, a: &raw::RawAction) -> Result<Option<McpMatch>, ()> {
    let Some(m) = &a.mcp else {
        return Ok(None);
    };
    let r = m.get();
    let named: Vec<(McpKind, &Sp<String>)> = [
        (McpKind::Tool, &r.tool),
        (McpKind::Method, &r.method),
        (McpKind::Resource, &r.resource),
        (McpKind::Prompt, &r.prompt),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let [(kind, pattern)] = named.as_slice() else {
        cx.err(
            m,
            "`mcp` names exactly one of `tool`, `method`, `resource`, `prompt`",
        );
        return Err(());
    };
    let text = pattern.get();
    if text.is_empty() || text.chars().any(char::is_control) {
        cx.err(
            *pattern,
            format!("`mcp.{}` must be a non-empty name", kind.key()),
        );
        return Err(());
    }
    if *kind == McpKind::Method
        && let Some(own) = McpMatch::reserved_method(text)
    {
        cx.err(
            *pattern,
            format!(
                "`{text}` is classified by `mcp.{}`, not `mcp.method`",
                own.key()
            ),
        );
        return Err(());
    }
    let methods = a.methods.get();
    if !(methods.len() == 1 && methods[0].get() == "POST") {
        cx.err(
            &a.methods,
            "an `mcp` action takes `methods: [POST]` (GET and DELETE on the endpoint are ordinary path actions)",
        );
        return Err(());
    }
    Ok(Some(McpMatch::new(*kind, text)))
}

/// A claim or `authorization_details` value: a literal, `{param}`, `{body.a.b}`
/// or (MCP tools) `{args.NAME}`.
pub(super) fn binding(
    cx: &mut Ctx<'_>,
    v: &Sp<RawClaimScalar>,
    what: &str,
    a: &raw::RawAction,
    params: &[String],
    mcp: Option<&McpMatch>,
) -> Option<ClaimRule> {
    let s = match v.get() {
        RawClaimScalar::Str(s) if s.starts_with('{') && s.ends_with('}') => &s[1..s.len() - 1],
        other => return Some(ClaimRule::Equals(ClaimScalar::from(other.clone()))),
    };
    let reads_body = a.body.is_some() || mcp.is_some();
    if let Some(path) = s.strip_prefix("body.") {
        if !reads_body {
            cx.err(
                v,
                format!("{what} binds to `{{{s}}}`, but the action does not say `body: json`"),
            );
            return None;
        }
        return dotted(cx, v, path).map(ClaimRule::Body);
    }
    if let Some(name) = s.strip_prefix("args.") {
        if mcp.is_none_or(|m| m.kind != McpKind::Tool) {
            cx.err(
                v,
                format!("{what} binds to `{{{s}}}`, but only an `mcp.tool` action has arguments"),
            );
            return None;
        }
        if name.is_empty() || name.contains('.') {
            cx.err(v, "`{args.NAME}` names one top-level tool argument");
            return None;
        }
        return Some(ClaimRule::Body(vec![
            "params".into(),
            "arguments".into(),
            name.into(),
        ]));
    }
    let p = s.strip_prefix('*').unwrap_or(s);
    if !params.iter().any(|n| n == p) {
        cx.err(
            v,
            format!(
                "{what} binds to `{{{p}}}`, which path `{}` does not have",
                a.path.get()
            ),
        );
        return None;
    }
    Some(ClaimRule::Param(p.to_string()))
}

fn dotted<T>(cx: &mut Ctx<'_>, at: &Sp<T>, path: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        cx.err(at, format!("`{path}` is not a dotted name (`a.b.c`)"));
        return None;
    }
    Some(parts)
}

/// `require.authorization_details`.
pub(super) fn authorization_details(
    cx: &mut Ctx<'_>,
    r: &raw::RawAuthorizationDetails,
    a: &raw::RawAction,
    params: &[String],
    mcp: Option<&McpMatch>,
) -> Option<AuthorizationDetails> {
    if r.kind.get().is_empty() {
        cx.err(&r.kind, "`authorization_details.type` must not be empty");
        return None;
    }
    let mut ok = true;
    let mut list = |cx: &mut Ctx<'_>, m: &BTreeMap<String, Sp<RawClaimScalar>>, what: &str| {
        let mut out = Vec::new();
        for (field, v) in m {
            let label = format!("authorization_details.{what} `{field}`");
            let path = dotted(cx, v, field);
            match (path, binding(cx, v, &label, a, params, mcp)) {
                (Some(p), Some(rule)) => out.push((p, rule)),
                _ => ok = false,
            }
        }
        out
    };
    let matches = list(cx, &r.matches, "match");
    let limits = list(cx, &r.limits, "limits");
    for (field, v) in &r.limits {
        if matches!(v.get(), RawClaimScalar::Bool(_)) {
            cx.err(v, format!("limit `{field}` must be a number or a binding"));
            ok = false;
        }
    }
    ok.then(|| AuthorizationDetails {
        kind: r.kind.get().clone(),
        matches,
        limits,
    })
}

/// Builds the MCP endpoints while actions are added: an `mcp:` action whose
/// host and path already have an `mcp:` action joins that endpoint instead of
/// entering the router.
#[derive(Default)]
pub(super) struct Endpoints {
    by_route: HashMap<(Option<String>, String), usize>,
    pub(super) groups: Vec<McpGroup>,
}

impl Endpoints {
    /// `Some(group)` when `action` joined an existing endpoint (it must not
    /// enter the router); `None` when it goes into the router (and, for an
    /// `mcp:` action, opens a new endpoint: call [`Endpoints::open`] after).
    pub(super) fn join(
        &mut self,
        cx: &mut Ctx<'_>,
        a: &raw::RawAction,
        action: &mut Action,
        idx: usize,
        actions: &[Action],
    ) -> Result<Option<usize>, ()> {
        let Some(m) = &action.mcp else {
            return Ok(None);
        };
        let key = (action.host.clone(), action.template.source.clone());
        let Some(&g) = self.by_route.get(&key) else {
            return Ok(None);
        };
        for (other, i) in &self.groups[g].members {
            if other.same_shape(m) {
                let o = &actions[*i];
                cx.err(
                    a.mcp.as_ref().ok_or(())?,
                    format!(
                        "action `{}` conflicts with action `{}` at {}:{}:{}: the same `mcp.{}` shape on the same endpoint",
                        action.name,
                        o.name,
                        cx.file,
                        o.location.0,
                        o.location.1,
                        m.kind.key()
                    ),
                );
                return Err(());
            }
        }
        self.groups[g].members.push((m.clone(), idx));
        action.mcp_group = Some(g);
        Ok(Some(g))
    }

    /// A new endpoint whose first action is `action` (already in the router).
    pub(super) fn open(&mut self, action: &mut Action, idx: usize) {
        let Some(m) = &action.mcp else {
            return;
        };
        let g = self.groups.len();
        self.groups.push(McpGroup {
            members: vec![(m.clone(), idx)],
        });
        self.by_route
            .insert((action.host.clone(), action.template.source.clone()), g);
        action.mcp_group = Some(g);
    }
}

/// `protected_resource:`, with `scopes_supported` from the actions.
pub(super) fn protected_resource(
    cx: &mut Ctx<'_>,
    p: &Sp<raw::RawProtectedResource>,
    actions: &[Action],
) -> ProtectedResource {
    let r = p.get();
    let url = r.resource.get();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let (origin, path) = match rest {
        Some(rest) if !rest.is_empty() && !url.contains('#') && !url.contains('?') => {
            let cut = rest.find('/').unwrap_or(rest.len());
            let scheme_len = url.len() - rest.len();
            (&url[..scheme_len + cut], &rest[cut..])
        }
        _ => {
            cx.err(
                &r.resource,
                "`resource` must be an http(s) URL without query or fragment",
            );
            ("", "")
        }
    };
    if r.authorization_servers.is_empty() {
        cx.err(
            p,
            "`authorization_servers` must list at least one issuer URL",
        );
    }
    for s in &r.authorization_servers {
        if !(s.get().starts_with("https://") || s.get().starts_with("http://")) {
            cx.err(s, "an authorization server is an http(s) URL");
        }
    }
    let path = path.trim_end_matches('/');
    let metadata_path = format!("/.well-known/oauth-protected-resource{path}");
    let mut scopes: Vec<String> = actions
        .iter()
        .flat_map(|a| a.require.scopes.iter().chain(&a.require.any_scope).cloned())
        .collect();
    scopes.sort();
    scopes.dedup();
    ProtectedResource {
        resource: url.clone(),
        authorization_servers: r
            .authorization_servers
            .iter()
            .map(|s| s.get().clone())
            .collect(),
        scopes_supported: scopes,
        metadata_url: format!("{origin}{metadata_path}"),
        metadata_path,
    }
}
