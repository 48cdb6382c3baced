//! Checking a typed step-up code: the lock, the enrolment, TOTP with replay
//! refusal, recovery codes, and the audit trail of each outcome.
//!
//! The order matters: a locked user's code is not even looked at (so a lock
//! cannot be used as an oracle), and every refusal counts toward the lock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::StepUpCx;
use crate::error::Denial;
use crate::keys::SecretKey;
use crate::store::{Enrolment, Key, LockPolicy};
use crate::totp::{self, TotpError};

/// How a code was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A TOTP code.
    Totp,
    /// A one-time recovery code (now used up).
    Recovery,
}

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Wrong, malformed or an unknown recovery code.
    Wrong,
    /// A code already used (or older than the last one used).
    Replayed,
    /// Step-up is locked for the user; how long is left.
    Locked(Duration),
    /// The user has no active enrolment.
    NotEnrolled,
}

/// The key TOTP secrets are sealed with at rest.
pub fn seal_key(key: &SecretKey) -> [u8; 32] {
    key.derive("erpguard totp seal v1")
}

/// The key recovery codes are hashed with.
pub fn recovery_key(key: &SecretKey) -> [u8; 32] {
    key.derive("erpguard totp recovery v1")
}

/// The associated data a user's sealed secret is bound to: a row copied to
/// another user or site does not open.
pub fn seal_aad(site: &str, user: &str) -> Vec<u8> {
    format!("{site}|{user}").into_bytes()
}

/// The lock rule for wrong codes: `max_failures` within `lockout`, then a lock
/// of `lockout` that doubles on repeat, up to a day.
pub fn lock_policy(cx: &StepUpCx<'_>) -> LockPolicy {
    let p = &cx.site.step_up;
    LockPolicy {
        threshold: p.max_failures,
        window: p.lockout,
        base: p.lockout,
        max: Duration::from_secs(24 * 3600).max(p.lockout),
        strike_memory: Duration::from_secs(24 * 3600),
    }
}

/// Checks `input` (a TOTP code or a recovery code) for `user` at `now`, and
/// writes the outcome to the store and the audit log. `Err` is a store failure.
pub async fn check(
    cx: &StepUpCx<'_>,
    user: &str,
    input: &str,
    now: SystemTime,
) -> Result<Result<Accepted, Refused>, Denial> {
    let key = Key::step_up(&cx.site.name, user);
    let k = key.clone();
    if let Some(lock) = cx.store(move |s| s.lock(&k, now)).await? {
        // Audited by the caller's refusal (`Denial::StepUpLocked`).
        let left = lock.until.duration_since(now).unwrap_or_default();
        return Ok(Err(Refused::Locked(left)));
    }
    let (site, u) = (cx.site.name.clone(), user.to_owned());
    let enrolment = cx
        .store(move |s| s.enrolment(&site, &u))
        .await?
        .filter(|e| e.active);
    let outcome = match (enrolment, looks_like_totp(input)) {
        (None, _) => Err(Refused::NotEnrolled),
        (Some(e), true) => check_totp(cx, user, &e, input, now).await?,
        (Some(_), false) => check_recovery(cx, user, input, now).await?,
    };
    match outcome {
        Ok(how) => {
            let k = key.clone();
            cx.store(move |s| s.reset(&k)).await?;
            let method = match how {
                Accepted::Totp => "totp",
                Accepted::Recovery => "recovery",
            };
            if how == Accepted::Recovery {
                cx.audit
                    .record(cx.event("step_up_recovery_used").user(user.to_owned()));
            }
            cx.audit
                .record(cx.event("step_up_ok").user(user.to_owned()).reason(method));
        }
        Err(Refused::NotEnrolled) => {}
        Err(why) => count_refusal(cx, user, key, why, now).await?,
    }
    Ok(outcome)
}

/// Counts a refused code toward the lock and audits it.
pub(super) async fn count_refusal(
    cx: &StepUpCx<'_>,
    user: &str,
    key: Key,
    why: Refused,
    now: SystemTime,
) -> Result<(), Denial> {
    let policy = lock_policy(cx);
    let counter = cx.store(move |s| s.add_failure(&key, now, &policy)).await?;
    let event = match why {
        Refused::Replayed => "step_up_replay",
        _ => "step_up_failed",
    };
    cx.audit.record(
        cx.event(event)
            .user(user.to_owned())
            .detail(serde_json::json!({ "failures": counter.failures })),
    );
    if counter.tripped {
        cx.audit.record(
            cx.event("step_up_locked")
                .user(user.to_owned())
                .reason(format!("{} wrong codes", counter.failures)),
        );
    }
    Ok(())
}

/// Six to eight digits (spaces allowed) is a TOTP code; anything else is
/// tried as a recovery code.
fn looks_like_totp(input: &str) -> bool {
    let digits = input.bytes().filter(u8::is_ascii_digit).count();
    input
        .bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_whitespace())
        && (6..=8).contains(&digits)
}

/// A TOTP code against the user's active enrolment.
async fn check_totp(
    cx: &StepUpCx<'_>,
    user: &str,
    enrolment: &Enrolment,
    input: &str,
    now: SystemTime,
) -> Result<Result<Accepted, Refused>, Denial> {
    let secret = totp::open(
        &seal_key(cx.key),
        &seal_aad(&cx.site.name, user),
        &enrolment.sealed,
    )
    .map_err(|e| {
        // The key file was replaced or the row damaged: fail closed, loudly.
        tracing::error!(site = %cx.site.name, error = %e, "a TOTP enrolment does not open with this key file");
        Denial::StoreUnavailable("TOTP enrolment does not open".into())
    })?;
    let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let step = match totp::verify(
        &secret,
        input,
        unix,
        &cx.site.step_up.totp,
        enrolment.last_step,
    ) {
        Ok(step) => step,
        Err(TotpError::Replayed) => return Ok(Err(Refused::Replayed)),
        Err(_) => return Ok(Err(Refused::Wrong)),
    };
    let (site, u) = (cx.site.name.clone(), user.to_owned());
    // The store has the last word: of two racing requests with one code, one wins.
    match cx
        .store(move |s| s.accept_step(&site, &u, step, now))
        .await?
    {
        true => Ok(Ok(Accepted::Totp)),
        false => Ok(Err(Refused::Replayed)),
    }
}

/// A recovery code of an enrolled user (the caller checked the enrolment).
async fn check_recovery(
    cx: &StepUpCx<'_>,
    user: &str,
    input: &str,
    now: SystemTime,
) -> Result<Result<Accepted, Refused>, Denial> {
    if input.trim().is_empty() || input.len() > 128 {
        return Ok(Err(Refused::Wrong));
    }
    let hash = totp::hash_recovery(&recovery_key(cx.key), input);
    let (site, u) = (cx.site.name.clone(), user.to_owned());
    match cx
        .store(move |s| s.use_recovery(&site, &u, &hash, now))
        .await?
    {
        true => Ok(Ok(Accepted::Recovery)),
        false => Ok(Err(Refused::Wrong)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::AuditLog;
    use crate::store::StateStore;
    use crate::store::sqlite::SqliteStore;

    const CONFIG: &str = "[listen]\nhttps = \"127.0.0.1:0\"\n[[site]]\nname = \"erp\"\nhosts = [\"erp.test\"]\n\
app = \"erpnext\"\nupstream = \"http://127.0.0.1:1\"\ntls = \"self-signed\"\nallow = \"off\"\n\
[site.step_up]\nmax_failures = 5\nlockout = \"15m\"\n";

    /// A controlled clock: 2027-01-15 08:00:00 UTC plus `secs`.
    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn code_at(secret: &totp::Secret, t: SystemTime) -> String {
        let unix = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        totp::code_at(secret, unix, &totp::Params::default()).unwrap()
    }

    #[tokio::test]
    async fn replay_skew_and_lock_rules_with_a_controlled_clock() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::parse(std::path::Path::new("t.toml"), CONFIG).unwrap();
        let site = &config.sites[0];
        let store: Arc<dyn StateStore> =
            Arc::new(SqliteStore::open(&dir.path().join("s.db"), 1000).unwrap());
        let audit = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let key = SecretKey::from_test_bytes([9; 32]);
        let cx = StepUpCx {
            site,
            store: &store,
            key: &key,
            audit: &audit,
            client: "127.0.0.1".parse().unwrap(),
            request_id: "r",
        };
        let secret = totp::Secret::generate();
        let sealed = totp::seal(&seal_key(&key), &seal_aad("erp", "u"), &secret).unwrap();
        store
            .put_enrolment(
                &Enrolment {
                    site: "erp".into(),
                    user: "u".into(),
                    sealed,
                    last_step: None,
                    active: true,
                    created: at(0),
                },
                &[],
            )
            .unwrap();
        let t = at(0);
        assert_eq!(
            check(&cx, "u", &code_at(&secret, t), t).await.unwrap(),
            Ok(Accepted::Totp)
        );
        // The same code, a second later: a replay.
        let again = check(&cx, "u", &code_at(&secret, t), at(1)).await.unwrap();
        assert_eq!(again, Err(Refused::Replayed));
        // One step of skew: the next step's code is good 30 s early...
        let next = code_at(&secret, at(30));
        assert_eq!(
            check(&cx, "u", &next, at(2)).await.unwrap(),
            Ok(Accepted::Totp)
        );
        // ...two steps is not.
        let far = code_at(&secret, at(120));
        assert_eq!(
            check(&cx, "u", &far, at(3)).await.unwrap(),
            Err(Refused::Wrong)
        );
        // A success cleared the replay's count; with the wrong code above,
        // four more make five and lock.
        for i in 0..4 {
            let r = check(&cx, "u", "000000", at(4 + i)).await.unwrap();
            assert!(
                matches!(r, Err(Refused::Wrong | Refused::Replayed)),
                "{r:?}"
            );
        }
        let fresh = code_at(&secret, at(300));
        let locked = check(&cx, "u", &fresh, at(300)).await.unwrap();
        assert!(
            matches!(locked, Err(Refused::Locked(_))),
            "a right code while locked: {locked:?}"
        );
        // The lock ends after `lockout` (15 minutes from the fifth failure).
        let later = at(7 + 15 * 60 + 1);
        let ok = check(&cx, "u", &code_at(&secret, later), later)
            .await
            .unwrap();
        assert_eq!(ok, Ok(Accepted::Totp));
        audit.flush();
        let log = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert_eq!(log.matches("\"step_up_locked\"").count(), 1);
        assert!(!log.contains(&fresh), "no code in the audit log");
    }

    #[tokio::test]
    async fn an_unreachable_store_is_a_503_not_a_pass() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::parse(std::path::Path::new("t.toml"), CONFIG).unwrap();
        let store: Arc<dyn StateStore> = Arc::new(crate::store::down::Down);
        let audit = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let key = SecretKey::from_test_bytes([9; 32]);
        let cx = StepUpCx {
            site: &config.sites[0],
            store: &store,
            key: &key,
            audit: &audit,
            client: "127.0.0.1".parse().unwrap(),
            request_id: "r",
        };
        let err = check(&cx, "u", "123456", at(0)).await.unwrap_err();
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn codes_and_recovery_codes_are_told_apart() {
        assert!(looks_like_totp("123456"));
        assert!(looks_like_totp("123 456"));
        assert!(looks_like_totp("12345678"));
        assert!(!looks_like_totp("12345"));
        assert!(!looks_like_totp("k7pq2-x9mzt-4hcaw"));
        assert!(!looks_like_totp(""));
    }
}
