//! Stage 1: normalize the request target (SPEC: Normalization). What this returns
//! is both what gets classified and what gets forwarded, so the proxy and the
//! backend can never disagree about which resource is addressed.

use crate::decision::{Denial, Reason};

/// Request target limit (SPEC settled questions: > 8 KiB is 414).
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Reject,
    Keep,
}

/// How single segments are treated: `%2F` and `;` (also `%3B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentPolicy {
    pub encoded_slash: Choice,
    pub semicolon: Choice,
}

impl SegmentPolicy {
    pub fn permissive() -> Self {
        SegmentPolicy {
            encoded_slash: Choice::Keep,
            semicolon: Choice::Keep,
        }
    }
}

/// The path rules of `requests:` that shape the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathPolicy {
    pub segment: SegmentPolicy,
    pub strict_trailing_slash: bool,
}

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

fn bad(detail: &str) -> Denial {
    Denial::new(Reason::BadRequest, detail)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// Normalizes one raw segment (no `/` inside): decodes unreserved escapes once,
/// uppercases the hex of the others, refuses what a backend could read differently.
pub fn normalize_segment(raw: &[u8], policy: &SegmentPolicy) -> Result<String, Denial> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(bad("invalid percent-escape in path"));
            };
            let d = h << 4 | l;
            i += 3;
            if is_unreserved(d) {
                out.push(d as char);
            } else if d == b'/' {
                if policy.encoded_slash == Choice::Reject {
                    return Err(bad("encoded slash (%2F) in path"));
                }
                push_escaped(&mut out, d);
            } else if d == b'\\' {
                return Err(bad("encoded backslash (%5C) in path"));
            } else if d < 0x20 || d == 0x7f {
                return Err(bad("encoded control character in path"));
            } else if d == b';' {
                if policy.semicolon == Choice::Reject {
                    return Err(bad("encoded semicolon (%3B) in path"));
                }
                push_escaped(&mut out, d);
            } else {
                push_escaped(&mut out, d);
            }
            continue;
        }
        i += 1;
        match b {
            b'\\' => return Err(bad("backslash in path")),
            b'#' => return Err(bad("fragment in request target")),
            b';' if policy.semicolon == Choice::Reject => {
                return Err(bad("semicolon (matrix parameter) in path"));
            }
            0..=0x20 | 0x7f => return Err(bad("control character or space in path")),
            0x80..=0xff => push_escaped(&mut out, b),
            _ => out.push(b as char),
        }
    }
    Ok(out)
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
    let mut stack: Vec<String> = Vec::new();
    let mut trailing = body.ends_with('/');
    let parts: Vec<&str> = body.split('/').collect();
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        let seg = normalize_segment(part.as_bytes(), &policy.segment)?;
        // `%3B` counts as `;` here: containers decode it before stripping parameters.
        let cut = [seg.find(';'), seg.find("%3B")].into_iter().flatten().min();
        let bare = cut.map_or(seg.as_str(), |i| &seg[..i]);
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
        if dot.is_some() && i == last {
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

/// A normalized path segment (or `{*rest}` value) as the backend's router
/// decodes it: every `%XX` to its byte, `+` left alone (it is literal in a
/// path). `None` when the bytes are not UTF-8: such a value cannot equal a claim.
pub fn decode_path_value(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn decode_component(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                match (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
