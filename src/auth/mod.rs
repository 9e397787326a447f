//! Tokens: key sets, claims, verification and the verified-token cache.

pub mod cache;
pub mod claims;
pub mod jwks;
pub mod keys;
pub mod token;
