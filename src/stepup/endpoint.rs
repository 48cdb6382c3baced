//! The pages erpguard serves under [`super::PREFIX`]: the step-up challenge
//! and the one-time enrolment link. Nothing under the prefix is forwarded.
//!
//! Both forms are protected against cross-site posting three ways: the
//! session cookie is `SameSite=Lax` (not sent on a cross-site POST), the form
//! carries a token MACed over the session, and `Origin`/`Sec-Fetch-Site`, when
//! the browser sends them, must say same-origin.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use super::verify::{self, Refused};
use super::{StepUpCx, cookie, page};
use crate::body::{self, ResponseBody};
use crate::config::Unenrolled;
use crate::error::Denial;
use crate::params::Params;
use crate::store::{Binding, Key};
use crate::totp;

/// Largest form body the pages accept.
pub const MAX_FORM: u64 = 8 << 10;
/// How long a rendered form stays valid.
const CSRF_TTL: u64 = 3600;
const CSRF_DOMAIN: &str = "erpguard step-up form v1";
/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// One request to a reserved path.
pub struct PageRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The decoded canonical path.
    pub path: &'a str,
    /// The raw query.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The canonical `host[:port]` the request was for.
    pub authority: &'a str,
    /// The form body (empty for GET).
    pub body: Bytes,
}

/// Serves a reserved path.
pub async fn serve(
    cx: &StepUpCx<'_>,
    req: PageRequest<'_>,
) -> Result<Response<ResponseBody>, Denial> {
    let path = req.path.to_ascii_lowercase();
    match (req.method, path.as_str()) {
        (&Method::GET | &Method::HEAD, super::CHALLENGE_PATH) => challenge_page(cx, &req).await,
        (&Method::POST, super::CHALLENGE_PATH) => challenge_post(cx, &req).await,
        (&Method::GET | &Method::HEAD, super::ENROL_PATH) => enrol_page(cx, &req).await,
        (&Method::POST, super::ENROL_PATH) => enrol_post(cx, &req).await,
        _ => Err(Denial::NotFound),
    }
}

/// The first value of `name` in a query string or form body.
fn param(encoded: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(encoded)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    param(query.unwrap_or("").as_bytes(), name)
}

/// The session, or a demand to log in that comes back to `back`.
async fn session_or_login(
    cx: &StepUpCx<'_>,
    headers: &HeaderMap,
    back: &str,
) -> Result<Binding, Denial> {
    match super::session(cx, headers, &Params::default()).await? {
        Ok(b) => Ok(b),
        Err(why) => Err(Denial::LoginRequired {
            why: why.to_owned(),
            url: super::login_url(cx.site.app, back),
        }),
    }
}

async fn challenge_page(
    cx: &StepUpCx<'_>,
    req: &PageRequest<'_>,
) -> Result<Response<ResponseBody>, Denial> {
    let back = super::safe_return(query_param(req.query, "return").as_deref());
    let binding = session_or_login(cx, req.headers, &back).await?;
    if let Some(resp) = not_ready(cx, &binding, &back).await? {
        return Ok(resp);
    }
    let csrf = csrf_token(cx, &binding, SystemTime::now());
    Ok(page::respond(
        StatusCode::OK,
        "Confirm it is you",
        &page::challenge(&binding.user, &csrf, &back, None),
    ))
}

/// A page instead of the form when the user cannot step up now: not
/// enrolled (or, under the "allow" policy, no need), or locked.
async fn not_ready(
    cx: &StepUpCx<'_>,
    binding: &Binding,
    back: &str,
) -> Result<Option<Response<ResponseBody>>, Denial> {
    let (site, user) = (cx.site.name.clone(), binding.user.clone());
    let enrolled = cx
        .store(move |s| s.enrolment(&site, &user))
        .await?
        .is_some_and(|e| e.active);
    if !enrolled {
        return match cx.site.step_up.unenrolled {
            Unenrolled::Deny => Err(not_enrolled(binding)),
            Unenrolled::Allow => Ok(Some(redirect(back, None))),
        };
    }
    let key = Key::step_up(&cx.site.name, &binding.user);
    let now = SystemTime::now();
    match cx.store(move |s| s.lock(&key, now)).await? {
        Some(lock) => Err(locked(
            binding,
            lock.until.duration_since(now).unwrap_or_default(),
        )),
        None => Ok(None),
    }
}

async fn challenge_post(
    cx: &StepUpCx<'_>,
    req: &PageRequest<'_>,
) -> Result<Response<ResponseBody>, Denial> {
    same_origin(req)?;
    let back = super::safe_return(param(&req.body, "return").as_deref());
    let binding = session_or_login(cx, req.headers, &back).await?;
    if !csrf_ok(cx, &binding, param(&req.body, "csrf").as_deref()) {
        return Ok(expired_form(&back));
    }
    let code = param(&req.body, "code").unwrap_or_default();
    let now = SystemTime::now();
    let error = match verify::check(cx, &binding.user, &code, now).await? {
        Ok(_) => {
            let grant = super::make_grant(cx, &binding).await?;
            return Ok(redirect(&back, Some(grant)));
        }
        Err(Refused::Wrong) => "That code did not work. Type the code your app shows now.",
        Err(Refused::Replayed) => "That code was already used. Wait for the next one.",
        Err(Refused::Locked(left)) => return Err(locked(&binding, left)),
        Err(Refused::NotEnrolled) => return Err(not_enrolled(&binding)),
    };
    let csrf = csrf_token(cx, &binding, now);
    Ok(page::respond(
        StatusCode::UNAUTHORIZED,
        "Confirm it is you",
        &page::challenge(&binding.user, &csrf, &back, Some(error)),
    ))
}

/// The enrolment link: only for the user it names, signed in to the ERP.
async fn enrol_page(
    cx: &StepUpCx<'_>,
    req: &PageRequest<'_>,
) -> Result<Response<ResponseBody>, Denial> {
    let token = query_param(req.query, "token").unwrap_or_default();
    let back = format!("{}?token={}", super::ENROL_PATH, super::encode(&token));
    let Some((binding, secret)) = enrol_state(cx, req.headers, &token, &back).await? else {
        return Ok(dead_link());
    };
    let csrf = csrf_token(cx, &binding, SystemTime::now());
    Ok(enrol_form(cx, &binding, &secret, &csrf, &token, None))
}

fn enrol_form(
    cx: &StepUpCx<'_>,
    binding: &Binding,
    secret: &totp::Secret,
    csrf: &str,
    token: &str,
    error: Option<&str>,
) -> Response<ResponseBody> {
    let uri = totp::otpauth_uri(
        secret,
        &cx.site.step_up.issuer,
        &binding.user,
        &cx.site.step_up.totp,
    );
    let svg = totp::qr_svg(&uri).unwrap_or_default();
    let status = match error {
        Some(_) => StatusCode::UNAUTHORIZED,
        None => StatusCode::OK,
    };
    page::respond(
        status,
        "Set up step-up codes",
        &page::enrol(&binding.user, &svg, &secret.base32(), csrf, token, error),
    )
}

/// The link's user, signed in here, and the pending secret; `None` for a
/// link that is unknown, used or expired, or whose enrolment is gone.
async fn enrol_state(
    cx: &StepUpCx<'_>,
    headers: &HeaderMap,
    token: &str,
    back: &str,
) -> Result<Option<(Binding, totp::Secret)>, Denial> {
    let id = cookie::stored(cx.key, "link", token);
    let now = SystemTime::now();
    let Some(link) = cx
        .store(move |s| s.link(&id, now))
        .await?
        .filter(|l| l.site == cx.site.name)
    else {
        return Ok(None);
    };
    let binding = session_or_login(cx, headers, back).await?;
    if binding.user != link.user {
        return Err(Denial::LoginRequired {
            why: "an enrolment link opened by another user".into(),
            url: super::login_url(cx.site.app, back),
        });
    }
    let (site, user) = (cx.site.name.clone(), link.user.clone());
    let Some(pending) = cx
        .store(move |s| s.enrolment(&site, &user))
        .await?
        .filter(|e| !e.active)
    else {
        return Ok(None);
    };
    let secret = totp::open(
        &verify::seal_key(cx.key),
        &verify::seal_aad(&cx.site.name, &link.user),
        &pending.sealed,
    )
    .map_err(|_| Denial::StoreUnavailable("pending enrolment does not open".into()))?;
    Ok(Some((binding, secret)))
}

async fn enrol_post(
    cx: &StepUpCx<'_>,
    req: &PageRequest<'_>,
) -> Result<Response<ResponseBody>, Denial> {
    same_origin(req)?;
    let token = param(&req.body, "token").unwrap_or_default();
    let back = format!("{}?token={}", super::ENROL_PATH, super::encode(&token));
    let Some((binding, secret)) = enrol_state(cx, req.headers, &token, &back).await? else {
        return Ok(dead_link());
    };
    if !csrf_ok(cx, &binding, param(&req.body, "csrf").as_deref()) {
        return Ok(expired_form(&back));
    }
    let code = param(&req.body, "code").unwrap_or_default();
    let now = SystemTime::now();
    let key = Key::step_up(&cx.site.name, &binding.user);
    if let Some(lock) = cx.store(move |s| s.lock(&key, now)).await? {
        return Err(locked(
            &binding,
            lock.until.duration_since(now).unwrap_or_default(),
        ));
    }
    let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let Ok(step) = totp::verify(&secret, &code, unix, &cx.site.step_up.totp, None) else {
        let key = Key::step_up(&cx.site.name, &binding.user);
        verify::count_refusal(cx, &binding.user, key, Refused::Wrong, now).await?;
        let csrf = csrf_token(cx, &binding, now);
        let error = "That code did not work. Check the time on your phone and try the newest code.";
        return Ok(enrol_form(
            cx,
            &binding,
            &secret,
            &csrf,
            &token,
            Some(error),
        ));
    };
    let codes = totp::recovery_codes(RECOVERY_CODES);
    let rkey = verify::recovery_key(cx.key);
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| totp::hash_recovery(&rkey, c))
        .collect();
    let (site, user) = (cx.site.name.clone(), binding.user.clone());
    let link_id = cookie::stored(cx.key, "link", &token);
    let activated = cx
        .store(move |s| {
            let done = s.activate_enrolment(&site, &user, step, now, &hashes)?;
            s.take_link(&link_id)?;
            Ok(done)
        })
        .await?;
    if !activated {
        return Ok(dead_link());
    }
    cx.audit.record(
        cx.event("totp_enrolled")
            .user(binding.user.clone())
            .reason("enrolment link"),
    );
    Ok(page::respond(
        StatusCode::OK,
        "Step-up codes are set up",
        &page::recovery_codes(&codes),
    ))
}

/// Refuses a cross-site post, the way Go's `http.CrossOriginProtection`
/// decides: `Sec-Fetch-Site` when the browser sends it (`same-origin` or
/// `none` pass); otherwise `Origin`, when sent, must be this site over HTTPS.
/// (Chromium sends `Origin: null` on some same-origin form posts, so
/// `Sec-Fetch-Site` has to come first.) The form token is checked as well.
fn same_origin(req: &PageRequest<'_>) -> Result<(), Denial> {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            other => Err(Denial::BadRequest(format!(
                "form post with Sec-Fetch-Site {other:?}"
            ))),
        };
    }
    match header("origin") {
        Some(origin) if !origin.eq_ignore_ascii_case(&format!("https://{}", req.authority)) => Err(
            Denial::BadRequest(format!("cross-origin form post from {origin:?}")),
        ),
        _ => Ok(()),
    }
}

fn csrf_token(cx: &StepUpCx<'_>, binding: &Binding, now: SystemTime) -> String {
    let t = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_string();
    let tag = cx
        .key
        .mac(CSRF_DOMAIN, &[binding.id.as_bytes(), t.as_bytes()]);
    format!("{t}.{}", URL_SAFE_NO_PAD.encode(tag))
}

fn csrf_ok(cx: &StepUpCx<'_>, binding: &Binding, token: Option<&str>) -> bool {
    let Some((t, tag)) = token.and_then(|t| t.split_once('.')) else {
        return false;
    };
    let (Ok(issued), Ok(tag)) = (t.parse::<u64>(), URL_SAFE_NO_PAD.decode(tag)) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    now.saturating_sub(issued) <= CSRF_TTL
        && cx
            .key
            .verify(CSRF_DOMAIN, &[binding.id.as_bytes(), t.as_bytes()], &tag)
}

fn redirect(to: &str, cookie: Option<HeaderValue>) -> Response<ResponseBody> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let h = resp.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(c) = cookie {
        h.append(header::SET_COOKIE, c);
    }
    resp
}

/// The refusal for a user with no enrolment on erpguard's own pages (the
/// one page every refusal gets, from `error::rescue`).
fn not_enrolled(binding: &Binding) -> Denial {
    Denial::StepUpNotEnrolled {
        reason: "the step-up page".to_owned(),
        user: binding.user.clone(),
    }
}

/// The refusal while step-up is locked for the user.
fn locked(binding: &Binding, retry_after: Duration) -> Denial {
    Denial::StepUpLocked {
        retry_after,
        user: binding.user.clone(),
    }
}

fn expired_form(back: &str) -> Response<ResponseBody> {
    page::respond(
        StatusCode::FORBIDDEN,
        "Form expired",
        &format!(
            "{}<p><a href=\"{}\">Try again</a></p>",
            page::message("Form expired", "This form has expired. Please try again."),
            page::esc(&super::challenge_url(back)),
        ),
    )
}

fn dead_link() -> Response<ResponseBody> {
    page::respond(
        StatusCode::NOT_FOUND,
        "Link not valid",
        &page::message(
            "Link not valid",
            "This enrolment link is not valid any more (used, expired or replaced). Ask an \
             administrator for a new one.",
        ),
    )
}
