//! An emulator of the login surface of ERPNext on Frappe 15 (15.44.2 behind gunicorn), built from
//! the research notes `shared/upstreams/erpnext.md` (sections 0, 1, 2, 4, 5 and "Observed on a live
//! site"). It answers on the wire like the real app: same paths, parameters, statuses, bodies and
//! `Set-Cookie` headers, with `Server: gunicorn`, `Connection: close` and Werkzeug's upper-case
//! reason phrases (`401 UNAUTHORIZED`).
//!
//! Emulated:
//! - parameters as `make_form_dict` builds them (a JSON body replaces the query; otherwise query plus
//!   urlencoded or multipart form, form wins, first value wins, `_` dropped), for every method;
//! - the request IP as Frappe reads it (first `X-Forwarded-For` entry, then a `Remote-Addr` request
//!   header, then `127.0.0.1`); the path is percent-decoded before routing, as WSGI does;
//! - password login when `cmd == "login"` (any path, any method but OPTIONS) or the path is exactly
//!   `/api/method/login`; success, the two different failure tracebacks (unknown user vs wrong
//!   password, with the wrong password about 15 ms slower), "Incomplete login details", password
//!   expired, 2FA (OTP App: step 1 answers `verification` + `tmp_id`, step 2 takes `otp` + `tmp_id`,
//!   code `123456`), Frappe's own lockout (per user and per IP, 10 allowed, refused with a 500
//!   `SecurityException` while `count > 10` within 60 s of the first failure, reset by a success);
//! - sessions (`sid` cookie or `sid` parameter), the five cookies on every response, the Guest plus
//!   expiring cookies for an ended session, `frappe.auth.get_logged_user`, `logout`, CSRF once the
//!   Desk shell `/app` has been loaded, the 301 of `/app/...` for a Guest; a script-free stand-in
//!   `/login` form (for the browser test);
//! - `Authorization: token key:secret` / `Basic base64(key:secret)` (key `k1`, secret `s1`,
//!   user Administrator), 401 on a bad pair, 400 on undecodable base64, never throttled;
//! - `reset_password` (the 404 "not found" enumeration oracle), `sign_up`, `ping`, a leaking
//!   traceback on `/api/method/boom`, and a JSON echo of `{"path","user"}` everywhere else;
//! - JSON errors for `/api/` paths or JSON/XHR clients, an HTML error page with the same status
//!   otherwise (a plain form post to `/` that fails gets HTML).
//!
//! Deliberately left out: multi-site selection (`Host`/`X-Frappe-Site-Name`), the global and
//! `@rate_limit` limiters (`reset_password` is not limited here), SMS/Email 2FA, portal users, disabled
//! users, `restrict_ip`, login hours, the 512-character password cap, OAuth bearer tokens, LDAP,
//! magic links, REST resources and every other whitelisted method (they all echo), uploads, files,
//! socket.io, session idle expiry, and real HTML pages (the desk shell and error pages are small
//! stand-ins). `/api/v2/...` methods other than `login` echo too.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// `allow_consecutive_login_attempts` (System Settings default).
const MAX_FAILURES: u32 = 10;
/// `allow_login_after_fail` in seconds (System Settings default).
const LOCK_SECONDS: u64 = 60;
/// Max-Age of the `sid` cookie: session_expiry "170:00" hours.
const SESSION_MAX_AGE: u64 = 612_000;
/// How long a 2FA `tmp_id` lives (OTP App).
const TMP_ID_SECONDS: u64 = 180;
/// Extra time a password check against an existing user takes (the hash), absent for unknown users.
const HASH_DELAY: Duration = Duration::from_millis(15);
/// The one code the OTP app "shows".
const OTP_CODE: &str = "123456";
const API_KEY: &str = "k1";
const API_SECRET: &str = "s1";
const API_USER: &str = "Administrator";

struct User {
    name: &'static str,
    password: &'static str,
    full_name: &'static str,
    two_factor: bool,
    password_expired: bool,
}

const USERS: &[User] = &[
    User {
        name: "Administrator",
        password: "admin-pass",
        full_name: "Administrator",
        two_factor: false,
        password_expired: false,
    },
    User {
        name: "alice@example.com",
        password: "alice-pass",
        full_name: "Alice Example",
        two_factor: false,
        password_expired: false,
    },
    User {
        name: "otp@example.com",
        password: "otp-pass",
        full_name: "OTP User",
        two_factor: true,
        password_expired: false,
    },
    User {
        name: "expired@example.com",
        password: "expired-pass",
        full_name: "Expired User",
        two_factor: false,
        password_expired: true,
    },
];

/// User names match case-insensitively (MariaDB collation).
fn find_user(name: &str) -> Option<&'static User> {
    let lower = name.to_lowercase();
    USERS.iter().find(|u| u.name.to_lowercase() == lower)
}

struct Session {
    user: &'static User,
    csrf: Option<String>,
}

struct Tracker {
    count: u32,
    first: Instant,
}

struct Pending {
    user: &'static User,
    pwd: String,
    created: Instant,
}

#[derive(Default)]
struct State {
    attempts: Vec<Attempt>,
    requests: Vec<Seen>,
    sessions: HashMap<String, Session>,
    trackers: HashMap<String, Tracker>,
    pending: HashMap<String, Pending>,
}

impl State {
    fn allowed(&self, key: &str) -> bool {
        match self.trackers.get(key) {
            Some(t) => {
                !(t.count > MAX_FAILURES && t.first.elapsed() < Duration::from_secs(LOCK_SECONDS))
            }
            None => true,
        }
    }

    fn add_failure(&mut self, key: &str) {
        let fresh = Tracker {
            count: 1,
            first: Instant::now(),
        };
        match self.trackers.get_mut(key) {
            Some(t) if t.first.elapsed() <= Duration::from_secs(LOCK_SECONDS) => t.count += 1,
            _ => {
                self.trackers.insert(key.to_owned(), fresh);
            }
        }
    }

    fn add_success(&mut self, key: &str) {
        self.trackers.remove(key);
    }
}

/// A running ERPNext emulator on 127.0.0.1.
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
                        .title_case_headers(true)
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

    /// Every credential check, in order.
    pub fn login_attempts(&self) -> Vec<Attempt> {
        self.state.lock().unwrap().attempts.clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Forgets the recorded attempts and requests (sessions and lockout counters stay).
    pub fn clear(&self) {
        let mut st = self.state.lock().unwrap();
        st.attempts.clear();
        st.requests.clear();
    }
}

/// What one request looks like once parsed.
struct Ctx {
    method: Method,
    /// Raw path as sent (for the echo and `Attempt::path`).
    raw_path: String,
    /// Percent-decoded path (what Frappe routes on).
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    params: Vec<(String, String)>,
    /// Frappe's `request_ip`.
    request_ip: String,
    /// The first X-Forwarded-For entry.
    xff: Option<String>,
    /// Cookies get `Secure` (gunicorn trusts X-Forwarded-Proto from loopback).
    secure: bool,
}

impl Ctx {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_param(&self, name: &str) -> bool {
        self.params.iter().any(|(k, _)| k == name)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Frappe answers errors as JSON for `/api/` (unless Accept starts with `text`) or for a
    /// client with an Accept header that asks for JSON or says XMLHttpRequest.
    fn json_errors(&self) -> bool {
        let accept = self.header("accept").unwrap_or("");
        let ajax = self.header("x-requested-with") == Some("XMLHttpRequest");
        (!accept.is_empty() && (ajax || accept.contains("application/json")))
            || (self.path.starts_with("/api/") && !accept.starts_with("text"))
    }

    fn cookie(&self, name: &str) -> Option<String> {
        for value in self.headers.get_all("cookie") {
            let Ok(text) = value.to_str() else { continue };
            for pair in text.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k.trim() == name
                {
                    return Some(v.trim().to_owned());
                }
            }
        }
        None
    }
}

/// A response before it becomes HTTP.
struct Reply {
    status: u16,
    content_type: Option<&'static str>,
    body: String,
    cookies: Vec<String>,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: Some("application/json"),
            body,
            cookies: Vec::new(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    fn html(status: u16, body: String) -> Reply {
        Reply {
            content_type: Some("text/html; charset=utf-8"),
            ..Reply::json(status, body)
        }
    }

    fn with_cookies(mut self, cookies: Vec<String>) -> Reply {
        self.cookies = cookies;
        self
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
        process(&mut st, &ctx)
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    build_response(reply)
}

fn build_response(reply: Reply) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reply.status).unwrap();
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = status;
    let reason = status
        .canonical_reason()
        .unwrap_or("UNKNOWN")
        .to_uppercase();
    resp.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::try_from(reason.into_bytes()).unwrap());
    let h = resp.headers_mut();
    h.insert("server", HeaderValue::from_static("gunicorn"));
    h.insert("connection", HeaderValue::from_static("close"));
    if let Some(ct) = reply.content_type {
        h.insert("content-type", HeaderValue::from_static(ct));
    }
    for (k, v) in reply.headers {
        h.append(k, HeaderValue::from_str(&v).unwrap());
    }
    for c in reply.cookies {
        h.append("set-cookie", HeaderValue::from_str(&c).unwrap());
    }
    resp
}

fn parse_request(method: &Method, uri: &http::Uri, headers: &HeaderMap, body: &[u8]) -> Ctx {
    let raw_path = uri.path().to_owned();
    let query = uri.query().map(str::to_owned);
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json =
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    let mut params: Vec<(String, String)> = Vec::new();
    if !body.is_empty() && is_json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => {
                for (k, v) in map {
                    params.push((k, json_param(&v)));
                }
            }
            Ok(other @ Value::Array(_)) => params.push(("data".to_owned(), other.to_string())),
            _ => {}
        }
    } else {
        let mut form = Vec::new();
        if mime == "application/x-www-form-urlencoded" {
            form = parse_urlencoded(&String::from_utf8_lossy(body));
        } else if mime == "multipart/form-data"
            && let Some(b) = boundary(content_type)
        {
            form = parse_multipart(body, &b);
        }
        let query_pairs = query.as_deref().map(parse_urlencoded).unwrap_or_default();
        // dict(args).update(form): first value per key within each, form wins.
        for (k, v) in first_values(query_pairs) {
            params.push((k, v));
        }
        for (k, v) in first_values(form) {
            if let Some(slot) = params.iter_mut().find(|(pk, _)| *pk == k) {
                slot.1 = v;
            } else {
                params.push((k, v));
            }
        }
    }
    params.retain(|(k, _)| k != "_");
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let xff =
        header("x-forwarded-for").map(|v| v.split(',').next().unwrap_or("").trim().to_owned());
    let request_ip = xff
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| header("remote-addr").map(str::to_owned))
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let secure = header("x-forwarded-proto")
        .map(|p| {
            p.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("https")
        })
        .unwrap_or(false);
    Ctx {
        method: method.clone(),
        path: percent_decode(&raw_path, false),
        raw_path,
        query,
        headers: headers.clone(),
        params,
        request_ip,
        xff,
        secure,
    }
}

fn json_param(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn first_values(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in pairs {
        if !out.iter().any(|(ok, _)| *ok == k) {
            out.push((k, v));
        }
    }
    out
}

/// The whole application: login, session, CSRF, API auth, dispatch.
fn process(st: &mut State, ctx: &Ctx) -> Reply {
    let is_login = ctx.method != Method::OPTIONS
        && (ctx.param("cmd") == Some("login") || ctx.path == "/api/method/login");
    if is_login {
        return login(st, ctx);
    }

    // Resume the session from the `sid` parameter or cookie.
    let sid = ctx
        .param("sid")
        .map(str::to_owned)
        .or_else(|| ctx.cookie("sid"))
        .filter(|s| !s.is_empty() && s != "Guest");
    let mut expired = false;
    let mut session: Option<(String, &'static User)> = None;
    if let Some(sid) = sid {
        match st.sessions.get(&sid) {
            Some(s) => session = Some((sid, s.user)),
            None => expired = true,
        }
    }
    let cookies = |session: &Option<(String, &'static User)>| -> Vec<String> {
        match session {
            Some((sid, u)) => session_cookies(sid, u.full_name, u.name, true, ctx.secure),
            None => {
                let mut c = guest_cookies(ctx.secure);
                if expired {
                    c.extend(expiring_cookies());
                }
                c
            }
        }
    };
    let prefix = |pairs: Vec<(&'static str, Value)>| -> String {
        let mut all = Vec::new();
        if expired {
            all.push(("session_expired", json!(1)));
        }
        all.extend(pairs);
        obj(&all)
    };

    // CSRF, only for sessions that hold a token (they loaded /app).
    if matches!(
        ctx.method,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    ) && let Some((sid, _)) = &session
        && let Some(token) = st.sessions.get(sid).and_then(|s| s.csrf.clone())
    {
        let sent = ctx
            .header("x-frappe-csrf-token")
            .or_else(|| ctx.param("csrf_token"));
        if sent != Some(token.as_str()) {
            let body = obj(&[
                ("exc_type", json!("CSRFTokenError")),
                (
                    "_server_messages",
                    json!(server_messages("Invalid Request")),
                ),
            ]);
            return error_reply(ctx, 400, body, "Invalid Request").with_cookies(cookies(&session));
        }
    }

    // validate_auth: an Authorization header of exactly two space-separated parts.
    let mut api_user: Option<&'static str> = None;
    if let Some(auth) = ctx.header("authorization") {
        let parts: Vec<&str> = auth.split(' ').collect();
        if parts.len() == 2 {
            let outcome = api_credentials(parts[0], parts[1]);
            let (user, ok) = match &outcome {
                ApiAuth::Ok => (API_KEY.to_owned(), true),
                ApiAuth::Bad(key) => (key.clone(), false),
                ApiAuth::Undecodable => (String::new(), false),
            };
            st.attempts.push(Attempt {
                user,
                ok,
                path: ctx.raw_path.clone(),
                client_ip: ctx.xff.clone(),
            });
            match outcome {
                ApiAuth::Ok => {
                    if session.is_none() {
                        api_user = Some(API_USER);
                    }
                }
                ApiAuth::Undecodable => {
                    let msg =
                        "Failed to decode token, please provide a valid base64-encoded token.";
                    let body = throw_body(
                        "InvalidAuthorizationToken",
                        &format!("frappe.exceptions.InvalidAuthorizationToken: {msg}"),
                        &tb_api_keys_decode(msg),
                        Some(msg),
                    );
                    return error_reply(ctx, 400, body, msg).with_cookies(cookies(&session));
                }
                ApiAuth::Bad(_) => {
                    if session.is_none() {
                        let body = obj(&[
                            ("exception", json!("frappe.exceptions.AuthenticationError")),
                            ("exc_type", json!("AuthenticationError")),
                            ("exc", json!(exc(&tb_validate_auth()))),
                        ]);
                        let mut c = guest_cookies(ctx.secure);
                        c.extend(expiring_cookies());
                        return error_reply(ctx, 401, body, "Not Permitted").with_cookies(c);
                    }
                }
            }
        }
    }
    let user_name: &str = match (&session, api_user) {
        (Some((_, u)), _) => u.name,
        (None, Some(u)) => u,
        (None, None) => "Guest",
    };
    let echo = || {
        Reply::json(
            200,
            prefix(vec![
                ("path", json!(ctx.raw_path)),
                ("user", json!(user_name)),
            ]),
        )
    };

    if ctx.method == Method::OPTIONS {
        return Reply::html(200, String::new()).with_cookies(cookies(&session));
    }

    // The effective RPC method: `cmd` on any path, else /api/(v1/)method/<name>.
    let cmd = ctx.param("cmd").filter(|c| !c.is_empty());
    let method: Option<String> = if let Some(c) = cmd {
        Some(c.to_owned())
    } else if let Some(rest) = ctx.path.strip_prefix("/api/") {
        let rest = rest.strip_prefix("v1/").unwrap_or(rest);
        if let Some(m) = rest.strip_prefix("method/") {
            Some(m.split('/').next().unwrap_or("").to_owned())
        } else if let Some(m) = ctx.path.strip_prefix("/api/v2/method/") {
            if m.split('/').next() == Some("login") {
                return Reply::json(200, prefix(vec![])).with_cookies(cookies(&session));
            }
            return echo().with_cookies(cookies(&session));
        } else if ["resource/", "v2/document/", "v2/doctype/"]
            .iter()
            .any(|p| rest.starts_with(p))
        {
            return echo().with_cookies(cookies(&session));
        } else {
            let body = prefix(vec![("exc_type", json!("DoesNotExistError"))]);
            return error_reply(ctx, 404, body, "Not Found").with_cookies(cookies(&session));
        }
    } else {
        None
    };

    if let Some(m) = method {
        return match m.as_str() {
            "" => {
                let body = prefix(vec![("exc_type", json!("DoesNotExistError"))]);
                error_reply(ctx, 404, body, "Not Found").with_cookies(cookies(&session))
            }
            "login" => Reply::json(200, prefix(vec![])).with_cookies(cookies(&session)),
            "logout" => {
                if let Some((sid, _)) = &session {
                    st.sessions.remove(sid);
                }
                let body = obj(&[
                    ("message", json!("No App")),
                    ("home_page", json!("/login")),
                    ("full_name", json!("Guest")),
                ]);
                let mut c = guest_cookies(ctx.secure);
                c.extend(expiring_cookies());
                Reply::json(200, body).with_cookies(c)
            }
            "frappe.auth.get_logged_user" => {
                if user_name == "Guest" {
                    permission_error(ctx, expired).with_cookies(cookies(&session))
                } else {
                    Reply::json(200, prefix(vec![("message", json!(user_name))]))
                        .with_cookies(cookies(&session))
                }
            }
            "frappe.core.doctype.user.user.reset_password" => {
                if ctx.method != Method::POST {
                    return permission_error(ctx, expired).with_cookies(cookies(&session));
                }
                let body = match ctx.param("user").and_then(find_user) {
                    Some(u) if u.name == "Administrator" => {
                        Reply::json(200, prefix(vec![("message", json!("not allowed"))]))
                    }
                    Some(u) => Reply::json(
                        200,
                        prefix(vec![(
                            "_server_messages",
                            json!(server_messages_titled(
                                &format!(
                                    "Password reset instructions have been sent to {}'s email",
                                    u.full_name
                                ),
                                "Password Email Sent",
                                "blue",
                                false
                            )),
                        )]),
                    ),
                    None => Reply::json(404, prefix(vec![("message", json!("not found"))])),
                };
                body.with_cookies(cookies(&session))
            }
            "frappe.core.doctype.user.user.sign_up" => {
                let message = match ctx.param("email").and_then(find_user) {
                    Some(_) => json!([0, "Already Registered"]),
                    None => json!([1, "Please check your email for verification"]),
                };
                Reply::json(200, prefix(vec![("message", message)])).with_cookies(cookies(&session))
            }
            "ping" => Reply::json(200, prefix(vec![("message", json!("pong"))]))
                .with_cookies(cookies(&session)),
            "boom" => {
                let body = prefix(vec![
                    ("exception", json!("ZeroDivisionError: division by zero")),
                    ("exc_type", json!("ZeroDivisionError")),
                    ("exc", json!(exc(&tb_boom()))),
                ]);
                error_reply(ctx, 500, body, "division by zero").with_cookies(cookies(&session))
            }
            _ => echo().with_cookies(cookies(&session)),
        };
    }

    // A stand-in login page: a plain form (Frappe's real one posts the same
    // fields by XHR), so a browser test can sign in without script.
    if ctx.path == "/login" && ctx.method == Method::GET {
        let html = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Login</title></head><body>\n\
<form method=\"post\" action=\"/\"><input type=\"hidden\" name=\"cmd\" value=\"login\">\n\
<label>Email <input id=\"usr\" name=\"usr\"></label><label>Password <input id=\"pwd\" name=\"pwd\" type=\"password\"></label>\n\
<button id=\"login\" type=\"submit\">Login</button></form></body></html>\n";
        return Reply::html(200, html.to_owned()).with_cookies(cookies(&session));
    }

    // The Desk shell.
    if ctx.path == "/app" || ctx.path.starts_with("/app/") {
        let Some((sid, user)) = &session else {
            let mut target = ctx.raw_path.clone();
            if let Some(q) = ctx.query.as_deref().filter(|q| !q.is_empty()) {
                target.push('?');
                target.push_str(q);
            }
            let mut r = Reply::html(301, String::new()).with_cookies(cookies(&session));
            r.headers.push((
                "location",
                format!("/login?redirect-to={}", quote(&target, b"", true)),
            ));
            r.headers.push((
                "cache-control",
                "no-store, no-cache, must-revalidate".to_owned(),
            ));
            return r;
        };
        let token = {
            let s = st.sessions.get_mut(sid).unwrap();
            s.csrf.get_or_insert_with(|| random_hex(56)).clone()
        };
        let html = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Frappe</title></head>\n<body>\n\
<script>frappe.boot = {{\"user\": {{\"name\": {}}}}};\nfrappe.csrf_token = \"{token}\";</script>\n</body></html>\n",
            json!(user.name)
        );
        let mut r = Reply::html(200, html).with_cookies(cookies(&session));
        r.headers.push(("x-page-name", "app".to_owned()));
        r.headers.push(("x-from-cache", "False".to_owned()));
        return r;
    }

    echo().with_cookies(cookies(&session))
}

enum ApiAuth {
    Ok,
    Bad(String),
    Undecodable,
}

/// `validate_auth_via_api_keys`: `token key:secret` or `Basic base64(key:secret)`.
fn api_credentials(scheme: &str, token: &str) -> ApiAuth {
    let pair = match scheme.to_ascii_lowercase().as_str() {
        "token" => token.to_owned(),
        "basic" => match b64_decode_python(token) {
            Some(bytes) => match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(_) => return ApiAuth::Bad(String::new()),
            },
            None => return ApiAuth::Undecodable,
        },
        _ => return ApiAuth::Bad(String::new()),
    };
    let parts: Vec<&str> = pair.split(':').collect();
    if parts.len() != 2 {
        return ApiAuth::Bad(parts[0].to_owned());
    }
    if parts[0] == API_KEY && parts[1] == API_SECRET {
        ApiAuth::Ok
    } else {
        ApiAuth::Bad(parts[0].to_owned())
    }
}

/// `LoginManager.login` / `authenticate` / 2FA / `post_login`.
fn login(st: &mut State, ctx: &Ctx) -> Reply {
    let mut delay = Duration::ZERO;
    let record = |st: &mut State, user: &str, ok: bool| {
        st.attempts.push(Attempt {
            user: user.to_owned(),
            ok,
            path: ctx.raw_path.clone(),
            client_ip: ctx.xff.clone(),
        });
    };

    // get_cached_user_pass: the 2FA step carries tmp_id instead of usr/pwd.
    st.pending
        .retain(|_, p| p.created.elapsed() < Duration::from_secs(TMP_ID_SECONDS));
    let tmp_id = ctx.param("tmp_id").filter(|t| !t.is_empty());
    let cached: Option<(&'static User, String)> = tmp_id
        .and_then(|t| st.pending.get(t))
        .map(|p| (p.user, p.pwd.clone()));
    let (usr, pwd) = match &cached {
        Some((u, p)) => (u.name.to_owned(), p.clone()),
        None => (
            ctx.param("usr").unwrap_or("").to_owned(),
            ctx.param("pwd").unwrap_or("").to_owned(),
        ),
    };
    if usr.is_empty() || pwd.is_empty() {
        record(st, &usr, false);
        return fail(ctx, "Incomplete login details", &tb_incomplete(), delay);
    }
    let user = find_user(&usr);
    if user.is_some() {
        delay = HASH_DELAY;
    }
    let ip_key = format!("ip|{}", ctx.request_ip);
    if !st.allowed(&ip_key) {
        record(st, &usr, false);
        return locked(ctx, &tb_locked(false), delay);
    }
    let Some(u) = user else {
        st.add_failure(&ip_key);
        record(st, &usr, false);
        return fail(ctx, "Invalid login credentials", &tb_invalid(true), delay);
    };
    let user_key = format!("user|{}", u.name);
    let ignore_tracker = u.two_factor && ctx.has_param("otp");
    if !ignore_tracker && !st.allowed(&user_key) {
        record(st, &usr, false);
        return locked(ctx, &tb_locked(true), delay);
    }
    if u.password != pwd {
        if !ignore_tracker {
            st.add_failure(&user_key);
        }
        st.add_failure(&ip_key);
        record(st, &usr, false);
        return fail(ctx, "Invalid login credentials", &tb_invalid(false), delay);
    }
    if !ignore_tracker {
        st.add_success(&user_key);
    }
    st.add_success(&ip_key);

    if u.password_expired {
        record(st, &usr, true);
        let body = obj(&[
            ("message", json!("Password Reset")),
            (
                "redirect_to",
                json!(format!(
                    "/update-password?key={}&password_expired=true",
                    random_hex(56)
                )),
            ),
        ]);
        let mut r = Reply::json(200, body);
        r.delay = delay;
        return r;
    }

    if u.two_factor {
        let otp = ctx.param("otp").filter(|o| !o.is_empty());
        let Some(otp) = otp else {
            let id = random_hex(8);
            st.pending.insert(
                id.clone(),
                Pending {
                    user: u,
                    pwd,
                    created: Instant::now(),
                },
            );
            record(st, &usr, true);
            let body = obj(&[
                ("verification", json!({"method": "OTP App", "setup": true})),
                ("tmp_id", json!(id)),
            ]);
            let mut r = Reply::json(200, body);
            r.delay = delay;
            return r;
        };
        if cached.is_none() {
            record(st, &usr, false);
            let msg = "Login session expired, refresh page to retry";
            let body = obj(&[
                (
                    "exception",
                    json!(format!("frappe.twofactor.ExpiredLoginException: {msg}")),
                ),
                ("exc_type", json!("ExpiredLoginException")),
                ("exc", json!(exc(&tb_otp_expired()))),
            ]);
            let mut r = error_reply(ctx, 500, body, msg);
            r.delay = delay;
            return r;
        }
        if !st.allowed(&user_key) {
            record(st, &usr, false);
            return locked(ctx, &tb_locked_otp(), delay);
        }
        if otp != OTP_CODE {
            st.add_failure(&user_key);
            record(st, &usr, false);
            return fail(ctx, "Incorrect Verification code", &tb_wrong_otp(), delay);
        }
        st.add_success(&user_key);
    }

    // post_login: a new session and its cookies.
    let sid = random_hex(56);
    st.sessions.insert(
        sid.clone(),
        Session {
            user: u,
            csrf: None,
        },
    );
    record(st, &usr, true);
    let body = obj(&[
        ("message", json!("Logged In")),
        ("home_page", json!("/app")),
        ("full_name", json!(u.full_name)),
    ]);
    let mut r = Reply::json(200, body).with_cookies(session_cookies(
        &sid,
        u.full_name,
        u.name,
        true,
        ctx.secure,
    ));
    r.delay = delay;
    r
}

/// `LoginManager.fail`: 401, the message, the traceback, and no cookies.
fn fail(ctx: &Ctx, message: &str, traceback: &str, delay: Duration) -> Reply {
    let body = obj(&[
        ("message", json!(message)),
        ("exception", json!("frappe.exceptions.AuthenticationError")),
        ("exc_type", json!("AuthenticationError")),
        ("exc", json!(exc(traceback))),
    ]);
    let mut r = error_reply(ctx, 401, body, message);
    r.delay = delay;
    r
}

/// The tracker refused: 500 SecurityException, no `message`, no cookies.
fn locked(ctx: &Ctx, traceback: &str, delay: Duration) -> Reply {
    let msg = format!("Your account has been locked and will resume after {LOCK_SECONDS} seconds");
    let body = throw_body(
        "SecurityException",
        &format!("frappe.exceptions.SecurityException: {msg}"),
        traceback,
        Some(&msg),
    );
    let mut r = error_reply(ctx, 500, body, &msg);
    r.delay = delay;
    r
}

fn permission_error(ctx: &Ctx, expired: bool) -> Reply {
    let mut pairs = Vec::new();
    if expired {
        pairs.push(("session_expired", json!(1)));
    }
    pairs.extend([
        (
            "exception",
            json!("frappe.exceptions.PermissionError: Not permitted"),
        ),
        ("exc_type", json!("PermissionError")),
        ("exc", json!(exc(&tb_not_whitelisted()))),
        ("_server_messages", json!(server_messages("Not permitted"))),
    ]);
    error_reply(ctx, 403, obj(&pairs), "Not permitted")
}

/// A body for an exception raised with `frappe.throw` (it also leaves a message).
fn throw_body(exc_type: &str, exception: &str, traceback: &str, message: Option<&str>) -> String {
    let mut pairs = vec![
        ("exception", json!(exception)),
        ("exc_type", json!(exc_type)),
        ("exc", json!(exc(traceback))),
    ];
    if let Some(m) = message {
        pairs.push(("_server_messages", json!(server_messages(m))));
    }
    obj(&pairs)
}

/// JSON for API/XHR/JSON clients, otherwise Frappe's HTML error page with the same status.
fn error_reply(ctx: &Ctx, status: u16, json_body: String, message: &str) -> Reply {
    if ctx.json_errors() {
        return Reply::json(status, json_body);
    }
    let title = match status {
        400 => "Invalid Request",
        401 => "Session Expired",
        403 => "Not Permitted",
        404 => "Not Found",
        _ => "Server Error",
    };
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
<body>\n<div class=\"page-card\">\n<h5 class=\"page-card-head\">{title}</h5>\n<p>{}</p>\n</div>\n</body>\n</html>\n",
        html_escape(message)
    );
    Reply::html(status, html)
}

// ---------------------------------------------------------------------------------------------
// Cookies

fn session_cookies(
    sid: &str,
    full_name: &str,
    user: &str,
    system_user: bool,
    secure: bool,
) -> Vec<String> {
    let now = unix_now();
    let s = if secure { "; Secure" } else { "" };
    vec![
        format!(
            "sid={}; Expires={}; Max-Age={SESSION_MAX_AGE}{s}; HttpOnly; Path=/; SameSite=Lax",
            quote(sid, b"/", false),
            http_date(now + SESSION_MAX_AGE)
        ),
        format!(
            "system_user={}{s}; Path=/; SameSite=Lax",
            if system_user { "yes" } else { "no" }
        ),
        format!(
            "full_name={}{s}; Path=/; SameSite=Lax",
            quote(full_name, b"/", false)
        ),
        format!(
            "user_id={}{s}; Path=/; SameSite=Lax",
            quote(user, b"/", false)
        ),
        format!("user_image={s}; Path=/; SameSite=Lax"),
    ]
}

fn guest_cookies(secure: bool) -> Vec<String> {
    session_cookies("Guest", "Guest", "Guest", false, secure)
}

/// `clear_cookies`: the five names again, empty and expired yesterday.
fn expiring_cookies() -> Vec<String> {
    let yesterday = http_date(unix_now() - 86_400);
    ["full_name", "user_id", "sid", "user_image", "system_user"]
        .iter()
        .map(|n| format!("{n}=; Expires={yesterday}; Path=/"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// A JSON object with keys in the given order, compact like Frappe's responses.
fn obj(pairs: &[(&str, Value)]) -> String {
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
    s
}

/// `exc`: `json.dumps([traceback])`.
fn exc(traceback: &str) -> String {
    Value::from(vec![Value::from(traceback)]).to_string()
}

/// `_server_messages`: a JSON list of JSON strings (Python's default separators).
fn server_messages(message: &str) -> String {
    server_messages_titled(message, "Message", "red", true)
}

fn server_messages_titled(message: &str, title: &str, indicator: &str, raised: bool) -> String {
    let mut inner = format!(
        "{{\"message\": {}, \"title\": {}, \"indicator\": {}",
        Value::from(message),
        Value::from(title),
        Value::from(indicator)
    );
    if raised {
        inner.push_str(&format!(
            ", \"raise_exception\": 1, \"__frappe_exc_id\": \"{}\"",
            random_hex(10)
        ));
    }
    inner.push('}');
    Value::from(vec![Value::from(inner)]).to_string()
}

// ---------------------------------------------------------------------------------------------
// Tracebacks (Frappe 15.44.2 layout, Python 3.11 with carets)

/// file, line, function, source line, the part the carets underline.
type Frame = (
    &'static str,
    u32,
    &'static str,
    &'static str,
    Option<&'static str>,
);

const APP: &str = "apps/frappe/frappe/app.py";
const AUTH: &str = "apps/frappe/frappe/auth.py";
const INIT: &str = "apps/frappe/frappe/__init__.py";
const TWOFACTOR: &str = "apps/frappe/frappe/twofactor.py";
const HANDLER: &str = "apps/frappe/frappe/handler.py";

fn traceback(frames: &[Frame], last: &str) -> String {
    let mut s = String::from("Traceback (most recent call last):\n");
    for (file, line, func, code, under) in frames {
        s.push_str(&format!(
            "  File \"{file}\", line {line}, in {func}\n    {code}\n"
        ));
        if let Some(part) = under
            && let Some(at) = code.find(part)
        {
            s.push_str(&format!(
                "    {}{}\n",
                " ".repeat(at),
                "^".repeat(part.len())
            ));
        }
    }
    s.push_str(last);
    s.push('\n');
    s
}

/// Frames from the WSGI entry down to `LoginManager.login`.
fn login_head() -> Vec<Frame> {
    vec![
        (APP, 95, "application", "init_request(request)", None),
        (
            APP,
            211,
            "init_request",
            "frappe.local.http_request = HTTPRequest()",
            Some("HTTPRequest()"),
        ),
        (AUTH, 52, "__init__", "self.set_session()", None),
        (
            AUTH,
            85,
            "set_session",
            "frappe.local.login_manager = LoginManager()",
            Some("LoginManager()"),
        ),
        (
            AUTH,
            134,
            "__init__",
            "if self.login() is False:",
            Some("self.login()"),
        ),
    ]
}

const FAIL_FRAME: Frame = (AUTH, 370, "fail", "raise frappe.AuthenticationError", None);
const AUTH_ERROR: &str = "frappe.exceptions.AuthenticationError";

fn tb_invalid(unknown_user: bool) -> String {
    let mut f = login_head();
    f.push((
        AUTH,
        226,
        "login",
        "self.authenticate(user=user, pwd=pwd)",
        None,
    ));
    f.push(if unknown_user {
        (
            AUTH,
            244,
            "authenticate",
            "self.fail(\"Invalid login credentials\", user=_raw_user_name)",
            None,
        )
    } else {
        (
            AUTH,
            255,
            "authenticate",
            "self.fail(\"Invalid login credentials\", user=user.name)",
            None,
        )
    });
    f.push(FAIL_FRAME);
    traceback(&f, AUTH_ERROR)
}

fn tb_incomplete() -> String {
    let mut f = login_head();
    f.push((
        AUTH,
        226,
        "login",
        "self.authenticate(user=user, pwd=pwd)",
        None,
    ));
    f.push((
        AUTH,
        238,
        "authenticate",
        "self.fail(_(\"Incomplete login details\"), user=user)",
        None,
    ));
    f.push(FAIL_FRAME);
    traceback(&f, AUTH_ERROR)
}

fn throw_tail(f: &mut Vec<Frame>) {
    f.push((INIT, 603, "throw", "msgprint(", None));
    f.push((INIT, 568, "msgprint", "_raise_exception()", None));
    f.push((INIT, 519, "_raise_exception", "raise exc", None));
}

const LOCKED_LAST: &str = "frappe.exceptions.SecurityException: Your account has been locked and will resume after 60 seconds";

fn tb_locked(user_tracker: bool) -> String {
    let mut f = login_head();
    f.push((
        AUTH,
        226,
        "login",
        "self.authenticate(user=user, pwd=pwd)",
        None,
    ));
    f.push(if user_tracker {
        (
            AUTH,
            252,
            "authenticate",
            "user_tracker = None if ignore_tracker else get_login_attempt_tracker(user.name)",
            Some("get_login_attempt_tracker(user.name)"),
        )
    } else {
        (
            AUTH,
            241,
            "authenticate",
            "ip_tracker = get_login_attempt_tracker(frappe.local.request_ip)",
            Some("get_login_attempt_tracker(frappe.local.request_ip)"),
        )
    });
    f.push((
        AUTH,
        612,
        "get_login_attempt_tracker",
        "frappe.throw(",
        None,
    ));
    throw_tail(&mut f);
    traceback(&f, LOCKED_LAST)
}

fn tb_locked_otp() -> String {
    let mut f = login_head();
    f.push((
        AUTH,
        233,
        "login",
        "if not confirm_otp_token(self):",
        Some("confirm_otp_token(self)"),
    ));
    f.push((
        TWOFACTOR,
        128,
        "confirm_otp_token",
        "tracker = get_login_attempt_tracker(login_manager.user)",
        Some("get_login_attempt_tracker(login_manager.user)"),
    ));
    f.push((
        AUTH,
        612,
        "get_login_attempt_tracker",
        "frappe.throw(",
        None,
    ));
    throw_tail(&mut f);
    traceback(&f, LOCKED_LAST)
}

fn tb_wrong_otp() -> String {
    let mut f = login_head();
    f.push((
        AUTH,
        233,
        "login",
        "if not confirm_otp_token(self):",
        Some("confirm_otp_token(self)"),
    ));
    f.push((
        TWOFACTOR,
        150,
        "confirm_otp_token",
        "login_manager.fail(_(\"Incorrect Verification code\"), login_manager.user)",
        None,
    ));
    f.push(FAIL_FRAME);
    traceback(&f, AUTH_ERROR)
}

fn tb_otp_expired() -> String {
    let mut f = login_head();
    f.push((
        AUTH,
        233,
        "login",
        "if not confirm_otp_token(self):",
        Some("confirm_otp_token(self)"),
    ));
    f.push((
        TWOFACTOR,
        124,
        "confirm_otp_token",
        "raise ExpiredLoginException(_(\"Login session expired, refresh page to retry\"))",
        None,
    ));
    traceback(
        &f,
        "frappe.twofactor.ExpiredLoginException: Login session expired, refresh page to retry",
    )
}

fn tb_validate_auth() -> String {
    traceback(
        &[
            (APP, 96, "application", "validate_auth()", None),
            (
                AUTH,
                636,
                "validate_auth",
                "raise frappe.AuthenticationError",
                None,
            ),
        ],
        AUTH_ERROR,
    )
}

fn tb_api_keys_decode(msg: &str) -> String {
    let mut f: Vec<Frame> = vec![
        (APP, 96, "application", "validate_auth()", None),
        (
            AUTH,
            627,
            "validate_auth",
            "validate_auth_via_api_keys(authorization_header)",
            None,
        ),
        (
            AUTH,
            698,
            "validate_auth_via_api_keys",
            "frappe.throw(",
            None,
        ),
    ];
    throw_tail(&mut f);
    traceback(
        &f,
        &format!("frappe.exceptions.InvalidAuthorizationToken: {msg}"),
    )
}

fn rpc_head() -> Vec<Frame> {
    vec![
        (
            APP,
            114,
            "application",
            "response = frappe.api.handle(request)",
            Some("frappe.api.handle(request)"),
        ),
        (
            "apps/frappe/frappe/api/__init__.py",
            49,
            "handle",
            "data = endpoint(**arguments)",
            Some("endpoint(**arguments)"),
        ),
        (
            "apps/frappe/frappe/api/v1.py",
            36,
            "handle_rpc_call",
            "return frappe.handler.handle()",
            Some("frappe.handler.handle()"),
        ),
        (
            HANDLER,
            49,
            "handle",
            "data = execute_cmd(cmd)",
            Some("execute_cmd(cmd)"),
        ),
    ]
}

fn tb_not_whitelisted() -> String {
    let mut f = rpc_head();
    f.push((HANDLER, 77, "execute_cmd", "is_whitelisted(method)", None));
    f.push((
        HANDLER,
        105,
        "is_whitelisted",
        "throw_permission_error()",
        None,
    ));
    f.push((
        HANDLER,
        115,
        "throw_permission_error",
        "frappe.throw(_(\"Not permitted\"), frappe.PermissionError)",
        None,
    ));
    throw_tail(&mut f);
    traceback(&f, "frappe.exceptions.PermissionError: Not permitted")
}

fn tb_boom() -> String {
    let mut f = rpc_head();
    f.push((
        HANDLER,
        85,
        "execute_cmd",
        "return frappe.call(method, **frappe.form_dict)",
        Some("frappe.call(method, **frappe.form_dict)"),
    ));
    f.push((
        INIT,
        1775,
        "call",
        "return fn(*args, **newargs)",
        Some("fn(*args, **newargs)"),
    ));
    f.push((
        "apps/custom_app/custom_app/api.py",
        6,
        "boom",
        "return 1 / 0",
        Some("1 / 0"),
    ));
    traceback(&f, "ZeroDivisionError: division by zero")
}

// ---------------------------------------------------------------------------------------------
// Small parsers and encoders (kept here so this file depends on nothing but its own crate deps)

/// Python's `urllib.parse.quote` (`plus`: `quote_plus`, space becomes `+`).
fn quote(s: &str, safe: &[u8], plus: bool) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.contains(&b) {
            out.push(b as char);
        } else if plus && b == b' ' {
            out.push('+');
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
}

/// Python's non-strict `base64.b64decode`: other characters are dropped, padding is required.
fn b64_decode_python(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    };
    let mut data = Vec::new();
    let mut pads = 0;
    for &c in s.as_bytes() {
        if c == b'=' {
            pads += 1;
        } else if let Some(v) = val(c) {
            if pads > 0 {
                break;
            }
            data.push(v);
        }
    }
    let rem = data.len() % 4;
    if rem == 1 || (rem != 0 && rem + pads < 4) {
        return None;
    }
    let mut out = Vec::new();
    for chunk in data.chunks(4) {
        let mut n = 0u32;
        for (i, v) in chunk.iter().enumerate() {
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Some(out)
}

fn random_hex(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)]))
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `Wed, 18 Nov 2026 12:00:00 GMT`
fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
