//! `writ inject` (SPEC: Kubernetes): golden outputs over real manifests, idempotence,
//! untouched documents byte for byte, the Service rewiring and its warnings, errors
//! that print nothing, every output valid against the Kubernetes schemas
//! (`kubernetes-validate`, PyPI), and the injected container's settings really
//! running `writ run` in front of a backend.
//!
//! Goldens live next to their inputs in `tests/fixtures/k8s/` (`NAME.injected.yaml`);
//! `WRIT_BLESS=1 cargo test --test inject` rewrites them after a deliberate change.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::fs;
use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::*;

fn inject(args: &[&str], stdin: &[u8]) -> Out {
    let mut child = writ()
        .arg("inject")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn writ inject");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn inject_file(name: &str, extra: &[&str]) -> Out {
    let path = fixture(&format!("k8s/{name}"));
    let mut args = vec!["-f", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(writ().arg("inject").args(&args));
    assert_eq!(out.code, Some(0), "{}", out.dump());
    out
}

/// Compares with `k8s/<golden>`, or writes it under `WRIT_BLESS=1`.
fn golden(golden: &str, actual: &str) {
    let path = fixture(&format!("k8s/{golden}"));
    if std::env::var_os("WRIT_BLESS").is_some() {
        fs::write(&path, actual).unwrap();
    }
    let want = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        want == actual,
        "output differs from {}:\n{actual}",
        path.display()
    );
}

/// Every object of a YAML stream, `List` items spread out.
fn objects(yaml: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for doc in yaml.split("\n---") {
        let v: Value = serde_saphyr::from_str(doc).unwrap_or(Value::Null);
        match v.get("items").and_then(Value::as_array) {
            Some(items) => out.extend(items.iter().cloned()),
            None if !v.is_null() => out.push(v),
            None => {}
        }
    }
    out
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

/// `kubernetes-validate --strict` over every object (List items one by one, since it
/// has no schema for `List`); objects of kinds it has no schema for are skipped by it
/// with a warning, which is what an unknown CRD must get.
pub fn validate(label: &str, yaml: &str) {
    let dir = tempdir();
    let mut files = Vec::new();
    for (i, o) in objects(yaml).iter().enumerate() {
        let p = dir.path().join(format!("{i}.json"));
        fs::write(&p, serde_json::to_vec_pretty(o).unwrap()).unwrap();
        files.push(p);
    }
    assert!(!files.is_empty(), "{label}: nothing to validate");
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "--kubernetes-version", "1.33.0"])
        .args(&files)
        .output()
        .expect("kubernetes-validate is installed by .ci/setup");
    assert!(
        out.status.success(),
        "{label}: kubernetes-validate failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sidecar(pod_spec: &Value) -> &Value {
    pod_spec["initContainers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "writ"))
        .expect("writ sidecar")
}

#[test]
fn multi_document_golden_with_services_by_name_and_by_number() {
    let out = inject_file("multi.yaml", &[]);
    golden("multi.injected.yaml", &out.stdout);
    let objs = objects(&out.stdout);
    let dep = find(&objs, "Deployment", "jobs");
    let spec = &dep["spec"]["template"]["spec"];
    // The fronted port keeps its number under the new name; the app's probe follows it.
    let app = &spec["containers"][0];
    assert_eq!(app["ports"][0]["name"], "app-http");
    assert_eq!(app["ports"][0]["containerPort"], 3000);
    assert_eq!(app["ports"][1]["name"], "metrics", "other ports untouched");
    assert_eq!(app["readinessProbe"]["httpGet"]["port"], "app-http");
    assert_eq!(
        spec["containers"][1]["name"], "worker",
        "second container kept"
    );
    let w = sidecar(spec);
    assert_eq!(w["restartPolicy"], "Always", "native sidecar");
    assert_eq!(w["ports"][0]["name"], "http", "writ takes the fronted name");
    assert_ne!(w["ports"][0]["containerPort"], 3000);
    let env: Vec<(String, String)> = w["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(env.contains(&("WRIT_UPSTREAM_ADDR".into(), "127.0.0.1:3000".into())));
    assert_eq!(
        w["args"],
        serde_json::json!(["run", "--config", "/etc/writ/writ.yaml"])
    );
    let sc = &w["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert!(sc["runAsUser"].as_i64().unwrap() > 0);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(w["resources"]["requests"]["memory"].is_string());
    assert_eq!(w["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(w["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(w["livenessProbe"]["httpGet"]["port"], "writ-admin");
    // The ConfigMap in the input says shutdown_grace: 20s.
    assert!(spec["terminationGracePeriodSeconds"].as_i64().unwrap() > 20);
    assert_eq!(spec["volumes"][0]["configMap"]["name"], "writ-policy");
    assert_eq!(
        dep["spec"]["template"]["metadata"]["annotations"]["writ.dev/injected"],
        env!("CARGO_PKG_VERSION")
    );
    // Services: by name untouched (byte for byte), by number rewired, metrics warned about.
    let input = fs::read_to_string(fixture("k8s/multi.yaml")).unwrap();
    let by_name = input
        .split("\n---\n")
        .find(|d| d.contains("name: jobs\n  namespace: shop\nspec:\n  selector"))
        .unwrap();
    assert!(out.stdout.contains(by_name), "by-name Service reprinted");
    assert_eq!(
        find(&objs, "Service", "jobs-by-number")["spec"]["ports"][0]["targetPort"],
        "http"
    );
    assert!(
        out.stdout
            .contains("# By number: rewritten to writ's port.\n"),
        "the comment that opens a changed document is kept"
    );
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains("Service/shop/jobs-metrics"),
        "{}",
        out.stderr
    );
    assert!(warnings[0].contains("bypasses writ"), "{}", out.stderr);
    validate("multi.yaml injected", &out.stdout);
}

#[test]
fn workloads_golden_statefulset_cronjob_disabled_job_injected_pod_list_and_crd() {
    let input = fs::read_to_string(fixture("k8s/workloads.yaml")).unwrap();
    let out = inject_file("workloads.yaml", &[]);
    golden("workloads.injected.yaml", &out.stdout);
    let objs = objects(&out.stdout);

    let sts = &find(&objs, "StatefulSet", "ledger")["spec"]["template"];
    let w = sidecar(&sts["spec"]);
    assert_eq!(w["image"], "registry.example/writ:pinned", "writ.dev/image");
    assert_eq!(
        w["ports"][0]["name"], "http",
        "an unnamed port: writ's is `http`"
    );
    assert_eq!(
        sts["spec"]["volumes"][0]["configMap"]["name"],
        "ledger-policy"
    );
    assert_eq!(
        sts["spec"]["terminationGracePeriodSeconds"], 60,
        "longer grace kept"
    );

    let cron = &find(&objs, "CronJob", "report")["spec"]["jobTemplate"]["spec"]["template"];
    assert_eq!(sidecar(&cron["spec"])["ports"][0]["name"], "web");
    assert_eq!(cron["spec"]["containers"][0]["ports"][0]["name"], "app-web");

    // The disabled Job, the injected Pod and the CRD are printed exactly as read.
    for marker in [
        "kind: Job\n",
        "kind: Pod\n",
        "apiVersion:   example.com/v1\nkind: Widget",
    ] {
        let doc = input.split("\n---\n").find(|d| d.contains(marker)).unwrap();
        assert!(out.stdout.contains(doc), "{marker} document not kept as is");
    }

    // A List: its DaemonSet injected, its Service (port by number, no targetPort) rewired.
    let ds = &find(&objs, "DaemonSet", "agent")["spec"]["template"]["spec"];
    assert_eq!(sidecar(ds)["ports"][0]["name"], "api");
    assert_eq!(
        find(&objs, "Service", "agent")["spec"]["ports"][0]["targetPort"],
        "api"
    );
    assert!(
        !out.stderr.contains("warning"),
        "nothing to warn about:\n{}",
        out.stderr
    );
    validate("workloads.yaml injected", &out.stdout);
}

#[test]
fn disabled_wins_under_all() {
    let out = inject_file("workloads.yaml", &["--all"]);
    let objs = objects(&out.stdout);
    let job = &find(&objs, "Job", "migrate")["spec"]["template"]["spec"];
    assert!(job.get("initContainers").is_none(), "disabled Job injected");
}

#[test]
fn injecting_twice_changes_nothing() {
    for name in ["multi.yaml", "workloads.yaml"] {
        let once = inject_file(name, &[]);
        let twice = inject(&["-"], once.stdout.as_bytes());
        assert_eq!(twice.code, Some(0), "{}", twice.dump());
        assert!(
            once.stdout == twice.stdout,
            "{name}: second run changed:\n{}",
            twice.stdout
        );
    }
}

#[test]
fn nothing_selected_is_byte_for_byte_the_input() {
    // Comments, flow style, quoting, key order, `...` and a block scalar holding `---`.
    let input = "# leading comment\n\
        apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: plain}   # no annotation\n\
        spec:\n  selector: {matchLabels: {app: p}}\n  template:\n    metadata: {labels: {app: p}}\n\
        \x20   spec:\n      containers: [{name: a, image: 'x:1', ports: [{containerPort: 80}]}]\n\
        ---\n\
        apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: |\n    ---not a marker\n    \"quoted\"\n\
        ...\n---\n# only a comment\n";
    for args in [&["-"][..], &[][..]] {
        let out = inject(args, input.as_bytes());
        assert_eq!(out.code, Some(0), "{}", out.dump());
        assert_eq!(out.stdout, input);
    }
}

#[test]
fn a_workload_that_cannot_be_injected_fails_and_prints_nothing() {
    let ambiguous = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: two\n  annotations: {writ.dev/inject: enabled}\n\
        spec:\n  containers:\n    - name: a\n      image: a\n      ports: [{name: web, containerPort: 80}, {name: grpc, containerPort: 90}]\n";
    let out = inject(&[], ambiguous.as_bytes());
    assert_eq!(out.code, Some(1), "{}", out.dump());
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("Pod/two"), "{}", out.stderr);
    assert!(out.stderr.contains("writ.dev/port"), "{}", out.stderr);

    // Swept in by --all rather than asked for: left as it is, with a warning.
    let swept = ambiguous.replace("  annotations: {writ.dev/inject: enabled}\n", "");
    let out = inject(&["--all"], swept.as_bytes());
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert_eq!(out.stdout, swept);
    assert!(
        out.stderr.contains("warning: not injected: Pod/two"),
        "{}",
        out.stderr
    );

    let bad_yaml = "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n";
    let out = inject(&[], bad_yaml.as_bytes());
    assert_eq!(out.code, Some(1), "{}", out.dump());
    assert!(out.stdout.is_empty());

    // With the annotation naming one of the two ports, it works.
    let named = ambiguous.replace(
        "{writ.dev/inject: enabled}",
        "{writ.dev/inject: enabled, writ.dev/port: \"90\"}",
    );
    let out = inject(&[], named.as_bytes());
    assert_eq!(out.code, Some(0), "{}", out.dump());
    let pod = &objects(&out.stdout)[0];
    assert_eq!(sidecar(&pod["spec"])["ports"][0]["name"], "grpc");
}

/// The injected container's own settings (env, args) start a real `writ run` that
/// listens where the pod spec says and forwards to the app port on loopback.
#[test]
fn the_injected_settings_run_writ_in_front_of_the_app() {
    let backend = Backend::start();
    let app_port = backend.addr().port();
    let manifest = fs::read_to_string(fixture("k8s/multi.yaml"))
        .unwrap()
        .replace("containerPort: 3000", &format!("containerPort: {app_port}"));
    let out = inject(&[], manifest.as_bytes());
    assert_eq!(out.code, Some(0), "{}", out.dump());
    let objs = objects(&out.stdout);
    let policy = find(&objs, "ConfigMap", "writ-policy")["data"]["writ.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let dep = find(&objs, "Deployment", "jobs");
    let w = sidecar(&dep["spec"]["template"]["spec"]);
    let dir = tempdir();
    let config = dir.path().join("writ.yaml");
    fs::write(&config, policy).unwrap();
    let (listen, admin) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_writ"));
    for e in w["env"].as_array().unwrap() {
        let (name, value) = (e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
        // Loopback stand-ins for the pod's 0.0.0.0 ports; the upstream is kept as injected.
        let value = match name {
            "WRIT_LISTEN" => format!("127.0.0.1:{listen}"),
            "WRIT_ADMIN" => format!("127.0.0.1:{admin}"),
            _ => value.to_string(),
        };
        cmd.env(name, value);
    }
    let args: Vec<String> = w["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .replace("/etc/writ/writ.yaml", config.to_str().unwrap())
        })
        .collect();
    let mut child = cmd
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proxy: std::net::SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let ready = eventually(|| {
        try_request(admin, "GET", "/readyz", &[], b"")
            .ok()
            .filter(|r| r.status == 200)
            .map(|_| ())
    });
    let resp = ready.map(|_| request(proxy, "GET", "/healthz", &[], b""));
    let denied = ready.map(|_| request(proxy, "POST", "/anything", &[], b""));
    // A policy rollout (the ConfigMap file changes): the reload keeps the injected
    // listener and upstream, not the ones written in the policy.
    let edited = fs::read_to_string(&config).unwrap() + "# rolled out\n";
    fs::write(&config, edited).unwrap();
    let reloaded = ready.and_then(|_| {
        eventually(|| {
            let m = try_request(admin, "GET", "/metrics", &[], b"").ok()?;
            metric_value(&m.body_text(), "writ_config_generation", &[]).filter(|g| *g >= 2.0)
        })
    });
    let after = reloaded.map(|_| request(proxy, "GET", "/healthz", &[], b""));
    let _ = child.kill();
    let _ = child.wait();
    let resp = resp.expect("writ never became ready");
    assert_eq!(resp.status, 200);
    assert_eq!(
        denied.unwrap().status,
        403,
        "unmatched is denied by the policy"
    );
    assert_eq!(
        after.expect("never reloaded").status,
        200,
        "after the reload"
    );
    assert_eq!(
        backend.count(),
        2,
        "the backend saw only the allowed requests"
    );
    assert!(backend.requests().iter().all(|r| r.path() == "/healthz"));
}

#[test]
fn fixtures_are_valid_kubernetes() {
    for name in ["multi.yaml", "workloads.yaml"] {
        let text = fs::read_to_string(fixture(&format!("k8s/{name}"))).unwrap();
        validate(name, &text);
    }
}
