//! Checking a typed step-up code: the lock, the enrolment, TOTP with replay
//! refusal, recovery codes, and the audit trail of each outcome.
//!
//! The order matters: a locked user's code is not even looked at (so a lock
//! cannot be used as an oracle), and every refusal counts toward the lock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::StepUpCx;
use crate::error::Denial;
use crate::keys::SecretKey;
use crate::store::{Key, LockPolicy};
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
        let left = lock.until.duration_since(now).unwrap_or_default();
        cx.audit.record(
            cx.event("step_up_blocked")
                .user(user.to_owned())
                .reason("step-up is locked"),
        );
        return Ok(Err(Refused::Locked(left)));
    }
    let outcome = match looks_like_totp(input) {
        true => check_totp(cx, user, input, now).await?,
        false => check_recovery(cx, user, input, now).await?,
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

async fn check_totp(
    cx: &StepUpCx<'_>,
    user: &str,
    input: &str,
    now: SystemTime,
) -> Result<Result<Accepted, Refused>, Denial> {
    let (site, u) = (cx.site.name.clone(), user.to_owned());
    let Some(enrolment) = cx
        .store(move |s| s.enrolment(&site, &u))
        .await?
        .filter(|e| e.active)
    else {
        return Ok(Err(Refused::NotEnrolled));
    };
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

async fn check_recovery(
    cx: &StepUpCx<'_>,
    user: &str,
    input: &str,
    now: SystemTime,
) -> Result<Result<Accepted, Refused>, Denial> {
    let (site, u) = (cx.site.name.clone(), user.to_owned());
    let active = cx
        .store(move |s| s.enrolment(&site, &u))
        .await?
        .is_some_and(|e| e.active);
    if !active {
        return Ok(Err(Refused::NotEnrolled));
    }
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
    use super::*;

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
