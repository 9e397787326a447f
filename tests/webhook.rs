//! `writ webhook` (SPEC: Kubernetes): the real binary over TLS, sent an AdmissionReview
//! as the API server sends it (`tests/fixtures/k8s/admission-review.json`, a pod made by
//! a ReplicaSet with the API server's defaults filled in). The returned patch is applied
//! with an independent JSON Patch implementation (Python `jsonpatch`, PyPI) and the
//! result must equal what `writ inject` makes of the same pod. Bad input is a 400,
//! oversized input a 413, and neither stops the server; renewed certificates are served
//! without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use serde_json::{Value, json};
use support::*;

struct Webhook {
    child: Child,
    addr: SocketAddr,
    cert: Cert,
    log: tempfile::NamedTempFile,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Webhook {
    fn start() -> Webhook {
        let cert = Cert::new(&["localhost"]);
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_writ"))
            .arg("webhook")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--tls-cert")
            .arg(&cert.cert_path)
            .arg("--tls-key")
            .arg(&cert.key_path)
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let w = Webhook {
            child,
            addr,
            cert,
            log,
        };
        let up = eventually(|| {
            std::net::TcpStream::connect(addr).ok()?;
            Some(())
        });
        assert!(up.is_some(), "webhook never listened");
        assert_eq!(w.send("GET", "/healthz", b"").status, 200);
        w
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log.path()).unwrap()
    }

    fn send(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        send_with(self.addr, &self.cert, method, path, body)
    }

    fn review(&self, review: &Value) -> Value {
        let a = self.send("POST", "/inject", &serde_json::to_vec(review).unwrap());
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.header("content-type"), Some("application/json"));
        let out = a.json();
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(
            out["response"]["uid"], review["request"]["uid"],
            "uid echoed"
        );
        assert_eq!(out["response"]["allowed"], true);
        out["response"].clone()
    }
}

fn send_with(addr: SocketAddr, cert: &Cert, method: &str, path: &str, body: &[u8]) -> Answer {
    block_on(async {
        let tls = tls_connect(addr, cert, &[b"http/1.1"]).await;
        let mut c = h1_client(tls).await;
        let uri = format!("https://localhost{path}");
        let resp = c
            .send_request(req(
                method,
                &uri,
                &[("content-type", "application/json")],
                body,
            ))
            .await
            .expect("response");
        collect(resp).await
    })
}

fn fixture_review() -> Value {
    serde_json::from_str(&fs::read_to_string(fixture("k8s/admission-review.json")).unwrap())
        .unwrap()
}

/// Applies a JSON Patch with Python's `jsonpatch` (RFC 6902), not writ's crate.
fn apply_patch(doc: &Value, patch: &Value) -> Value {
    let script = "import json, sys, jsonpatch\n\
        d = json.load(sys.stdin)\n\
        print(json.dumps(jsonpatch.apply_patch(d['doc'], d['patch'])))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let input = serde_json::to_vec(&json!({"doc": doc, "patch": patch})).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jsonpatch (installed by .ci/setup) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn decode_patch(response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let b = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("a patch"))
        .unwrap();
    serde_json::from_slice(&b).unwrap()
}

/// What `writ inject --all` prints for the pod (JSON is YAML), parsed.
fn inject_cli(pod: &Value) -> Value {
    let dir = tempdir();
    let p = dir.path().join("pod.json");
    fs::write(&p, serde_json::to_vec(pod).unwrap()).unwrap();
    let out = run(writ().arg("inject").arg("--all").arg("-f").arg(&p));
    assert_eq!(out.code, Some(0), "{}", out.dump());
    serde_saphyr::from_str(&out.stdout).unwrap()
}

#[test]
fn the_patch_is_what_writ_inject_makes_of_the_pod() {
    let hook = Webhook::start();
    let review = fixture_review();
    let pod = review["request"]["object"].clone();
    let response = hook.review(&review);
    let patch = decode_patch(&response);
    let patched = apply_patch(&pod, &patch);
    assert_eq!(patched, inject_cli(&pod), "webhook and writ inject differ");
    // And it is the injection: fields the API server set are kept.
    let spec = &patched["spec"];
    assert_eq!(spec["initContainers"][0]["name"], "writ");
    assert_eq!(spec["containers"][0]["ports"][0]["name"], "app-http");
    assert_eq!(spec["tolerations"], pod["spec"]["tolerations"]);
    assert_eq!(
        patched["metadata"]["ownerReferences"],
        pod["metadata"]["ownerReferences"]
    );
    assert_eq!(
        patched["metadata"]["annotations"]["writ.dev/injected"],
        env!("CARGO_PKG_VERSION")
    );

    // The injected pod comes back (reinvocation): no patch.
    let mut again = review.clone();
    again["request"]["object"] = patched.clone();
    let r = hook.review(&again);
    assert!(r.get("patch").is_none(), "re-injected: {r}");

    // Opted out: no patch.
    let mut disabled = review.clone();
    disabled["request"]["object"]["metadata"]["annotations"] =
        json!({"writ.dev/inject": "disabled"});
    let r = hook.review(&disabled);
    assert!(r.get("patch").is_none(), "disabled pod patched: {r}");

    // A pod with nothing to front is admitted unchanged, with a warning for kubectl.
    let mut portless = review.clone();
    portless["request"]["object"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("ports");
    let r = hook.review(&portless);
    assert!(r.get("patch").is_none());
    assert!(
        r["warnings"][0].as_str().unwrap().contains("not injected"),
        "{r}"
    );

    // Not a pod: allowed, untouched.
    let mut other = review.clone();
    other["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    assert!(hook.review(&other).get("patch").is_none());
}

#[test]
fn invalid_input_is_400_oversized_is_413_and_the_server_keeps_serving() {
    let hook = Webhook::start();
    let review = fixture_review();
    let mut wrong_kind = review.clone();
    wrong_kind["kind"] = json!("Pod");
    let mut no_request = review.clone();
    no_request.as_object_mut().unwrap().remove("request");
    let mut bad_pod = review.clone();
    bad_pod["request"]["object"]["spec"]["containers"] = json!("not a list");
    let bodies: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"{}".to_vec(),
        b"[1,2]".to_vec(),
        serde_json::to_vec(&wrong_kind).unwrap(),
        serde_json::to_vec(&no_request).unwrap(),
        serde_json::to_vec(&bad_pod).unwrap(),
    ];
    for body in &bodies {
        let a = hook.send("POST", "/inject", body);
        assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(body));
    }
    let logged = eventually(|| {
        let log = hook.log();
        (log.matches("bad AdmissionReview").count() == bodies.len()).then_some(())
    });
    assert!(logged.is_some(), "one log line per 400:\n{}", hook.log());
    let huge = vec![b' '; 3 * 1024 * 1024 + 1];
    assert_eq!(hook.send("POST", "/inject", &huge).status, 413);
    assert_eq!(hook.send("GET", "/inject", b"").status, 405);
    assert_eq!(hook.send("GET", "/nope", b"").status, 404);
    // Still answering.
    let r = hook.review(&review);
    assert!(r.get("patch").is_some());
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart() {
    let hook = Webhook::start();
    let renewed = Cert::new(&["localhost"]);
    // Key first, then cert, as a non-atomic writer would: the pair mismatches in between.
    fs::write(&hook.cert.key_path, &renewed.key_pem).unwrap();
    fs::write(&hook.cert.cert_path, &renewed.cert_pem).unwrap();
    // The old certificate fails the client's handshake (a panic in `tls_connect`) until
    // the webhook has swapped in the renewed one.
    let served = eventually(|| {
        let a = std::panic::catch_unwind(|| send_with(hook.addr, &renewed, "GET", "/healthz", b""))
            .ok()?;
        (a.status == 200).then_some(())
    });
    assert!(served.is_some(), "the renewed certificate was never served");
}

#[test]
fn the_webhook_output_is_valid_kubernetes() {
    let hook = Webhook::start();
    let review = fixture_review();
    let pod = review["request"]["object"].clone();
    let patched = apply_patch(&pod, &decode_patch(&hook.review(&review)));
    let dir = tempdir();
    let p = dir.path().join("pod.json");
    fs::write(&p, serde_json::to_vec_pretty(&patched).unwrap()).unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "--kubernetes-version", "1.33.0"])
        .arg(&p)
        .output()
        .expect("kubernetes-validate is installed by .ci/setup");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client that stalls mid-request holds its own connection only: other reviews are
/// answered meanwhile.
#[test]
fn a_stalled_client_does_not_hold_up_others() {
    let hook = Webhook::start();
    let review = fixture_review();
    let stalled = block_on(async {
        use tokio::io::AsyncWriteExt as _;
        let mut tls = tls_connect(hook.addr, &hook.cert, &[b"http/1.1"]).await;
        tls.write_all(b"POST /inject HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        tls
    });
    let r = hook.review(&review);
    assert!(r.get("patch").is_some());
    drop(stalled);
}

/// SIGTERM: the webhook stops accepting, lets what is in flight finish, and exits 0
/// within the drain (5 s) rather than at the kubelet's SIGKILL.
#[test]
fn sigterm_exits_cleanly_within_the_drain() {
    let mut hook = Webhook::start();
    // An idle keep-alive connection must not hold the exit past the drain.
    let idle = block_on(async { tls_connect(hook.addr, &hook.cert, &[b"http/1.1"]).await });
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(hook.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let exited = eventually_within(std::time::Duration::from_secs(10), || {
        hook.child.try_wait().unwrap()
    });
    drop(idle);
    let exited = exited.expect("still running 10 s after SIGTERM");
    assert!(exited.success(), "{exited:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}
