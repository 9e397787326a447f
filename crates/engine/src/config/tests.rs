use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::LogTarget;

fn load(text: &str) -> Result<Policy, ConfigErrors> {
    load_config(text).map(|c| c.policy)
}

fn load_config(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, "t.yaml", Path::new("."), "t.yaml".into())
}

const MINIMAL: &str = "listen: 127.0.0.1:8080\nupstream: { url: http://127.0.0.1:3000 }\nactions:\n  - { name: h, methods: [GET], path: /h, public: true }\n";

#[test]
fn defaults_are_the_spec_defaults() {
    let Config {
        policy: p,
        settings: s,
        ..
    } = load_config(MINIMAL).unwrap();
    assert_eq!(s.admin.to_string(), "127.0.0.1:9901");
    assert_eq!(s.decision_log, LogTarget::Stdout);
    assert!(p.forward_token);
    assert!(!p.defaults.unmatched_allow);
    assert_eq!(p.requests.max_token_bytes, 8192);
    assert_eq!(s.shutdown_grace, Duration::from_secs(10));
    assert_eq!(s.upstreams.len(), 1);
    assert_eq!(s.upstreams[0].name, "default");
    assert_eq!(s.upstreams[0].connect_timeout, Duration::from_secs(2));
    assert_eq!(s.upstreams[0].timeout, Duration::from_secs(30));
    assert_eq!(s.upstreams[0].health_check, None);
    assert_eq!(p.identity.subject.as_str(), "x-writ-subject");
    assert!(p.requests.case_sensitive);
}

#[test]
fn every_semantic_problem_is_reported_with_its_position() {
    let text = "listen: nowhere\nupstream: { url: ftp://x }\nshutdown_grace: 5 minutes\nactions:\n  - { name: a, methods: [GET], path: \"/x/{*rest}/y\", public: true }\n  - { name: b, methods: [POST], path: /run, execution: true, public: true }\n";
    let errs = load(text).unwrap_err().0;
    let at: Vec<(u64, u64)> = errs.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(
        at,
        vec![(1, 9), (2, 18), (3, 17), (5, 38), (6, 70)],
        "{errs:#?}"
    );
    assert!(errs[3].message.contains("must be the last segment"));
    assert!(errs[4].message.contains("can never be public"));
    assert!(errs.iter().all(|e| e.file == "t.yaml"));
}

#[test]
fn conflicting_actions_name_both_locations() {
    let text = "listen: 127.0.0.1:8080\nupstream: { url: http://127.0.0.1:3000 }\nactions:\n  - { name: a, methods: [GET], path: \"/t/{x}\", public: true }\n  - { name: b, methods: [GET, PUT], path: \"/t/{y}\", public: true }\n";
    let errs = load(text).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].col), (5, 43));
    assert!(errs[0].message.contains("t.yaml:4:"), "{}", errs[0].message);
}

#[test]
fn send_timeout_defaults_to_30s_and_must_be_more_than_zero() {
    assert_eq!(
        load_config(MINIMAL).unwrap().settings.limits.send_timeout,
        Duration::from_secs(30)
    );
    let with = |v: &str| format!("{MINIMAL}limits:\n  send_timeout: {v}\n");
    assert_eq!(
        load_config(&with("250ms"))
            .unwrap()
            .settings
            .limits
            .send_timeout,
        Duration::from_millis(250)
    );
    for zero in ["0s", "0", "0ms"] {
        let errs = load(&with(zero)).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{zero}: {errs:#?}");
        assert_eq!((errs[0].line, errs[0].col), (6, 17), "{zero}: {errs:#?}");
        assert!(
            errs[0].message.contains("send_timeout must be more than 0"),
            "{errs:#?}"
        );
    }
}

#[test]
fn ext_authz_listeners_and_trusted_proxies() {
    assert_eq!(load_config(MINIMAL).unwrap().settings.ext_authz, None);
    let text = format!(
        "{MINIMAL}ext_authz:\n  grpc: 127.0.0.1:9191\n  http: 127.0.0.1:9192\n  trusted_proxies: [10.0.0.0/8, 192.168.1.7, \"fd00::/8\"]\n"
    );
    let e = load_config(&text).unwrap().settings.ext_authz.unwrap();
    assert_eq!(e.grpc.unwrap().to_string(), "127.0.0.1:9191");
    assert_eq!(e.http.unwrap().to_string(), "127.0.0.1:9192");
    for (ip, trusted) in [
        ("10.1.2.3", true),
        ("192.168.1.7", true),
        ("192.168.1.8", false),
        ("127.0.0.1", false),
        ("::ffff:10.0.0.1", true),
        ("fd12::1", true),
    ] {
        assert_eq!(e.trusts(ip.parse().unwrap()), trusted, "{ip}");
    }
    // Absent list: loopback only.
    let text = format!("{MINIMAL}ext_authz: {{ grpc: 127.0.0.1:9191 }}\n");
    let e = load_config(&text).unwrap().settings.ext_authz.unwrap();
    assert!(e.trusts("127.0.0.1".parse().unwrap()));
    assert!(e.trusts("::1".parse().unwrap()));
    assert!(!e.trusts("127.0.0.2".parse().unwrap()));
    assert!(!e.trusts("10.0.0.1".parse().unwrap()));
}

#[test]
fn ext_authz_errors_name_their_position() {
    let text =
        format!("{MINIMAL}ext_authz:\n  grpc: nowhere\n  trusted_proxies: [10.0.0.0/33, ok]\n");
    let errs = load(&text).unwrap_err().0;
    let at: Vec<(u64, u64)> = errs.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(at, vec![(6, 9), (7, 21), (7, 34)], "{errs:#?}");
    assert!(errs[1].message.contains("is not a CIDR"), "{errs:#?}");
    let text = format!("{MINIMAL}ext_authz: {{ trusted_proxies: [] }}\n");
    let errs = load(&text).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].message.contains("needs `grpc` or `http`"),
        "{errs:#?}"
    );
    let text = format!("{MINIMAL}ext_authz: {{ grpc: 127.0.0.1:1, typo: 1 }}\n");
    assert!(load(&text).is_err());
}

#[test]
fn ext_authz_listeners_need_a_restart_but_trusted_proxies_apply_live() {
    let a =
        format!("{MINIMAL}ext_authz: {{ grpc: 127.0.0.1:9191, trusted_proxies: [127.0.0.1] }}\n");
    let b =
        format!("{MINIMAL}ext_authz: {{ grpc: 127.0.0.1:9191, trusted_proxies: [10.0.0.0/8] }}\n");
    let c = format!("{MINIMAL}ext_authz: {{ grpc: 127.0.0.1:9999 }}\n");
    let (a, b, c) = (
        load_config(&a).unwrap().settings,
        load_config(&b).unwrap().settings,
        load_config(&c).unwrap().settings,
    );
    assert!(a.restart_needed(&b).is_empty());
    let live = a.live_part_of(b.clone());
    assert_eq!(live.ext_authz, b.ext_authz);
    assert_eq!(a.restart_needed(&c), vec!["ext_authz"]);
    let live = a.live_part_of(c);
    assert_eq!(live.ext_authz.unwrap().grpc, a.ext_authz.unwrap().grpc);
}

const GATEWAY: &str = "listen: 127.0.0.1:8080
upstreams:
  jobs:  { url: http://127.0.0.1:3001, connect_timeout: 1s, timeout: 5s }
  admin: { url: http://127.0.0.1:3002/base/, health_check: { path: /healthz, every: 2s } }
defaults:
  upstream: jobs
  unmatched: allow
actions:
  - { name: run, methods: [POST], path: /jobs, public: true }
  - { name: reset, methods: [POST], path: /reset, public: true, upstream: admin }
";

#[test]
fn upstreams_by_name_route_actions_and_defaults() {
    let c = load_config(GATEWAY).unwrap();
    let names: Vec<&str> = c
        .settings
        .upstreams
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(names, ["admin", "jobs"], "name order");
    let by_name = |a: &str| {
        let i = c.policy.actions.iter().position(|x| x.name == a).unwrap();
        c.upstream_for(Some(i)).name.clone()
    };
    assert_eq!(by_name("run"), "jobs");
    assert_eq!(by_name("reset"), "admin");
    assert_eq!(c.upstream_for(None).name, "jobs");
    let admin = &c.settings.upstreams[0];
    assert_eq!(admin.base_path, "/base");
    assert_eq!(
        admin.health_check,
        Some(crate::config::HealthCheck {
            path: "/healthz".into(),
            every: Duration::from_secs(2)
        })
    );
    assert_eq!(c.settings.upstreams[1].timeout, Duration::from_secs(5));
    assert_eq!(c.settings.upstreams[1].url(), "http://127.0.0.1:3001");
}

#[test]
fn one_named_upstream_needs_no_default() {
    let text = "listen: 127.0.0.1:8080\nupstreams:\n  only: { url: http://127.0.0.1:3001 }\nactions:\n  - { name: h, methods: [GET], path: /h, public: true }\n";
    let c = load_config(text).unwrap();
    assert_eq!(c.upstream_for(Some(0)).name, "only");
}

#[test]
fn upstream_errors_name_their_position() {
    let cases: &[(&str, (u64, u64), &str)] = &[
        (
            "listen: 127.0.0.1:8080\nupstreams:\n  a: { url: http://127.0.0.1:1 }\n  b: { url: http://127.0.0.1:2 }\nactions: []\n",
            (3, 3),
            "`defaults.upstream` is required",
        ),
        (
            "listen: 127.0.0.1:8080\nupstreams:\n  a: { url: http://127.0.0.1:1 }\ndefaults: { upstream: nope }\nactions: []\n",
            (4, 23),
            "unknown upstream `nope` (known: a)",
        ),
        (
            "listen: 127.0.0.1:8080\nupstreams:\n  a: { url: http://127.0.0.1:1 }\nactions:\n  - { name: h, methods: [GET], path: /h, public: true, upstream: b }\n",
            (5, 66),
            "unknown upstream `b`",
        ),
        (
            "listen: 127.0.0.1:8080\nupstream: { url: http://127.0.0.1:1 }\nactions:\n  - { name: h, methods: [GET], path: /h, public: true, upstream: b }\n",
            (4, 66),
            "unknown upstream `b` (known: default)",
        ),
        (
            "listen: 127.0.0.1:8080\nupstream: { url: http://127.0.0.1:1 }\nupstreams:\n  a: { url: http://127.0.0.1:1 }\nactions: []\n",
            (4, 3),
            "exclusive",
        ),
        (
            "listen: 127.0.0.1:8080\nupstreams: {}\nactions: []\n",
            (2, 12),
            "at least one",
        ),
        (
            "listen: 127.0.0.1:8080\nactions: []\n",
            (1, 1),
            "missing required key `upstream` (or `upstreams`)",
        ),
        (
            "listen: 127.0.0.1:8080\nupstreams:\n  \"a b\": { url: http://127.0.0.1:1 }\nactions: []\n",
            (3, 10),
            "upstream name `a b`",
        ),
        (
            "listen: 127.0.0.1:8080\nupstreams:\n  a: { url: http://127.0.0.1:1, health_check: { path: healthz } }\nactions: []\n",
            (3, 55),
            "must be an absolute path",
        ),
        (
            "listen: 127.0.0.1:8080\nupstreams:\n  a: { url: http://127.0.0.1:1, health_check: { path: /h, every: 100ms } }\nactions: []\n",
            (3, 66),
            "at least 1s",
        ),
    ];
    for (text, at, message) in cases {
        let errs = load(text).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{text}: {errs:#?}");
        assert_eq!((errs[0].line, errs[0].col), *at, "{text}: {errs:#?}");
        assert!(errs[0].message.contains(message), "{text}: {errs:#?}");
    }
}

#[test]
fn upstream_changes_apply_live() {
    let old = load_config(MINIMAL).unwrap().settings;
    let new = load_config(GATEWAY).unwrap().settings;
    assert!(!old.restart_needed(&new).contains(&"upstream"));
    assert_eq!(old.live_part_of(new.clone()).upstreams, new.upstreams);
}

#[test]
fn the_digest_names_the_text_not_the_load() {
    let a = load_config(MINIMAL).unwrap().digest;
    assert_eq!(a.len(), 16);
    assert_eq!(
        a,
        load_config(MINIMAL).unwrap().digest,
        "same text, same digest"
    );
    let b = load_config(&format!("{MINIMAL}# a comment\n"))
        .unwrap()
        .digest;
    assert_ne!(a, b, "any edit is a different config text");
}
