//! Rejections on the wire: status, `WWW-Authenticate`, `Allow` and an RFC 9457
//! problem+json body, all derived from the [`Denial`] (one mapping, no side effects).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::json;

use super::Body;
use writ_engine::Policy;
use writ_engine::classify::body::McpCall;
use writ_engine::decision::Denial;

/// The RFC 9457 body of a denial, fields in the order `serde_json::json!` wrote
/// them (sorted), so the bytes are what they were. A struct, not a `json!`
/// value: no map, no owned keys or values per denial.
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

/// The RFC 9457 body of a denial (the front doors send it too).
pub fn problem_body(denial: &Denial, action: Option<&str>, request_id: &str) -> Vec<u8> {
    let body = Problem {
        action,
        detail: &denial.detail,
        reason: denial.reason.as_str(),
        request_id,
        status: denial.status,
        title: denial.reason.title(),
        kind: "about:blank",
    };
    serde_json::to_vec(&body).unwrap_or_default()
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
    if let Some(c) = denial.www_authenticate()
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
        let problem: serde_json::Value =
            serde_json::from_slice(&problem_body(denial, action, request_id)).unwrap_or_default();
        let body = json!({
            "jsonrpc": "2.0",
            "id": call.id.clone().unwrap_or(serde_json::Value::Null),
            "error": {
                "code": -32001,
                "message": denial.reason.title(),
                "data": problem,
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
    use writ_engine::decision::Reason;

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
