//! Device cookies (OWASP "Slow down online guessing attacks with device
//! cookies"): after a successful login the browser gets a cookie that proves it
//! once logged in as that user. Attempts that carry it are counted on their own,
//! so a stranger hammering the account cannot lock its owner out.
//!
//! The cookie holds a random device id, the issue time and a MAC over
//! (site, case-folded user, device id, issue time) with the gateway key. The
//! user is not in the cookie: it is checked against the user of the attempt.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};

use crate::keys::SecretKey;

/// The cookie name. `__Host-` makes browsers insist on Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-erpguard_device";
const DOMAIN: &str = "erpguard-device-v1";

/// Builds the `Set-Cookie` value for a fresh device cookie.
pub fn issue(
    key: &SecretKey,
    site: &str,
    user: &str,
    now: SystemTime,
    ttl: Duration,
) -> Option<HeaderValue> {
    let id = hex::encode(rand::random::<[u8; 16]>());
    let issued = secs(now).to_string();
    let tag = key.mac(
        DOMAIN,
        &[
            site.as_bytes(),
            user.as_bytes(),
            id.as_bytes(),
            issued.as_bytes(),
        ],
    );
    let value = format!(
        "{COOKIE}={id}.{issued}.{}; Max-Age={}; Path=/; Secure; HttpOnly; SameSite=Strict",
        URL_SAFE_NO_PAD.encode(tag),
        ttl.as_secs()
    );
    HeaderValue::from_str(&value).ok()
}

/// The device id, if the request carries a valid, unexpired device cookie for `user`.
pub fn verify(
    key: &SecretKey,
    site: &str,
    user: &str,
    headers: &HeaderMap,
    now: SystemTime,
    ttl: Duration,
) -> Option<String> {
    cookie_values(headers, COOKIE).find_map(|value| check(key, site, user, value, now, ttl))
}

fn check(
    key: &SecretKey,
    site: &str,
    user: &str,
    value: &str,
    now: SystemTime,
    ttl: Duration,
) -> Option<String> {
    let mut parts = value.splitn(3, '.');
    let (id, issued, tag) = (parts.next()?, parts.next()?, parts.next()?);
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let issued_at: u64 = issued.parse().ok()?;
    if secs(now).saturating_sub(issued_at) > ttl.as_secs() {
        return None;
    }
    let parts: [&[u8]; 4] = [
        site.as_bytes(),
        user.as_bytes(),
        id.as_bytes(),
        issued.as_bytes(),
    ];
    key.verify(DOMAIN, &parts, &tag).then(|| id.to_owned())
}

/// Every value of cookie `name` across all `Cookie` headers.
pub fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (tempfile::TempDir, SecretKey) {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::load_or_create(&dir.path().join("k")).unwrap();
        (dir, key)
    }

    fn as_request(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("sid=x; {pair}")).unwrap(),
        );
        h
    }

    #[test]
    fn a_cookie_is_valid_only_for_its_user_site_and_lifetime() {
        let (_d, key) = key();
        let now = SystemTime::now();
        let ttl = Duration::from_secs(3600);
        let set = issue(&key, "erp", "alice@example.com", now, ttl).unwrap();
        let req = as_request(&set);
        assert!(verify(&key, "erp", "alice@example.com", &req, now, ttl).is_some());
        assert!(verify(&key, "erp", "bob@example.com", &req, now, ttl).is_none());
        assert!(verify(&key, "books", "alice@example.com", &req, now, ttl).is_none());
        assert!(
            verify(
                &key,
                "erp",
                "alice@example.com",
                &req,
                now + Duration::from_secs(7200),
                ttl
            )
            .is_none()
        );
        let s = set.to_str().unwrap();
        assert!(s.contains("Secure") && s.contains("HttpOnly") && s.contains("SameSite=Strict"));
    }

    #[test]
    fn a_forged_or_mangled_cookie_is_refused() {
        let (_d, key) = key();
        let now = SystemTime::now();
        let ttl = Duration::from_secs(3600);
        for forged in ["", "x", "a.b.c", "00.0.AAAA", "..."] {
            let mut h = HeaderMap::new();
            h.insert(
                header::COOKIE,
                HeaderValue::from_str(&format!("{COOKIE}={forged}")).unwrap(),
            );
            assert!(
                verify(&key, "erp", "alice", &h, now, ttl).is_none(),
                "{forged}"
            );
        }
    }
}
