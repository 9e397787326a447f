//! Verified-token cache: a repeated token skips parsing and signature checks.
//! Keyed by the full token bytes, bounded by weight (bytes), and an entry is
//! only used while the key that verified it is still in its issuer's key set
//! and the policy generation is the one it was verified under.

use std::sync::Arc;

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::token::Verified;

#[derive(Clone)]
struct TokenWeight;

impl Weighter<String, Arc<Verified>> for TokenWeight {
    fn weight(&self, key: &String, val: &Arc<Verified>) -> u64 {
        (key.len() * 2 + val.approx_size + 128) as u64
    }
}

/// Default memory bound for cached tokens.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Verified tokens by their full text, bounded by weight; an entry is used only under the same policy generation and while its key is still in the issuer's set.
pub struct TokenCache {
    inner: Cache<String, Arc<Verified>, TokenWeight>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.inner.len())
            .finish()
    }
}

impl TokenCache {
    /// A cache holding at most about `max_bytes` of verified tokens.
    pub fn new(max_bytes: u64) -> Self {
        TokenCache {
            inner: Cache::with_weighter(
                (max_bytes / 2048).max(16) as usize,
                max_bytes,
                TokenWeight,
            ),
        }
    }

    /// The verification of exactly this token, if cached.
    pub fn get(&self, token: &str) -> Option<Arc<Verified>> {
        self.inner.get(token)
    }

    /// Remembers a verification so the next use of the token skips the signature.
    pub fn insert(&self, token: &str, v: Arc<Verified>) {
        self.inner.insert(token.to_string(), v);
    }

    /// Forgets a token (its entry outlived its generation or its key).
    pub fn remove(&self, token: &str) {
        self.inner.remove(token);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}
