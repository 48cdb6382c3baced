//! Akaunting 3.x: `POST /auth/login` answered with HTTP 200 either way (told
//! apart by `success` in the JSON), the guest auth routes as account oracles, and
//! HTTP Basic on `/api/*`. Facts: `upstreams/akaunting.md` §1, §4, §5 and "What
//! a gateway must match" 1–5.

use http::{Method, StatusCode};

use super::{Attempt, AttemptKind, Outcome, RequestView};
use crate::params::{ParamError, Params};

/// The failure body of Akaunting 3.2+, for every refused login, so a disabled
/// account (which the app rotates the session for) looks like any other failure.
pub(super) const FAILURE_BODY: &str = r#"{"status":null,"success":false,"error":true,"message":"These credentials do not match our records.","data":null,"redirect":null}"#;

const ORACLE_PATHS: &[&str] = &["/auth/forgot", "/auth/reset", "/auth/register"];

/// The auth routes are POSTs; their bodies name the user.
pub(super) fn needs_body(req: &RequestView<'_>) -> bool {
    req.method == Method::POST && (req.path == "/auth/login" || ORACLE_PATHS.contains(&req.path))
}

/// Without a body (the auth routes' POSTs are always read), only API
/// credentials on `/api/*` are credential checks.
pub(super) fn may_be_attempt(req: &RequestView<'_>) -> bool {
    req.path.starts_with("/api/") && req.headers.contains_key(http::header::AUTHORIZATION)
}

pub(super) fn recognise(
    req: &RequestView<'_>,
    params: &Params,
) -> Result<Option<Attempt>, ParamError> {
    // Laravel routes by the effective method: a POST with `_method=PATCH` is not the login route.
    let method = crate::params::laravel_method(req.method, params)?;
    if method == Method::POST && req.path == "/auth/login" {
        return Ok(Some(Attempt::new(
            AttemptKind::Password,
            params.get("email"),
            "POST /auth/login",
        )));
    }
    if method == Method::POST && ORACLE_PATHS.contains(&req.path) {
        return Ok(Some(Attempt::new(
            AttemptKind::Oracle,
            None,
            format!("POST {}", req.path),
        )));
    }
    if req.path.starts_with("/api/") && req.headers.contains_key(http::header::AUTHORIZATION) {
        let user = super::basic_user(req.headers);
        return Ok(Some(Attempt::new(
            AttemptKind::ApiCredential,
            user.as_deref(),
            "Authorization on /api/*",
        )));
    }
    Ok(None)
}

pub(super) fn response_needs_body(attempt: &Attempt, status: StatusCode) -> bool {
    attempt.kind == AttemptKind::Password && status == StatusCode::OK
}

pub(super) fn classify(attempt: &Attempt, status: StatusCode, body: &[u8]) -> Outcome {
    match attempt.kind {
        AttemptKind::ApiCredential => match status.as_u16() {
            401 => Outcome::Failure,
            200..=299 | 403 | 404 | 422 | 429 => Outcome::Success {
                user: attempt.user.clone(),
            },
            _ => Outcome::Other,
        },
        AttemptKind::Password => match status.as_u16() {
            200 => classify_json(attempt, body),
            // Validation (422) and CSRF (419) failures are failed or suspicious attempts.
            419 | 422 => Outcome::Failure,
            403 => Outcome::AppLockout,
            _ => Outcome::Other,
        },
        AttemptKind::SecondFactor | AttemptKind::Oracle => Outcome::Other,
    }
}

/// A rotated session cookie alone is not a success: disabled users get one too.
fn classify_json(attempt: &Attempt, body: &[u8]) -> Outcome {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Outcome::Other;
    };
    match value.get("success").and_then(serde_json::Value::as_bool) {
        Some(true) => Outcome::Success {
            user: attempt.user.clone(),
        },
        Some(false) => Outcome::Failure,
        None => Outcome::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn http_200_is_told_apart_by_the_body() {
        let a = Attempt::new(
            AttemptKind::Password,
            Some("Admin@Company.com"),
            "POST /auth/login",
        );
        assert_eq!(a.user.as_deref(), Some("admin@company.com"));
        let ok = br#"{"status":null,"success":true,"error":false,"redirect":"https://x/1"}"#;
        assert!(matches!(
            classify(&a, StatusCode::OK, ok),
            Outcome::Success { .. }
        ));
        assert_eq!(
            classify(&a, StatusCode::OK, FAILURE_BODY.as_bytes()),
            Outcome::Failure
        );
        assert_eq!(
            classify(&a, StatusCode::UNPROCESSABLE_ENTITY, b""),
            Outcome::Failure
        );
        assert_eq!(classify(&a, StatusCode::FOUND, b""), Outcome::Other);
    }

    #[test]
    fn only_the_effective_post_is_the_login_route() {
        let h = HeaderMap::new();
        let view = RequestView {
            method: &Method::POST,
            path: "/auth/login",
            query: None,
            headers: &h,
        };
        let body = b"email=a%40b.c&password=x&_method=PATCH";
        let mut hh = HeaderMap::new();
        hh.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let params = crate::params::laravel(None, &hh, body, &Method::POST).unwrap();
        assert_eq!(recognise(&view, &params).unwrap(), None);
    }
}
