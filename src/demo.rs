//! `writ demo`: the newcomer's tour. Starts the real proxy on loopback in front
//! of a built-in echo backend with the bundled example policy and an embedded
//! demo key, sends a scripted series of requests, prints each decision, then
//! keeps serving with ready-to-paste curl commands until Ctrl-C (`--once` exits).

use std::convert::Infallible;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::mint::{act_chain, read_private_key, sign, thumbprint};
use crate::proxy::Body;
use crate::proxy::respond::full;
use crate::serve::{Server, shutdown_signal};
use writ_engine::clock::Clock;

const DEMO_CONFIG: &str = include_str!("../config/demo/demo.yaml");
const DEMO_JWKS: &str = include_str!("../config/demo/jwks.json");
/// A key for the demo only: it is public in this repository, never trust it.
const DEMO_KEY: &str = include_str!("../config/demo/demo-key.pem");

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

pub fn run(once: bool) -> u8 {
    let rt = match crate::serve::tool_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("writ demo: {e}");
            return 1;
        }
    };
    match rt.block_on(tour(once)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("writ demo: {e}");
            1
        }
    }
}

/// The echo backend: answers with what it received, so the tour can show the
/// identity headers writ set.
static BACKEND_HITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn echo(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    BACKEND_HITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let body = json!({
        "backend": "echo",
        "method": req.method().as_str(),
        "target": req.uri().to_string(),
        "x-writ-subject": h("x-writ-subject"),
        "x-writ-actor": h("x-writ-actor"),
        "x-writ-action": h("x-writ-action"),
    });
    let mut r = Response::new(full(Bytes::from(body.to_string())));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Why the tour stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error(transparent)]
    Mint(#[from] crate::mint::MintError),
    #[error(transparent)]
    Config(#[from] writ_engine::config::ConfigErrors),
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
}

async fn start_echo() -> Result<SocketAddr, DemoError> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), hyper::service::service_fn(echo))
                    .await;
            });
        }
    });
    Ok(addr)
}

/// One raw HTTP/1.1 exchange (raw so the path is sent exactly as written).
async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Result<(u16, Value), DemoError> {
    let mut s = TcpStream::connect(addr).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or_default();
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: api.example.com\r\n{auth}{ct}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .map_err(|_| DemoError::Timeout)??;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let v = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    Ok((status, v))
}

fn token(claims: Value) -> Result<String, DemoError> {
    let key = read_private_key(DEMO_KEY.as_bytes())?;
    let kid = thumbprint(&key.key, key.alg)?;
    Ok(sign(&key, key.alg, Some(kid), &claims)?)
}

async fn tour(once: bool) -> Result<(), DemoError> {
    let st = Style {
        on: std::io::stdout().is_terminal(),
    };
    let backend = start_echo().await?;
    let dir = std::env::temp_dir().join(format!("writ-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("jwks.json"), DEMO_JWKS)?;
    let config = DEMO_CONFIG
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("http://127.0.0.1:3000", &format!("http://{backend}"));
    let policy = writ_engine::config::load_str(&config, "demo.yaml", &dir, dir.join("demo.yaml"))?;
    let server = Server::bind(policy, None).await?;
    let (proxy, admin) = (server.proxy_addr, server.admin_addr);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));

    let now = Clock::System.now() as i64;
    let base = |scope: &str, tenant: &str| {
        json!({"iss": "https://login.example.com/", "aud": "orders-api", "sub": "alice",
               "tenant": tenant, "scope": scope, "iat": now - 30, "exp": now + 3600})
    };
    let reader = token(base("jobs:read", "acme"))?;
    let runner = token(base("jobs:execute", "acme"))?;
    let mut agent_claims = base("jobs:execute", "acme");
    agent_claims["act"] = act_chain(&["agent:ci-7".to_string()]).unwrap_or(Value::Null);
    let agent = token(agent_claims.clone())?;
    agent_claims["iat"] = json!(now - 6 * 60);
    let stale_agent = token(agent_claims)?;
    // A shopping agent with a person's approval: refund order 42, up to 120.
    let mut shopper = base("refunds:write", "acme");
    shopper["act"] = json!({"sub": "agent:shopper"});
    shopper["authorization_details"] =
        json!([{"type": "refund", "order_id": "42", "max_amount": 120}]);
    let shopper = token(shopper)?;
    let refund = |amount: u32| {
        writ_engine::policy::mcp::tools_call_body(
            "create_refund",
            &json!({"order_id": "42", "amount": amount, "tenant": "acme"}),
        )
    };
    let (refund_80, refund_500) = (refund(80), refund(500));

    out!(
        "{}",
        st.bold("writ demo: an execution-authority proxy, live on loopback")
    );
    out!("  proxy    http://{proxy}    (policy: config/demo/demo.yaml, embedded)");
    out!("  admin    http://{admin}/metrics");
    out!("  backend  http://{backend}  (echo: shows what it received)\n");

    type Scene<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a [u8]>);
    let script: Vec<Scene<'_>> = vec![
        (
            "reader reads a job",
            "GET",
            "/tenants/acme/jobs/7",
            Some(&reader),
            None,
        ),
        ("no token", "GET", "/tenants/acme/jobs/7", None, None),
        (
            "read token tries to RUN a job",
            "POST",
            "/tenants/acme/jobs/7/run",
            Some(&reader),
            None,
        ),
        (
            "CI agent runs a job for alice",
            "POST",
            "/tenants/acme/jobs/7/run",
            Some(&agent),
            None,
        ),
        (
            "same agent, delegation 6m old",
            "POST",
            "/tenants/acme/jobs/7/run",
            Some(&stale_agent),
            None,
        ),
        (
            "acme token, globex tenant",
            "POST",
            "/tenants/globex/jobs/7/run",
            Some(&runner),
            None,
        ),
        (
            "path confusion via public path",
            "POST",
            "/healthz/../tenants/acme/jobs/7/run",
            None,
            None,
        ),
        (
            "encoded slash",
            "POST",
            "/tenants/acme/jobs/7%2Frun",
            Some(&runner),
            None,
        ),
        (
            "agent refunds 80 (approved: 120)",
            "POST",
            "/mcp  tools/call create_refund",
            Some(&shopper),
            Some(&refund_80),
        ),
        (
            "same agent refunds 500",
            "POST",
            "/mcp  tools/call create_refund",
            Some(&shopper),
            Some(&refund_500),
        ),
    ];
    for (i, (what, method, target, tok, body)) in script.iter().enumerate() {
        let hits = BACKEND_HITS.load(std::sync::atomic::Ordering::SeqCst);
        // The shown target may name the tool; what is sent is the path.
        let path = target.split_whitespace().next().unwrap_or(target);
        let (status, body) = send(proxy, method, path, *tok, *body).await?;
        // A denial on an MCP endpoint is a JSON-RPC error carrying the problem.
        let body = match body.pointer("/error/data") {
            Some(problem) => problem.clone(),
            None => body,
        };
        let reached = BACKEND_HITS.load(std::sync::atomic::Ordering::SeqCst) != hits;
        let allowed = (200..300).contains(&status);
        let verdict = if allowed {
            st.green(&format!("{status} allow"))
        } else {
            st.red(&format!("{status} deny "))
        };
        let detail = if allowed {
            let s = body["x-writ-subject"].as_str().unwrap_or("-");
            let a = body["x-writ-actor"]
                .as_str()
                .map(|a| format!(", actor={a}"))
                .unwrap_or_default();
            format!(
                "backend saw {} as subject={s}{a}",
                body["x-writ-action"].as_str().unwrap_or("?")
            )
        } else {
            format!(
                "reason={} action={}  ({})",
                body["reason"].as_str().unwrap_or("?"),
                body["action"].as_str().unwrap_or("none"),
                if reached {
                    "REACHED THE BACKEND"
                } else {
                    "backend saw nothing"
                }
            )
        };
        out!(
            "{:>2}. {:<32} {:<5} {:<38} {}  {}",
            i + 1,
            what,
            method,
            target,
            verdict,
            st.dim(&detail)
        );
    }

    if once {
        let _ = stop_tx.send(());
        let _ = serving.await;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    out!("\n{}", st.bold("Try it yourself (tokens valid for 1h):"));
    out!("  curl -i http://{proxy}/tenants/acme/jobs/7 -H 'Authorization: Bearer {reader}'");
    out!(
        "  curl -i -X POST http://{proxy}/tenants/acme/jobs/7/run -H 'Authorization: Bearer {runner}'"
    );
    out!(
        "  curl -i -X POST http://{proxy}/tenants/acme/jobs/7/run -H 'Authorization: Bearer {agent}'"
    );
    out!("  curl -s http://{admin}/metrics | grep writ_requests_total");
    out!("\nServing until Ctrl-C.");
    shutdown_signal().await;
    let _ = stop_tx.send(());
    let _ = serving.await;
    let _ = std::fs::remove_dir_all(Path::new(&dir));
    Ok(())
}
