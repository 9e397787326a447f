//! The shared vocabulary of the engine: the words every stage and the config
//! loader use (modes, request-shaping choices, claim scalars, methods, header
//! and host spelling rules, globs). It imports nothing from the engine, and
//! everything else may import it.

/// Whether a denial is enforced or only recorded (audit mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Denials are refused.
    Enforce,
    /// Denials are logged and counted, and the request is forwarded.
    Audit,
}

/// What an action accepts of delegated (RFC 8693 `act`) tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelegationMode {
    /// Delegated tokens are refused.
    Forbid,
    /// Delegated and direct tokens are accepted.
    Allow,
    /// Only delegated tokens are accepted.
    Require,
}

/// A claim's expected value: YAML scalars only.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimScalar {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Reject or keep something a backend could read two ways.
pub enum Choice {
    /// Refuse the request (400).
    Reject,
    /// Keep it (for override inputs: strip it and forward).
    Keep,
}

/// How single segments are treated: `%2F` and `;` (also `%3B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentPolicy {
    /// `%2F` inside a segment.
    pub encoded_slash: Choice,
    /// `;` (matrix parameters), also `%3B`.
    pub semicolon: Choice,
}

impl SegmentPolicy {
    /// Keep both (template parsing: only the form matters).
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
    /// What is refused inside one segment (`%2F`, `;`).
    pub segment: SegmentPolicy,
    /// Whether `/a/` differs from `/a`.
    pub strict_trailing_slash: bool,
}

/// Standard methods: any other method must be named by an action (SPEC).
pub const STANDARD_METHODS: [&str; 7] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

/// SPEC: more than 100 header fields is 431.
pub const MAX_HEADER_FIELDS: usize = 100;

/// Client headers that make some backends execute another method.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
/// Client headers that make some backends route to another URL.
pub const URL_OVERRIDE_HEADERS: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// Header names are compared case-insensitively with `_` and `.` read as `-`,
/// the way CGI/WSGI and PHP backends fold them into `HTTP_X_WRIT_SUBJECT`
/// (oauth2-proxy CVE-2025-64484).
pub fn header_is(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || ((a == b'_' || a == b'.') && b == b'-'))
}

/// Parses a `Host` / `:authority` strictly (SPEC: classify what the backend
/// executes, or refuse): a DNS name (letters, digits, `-`, `_`, non-empty labels,
/// at most one trailing dot), an IPv4 address or a bracketed IPv6 literal,
/// optionally `:` and 1-5 digits. Returns the canonical host (lowercase, no
/// trailing dot) and the port text; `None` for anything a backend could read
/// differently (`host:abc`, `host:1:2`, `user@host`, `host..`).
pub fn parse_host(h: &str) -> Option<(String, Option<&str>)> {
    let (name, port) = if let Some(rest) = h.strip_prefix('[') {
        let end = rest.find(']')?;
        let lit = &rest[..end];
        if lit.is_empty()
            || !lit
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        (&h[..end + 2], port)
    } else {
        match h.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (h, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    if !name.starts_with('[') {
        let bare = name.strip_suffix('.').unwrap_or(name);
        if bare.is_empty()
            || bare.split('.').any(|l| {
                l.is_empty()
                    || !l
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
        {
            return None;
        }
        return Some((bare.to_ascii_lowercase(), port));
    }
    Some((name.to_ascii_lowercase(), port))
}

/// Normalizes a host for matching: lowercase, no port, no trailing dot.
pub fn normalize_host(h: &str) -> String {
    let h = h.trim();
    let no_port = if let Some(rest) = h.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => &h[..end + 2],
            None => h,
        }
    } else {
        match h.rfind(':') {
            Some(i) if h[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &h[..i],
            _ => h,
        }
    };
    no_port.trim_end_matches('.').to_ascii_lowercase()
}

/// Anchored glob: `*` matches any run of characters, everything else literally.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let p = pattern.as_bytes();
    let t = s.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_host_syntax() {
        assert_eq!(
            parse_host("API.example.com."),
            Some(("api.example.com".into(), None))
        );
        assert_eq!(parse_host("a.b:8443"), Some(("a.b".into(), Some("8443"))));
        assert_eq!(parse_host("[::1]:80"), Some(("[::1]".into(), Some("80"))));
        assert_eq!(parse_host("10.0.0.1"), Some(("10.0.0.1".into(), None)));
        for bad in [
            "a.b:abc",
            "a.b:443:443",
            "u@a.b",
            "a.b..",
            "a..b",
            "",
            ":80",
            "a.b:",
            "[::1",
            "[zz]",
            "a b",
            "a.b:123456",
        ] {
            assert_eq!(parse_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(normalize_host("API.Example.com."), "api.example.com");
        assert_eq!(normalize_host("api.example.com:8443"), "api.example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
    }

    #[test]
    fn globs_are_anchored() {
        assert!(glob_match("agent:ci-*", "agent:ci-7"));
        assert!(!glob_match("agent:ci-*", "xagent:ci-7"));
        assert!(!glob_match("svc:copilot", "svc:copilot2"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b", "aXXbY"));
    }
}
