//! erpguard's own step-up cookies: opaque random ids, stored only as keyed hashes.
//!
//! Both cookies use the `__Host-` prefix, so a browser accepts them only with
//! `Secure`, `Path=/` and no `Domain`: a sibling subdomain cannot plant or
//! overwrite them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use http::header::{self, HeaderMap};

use crate::keys::SecretKey;

/// Binds the browser to the ERP user who logged in. `SameSite=Lax` like the
/// ERP's own session cookie, so a link from mail to the ERP still works.
pub const SESSION: &str = "__Host-erpguard-session";
/// Carries a step-up grant. `SameSite=Strict`: no cross-site request ever
/// carries the power to make an administrative change.
pub const GRANT: &str = "__Host-erpguard-stepup";

const DOMAIN: &str = "erpguard step-up id v1";

/// A new opaque id: 128 random bits, base64url.
pub fn new_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// The stored form of an id, cookie value or token: a keyed hash, hex.
pub fn stored(key: &SecretKey, kind: &str, value: &str) -> String {
    hex::encode(key.mac(DOMAIN, &[kind.as_bytes(), value.as_bytes()]))
}

/// The first value of cookie `name` of a plausible shape (ids are 22
/// base64url characters; anything else is ignored, never looked up).
pub fn read<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    crate::login::device::cookie_values(headers, name).find(|v| {
        v.len() <= 64
            && !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// `Set-Cookie` for cookie `name` with `value`, lasting `max_age` seconds.
pub fn set(name: &str, value: &str, max_age: u64, same_site: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}; Max-Age={max_age}"
    ))
    .ok()
}

/// `Set-Cookie` that deletes cookie `name`.
pub fn clear(name: &str) -> HeaderValue {
    match HeaderValue::from_str(&format!(
        "{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
    )) {
        Ok(v) => v,
        Err(_) => HeaderValue::from_static("erpguard-cleared=; Max-Age=0"),
    }
}

/// Removes erpguard's own cookies (step-up and device cookies, all named
/// `__Host-erpguard...`) from the `Cookie` headers sent upstream: the ERP has
/// no use for them and its logs should not hold them.
pub fn strip_own(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if !values
        .iter()
        .any(|v| v.as_bytes().windows(15).any(|w| w == b"__Host-erpguard"))
    {
        return;
    }
    headers.remove(header::COOKIE);
    for value in values {
        let Ok(text) = value.to_str() else {
            headers.append(header::COOKIE, value);
            continue;
        };
        let kept: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|pair| !pair.starts_with("__Host-erpguard"))
            .collect();
        if let Ok(v) = HeaderValue::from_str(&kept.join("; "))
            && !kept.is_empty()
        {
            headers.append(header::COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cookies_are_stripped_and_the_rest_kept() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("sid=abc; __Host-erpguard-session=x; user_id=a"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-erpguard-stepup=y"),
        );
        strip_own(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, vec!["sid=abc; user_id=a"]);
    }

    #[test]
    fn odd_values_are_never_read() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-erpguard-session=a'b; __Host-erpguard-session=ok_1"),
        );
        assert_eq!(read(&h, SESSION), Some("ok_1"));
        assert_eq!(new_id().len(), 22);
        let key = SecretKey::from_test_bytes([7; 32]);
        assert_ne!(stored(&key, "session", "x"), stored(&key, "grant", "x"));
    }
}
