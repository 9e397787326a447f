//! What operators watch (deploy/observability, deploy/grafana): the alert rules pass
//! `promtool check rules`, and every metric, label and label value the alerts and the
//! dashboard use exists in a real `/metrics` scrape of `writ run` after traffic that
//! exercises each of them. A renamed metric or label fails here, not at 3 a.m.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;

use serde_json::Value;
use support::*;

/// Labels Prometheus attaches to every target (or that histograms carry): not writ's.
const TARGET_LABELS: &[&str] = &["namespace", "pod", "job", "instance", "le", "container"];

fn rules() -> Value {
    let text = fs::read_to_string(repo_path("deploy/observability/prometheusrule.yaml"))
        .unwrap_or_else(|e| panic!("prometheusrule.yaml: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("prometheusrule.yaml: {e}"))
}

/// Every PromQL expression the alerts and the dashboard evaluate, with where it is from.
fn expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for group in rules()["spec"]["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let name = rule["alert"].as_str().unwrap_or("?").to_string();
            out.push((name, rule["expr"].as_str().unwrap_or("").to_string()));
        }
    }
    let dash: Value = serde_json::from_str(
        &fs::read_to_string(repo_path("deploy/grafana/writ-dashboard.json"))
            .unwrap_or_else(|e| panic!("dashboard: {e}")),
    )
    .unwrap_or_else(|e| panic!("dashboard: {e}"));
    for panel in dash["panels"].as_array().into_iter().flatten() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let title = format!("panel {:?}", panel["title"].as_str().unwrap_or("?"));
            out.push((title, t["expr"].as_str().unwrap_or("").to_string()));
        }
    }
    out
}

/// What one PromQL expression names: `writ_*` metrics, label names (grouping,
/// matching and matchers) and the `label="value"` matchers of each writ selector.
#[derive(Debug, Default)]
struct Uses {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
    equals: Vec<(String, String, String)>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn uses(expr: &str) -> Uses {
    let mut u = Uses::default();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut last_metric: Option<String> = None;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            // A string outside a selector (none expected): skip it.
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let grouping = matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            );
            if grouping && chars.get(j) == Some(&'(') {
                let end = chars[j..]
                    .iter()
                    .position(|c| *c == ')')
                    .map_or(chars.len(), |p| j + p);
                let inside: String = chars[j + 1..end].iter().collect();
                u.labels.extend(
                    inside
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
                i = end + 1;
                continue;
            }
            last_metric = word.starts_with("writ_").then(|| word.clone());
            if let Some(m) = &last_metric {
                u.metrics.insert(m.clone());
            }
            continue;
        }
        if c == '{' {
            let end = chars[i..]
                .iter()
                .position(|c| *c == '}')
                .map_or(chars.len(), |p| i + p);
            let inside: String = chars[i + 1..end].iter().collect();
            for m in inside.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let op = m.find(['=', '!']).unwrap_or(m.len());
                let name = m[..op].trim().to_string();
                let rest = &m[op..];
                if let (Some(metric), Some(value)) = (
                    &last_metric,
                    rest.strip_prefix('=')
                        .filter(|r| !r.starts_with('~'))
                        .map(|r| r.trim().trim_matches('"').to_string()),
                ) {
                    u.equals.push((metric.clone(), name.clone(), value));
                }
                u.labels.insert(name);
            }
            i = end + 1;
            continue;
        }
        i += 1;
    }
    u
}

#[test]
fn the_alert_rules_pass_promtool() {
    let dir = tempdir();
    let path = dir.path().join("rules.json");
    // JSON is YAML: promtool reads the PrometheusRule's `spec` as a rules file.
    fs::write(
        &path,
        serde_json::to_string(&rules()["spec"]).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("promtool: cannot run ({e}); .ci/setup installs it"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules failed:\n{text}");
    let alerts = expressions()
        .iter()
        .filter(|(from, _)| !from.starts_with("panel"))
        .count();
    assert!(
        text.contains(&format!("SUCCESS: {alerts} rules found")),
        "{text}"
    );
}

#[test]
fn every_alert_has_a_runbook_in_the_operations_guide() {
    let ops = fs::read_to_string(repo_path("docs/operations.md")).unwrap_or_default();
    for group in rules()["spec"]["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let runbook = rule["annotations"]["runbook"].as_str().unwrap_or("");
            let anchor = runbook
                .strip_prefix("docs/operations.md#")
                .unwrap_or_else(|| {
                    panic!(
                        "{}: runbook {runbook:?} is not in docs/operations.md",
                        rule["alert"]
                    )
                });
            let heading = ops
                .lines()
                .filter_map(|l| l.strip_prefix("### "))
                .any(|h| h.trim().to_lowercase() == anchor);
            assert!(heading, "no `### {anchor}` runbook in docs/operations.md");
        }
    }
}

#[test]
fn the_parser_finds_metrics_labels_and_matchers() {
    let u = uses(
        r#"sum by (namespace, action) (rate(writ_requests_total{decision="deny", frontend!="x"}[5m])) > 1 and on (action) writ_b"#,
    );
    assert_eq!(
        u.metrics.iter().map(String::as_str).collect::<Vec<_>>(),
        ["writ_b", "writ_requests_total"]
    );
    assert_eq!(
        u.labels.iter().map(String::as_str).collect::<Vec<_>>(),
        ["action", "decision", "frontend", "namespace"]
    );
    assert_eq!(
        u.equals,
        [(
            "writ_requests_total".to_string(),
            "decision".to_string(),
            "deny".to_string()
        )]
    );
}

#[test]
fn every_metric_label_and_value_the_alerts_and_dashboard_use_is_in_a_real_scrape() {
    // Traffic for every series the rules read: allowed, denied and audit-mode would-be
    // denied requests (on an execution action), an upstream that is down, a reload that
    // fails and one that succeeds, JWKS fetches that succeed and then fail.
    let keys = Keys::new();
    let jwks = fs::read(keys.jwks_path()).unwrap_or_default();
    let jwks_server = Backend::start_with(BackendOptions {
        body: jwks,
        headers: vec![("content-type".into(), "application/json".into())],
        ..BackendOptions::default()
    });
    let app = Backend::start();
    let closed = closed_port_addr();
    let config = Config::new(
        r#"
  - { name: read, methods: [GET], path: "/items/{id}", require: { scopes: [items:read] } }
  - { name: run, methods: [POST], path: "/items/{id}/run", execution: true, mode: audit, require: { scopes: [items:run] } }
  - { name: legacy, methods: [GET], path: /legacy, public: true, upstream: gone }"#,
    )
    .unset("upstream")
    .set(
        "upstreams",
        &format!("\n  app: {{ url: \"{}\" }}\n  gone: {{ url: \"http://{closed}\", connect_timeout: 1s }}", app.url()),
    )
    .set("defaults", "\n  upstream: app")
    .set(
        "issuers",
        &format!(
            "\n  - issuer: \"{ISSUER}\"\n    audiences: [{AUDIENCE}]\n    algorithms: [ES256]\n    jwks_url: \"{}/jwks.json\"\n    jwks_refresh: 1s",
            jwks_server.url()
        ),
    )
    .render();
    let writ = Writ::start(&config, "unused", &keys);
    let read = keys.token_with_scope("items:read");
    assert_eq!(writ.get("/items/1", Some(&read)).status, 200);
    assert_eq!(writ.get("/items/1", None).status, 401);
    let run = writ.send_with_token("POST", "/items/1/run", Some(&read), &[]);
    assert_eq!(run.status, 200, "audit mode forwards: {}", run.describe());
    assert_eq!(writ.get("/legacy", None).status, 502);
    let good = fs::read_to_string(writ.config_path()).unwrap_or_default();
    fs::write(writ.config_path(), "listen: [not an address\n").unwrap_or_else(|e| panic!("{e}"));
    let failed = eventually(|| {
        (writ.metric("writ_config_reloads_total", &[("result", "failure")]) >= 1.0).then_some(())
    });
    assert_eq!(failed, Some(()), "{}", writ.stderr());
    fs::write(writ.config_path(), good).unwrap_or_else(|e| panic!("{e}"));
    let reloaded = eventually(|| {
        (writ.metric("writ_config_reloads_total", &[("result", "success")]) >= 1.0).then_some(())
    });
    assert_eq!(reloaded, Some(()), "{}", writ.stderr());
    drop(jwks_server);
    let refresh_failed = eventually(|| {
        (writ.metric("writ_jwks_refresh_total", &[("result", "failure")]) >= 1.0).then_some(())
    });
    assert_eq!(refresh_failed, Some(()), "{}", writ.metrics());

    let scrape = writ.metrics();
    let samples = parse_metrics(&scrape);
    let mut by_metric: BTreeMap<&str, Vec<&BTreeMap<String, String>>> = BTreeMap::new();
    for s in &samples {
        by_metric
            .entry(s.name.as_str())
            .or_default()
            .push(&s.labels);
    }
    let mut problems = Vec::new();
    let exprs = expressions();
    assert!(
        exprs.len() >= 20,
        "alerts and panels found: {}",
        exprs.len()
    );
    for (from, expr) in &exprs {
        let u = uses(expr);
        if u.metrics.is_empty() && !expr.contains("up{") {
            problems.push(format!("{from}: names no writ metric: {expr}"));
        }
        for m in &u.metrics {
            if !by_metric.contains_key(m.as_str()) {
                problems.push(format!("{from}: metric `{m}` is not in the scrape"));
            }
        }
        for label in u
            .labels
            .iter()
            .filter(|l| !TARGET_LABELS.contains(&l.as_str()))
        {
            let found = u.metrics.iter().any(|m| {
                by_metric
                    .get(m.as_str())
                    .is_some_and(|series| series.iter().any(|s| s.contains_key(label)))
            });
            if !found {
                problems.push(format!(
                    "{from}: label `{label}` is on none of {:?} in the scrape",
                    u.metrics
                ));
            }
        }
        for (metric, label, value) in &u.equals {
            let found = by_metric.get(metric.as_str()).is_some_and(|series| {
                series
                    .iter()
                    .any(|s| s.get(label).is_some_and(|v| v == value))
            });
            if !found {
                problems.push(format!(
                    "{from}: no `{metric}{{{label}=\"{value}\"}}` series in the scrape"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n--- scrape ---\n{scrape}",
        problems.join("\n")
    );
}
