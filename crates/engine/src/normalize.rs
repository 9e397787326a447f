//! Stage 1: normalize the request target (SPEC: Normalization). What this returns
//! is both what gets classified and what gets forwarded, so the proxy and the
//! backend can never disagree about which resource is addressed.

use std::borrow::Cow;

use crate::decision::{Denial, Reason, Staged, Steps};
use crate::escape::{bad, decode_component, normalize_segment};
use crate::policy::Policy;
use crate::request::{Origin, Request};
use crate::vocab::{
    Choice, MAX_HEADER_FIELDS, METHOD_OVERRIDE_HEADERS, PathPolicy, STANDARD_METHODS,
    URL_OVERRIDE_HEADERS, header_is, parse_host,
};

/// Request target limit (SPEC settled questions: > 8 KiB is 414).
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// A normalized origin-form target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedTarget {
    /// Normalized path: starts with `/`, no `//`, no dot segments.
    pub path: String,
    /// The query exactly as the client sent it (without `?`).
    pub query: Option<String>,
}

impl NormalizedTarget {
    /// Segments for classification; a strict trailing slash is an empty last segment.
    pub fn segments(&self) -> Vec<&str> {
        if self.path == "/" {
            return Vec::new();
        }
        self.path[1..].split('/').collect()
    }

    /// Path and query as forwarded.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }
}

/// What normalization hands on.
#[derive(Debug)]
pub struct Normalized {
    /// The target to classify and to forward.
    pub target: NormalizedTarget,
    /// The form body to forward instead of the client's, when `method_override:
    /// strip` removed `_method` pairs from it.
    pub form_body: Option<Vec<u8>>,
}

/// The normalize stage: method and header rules, the target, then the override
/// inputs (`_method` in the query or a form body).
pub fn normalize(policy: &Policy, req: &Request<'_>) -> Staged<Normalized> {
    Staged::run(|steps| {
        // A passing request-level check is not listed (explain shows the target first).
        if let Err(e) = admit(policy, req) {
            steps.ran("normalize", "request");
            return Err(e);
        }
        run(policy, req, steps)
    })
}

fn run(policy: &Policy, req: &Request<'_>, steps: &mut Steps) -> Result<Normalized, Denial> {
    steps.ran("normalize", "target");
    let mut target = normalize_target(req.target, &policy.requests.path)?;
    steps.ran("normalize", "override inputs");
    let reject = refuses_method_override(policy, req);
    if let Some(q) = &target.query
        && query_has_method_override(q)
    {
        if reject {
            return Err(Denial::new(
                Reason::MethodOverride,
                "`_method` query parameter is refused",
            ));
        }
        target.query = strip_method_override(q);
    }
    let mut form_body = None;
    if let Some(body) = req.form_body
        && form_has_method_override(body)
    {
        let stripped = (!reject)
            .then(|| strip_form_method_override(body))
            .flatten();
        match stripped {
            Some(b) => form_body = Some(b),
            None => {
                return Err(Denial::new(
                    Reason::MethodOverride,
                    "`_method` in a form body is refused",
                ));
            }
        }
    }
    if req.origin == Origin::FrontDoor {
        steps.ran("normalize", "front door: target as sent");
        front_door_target(req.target, &target)?;
    }
    Ok(Normalized { target, form_body })
}

/// A front door's mesh or ingress forwards its own copy of the request, not
/// writ's normalized one: the decision holds for the backend only when
/// normalization left the target exactly as sent (SPEC: Front doors).
fn front_door_target(sent: &str, normalized: &NormalizedTarget) -> Result<(), Denial> {
    if normalized.path_and_query() == sent {
        return Ok(());
    }
    Err(Denial::new(
        Reason::BadRequest,
        format!(
            "front door: the target is not in normal form (normalized: `{}`); \
             the proxy in front must normalize paths before asking writ",
            normalized.path
        ),
    ))
}

/// Whether `_method` (and the override headers) are refused rather than
/// stripped: always at a front door, which cannot strip what it does not forward.
fn refuses_method_override(policy: &Policy, req: &Request<'_>) -> bool {
    policy.requests.method_override == Choice::Reject || req.origin == Origin::FrontDoor
}

/// Method rules and header rules that hold before the target is looked at.
fn admit(policy: &Policy, req: &Request<'_>) -> Result<(), Denial> {
    let m = req.method;
    if m == "CONNECT" || m == "TRACE" {
        return Err(Denial::new(
            Reason::MethodNotAllowed,
            format!("{m} is never allowed"),
        ));
    }
    // `delete` or `Get` is neither DELETE nor an extension method: frameworks
    // that upper-case methods (Werkzeug, Django) would run the DELETE handler,
    // so a case variant never reaches a `*` action (round-two settlement).
    if !STANDARD_METHODS.contains(&m)
        && (STANDARD_METHODS.iter().any(|s| s.eq_ignore_ascii_case(m))
            || m.eq_ignore_ascii_case("CONNECT")
            || m.eq_ignore_ascii_case("TRACE"))
    {
        return Err(Denial::new(
            Reason::MethodNotAllowed,
            "method names are case-sensitive: a case variant of a standard method is refused",
        ));
    }
    if !STANDARD_METHODS.contains(&m) && !policy.named_methods.contains(m) && !policy.any_method {
        return Err(Denial::new(
            Reason::MethodNotAllowed,
            "method is neither standard nor named by any action",
        ));
    }
    if let Some(h) = req.host
        && parse_host(h).is_none()
    {
        return Err(Denial::new(Reason::BadRequest, "malformed Host"));
    }
    // HTTP/1 heads over 100 fields never get here (hyper answers 431); HTTP/2
    // has only a byte limit, so the field count is enforced here.
    if req.headers.len() > MAX_HEADER_FIELDS {
        return Err(
            Denial::new(Reason::BadRequest, "more than 100 header fields").with_status(431),
        );
    }
    let mut auth = 0;
    let mut hosts = 0;
    for (name, _) in req.headers.iter() {
        let n = name.as_str();
        if n == "authorization" {
            auth += 1;
        } else if n == "host" {
            hosts += 1;
        } else if refuses_method_override(policy, req)
            && METHOD_OVERRIDE_HEADERS.iter().any(|h| header_is(n, h))
        {
            return Err(Denial::new(
                Reason::MethodOverride,
                "method override headers are refused",
            ));
        } else if (policy.requests.url_override == Choice::Reject
            || req.origin == Origin::FrontDoor)
            && URL_OVERRIDE_HEADERS.iter().any(|h| header_is(n, h))
        {
            return Err(Denial::new(
                Reason::UrlOverride,
                "URL override headers are refused",
            ));
        }
    }
    // Only `chunked` is decoded (by hyper); any other coding would reach the
    // backend relabelled as plain content (RFC 9112 §6.1: 501).
    for v in req.headers.get_all(http::header::TRANSFER_ENCODING) {
        let ok = v.to_str().is_ok_and(|v| {
            v.split(',')
                .all(|c| c.trim().eq_ignore_ascii_case("chunked"))
        });
        if !ok {
            return Err(Denial::new(
                Reason::BadRequest,
                "only the chunked transfer coding is supported",
            )
            .with_status(501));
        }
    }
    if auth > 1 {
        return Err(Denial::new(
            Reason::BadRequest,
            "more than one Authorization header",
        ));
    }
    if hosts > 1 {
        return Err(Denial::new(Reason::BadRequest, "more than one Host header"));
    }
    Ok(())
}

/// Bytes `normalize_segment` copies unchanged whatever the policy: visible
/// ASCII but `%` (decoded), `\\` and `#` (refused) and `;` (policy-dependent).
fn copied_as_is(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !matches!(b, b'%' | b'\\' | b'#' | b';')
}

/// Normalizes an origin-form request target (SPEC: Normalization).
pub fn normalize_target(raw: &str, policy: &PathPolicy) -> Result<NormalizedTarget, Denial> {
    if raw.len() > MAX_TARGET_BYTES {
        return Err(bad("request target longer than 8 KiB").with_status(414));
    }
    if raw == "*" {
        return Err(bad("asterisk-form request target"));
    }
    if !raw.starts_with('/') {
        return Err(bad("request target must be origin-form (start with `/`)"));
    }
    let (path, query) = match raw.find('?') {
        Some(q) => (&raw[..q], Some(&raw[q + 1..])),
        None => (raw, None),
    };
    if path.contains('#') || query.is_some_and(|q| q.contains('#')) {
        return Err(bad("fragment in request target"));
    }
    if let Some(q) = query
        && q.bytes().any(|b| b < 0x20 || b == 0x7f)
    {
        return Err(bad("control character in query"));
    }
    let body = &path[1..];
    let mut stack: Vec<Cow<'_, str>> = Vec::with_capacity(8);
    let mut trailing = body.ends_with('/');
    let mut parts = body.split('/').peekable();
    while let Some(part) = parts.next() {
        let is_last = parts.peek().is_none();
        if part.is_empty() {
            continue;
        }
        // A segment of bytes `normalize_segment` copies as they are is borrowed
        // (no allocation per segment); anything else goes through it.
        let seg = if part.bytes().all(copied_as_is) {
            Cow::Borrowed(part)
        } else {
            Cow::Owned(normalize_segment(part.as_bytes(), &policy.segment)?)
        };
        // `%3B` counts as `;` here: containers decode it before stripping parameters.
        let cut = [seg.find(';'), seg.find("%3B")].into_iter().flatten().min();
        let bare = cut.map_or(&*seg, |i| &seg[..i]);
        let dot = match bare {
            "." | ".." if bare.len() != seg.len() => {
                // `..;x` is `..` to servlet containers (Shiro CVE-2020-1957): a
                // dot segment carrying parameters is refused, never forwarded.
                return Err(bad("dot segment with parameters in path"));
            }
            "." => Some(false),
            ".." => Some(true),
            _ => None,
        };
        match dot {
            Some(false) => {}
            Some(true) => {
                if stack.pop().is_none() {
                    return Err(bad("path climbs above the root"));
                }
            }
            None => stack.push(seg),
        }
        if dot.is_some() && is_last {
            trailing = true;
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (trailing && policy.strict_trailing_slash) {
        out.push('/');
    }
    // Escaping can grow a path threefold: the limit holds for what is forwarded too.
    if out.len() + query.map_or(0, |q| q.len() + 1) > MAX_TARGET_BYTES {
        return Err(bad("normalized request target longer than 8 KiB").with_status(414));
    }
    Ok(NormalizedTarget {
        path: out,
        query: query.map(str::to_string),
    })
}

/// Whether a query carries a `_method` parameter (SPEC: override inputs). Names
/// are canonicalized the way backends do before comparing: percent-decoded, `+`
/// as space, leading spaces dropped, `.`, space and `[` read as `_` (PHP), any
/// case; pairs split on `&` and `;` (older query parsers).
pub fn query_has_method_override(query: &str) -> bool {
    query_pairs(query).any(|p| is_method_override_pair(&p))
}

/// The query without its `_method` parameters (for `method_override: strip`);
/// every other byte, separators included, is kept as sent.
pub fn strip_method_override(query: &str) -> Option<String> {
    let mut out = String::with_capacity(query.len());
    let mut removed = false;
    let mut start = 0;
    for (i, c) in query
        .char_indices()
        .chain(std::iter::once((query.len(), '&')))
    {
        if c != '&' && c != ';' {
            continue;
        }
        let pair = &query[start..i];
        if is_method_override_pair(&pair) {
            removed = true;
        } else {
            if !out.is_empty() {
                // the separator that preceded this pair in the original
                out.push_str(&query[start - 1..start]);
            }
            out.push_str(pair);
        }
        start = i + 1;
    }
    if !removed {
        return Some(query.to_string());
    }
    if out.is_empty() { None } else { Some(out) }
}

fn query_pairs(query: &str) -> impl Iterator<Item = &str> {
    query.split(['&', ';'])
}

fn is_method_override_pair(pair: &&str) -> bool {
    let name = decode_component(pair.split('=').next().unwrap_or(""));
    // PHP cuts a name at NUL; other parsers trim trailing whitespace or control
    // bytes: whatever such a framework would still read as `_method` counts.
    let name = name.split('\0').next().unwrap_or("");
    let name = name
        .trim_start_matches(' ')
        .trim_end_matches(|c: char| c.is_whitespace() || c.is_control());
    let canonical: String = name
        .chars()
        .map(|c| match c {
            '.' | ' ' | '[' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    // `_method[]` / `_method[x]`: PHP builds an array that some frameworks read.
    canonical == "_method" || (canonical.starts_with("_method_") && name[7..].starts_with('['))
}

/// Whether an `application/x-www-form-urlencoded` body carries `_method`
/// (Rails, Laravel and Symfony read it from the body of a POST), with the same
/// name folding as the query.
pub fn form_has_method_override(body: &[u8]) -> bool {
    query_has_method_override(&String::from_utf8_lossy(body))
}

/// The form body without its `_method` pairs, for `method_override: strip`;
/// `None` when it cannot be rewritten faithfully (not UTF-8).
pub fn strip_form_method_override(body: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(body).ok()?;
    Some(strip_method_override(s).unwrap_or_default().into_bytes())
}

#[cfg(test)]
mod tests;
