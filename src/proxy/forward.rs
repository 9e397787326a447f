//! Stage 5a: forward an allowed request. Needs a [`Permit`]; builds the upstream
//! request from the normalized target, drops hop-by-hop headers, anything the
//! client's `Connection` names, every client spelling of writ's identity headers
//! and override headers, then sets the verified identity.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;

use writ_engine::config::Upstream;
use writ_engine::decision::Permit;
use writ_engine::normalize::NormalizedTarget;
use writ_engine::policy::Policy;
use writ_engine::vocab::{METHOD_OVERRIDE_HEADERS, URL_OVERRIDE_HEADERS, header_is, parse_host};

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus legacy ones proxies must not pass.
/// Pre-built names: removing by `&str` would parse and hash the name each time.
/// A `static`, not a `const`: a `const` array of names is built and dropped
/// again at every use.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Names the `Connection` header nominates (lowercased tokens), leaving out the
/// hop-by-hop names removed anyway: a backend's `Connection: keep-alive` costs
/// no allocation.
fn nominated(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str()))
        })
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Removes hop-by-hop headers and the ones `Connection` nominates (responses too).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names notes which hop-by-hop headers are present; only
    // those are removed (each removal hashes and probes). Most requests carry
    // none; most answers only `Connection: keep-alive`. `Connection` is one of
    // them, so nothing it could nominate is missed.
    let mut present = 0u16;
    for k in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == k) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    for n in nominated(headers) {
        // `Connection: x-writ-subject` must never reach our own identity headers:
        // they are set after this runs, so removing here is harmless.
        headers.remove(n.as_str());
    }
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(h);
        }
    }
}

/// Everything a client may not send upstream, in any case or `_` spelling.
pub fn is_client_forbidden(policy: &Policy, name: &str) -> bool {
    let id = &policy.identity;
    header_is(name, id.subject.as_str())
        || header_is(name, id.actor.as_str())
        || header_is(name, id.action.as_str())
        || METHOD_OVERRIDE_HEADERS.iter().any(|h| header_is(name, h))
        || URL_OVERRIDE_HEADERS.iter().any(|h| header_is(name, h))
        || SPOOFABLE_FORWARDING.iter().any(|h| header_is(name, h))
}

/// Forwarding metadata a client could use to make a backend believe another
/// host, scheme, path, peer or user (RFC 7239 `Forwarded` too: Rack and Spring
/// read it; Rack reads `X-Forwarded-Ssl` and `X-Forwarded-Scheme` before
/// `X-Forwarded-Proto`). writ sets the `X-Forwarded-For/-Host/-Proto` it vouches
/// for itself.
pub const SPOOFABLE_FORWARDING: [&str; 18] = [
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "front-end-https",
    "x-url-scheme",
    "x-script-name",
    "x-forwarded-user",
    "x-remote-user",
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-real-ip",
    "x-original-host",
    "x-host",
    "x-envoy-original-path",
];

/// HTTP/2 clients may split `Cookie` into one field per crumb; an HTTP/1.1
/// backend must get them as one line joined with `"; "` (RFC 9113 §8.2.3), not
/// as several `Cookie` lines that frameworks read differently (first, last).
fn join_cookie_crumbs(h: &mut HeaderMap) {
    let mut crumbs = h.get_all(header::COOKIE).iter();
    if crumbs.next().is_none() || crumbs.next().is_none() {
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for v in h.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    // Every part was a valid header value, so the join is one too.
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(header::COOKIE, v);
    }
}

pub struct Outbound<'a> {
    pub policy: &'a Policy,
    pub upstream: &'a Upstream,
    pub permit: &'a Permit,
    pub target: &'a NormalizedTarget,
    /// The action's name as a header value (`Forwarding::action_headers`).
    pub action: Option<&'a HeaderValue>,
    pub request_id: &'a str,
    /// The client's IP address (`ConnInfo::peer_ip`).
    pub peer_ip: &'a HeaderValue,
    pub tls: bool,
    /// Host as the client addressed it (Host or :authority).
    pub host: Option<&'a str>,
}

/// Why a request head cannot be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the target is not a path")]
    NotOriginForm,
    #[error(transparent)]
    Uri(#[from] http::uri::InvalidUri),
}

/// Rewrites the client's request head into the upstream one, in place.
pub fn prepare(parts: &mut Parts, out: &Outbound<'_>) -> Result<(), ForwardError> {
    let p = out.policy;
    let up = out.upstream;
    // Origin-form (the connection is the upstream's own), appended rather than
    // `format!`ed, and handed over without a copy.
    let target = out.target.path_and_query();
    if !target.starts_with('/') {
        // Only a path may follow the base path (never `*` or an authority).
        return Err(ForwardError::NotOriginForm);
    }
    let mut uri = String::with_capacity(up.base_path.len() + target.len());
    uri.push_str(&up.base_path);
    uri.push_str(&target);
    parts.uri = http::Uri::from_maybe_shared(bytes::Bytes::from(uri))?;
    parts.version = http::Version::HTTP_11;
    let h = &mut parts.headers;
    strip_hop_by_hop(h);
    let forbidden: Vec<HeaderName> = h
        .keys()
        .filter(|n| is_client_forbidden(p, n.as_str()))
        .cloned()
        .collect();
    for n in forbidden {
        h.remove(n);
    }
    // Only a token writ verified on this very request is passed on (public
    // actions and failed authentication included: those were never verified).
    if !p.forward_token || !out.permit.token_verified {
        h.remove(header::AUTHORIZATION);
    }
    join_cookie_crumbs(h);
    // The client's `Expect: 100-continue` was answered by writ when it started
    // streaming the body; the backend gets the body without waiting.
    h.remove(header::EXPECT);
    // The host as classified (canonical: lowercase, no trailing dot), so the
    // backend's virtual hosting sees what writ matched.
    if let Some(host) = out.host
        && let Some((name, port)) = parse_host(host)
    {
        let sent = h
            .get(header::HOST)
            .filter(|v| v.as_bytes() == host.as_bytes());
        let canonical = match (port, sent) {
            // Already canonical as sent: the client's value is reused, not rebuilt.
            (None, Some(v)) if name == host => Ok(v.clone()),
            (Some(p), Some(v))
                if host.len() == name.len() + 1 + p.len() && host.starts_with(name.as_str()) =>
            {
                Ok(v.clone())
            }
            (Some(p), _) => HeaderValue::from_str(&format!("{name}:{p}")),
            (None, _) => HeaderValue::from_str(&name),
        };
        if let Ok(v) = canonical {
            h.insert(header::HOST, v.clone());
            h.insert(X_FORWARDED_HOST, v);
        }
    }
    h.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if out.tls { "https" } else { "http" }),
    );
    // A previous value that is not plain ASCII is dropped, not extended.
    let xff = match h.get(&X_FORWARDED_FOR).filter(|v| v.to_str().is_ok()) {
        Some(prev) => {
            let mut joined = Vec::with_capacity(prev.len() + 2 + out.peer_ip.len());
            for part in [prev.as_bytes(), b", ", out.peer_ip.as_bytes()] {
                joined.extend_from_slice(part);
            }
            // Both parts were valid header values, so the join is one too.
            HeaderValue::from_bytes(&joined).ok()
        }
        None => Some(out.peer_ip.clone()),
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR, v);
    }
    if let Ok(v) = HeaderValue::from_str(out.request_id) {
        h.insert(X_REQUEST_ID, v);
    }
    if out.permit.set_identity {
        let id = &p.identity;
        let set = |h: &mut HeaderMap, name: &HeaderName, val: Option<&str>| {
            // from_bytes keeps UTF-8 identities (obs-text); control bytes were refused.
            if let Some(v) = val.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
                h.insert(name.clone(), v);
            }
        };
        set(h, &id.subject, out.permit.subject.as_deref());
        set(h, &id.actor, out.permit.actor.as_deref());
        if let Some(v) = out.action {
            h.insert(id.action.clone(), v.clone());
        }
    }
    Ok(())
}
