//! The ext_authz gRPC front door called directly (SPEC: Front doors), with
//! `CheckRequest`s built from the published Envoy protos (`envoy-types`): allow
//! with identity headers to set and every client spelling to remove, SPEC's
//! denials as `DeniedHttpResponse`, audit mode, edge cases (no attributes, no
//! http, odd targets), the health service, the trusted-proxy allowlist, and the
//! same metrics and decision log as the proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap as EnvoyHeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::Value;
use support::*;

/// method, path, headers, HTTP status, reason, gRPC code
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, i32, &'a str, i32);

const ACTIONS: &str = r#"
  - name: profile
    methods: [GET, POST]
    path: /profile
    require: { scopes: [profile] }
  - name: docs
    methods: [GET]
    path: /docs/{*rest}
    public: true
  - name: shadow
    methods: [GET]
    path: /shadow
    mode: audit
    require: { scopes: [shadow] }
"#;

/// Writ with a gRPC front door on a reserved port; returns it and the port.
fn start(trusted: &str) -> (Env, u16) {
    let port = free_port();
    let config = Config::new(ACTIONS).set(
        "ext_authz",
        &format!("\n  grpc: \"127.0.0.1:{port}\"\n  trusted_proxies: {trusted}"),
    );
    (Env::with_config(&config), port)
}

fn http(method: &str, path: &str, headers: &[(&str, &str)]) -> HttpRequest {
    HttpRequest {
        id: "envoy-1".into(),
        method: method.into(),
        path: path.into(),
        host: "api.example".into(),
        scheme: "http".into(),
        protocol: "HTTP/1.1".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    }
}

fn check_request(http: Option<HttpRequest>) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http,
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn call(port: u16, req: CheckRequest) -> Result<CheckResponse, tonic::Status> {
    block_on(async move {
        let mut client = AuthorizationClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .expect("connect to the ext_authz listener");
        client.check(req).await.map(tonic::Response::into_inner)
    })
}

/// An OK response: (headers to set, headers to remove).
fn ok(resp: &CheckResponse) -> (HashMap<String, String>, Vec<String>) {
    assert_eq!(resp.status.as_ref().map(|s| s.code), Some(0), "{resp:#?}");
    let Some(HttpResponse::OkResponse(ok)) = &resp.http_response else {
        panic!("not an OkHttpResponse: {resp:#?}");
    };
    let set = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| {
            let value = if h.raw_value.is_empty() {
                h.value.clone()
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            };
            (h.key.clone(), value)
        })
        .collect();
    (set, ok.headers_to_remove.clone())
}

/// A denied response: (HTTP status, headers, problem body, rpc code).
fn denied(resp: &CheckResponse) -> (i32, HashMap<String, String>, Value, i32) {
    let Some(HttpResponse::DeniedResponse(d)) = &resp.http_response else {
        panic!("not a DeniedHttpResponse: {resp:#?}");
    };
    let headers = d
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    let body: Value = serde_json::from_str(&d.body).expect("problem+json body");
    (
        d.status.as_ref().map(|s| s.code).unwrap_or_default(),
        headers,
        body,
        resp.status.as_ref().map(|s| s.code).unwrap_or_default(),
    )
}

#[test]
fn allow_sets_identity_and_removes_every_client_spelling() {
    let (env, port) = start("[127.0.0.1/32]");
    let token = env.token("profile");
    let auth = format!("Bearer {token}");
    let resp = call(
        port,
        check_request(Some(http(
            "GET",
            "/profile?x=1",
            &[
                ("authorization", &auth),
                ("x-writ-subject", "admin"),
                ("x_writ_actor", "agent:root"),
                ("x.writ.action", "delete-everything"),
                ("x-forwarded-user", "root"),
                ("x-request-id", "rid-allow-1"),
            ],
        ))),
    )
    .unwrap();
    let (set, remove) = ok(&resp);
    assert_eq!(set.get("x-writ-subject").map(String::as_str), Some("alice"));
    assert_eq!(
        set.get("x-writ-action").map(String::as_str),
        Some("profile")
    );
    assert!(!set.contains_key("x-writ-actor"), "no actor in the token");
    for spelled in ["x_writ_actor", "x.writ.action", "x-forwarded-user"] {
        assert!(remove.contains(&spelled.to_string()), "{remove:?}");
    }
    // A name writ sets is overwritten, not removed (Envoy removes after setting).
    assert!(
        !remove.contains(&"x-writ-subject".to_string()),
        "{remove:?}"
    );
    // The verified token is forwarded (forward_token defaults to true).
    assert!(!remove.contains(&"authorization".to_string()), "{remove:?}");
    env.backend.assert_untouched();
    let line = env.writ.log_line_for("rid-allow-1");
    assert_eq!(line["frontend"], "ext_authz_grpc", "{line}");
    assert_eq!(line["decision"], "allow", "{line}");
    assert_eq!(line["path"], "/profile", "{line}");
    env.writ.assert_metric(
        "writ_requests_total",
        &[
            ("action", "profile"),
            ("decision", "allow"),
            ("frontend", "ext_authz_grpc"),
        ],
        1.0,
    );
}

/// A UTF-8 identity is set byte for byte (`raw_value`), never dropped: a
/// dropped header would leave the client's spoofed one in place.
#[test]
fn a_utf8_subject_is_set_not_dropped() {
    let (env, port) = start("[127.0.0.1/32]");
    let token = env.keys.token().sub("jos\u{e9}").scope("profile").sign();
    let auth = format!("Bearer {token}");
    let resp = call(
        port,
        check_request(Some(http(
            "GET",
            "/profile",
            &[("authorization", &auth), ("x-writ-subject", "admin")],
        ))),
    )
    .unwrap();
    let (set, remove) = ok(&resp);
    assert_eq!(
        set.get("x-writ-subject").map(String::as_str),
        Some("jos\u{e9}")
    );
    assert!(
        !remove.contains(&"x-writ-subject".to_string()),
        "{remove:?}"
    );
}

#[test]
fn public_action_removes_an_unverified_authorization_header() {
    let (_env, port) = start("[127.0.0.1/32]");
    let resp = call(
        port,
        check_request(Some(http(
            "GET",
            "/docs/a",
            &[
                ("authorization", "Bearer not-a-token"),
                ("x-writ-subject", "admin"),
            ],
        ))),
    )
    .unwrap();
    let (set, remove) = ok(&resp);
    assert_eq!(set.get("x-writ-action").map(String::as_str), Some("docs"));
    assert!(!set.contains_key("x-writ-subject"));
    assert!(remove.contains(&"x-writ-subject".to_string()), "{remove:?}");
    assert!(remove.contains(&"authorization".to_string()), "{remove:?}");
}

#[test]
fn each_denial_class_is_specs_response() {
    let (env, port) = start("[127.0.0.1/32]");
    let read = format!("Bearer {}", env.token("read"));
    let expired = format!(
        "Bearer {}",
        env.keys.token().scope("profile").exp_in(-3600).sign()
    );
    let cases: Vec<Case<'_>> = vec![
        ("GET", "/profile", vec![], 401, "no_token", 16),
        (
            "GET",
            "/profile",
            vec![("authorization", &read)],
            403,
            "insufficient_scope",
            7,
        ),
        (
            "GET",
            "/profile",
            vec![("authorization", &expired)],
            401,
            "token_expired",
            16,
        ),
        ("GET", "/nowhere", vec![], 403, "no_matching_action", 7),
        ("DELETE", "/profile", vec![], 405, "method_not_allowed", 7),
        (
            "GET",
            "/profile",
            vec![("x-http-method-override", "DELETE")],
            400,
            "method_override",
            7,
        ),
    ];
    for (method, path, headers, status, reason, code) in cases {
        let resp = call(port, check_request(Some(http(method, path, &headers)))).unwrap();
        let (got, h, body, rpc) = denied(&resp);
        assert_eq!((got, rpc), (status, code), "{method} {path}: {body}");
        assert_eq!(body["reason"], reason, "{method} {path}: {body}");
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(
            h.get("content-type").map(String::as_str),
            Some("application/problem+json")
        );
        // RFC 6750: a challenge on 401 and on insufficient_scope.
        let challenged = status == 401 || reason == "insufficient_scope";
        assert_eq!(h.contains_key("www-authenticate"), challenged, "{h:?}");
        if status == 405 {
            assert_eq!(
                h.get("allow").map(String::as_str),
                Some("GET, POST"),
                "{h:?}"
            );
        }
    }
    env.backend.assert_untouched();
    env.writ.assert_metric(
        "writ_requests_total",
        &[("reason", "no_token"), ("frontend", "ext_authz_grpc")],
        1.0,
    );
}

#[test]
fn audit_mode_answers_ok_and_records_the_would_be_denial() {
    let (env, port) = start("[127.0.0.1/32]");
    let resp = call(
        port,
        check_request(Some(http(
            "GET",
            "/shadow",
            &[("x-writ-subject", "admin"), ("x-request-id", "rid-audit-1")],
        ))),
    )
    .unwrap();
    let (set, remove) = ok(&resp);
    assert!(set.is_empty(), "no identity on a would-be denial: {set:?}");
    assert!(remove.contains(&"x-writ-subject".to_string()), "{remove:?}");
    let line = env.writ.log_line_for("rid-audit-1");
    assert_eq!(line["decision"], "deny", "{line}");
    assert_eq!(line["enforced"], false, "{line}");
    assert_eq!(line["reason"], "no_token", "{line}");
    assert_eq!(line["frontend"], "ext_authz_grpc", "{line}");
}

#[test]
fn odd_and_missing_inputs_are_bad_requests() {
    let (env, port) = start("[127.0.0.1/32]");
    // No attributes at all, and attributes without `request.http`.
    for req in [
        CheckRequest { attributes: None },
        check_request(None),
        check_request(Some(HttpRequest::default())),
    ] {
        let (status, _, body, _) = denied(&call(port, req).unwrap());
        assert_eq!(
            (status, body["reason"].as_str()),
            (400, Some("bad_request")),
            "{body}"
        );
    }
    // Targets normalization would change are denied at a front door: the mesh
    // forwards its own copy, not writ's normalized one.
    for path in [
        "/docs/../profile",
        "//docs/a",
        "/docs/./a",
        "/%64ocs/a",
        "/docs/a%2fb",
        "/docs/a;b",
        "/docs/a\\b",
        "/docs/a%00",
        "docs/a",
        "*",
        "/docs/a/",
    ] {
        let (status, _, body, _) =
            denied(&call(port, check_request(Some(http("GET", path, &[])))).unwrap());
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["reason"], "bad_request", "{path}: {body}");
    }
    // A header value Envoy would never send is still not a panic.
    let (status, _, _, _) = denied(
        &call(
            port,
            check_request(Some(http("GET", "/docs/a", &[("bad name", "v")]))),
        )
        .unwrap(),
    );
    assert_eq!(status, 400);
    env.writ.assert_metric_at_least(
        "writ_requests_total",
        &[("reason", "bad_request"), ("frontend", "ext_authz_grpc")],
        14.0,
    );
}

#[test]
fn raw_header_map_is_read_when_envoy_sends_it() {
    let (env, port) = start("[127.0.0.1/32]");
    let token = format!("Bearer {}", env.token("profile"));
    let mut h = http("GET", "/profile", &[]);
    h.header_map = Some(EnvoyHeaderMap {
        headers: vec![
            HeaderValue {
                key: "authorization".into(),
                raw_value: token.into_bytes(),
                ..Default::default()
            },
            HeaderValue {
                key: ":authority".into(),
                raw_value: b"api.example".to_vec(),
                ..Default::default()
            },
        ],
    });
    let (set, _) = ok(&call(port, check_request(Some(h))).unwrap());
    assert_eq!(set.get("x-writ-subject").map(String::as_str), Some("alice"));
}

#[test]
fn health_service_reports_serving() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let (_env, port) = start("[127.0.0.1/32]");
    for service in ["", "envoy.service.auth.v3.Authorization"] {
        let status = block_on(async move {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
            let mut c = HealthClient::new(channel);
            c.check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
        });
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[test]
fn untrusted_peer_is_refused_and_counted() {
    let (env, port) = start("[10.0.0.0/8]");
    let err = call(port, check_request(Some(http("GET", "/docs/a", &[])))).unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    env.writ.assert_metric(
        "writ_frontdoor_untrusted_total",
        &[("frontend", "ext_authz_grpc")],
        1.0,
    );
    // Nothing was decided, so nothing was logged or counted as a request.
    assert!(
        metric_samples(&env.writ.metrics(), "writ_requests_total").is_empty(),
        "an untrusted call is not a decision"
    );
}

#[test]
fn reload_applies_trusted_proxies_to_the_front_door() {
    let (env, port) = start("[10.0.0.0/8]");
    assert!(call(port, check_request(Some(http("GET", "/docs/a", &[])))).is_err());
    let text = std::fs::read_to_string(env.writ.config_path()).unwrap();
    std::fs::write(
        env.writ.config_path(),
        text.replace("[10.0.0.0/8]", "[127.0.0.1/32]"),
    )
    .unwrap();
    let trusted = eventually_within(Duration::from_secs(10), || {
        call(port, check_request(Some(http("GET", "/docs/a", &[]))))
            .ok()
            .map(|_| ())
    });
    assert!(trusted.is_some(), "the reload never trusted 127.0.0.1");
}

/// SIGTERM drains the front door like the proxy: an idle Envoy-style
/// connection does not hold up the exit, and the listener closes.
#[test]
fn shutdown_drains_the_front_doors_promptly() {
    let (port, http_port) = (free_port(), free_port());
    let config = Config::new(ACTIONS).set(
        "ext_authz",
        &format!("\n  grpc: \"127.0.0.1:{port}\"\n  http: \"127.0.0.1:{http_port}\""),
    );
    let env = Env::with_config(&config);
    // Connections that stay open and idle, as a mesh's and an ingress's do.
    let idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let idle_http = std::net::TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    assert!(call(port, check_request(Some(http("GET", "/docs/a", &[])))).is_ok());
    let t0 = std::time::Instant::now();
    env.writ.signal("TERM");
    let exit = env.writ.wait_exit(Duration::from_secs(5));
    assert_eq!(exit, Some(Some(0)), "writ did not exit cleanly in time");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "shutdown_grace is 10s: idle connections held it"
    );
    drop((idle, idle_http));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err());
}

/// One reload changes the decision at the proxy and at both front doors.
#[test]
fn a_policy_reload_applies_to_every_door_at_once() {
    let (port, http_port) = (free_port(), free_port());
    let config = Config::new(ACTIONS).set(
        "ext_authz",
        &format!("\n  grpc: \"127.0.0.1:{port}\"\n  http: \"127.0.0.1:{http_port}\""),
    );
    let env = Env::with_config(&config);
    let door = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    let forward_auth = || {
        request(
            door,
            "GET",
            "/",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", "/docs/a"),
                ("X-Forwarded-Host", "api.example"),
            ],
            b"",
        )
        .status
    };
    let grpc_allows = || {
        let resp = call(port, check_request(Some(http("GET", "/docs/a", &[])))).unwrap();
        matches!(resp.http_response, Some(HttpResponse::OkResponse(_)))
    };
    assert!(grpc_allows());
    assert_eq!(forward_auth(), 200);
    assert_eq!(env.get("/docs/a", None).status, 200);
    let text = std::fs::read_to_string(env.writ.config_path()).unwrap();
    let closed = text.replace(
        "path: /docs/{*rest}\n    public: true",
        "path: /docs/{*rest}\n    require: { scopes: [docs] }",
    );
    assert_ne!(text, closed, "the test must change the policy");
    std::fs::write(env.writ.config_path(), closed).unwrap();
    let reloaded = eventually_within(Duration::from_secs(10), || {
        (env.get("/docs/a", None).status == 401).then_some(())
    });
    assert!(reloaded.is_some(), "the proxy never saw the reload");
    assert!(!grpc_allows(), "the gRPC door kept the old policy");
    assert_eq!(
        forward_auth(),
        401,
        "the forward-auth door kept the old policy"
    );
}
