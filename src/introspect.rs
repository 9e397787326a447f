//! RFC 7662 token introspection for actions with `require: { introspect: true }`
//! (SPEC: Revocation). Asked only when the engine says so (`Decision::introspect`,
//! after every other check passed); answers cached per token for at most the
//! issuer's `cache` and never beyond the token's `exp`; failures are never
//! cached and fail closed (503 `introspection_unavailable`).

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use quick_cache::sync::Cache;

use writ_engine::authorize::Introspected;
use writ_engine::clock::Clock;
use writ_engine::policy::Introspection;

const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const CACHED_TOKENS: usize = 100_000;

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// The introspection client and its per-token answer cache.
pub struct Introspector {
    client: Option<HttpsClient>,
    /// token → (answer, valid until).
    cache: Cache<String, (Introspected, f64)>,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Introspector")
    }
}

impl Default for Introspector {
    fn default() -> Self {
        Introspector {
            client: crate::tls::connector(None, None, TIMEOUT)
                .map_err(|e| tracing::error!(error = %e, "Cannot build the introspection client"))
                .ok()
                .map(|c| Client::builder(TokioExecutor::new()).build(c)),
            cache: Cache::new(CACHED_TOKENS),
        }
    }
}

impl Introspector {
    /// The answer for `token` (whose `exp` is `exp`) from `endpoint`, cached.
    /// Concurrent requests for one token wait for the first one's call (the
    /// cache's placeholder) instead of calling the endpoint each.
    pub async fn ask(
        &self,
        endpoint: &Introspection,
        token: &str,
        exp: Option<f64>,
    ) -> Introspected {
        let guard = loop {
            let now = Clock::System.now();
            match self.cache.get_value_or_guard_async(token).await {
                Ok((answer, until)) if until > now => return answer,
                // Lapsed: forget it and become (or wait for) the one who asks.
                Ok(_) => {
                    self.cache.remove(token);
                }
                Err(guard) => break guard,
            }
        };
        let answer = match self.request(endpoint, token).await {
            Ok(a) => a,
            Err(e) => {
                // Not cached: dropping the guard lets the next request ask again.
                tracing::warn!(introspection.url = %endpoint.url, error = %e, "Introspection failed; refusing (fail closed)");
                return Introspected::Unavailable;
            }
        };
        let now = Clock::System.now();
        let until = (now + endpoint.cache.as_secs_f64()).min(exp.unwrap_or(f64::INFINITY));
        if until > now {
            let _ = guard.insert((answer, until));
        }
        answer
    }

    async fn request(&self, endpoint: &Introspection, token: &str) -> Result<Introspected, String> {
        let client = self.client.as_ref().ok_or("no HTTP client")?;
        let secret = std::env::var(&endpoint.client_secret_env)
            .map_err(|_| format!("${} is not set", endpoint.client_secret_env))?;
        // RFC 6749 §2.3.1: client id and secret are form-encoded before Basic.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(&endpoint.client_id),
            enc(&secret)
        ));
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let req = Request::post(&endpoint.url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(endpoint.timeout, client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let bytes = tokio::time::timeout(
            endpoint.timeout,
            Limited::new(resp.into_body(), MAX_ANSWER_BYTES).collect(),
        )
        .await
        .map_err(|_| "body timed out".to_string())?
        .map_err(|e| e.to_string())?
        .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        match v.get("active") {
            Some(serde_json::Value::Bool(true)) => Ok(Introspected::Active),
            Some(serde_json::Value::Bool(false)) => Ok(Introspected::Inactive),
            _ => Err("the answer has no boolean `active`".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_placeholder_makes_one_loader() {
        let cache: Arc<Cache<String, (Introspected, f64)>> = Arc::new(Cache::new(16));
        let loads = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for _ in 0..8 {
            let (cache, loads) = (cache.clone(), loads.clone());
            hs.push(tokio::spawn(async move {
                match cache.get_value_or_guard_async("k").await {
                    Ok(v) => v.0,
                    Err(g) => {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let _ = g.insert((Introspected::Active, f64::MAX));
                        Introspected::Active
                    }
                }
            }));
        }
        for h in hs {
            assert_eq!(h.await.unwrap(), Introspected::Active);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
