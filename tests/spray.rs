//! A million distinct user names sprayed through the login counter logic (the
//! guard's key derivation, the per-IP limiter and the SQLite store, exactly as
//! the live path uses them) keep memory and disk bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use erpguard::config::LoginPolicy;
use erpguard::config::values::parse_rate;
use erpguard::login::limiter::IpLimiter;
use erpguard::profile::{Attempt, AttemptKind};
use erpguard::store::StateStore;
use erpguard::store::sqlite::SqliteStore;

const SPRAY: u32 = 1_000_000;
const MAX_KEYS: usize = 10_000;

fn policy() -> LoginPolicy {
    LoginPolicy {
        enabled: true,
        per_ip: parse_rate("20/min").unwrap(),
        oracle_per_ip: parse_rate("5/min").unwrap(),
        lockout_after: 5,
        user_lockout_after: 8,
        api_lockout_after: 10,
        window: Duration::from_secs(900),
        lockout: Duration::from_secs(900),
        lockout_max: Duration::from_secs(86_400),
        lockout_memory: Duration::from_secs(86_400),
        device_cookie: true,
        device_ttl: Duration::from_secs(86_400),
    }
}

/// Resident memory of this process, from /proc (Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_million_distinct_usernames_keep_memory_and_disk_bounded() {
    // tmpfs when the machine has one: the test measures bounds, not disk speed.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        Some("/dev/shm")
    } else {
        None
    };
    let dir = match base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let store = SqliteStore::open(&dir.path().join("state.db"), MAX_KEYS).unwrap();
    let limiter = IpLimiter::new(parse_rate("20/min").unwrap());
    let policy = policy();
    let started = Instant::now();
    let mut peak_growth = 0u64;
    let baseline = rss_bytes();
    for i in 0..SPRAY {
        // A spray from 65,536 addresses, one new user name per attempt.
        let client = IpAddr::V4(Ipv4Addr::new(10, 9, (i >> 8) as u8, i as u8));
        let _ = limiter.check(client);
        let attempt = Attempt {
            kind: AttemptKind::Password,
            user: Some(format!("spray{i}@example.com")),
            endpoint: "cmd=login".into(),
        };
        let keys = erpguard::login::keys("erp", &policy, &attempt, client, None);
        store.add_failures(&keys, SystemTime::now()).unwrap();
        if i % 100_000 == 99_999 {
            limiter.trim();
            peak_growth = peak_growth.max(rss_bytes().saturating_sub(baseline));
        }
    }
    let rows = store.key_count().unwrap();
    let disk = dir_size(dir.path());
    eprintln!(
        "sprayed {SPRAY} user names in {:?}: {rows} counters kept, {disk} bytes on disk, peak RSS growth {} KiB, limiter tracks {}",
        started.elapsed(),
        peak_growth / 1024,
        limiter.len()
    );
    assert!(
        rows <= MAX_KEYS,
        "{rows} counters kept, bound is {MAX_KEYS}"
    );
    assert!(disk < 16 << 20, "state on disk grew to {disk} bytes");
    assert!(peak_growth < 64 << 20, "RSS grew by {peak_growth} bytes");
    assert!(
        limiter.len() <= 65_536,
        "the limiter tracks at most the distinct clients"
    );
}
