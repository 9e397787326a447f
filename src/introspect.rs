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
    pub async fn ask(
        &self,
        endpoint: &Introspection,
        token: &str,
        exp: Option<f64>,
    ) -> Introspected {
        let now = Clock::System.now();
        if let Some((answer, until)) = self.cache.get(token)
            && until > now
        {
            return answer;
        }
        let answer = match self.request(endpoint, token).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(introspection.url = %endpoint.url, error = %e, "Introspection failed; refusing (fail closed)");
                return Introspected::Unavailable;
            }
        };
        let until = (now + endpoint.cache.as_secs_f64()).min(exp.unwrap_or(f64::INFINITY));
        if until > now {
            self.cache.insert(token.to_string(), (answer, until));
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
        let resp = tokio::time::timeout(TIMEOUT, client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let bytes = tokio::time::timeout(
            TIMEOUT,
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
