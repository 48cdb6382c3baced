//! Denials: every reason erpguard refuses a request is a variant of [`Denial`],
//! and [`rescue`] is the one place a denial becomes a response.
//!
//! The client gets a status and a short generic body (plus a request id to quote
//! to the operator); the detail goes to the log and the audit log, which see the
//! typed value.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{self, ResponseBody};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The request target or a header could not be read unambiguously.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A method erpguard never forwards (`CONNECT`, `TRACE`).
    #[error("method {0} is not forwarded")]
    MethodNotAllowed(String),
    /// No site owns the requested host.
    #[error("no site for host {0:?}")]
    UnknownHost(String),
    /// The TLS server name and the Host header disagree.
    #[error("TLS server name {sni:?} does not match host {host:?}")]
    Misdirected {
        /// The SNI the connection was made for.
        sni: String,
        /// The host the request names.
        host: String,
    },
    /// The client address is outside the site's `allow` list.
    #[error("client address is not in the site's allow list")]
    SiteAllowlist,
    /// A rule with `action = "deny"` matched.
    #[error("denied by {rule}")]
    RuleDenied {
        /// The rule's name.
        rule: String,
    },
    /// A rule matched whose `allow` list does not contain the client.
    #[error("client address is not in the allow list of {rule}")]
    RuleAllowlist {
        /// The rule's name.
        rule: String,
    },
    /// The body is larger than the site's `max_body`.
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Too many login attempts from this client for the site's `per_ip` rate.
    #[error("login rate limit exceeded; retry after {retry_after:?}")]
    RateLimited {
        /// How long until the next attempt is allowed.
        retry_after: std::time::Duration,
    },
    /// The account (or this client for it) is locked after repeated failures.
    #[error("locked out after repeated failures; retry after {retry_after:?}")]
    LockedOut {
        /// How long until the lock ends.
        retry_after: std::time::Duration,
    },
    /// The state store did not answer: logins fail closed.
    #[error("state store unavailable: {0}")]
    StoreUnavailable(String),
    /// The upstream could not be connected to.
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    /// The upstream was connected but broke the exchange (closed early, sent garbage).
    #[error("upstream broke the exchange: {0}")]
    UpstreamProtocol(String),
    /// The upstream did not answer in time.
    #[error("upstream did not send response headers within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    /// An administrative request without a valid step-up grant.
    #[error("step-up required: {reason}")]
    StepUpRequired {
        /// Why the request is administrative (a profile rule or a config rule).
        reason: String,
        /// The challenge page, with the way back.
        url: String,
        /// The ERP user asked, when the session is known.
        user: Option<String>,
    },
    /// An administrative request from a session erpguard cannot tie to an ERP user.
    #[error("no known ERP user for this session: {why}")]
    LoginRequired {
        /// What was missing or did not match.
        why: String,
        /// The app's login page, with the way back.
        url: String,
    },
    /// Step-up is required and the user has no TOTP enrolment (policy "deny").
    #[error("user has no TOTP enrolment and step_up.unenrolled is \"deny\" ({reason})")]
    StepUpNotEnrolled {
        /// Why the request is administrative.
        reason: String,
        /// The ERP user.
        user: String,
    },
    /// Step-up is locked for the user after repeated wrong codes.
    #[error("step-up locked after repeated wrong codes; retry after {retry_after:?}")]
    StepUpLocked {
        /// How long until the lock ends.
        retry_after: std::time::Duration,
        /// The ERP user.
        user: String,
    },
    /// A presented erpguard token is malformed, unknown, wrong, revoked or expired.
    #[error("invalid API token: {0}")]
    TokenInvalid(String),
    /// A valid token may not make this request (networks, scope, credential).
    #[error("API token refused: {reason}")]
    TokenForbidden {
        /// Why, for the log and the audit log.
        reason: String,
        /// The scope the request needs, told to the client (it names only
        /// what this request asked for).
        missing: Option<String>,
    },
    /// A token over its own rate.
    #[error("API token over its rate; retry after {retry_after:?}")]
    TokenRateLimited {
        /// How long to wait.
        retry_after: std::time::Duration,
    },
    /// The client sent the app's own API credentials; the site wants tokens.
    #[error("direct upstream API credentials are refused (api.allow_direct_credentials = false)")]
    DirectCredentials,
    /// A path under erpguard's reserved prefix that serves nothing.
    #[error("no such erpguard page")]
    NotFound,
}

impl Denial {
    /// The status the client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            Denial::BadRequest(_) => StatusCode::BAD_REQUEST,
            Denial::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Denial::UnknownHost(_) => StatusCode::NOT_FOUND,
            Denial::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            Denial::SiteAllowlist | Denial::RuleDenied { .. } | Denial::RuleAllowlist { .. } => {
                StatusCode::FORBIDDEN
            }
            Denial::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Denial::RateLimited { .. } | Denial::LockedOut { .. } => StatusCode::TOO_MANY_REQUESTS,
            Denial::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Denial::UpstreamUnavailable(_) | Denial::UpstreamProtocol(_) => StatusCode::BAD_GATEWAY,
            Denial::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Denial::StepUpRequired { .. } | Denial::LoginRequired { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Denial::StepUpNotEnrolled { .. } | Denial::TokenForbidden { .. } => {
                StatusCode::FORBIDDEN
            }
            Denial::TokenInvalid(_) | Denial::DirectCredentials => StatusCode::UNAUTHORIZED,
            Denial::TokenRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Denial::StepUpLocked { .. } => StatusCode::TOO_MANY_REQUESTS,
            Denial::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// The `decision` label for metrics and logs.
    pub fn decision(&self) -> &'static str {
        match self {
            Denial::BadRequest(_) | Denial::MethodNotAllowed(_) | Denial::BodyTooLarge { .. } => {
                "invalid"
            }
            Denial::UnknownHost(_) | Denial::Misdirected { .. } => "misdirected",
            Denial::RateLimited { .. } => "rate_limited",
            Denial::LockedOut { .. } => "locked_out",
            Denial::StoreUnavailable(_) => "store_error",
            Denial::SiteAllowlist | Denial::RuleDenied { .. } | Denial::RuleAllowlist { .. } => {
                "deny"
            }
            Denial::UpstreamUnavailable(_)
            | Denial::UpstreamProtocol(_)
            | Denial::UpstreamTimeout(_) => "upstream_error",
            Denial::StepUpRequired { .. } => "step_up",
            Denial::LoginRequired { .. } => "login_required",
            Denial::StepUpNotEnrolled { .. } => "deny",
            Denial::StepUpLocked { .. } => "locked_out",
            Denial::NotFound => "not_found",
            Denial::TokenInvalid(_) | Denial::DirectCredentials => "unauthenticated",
            Denial::TokenForbidden { .. } => "deny",
            Denial::TokenRateLimited { .. } => "rate_limited",
        }
    }

    /// The `kind` label of `erpguard_upstream_errors_total`, for upstream failures.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            Denial::UpstreamUnavailable(_) => Some("connect"),
            Denial::UpstreamProtocol(_) => Some("protocol"),
            Denial::UpstreamTimeout(_) => Some("timeout"),
            _ => None,
        }
    }

    /// The audit event this denial writes, if it is a security event.
    ///
    /// Upstream failures are operational, not security events: they go to the
    /// log and metrics only.
    pub fn audit_event(&self) -> Option<&'static str> {
        match self {
            Denial::SiteAllowlist | Denial::RuleAllowlist { .. } => Some("ip_denied"),
            Denial::RuleDenied { .. } => Some("rule_denied"),
            Denial::BadRequest(_) | Denial::MethodNotAllowed(_) => Some("request_rejected"),
            Denial::UnknownHost(_) | Denial::Misdirected { .. } => Some("host_rejected"),
            Denial::BodyTooLarge { .. } => Some("body_too_large"),
            Denial::RateLimited { .. } => Some("login_rate_limited"),
            Denial::LockedOut { .. } => Some("login_blocked"),
            Denial::StoreUnavailable(_) => Some("store_unavailable"),
            Denial::StepUpRequired { .. } => Some("step_up_challenge"),
            Denial::LoginRequired { .. } => Some("step_up_no_session"),
            Denial::StepUpNotEnrolled { .. } => Some("step_up_not_enrolled"),
            Denial::StepUpLocked { .. } => Some("step_up_blocked"),
            // Token denials are audited where they happen, with the token id.
            Denial::TokenInvalid(_) | Denial::TokenForbidden { .. } => None,
            Denial::TokenRateLimited { .. } => None,
            Denial::DirectCredentials => Some("direct_credentials_refused"),
            Denial::UpstreamUnavailable(_)
            | Denial::UpstreamProtocol(_)
            | Denial::UpstreamTimeout(_)
            | Denial::NotFound => None,
        }
    }

    /// Whether this is a token denial (always answered in JSON).
    pub fn is_token(&self) -> bool {
        matches!(
            self,
            Denial::TokenInvalid(_)
                | Denial::TokenForbidden { .. }
                | Denial::TokenRateLimited { .. }
                | Denial::DirectCredentials
        )
    }

    /// The ERP user a step-up denial concerns, for the audit log.
    pub fn user(&self) -> Option<&str> {
        match self {
            Denial::StepUpRequired { user, .. } => user.as_deref(),
            Denial::StepUpNotEnrolled { user, .. } | Denial::StepUpLocked { user, .. } => {
                Some(user)
            }
            _ => None,
        }
    }

    /// The short generic text shown to clients: never the detail.
    fn public_message(&self) -> &'static str {
        match self {
            Denial::BadRequest(_) => "The request could not be understood.",
            Denial::MethodNotAllowed(_) => "This method is not allowed.",
            Denial::UnknownHost(_) => "There is no site at this address.",
            Denial::Misdirected { .. } => "This connection cannot serve this site.",
            Denial::SiteAllowlist | Denial::RuleDenied { .. } | Denial::RuleAllowlist { .. } => {
                "Access to this page is not permitted."
            }
            Denial::BodyTooLarge { .. } => "The request body is too large.",
            Denial::RateLimited { .. } | Denial::LockedOut { .. } => {
                "Too many attempts. Please wait and try again later."
            }
            Denial::StoreUnavailable(_) => {
                "Sign-in is temporarily unavailable. Please try again shortly."
            }
            Denial::UpstreamUnavailable(_) | Denial::UpstreamProtocol(_) => {
                "The application behind this gateway is not reachable right now."
            }
            Denial::UpstreamTimeout(_) => {
                "The application behind this gateway did not answer in time."
            }
            Denial::StepUpRequired { .. } => {
                "This action needs a fresh code from your authenticator app."
            }
            Denial::LoginRequired { .. } => "Please sign in again to continue.",
            Denial::StepUpNotEnrolled { .. } => {
                "This administrative action needs a second factor, and your account has none \
                 yet. Ask an administrator to enrol you for step-up codes."
            }
            Denial::StepUpLocked { .. } => {
                "Too many wrong codes. Administrative actions are locked for a while; \
                 ask an administrator if this was not you."
            }
            Denial::NotFound => "There is no such page.",
            Denial::TokenInvalid(_) => "The API token is not valid.",
            Denial::TokenForbidden { .. } => "The API token does not allow this request.",
            Denial::TokenRateLimited { .. } => "The API token is over its rate. Retry later.",
            Denial::DirectCredentials => {
                "Send an erpguard API token (Authorization: Bearer eg_...), not the application's own credentials."
            }
        }
    }
}

/// Whether a client prefers JSON errors (API and XHR callers) over an HTML page.
pub fn wants_json(headers: &http::HeaderMap, path: &str) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let xhr = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"xmlhttprequest"));
    path.starts_with("/api/")
        || xhr
        || headers.contains_key(header::AUTHORIZATION)
        || (accept.contains("json") && !accept.starts_with("text/html"))
}

/// Turns a denial into the response the client sees.
///
/// Step-up and sign-in demands send browsers (`json` false) to the page with
/// a 303; other callers get 401 JSON naming that page.
pub fn rescue(denial: &Denial, request_id: &str, json: bool) -> Response<ResponseBody> {
    if let Denial::StepUpRequired { url, .. } | Denial::LoginRequired { url, .. } = denial {
        return demand(denial, url, request_id, json);
    }
    let json = json || denial.is_token();
    let status = denial.status();
    let (content_type, text) = if json {
        let mut body = json_body(status, denial.public_message(), request_id);
        if let Denial::TokenForbidden {
            missing: Some(missing),
            ..
        } = denial
        {
            body = serde_json::json!({
                "error": "token_scope",
                "missing_scope": missing,
                "message": denial.public_message(),
                "request_id": request_id,
            })
            .to_string();
        }
        ("application/json", body)
    } else {
        (
            "text/html; charset=utf-8",
            html_body(status, denial.public_message(), request_id),
        )
    };
    let mut resp = Response::new(body::full(Bytes::from(text)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Denial::RateLimited { retry_after }
    | Denial::LockedOut { retry_after }
    | Denial::StepUpLocked { retry_after, .. }
    | Denial::TokenRateLimited { retry_after } = denial
    {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after.as_secs().max(1)),
        );
    }
    if matches!(denial, Denial::TokenInvalid(_) | Denial::DirectCredentials) {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"erpguard\""),
        );
    }
    if matches!(denial, Denial::BadRequest(_) | Denial::Misdirected { .. }) {
        // After a framing or routing doubt, do not reuse the connection.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A demand to step up or sign in: 303 to `url` for browsers, 401 JSON otherwise.
fn demand(denial: &Denial, url: &str, request_id: &str, json: bool) -> Response<ResponseBody> {
    let location = HeaderValue::from_str(url).unwrap_or(HeaderValue::from_static("/"));
    let mut resp = if json {
        let error = match denial {
            Denial::StepUpRequired { .. } => "step_up_required",
            _ => "login_required",
        };
        let text = serde_json::json!({
            "error": error,
            "url": url,
            "message": denial.public_message(),
            "request_id": request_id,
        })
        .to_string();
        let mut resp = Response::new(body::full(Bytes::from(text)));
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    } else {
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::SEE_OTHER;
        resp.headers_mut().insert(header::LOCATION, location);
        resp
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json_body(status: StatusCode, message: &str, request_id: &str) -> String {
    let error = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace(' ', "_");
    serde_json::json!({ "error": error, "message": message, "request_id": request_id }).to_string()
}

/// A minimal self-contained page; `request_id` is hex and `message` is ours, so
/// nothing here needs escaping.
fn html_body(status: StatusCode, message: &str, request_id: &str) -> String {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("Error");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{code} {reason}</title></head><body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem\">\
<h1>{code} {reason}</h1><p>{message}</p><p><small>Reference: {request_id}</small></p></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_never_show_their_detail() {
        let d = Denial::RuleDenied {
            rule: "secret-rule-name".into(),
        };
        let resp = rescue(&d, "abc123", false);
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let d = Denial::UpstreamUnavailable("connection refused 10.1.2.3:8000".into());
        assert_eq!(d.status(), StatusCode::BAD_GATEWAY);
        let page = html_body(d.status(), d.public_message(), "r1");
        assert!(!page.contains("10.1.2.3"));
    }

    #[test]
    fn api_and_xhr_callers_get_json() {
        let mut h = http::HeaderMap::new();
        assert!(wants_json(&h, "/api/resource/User"));
        assert!(!wants_json(&h, "/app/user"));
        h.insert(
            "x-requested-with",
            HeaderValue::from_static("XMLHttpRequest"),
        );
        assert!(wants_json(&h, "/app/user"));
    }
}
