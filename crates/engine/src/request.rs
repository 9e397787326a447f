//! A request as the engine sees it: plain data borrowed from whatever carried
//! it (the proxy's hyper request, `explain`'s flags, a test case), no HTTP
//! library types beyond `http::HeaderMap`.

use http::HeaderMap;

/// The most of a form body writ reads to look for `_method`; larger is 413.
pub const MAX_FORM_BODY: usize = 1024 * 1024;

/// The request inputs of [`decide`](crate::decide::decide).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method exactly as received (case matters).
    pub method: &'a str,
    /// The request target as received (origin-form expected).
    pub target: &'a str,
    /// `Host` (or `:authority`) as received.
    pub host: Option<&'a str>,
    /// Every header field as received.
    pub headers: &'a HeaderMap,
    /// The whole body of an `application/x-www-form-urlencoded` request (see
    /// [`is_form_body`]), read by the caller up to [`MAX_FORM_BODY`] bytes:
    /// frameworks take `_method` from it. `None` where there is no body to read.
    pub form_body: Option<&'a [u8]>,
    /// The whole body of a request whose action reads JSON (`body: json`, an
    /// MCP endpoint), read by the caller up to `requests.max_json_body` once a
    /// first decision asked for it ([`Decision::needs_body`]); `None` otherwise.
    /// The bytes forwarded must be exactly these.
    ///
    /// [`Decision::needs_body`]: crate::decide::Decision::needs_body
    pub json_body: Option<&'a [u8]>,
    /// Who forwards the request after the decision (see [`Origin`]).
    pub origin: Origin,
}

/// Who forwards the request once writ has decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Origin {
    /// writ's own proxy: it forwards the normalized target, so what was
    /// classified is what the backend receives.
    #[default]
    Proxy,
    /// A front door (ext_authz, forward-auth): the mesh or ingress forwards its
    /// own copy of the request, so a target that normalization would change
    /// (or reject) is denied: writ cannot make normalize = forward true there.
    FrontDoor,
}

/// Whether the request carries a form body that must be read before deciding
/// (`Content-Type: application/x-www-form-urlencoded`, parameters allowed).
pub fn is_form_body(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::CONTENT_TYPE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b';')
            .next()
            .map(|t| t.trim_ascii())
            .is_some_and(|t| t.eq_ignore_ascii_case(b"application/x-www-form-urlencoded"))
    })
}
