//! The login guard: rate limits, failure counters and escalating lockouts on
//! each app's real login surface.
//!
//! ```text
//!  admit (before forwarding)                    settle (after the upstream answered)
//!   1 per-IP rate limit (login / oracle)          success  → reset counters, device cookie, audit
//!   2 keys: device cookie → (user, device)        failure  → already counted; audit
//!           otherwise   → user, (user, IP)        2FA pending / expired password → reset, audit
//!   3 password: count the attempt as a failure    app lockout → counted; audit
//!     NOW (atomic), refuse if already locked
//!     API credential: refuse if the IP is locked
//! ```
//!
//! Password attempts are counted before they are forwarded, so parallel guesses
//! cannot slip past the limit between "check" and "count": the call that
//! reaches the threshold creates the lock and every later one sees it. A success
//! clears the count. API credentials are only checked before and counted on a
//! 401 after, so a busy integration costs one store read per request and
//! writes nothing (no reset, no audit line) while its credential is good.

pub mod device;
pub mod limiter;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};

use crate::audit::{AuditEvent, AuditLog};
use crate::config::LoginPolicy;
use crate::error::Denial;
use crate::keys::SecretKey;
use crate::profile::{Attempt, AttemptKind, Outcome};
use crate::store::{Key, LockPolicy, StateStore, ip_subject};
use limiter::IpLimiter;

/// Per-site, per-generation limiter state (rebuilt on reload: buckets are seconds long).
pub struct SiteGuard {
    per_ip: IpLimiter,
    oracle: IpLimiter,
}

impl SiteGuard {
    /// Limiters for a site's policy.
    pub fn new(policy: &LoginPolicy) -> Self {
        SiteGuard {
            per_ip: IpLimiter::new(policy.per_ip),
            oracle: IpLimiter::new(policy.oracle_per_ip),
        }
    }

    /// Drops idle limiter state.
    pub fn trim(&self) {
        self.per_ip.trim();
        self.oracle.trim();
    }
}

/// What the guard needs from the process.
pub struct GuardCx<'a> {
    /// The site's name.
    pub site: &'a str,
    /// The site's policy.
    pub policy: &'a LoginPolicy,
    /// The site's limiters.
    pub limits: &'a SiteGuard,
    /// The durable store.
    pub store: &'a Arc<dyn StateStore>,
    /// The gateway key (device cookies).
    pub key: &'a SecretKey,
    /// The audit log.
    pub audit: &'a AuditLog,
    /// The client.
    pub client: IpAddr,
    /// The request id.
    pub request_id: &'a str,
}

/// An attempt that may go upstream, and what to do once it has been answered.
#[derive(Debug)]
pub struct Admitted {
    /// The attempt.
    pub attempt: Attempt,
    keys: Vec<(Key, LockPolicy)>,
    device: bool,
}

/// Steps 1–3: refuses a rate-limited or locked attempt before the upstream sees it.
pub async fn admit(
    cx: &GuardCx<'_>,
    attempt: Attempt,
    headers: &HeaderMap,
) -> Result<Admitted, Denial> {
    rate_limit(cx, &attempt)?;
    let device = device_id(cx, &attempt, headers);
    let keys = keys(cx.site, cx.policy, &attempt, cx.client, device.as_deref());
    let admitted = Admitted {
        device: device.is_some(),
        keys,
        attempt,
    };
    match admitted.attempt.kind {
        AttemptKind::Password | AttemptKind::SecondFactor => precount(cx, &admitted).await?,
        AttemptKind::ApiCredential => check_locks(cx, &admitted).await?,
        AttemptKind::Oracle => {}
    }
    Ok(admitted)
}

fn rate_limit(cx: &GuardCx<'_>, attempt: &Attempt) -> Result<(), Denial> {
    let limiter = match attempt.kind {
        AttemptKind::Password | AttemptKind::SecondFactor => &cx.limits.per_ip,
        AttemptKind::Oracle => &cx.limits.oracle,
        AttemptKind::ApiCredential => return Ok(()),
    };
    limiter
        .check(cx.client)
        .map_err(|retry_after| Denial::RateLimited { retry_after })
}

fn device_id(cx: &GuardCx<'_>, attempt: &Attempt, headers: &HeaderMap) -> Option<String> {
    let user = attempt.user.as_deref()?;
    if !cx.policy.device_cookie || attempt.kind != AttemptKind::Password {
        return None;
    }
    device::verify(
        cx.key,
        cx.site,
        user,
        headers,
        SystemTime::now(),
        cx.policy.device_ttl,
    )
}

/// Which counters an attempt feeds, each with its threshold (also shown by `explain`).
/// The site's lock rule (window, lock length and its doubling) with `threshold`.
pub fn lock_policy(p: &LoginPolicy, threshold: u32) -> LockPolicy {
    LockPolicy {
        threshold,
        window: p.window,
        base: p.lockout,
        max: p.lockout_max,
        strike_memory: p.lockout_memory,
    }
}

pub fn keys(
    site: &str,
    p: &LoginPolicy,
    attempt: &Attempt,
    client: IpAddr,
    device: Option<&str>,
) -> Vec<(Key, LockPolicy)> {
    let policy = |threshold| lock_policy(p, threshold);
    let ip = ip_subject(client);
    match (attempt.kind, attempt.user.as_deref(), device) {
        (AttemptKind::Password, Some(u), Some(dev)) => {
            vec![(Key::device(site, u, dev), policy(p.lockout_after))]
        }
        (AttemptKind::Password, Some(u), None) => vec![
            (Key::user(site, u), policy(p.user_lockout_after)),
            (Key::user_ip(site, u, &ip), policy(p.lockout_after)),
        ],
        // No user named (incomplete form, OTP step): the client is what is counted.
        (AttemptKind::Password | AttemptKind::SecondFactor, _, _) => {
            vec![(Key::ip(site, &ip), policy(p.lockout_after))]
        }
        (AttemptKind::ApiCredential, _, _) => {
            vec![(Key::token(site, &ip), policy(p.api_lockout_after))]
        }
        (AttemptKind::Oracle, _, _) => Vec::new(),
    }
}

/// Counts the attempt as a failure now; refuses it if a lock is in force or
/// this very attempt is one too many.
///
/// The count is taken before the answer is known, so the store is asked to
/// lock at threshold + 1: attempts 1..=N go through (a correct N-th password
/// still logs in and clears the count), the (N+1)-th trips the lock and is
/// itself refused.
async fn precount(cx: &GuardCx<'_>, admitted: &Admitted) -> Result<(), Denial> {
    let now = SystemTime::now();
    let store = cx.store.clone();
    let keys: Vec<(Key, LockPolicy)> = admitted
        .keys
        .iter()
        .map(|(k, p)| {
            (
                k.clone(),
                LockPolicy {
                    threshold: p.threshold.saturating_add(1),
                    ..*p
                },
            )
        })
        .collect();
    let results = tokio::task::spawn_blocking(move || store.add_failures(&keys, now))
        .await
        .map_err(|e| Denial::StoreUnavailable(e.to_string()))?
        .map_err(|e| Denial::StoreUnavailable(e.to_string()))?;
    let mut refused = None;
    for ((key, _), counter) in admitted.keys.iter().zip(results) {
        if let Some(lock) = counter.lock {
            if counter.tripped {
                audit_lock(cx, &admitted.attempt, key, lock.until, now);
            }
            refused = refused.max(Some(remaining(lock.until, now)));
        }
    }
    match refused {
        Some(retry_after) => Err(Denial::LockedOut { retry_after }),
        None => Ok(()),
    }
}

/// Refuses if any of the attempt's keys is locked (no counting).
async fn check_locks(cx: &GuardCx<'_>, admitted: &Admitted) -> Result<(), Denial> {
    let now = SystemTime::now();
    let store = cx.store.clone();
    let keys: Vec<Key> = admitted.keys.iter().map(|(k, _)| k.clone()).collect();
    let locks = tokio::task::spawn_blocking(move || {
        keys.iter()
            .map(|k| store.lock(k, now))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| Denial::StoreUnavailable(e.to_string()))?
    .map_err(|e| Denial::StoreUnavailable(e.to_string()))?;
    match locks
        .into_iter()
        .flatten()
        .map(|l| remaining(l.until, now))
        .max()
    {
        Some(retry_after) => Err(Denial::LockedOut { retry_after }),
        None => Ok(()),
    }
}

fn remaining(until: SystemTime, now: SystemTime) -> Duration {
    until
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1))
}

fn audit_lock(cx: &GuardCx<'_>, attempt: &Attempt, key: &Key, until: SystemTime, now: SystemTime) {
    let secs = remaining(until, now).as_secs();
    tracing::warn!(site = cx.site, user = attempt.user.as_deref(), client = %cx.client, scope = key.scope.as_str(), secs, "lockout");
    let mut ev = AuditEvent::new("login_locked")
        .site(cx.site)
        .client_ip(cx.client)
        .request_id(cx.request_id)
        .reason(format!("{} lockout for {secs}s", key.scope));
    if let Some(user) = &attempt.user {
        ev = ev.user(user.clone());
    }
    cx.audit.record(ev);
}

/// What to add to the client's response after settling.
#[derive(Debug, Default)]
pub struct Settled {
    /// A fresh device cookie, after a successful password login.
    pub set_cookie: Option<HeaderValue>,
    /// Whether the answer must be replaced by the uniform failure.
    pub uniform_failure: bool,
}

/// After the upstream answered: bookkeeping, audit, device cookie.
pub async fn settle(cx: &GuardCx<'_>, admitted: Admitted, outcome: &Outcome) -> Settled {
    let mut settled = Settled::default();
    // A good API credential is routine traffic: only its failures are counted,
    // so a success costs no store write and no audit line.
    if admitted.attempt.kind == AttemptKind::ApiCredential
        && matches!(outcome, Outcome::Success { .. })
    {
        return settled;
    }
    let event = match outcome {
        Outcome::Success { .. } | Outcome::SecondFactorPending | Outcome::PasswordExpired => {
            reset(cx, &admitted).await;
            settled.set_cookie = success_cookie(cx, &admitted, outcome);
            match outcome {
                Outcome::Success { .. } => "login_ok",
                Outcome::SecondFactorPending => "login_second_factor_pending",
                _ => "login_password_expired",
            }
        }
        Outcome::Failure | Outcome::AppLockout => {
            if admitted.attempt.kind == AttemptKind::ApiCredential {
                count_failure(cx, &admitted).await;
            }
            settled.uniform_failure = true;
            if *outcome == Outcome::AppLockout {
                "login_app_lockout"
            } else {
                "login_failed"
            }
        }
        Outcome::Other => return settled,
    };
    audit_outcome(cx, &admitted, outcome, event);
    settled
}

fn success_cookie(cx: &GuardCx<'_>, admitted: &Admitted, outcome: &Outcome) -> Option<HeaderValue> {
    let Outcome::Success { user } = outcome else {
        return None;
    };
    let user = user.as_deref().or(admitted.attempt.user.as_deref())?;
    let browser_login = admitted.attempt.kind == AttemptKind::Password && !admitted.device;
    (cx.policy.device_cookie && browser_login)
        .then(|| {
            device::issue(
                cx.key,
                cx.site,
                user,
                SystemTime::now(),
                cx.policy.device_ttl,
            )
        })
        .flatten()
}

async fn reset(cx: &GuardCx<'_>, admitted: &Admitted) {
    let store = cx.store.clone();
    let keys: Vec<Key> = admitted.keys.iter().map(|(k, _)| k.clone()).collect();
    let done =
        tokio::task::spawn_blocking(move || keys.iter().try_for_each(|k| store.reset(k))).await;
    if !matches!(done, Ok(Ok(()))) {
        tracing::error!(
            site = cx.site,
            "could not reset login counters after a success"
        );
    }
}

async fn count_failure(cx: &GuardCx<'_>, admitted: &Admitted) {
    let now = SystemTime::now();
    let store = cx.store.clone();
    let keys = admitted.keys.clone();
    let done = tokio::task::spawn_blocking(move || {
        let counters = store.add_failures(&keys, now)?;
        Ok::<_, crate::store::StoreError>(
            keys.into_iter()
                .map(|(k, _)| k)
                .zip(counters)
                .collect::<Vec<_>>(),
        )
    })
    .await;
    match done {
        Ok(Ok(counted)) => {
            for (key, counter) in counted.iter().filter(|(_, c)| c.tripped) {
                if let Some(lock) = counter.lock {
                    audit_lock(cx, &admitted.attempt, key, lock.until, now);
                }
            }
        }
        _ => tracing::error!(site = cx.site, "could not count a failed API credential"),
    }
}

fn audit_outcome(cx: &GuardCx<'_>, admitted: &Admitted, outcome: &Outcome, event: &'static str) {
    let user = match outcome {
        Outcome::Success { user: Some(u) } => Some(u.clone()),
        _ => admitted.attempt.user.clone(),
    };
    let mut ev = AuditEvent::new(event)
        .site(cx.site)
        .client_ip(cx.client)
        .request_id(cx.request_id)
        .reason(admitted.attempt.endpoint.clone());
    if let Some(user) = user {
        ev = ev.user(user);
    }
    if admitted.device {
        ev = ev.detail(serde_json::json!({ "known_device": true }));
    }
    cx.audit.record(ev);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::down::Down;

    #[tokio::test]
    async fn an_unreachable_store_refuses_logins_with_503() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::load_or_create(&dir.path().join("k")).unwrap();
        let audit = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let config = crate::config::parse(
            std::path::Path::new("t.toml"),
            "[listen]\nhttps = \"127.0.0.1:0\"\n[[site]]\nname = \"erp\"\nhosts = [\"erp.test\"]\napp = \"erpnext\"\n\
upstream = \"http://127.0.0.1:1\"\ntls = \"self-signed\"\nallow = \"off\"\n",
        )
        .unwrap();
        let policy = &config.sites[0].login;
        let limits = SiteGuard::new(policy);
        let store: Arc<dyn StateStore> = Arc::new(Down);
        let cx = GuardCx {
            site: "erp",
            policy,
            limits: &limits,
            store: &store,
            key: &key,
            audit: &audit,
            client: "192.0.2.1".parse().unwrap(),
            request_id: "r1",
        };
        for kind in [AttemptKind::Password, AttemptKind::ApiCredential] {
            let attempt = Attempt {
                kind,
                user: Some("alice".into()),
                endpoint: "test".into(),
            };
            let denial = admit(&cx, attempt, &HeaderMap::new()).await.unwrap_err();
            assert_eq!(
                denial.status(),
                http::StatusCode::SERVICE_UNAVAILABLE,
                "{kind:?}"
            );
        }
    }
}
