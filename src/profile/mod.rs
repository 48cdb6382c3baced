//! App profiles: what each app's login surface is and how it answers.
//!
//! Pure functions over a request view and the app's own reading of the
//! parameters (see [`crate::params`]), shared by the live path and `explain`.
//! The facts come from `upstreams/erpnext.md` and `upstreams/akaunting.md`.

pub mod admin;
mod akaunting;
mod erpnext;

use http::{HeaderMap, Method, StatusCode};

use crate::config::AppKind;
use crate::params::{ParamError, Params};

/// What kind of credential check a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    /// A user name and password (the login form, RPC logins, LDAP, OAuth password grant).
    Password,
    /// The second step of the app's own 2FA (one-time code, no password).
    SecondFactor,
    /// API credentials in `Authorization` (ERPNext `token key:secret`, Basic, Bearer).
    ApiCredential,
    /// An account oracle: password reset, sign-up, magic link.
    Oracle,
}

/// A recognised credential check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Which kind.
    pub kind: AttemptKind,
    /// The user or API key named, case-folded; `None` when the request names none.
    pub user: Option<String>,
    /// How it was recognised, for explain and the audit log (e.g. `cmd=login`).
    pub endpoint: String,
}

impl Attempt {
    fn new(kind: AttemptKind, user: Option<&str>, endpoint: impl Into<String>) -> Attempt {
        let user = user.map(str::trim).filter(|u| !u.is_empty()).map(fold_user);
        Attempt {
            kind,
            user,
            endpoint: endpoint.into(),
        }
    }
}

/// User names compare case-insensitively in both apps; length-capped so a
/// megabyte "user name" cannot become a megabyte key.
pub fn fold_user(user: &str) -> String {
    user.chars().take(256).collect::<String>().to_lowercase()
}

/// What the upstream said about an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The credentials were accepted; the ERP user, when the answer names it.
    Success {
        /// The user the app logged in, if known.
        user: Option<String>,
    },
    /// The credentials were refused.
    Failure,
    /// The password was right and the app's own second factor is pending.
    SecondFactorPending,
    /// The password was right but has expired.
    PasswordExpired,
    /// The app itself refused because of its own lockout or firewall.
    AppLockout,
    /// Anything else (an error page, a redirect): not evidence either way.
    Other,
}

/// The parts of a request a profile looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The method as sent.
    pub method: &'a Method,
    /// The decoded canonical path.
    pub path: &'a str,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// Whether the body must be read to recognise a login (ERPNext: any form or
/// JSON body may carry `cmd=login`; Akaunting: POSTs to the auth routes).
pub fn needs_body(app: AppKind, req: &RequestView<'_>) -> bool {
    match app {
        AppKind::Erpnext => erpnext::needs_body(req),
        AppKind::Akaunting => akaunting::needs_body(req),
        AppKind::Generic => false,
    }
}

/// Whether a request whose body is not read could be a credential check at
/// all: a cheap, conservative test that spares ordinary traffic the parameter
/// parse (when it says no, [`recognise`] would find nothing either).
pub fn may_be_attempt(app: AppKind, req: &RequestView<'_>) -> bool {
    match app {
        AppKind::Erpnext => erpnext::may_be_attempt(req),
        AppKind::Akaunting => akaunting::may_be_attempt(req),
        AppKind::Generic => false,
    }
}

/// The app's own view of the request parameters (`body` is empty when not read).
pub fn params(app: AppKind, req: &RequestView<'_>, body: &[u8]) -> Result<Params, ParamError> {
    match app {
        AppKind::Erpnext => crate::params::frappe(req.query, req.headers, body),
        AppKind::Akaunting => crate::params::laravel(req.query, req.headers, body, req.method),
        AppKind::Generic => Ok(Params::default()),
    }
}

/// Recognises a credential check.
pub fn recognise(
    app: AppKind,
    req: &RequestView<'_>,
    params: &Params,
) -> Result<Option<Attempt>, ParamError> {
    match app {
        AppKind::Erpnext => Ok(erpnext::recognise(req, params)),
        AppKind::Akaunting => akaunting::recognise(req, params),
        AppKind::Generic => Ok(None),
    }
}

/// Whether classifying this answer needs its body.
pub fn response_needs_body(app: AppKind, attempt: &Attempt, status: StatusCode) -> bool {
    match app {
        AppKind::Erpnext => erpnext::response_needs_body(attempt, status),
        AppKind::Akaunting => akaunting::response_needs_body(attempt, status),
        AppKind::Generic => false,
    }
}

/// Classifies the upstream's answer to an attempt.
pub fn classify(
    app: AppKind,
    attempt: &Attempt,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    match app {
        AppKind::Erpnext => erpnext::classify(attempt, status, headers, body),
        AppKind::Akaunting => akaunting::classify(attempt, status, body),
        AppKind::Generic => Outcome::Other,
    }
}

/// The one failure answer clients see for a refused credential check, whatever
/// the reason upstream (unknown user, wrong password, disabled account): status
/// and body exactly as the app's own front end expects a failure to look.
pub fn uniform_failure(app: AppKind, attempt: &Attempt) -> Option<(StatusCode, &'static str)> {
    match (app, attempt.kind) {
        (
            AppKind::Erpnext,
            AttemptKind::Password | AttemptKind::SecondFactor | AttemptKind::ApiCredential,
        ) => Some((StatusCode::UNAUTHORIZED, erpnext::FAILURE_BODY)),
        (AppKind::Akaunting, AttemptKind::Password) => {
            Some((StatusCode::OK, akaunting::FAILURE_BODY))
        }
        _ => None,
    }
}

/// The new ERPNext session id (a 56-hex `sid`) a login answer sets, if any.
pub fn erpnext_new_sid(headers: &HeaderMap) -> Option<String> {
    erpnext::new_sid(headers)
}

/// Whether an ERPNext path calls one of the `frappe.handler` functions `names`.
pub fn erpnext_rpc_is(path: &str, names: &[&str]) -> bool {
    erpnext::rpc_is(path, names)
}

/// Whether an ERPNext answer to an anonymous request must have its traceback
/// removed (Frappe sends `exc`/`exception` to anyone by default).
pub fn scrub_traceback(app: AppKind, anonymous: bool, status: StatusCode) -> bool {
    app == AppKind::Erpnext && anonymous && (status.is_client_error() || status.is_server_error())
}

/// Whether a request carries no authenticated ERP session or credential.
pub fn is_anonymous(app: AppKind, headers: &HeaderMap) -> bool {
    match app {
        AppKind::Erpnext => erpnext::is_anonymous(headers),
        _ => false,
    }
}

/// Removes traceback fields from a JSON error body. `Ok(None)`: there were
/// none, keep the body as it is; `Err(())`: not a JSON object, so nothing can
/// be shown to be free of a traceback.
#[allow(clippy::result_unit_err)]
pub fn strip_traceback(body: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(|_| ())?;
    let obj = value.as_object_mut().ok_or(())?;
    let mut removed = false;
    for key in ["exc", "exception", "_debug_messages", "traceback"] {
        removed |= obj.remove(key).is_some();
    }
    match removed {
        true => serde_json::to_vec(&value).map(Some).map_err(|_| ()),
        false => Ok(None),
    }
}

/// The user name in an HTTP Basic `Authorization` header.
pub fn basic_user(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8_lossy(&decoded);
    Some(text.split_once(':').map_or(&*text, |(u, _)| u).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracebacks_are_stripped_and_the_rest_kept() {
        let body = br#"{"exc_type":"PermissionError","exc":"[\"Traceback...\"]","exception":"x","_server_messages":"[]"}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&strip_traceback(body).unwrap().unwrap()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"exc_type":"PermissionError","_server_messages":"[]"})
        );
        assert!(strip_traceback(b"<html>").is_err());
        let clean = br#"{"message":"x"}"#;
        assert_eq!(
            strip_traceback(clean),
            Ok(None),
            "a clean body is kept byte for byte"
        );
    }

    #[test]
    fn users_fold_case_and_length() {
        assert_eq!(fold_user("Administrator"), "administrator");
        assert_eq!(fold_user(&"A".repeat(10_000)).len(), 256);
    }
}
