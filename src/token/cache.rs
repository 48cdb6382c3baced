//! The in-memory view of every token and of the addresses locked for
//! invalid tokens, kept in step with the store.
//!
//! Requests read it without a lock ([`ArcSwap`]). A background task calls
//! [`TokenCache::refresh`] every [`REFRESH_EVERY`]: one small read of the
//! store's token version, and a reload of all tokens only when it changed,
//! so a revocation made by the CLI (or another gateway) is enforced within a
//! second. Use counts gather in atomics and are written to the store by
//! [`TokenCache::flush`] every [`FLUSH_EVERY`], with one aggregated
//! `token_used` audit line per token, so a busy integration neither slows
//! requests nor floods the audit log.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use governor::{DefaultDirectRateLimiter, RateLimiter};
use ipnet::IpNet;

use super::scope::{self, Scopes};
use crate::audit::{AuditEvent, AuditLog};
use crate::store::{Key, Scope, StateStore, StoreError, TokenRecord};

/// How often the store's token version is polled.
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);
/// How often use counts are written to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// One token as requests check it.
pub struct LiveToken {
    /// The stored record.
    pub record: TokenRecord,
    /// Its parsed scopes.
    pub scopes: Scopes,
    /// Its parsed source networks (empty: any).
    pub allow: Vec<IpNet>,
    /// Its rate, if it has one.
    pub limiter: Option<DefaultDirectRateLimiter>,
    uses: AtomicU64,
    last_used_ms: AtomicU64,
}

impl LiveToken {
    fn new(record: TokenRecord) -> Result<LiveToken, String> {
        let scopes = scope::parse(&record.scopes)?;
        let allow = record
            .allow
            .iter()
            .map(|n| {
                n.parse::<IpNet>()
                    .map_err(|e| format!("network {n:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let limiter = match &record.rate {
            None => None,
            Some(r) => Some(RateLimiter::direct(crate::login::limiter::quota(
                crate::config::values::parse_rate(r)?,
            ))),
        };
        Ok(LiveToken {
            record,
            scopes,
            allow,
            limiter,
            uses: AtomicU64::new(0),
            last_used_ms: AtomicU64::new(0),
        })
    }

    /// Counts one use at `now`.
    pub fn used(&self, now: SystemTime) {
        self.uses.fetch_add(1, Ordering::Relaxed);
        self.last_used_ms.fetch_max(ms(now), Ordering::Relaxed);
    }

    fn take_uses(&self) -> Option<(u64, SystemTime)> {
        let n = self.uses.swap(0, Ordering::Relaxed);
        let ms = self.last_used_ms.load(Ordering::Relaxed);
        (n > 0).then(|| (n, UNIX_EPOCH + Duration::from_millis(ms)))
    }
}

/// Whether two records allow the same (use counts aside).
fn same_rules(a: &TokenRecord, b: &TokenRecord) -> bool {
    let strip = |r: &TokenRecord| TokenRecord {
        last_used: None,
        uses: 0,
        ..r.clone()
    };
    strip(a) == strip(b)
}

/// How long the cache is trusted after its last successful check of the
/// store: past that (the store unreachable) every token is refused, since a
/// revocation might be missed.
pub const TRUST_FOR: Duration = Duration::from_secs(5);

/// The most address locks (scope `token`) held in memory: the newest ones.
/// An older lock still stops guessing, because the store refuses to count
/// (and so reports) a locked address on its next invalid token.
const MAX_LOCKS: usize = 10_000;

/// Every token, by id, and the addresses locked for invalid tokens.
pub struct TokenCache {
    tokens: ArcSwap<HashMap<String, Arc<LiveToken>>>,
    locks: ArcSwap<HashMap<Key, SystemTime>>,
    version: AtomicI64,
    checked_ms: AtomicU64,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            tokens: ArcSwap::from_pointee(HashMap::new()),
            locks: ArcSwap::from_pointee(HashMap::new()),
            version: AtomicI64::new(i64::MIN),
            checked_ms: AtomicU64::new(0),
        }
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn now_ms() -> u64 {
    ms(SystemTime::now())
}

impl TokenCache {
    /// The live token with this id; `None` for an unknown id, and for every
    /// id while the store has not been reached for [`TRUST_FOR`] (fail closed).
    pub fn get(&self, id: &str) -> Option<Arc<LiveToken>> {
        let age = now_ms().saturating_sub(self.checked_ms.load(Ordering::Acquire));
        if u128::from(age) > TRUST_FOR.as_millis() {
            return None;
        }
        self.tokens.load().get(id).cloned()
    }

    /// When the address lock `key` ends, if it is in force at `now`: read
    /// from memory, so a valid token costs no store read.
    pub fn locked(&self, key: &Key, now: SystemTime) -> Option<SystemTime> {
        self.locks
            .load()
            .get(key)
            .copied()
            .filter(|until| *until > now)
    }

    /// Remembers a lock this process learnt of (it tripped it, or the store
    /// reported it), before the next poll would.
    pub fn note_lock(&self, key: &Key, until: SystemTime) {
        self.locks.rcu(|old| {
            let mut map = HashMap::clone(old);
            map.insert(key.clone(), until);
            map
        });
    }

    /// Reloads the address locks (every poll: a lock made or lifted by
    /// another gateway or `erpguard lockout clear` is seen within
    /// [`REFRESH_EVERY`]), and the tokens if the store's version changed;
    /// returns whether the tokens were reloaded. Blocking: run it off the
    /// async workers.
    /// `audit` receives the aggregated use lines of counts written on the
    /// way; `None` writes them to the store only.
    pub fn refresh(
        &self,
        store: &dyn StateStore,
        audit: Option<&AuditLog>,
    ) -> Result<bool, StoreError> {
        let now = SystemTime::now();
        let locks: HashMap<Key, SystemTime> = store
            .locks(None, Some(Scope::Token), now, MAX_LOCKS)?
            .into_iter()
            .map(|(key, lock)| (key, lock.until))
            .collect();
        self.locks.store(Arc::new(locks));
        let version = store.token_version()?;
        let checked = now_ms();
        if version == self.version.load(Ordering::Acquire) {
            self.checked_ms.store(checked, Ordering::Release);
            return Ok(false);
        }
        // Counts gathered under the old records are written first, so that
        // swapping the map never loses a use.
        match audit {
            Some(audit) => self.flush(store, audit)?,
            None => drop(self.flush_uses(store)?),
        }
        let old = self.tokens.load_full();
        let mut map = HashMap::new();
        for record in store.tokens(None)? {
            let id = record.id.clone();
            // Keep the live token (its rate bucket, its counts) when nothing
            // that decides a request changed.
            if let Some(live) = old.get(&id).filter(|l| same_rules(&l.record, &record)) {
                map.insert(id, live.clone());
                continue;
            }
            match LiveToken::new(record) {
                Ok(live) => {
                    map.insert(id, Arc::new(live));
                }
                Err(e) => {
                    tracing::error!(token = %id, error = %e, "token ignored: its stored rules do not parse");
                }
            }
        }
        self.tokens.store(Arc::new(map));
        self.version.store(version, Ordering::Release);
        self.checked_ms.store(checked, Ordering::Release);
        Ok(true)
    }

    fn flush_uses(&self, store: &dyn StateStore) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut flushed = Vec::new();
        for (id, live) in self.tokens.load().iter() {
            if let Some((n, last)) = live.take_uses() {
                store.record_use(id, n, last)?;
                flushed.push((id.clone(), live.record.site.clone(), n));
            }
        }
        Ok(flushed)
    }

    /// Writes gathered use counts to the store, one aggregated audit line per
    /// token. Blocking.
    pub fn flush(&self, store: &dyn StateStore, audit: &AuditLog) -> Result<(), StoreError> {
        for (id, site, n) in self.flush_uses(store)? {
            audit.record(
                AuditEvent::new("token_used")
                    .site(site)
                    .token_id(id)
                    .detail(serde_json::json!({ "requests": n })),
            );
        }
        Ok(())
    }
}
