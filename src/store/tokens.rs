//! The durable state of gateway-issued API tokens.
//!
//! What every backend promises, on top of the [`super`] promises:
//! - **No usable secret stored.** A token's secret is kept only as a keyed
//!   hash (the caller hashes it), so a copy of the store yields no token.
//! - **A change is visible to every gateway process within a poll.** Every
//!   write that changes what a token may do (create, revoke, rotate) bumps
//!   [`TokenStore::token_version`]; running gateways poll it and reload.
//! - **Use is counted without blocking requests.** Gateways add use counts in
//!   batches ([`TokenStore::record_use`]); those writes do not bump the version.

use std::time::SystemTime;

use super::StoreError;

/// One token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The public id (the `<id>` of `eg_<id>_<secret>`).
    pub id: String,
    /// The site it works on.
    pub site: String,
    /// A short name for people.
    pub name: String,
    /// Who owns the integration.
    pub owner: Option<String>,
    /// What it is for.
    pub description: Option<String>,
    /// Scopes as written (`Item:read`, `path:GET:/api/method/x*`, `company:1`).
    pub scopes: Vec<String>,
    /// The site credential injected upstream.
    pub credential: String,
    /// Source networks allowed (empty: any).
    pub allow: Vec<String>,
    /// Rate limit as written (`60/min`), if any.
    pub rate: Option<String>,
    /// Keyed hash of the current secret.
    pub hash: String,
    /// Keyed hash of the secret before the last rotation, while it still works.
    pub old_hash: Option<String>,
    /// When the old secret stops working.
    pub old_until: Option<SystemTime>,
    /// When it was made.
    pub created: SystemTime,
    /// When it stops working.
    pub expires: Option<SystemTime>,
    /// When it was revoked.
    pub revoked: Option<SystemTime>,
    /// When it was last used.
    pub last_used: Option<SystemTime>,
    /// How many requests it has made.
    pub uses: u64,
}

/// Token state. Calls block on I/O; async callers use `spawn_blocking`.
pub trait TokenStore {
    /// Stores a new token.
    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// One token by id.
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every token, optionally of one site, oldest first.
    fn tokens(&self, site: Option<&str>) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revokes a token; false if there is no such live token.
    fn revoke_token(&self, id: &str, now: SystemTime) -> Result<bool, StoreError>;
    /// Gives a token a new secret hash; the old one works until `old_until`.
    /// False if there is no such live token.
    fn rotate_token(&self, id: &str, hash: &str, old_until: SystemTime)
    -> Result<bool, StoreError>;
    /// Adds `uses` requests made up to `last_used` (batched by gateways).
    fn record_use(&self, id: &str, uses: u64, last_used: SystemTime) -> Result<(), StoreError>;
    /// Changes whenever a token is created, revoked or rotated.
    fn token_version(&self) -> Result<i64, StoreError>;
}
