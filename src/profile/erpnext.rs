//! ERPNext / Frappe: `cmd` on any path, `/api/method/login`, the other
//! credential-checking methods, and API credentials in `Authorization`.
//! Facts: `upstreams/erpnext.md` §0, §1 and "Observed on a live site" 2–7.

use http::{HeaderMap, Method, StatusCode, header};

use super::{Attempt, AttemptKind, Outcome, RequestView};
use crate::params::Params;

/// The failure body clients get for every refused login (Frappe's own message,
/// no traceback, so unknown user and wrong password are byte-identical).
pub(super) const FAILURE_BODY: &str =
    r#"{"message":"Invalid login credentials","exc_type":"AuthenticationError"}"#;

/// Methods that check a password (besides `login` itself) and the field naming the user.
const PASSWORD_METHODS: &[(&str, &str)] = &[
    (
        "frappe.integrations.doctype.ldap_settings.ldap_settings.login",
        "usr",
    ),
    ("frappe.integrations.oauth2.get_token", "username"),
    ("frappe.core.doctype.user.user.update_password", "user"),
];

/// Guest methods that reveal whether an account exists or send it mail.
const ORACLE_METHODS: &[&str] = &[
    "frappe.core.doctype.user.user.reset_password",
    "frappe.core.doctype.user.user.sign_up",
    "frappe.www.login.send_login_link",
    "frappe.www.login.login_via_key",
    "frappe.www.login.login_via_token",
];

/// Frappe parses form and JSON bodies on every method, and `cmd` in a body
/// overrides the path: any such body may be a login.
pub(super) fn needs_body(req: &RequestView<'_>) -> bool {
    crate::params::has_parameter_body(req.headers)
}

/// Without a body, only the query's `cmd`, the path or `Authorization` can make
/// a credential check. A query key can decode to `cmd` only if the raw query
/// holds `cmd` or a `%` escape (`+` decodes to a space), so this cannot miss one.
pub(super) fn may_be_attempt(req: &RequestView<'_>) -> bool {
    req.headers.contains_key(header::AUTHORIZATION)
        || req.path.starts_with("/api/method/")
        || req.path.starts_with("/api/v1/method/")
        || req
            .query
            .is_some_and(|q| q.contains("cmd") || q.contains('%'))
}

/// The RPC method a request runs: `cmd` wins over the path, as in Frappe.
fn rpc_method<'a>(req: &RequestView<'a>, params: &'a Params) -> Option<&'a str> {
    params.get("cmd").filter(|c| !c.is_empty()).or_else(|| {
        req.path
            .strip_prefix("/api/method/")
            .or_else(|| req.path.strip_prefix("/api/v1/method/"))
    })
}

pub(super) fn recognise(req: &RequestView<'_>, params: &Params) -> Option<Attempt> {
    if req.method == Method::OPTIONS {
        return None;
    }
    let cmd = params.get("cmd");
    if cmd == Some("login") || req.path == "/api/method/login" {
        let endpoint = if cmd == Some("login") {
            "cmd=login"
        } else {
            "/api/method/login"
        };
        let second =
            params.get("usr").is_none() && params.contains("otp") && params.contains("tmp_id");
        let kind = if second {
            AttemptKind::SecondFactor
        } else {
            AttemptKind::Password
        };
        return Some(Attempt::new(kind, params.get("usr"), endpoint));
    }
    if let Some(method) = rpc_method(req, params) {
        if let Some((name, field)) = PASSWORD_METHODS.iter().find(|(m, _)| *m == method) {
            return Some(Attempt::new(
                AttemptKind::Password,
                params.get(field),
                *name,
            ));
        }
        if ORACLE_METHODS.contains(&method) {
            return Some(Attempt::new(AttemptKind::Oracle, None, method));
        }
    }
    api_credential(req.headers)
}

/// `Authorization: token key:secret`, `Basic base64(key:secret)` or `Bearer …`.
fn api_credential(headers: &HeaderMap) -> Option<Attempt> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let key = match scheme.to_ascii_lowercase().as_str() {
        "token" => rest.split_once(':').map(|(k, _)| k.trim().to_owned()),
        "basic" => super::basic_user(headers),
        _ => None,
    };
    let user = key.map(|k| format!("api:{k}"));
    Some(Attempt::new(
        AttemptKind::ApiCredential,
        user.as_deref(),
        format!("Authorization: {scheme}"),
    ))
}

pub(super) fn response_needs_body(attempt: &Attempt, status: StatusCode) -> bool {
    matches!(
        attempt.kind,
        AttemptKind::Password | AttemptKind::SecondFactor
    ) && (status == StatusCode::OK || status.is_server_error())
}

pub(super) fn classify(
    attempt: &Attempt,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    if attempt.kind == AttemptKind::ApiCredential {
        return match status.as_u16() {
            401 => Outcome::Failure,
            200..=399 | 403 | 404 | 417 => Outcome::Success { user: None },
            _ => Outcome::Other,
        };
    }
    if attempt.kind == AttemptKind::Oracle {
        return Outcome::Other;
    }
    match status.as_u16() {
        200 => classify_ok(attempt, headers, body),
        401 => Outcome::Failure,
        429 => Outcome::AppLockout,
        500 if contains(body, b"SecurityException") => Outcome::AppLockout,
        _ => Outcome::Other,
    }
}

/// A 200 is a login only with a new `sid`; otherwise 2FA pending or an expired password.
fn classify_ok(attempt: &Attempt, headers: &HeaderMap, body: &[u8]) -> Outcome {
    if let Some(sid) = set_cookie(headers, "sid")
        && sid.len() == 56
        && sid.bytes().all(|b| b.is_ascii_hexdigit())
    {
        let user = set_cookie(headers, "user_id")
            .map(|u| {
                percent_encoding::percent_decode_str(&u)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .or_else(|| attempt.user.clone());
        return Outcome::Success {
            user: user.map(|u| super::fold_user(&u)),
        };
    }
    if contains(body, b"\"tmp_id\"") {
        Outcome::SecondFactorPending
    } else if contains(body, b"Password Reset") {
        Outcome::PasswordExpired
    } else {
        Outcome::Other
    }
}

/// The value of cookie `name` in the response's `Set-Cookie` headers (the last one wins, as in browsers).
pub(super) fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The new 56-hex `sid` a login answer sets, if any.
pub(super) fn new_sid(headers: &HeaderMap) -> Option<String> {
    set_cookie(headers, "sid")
        .filter(|sid| sid.len() == 56 && sid.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the path calls one of the `frappe.handler` functions `names` by RPC
/// (`/api/method/x`, `/api/v1/method/x`, `/api/v2/method/x`, or
/// `frappe.handler.x`), ASCII case ignored in the fixed words.
pub(super) fn rpc_is(path: &str, names: &[&str]) -> bool {
    // Runs on every request of a step-up site (logout detection): no allocation.
    let eq = |s: Option<&str>, want: &str| s.is_some_and(|s| s.eq_ignore_ascii_case(want));
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    if !eq(segs.next(), "api") {
        return false;
    }
    let method = match segs.next() {
        m if eq(m, "method") => segs.next(),
        v if eq(v, "v1") || eq(v, "v2") => segs
            .next()
            .filter(|m| m.eq_ignore_ascii_case("method"))
            .and(segs.next()),
        _ => None,
    };
    method
        .map(|m| m.strip_prefix("frappe.handler.").unwrap_or(m))
        .is_some_and(|m| names.contains(&m))
}

/// No `sid` cookie, or `sid=Guest`, and no `Authorization`: Frappe treats it as Guest.
pub(super) fn is_anonymous(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return false;
    }
    let mut sids = crate::login::device::cookie_values(headers, "sid");
    sids.all(|sid| sid.is_empty() || sid == "Guest")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn view<'a>(method: &'a Method, path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method,
            path,
            query: None,
            headers,
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        let q: String = pairs.iter().map(|(k, v)| format!("{k}={v}&")).collect();
        crate::params::frappe(Some(&q), &HeaderMap::new(), b"").unwrap()
    }

    #[test]
    fn logins_are_recognised_by_cmd_on_any_path_and_by_the_exact_path() {
        let h = HeaderMap::new();
        let get = Method::GET;
        let a = recognise(
            &view(&get, "/", &h),
            &params(&[("cmd", "login"), ("usr", "Administrator")]),
        )
        .unwrap();
        assert_eq!(
            (a.kind, a.user.as_deref()),
            (AttemptKind::Password, Some("administrator"))
        );
        assert!(recognise(&view(&get, "/api/method/login", &h), &params(&[])).is_some());
        assert!(recognise(&view(&get, "/api/method/login/", &h), &params(&[])).is_none());
        assert!(recognise(&view(&get, "/api/v2/method/login", &h), &params(&[])).is_none());
        let second = recognise(
            &view(&get, "/", &h),
            &params(&[("cmd", "login"), ("otp", "1"), ("tmp_id", "x")]),
        )
        .unwrap();
        assert_eq!(second.kind, AttemptKind::SecondFactor);
        let oracle = recognise(
            &view(
                &get,
                "/api/method/frappe.core.doctype.user.user.reset_password",
                &h,
            ),
            &params(&[]),
        )
        .unwrap();
        assert_eq!(oracle.kind, AttemptKind::Oracle);
    }

    #[test]
    fn api_credentials_name_the_key_never_the_secret() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("token k1:s3cr3t"),
        );
        let a = recognise(&view(&Method::GET, "/api/resource/Item", &h), &params(&[])).unwrap();
        assert_eq!(
            (a.kind, a.user.as_deref()),
            (AttemptKind::ApiCredential, Some("api:k1"))
        );
        assert!(!format!("{a:?}").contains("s3cr3t"));
    }

    #[test]
    fn outcomes_follow_the_observed_wire() {
        let a = Attempt::new(AttemptKind::Password, Some("alice"), "cmd=login");
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("sid=Guest; Path=/"),
        );
        assert_eq!(
            classify(&a, StatusCode::OK, &h, br#"{"tmp_id":"ab12"}"#),
            Outcome::SecondFactorPending
        );
        let sid = format!("sid={}; HttpOnly", "a".repeat(56));
        h.append(header::SET_COOKIE, HeaderValue::from_str(&sid).unwrap());
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("user_id=Alice%40example.com; Path=/"),
        );
        assert_eq!(
            classify(&a, StatusCode::OK, &h, b"{}"),
            Outcome::Success {
                user: Some("alice@example.com".into())
            }
        );
        assert_eq!(
            classify(&a, StatusCode::UNAUTHORIZED, &HeaderMap::new(), b""),
            Outcome::Failure
        );
        let locked = br#"{"exc_type":"SecurityException"}"#;
        assert_eq!(
            classify(
                &a,
                StatusCode::INTERNAL_SERVER_ERROR,
                &HeaderMap::new(),
                locked
            ),
            Outcome::AppLockout
        );
    }

    #[test]
    fn the_prefilter_never_hides_a_login_from_the_query() {
        let h = HeaderMap::new();
        let get = Method::GET;
        for (path, query) in [
            ("/", "cmd=login&usr=a&pwd=b"),
            ("/app", "c%6Dd=login&usr=a&pwd=b"),
            ("/", "%63md=login&usr=a"),
            ("/api/method/login", "usr=a&pwd=b"),
            (
                "/api/method/frappe.core.doctype.user.user.reset_password",
                "user=a",
            ),
        ] {
            let view = RequestView {
                method: &get,
                path,
                query: Some(query),
                headers: &h,
            };
            let params = crate::params::frappe(Some(query), &h, b"").unwrap();
            assert!(recognise(&view, &params).is_some(), "{path}?{query}");
            assert!(
                may_be_attempt(&view),
                "the prefilter skipped {path}?{query}"
            );
        }
        let plain = RequestView {
            method: &get,
            path: "/app/sales-invoice",
            query: Some("fields=name&limit=20"),
            headers: &h,
        };
        assert!(!may_be_attempt(&plain));
    }

    #[test]
    fn guest_sessions_are_anonymous() {
        let mut h = HeaderMap::new();
        assert!(is_anonymous(&h));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("sid=Guest; system_user=no"),
        );
        assert!(is_anonymous(&h));
        h.insert(header::COOKIE, HeaderValue::from_static("sid=abc123"));
        assert!(!is_anonymous(&h));
    }
}
