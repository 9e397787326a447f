//! Front doors (SPEC: Front doors): writ decides for a mesh or an ingress that
//! forwards the request itself. Each protocol module turns its request into a
//! [`Asked`]; [`ask`] runs the one `decide` (front-door mode) with the same
//! `Context` and records exactly as the proxy does; the module then renders the
//! [`Answer`] in its protocol.
//!
//! Sits above `proxy`: it shares the proxy's state, header rules, problem body
//! and record stage, so no check is written twice.

pub mod grpc;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ::http::{HeaderMap, HeaderName, HeaderValue};

use crate::proxy::forward::is_client_forbidden;
use crate::proxy::{Ctx, Outcome, Shared, request_id};
use crate::telemetry::metrics::Frontend;
use writ_engine::Request;
use writ_engine::decision::{Denial, Labels, Verdict};
use writ_engine::policy::Policy;
use writ_engine::request::Origin;

/// The mesh or ingress sets its own `X-Forwarded-Proto` before asking (Envoy's
/// connection manager does); removing it would take it from the backend too.
const KEPT_FORWARDING: [&str; 1] = ["x-forwarded-proto"];

/// A request as a front door received it.
#[derive(Debug)]
pub struct Asked<'a> {
    pub method: &'a str,
    /// Path and query as the client sent them (origin-form).
    pub target: &'a str,
    pub host: Option<&'a str>,
    /// The client's header fields (the front door's own protocol fields removed).
    pub headers: &'a HeaderMap,
}

/// What a front door answers.
#[derive(Debug)]
pub enum Answer {
    /// Let the request through with these identity headers set and these
    /// client-sent header names removed (audit would-be denials included: no
    /// identity set, the client's removed).
    Allow {
        set: Vec<(HeaderName, HeaderValue)>,
        remove: Vec<String>,
        request_id: String,
    },
    /// SPEC's denial: status, `WWW-Authenticate`, problem+json.
    Deny {
        denial: Denial,
        action: Option<String>,
        request_id: String,
    },
}

/// Whether `peer` may call the front doors (the live config's
/// `trusted_proxies`). A refusal is counted per door.
pub fn trusted(shared: &Shared, frontend: Frontend, peer: SocketAddr) -> bool {
    let ok = shared
        .config()
        .settings
        .ext_authz
        .as_ref()
        .is_some_and(|e| e.trusts(peer.ip()));
    if !ok {
        shared
            .metrics
            .frontdoor_untrusted
            .with_label_values(&[frontend.as_str()])
            .inc();
        tracing::warn!(peer = %peer, frontend = frontend.as_str(), "Front-door call from an untrusted peer refused");
    }
    ok
}

/// A front-door request refused before deciding (malformed protocol input):
/// recorded like the proxy's early rejections.
pub fn refuse(
    shared: &Arc<Shared>,
    frontend: Frontend,
    headers: &HeaderMap,
    method: &str,
    denial: Denial,
) -> Answer {
    let cx = ctx(shared, frontend, headers, method);
    cx.record(
        None,
        Outcome {
            action: None,
            reason: denial.reason,
            labels: Labels::DENY,
            status: denial.status,
        },
    );
    Answer::Deny {
        denial,
        action: None,
        request_id: cx.rid,
    }
}

fn ctx(shared: &Arc<Shared>, frontend: Frontend, headers: &HeaderMap, method: &str) -> Ctx {
    Ctx {
        config: shared.config(),
        shared: shared.clone(),
        rid: request_id(headers),
        method: method.to_string(),
        start: Instant::now(),
        frontend,
    }
}

/// Decides one front-door request and records it.
pub async fn ask(shared: &Arc<Shared>, frontend: Frontend, asked: &Asked<'_>) -> Answer {
    let cx = ctx(shared, frontend, asked.headers, asked.method);
    let request = Request {
        method: asked.method,
        target: asked.target,
        host: asked.host,
        headers: asked.headers,
        form_body: None,
        json_body: None,
        origin: Origin::FrontDoor,
    };
    let d = crate::proxy::decide_live(&cx.shared, &cx.config.policy, &request).await;
    let policy = &cx.config.policy;
    let action = d.action.map(|i| policy.action(i).name.as_str());
    let permit = match &d.verdict {
        Verdict::Deny(e) => {
            cx.record(
                Some(&d),
                Outcome {
                    action,
                    reason: e.reason,
                    labels: Labels::DENY,
                    status: e.status,
                },
            );
            return Answer::Deny {
                denial: e.clone(),
                action: action.map(str::to_string),
                request_id: cx.rid.clone(),
            };
        }
        Verdict::Allow { permit, .. } | Verdict::AuditDeny { permit, .. } => permit,
    };
    let mut set = Vec::new();
    if permit.set_identity {
        let id = &policy.identity;
        for (name, value) in [
            (&id.subject, permit.subject.as_deref()),
            (&id.actor, permit.actor.as_deref()),
            (&id.action, action),
        ] {
            // from_bytes keeps UTF-8 identities (obs-text), as the proxy does.
            if let Some(v) = value.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
                set.push((name.clone(), v));
            }
        }
    }
    // Envoy applies removals after the headers it sets: a name writ sets is
    // overwritten, never removed.
    let remove = removals(policy, asked.headers, permit.token_verified)
        .into_iter()
        .filter(|n| !set.iter().any(|(s, _)| s.as_str() == n))
        .collect();
    // The front door answers for the backend: 200 is what it logs as status.
    cx.record(
        Some(&d),
        Outcome {
            action,
            reason: d.verdict.reason(),
            labels: d.verdict.labels(),
            status: 200,
        },
    );
    Answer::Allow {
        set,
        remove,
        request_id: cx.rid,
    }
}

/// The client-sent header names the mesh must drop before forwarding: every
/// spelling of the identity headers, the override and spoofable forwarding
/// headers the proxy strips, and `Authorization` unless writ verified that very
/// token and forwards tokens.
pub fn removals(policy: &Policy, headers: &HeaderMap, token_verified: bool) -> Vec<String> {
    let mut out: Vec<String> = headers
        .keys()
        .map(HeaderName::as_str)
        .filter(|n| is_client_forbidden(policy, n) && !KEPT_FORWARDING.contains(n))
        .map(str::to_string)
        .collect();
    if (!policy.forward_token || !token_verified)
        && headers.contains_key(::http::header::AUTHORIZATION)
    {
        out.push("authorization".to_string());
    }
    out
}
