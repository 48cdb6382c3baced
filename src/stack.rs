//! The request flow: THE one place where the order of checks is written.
//!
//! ```text
//!  connection (server::conn): TCP accept → TLS handshake (SNI, ALPN) → hyper
//!   1 client identity   TCP peer, or the X-Forwarded-For walk if the peer is a trusted proxy
//!   2 canonicalise      method, request-target form, Host (and SNI agreement), path
//!   3 site              the canonical host must belong to a site
//!   4 access            site allow list, then the first matching rule
//!   5 login guard       the app's parameters (body read only where a login or an
//!                       admin target may hide in it); per-IP rate, lockout check,
//!                       pre-counted failure
//!   5b step-up          administrative request → grant of this session's user, or
//!                       the challenge (303 for browsers, 401 JSON otherwise)
//!   6 forward           rewritten headers, canonical path, streamed body → upstream
//!   7 settle            classify a login answer, uniform failure, device cookie;
//!                       tracebacks scrubbed from ERPNext errors to anonymous clients
//!   8 finish            security headers, request id; audit, metrics, access log
//! ```
//!
//! Between 5 and 6 sits step-up: an administrative request (profile
//! detection or an `action = "step_up"` rule) needs a grant bound to the ERP
//! user who owns the session, else the challenge; an ERP logout ends the
//! session's grants. Paths under `/.erpguard/` are erpguard's own pages and
//! are never forwarded. Before the login guard sits the API token layer: a
//! request presenting an erpguard token (`Bearer eg_...`) is checked
//! (secret, expiry, networks, rate, ERP scope), given the upstream credential
//! its token names, and forwarded without the browser layers; a client
//! sending the app's own API credentials is refused unless the site allows
//! it. Slot for later: the guest-endpoint policy after step-up.
//!
//! Steps 1–4 are [`judge`], a pure function over the config that `erpguard
//! explain` calls too. Every refusal is a [`Denial`] turned into a response by
//! [`crate::error::rescue`] and seen by the audit log and metrics on the way.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

use crate::audit::AuditEvent;
use crate::body::{self, ResponseBody};
use crate::canon::{self, CanonHost, CanonPath};
use crate::client_ip::{self, ClientIp};
use crate::error::{self, Denial};
use crate::login::{self, GuardCx};
use crate::params::Params;
use crate::policy::{self, Access, Trace};
use crate::profile::{self, Attempt, RequestView};
use crate::proxy::{self, Forward, Outgoing, headers::ForwardedFacts};
use crate::runtime::{Runtime, SiteRuntime};
use crate::server::Shared;
use crate::stepup::{self, StepUpCx};
use crate::token;

/// Facts about the connection a request arrived on, set by the accept loop.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The TLS server name, on TLS connections.
    pub sni: Option<Arc<str>>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The peer's address as a header value, written once per connection
    /// rather than for every request forwarded on it.
    peer_value: HeaderValue,
}

impl ConnInfo {
    /// A connection from `peer`; `sni` only on TLS connections.
    pub fn new(peer: SocketAddr, sni: Option<Arc<str>>, tls: bool) -> ConnInfo {
        ConnInfo {
            peer,
            sni,
            tls,
            peer_value: ip_value(client_ip::normalize_ip(peer.ip())),
        }
    }

    /// `client` as a header value: the cached one when it is the peer.
    fn client_value(&self, client: IpAddr) -> HeaderValue {
        match client == client_ip::normalize_ip(self.peer.ip()) {
            true => self.peer_value.clone(),
            false => ip_value(client),
        }
    }
}

/// An address as a header value (its text is always a valid one).
fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from(ip.to_string()))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// What [`judge`] found out about an accepted request.
pub struct Judged<'rt> {
    /// The site that owns the request.
    pub site: &'rt SiteRuntime,
    /// Who the client is.
    pub client: ClientIp,
    /// The canonical host.
    pub host: CanonHost,
    /// The canonical path.
    pub path: CanonPath,
    /// The canonical path plus the raw query: what is forwarded.
    pub path_and_query: String,
    /// Which rule let it through.
    pub access: Access,
}

impl Judged<'_> {
    /// The raw query, as forwarded. The canonical path before it never holds
    /// a `?` (an encoded one is refused, a raw one ends the path).
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }
}

/// Per-request facts the audit log, metrics and access log report.
#[derive(Debug, Default)]
pub struct RequestCx {
    /// The id erpguard gave this request (sent upstream and to the client).
    pub request_id: String,
    /// The site, once known: its index in the generation's site list.
    pub site: Option<usize>,
    /// The client address, once known.
    pub client_ip: Option<IpAddr>,
    /// The canonical path (never the query, which may carry credentials).
    pub path: Option<String>,
    /// The ERP user a login attempt names (case-folded), once known.
    pub user: Option<String>,
}

/// Steps 1–4: decides whether a request may be forwarded, without side effects.
pub fn judge<'rt>(
    rt: &'rt Runtime,
    conn: &ConnInfo,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    cx: &mut RequestCx,
    trace: &mut Trace,
) -> Result<Judged<'rt>, Denial> {
    let client = client_identity(rt, conn, headers, trace)?;
    cx.client_ip = Some(client.addr);
    check_method(method)?;
    let host = request_host(uri, headers)?;
    trace.note(|| format!("host: {}", host.name));
    if let Some(sni) = &conn.sni
        && !sni.eq_ignore_ascii_case(&host.name)
    {
        return Err(Denial::Misdirected {
            sni: sni.to_string(),
            host: host.name,
        });
    }
    let (index, site) = rt
        .site_entry(&host.name)
        .ok_or_else(|| Denial::UnknownHost(host.name.clone()))?;
    cx.site = Some(index);
    trace.note(|| {
        format!(
            "site: {} (app {:?}, upstream {})",
            site.site.name, site.site.app, site.site.upstream.url
        )
    });
    let path =
        canon::canonical_path(uri.path()).map_err(|e| Denial::BadRequest(format!("path: {e}")))?;
    cx.path = Some(path.forward().to_owned());
    trace.note(|| format!("path: {:?} → canonical {:?}", uri.path(), path.forward()));
    let access = policy::check_access(&site.site, method, path.decoded(), client.addr, trace)?;
    let path_and_query = match uri.query() {
        Some(q) => format!("{}?{q}", path.forward()),
        None => path.forward().to_owned(),
    };
    Ok(Judged {
        site,
        client,
        host,
        path,
        path_and_query,
        access,
    })
}

/// Step 1: the TCP peer, or what trusted proxies say about the client.
fn client_identity(
    rt: &Runtime,
    conn: &ConnInfo,
    headers: &HeaderMap,
    trace: &mut Trace,
) -> Result<ClientIp, Denial> {
    let peer = client_ip::normalize_ip(conn.peer.ip());
    let xff = headers.get_all("x-forwarded-for");
    let client = client_ip::resolve(peer, xff, &rt.trusted)
        .map_err(|e| Denial::BadRequest(format!("X-Forwarded-For: {e}")))?;
    trace.note(|| match client.via_proxy {
        true => format!(
            "client: {} (from X-Forwarded-For; peer {peer} is a trusted proxy)",
            client.addr
        ),
        false if rt.trusted.contains(peer) => {
            format!("client: {} (trusted peer, no X-Forwarded-For)", client.addr)
        }
        false => format!(
            "client: {} (TCP peer; X-Forwarded-For ignored, the peer is not a trusted proxy)",
            client.addr
        ),
    });
    Ok(client)
}

/// `CONNECT` would make erpguard a tunnel and `TRACE` echoes credentials back.
fn check_method(method: &Method) -> Result<(), Denial> {
    if method == Method::CONNECT || method == Method::TRACE {
        return Err(Denial::MethodNotAllowed(method.to_string()));
    }
    Ok(())
}

/// Step 2: the host the request is for, from `Host` or the HTTP/2 authority.
///
/// HTTP/1.1 absolute-form (`GET http://other/ HTTP/1.1`) and asterisk-form are
/// refused: erpguard is not a forward proxy, and a target whose authority can
/// differ from `Host` is a classic way to be judged as one site and routed as
/// another.
fn request_host(uri: &Uri, headers: &HeaderMap) -> Result<CanonHost, Denial> {
    let bad = |why: &str| Denial::BadRequest(why.to_owned());
    let mut host_headers = headers.get_all(header::HOST).iter();
    let first = host_headers.next();
    if host_headers.next().is_some() {
        return Err(bad("more than one Host header"));
    }
    let from_header = match first {
        Some(v) => Some(v.to_str().map_err(|_| bad("Host is not ASCII"))?),
        None => None,
    };
    let raw = match (uri.authority(), from_header) {
        (Some(auth), Some(h)) if h != auth.as_str() => {
            return Err(bad("Host and request target disagree"));
        }
        (Some(auth), _) => auth.as_str(),
        (None, Some(h)) => h,
        (None, None) => return Err(bad("no Host")),
    };
    canon::canonical_host(raw).map_err(|e| Denial::BadRequest(format!("host: {e}")))
}

/// Serves one HTTPS request: judge, forward, finish. Never fails: every error
/// has become a response by the time this returns.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, std::convert::Infallible> {
    let started = Instant::now();
    // One generation for the whole request: judged and forwarded under the same config.
    let rt = shared.runtime.load_full();
    let mut cx = RequestCx {
        request_id: new_request_id(),
        ..RequestCx::default()
    };
    let method = req.method().clone();
    let json = error::wants_json(req.headers(), req.uri().path());
    if req.version() == Version::HTTP_11 && req.uri().scheme().is_some() {
        // Absolute-form on HTTP/1.1: hyper fills the authority from the target.
        let d = Denial::BadRequest("absolute-form request target".into());
        return Ok(respond(&shared, &rt, &cx, &method, Err(d), json, started));
    }
    let result = route(&rt, &shared, &conn, &mut cx, req).await;
    Ok(respond(&shared, &rt, &cx, &method, result, json, started))
}

/// Steps 1–7 for one request.
async fn route(
    rt: &Runtime,
    shared: &Shared,
    conn: &ConnInfo,
    cx: &mut RequestCx,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Denial> {
    let judged = judge(
        rt,
        conn,
        req.method(),
        req.uri(),
        req.headers(),
        cx,
        &mut Trace::off(),
    )?;
    let site = &judged.site.site;
    let mut out = Outgoing::new(req, site.max_body);
    let request_id = cx.request_id.clone();
    let su = step_up_cx(shared, &judged, &request_id);
    // The rare paths below (erpguard's own pages, tokens, logins, step-up)
    // are boxed: inline, their futures would be room that every request's
    // future carries and copies into its allocation.
    if stepup::is_reserved(judged.path.decoded()) {
        return Box::pin(own_page(&su, &judged, out)).await;
    }
    // One parameter read for tokens, the login guard and step-up; the body
    // is read only where the app could hide a login, a DocType or an admin
    // target in it.
    let token = token::presented(site, &out.parts.headers).map(str::to_owned);
    let params = read_params(site, &judged, &mut out, token.is_some()).await?;
    if let Some(text) = token {
        return Box::pin(with_token(shared, conn, cx, &judged, out, params, &text)).await;
    }
    token::refuse_direct(site, judged.path.decoded(), &out.parts.headers)?;
    let attempt = recognise_login(site, &judged, &out, params.as_ref())?;
    cx.user = attempt.as_ref().and_then(|a| a.user.clone());
    let guard = guard_cx(shared, &judged, cx);
    let admitted = match attempt {
        Some(attempt) => Some(Box::pin(login::admit(&guard, attempt, &out.parts.headers)).await?),
        None => None,
    };
    let stepped = step_up(&su, &judged, &out, params.as_ref()).await?;
    let ended = end_session(&su, &judged, &out, params.as_ref()).await?;
    stepup::cookie::strip_own(&mut out.parts.headers);
    // [The guest-endpoint policy slots in here.]
    let anonymous = profile::is_anonymous(site.app, &out.parts.headers);
    let resp = forward(conn, cx, &judged, out).await?;
    let mut resp = match admitted {
        Some(admitted) => Box::pin(settle_login(&guard, &su, site.app, admitted, resp)).await?,
        None => resp,
    };
    for cookie in ended {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    if stepped.is_some() && cx.user.is_none() {
        cx.user = stepped;
    }
    scrub(site.app, anonymous, resp).await
}

/// An API token request: authenticated, authorised and given the upstream
/// credential by the token layer, then forwarded. Tokens are scoped in ERP
/// terms, so the login guard and step-up (browser concerns) do not apply.
async fn with_token(
    shared: &Shared,
    conn: &ConnInfo,
    cx: &mut RequestCx,
    judged: &Judged<'_>,
    mut out: Outgoing,
    params: Option<Params>,
    text: &str,
) -> Result<Response<ResponseBody>, Denial> {
    let site = &judged.site.site;
    let request_id = cx.request_id.clone();
    let tcx = token::TokenCx {
        site,
        cache: &shared.tokens,
        store: &shared.store,
        key: &shared.key,
        audit: &shared.audit,
        client: judged.client.addr,
        request_id: &request_id,
    };
    let live = token::authenticate(&tcx, text).await?;
    cx.user = Some(format!("token:{}", live.record.id));
    let none = Params::default();
    let params = params.as_ref().unwrap_or(&none);
    let (method, headers) = (&out.parts.method, &out.parts.headers);
    token::authorize(
        &tcx,
        &live,
        method,
        judged.path.decoded(),
        judged.query(),
        headers,
        params,
    )?;
    token::inject(&tcx, &live, &mut out.parts.headers)?;
    stepup::cookie::strip_own(&mut out.parts.headers);
    let anonymous = profile::is_anonymous(site.app, &out.parts.headers);
    let resp = forward(conn, cx, judged, out).await?;
    scrub(site.app, anonymous, resp).await
}

fn step_up_cx<'a>(shared: &'a Shared, judged: &'a Judged<'_>, request_id: &'a str) -> StepUpCx<'a> {
    StepUpCx {
        site: &judged.site.site,
        store: &shared.store,
        key: &shared.key,
        audit: &shared.audit,
        client: judged.client.addr,
        request_id,
    }
}

/// Serves erpguard's own pages (the reserved prefix is never forwarded).
async fn own_page(
    su: &StepUpCx<'_>,
    judged: &Judged<'_>,
    mut out: Outgoing,
) -> Result<Response<ResponseBody>, Denial> {
    if !stepup::in_use(&judged.site.site) {
        return Err(Denial::NotFound);
    }
    let body = match out.parts.method == Method::POST {
        true => buffer_body(&mut out, stepup::endpoint::MAX_FORM).await?,
        false => Bytes::new(),
    };
    let authority = host_header(&judged.host)?;
    let req = stepup::endpoint::PageRequest {
        method: &out.parts.method,
        path: judged.path.decoded(),
        query: judged.query(),
        headers: &out.parts.headers,
        authority: authority.to_str().unwrap_or_default(),
        body,
    };
    stepup::endpoint::serve(su, req).await
}

/// Step-up: an administrative request needs a grant. Returns the user it
/// was checked for, if it was administrative.
async fn step_up(
    su: &StepUpCx<'_>,
    judged: &Judged<'_>,
    out: &Outgoing,
    params: Option<&Params>,
) -> Result<Option<String>, Denial> {
    let site = &judged.site.site;
    if !stepup::in_use(site) {
        return Ok(None);
    }
    let none = Params::default();
    let params = params.unwrap_or(&none);
    let (method, headers) = (&out.parts.method, &out.parts.headers);
    let path = judged.path.decoded();
    let Some(reason) = stepup::admin_reason(site, judged.access, method, path, headers, params)
    else {
        return Ok(None);
    };
    let back = stepup::return_target(method, &judged.path_and_query);
    // Boxed: a step-up is rare; see `route`.
    Box::pin(stepup::require(su, headers, params, reason, &back))
        .await
        .map(Some)
}

/// At an ERP logout: ends erpguard's session and grants before the request
/// goes on, and returns the cookies that clear them in the browser.
async fn end_session(
    su: &StepUpCx<'_>,
    judged: &Judged<'_>,
    out: &Outgoing,
    params: Option<&Params>,
) -> Result<Vec<HeaderValue>, Denial> {
    let site = &judged.site.site;
    let none = Params::default();
    let logout = stepup::in_use(site)
        && stepup::is_logout(
            site.app,
            &out.parts.method,
            judged.path.decoded(),
            params.unwrap_or(&none),
        );
    match logout {
        // Boxed: a logout is rare; see `route`.
        true => Box::pin(stepup::end(su, &out.parts.headers)).await,
        false => Ok(Vec::new()),
    }
}

/// Forwards the judged request (step 5).
async fn forward(
    conn: &ConnInfo,
    cx: &RequestCx,
    judged: &Judged<'_>,
    out: Outgoing,
) -> Result<Response<ResponseBody>, Denial> {
    let host_header = host_header(&judged.host)?;
    let port = judged.host.port.unwrap_or(if conn.tls { 443 } else { 80 });
    let fwd = Forward {
        site: &judged.site.site,
        client: &judged.site.client,
        path_and_query: &judged.path_and_query,
        host_header: host_header.clone(),
        facts: ForwardedFacts {
            client_ip: conn.client_value(judged.client.addr),
            proto: if conn.tls { "https" } else { "http" },
            host: host_header,
            port,
            request_id: &cx.request_id,
        },
    };
    proxy::forward(fwd, out).await
}

/// Reads the app's parameters where the login guard or step-up must see them
/// (buffering the body only if the profile must look inside it).
async fn read_params(
    site: &crate::config::Site,
    judged: &Judged<'_>,
    out: &mut Outgoing,
    token: bool,
) -> Result<Option<Params>, Denial> {
    let step_up = stepup::in_use(site) || token;
    if !site.login.enabled && !step_up {
        return Ok(None);
    }
    let view = request_view(judged, out);
    // A token's scope (an Akaunting company in the body, too) needs every
    // parameter the app could read.
    let token_body = token && crate::params::has_parameter_body(&out.parts.headers);
    let body = match token_body || profile::needs_body(site.app, &view) {
        true => buffer_body(out, site.inspect_body_max).await?,
        // Ordinary traffic on a site without step-up: no parameter parse at all.
        false if !step_up && !profile::may_be_attempt(site.app, &view) => return Ok(None),
        false => Bytes::new(),
    };
    profile::params(site.app, &request_view(judged, out), &body)
        .map(Some)
        .map_err(bad_params)
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(bad_params)
fn bad_params(e: crate::params::ParamError) -> Denial {
    Denial::BadRequest(format!("parameters: {e}"))
}

/// Recognises a credential check in the parameters read.
fn recognise_login(
    site: &crate::config::Site,
    judged: &Judged<'_>,
    out: &Outgoing,
    params: Option<&Params>,
) -> Result<Option<Attempt>, Denial> {
    let Some(params) = params.filter(|_| site.login.enabled) else {
        return Ok(None);
    };
    profile::recognise(site.app, &request_view(judged, out), params).map_err(bad_params)
}

/// What the profile looks at: the method, the canonical path, the raw query
/// and the headers of the request as it will be forwarded.
fn request_view<'a>(judged: &'a Judged<'_>, out: &'a Outgoing) -> RequestView<'a> {
    RequestView {
        method: &out.parts.method,
        path: judged.path.decoded(),
        query: judged.query(),
        headers: &out.parts.headers,
    }
}

/// Reads the whole body (up to `limit`, else 413) and puts the exact bytes back
/// to be forwarded: what was judged is what is sent.
async fn buffer_body(out: &mut Outgoing, limit: u64) -> Result<Bytes, Denial> {
    let declared = out
        .parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Denial::BodyTooLarge { limit });
    }
    let body = std::mem::replace(&mut out.body, Either::Right(Full::new(Bytes::new())));
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let bytes = Limited::new(body, limit_usize)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() || e.to_string().contains("length limit")
            {
                Denial::BodyTooLarge { limit }
            } else {
                Denial::BadRequest(format!("request body: {e}"))
            }
        })?;
    out.body = Either::Right(Full::new(bytes.clone()));
    Ok(bytes)
}

fn guard_cx<'a>(shared: &'a Shared, judged: &'a Judged<'_>, cx: &'a RequestCx) -> GuardCx<'a> {
    GuardCx {
        site: &judged.site.site.name,
        policy: &judged.site.site.login,
        limits: &judged.site.guard,
        store: &shared.store,
        key: &shared.key,
        audit: &shared.audit,
        client: judged.client.addr,
        request_id: &cx.request_id,
    }
}

/// Largest upstream answer to a login that is read to classify it.
const LOGIN_ANSWER_MAX: usize = 256 << 10;

/// Classifies the upstream's answer to a login, settles the counters, and
/// replaces any failure with the one uniform failure answer.
async fn settle_login(
    guard: &GuardCx<'_>,
    su: &StepUpCx<'_>,
    app: crate::config::AppKind,
    admitted: login::Admitted,
    resp: Response<ResponseBody>,
) -> Result<Response<ResponseBody>, Denial> {
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let (bytes, body) = match profile::response_needs_body(app, &admitted.attempt, status) {
        true => (read_answer(body).await?, None),
        false => (None, Some(body)),
    };
    let outcome = profile::classify(
        app,
        &admitted.attempt,
        status,
        &parts.headers,
        bytes.as_deref().unwrap_or(b""),
    );
    let attempt = admitted.attempt.clone();
    let settled = login::settle(guard, admitted, &outcome).await;
    if settled.uniform_failure
        && let Some((status, text)) = profile::uniform_failure(app, &attempt)
    {
        return Ok(uniform(status, text));
    }
    let body = match (bytes, body) {
        (Some(b), _) => body::full(b),
        (None, Some(body)) => body,
        (None, None) => body::empty(),
    };
    let bound = bind_session(su, &attempt, &outcome, &parts.headers).await;
    let mut resp = Response::from_parts(parts, body);
    for cookie in settled.set_cookie.into_iter().chain(bound) {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

/// After a browser login succeeded: erpguard's session cookie, bound to the
/// ERP user. A failure here does not fail the login; the user is only asked
/// to log in again before an administrative action (fail closed).
async fn bind_session(
    su: &StepUpCx<'_>,
    attempt: &Attempt,
    outcome: &profile::Outcome,
    answer: &HeaderMap,
) -> Option<HeaderValue> {
    let profile::Outcome::Success { user } = outcome else {
        return None;
    };
    let browser = matches!(
        attempt.kind,
        profile::AttemptKind::Password | profile::AttemptKind::SecondFactor
    );
    let user = user.as_deref().or(attempt.user.as_deref())?;
    if !browser || !stepup::in_use(su.site) {
        return None;
    }
    match stepup::bind(su, user, answer).await {
        Ok(cookie) => Some(cookie),
        Err(e) => {
            tracing::warn!(request_id = %su.request_id, site = %su.site.name, error = %e,
                "could not bind the new session to its user; step-up will ask for a new login");
            None
        }
    }
}

/// Reads a login answer whole (bounded): `None` never happens for a readable body.
async fn read_answer(body: ResponseBody) -> Result<Option<Bytes>, Denial> {
    match Limited::new(body, LOGIN_ANSWER_MAX).collect().await {
        Ok(c) => Ok(Some(c.to_bytes())),
        Err(e) => Err(Denial::UpstreamProtocol(format!("login answer: {e}"))),
    }
}

/// The uniform failure: a fresh response, so no upstream header (a rotated
/// session cookie, a length, a timing header) can tell one failure from another.
fn uniform(status: http::StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut resp = Response::new(body::full(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Removes tracebacks from ERPNext error answers to anonymous clients.
async fn scrub(
    app: crate::config::AppKind,
    anonymous: bool,
    resp: Response<ResponseBody>,
) -> Result<Response<ResponseBody>, Denial> {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_json || !profile::scrub_traceback(app, anonymous, resp.status()) {
        return Ok(resp);
    }
    let (mut parts, body) = resp.into_parts();
    // Boxed: only anonymous error answers get here; see `route`.
    let bytes = Box::pin(read_answer(body)).await?.unwrap_or_default();
    let clean = match profile::strip_traceback(&bytes) {
        Ok(None) => bytes,
        Ok(Some(stripped)) => Bytes::from(stripped),
        // Not a JSON object: nothing shows it is free of a traceback.
        Err(()) => Bytes::from_static(br#"{"message":"error"}"#),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, body::full(clean)))
}

/// The canonical `Host` toward the upstream: lower-case name, the client's port if any.
fn host_header(host: &CanonHost) -> Result<HeaderValue, Denial> {
    HeaderValue::from_maybe_shared(Bytes::from(host.authority()))
        .map_err(|_| Denial::BadRequest("host".into()))
}

/// Step 6: turns the outcome into the response, and reports it.
fn respond(
    shared: &Shared,
    rt: &Runtime,
    cx: &RequestCx,
    method: &Method,
    result: Result<Response<ResponseBody>, Denial>,
    json: bool,
    started: Instant,
) -> Response<ResponseBody> {
    let (mut resp, decision) = match result {
        Ok(resp) => (resp, "allow"),
        Err(denial) => {
            report_denial(shared, rt, cx, method, &denial);
            (
                error::rescue(&denial, &cx.request_id, json),
                denial.decision(),
            )
        }
    };
    add_response_headers(rt, cx, &mut resp);
    let site = site_name(rt, cx);
    shared
        .metrics
        .request(site, decision, resp.status().as_u16(), started.elapsed());
    if rt.config.log.access {
        tracing::info!(target: "erpguard::access", request_id = %cx.request_id, site,
            client = ?cx.client_ip, %method, path = cx.path.as_deref().unwrap_or("-"),
            status = resp.status().as_u16(), decision, ms = started.elapsed().as_millis() as u64, "request");
    }
    resp
}

fn report_denial(shared: &Shared, rt: &Runtime, cx: &RequestCx, method: &Method, denial: &Denial) {
    let site = site_name(rt, cx);
    match denial.upstream_kind() {
        Some(kind) => {
            tracing::warn!(request_id = %cx.request_id, site, error = %denial, "upstream failure");
            shared.metrics.upstream_error(site, kind);
        }
        None => {
            tracing::info!(request_id = %cx.request_id, site, client = ?cx.client_ip, reason = %denial, "request refused");
        }
    }
    if let Some(event) = denial.audit_event() {
        let mut ev = AuditEvent::new(event)
            .request_id(cx.request_id.clone())
            .method(method.to_string())
            .reason(denial.to_string());
        if cx.site.is_some() {
            ev = ev.site(site);
        }
        if let Some(ip) = cx.client_ip {
            ev = ev.client_ip(ip);
        }
        if let Some(path) = &cx.path {
            ev = ev.path(path.clone());
        }
        if let Some(user) = denial.user().or(cx.user.as_deref()) {
            ev = ev.user(user.to_owned());
        }
        shared.audit.record(ev);
    }
}

/// Security headers for the site (HSTS always replaces; the rest only fill
/// gaps) and the request id.
fn add_response_headers(rt: &Runtime, cx: &RequestCx, resp: &mut Response<ResponseBody>) {
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&cx.request_id) {
        headers.insert("x-request-id", v);
    }
    let Some(site) = cx.site.and_then(|i| rt.sites.get(i)) else {
        return;
    };
    let sec = &site.site.headers;
    if let Some(hsts) = &sec.hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    for (name, value) in &sec.defaults {
        headers.entry(name.clone()).or_insert_with(|| value.clone());
    }
}

/// The site's name for logs and metrics, `-` before a site is known.
fn site_name<'rt>(rt: &'rt Runtime, cx: &RequestCx) -> &'rt str {
    cx.site
        .and_then(|i| rt.sites.get(i))
        .map_or("-", |s| s.site.name.as_str())
}

/// 128 random bits, hex: unguessable, so it can be quoted to an operator safely.
pub fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}
