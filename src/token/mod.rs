//! Gateway-issued API tokens: `eg_<id>_<secret>`, scoped in ERP terms, with
//! the real upstream credential injected by erpguard.
//!
//! What this layer promises:
//! - **Secrets are never stored or logged.** A token is kept as a keyed hash
//!   of its secret, compared in constant time; logs and the audit log name
//!   the token by its public id only.
//! - **Every check from memory.** Tokens and address locks live in a
//!   [`cache::TokenCache`] that polls the store every 250 ms, so a revocation
//!   or rotation made by the CLI is enforced by every running gateway within
//!   a second, and a valid token costs no store read.
//! - **Least privilege.** Expiry, source networks, a per-token rate and the
//!   [`scope`] are all checked before anything is forwarded; the client's
//!   token header is removed and the site credential the token names is set
//!   as `Authorization`.
//! - **Abuse is counted.** Each invalid token counts against the client
//!   address like a failed password; after `login.api_lockout_after` within
//!   `login.window` the address is locked out (429), audited.
//! - **Fail closed.** A store error on the abuse counter is a 503; a token
//!   whose credential is no longer configured is refused.

pub mod cache;
pub mod cli;
pub mod scope;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, Method, header};
use subtle::ConstantTimeEq;

use crate::audit::{AuditEvent, AuditLog};
use crate::config::{AppKind, Site};
use crate::error::Denial;
use crate::keys::SecretKey;
use crate::params::Params;
use crate::store::{Key, StateStore};
use cache::{LiveToken, TokenCache};

const HASH_DOMAIN: &str = "erpguard api token v1";
const UNKNOWN: &str = "unknown token";

/// A newly made token: the full text (shown once) and its parts.
pub struct NewToken {
    /// `eg_<id>_<secret>`.
    pub text: String,
    /// The public id.
    pub id: String,
    /// The stored hash of the secret.
    pub hash: String,
}

/// A token with a fresh 64-bit id and 256-bit secret.
pub fn generate(key: &SecretKey) -> NewToken {
    let id = hex::encode(rand::random::<[u8; 8]>());
    new_secret(key, id)
}

/// A new secret for an existing id (rotation).
pub fn new_secret(key: &SecretKey, id: String) -> NewToken {
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    NewToken {
        text: format!("eg_{id}_{secret}"),
        hash: hash(key, &id, &secret),
        id,
    }
}

/// The stored form of a secret: a keyed hash, hex.
pub fn hash(key: &SecretKey, id: &str, secret: &str) -> String {
    hex::encode(key.mac(HASH_DOMAIN, &[id.as_bytes(), secret.as_bytes()]))
}

/// Splits `eg_<id>_<secret>`; `None` for anything else.
pub fn split(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("eg_")?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == 16
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some((id, secret))
}

/// What the token layer needs from the request path.
pub struct TokenCx<'a> {
    /// The site.
    pub site: &'a Site,
    /// The live tokens.
    pub cache: &'a Arc<TokenCache>,
    /// The durable store (abuse counters).
    pub store: &'a Arc<dyn StateStore>,
    /// The gateway key.
    pub key: &'a SecretKey,
    /// The audit log.
    pub audit: &'a AuditLog,
    /// The client address.
    pub client: IpAddr,
    /// The request id.
    pub request_id: &'a str,
}

impl TokenCx<'_> {
    fn event(&self, name: &'static str) -> AuditEvent {
        AuditEvent::new(name)
            .site(self.site.name.clone())
            .client_ip(self.client)
            .request_id(self.request_id.to_owned())
    }
}

/// The token text the request presents, if it presents one: `Authorization:
/// Bearer eg_...` or the site's `api.token_header`.
pub fn presented<'h>(site: &Site, headers: &'h HeaderMap) -> Option<&'h str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| t.starts_with("eg_"));
    bearer.or_else(|| {
        let name = site.api.token_header.as_ref()?;
        headers.get(name)?.to_str().ok().map(str::trim)
    })
}

/// Refuses the app's own API credentials sent by a client, unless the site
/// allows them (`api.allow_direct_credentials`).
pub fn refuse_direct(site: &Site, path: &str, headers: &HeaderMap) -> Result<(), Denial> {
    if site.api.allow_direct_credentials || !headers.contains_key(header::AUTHORIZATION) {
        return Ok(());
    }
    let api_path = match site.app {
        // Frappe reads Authorization on every path.
        AppKind::Erpnext => true,
        AppKind::Akaunting => path
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("/api/")),
        AppKind::Generic => false,
    };
    match api_path {
        true => Err(Denial::DirectCredentials),
        false => Ok(()),
    }
}

/// Checks a presented token: the address lock, then the token itself. A bad
/// token is counted against the address.
pub async fn authenticate(cx: &TokenCx<'_>, text: &str) -> Result<Arc<LiveToken>, Denial> {
    let key = Key::token(&cx.site.name, &crate::store::ip_subject(cx.client));
    let now = SystemTime::now();
    if let Some(until) = cx.cache.locked(&key, now) {
        return Err(Denial::LockedOut {
            retry_after: until.duration_since(now).unwrap_or_default(),
        });
    }
    let mut verdict = verify(cx, text, now);
    if verdict.as_ref().err() == Some(&UNKNOWN) {
        // Made moments ago by the CLI or another gateway? One version check
        // (and a reload if it changed) before calling it unknown.
        let cache = cx.cache.clone();
        blocking(cx, move |s| cache.refresh(s, None)).await?;
        verdict = verify(cx, text, now);
    }
    match verdict {
        Ok(token) => Ok(token),
        Err(why) => {
            let id = split(text).map(|(id, _)| id);
            invalid(cx, key, id, why, now).await?;
            Err(Denial::TokenInvalid(why.to_owned()))
        }
    }
}

/// The live token `text` names, if its secret is right and it is in force.
fn verify(cx: &TokenCx<'_>, text: &str, now: SystemTime) -> Result<Arc<LiveToken>, &'static str> {
    let (id, secret) = split(text).ok_or("malformed token")?;
    let token = cx.cache.get(id).ok_or(UNKNOWN)?;
    let presented = hash(cx.key, id, secret);
    let rec = &token.record;
    let current: bool = presented.as_bytes().ct_eq(rec.hash.as_bytes()).into();
    let previous: bool = rec.old_hash.as_ref().is_some_and(|old| {
        let same: bool = presented.as_bytes().ct_eq(old.as_bytes()).into();
        same && rec.old_until.is_some_and(|until| now < until)
    });
    if !(current || previous) {
        return Err("wrong secret");
    }
    if rec.site != cx.site.name {
        return Err("token of another site");
    }
    if rec.revoked.is_some() {
        return Err("revoked token");
    }
    if rec.expires.is_some_and(|e| now >= e) {
        return Err("expired token");
    }
    Ok(token)
}

/// Counts an invalid token against the client address and audits it.
async fn invalid(
    cx: &TokenCx<'_>,
    key: Key,
    id: Option<&str>,
    why: &str,
    now: SystemTime,
) -> Result<(), Denial> {
    let login = &cx.site.login;
    let policy = crate::login::lock_policy(login, login.api_lockout_after);
    let k = key.clone();
    let counter = blocking(cx, move |s| s.add_failure(&k, now, &policy)).await?;
    if let Some(lock) = counter.lock {
        cx.cache.note_lock(&key, lock.until);
    }
    let mut event = cx.event("token_denied").reason(why.to_owned());
    if let Some(id) = id {
        // The public id is not a secret, and names which token is misused.
        event = event.token_id(id.to_owned());
    }
    cx.audit.record(event);
    if counter.tripped {
        cx.audit.record(
            cx.event("token_abuse_locked")
                .reason(format!("{} invalid tokens", counter.failures)),
        );
    }
    Ok(())
}

/// Everything a valid token must also satisfy for this request: its source
/// networks, its rate and its scope.
pub fn authorize(
    cx: &TokenCx<'_>,
    token: &LiveToken,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(), Denial> {
    let deny = |reason: String, missing: Option<String>| {
        cx.audit.record(
            cx.event("token_denied")
                .token_id(token.record.id.clone())
                .reason(reason.clone()),
        );
        Denial::TokenForbidden { reason, missing }
    };
    if !token.allow.is_empty() && !token.allow.iter().any(|n| n.contains(&cx.client)) {
        return Err(deny(
            format!("client {} outside the token's networks", cx.client),
            None,
        ));
    }
    if let Some(limiter) = &token.limiter
        && limiter.check().is_err()
    {
        cx.audit.record(
            cx.event("token_denied")
                .token_id(token.record.id.clone())
                .reason("over the token's rate"),
        );
        return Err(Denial::TokenRateLimited {
            retry_after: Duration::from_secs(1),
        });
    }
    token
        .scopes
        .check(cx.site.app, method, path, query, headers, params)
        .map_err(|missing| {
            deny(
                format!("outside the token's scope: needs {missing}"),
                Some(missing),
            )
        })
}

/// Replaces the token with the upstream credential it names.
pub fn inject(cx: &TokenCx<'_>, token: &LiveToken, headers: &mut HeaderMap) -> Result<(), Denial> {
    let Some(credential) = cx.site.credentials.get(&token.record.credential) else {
        cx.audit.record(
            cx.event("token_denied")
                .token_id(token.record.id.clone())
                .reason("the token's credential is not configured"),
        );
        return Err(Denial::TokenForbidden {
            reason: format!(
                "the token's credential {:?} is not configured on the site",
                token.record.credential
            ),
            missing: None,
        });
    };
    if let Some(name) = &cx.site.api.token_header {
        headers.remove(name);
    }
    let mut value: HeaderValue = credential.value.clone();
    value.set_sensitive(true);
    headers.insert(header::AUTHORIZATION, value);
    token.used(SystemTime::now());
    Ok(())
}

async fn blocking<T, F>(cx: &TokenCx<'_>, f: F) -> Result<T, Denial>
where
    T: Send + 'static,
    F: FnOnce(&dyn StateStore) -> Result<T, crate::store::StoreError> + Send + 'static,
{
    crate::store::off_thread(cx.store, f)
        .await
        .map_err(|e| Denial::StoreUnavailable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_documented_shape_and_split_back() {
        let key = SecretKey::from_test_bytes([1; 32]);
        let t = generate(&key);
        assert!(t.text.starts_with("eg_"));
        let (id, secret) = split(&t.text).unwrap();
        assert_eq!(id, t.id);
        assert_eq!(hash(&key, id, secret), t.hash);
        assert!(split("eg_short_x").is_none());
        assert!(split("Bearer x").is_none());
        assert_ne!(generate(&key).text, t.text);
    }
}
