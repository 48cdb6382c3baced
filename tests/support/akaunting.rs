//! An emulator of the login surface of Akaunting 3.2.x (Laravel 10), built from the research notes
//! `shared/upstreams/akaunting.md` (sections 0, 1, 2, 4, 5 and "What a gateway must match" 1-7). It
//! answers on the wire like the real app: same paths, fields, statuses, JSON envelopes (encoded like
//! PHP's `json_encode`, so `/` comes out as `\/`), cookies and headers.
//!
//! Emulated:
//! - Laravel input: a JSON body (Content-Type containing `/json` or `+json`) or the form
//!   (urlencoded or multipart; last value wins like PHP), merged over the query; `_method`
//!   overrides POST; strings are trimmed (not passwords) and empty strings become null;
//! - `GET /auth/login` (HTML with `_token`, `akaunting_session` and `XSRF-TOKEN` cookies); the CSRF
//!   check on every non-read web request (`_token`, `X-CSRF-TOKEN` or `X-XSRF-TOKEN`, else 419);
//! - `POST /auth/login`: 422 (XHR/JSON clients) or 302 back on bad input, then the credential check:
//!   always HTTP 200 JSON, `success:true` with `redirect` (the stored intended URL, else
//!   `<origin>/1`, or `<origin>/1/portal` for the customer) or the generic failure; the session id
//!   rotates on every correct password, including the disabled account that then fails;
//!   `remember_web_...` when `remember` is PHP-truthy; an already logged-in session gets a 302;
//! - sessions like Laravel's: the cookie value is re-"encrypted" on every web response (a new opaque
//!   value each time, old values keep working until the session id is rotated away); remember-me
//!   cookies log a session back in; logout (`GET /{company}/auth/logout` or `/portal/logout`) keeps
//!   the session id, removes the login, forgets the remember cookie and answers 302 to `/auth/login`;
//! - `/{company}/...`: 200 JSON echo `{"path","user"}` for a logged-in member of company 1 (the
//!   customer only under `/1/portal`, staff everywhere else, otherwise 403); without a session 302 to
//!   `/auth/login` (stored as the intended URL) or 401 `{"message":"Unauthenticated."}` for XHR/JSON;
//! - `POST /auth/forgot` (the `success:true` / `success:false` email oracle);
//! - `/api/...` with `Authorization: Basic base64(email:password)`, stateless: 200 `{"data":...}`
//!   (`/api/ping`: `{"status":"ok","timestamp":...}`), 401 `Invalid credentials.` with
//!   `WWW-Authenticate: Basic`, 403 for the customer (no `read-api`), 302 for the disabled account;
//!   no cookies and no `X-Akaunting` headers on the API;
//! - headers: `X-Akaunting`, `X-Frame-Options`, `X-Content-Type-Options`, `Referrer-Policy`,
//!   `X-XSS-Protection`, `Permissions-Policy` on web responses; `Alt-Svc: clear` and
//!   `Cache-Control: no-cache, private` on all; redirects carry absolute URLs built from
//!   `X-Forwarded-Proto`/`X-Forwarded-Host`/`X-Forwarded-Port`/`Host` (Akaunting trusts all proxies).
//!
//! Deliberately left out: the firewall (off, as the notes' test setups have it), every throttle
//! (no login throttle exists; the per-user API limiter and the 60 s forgot-password broker throttle
//! are not emulated), the 30-minute idle expiry, OAuth/Bearer, 2FA (none in core), password reset
//! and invitation links, signed links, the installer, uploads, real pages (the login and forgot pages
//! are small stand-ins; every authenticated page is a JSON echo), companies other than 1,
//! `company_id`/`X-Company` on the API, timing differences between known and unknown emails, and
//! PHP's array (`a[]`) and dotted-name input quirks. Unknown non-company paths answer like
//! `APP_DEBUG=false`: XHR 404 `{"error":"Not Found"}`, otherwise a 302 back.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub use super::wire::{Attempt, Seen};
use super::wire::{boundary, parse_multipart, parse_urlencoded, percent_decode};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const SESSION_COOKIE: &str = "akaunting_session";
const XSRF_COOKIE: &str = "XSRF-TOKEN";
const REMEMBER_COOKIE: &str = "remember_web_59ba36addc2b2f9401580f014c7f58ea4e30989d";
/// SESSION_LIFETIME = 30 minutes.
const SESSION_MAX_AGE: u64 = 1800;
/// Laravel 10's remember duration: 576000 minutes.
const REMEMBER_MAX_AGE: u64 = 576_000 * 60;
/// The only company.
const COMPANY: &str = "1";

const FAILED: &str = "These credentials do not match our records.";
const VERIFIED: &str = "Verification done! You are being redirected...";
const NO_RIGHTS: &str = "User does not have any of the necessary access rights.";

struct User {
    email: &'static str,
    password: &'static str,
    enabled: bool,
    /// A customer: portal only, no `read-api`.
    customer: bool,
}

const USERS: &[User] = &[
    User {
        email: "admin@company.com",
        password: "admin-pass",
        enabled: true,
        customer: false,
    },
    User {
        email: "disabled@company.com",
        password: "disabled-pass",
        enabled: false,
        customer: false,
    },
    User {
        email: "customer@company.com",
        password: "customer-pass",
        enabled: true,
        customer: true,
    },
];

/// Emails match case-insensitively (MySQL collation).
fn find_user(email: &str) -> Option<&'static User> {
    let lower = email.to_lowercase();
    USERS.iter().find(|u| u.email.to_lowercase() == lower)
}

struct Session {
    user: Option<&'static User>,
    token: String,
    intended: Option<String>,
    previous: Option<String>,
}

impl Session {
    fn new() -> Session {
        Session {
            user: None,
            token: random_alnum(40),
            intended: None,
            previous: None,
        }
    }
}

#[derive(Default)]
struct State {
    attempts: Vec<Attempt>,
    requests: Vec<Seen>,
    /// Session id → data.
    sessions: HashMap<String, Session>,
    /// Every (decoded) `akaunting_session` value handed out → session id.
    session_values: HashMap<String, String>,
    /// Every (decoded) `XSRF-TOKEN` value handed out → CSRF token.
    xsrf_values: HashMap<String, String>,
    /// Remember-me cookie value → user.
    remember: HashMap<String, &'static User>,
}

/// A running Akaunting emulator on 127.0.0.1.
pub struct Emulator {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Emulator {
    /// Binds 127.0.0.1:0 and serves HTTP/1.1 until the runtime ends.
    pub async fn start() -> Emulator {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let st = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(serve(st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Emulator { addr, state }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every password check, in order.
    pub fn login_attempts(&self) -> Vec<Attempt> {
        self.state.lock().unwrap().attempts.clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Forgets the recorded attempts and requests (sessions stay).
    pub fn clear(&self) {
        let mut st = self.state.lock().unwrap();
        st.attempts.clear();
        st.requests.clear();
    }
}

struct Ctx {
    /// The method after `_method` spoofing (POST only).
    method: String,
    raw_path: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    input: Vec<(String, Value)>,
    /// `scheme://host[:port]` as Laravel builds URLs.
    origin: String,
    client_ip: Option<String>,
}

impl Ctx {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn input(&self, name: &str) -> Option<&Value> {
        self.input.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn ajax(&self) -> bool {
        self.header("x-requested-with") == Some("XMLHttpRequest")
    }

    /// The first media type of Accept.
    fn first_accept(&self) -> String {
        self.header("accept")
            .unwrap_or("")
            .split(',')
            .next()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }

    /// Laravel's `expectsJson()`.
    fn expects_json(&self) -> bool {
        let first = self.first_accept();
        let any = first.is_empty() || first == "*/*" || first == "*";
        let pjax = self.header("x-pjax") == Some("true");
        (self.ajax() && !pjax && any) || first.contains("/json") || first.contains("+json")
    }

    fn cookie(&self, name: &str) -> Option<String> {
        for value in self.headers.get_all("cookie") {
            let Ok(text) = value.to_str() else { continue };
            for pair in text.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k.trim() == name
                {
                    return Some(percent_decode(v.trim(), false));
                }
            }
        }
        None
    }

    fn full_url(&self) -> String {
        match self.query.as_deref().filter(|q| !q.is_empty()) {
            Some(q) => format!("{}{}?{q}", self.origin, self.raw_path),
            None => format!("{}{}", self.origin, self.raw_path),
        }
    }

    fn is_read(&self) -> bool {
        matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }
}

struct Reply {
    status: u16,
    content_type: Option<&'static str>,
    body: String,
    headers: Vec<(&'static str, String)>,
    cookies: Vec<String>,
    /// Web group (session, CSRF cookie, X headers) or not (API, unmatched routes).
    web: bool,
    /// VerifyCsrfToken adds `XSRF-TOKEN` only when the request passed it.
    xsrf: bool,
}

impl Reply {
    fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: Some("application/json"),
            body,
            headers: Vec::new(),
            cookies: Vec::new(),
            web: true,
            xsrf: true,
        }
    }

    fn html(status: u16, body: String) -> Reply {
        Reply {
            content_type: Some("text/html; charset=UTF-8"),
            ..Reply::json(status, body)
        }
    }

    fn redirect(to: &str) -> Reply {
        let e = html_escape(to);
        let body = format!(
            "<!DOCTYPE html>\n<html>\n    <head>\n        <meta charset=\"UTF-8\" />\n        \
<meta http-equiv=\"refresh\" content=\"0;url='{e}'\" />\n\n        <title>Redirecting to {e}</title>\n    \
</head>\n    <body>\n        Redirecting to <a href=\"{e}\">{e}</a>.\n    </body>\n</html>"
        );
        let mut r = Reply {
            content_type: Some("text/html; charset=utf-8"),
            ..Reply::json(302, body)
        };
        r.headers.push(("location", to.to_owned()));
        r
    }
}

async fn serve(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| parts.uri.to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let ctx = parse_request(&parts.method, &parts.uri, &parts.headers, &body);
    let reply = {
        let mut st = state.lock().unwrap();
        st.requests.push(seen);
        if ctx.path == "/api" || ctx.path.starts_with("/api/") {
            api(&mut st, &ctx)
        } else {
            web(&mut st, &ctx)
        }
    };
    build_response(reply)
}

fn build_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    let h = resp.headers_mut();
    if let Some(ct) = reply.content_type {
        h.insert("content-type", HeaderValue::from_static(ct));
    }
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, private"),
    );
    for (k, v) in reply.headers {
        h.append(k, HeaderValue::from_str(&v).unwrap());
    }
    if reply.web {
        for (k, v) in [
            ("x-akaunting", "Online Accounting Software"),
            ("x-frame-options", "SAMEORIGIN"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
            ("x-xss-protection", "0"),
            (
                "permissions-policy",
                "camera=(), microphone=(), geolocation=()",
            ),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
    }
    h.insert("alt-svc", HeaderValue::from_static("clear"));
    for c in reply.cookies {
        h.append("set-cookie", HeaderValue::from_str(&c).unwrap());
    }
    resp
}

fn parse_request(method: &Method, uri: &http::Uri, headers: &HeaderMap, body: &[u8]) -> Ctx {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let raw_path = uri.path().to_owned();
    let query = uri.query().map(str::to_owned);
    let content_type = header("content-type").unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mut source: Vec<(String, Value)> = Vec::new();
    if content_type.contains("/json") || content_type.contains("+json") {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            source = map.into_iter().collect();
        }
    } else if mime == "application/x-www-form-urlencoded"
        && matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    {
        source = last_values(parse_urlencoded(&String::from_utf8_lossy(body)));
    } else if mime == "multipart/form-data"
        && *method == Method::POST
        && let Some(b) = boundary(content_type)
    {
        source = last_values(parse_multipart(body, &b));
    }
    // Middleware: TrimStrings (not passwords), ConvertEmptyStringsToNull.
    for (k, v) in source.iter_mut() {
        if let Value::String(s) = v {
            if !matches!(
                k.as_str(),
                "password" | "password_confirmation" | "current_password"
            ) {
                *s = s.trim().to_owned();
            }
            if s.is_empty() {
                *v = Value::Null;
            }
        }
    }
    let query_pairs = last_values(query.as_deref().map(parse_urlencoded).unwrap_or_default());
    let mut input = source;
    for (k, v) in query_pairs {
        if !input.iter().any(|(ik, _)| *ik == k) {
            input.push((k, v));
        }
    }
    let mut effective = method.as_str().to_owned();
    if *method == Method::POST
        && let Some(Value::String(m)) = input.iter().find(|(k, _)| k == "_method").map(|(_, v)| v)
        && !m.is_empty()
        && m.chars().all(|c| c.is_ascii_alphabetic())
    {
        effective = m.to_ascii_uppercase();
    }

    let first = |n: &str| {
        header(n)
            .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let scheme = first("x-forwarded-proto").unwrap_or_else(|| "http".to_owned());
    let mut host = first("x-forwarded-host")
        .or_else(|| header("host").map(str::to_owned))
        .unwrap_or_else(|| "localhost".to_owned());
    if let Some(port) = first("x-forwarded-port") {
        let bare = match host.strip_prefix('[') {
            Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or("")),
            None => host.split(':').next().unwrap_or("").to_owned(),
        };
        let default = (scheme == "https" && port == "443") || (scheme == "http" && port == "80");
        host = if default {
            bare
        } else {
            format!("{bare}:{port}")
        };
    }
    let client_ip = header("x-forwarded-for")
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_owned());
    Ctx {
        method: effective,
        path: percent_decode(&raw_path, false),
        raw_path,
        query,
        headers: headers.clone(),
        input,
        origin: format!("{scheme}://{host}"),
        client_ip,
    }
}

fn last_values(pairs: Vec<(String, String)>) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for (k, v) in pairs {
        match out.iter_mut().find(|(ok, _)| *ok == k) {
            Some(slot) => slot.1 = Value::String(v),
            None => out.push((k, Value::String(v))),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The web group

fn web(st: &mut State, ctx: &Ctx) -> Reply {
    // StartSession: from the cookie, else a fresh one.
    let mut id = ctx
        .cookie(SESSION_COOKIE)
        .and_then(|v| st.session_values.get(&v).cloned())
        .filter(|id| st.sessions.contains_key(id))
        .unwrap_or_else(|| {
            let id = random_alnum(40);
            st.sessions.insert(id.clone(), Session::new());
            id
        });
    let mut reply = route(st, ctx, &mut id);
    if !reply.web {
        return reply;
    }
    if ctx.method == "GET"
        && !ctx.ajax()
        && reply.status == 200
        && let Some(s) = st.sessions.get_mut(&id)
    {
        s.previous = Some(ctx.full_url());
    }
    let expires = http_date(unix_now() + SESSION_MAX_AGE);
    let mut cookies = Vec::new();
    if reply.xsrf {
        let token = st
            .sessions
            .get(&id)
            .map(|s| s.token.clone())
            .unwrap_or_default();
        let value = encrypted_value();
        st.xsrf_values.insert(value.clone(), token);
        cookies.push(format!(
            "{XSRF_COOKIE}={}; expires={expires}; Max-Age={SESSION_MAX_AGE}; path=/; samesite=lax",
            rawurlencode(&value)
        ));
    }
    let value = encrypted_value();
    st.session_values.insert(value.clone(), id);
    cookies.push(format!(
        "{SESSION_COOKIE}={}; expires={expires}; Max-Age={SESSION_MAX_AGE}; path=/; httponly; samesite=lax",
        rawurlencode(&value)
    ));
    cookies.append(&mut reply.cookies);
    reply.cookies = cookies;
    reply
}

fn route(st: &mut State, ctx: &Ctx, id: &mut String) -> Reply {
    let read = ctx.is_read();
    let path = ctx.path.as_str();
    let company = path
        .strip_prefix('/')
        .and_then(|p| p.split('/').next())
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit()));
    let known = matches!(path, "/" | "/auth/login" | "/auth/forgot") || company.is_some();
    if !known {
        return not_found(st, ctx, id);
    }
    if !read && !csrf_ok(st, ctx, id) {
        let mut r = if ctx.expects_json() {
            Reply::json(419, php_json(&[("message", json!("CSRF token mismatch."))]))
        } else {
            error_page(419, "Page Expired")
        };
        r.xsrf = false;
        return r;
    }
    match path {
        "/" => match ctx.method.as_str() {
            "GET" | "HEAD" => Reply::redirect(&format!("{}/auth/login", ctx.origin)),
            _ => not_allowed(ctx, "GET, HEAD"),
        },
        "/auth/login" | "/auth/forgot" => {
            // auth.redirect
            if let Some(u) = current_user(st, ctx, id)
                && matches!(ctx.method.as_str(), "GET" | "HEAD" | "POST")
            {
                return Reply::redirect(&landing(ctx, u));
            }
            let login = path == "/auth/login";
            match (ctx.method.as_str(), login) {
                ("GET" | "HEAD", true) => login_page(st, ctx, id),
                ("GET" | "HEAD", false) => forgot_page(st, ctx, id),
                ("POST", true) => login_post(st, ctx, id),
                ("POST", false) => forgot_post(st, ctx, id),
                _ => not_allowed(ctx, "GET, HEAD, POST"),
            }
        }
        _ => company_route(st, ctx, id, company.unwrap_or("")),
    }
}

fn csrf_ok(st: &State, ctx: &Ctx, id: &str) -> bool {
    let Some(token) = st.sessions.get(id).map(|s| s.token.as_str()) else {
        return false;
    };
    let sent = match ctx.input("_token") {
        Some(Value::String(t)) => Some(t.clone()),
        _ => ctx.header("x-csrf-token").map(str::to_owned),
    };
    let sent = sent.or_else(|| {
        ctx.header("x-xsrf-token")
            .and_then(|v| st.xsrf_values.get(&percent_decode(v, false)).cloned())
    });
    sent.as_deref() == Some(token)
}

/// The logged-in user, logging in from the remember-me cookie when the session has none.
fn current_user(st: &mut State, ctx: &Ctx, id: &mut String) -> Option<&'static User> {
    if let Some(u) = st.sessions.get(id.as_str()).and_then(|s| s.user) {
        return Some(u);
    }
    let user = ctx
        .cookie(REMEMBER_COOKIE)
        .and_then(|v| st.remember.get(&v).copied())?;
    migrate(st, id);
    if let Some(s) = st.sessions.get_mut(id.as_str()) {
        s.user = Some(user);
    }
    Some(user)
}

/// `Session::migrate(true)`: a new id, the old one destroyed, the data kept.
fn migrate(st: &mut State, id: &mut String) {
    let new_id = random_alnum(40);
    let data = st.sessions.remove(id.as_str()).unwrap_or_else(Session::new);
    st.session_values.retain(|_, v| v != id);
    st.sessions.insert(new_id.clone(), data);
    *id = new_id;
}

fn landing(ctx: &Ctx, user: &User) -> String {
    if user.customer {
        format!("{}/{COMPANY}/portal", ctx.origin)
    } else {
        format!("{}/{COMPANY}", ctx.origin)
    }
}

fn envelope(success: bool, message: &str, redirect: Option<&str>) -> String {
    php_json(&[
        ("status", Value::Null),
        ("success", json!(success)),
        ("error", json!(!success)),
        ("message", json!(message)),
        ("data", Value::Null),
        ("redirect", redirect.map_or(Value::Null, |r| json!(r))),
    ])
}

fn login_page(st: &State, ctx: &Ctx, id: &str) -> Reply {
    let token = st
        .sessions
        .get(id)
        .map(|s| s.token.clone())
        .unwrap_or_default();
    let o = &ctx.origin;
    Reply::html(
        200,
        format!(
            "<!DOCTYPE html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"csrf-token\" content=\"{token}\">\n<title>Login - Akaunting</title>\n\
<script type=\"text/javascript\">window.Laravel = {};</script>\n</head>\n<body>\n\
<form method=\"POST\" action=\"{o}/auth/login\" id=\"auth\" enctype=\"multipart/form-data\">\n\
<input type=\"hidden\" name=\"_token\" value=\"{token}\" autocomplete=\"off\">\n\
<input type=\"hidden\" name=\"_method\" value=\"POST\">\n\
<input type=\"email\" name=\"email\" placeholder=\"Email\">\n\
<input type=\"password\" name=\"password\" placeholder=\"Password\">\n\
<input type=\"checkbox\" name=\"remember\" value=\"true\">\n\
<button type=\"submit\">Login</button>\n</form>\n\
<a href=\"{o}/auth/forgot\">Forgot Password?</a>\n</body>\n</html>\n",
            php_json(&[("csrfToken", json!(token))])
        ),
    )
}

fn forgot_page(st: &State, ctx: &Ctx, id: &str) -> Reply {
    let token = st
        .sessions
        .get(id)
        .map(|s| s.token.clone())
        .unwrap_or_default();
    Reply::html(
        200,
        format!(
            "<!DOCTYPE html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"csrf-token\" content=\"{token}\">\n<title>Forgot Password - Akaunting</title>\n</head>\n<body>\n\
<form method=\"POST\" action=\"{}/auth/forgot\" enctype=\"multipart/form-data\">\n\
<input type=\"hidden\" name=\"_token\" value=\"{token}\" autocomplete=\"off\">\n\
<input type=\"hidden\" name=\"_method\" value=\"POST\">\n\
<input type=\"email\" name=\"email\" placeholder=\"Email\">\n\
<button type=\"submit\">Reset</button>\n</form>\n</body>\n</html>\n",
            ctx.origin
        ),
    )
}

/// An input as a string for validation: null or missing is `None`.
fn input_text(ctx: &Ctx, name: &str) -> Option<String> {
    match ctx.input(name)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !domain.contains('@')
        && !local.contains('@')
}

/// `email: required|email` (and `password: required` for the login).
fn validate(ctx: &Ctx, with_password: bool) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    match ctx.input("email") {
        None | Some(Value::Null) => {
            errors.push(("email", "The email field is required.".to_owned()));
        }
        Some(Value::String(s)) if valid_email(s) => {}
        Some(_) => errors.push((
            "email",
            "The email field must be a valid email address.".to_owned(),
        )),
    }
    if with_password && input_text(ctx, "password").is_none() {
        errors.push(("password", "The password field is required.".to_owned()));
    }
    errors
}

/// A validation failure: 422 for XHR/JSON clients, else 302 back.
fn invalid(st: &State, ctx: &Ctx, id: &str, errors: &[(&'static str, String)]) -> Reply {
    if ctx.expects_json() {
        let mut message = errors[0].1.clone();
        if errors.len() > 1 {
            let n = errors.len() - 1;
            message.push_str(&format!(
                " (and {n} more error{})",
                if n == 1 { "" } else { "s" }
            ));
        }
        let mut map = serde_json::Map::new();
        for (k, m) in errors {
            map.insert((*k).to_owned(), json!([m]));
        }
        return Reply::json(
            422,
            php_json(&[("message", json!(message)), ("errors", Value::Object(map))]),
        );
    }
    Reply::redirect(&back(st, ctx, id))
}

/// `url()->previous()`: the Referer, else the session's previous URL, else the root.
fn back(st: &State, ctx: &Ctx, id: &str) -> String {
    ctx.header("referer")
        .map(str::to_owned)
        .or_else(|| st.sessions.get(id).and_then(|s| s.previous.clone()))
        .unwrap_or_else(|| format!("{}/", ctx.origin))
}

fn login_post(st: &mut State, ctx: &Ctx, id: &mut String) -> Reply {
    let errors = validate(ctx, true);
    if !errors.is_empty() {
        return invalid(st, ctx, id, &errors);
    }
    let email = input_text(ctx, "email").unwrap_or_default();
    let password = input_text(ctx, "password").unwrap_or_default();
    let remember = php_truthy(ctx.input("remember"));
    let record = |st: &mut State, ok: bool| {
        st.attempts.push(Attempt {
            user: email.clone(),
            ok,
            path: ctx.raw_path.clone(),
            client_ip: ctx.client_ip.clone(),
        });
    };
    let Some(user) = find_user(&email).filter(|u| u.password == password) else {
        record(st, false);
        return Reply::json(200, envelope(false, FAILED, None));
    };
    // SessionGuard::login: the session id rotates before Akaunting looks at the account.
    migrate(st, id);
    if !user.enabled {
        record(st, false);
        return Reply::json(200, envelope(false, FAILED, None));
    }
    record(st, true);
    let session = st.sessions.get_mut(id.as_str()).unwrap();
    session.user = Some(user);
    let redirect = session
        .intended
        .take()
        .unwrap_or_else(|| landing(ctx, user));
    let mut r = Reply::json(200, envelope(true, VERIFIED, Some(&redirect)));
    if remember {
        let value = encrypted_value();
        st.remember.insert(value.clone(), user);
        r.cookies.push(format!(
            "{REMEMBER_COOKIE}={}; expires={}; Max-Age={REMEMBER_MAX_AGE}; path=/; httponly; samesite=lax",
            rawurlencode(&value),
            http_date(unix_now() + REMEMBER_MAX_AGE)
        ));
    }
    r
}

fn forgot_post(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    let errors = validate(ctx, false);
    if !errors.is_empty() {
        return invalid(st, ctx, id, &errors);
    }
    let email = input_text(ctx, "email").unwrap_or_default();
    let body = if find_user(&email).is_some() {
        envelope(true, "We have emailed your password reset link!", None)
    } else {
        envelope(
            false,
            "We can't find a user with that email address.",
            Some(&format!("{}/auth/forgot", ctx.origin)),
        )
    };
    Reply::json(200, body)
}

fn company_route(st: &mut State, ctx: &Ctx, id: &mut String, company: &str) -> Reply {
    let user = current_user(st, ctx, id).filter(|_| company == COMPANY);
    let Some(user) = user else {
        if ctx.method == "GET"
            && !ctx.expects_json()
            && let Some(s) = st.sessions.get_mut(id.as_str())
        {
            s.intended = Some(ctx.full_url());
        }
        return if ctx.expects_json() {
            Reply::json(401, php_json(&[("message", json!("Unauthenticated."))]))
        } else {
            Reply::redirect(&format!("{}/auth/login", ctx.origin))
        };
    };
    let rest = &ctx.path[1 + company.len()..];
    if rest == "/auth/logout" || rest == "/portal/logout" {
        if !matches!(ctx.method.as_str(), "GET" | "HEAD") {
            return not_allowed(ctx, "GET, HEAD");
        }
        if let Some(s) = st.sessions.get_mut(id.as_str()) {
            s.user = None;
        }
        st.remember.retain(|_, u| !std::ptr::eq(*u, user));
        let mut r = Reply::redirect(&format!("{}/auth/login", ctx.origin));
        if ctx.cookie(REMEMBER_COOKIE).is_some() {
            r.cookies.push(format!(
                "{REMEMBER_COOKIE}=deleted; expires={}; Max-Age=0; path=/; httponly; samesite=lax",
                http_date(unix_now().saturating_sub(31_536_001))
            ));
        }
        return r;
    }
    let portal = rest == "/portal" || rest.starts_with("/portal/");
    if portal != user.customer {
        return if ctx.expects_json() {
            Reply::json(403, php_json(&[("message", json!(NO_RIGHTS))]))
        } else {
            error_page(403, NO_RIGHTS)
        };
    }
    Reply::json(
        200,
        php_json(&[("path", json!(ctx.raw_path)), ("user", json!(user.email))]),
    )
}

/// An unmatched route (no web middleware ran): XHR 404 JSON, otherwise a redirect back.
fn not_found(st: &State, ctx: &Ctx, id: &str) -> Reply {
    let mut r = if ctx.ajax() {
        Reply::json(404, php_json(&[("error", json!("Not Found"))]))
    } else {
        let to = ctx
            .header("referer")
            .map(str::to_owned)
            .or_else(|| st.sessions.get(id).and_then(|s| s.previous.clone()))
            .unwrap_or_else(|| format!("{}/", ctx.origin));
        Reply::redirect(&to)
    };
    r.web = false;
    r
}

fn not_allowed(ctx: &Ctx, allowed: &str) -> Reply {
    let message = format!(
        "The {} method is not supported for route {}. Supported methods: {allowed}.",
        ctx.method,
        ctx.path.trim_start_matches('/')
    );
    let mut r = if ctx.expects_json() {
        Reply::json(405, php_json(&[("message", json!(message))]))
    } else {
        error_page(405, "Method Not Allowed")
    };
    r.headers.push(("allow", allowed.to_owned()));
    r
}

fn error_page(status: u16, message: &str) -> Reply {
    Reply::html(
        status,
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{status}</title>\n</head>\n\
<body>\n<div class=\"code\">{status}</div>\n<div class=\"message\">{}</div>\n</body>\n</html>\n",
            html_escape(message)
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// The API group: stateless Basic auth, no session, no cookies, no X headers.

fn api(st: &mut State, ctx: &Ctx) -> Reply {
    let api_reply = |status: u16, body: String| Reply {
        web: false,
        xsrf: false,
        ..Reply::json(status, body)
    };
    let unauthorized = || {
        let mut r = api_reply(
            401,
            php_json(&[
                ("message", json!("Invalid credentials.")),
                ("status_code", json!(401)),
            ]),
        );
        r.headers.push(("www-authenticate", "Basic".to_owned()));
        r
    };
    // Symfony's ServerBag: "Basic " + base64(user:password), split on the first colon.
    let creds = ctx.header("authorization").and_then(|h| {
        if h.len() < 6 || !h[..6].eq_ignore_ascii_case("basic ") {
            return None;
        }
        let decoded = String::from_utf8_lossy(&b64_decode_php(&h[6..])).into_owned();
        let (user, pass) = decoded.split_once(':')?;
        Some((user.to_owned(), pass.to_owned()))
    });
    let Some((email, password)) = creds.filter(|(u, _)| !u.is_empty()) else {
        return unauthorized();
    };
    let user = find_user(&email).filter(|u| u.password == password);
    let ok = user.is_some_and(|u| u.enabled);
    st.attempts.push(Attempt {
        user: email,
        ok,
        path: ctx.raw_path.clone(),
        client_ip: ctx.client_ip.clone(),
    });
    let Some(user) = user else {
        return unauthorized();
    };
    if !user.enabled {
        let mut r = Reply::redirect(&format!("{}/auth/login", ctx.origin));
        r.web = false;
        return r;
    }
    if user.customer {
        return api_reply(
            403,
            php_json(&[("message", json!(NO_RIGHTS)), ("status_code", json!(403))]),
        );
    }
    if ctx.path == "/api/ping" {
        return api_reply(
            200,
            php_json(&[("status", json!("ok")), ("timestamp", json!(iso_now()))]),
        );
    }
    api_reply(
        200,
        php_json(&[("data", json!({"path": ctx.raw_path, "user": user.email}))]),
    )
}

// ---------------------------------------------------------------------------------------------
// Encoders and parsers (kept here so this file depends on nothing but its own crate deps)

/// An object with keys in order, encoded like PHP's `json_encode` without flags:
/// `/` becomes `\/` and non-ASCII becomes `\uXXXX`.
fn php_json(pairs: &[(&str, Value)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&Value::from(*k).to_string());
        s.push(':');
        s.push_str(&v.to_string());
    }
    s.push('}');
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

/// PHP truthiness of an input: null, false, "", "0", 0 and empty arrays are false.
fn php_truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !(s.is_empty() || s == "0"),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// An opaque value shaped like a Laravel-encrypted cookie: base64 of
/// `{"iv":…,"value":…,"mac":…,"tag":""}`.
fn encrypted_value() -> String {
    let mut rng = rand::thread_rng();
    let iv: Vec<u8> = (0..16).map(|_| rng.r#gen()).collect();
    let value: Vec<u8> = (0..48).map(|_| rng.r#gen()).collect();
    let mac: String = (0..64)
        .map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)]))
        .collect();
    let json = php_json(&[
        ("iv", json!(b64_encode(&iv))),
        ("value", json!(b64_encode(&value))),
        ("mac", json!(mac)),
        ("tag", json!("")),
    ]);
    b64_encode(json.as_bytes())
}

fn random_alnum(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// PHP's non-strict `base64_decode`: other characters are skipped, padding is optional.
fn b64_decode_php(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in s.as_bytes() {
        let Some(v) = B64.iter().position(|&b| b == c) else {
            continue;
        };
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// PHP's `rawurlencode`.
fn rawurlencode(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#039;")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil(days: u64) -> (i64, u64, u64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `Wed, 18 Nov 2026 12:00:00 GMT`
fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d) = civil(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[(secs / 86_400 % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `2026-11-18T12:00:00.000000Z` (Carbon's JSON form).
fn iso_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{y}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}
