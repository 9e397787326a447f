//! Rejections on the wire: status, `WWW-Authenticate`, `Allow` and an RFC 9457
//! problem+json body, all derived from the [`Denial`] (one mapping, no side effects).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::Body;
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
