//! Rejections on the wire: status, `WWW-Authenticate`, `Allow` and an RFC 9457
//! problem+json body, all derived from the [`Denial`] (one mapping, no side effects).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::json;

use super::Body;
use writ_engine::Policy;
use writ_engine::classify::body::McpCall;
use writ_engine::decision::{Denial, Reason};

/// `Denial::www_authenticate` for `no_token` (pinned equal by a test below).
const NO_TOKEN_CHALLENGE: &str = r#"Bearer realm="writ""#;

/// The RFC 9457 body of a denial, fields in the order `serde_json::json!` wrote
/// them (sorted), so the bytes are what they were. A struct, not a `json!`
/// value: no map, no owned keys or values per denial. [`problem_body`] writes
/// it by hand (the same bytes, pinned by the tests below); serde serializes it
/// inside a JSON-RPC error.
#[derive(serde::Serialize)]
struct Problem<'a> {
    action: Option<&'a str>,
    detail: &'a str,
    reason: &'static str,
    request_id: &'a str,
    status: u16,
    title: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a> Problem<'a> {
    fn of(denial: &'a Denial, action: Option<&'a str>, request_id: &'a str) -> Problem<'a> {
        Problem {
            action,
            detail: &denial.detail,
            reason: denial.reason.as_str(),
            request_id,
            status: denial.status,
            title: denial.reason.title(),
            kind: "about:blank",
        }
    }
}

/// The RFC 9457 body of a denial (the front doors send it too). Written by
/// hand: a denial is answered at twice the rate of a forwarded request, and
/// serde's per-byte escaping of the strings was a tenth of its cost.
pub fn problem_body(denial: &Denial, action: Option<&str>, request_id: &str) -> Vec<u8> {
    /// A field's value and how it is written.
    enum V<'a> {
        Escaped(Option<&'a str>),
        Plain(&'a str),
        Status(u16),
    }
    let p = Problem::of(denial, action, request_id);
    let fields = [
        ("action", V::Escaped(p.action)),
        ("detail", V::Escaped(Some(p.detail))),
        ("reason", V::Plain(p.reason)),
        ("request_id", V::Escaped(Some(p.request_id))),
        ("status", V::Status(p.status)),
        ("title", V::Plain(p.title)),
        ("type", V::Plain(p.kind)),
    ];
    let mut out = Vec::with_capacity(160 + p.detail.len() + request_id.len());
    for (i, (key, value)) in fields.into_iter().enumerate() {
        out.push(if i == 0 { b'{' } else { b',' });
        plain_str(&mut out, key);
        out.push(b':');
        match value {
            V::Escaped(Some(s)) => json_str(&mut out, s),
            V::Escaped(None) => out.extend_from_slice(b"null"),
            V::Plain(s) => plain_str(&mut out, s),
            V::Status(n) => push_status(&mut out, n),
        }
    }
    out.push(b'}');
    out
}

/// A JSON string as serde_json writes it: copied whole when nothing in it
/// needs escaping (the usual case), else escaped by serde_json itself.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        plain_str(out, s);
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing to a Vec cannot fail; an empty string keeps the JSON whole.
        out.extend_from_slice(b"\"\"");
    }
}

/// A string known to need no escaping, such as writ's own words (a reason, a
/// title, `about:blank`: `every_reason_and_title_is_plain` below), unscanned.
fn plain_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// An HTTP status in decimal, without `to_string`'s allocation.
fn push_status(out: &mut Vec<u8>, n: u16) {
    if (100..1000).contains(&n) {
        let d = |x: u16| b'0' + (x % 10) as u8;
        out.extend_from_slice(&[d(n / 100), d(n / 10), d(n)]);
    } else {
        out.extend_from_slice(n.to_string().as_bytes());
    }
}

pub fn problem(denial: &Denial, action: Option<&str>, request_id: &str) -> Response<Body> {
    let bytes = problem_body(denial, action, request_id);
    let mut resp = Response::new(full(Bytes::from(bytes)));
    *resp.status_mut() = StatusCode::from_u16(denial.status).unwrap_or(StatusCode::FORBIDDEN);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if denial.reason == Reason::NoToken {
        // The one challenge with nothing of the request in it.
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(NO_TOKEN_CHALLENGE),
        );
    } else if let Some(c) = denial.www_authenticate()
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        h.insert(header::WWW_AUTHENTICATE, v);
    }
    if denial.status == 405
        && let Ok(v) = HeaderValue::from_str(&denial.allow.join(", "))
    {
        h.insert(header::ALLOW, v);
    }
    resp
}

pub fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// A rejection as the proxy sends it: problem+json, or on an MCP endpoint a
/// JSON-RPC error whose `data` is the problem object (same status and
/// challenge); with `protected_resource:` every 401 links the RFC 9728
/// metadata (`resource_metadata=`).
pub fn denial(
    denial: &Denial,
    action: Option<&str>,
    request_id: &str,
    mcp: Option<&McpCall>,
    policy: &Policy,
) -> Response<Body> {
    let mut resp = problem(denial, action, request_id);
    if let Some(call) = mcp {
        let body = json!({
            "jsonrpc": "2.0",
            "id": call.id.clone().unwrap_or(serde_json::Value::Null),
            "error": {
                "code": -32001,
                "message": denial.reason.title(),
                "data": serde_json::to_value(Problem::of(denial, action, request_id))
                    .unwrap_or_default(),
            },
        });
        *resp.body_mut() = full(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    link_metadata(&mut resp, policy);
    resp
}

/// Adds `resource_metadata="<url>"` to a 401's challenge (RFC 9728 §5.1).
pub fn link_metadata(resp: &mut Response<Body>, policy: &Policy) {
    let Some(pr) = &policy.protected_resource else {
        return;
    };
    if resp.status() != StatusCode::UNAUTHORIZED {
        return;
    }
    let h = resp.headers_mut();
    let base = h
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(r#"Bearer realm="writ""#)
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&format!(
        r#"{base}, resource_metadata="{}""#,
        pr.metadata_url
    )) {
        h.insert(header::WWW_AUTHENTICATE, v);
    }
}

/// The RFC 9728 document, when `protected_resource:` is set and this is a GET
/// (or HEAD) of its path: served by writ, never forwarded.
pub fn resource_metadata(
    policy: &Policy,
    method: &http::Method,
    target: &str,
) -> Option<Response<Body>> {
    let pr = policy.protected_resource.as_ref()?;
    let path = target.split('?').next().unwrap_or(target);
    if path != pr.metadata_path || !(method == http::Method::GET || method == http::Method::HEAD) {
        return None;
    }
    let doc = json!({
        "resource": pr.resource,
        "authorization_servers": pr.authorization_servers,
        "scopes_supported": pr.scopes_supported,
        "bearer_methods_supported": ["header"],
    });
    let mut resp = Response::new(full(Bytes::from(
        serde_json::to_vec(&doc).unwrap_or_default(),
    )));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_and_title_is_plain() {
        let plain = |s: &str| {
            s.bytes()
                .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
        };
        for r in Reason::ALL {
            assert!(plain(r.as_str()) && plain(r.title()), "{r:?}");
        }
    }

    #[test]
    fn the_no_token_challenge_is_the_denials_own() {
        let d = Denial::new(Reason::NoToken, "no bearer token");
        assert_eq!(d.www_authenticate().as_deref(), Some(NO_TOKEN_CHALLENGE));
    }

    #[test]
    fn the_hand_written_problem_body_is_serdes_byte_for_byte() {
        let awkward = [
            "",
            "plain detail",
            "quote \" backslash \\ slash /",
            "controls \u{0}\u{1}\u{8}\t\n\r\u{1f}\u{7f}",
            "unicode é ✓ \u{2028} \u{2029} \u{10FFFF}",
            "</script><!--",
        ];
        for detail in awkward {
            for action in [None, Some("run-job"), Some(detail)] {
                for rid in ["rid-1", detail] {
                    let d = Denial::new(Reason::InsufficientScope, detail);
                    let serde =
                        serde_json::to_vec(&Problem::of(&d, action, rid)).unwrap_or_default();
                    assert_eq!(
                        String::from_utf8_lossy(&problem_body(&d, action, rid)),
                        String::from_utf8_lossy(&serde)
                    );
                }
            }
        }
    }

    #[test]
    fn the_problem_body_is_byte_for_byte_what_json_wrote() {
        for (denial, action) in [
            (
                Denial::new(Reason::BadRequest, "Host header is not ASCII"),
                None,
            ),
            (
                Denial::new(Reason::BodyTooLarge, "quote \" and \u{2028}"),
                Some("run-job"),
            ),
        ] {
            let old = serde_json::json!({
                "type": "about:blank",
                "status": denial.status,
                "title": denial.reason.title(),
                "detail": denial.detail,
                "reason": denial.reason.as_str(),
                "action": action,
                "request_id": "rid-1",
            });
            let old = serde_json::to_vec(&old).unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(&problem_body(&denial, action, "rid-1")),
                String::from_utf8_lossy(&old)
            );
        }
    }
}
