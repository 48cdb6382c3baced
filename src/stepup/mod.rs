//! Step-up TOTP: administrative requests need a fresh code from the ERP user
//! who owns the browser session.
//!
//! What this layer promises:
//! - **Bound to the ERP user.** erpguard learns who owns a session at a
//!   successful login and gives the browser its own session cookie
//!   ([`cookie::SESSION`]); for ERPNext the binding also records the `sid` it
//!   was made for. An administrative request whose session erpguard cannot
//!   tie to a user (no cookie, an unknown or expired one, another `sid`) is
//!   sent to log in again: a stolen ERP cookie alone never passes.
//! - **A grant is a correct code, for one session, user (and optionally IP),
//!   for `step_up.ttl`**, kept in the state store (a restart keeps it) and
//!   carried by an opaque `SameSite=Strict` cookie ([`cookie::GRANT`]). ERP
//!   logout ends the binding and its grants.
//! - **Fail closed.** A store error is a 503, never a pass; a user without an
//!   enrolment is refused unless `step_up.unenrolled = "allow"` (audited).
//! - Which requests are administrative is decided by [`admin_reason`]: the
//!   profile's knowledge of the app ([`crate::profile::admin`]) and
//!   `action = "step_up"` rules.

pub mod cookie;
pub mod endpoint;
pub mod page;
pub mod verify;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Method};

use crate::audit::{AuditEvent, AuditLog};
use crate::config::{AppKind, RuleAction, Site, Unenrolled};
use crate::error::Denial;
use crate::keys::SecretKey;
use crate::params::Params;
use crate::policy::Access;
use crate::profile::admin;
use crate::store::{Binding, Grant, StateStore, StoreError};

/// The path prefix erpguard serves itself (compared case-insensitively).
pub const PREFIX: &str = "/.erpguard/";
/// The challenge page.
pub const CHALLENGE_PATH: &str = "/.erpguard/step-up";
/// The enrolment-link page.
pub const ENROL_PATH: &str = "/.erpguard/enroll";

/// What the step-up layer needs from the request path.
pub struct StepUpCx<'a> {
    /// The site.
    pub site: &'a Site,
    /// The durable store.
    pub store: &'a Arc<dyn StateStore>,
    /// The gateway key (hashes ids, seals secrets).
    pub key: &'a SecretKey,
    /// The audit log.
    pub audit: &'a AuditLog,
    /// The client address.
    pub client: IpAddr,
    /// The request id.
    pub request_id: &'a str,
}

impl StepUpCx<'_> {
    /// An audit event with the site, client and request id filled in.
    pub fn event(&self, name: &'static str) -> AuditEvent {
        AuditEvent::new(name)
            .site(self.site.name.clone())
            .client_ip(self.client)
            .request_id(self.request_id.to_owned())
    }

    /// Runs a blocking store call off the async workers; any failure is a 503.
    pub async fn store<T, F>(&self, f: F) -> Result<T, Denial>
    where
        T: Send + 'static,
        F: FnOnce(&dyn StateStore) -> Result<T, StoreError> + Send + 'static,
    {
        crate::store::off_thread(self.store, f)
            .await
            .map_err(|e| Denial::StoreUnavailable(e.to_string()))
    }
}

/// Whether `path` (decoded, canonical) is under erpguard's reserved prefix.
pub fn is_reserved(path: &str) -> bool {
    path.get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
        || path.eq_ignore_ascii_case("/.erpguard")
}

/// Whether the site uses step-up at all (profile detection or a rule).
pub fn in_use(site: &Site) -> bool {
    site.step_up.enabled || site.rules.iter().any(|r| r.action == RuleAction::StepUp)
}

/// Why a request needs a step-up grant, if it does: an `action = "step_up"`
/// rule, or the profile's administrative-request detection.
pub fn admin_reason(
    site: &Site,
    access: Access,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    params: &Params,
) -> Option<String> {
    if let Access::StepUp(n) = access {
        let name = site.rules.get(n).map_or("a rule", |r| r.name.as_str());
        return Some(format!("config rule {name}"));
    }
    if !site.step_up.enabled {
        return None;
    }
    let extra = &site.step_up.extra;
    let found = match site.app {
        AppKind::Erpnext => admin::erpnext(method, path, params, extra),
        AppKind::Akaunting => {
            let effective = akaunting_method(method, headers, params);
            admin::akaunting(&effective, path, params, extra)
        }
        AppKind::Generic => None,
    };
    found.map(|r| format!("{}: {}", r.rule, r.detail))
}

/// Akaunting's effective method: `X-HTTP-Method-Override`, then `_method`, on
/// POST only (Symfony's order). An unreadable override counts as `DELETE`,
/// the most dangerous reading, so detection fails closed.
fn akaunting_method(method: &Method, headers: &HeaderMap, params: &Params) -> Method {
    if *method != Method::POST {
        return method.clone();
    }
    if let Some(v) = headers.get("x-http-method-override") {
        return v
            .to_str()
            .ok()
            .and_then(|s| Method::from_bytes(s.trim().to_ascii_uppercase().as_bytes()).ok())
            .unwrap_or(Method::DELETE);
    }
    crate::params::laravel_method(method, params).unwrap_or(Method::DELETE)
}

/// Where to send a browser that must log in again, coming back to `back`.
pub fn login_url(app: AppKind, back: &str) -> String {
    match app {
        AppKind::Erpnext => format!("/login?redirect-to={}", encode(back)),
        AppKind::Akaunting => "/auth/login".to_owned(),
        AppKind::Generic => "/".to_owned(),
    }
}

/// The challenge page for a request that wanted `back`.
pub fn challenge_url(back: &str) -> String {
    format!("{CHALLENGE_PATH}?return={}", encode(back))
}

/// `s` percent-encoded for a query value.
pub(super) fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Where the user goes back to after the challenge: the request itself for a
/// GET; for other methods (which a browser cannot repeat) the site's root.
pub fn return_target(method: &Method, path_and_query: &str) -> String {
    match *method == Method::GET || *method == Method::HEAD {
        true => path_and_query.to_owned(),
        false => "/".to_owned(),
    }
}

/// A `return` parameter made safe: a local absolute path, never `//host`,
/// `/\host`, a scheme, control characters or erpguard's own pages.
pub fn safe_return(raw: Option<&str>) -> String {
    let Some(r) = raw else {
        return "/".to_owned();
    };
    let local = r.starts_with('/')
        && !r.starts_with("//")
        && !r.starts_with("/\\")
        && r.len() <= 2048
        && r.bytes().all(|b| b.is_ascii_graphic())
        && !is_reserved(r.split('?').next().unwrap_or(r));
    match local {
        true => r.to_owned(),
        false => "/".to_owned(),
    }
}

/// The ERP session id the request carries, where the app has a stable one:
/// ERPNext's `sid` (the parameter wins over the cookie, as in Frappe).
fn erp_session<'a>(app: AppKind, headers: &'a HeaderMap, params: &'a Params) -> Option<&'a str> {
    match app {
        AppKind::Erpnext => params
            .get("sid")
            .or_else(|| crate::login::device::cookie_values(headers, "sid").next())
            .filter(|s| !s.is_empty() && *s != "Guest"),
        _ => None,
    }
}

/// The binding of this request's session, if erpguard knows its user and the
/// ERP session still matches. `Err` only for a store failure.
pub async fn session(
    cx: &StepUpCx<'_>,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Result<Binding, &'static str>, Denial> {
    let Some(value) = cookie::read(headers, cookie::SESSION) else {
        return Ok(Err("no erpguard session cookie"));
    };
    let id = cookie::stored(cx.key, "session", value);
    let site = cx.site.name.clone();
    let now = SystemTime::now();
    let Some(binding) = cx.store(move |s| s.binding(&site, &id, now)).await? else {
        return Ok(Err("unknown or expired erpguard session"));
    };
    if let Some(want) = &binding.erp_session {
        let have = erp_session(cx.site.app, headers, params)
            .map(|sid| cookie::stored(cx.key, "erp-session", sid));
        if have.as_ref() != Some(want) {
            return Ok(Err("the ERP session is not the one that logged in"));
        }
    }
    Ok(Ok(binding))
}

/// Requires a valid grant for an administrative request (`reason` says why).
/// Returns the user the grant (or the unenrolled policy) let through.
pub async fn require(
    cx: &StepUpCx<'_>,
    headers: &HeaderMap,
    params: &Params,
    reason: String,
    back: &str,
) -> Result<String, Denial> {
    let binding = match session(cx, headers, params).await? {
        Ok(b) => b,
        // An API credential has no browser session to step up in: the caller
        // is told step-up is required (it cannot be had this way).
        Err(_) if headers.contains_key(http::header::AUTHORIZATION) => {
            return Err(Denial::StepUpRequired {
                reason: format!("API credential on an administrative request ({reason})"),
                url: challenge_url(back),
                user: None,
            });
        }
        Err(why) => {
            return Err(Denial::LoginRequired {
                why: format!("{why} ({reason})"),
                url: login_url(cx.site.app, back),
            });
        }
    };
    if grant_holds(cx, headers, &binding).await? {
        return Ok(binding.user);
    }
    let (site, user) = (cx.site.name.clone(), binding.user.clone());
    let enrolment = cx.store(move |s| s.enrolment(&site, &user)).await?;
    if !enrolment.is_some_and(|e| e.active) {
        return unenrolled(cx, binding.user, reason);
    }
    Err(Denial::StepUpRequired {
        reason,
        url: challenge_url(back),
        user: Some(binding.user),
    })
}

/// The unenrolled policy: refuse, or let through with an audit line.
fn unenrolled(cx: &StepUpCx<'_>, user: String, reason: String) -> Result<String, Denial> {
    match cx.site.step_up.unenrolled {
        Unenrolled::Deny => Err(Denial::StepUpNotEnrolled { reason, user }),
        Unenrolled::Allow => {
            cx.audit.record(
                cx.event("step_up_unenrolled_allowed")
                    .user(user.clone())
                    .reason(reason),
            );
            Ok(user)
        }
    }
}

/// Whether the request's grant cookie names a live grant of this session and
/// user (and client address, when grants are bound to it).
async fn grant_holds(
    cx: &StepUpCx<'_>,
    headers: &HeaderMap,
    binding: &Binding,
) -> Result<bool, Denial> {
    let Some(value) = cookie::read(headers, cookie::GRANT) else {
        return Ok(false);
    };
    let id = cookie::stored(cx.key, "grant", value);
    let site = cx.site.name.clone();
    let now = SystemTime::now();
    let Some(grant) = cx.store(move |s| s.grant(&site, &id, now)).await? else {
        return Ok(false);
    };
    let ip_ok = grant
        .ip
        .as_ref()
        .is_none_or(|ip| *ip == crate::store::ip_subject(cx.client));
    Ok(grant.binding == binding.id && grant.user == binding.user && ip_ok)
}

/// Makes a grant for `binding` and returns its `Set-Cookie`.
pub async fn make_grant(cx: &StepUpCx<'_>, binding: &Binding) -> Result<HeaderValue, Denial> {
    let value = cookie::new_id();
    let ttl = cx.site.step_up.ttl;
    let grant = Grant {
        id: cookie::stored(cx.key, "grant", &value),
        site: cx.site.name.clone(),
        binding: binding.id.clone(),
        user: binding.user.clone(),
        ip: cx
            .site
            .step_up
            .bind_ip
            .then(|| crate::store::ip_subject(cx.client)),
        expires: SystemTime::now() + ttl,
    };
    cx.store(move |s| s.put_grant(&grant)).await?;
    cookie::set(cookie::GRANT, &value, ttl.as_secs(), "Strict")
        .ok_or_else(|| Denial::StoreUnavailable("grant cookie".into()))
}

/// After a successful login: remembers which ERP user owns the new session
/// and returns erpguard's session cookie. `response` is the upstream's answer
/// (ERPNext's new `sid` is in its `Set-Cookie`).
pub async fn bind(
    cx: &StepUpCx<'_>,
    user: &str,
    response: &HeaderMap,
) -> Result<HeaderValue, Denial> {
    let erp_session = match cx.site.app {
        AppKind::Erpnext => {
            let sid = crate::profile::erpnext_new_sid(response)
                .ok_or_else(|| Denial::UpstreamProtocol("login success without a sid".into()))?;
            Some(cookie::stored(cx.key, "erp-session", &sid))
        }
        _ => None,
    };
    let value = cookie::new_id();
    let ttl = cx.site.step_up.session_ttl;
    let binding = Binding {
        id: cookie::stored(cx.key, "session", &value),
        site: cx.site.name.clone(),
        user: crate::store::fold_user(user),
        erp_session,
        expires: SystemTime::now() + ttl,
    };
    cx.store(move |s| s.put_binding(&binding)).await?;
    cookie::set(cookie::SESSION, &value, ttl.as_secs(), "Lax")
        .ok_or_else(|| Denial::StoreUnavailable("session cookie".into()))
}

/// Whether the request logs the user out of the ERP.
pub fn is_logout(app: AppKind, method: &Method, path: &str, params: &Params) -> bool {
    match app {
        AppKind::Erpnext => {
            let cmd = params.get("cmd");
            matches!(cmd, Some("logout" | "web_logout"))
                || crate::profile::erpnext_rpc_is(path, &["logout", "web_logout"])
                || path.eq_ignore_ascii_case("/logout")
        }
        AppKind::Akaunting => *method == Method::GET && akaunting_logout(path),
        AppKind::Generic => false,
    }
}

/// `^/\d+/(auth|portal)/logout$`, empty segments dropped; no allocation (it
/// runs on every request of a step-up site).
fn akaunting_logout(path: &str) -> bool {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let (Some(cid), Some(area), Some(last), None) =
        (segs.next(), segs.next(), segs.next(), segs.next())
    else {
        return false;
    };
    !cid.is_empty()
        && cid.bytes().all(|b| b.is_ascii_digit())
        && (area.eq_ignore_ascii_case("auth") || area.eq_ignore_ascii_case("portal"))
        && last.eq_ignore_ascii_case("logout")
}

/// At logout: ends the binding and its grants (whatever the ERP answers: ending
/// erpguard's grant is always safe) and returns the cookies that clear ours.
pub async fn end(cx: &StepUpCx<'_>, headers: &HeaderMap) -> Result<Vec<HeaderValue>, Denial> {
    if let Some(value) = cookie::read(headers, cookie::SESSION) {
        let id = cookie::stored(cx.key, "session", value);
        let site = cx.site.name.clone();
        let ended = cx.store(move |s| s.end_binding(&site, &id)).await?;
        if ended > 0 {
            cx.audit.record(cx.event("step_up_session_ended"));
        }
    }
    Ok(vec![
        cookie::clear(cookie::SESSION),
        cookie::clear(cookie::GRANT),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logouts_are_recognised_in_every_form_and_nothing_else() {
        let none = Params::default();
        let erp = |m: Method, p: &str| is_logout(AppKind::Erpnext, &m, p, &none);
        assert!(erp(Method::POST, "/api/method/logout"));
        assert!(erp(Method::GET, "/API/v1/METHOD/frappe.handler.logout"));
        assert!(erp(Method::GET, "//api/v2/method/web_logout/"));
        assert!(erp(Method::GET, "/logout"));
        assert!(!erp(Method::GET, "/api/method/logout_all"));
        assert!(!erp(Method::GET, "/api/v2/document/logout"));
        assert!(!erp(Method::GET, "/api/method"));
        let cmd = crate::params::frappe(Some("cmd=web_logout"), &HeaderMap::new(), b"").unwrap();
        assert!(is_logout(AppKind::Erpnext, &Method::GET, "/", &cmd));
        let ak = |m: Method, p: &str| is_logout(AppKind::Akaunting, &m, p, &none);
        assert!(ak(Method::GET, "/1/auth/logout"));
        assert!(ak(Method::GET, "/12/Portal/LOGOUT/"));
        assert!(!ak(Method::POST, "/1/auth/logout"));
        assert!(!ak(Method::GET, "/x/auth/logout"));
        assert!(!ak(Method::GET, "/1/auth/logout/more"));
        assert!(!ak(Method::GET, "/auth/logout"));
    }
}
