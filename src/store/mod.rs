//! Durable login-failure counters and lockouts.
//!
//! The store exists so that a restart does not reset an attack in progress:
//! failure counts, lock-outs and their escalation ("strikes") are kept on disk
//! behind the [`StateStore`] trait. Today there is one backend,
//! [`sqlite::SqliteStore`]; a Redis backend is meant to slot in behind the same
//! trait, so nothing here names a backend type.
//!
//! What every backend promises:
//!
//! - **Fail closed.** Every operation returns `Result`; a store that cannot
//!   answer returns [`StoreError`] and the caller refuses the login (503). No
//!   operation panics.
//! - **Atomic counting.** [`StateStore::add_failure`] is one read-modify-write:
//!   concurrent calls for one key, from threads or from other processes on the
//!   same store, never lose an increment, and exactly one call creates each
//!   lock, so no more than `threshold` failures get through before it.
//! - **Durable.** A lock, its strikes and the current count survive a restart.
//! - **Bounded.** A backend keeps at most a configured number of keys. When
//!   full it drops expired keys first, then the unlocked keys touched longest
//!   ago; an active lock is dropped only when every key is an active lock.
//! - **Nothing secret.** A key is a site name, a user name, a device id or an
//!   IP address; the store keeps nothing else (no password, token or cookie)
//!   and logs no subject. Fields longer than [`MAX_FIELD_LEN`] bytes are
//!   refused rather than stored.
//!
//! The lock rule ([`LockPolicy`]): failures count within `window` of the
//! first counted one; the failure that reaches `threshold` creates a lock of
//! `min(base * 2^strikes, max)`, adds a strike and resets the count. Strikes
//! are forgotten once `strike_memory` has passed since the last lock *ended*
//! without a new one. While a lock is active failures are not counted.
//! A success ([`StateStore::reset`]) clears the count only.

#[cfg(test)]
pub mod down;
pub mod sqlite;
pub mod stepup;
pub mod tokens;

pub use stepup::{Binding, EnrolLink, Enrolment, EnrolmentInfo, Grant, StepUpStore};
pub use tokens::{TokenRecord, TokenStore};

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest site or subject, in bytes, that the store accepts.
///
/// It bounds disk use per key: without it a spray of megabyte-long user
/// names would defeat the key limit. A subject is at most a user name (an
/// e-mail address has at most 254 bytes) and an IP or a device id.
pub const MAX_FIELD_LEN: usize = 512;

/// What a counter counts failures of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// One user name, from any address. Subject: the case-folded user name.
    User,
    /// One user name from one address. Subject: `user|ip`, the ip being an
    /// address or an IPv6 /64 prefix (see [`ip_subject`]).
    UserIp,
    /// One user name on one device. Subject: `user|device-id`.
    Device,
    /// One address. Subject: an address or an IPv6 /64 prefix.
    Ip,
    /// Invalid API tokens from one client. Subject: the client address.
    Token,
    /// Wrong step-up codes of one user. Subject: the case-folded user name.
    StepUp,
}

impl Scope {
    /// Every scope, in declaration order.
    pub const ALL: [Scope; 6] = [
        Scope::User,
        Scope::UserIp,
        Scope::Device,
        Scope::Ip,
        Scope::Token,
        Scope::StepUp,
    ];

    /// The scope named `name` (as [`Scope::as_str`] gives it), if any.
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == name)
    }

    /// The stable name stored on disk and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::UserIp => "user_ip",
            Scope::Device => "device",
            Scope::Ip => "ip",
            Scope::Token => "token",
            Scope::StepUp => "step_up",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The site (config name) the counter belongs to.
    pub site: String,
    /// What is counted.
    pub scope: Scope,
    /// Who is counted; the format depends on `scope`.
    pub subject: String,
}

impl Key {
    /// A key from its parts, taken as given.
    pub fn new(site: &str, scope: Scope, subject: &str) -> Key {
        Key {
            site: site.to_owned(),
            scope,
            subject: subject.to_owned(),
        }
    }

    /// A [`Scope::User`] key; the user name is case-folded.
    pub fn user(site: &str, user: &str) -> Key {
        Key::new(site, Scope::User, &fold_user(user))
    }

    /// A [`Scope::UserIp`] key; `ip` is an address or prefix as [`ip_subject`] gives.
    pub fn user_ip(site: &str, user: &str, ip: &str) -> Key {
        Key::new(site, Scope::UserIp, &format!("{}|{ip}", fold_user(user)))
    }

    /// A [`Scope::Device`] key; the user name is case-folded.
    pub fn device(site: &str, user: &str, device: &str) -> Key {
        Key::new(
            site,
            Scope::Device,
            &format!("{}|{device}", fold_user(user)),
        )
    }

    /// A [`Scope::Ip`] key.
    pub fn ip(site: &str, ip: &str) -> Key {
        Key::new(site, Scope::Ip, ip)
    }

    /// A [`Scope::Token`] key for the client address `ip`.
    pub fn token(site: &str, ip: &str) -> Key {
        Key::new(site, Scope::Token, ip)
    }

    /// A [`Scope::StepUp`] key; the user name is case-folded.
    pub fn step_up(site: &str, user: &str) -> Key {
        Key::new(site, Scope::StepUp, &fold_user(user))
    }

    /// The user-name part of the subject, for scopes that have one.
    pub fn user_part(&self) -> Option<&str> {
        user_part(self.scope, &self.subject)
    }

    /// The address part of the subject, for scopes that have one.
    pub fn ip_part(&self) -> Option<&str> {
        ip_part(self.scope, &self.subject)
    }

    /// Refuses keys whose fields exceed [`MAX_FIELD_LEN`].
    pub fn check(&self) -> Result<(), StoreError> {
        let longest = self.site.len().max(self.subject.len());
        if longest > MAX_FIELD_LEN {
            return Err(StoreError::KeyTooLong {
                len: longest,
                max: MAX_FIELD_LEN,
            });
        }
        Ok(())
    }
}

/// Case-folds a user name the way every key does.
pub fn fold_user(user: &str) -> String {
    user.to_lowercase()
}

/// The subject form of a client address: IPv4 (and IPv4-mapped IPv6) as the
/// address, other IPv6 as its /64 prefix, since one host usually owns a whole
/// /64 and could otherwise rotate addresses to dodge the count.
pub fn ip_subject(ip: IpAddr) -> String {
    match crate::client_ip::client_group(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(net) => format!("{net}/64"),
    }
}

// The user part is before the last '|': the part after it (an IP or a
// device id we issue) never contains '|', a user name might.
fn user_part(scope: Scope, subject: &str) -> Option<&str> {
    match scope {
        Scope::User | Scope::StepUp => Some(subject),
        Scope::UserIp | Scope::Device => subject.rsplit_once('|').map(|(user, _)| user),
        Scope::Ip | Scope::Token => None,
    }
}

fn ip_part(scope: Scope, subject: &str) -> Option<&str> {
    match scope {
        Scope::Ip | Scope::Token => Some(subject),
        Scope::UserIp => subject.rsplit_once('|').map(|(_, ip)| ip),
        Scope::User | Scope::Device | Scope::StepUp => None,
    }
}

/// Whether `clear(site, user, ip)` removes a key with this scope and subject:
/// its user part equals `user` case-folded, or its address part overlaps `ip`
/// (equal, or one is a prefix containing the other).
pub(crate) fn clear_matches(
    scope: Scope,
    subject: &str,
    user: Option<&str>,
    ip: Option<&str>,
) -> bool {
    let by_user = match (user, user_part(scope, subject)) {
        (Some(want), Some(have)) => fold_user(have) == fold_user(want),
        _ => false,
    };
    let by_ip = match (ip, ip_part(scope, subject)) {
        (Some(want), Some(have)) => ip_overlaps(have, want),
        _ => false,
    };
    by_user || by_ip
}

// An address or prefix as (address bits, prefix length, is IPv6).
fn parse_net(s: &str) -> Option<(u128, u32, bool)> {
    let (addr, len) = match s.split_once('/') {
        Some((addr, len)) => (addr, Some(len.parse::<u32>().ok()?)),
        None => (s, None),
    };
    match addr.parse::<IpAddr>().ok()?.to_canonical() {
        IpAddr::V4(v4) => Some((u128::from(u32::from(v4)), len.unwrap_or(32).min(32), false)),
        IpAddr::V6(v6) => Some((u128::from(v6), len.unwrap_or(128).min(128), true)),
    }
}

// Overlap rather than equality so that clearing an IPv6 address also clears
// the /64 prefix it was counted under, and clearing a prefix clears addresses.
fn ip_overlaps(a: &str, b: &str) -> bool {
    match (parse_net(a), parse_net(b)) {
        (Some((a_bits, a_len, a_v6)), Some((b_bits, b_len, b_v6))) => {
            let width = if a_v6 { 128 } else { 32 };
            let len = a_len.min(b_len);
            let shift = width - len;
            a_v6 == b_v6
                && a_bits.checked_shr(shift).unwrap_or(0) == b_bits.checked_shr(shift).unwrap_or(0)
        }
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// How failures turn into locks; chosen by the caller per scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    /// Failures that trigger a lock (0 is treated as 1).
    pub threshold: u32,
    /// Failures older than this (from the first counted one) no longer count.
    pub window: Duration,
    /// Length of the first lock.
    pub base: Duration,
    /// Cap on the doubled lock length.
    pub max: Duration,
    /// How long after a lock ends its strike still counts for escalation.
    pub strike_memory: Duration,
}

/// The state of one key after [`StateStore::add_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Failures counted in the current window, this one included. On the call
    /// that created the lock it is the count that reached the threshold (the
    /// stored count restarts at 0); while a lock is active it is the stored
    /// count, normally 0, since nothing is counted then.
    pub failures: u32,
    /// The lock in force after this call, if any.
    pub lock: Option<Lock>,
    /// True only for the one call that created `lock` (for audit logging).
    pub tripped: bool,
}

/// A lock in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    /// When the lock ends.
    pub until: SystemTime,
    /// Locks remembered for this key, this one included (1 for a first lock).
    pub strikes: u32,
}

/// Why the store could not answer. Every variant means "refuse" to the caller.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store file could not be created, opened, configured or checked.
    #[error(
        "cannot open state store {path}: {reason} (if the file is damaged, move it aside; \
         a new one starts empty)"
    )]
    Open {
        /// The store file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file was written by a newer erpguard whose schema this one does not know.
    #[error(
        "state store {path} has schema version {found}, newer than the {known} this erpguard \
         knows; run the newer erpguard or point state.path at another file"
    )]
    SchemaTooNew {
        /// The store file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        known: u32,
    },
    /// A schema migration failed; the file is left as it was (all pending
    /// migrations run in one transaction).
    #[error("state store {path}: migration to schema version {version} failed: {reason}")]
    Migrate {
        /// The store file.
        path: PathBuf,
        /// The version being migrated to.
        version: u32,
        /// What went wrong.
        reason: String,
    },
    /// The backend failed (I/O, lock timeout, database error), as its message.
    #[error("state store error: {0}")]
    Backend(String),
    /// No room could be made for a new key.
    #[error("state store is full ({max_keys} keys)")]
    Full {
        /// The configured key limit.
        max_keys: usize,
    },
    /// A site or subject longer than [`MAX_FIELD_LEN`].
    #[error("state store key field of {len} bytes exceeds {max}")]
    KeyTooLong {
        /// The field's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A time before 1970 or too far in the future to store.
    #[error("state store cannot represent time: {0}")]
    Time(String),
    /// A stored value is invalid.
    #[error("state store holds an invalid value: {0}")]
    Corrupt(String),
}

/// Durable failure counters and lockouts, plus the step-up state
/// ([`StepUpStore`]) and API tokens ([`TokenStore`]). See the module docs for the promises.
///
/// Calls block on I/O; async callers run them in `spawn_blocking`.
pub trait StateStore: StepUpStore + TokenStore + Send + Sync + 'static {
    /// Atomically counts one failure and returns the resulting state.
    /// Concurrent calls for one key never lose an increment and never let more
    /// than `threshold` failures through before the lock (the lock is created
    /// by the call that reaches the threshold).
    fn add_failure(
        &self,
        key: &Key,
        now: SystemTime,
        policy: &LockPolicy,
    ) -> Result<Counter, StoreError>;

    /// Counts one failure for each key, all in one atomic step; the counters
    /// come back in the same order. The default calls [`StateStore::add_failure`]
    /// per key; backends with transactions do better.
    fn add_failures(
        &self,
        keys: &[(Key, LockPolicy)],
        now: SystemTime,
    ) -> Result<Vec<Counter>, StoreError> {
        keys.iter()
            .map(|(k, p)| self.add_failure(k, now, p))
            .collect()
    }

    /// The lock in force for `key` at `now`, if any.
    fn lock(&self, key: &Key, now: SystemTime) -> Result<Option<Lock>, StoreError>;

    /// Clears the failure count (success). Strikes and an active lock stay.
    fn reset(&self, key: &Key) -> Result<(), StoreError>;

    /// Active locks, optionally of one site and one scope, newest first, at
    /// most `limit`.
    fn locks(
        &self,
        site: Option<&str>,
        scope: Option<Scope>,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(Key, Lock)>, StoreError>;

    /// Lifts locks and counts (and strikes): every key of `site` whose scope
    /// is User/UserIp/Device/StepUp and whose subject's user part equals `user`
    /// (case-folded), or whose subject contains the IP `ip` (Ip and UserIp
    /// scopes, and Token; an address and a prefix containing it match each
    /// other). With neither `user` nor `ip` nothing matches. Returns how many
    /// keys were cleared. Used by `erpguard lockout clear`.
    fn clear(&self, site: &str, user: Option<&str>, ip: Option<&str>) -> Result<usize, StoreError>;

    /// Deletes expired rows (no active lock, count window over, strikes
    /// forgotten). Returns rows deleted.
    fn sweep(&self, now: SystemTime) -> Result<usize, StoreError>;

    /// Whether the store answers (for /readyz).
    fn ping(&self) -> Result<(), StoreError>;
}

/// Runs a blocking store call on tokio's blocking pool, for async callers. A
/// task that panicked or was cancelled is a [`StoreError::Backend`].
pub async fn off_thread<T, F>(store: &std::sync::Arc<dyn StateStore>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&dyn StateStore) -> Result<T, StoreError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&*store))
        .await
        .map_err(|e| StoreError::Backend(format!("store task: {e}")))?
}

/// Milliseconds since the epoch, the unit every backend stores.
pub(crate) fn to_ms(t: SystemTime) -> Result<i64, StoreError> {
    let since = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| StoreError::Time("before 1970".to_owned()))?;
    Ok(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

/// The time `ms` milliseconds after the epoch.
pub(crate) fn from_ms(ms: i64) -> Result<SystemTime, StoreError> {
    u64::try_from(ms)
        .ok()
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
        .ok_or_else(|| StoreError::Time(format!("{ms} ms since 1970")))
}

fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The length of the lock that adds strike number `strikes + 1`, in ms.
fn lock_len(policy: &LockPolicy, strikes: u32) -> i64 {
    // u128 with a capped shift: base * 2^strikes saturates instead of wrapping.
    let factor = 1u128 << strikes.min(100);
    let len = policy.base.as_millis().saturating_mul(factor);
    i64::try_from(len.min(policy.max.as_millis())).unwrap_or(i64::MAX)
}

/// The stored state of one key; times in ms since the epoch.
///
/// Backends load and save it; the lock rule lives here once so that every
/// backend applies the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Record {
    pub(crate) failures: u32,
    pub(crate) window_start: Option<i64>,
    pub(crate) strikes: u32,
    pub(crate) locked_at: Option<i64>,
    pub(crate) lock_until: Option<i64>,
}

impl Record {
    /// The lock in force at `now`, if any.
    pub(crate) fn active_lock(&self, now: i64) -> Result<Option<Lock>, StoreError> {
        match self.lock_until {
            Some(until) if until > now => Ok(Some(Lock {
                until: from_ms(until)?,
                strikes: self.strikes,
            })),
            _ => Ok(None),
        }
    }

    /// Counts one failure at `now`; the caller has checked there is no active lock.
    pub(crate) fn count_failure(
        &mut self,
        now: i64,
        policy: &LockPolicy,
    ) -> Result<Counter, StoreError> {
        self.forget_lapsed_strikes(now, policy);
        self.count_in_window(now, policy);
        if self.failures < policy.threshold.max(1) {
            return Ok(Counter {
                failures: self.failures,
                lock: None,
                tripped: false,
            });
        }
        let until = now.saturating_add(lock_len(policy, self.strikes));
        let counted = self.failures;
        *self = Record {
            failures: 0,
            window_start: None,
            strikes: self.strikes.saturating_add(1),
            locked_at: Some(now),
            lock_until: Some(until),
        };
        Ok(Counter {
            failures: counted,
            lock: Some(Lock {
                until: from_ms(until)?,
                strikes: self.strikes,
            }),
            tripped: true,
        })
    }

    // Strikes are forgotten once strike_memory has passed since the last
    // lock ended (not began), so a long lock cannot outlast its own memory.
    fn forget_lapsed_strikes(&mut self, now: i64, policy: &LockPolicy) {
        let memory_end = self
            .lock_until
            .map(|until| until.saturating_add(dur_ms(policy.strike_memory)));
        if memory_end.is_some_and(|end| now >= end) {
            self.strikes = 0;
            self.locked_at = None;
            self.lock_until = None;
        }
    }

    // A failure more than `window` after the first counted one starts over.
    fn count_in_window(&mut self, now: i64, policy: &LockPolicy) {
        match self.window_start {
            Some(start)
                if self.failures > 0 && now.saturating_sub(start) <= dur_ms(policy.window) =>
            {
                self.failures = self.failures.saturating_add(1);
            }
            _ => {
                self.failures = 1;
                self.window_start = Some(now);
            }
        }
    }

    /// When the record stops mattering under `policy`: its count window is
    /// over, any lock has ended and its strike is forgotten. 0 if it never mattered.
    pub(crate) fn expires(&self, policy: &LockPolicy) -> i64 {
        let window_end = match self.window_start {
            Some(start) if self.failures > 0 => start.saturating_add(dur_ms(policy.window)),
            _ => 0,
        };
        let strike_end = self.lock_until.map_or(0, |until| {
            until.saturating_add(dur_ms(policy.strike_memory))
        });
        window_end.max(strike_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn policy() -> LockPolicy {
        LockPolicy {
            threshold: 3,
            window: Duration::from_secs(600),
            base: Duration::from_secs(900),
            max: Duration::from_secs(3600),
            strike_memory: Duration::from_secs(86_400),
        }
    }

    fn trip(rec: &mut Record, now: i64, p: &LockPolicy) -> Counter {
        let mut last = None;
        for _ in 0..p.threshold.max(1) {
            assert!(rec.active_lock(now).unwrap().is_none());
            last = Some(rec.count_failure(now, p).unwrap());
        }
        last.unwrap()
    }

    #[test]
    fn counts_then_trips_once() {
        let p = policy();
        let mut rec = Record::default();
        assert_eq!(rec.count_failure(0, &p).unwrap().failures, 1);
        assert_eq!(rec.count_failure(1, &p).unwrap().failures, 2);
        let c = rec.count_failure(2, &p).unwrap();
        assert!(c.tripped);
        assert_eq!(c.failures, 3);
        assert_eq!(rec.failures, 0);
        let lock = c.lock.unwrap();
        assert_eq!(lock.strikes, 1);
        assert_eq!(lock.until, from_ms(2 + 15 * MIN).unwrap());
    }

    #[test]
    fn threshold_zero_is_one() {
        let p = LockPolicy {
            threshold: 0,
            ..policy()
        };
        assert!(Record::default().count_failure(0, &p).unwrap().tripped);
    }

    #[test]
    fn window_is_inclusive_then_restarts() {
        let p = policy();
        let mut rec = Record::default();
        rec.count_failure(0, &p).unwrap();
        assert_eq!(rec.count_failure(10 * MIN, &p).unwrap().failures, 2);
        assert_eq!(rec.count_failure(10 * MIN + 1, &p).unwrap().failures, 1);
        assert_eq!(rec.window_start, Some(10 * MIN + 1));
    }

    #[test]
    fn lock_length_doubles_caps_and_saturates() {
        let p = policy();
        assert_eq!(lock_len(&p, 0), 15 * MIN);
        assert_eq!(lock_len(&p, 1), 30 * MIN);
        assert_eq!(lock_len(&p, 2), 60 * MIN);
        assert_eq!(lock_len(&p, 3), 60 * MIN);
        assert_eq!(lock_len(&p, u32::MAX), 60 * MIN);
        let huge = LockPolicy {
            max: Duration::MAX,
            ..p
        };
        assert_eq!(lock_len(&huge, 200), i64::MAX);
    }

    #[test]
    fn strikes_lapse_after_memory_from_lock_end() {
        let p = LockPolicy {
            strike_memory: Duration::from_secs(3600),
            ..policy()
        };
        let mut rec = Record::default();
        trip(&mut rec, 0, &p);
        let end = rec.lock_until.unwrap();
        assert_eq!(rec.expires(&p), end + 60 * MIN);
        // Just inside memory: escalates.
        let c = trip(&mut rec, end + 60 * MIN - 1, &p);
        assert_eq!(c.lock.unwrap().strikes, 2);
        let end = rec.lock_until.unwrap();
        let c = trip(&mut rec, end + 60 * MIN, &p);
        assert_eq!(c.lock.unwrap().strikes, 1);
    }

    #[test]
    fn expires_covers_window_and_lock() {
        let p = policy();
        let mut rec = Record::default();
        assert_eq!(rec.expires(&p), 0);
        rec.count_failure(5, &p).unwrap();
        assert_eq!(rec.expires(&p), 5 + 10 * MIN);
    }

    #[test]
    fn key_helpers_fold_and_split() {
        let k = Key::user_ip("s", "Alice@Example.COM", "10.0.0.1");
        assert_eq!(k.subject, "alice@example.com|10.0.0.1");
        assert_eq!(k.user_part(), Some("alice@example.com"));
        assert_eq!(k.ip_part(), Some("10.0.0.1"));
        let d = Key::device("s", "a|b", "dev");
        assert_eq!(d.user_part(), Some("a|b"));
        assert_eq!(d.ip_part(), None);
        assert_eq!(Key::token("s", "::1").ip_part(), Some("::1"));
        assert_eq!(Key::user("s", "ÄB").subject, "äb");
    }

    #[test]
    fn ip_subject_uses_v6_prefix() {
        assert_eq!(ip_subject("10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(ip_subject("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(
            ip_subject("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn clear_matching() {
        let m = |scope, subject, user, ip| clear_matches(scope, subject, user, ip);
        assert!(m(Scope::User, "bob", Some("BOB"), None));
        assert!(!m(Scope::User, "bob", Some("bo"), None));
        assert!(m(Scope::Device, "bob|d1", Some("bob"), None));
        assert!(!m(Scope::Ip, "bob", Some("bob"), None));
        assert!(!m(Scope::User, "1.2.3.4", None, Some("1.2.3.4")));
        assert!(m(Scope::UserIp, "bob|1.2.3.4", None, Some("1.2.3.4")));
        assert!(!m(Scope::UserIp, "bob|1.2.3.5", None, Some("1.2.3.4")));
        assert!(m(Scope::Token, "1.2.3.4", None, Some("::ffff:1.2.3.4")));
        assert!(m(Scope::Ip, "2001:db8::/64", None, Some("2001:DB8::9")));
        assert!(m(Scope::Ip, "2001:db8::9", None, Some("2001:db8::/64")));
        assert!(!m(Scope::Ip, "2001:db9::/64", None, Some("2001:db8::9")));
        assert!(!m(Scope::Ip, "1.2.3.4", None, Some("::1")));
        assert!(!m(Scope::Ip, "1.2.3.4", None, None));
        assert!(m(Scope::Ip, "not-an-ip", None, Some("NOT-an-ip")));
    }

    #[test]
    fn key_length_is_bounded() {
        assert!(Key::user("s", &"a".repeat(MAX_FIELD_LEN)).check().is_ok());
        let err = Key::user("s", &"a".repeat(MAX_FIELD_LEN + 1)).check();
        assert!(matches!(err, Err(StoreError::KeyTooLong { .. })));
    }

    #[test]
    fn times_round_trip_and_refuse_pre_epoch() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(from_ms(to_ms(t).unwrap()).unwrap(), t);
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert!(matches!(to_ms(before), Err(StoreError::Time(_))));
        assert!(matches!(from_ms(-1), Err(StoreError::Time(_))));
    }

    #[test]
    fn scope_names_round_trip() {
        for scope in Scope::ALL {
            assert_eq!(Scope::from_name(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::from_name("nope"), None);
    }
}
