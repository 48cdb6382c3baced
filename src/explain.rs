//! `erpguard explain`: runs a described request through the same decision code
//! that serving uses ([`crate::stack::judge`]) and prints each step.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::cli::{EXIT_OK, EXIT_USAGE};
use crate::login;
use crate::policy::{Access, Trace};
use crate::profile::{self, AttemptKind, RequestView};
use crate::runtime::Runtime;
use crate::stack::{self, ConnInfo, RequestCx};

/// The address assumed when `--ip` is not given: a documentation address
/// (TEST-NET-2), i.e. "somebody on the internet".
const DEFAULT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

/// `erpguard explain METHOD URL [--header K:V]... [--ip A]`
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The HTTP method, e.g. GET or POST.
    pub method: String,
    /// The full URL as the client would send it, e.g. https://erp.example.com/app/user
    pub url: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "K:V")]
    pub headers: Vec<String>,
    /// The TCP peer address (default: 198.51.100.7, an outside address).
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<IpAddr>,
    /// The request body (give its Content-Type with --header), e.g. 'cmd=login&usr=admin&pwd=x'.
    #[arg(long, value_name = "BODY")]
    pub body: Option<String>,
}

/// A request as explain understands it.
struct Described {
    body: Vec<u8>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    conn: ConnInfo,
}

/// Runs explain; prints the trace and the decision.
pub fn run(config_path: &Path, args: &ExplainArgs) -> u8 {
    let config = match crate::cli::load_or_report(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let described = match describe(args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("erpguard explain: {e}");
            return EXIT_USAGE;
        }
    };
    let rt = match Runtime::build(config, 0) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_USAGE;
        }
    };
    print!("{}", explain(&rt, &described, args.ip.is_none()));
    EXIT_OK
}

fn rule_name<'j>(j: &'j stack::Judged<'_>, n: usize) -> &'j str {
    j.site
        .site
        .rules
        .get(n)
        .map_or("a rule", |r| r.name.as_str())
}

/// The token verdict, when the request presents an erpguard token: looked up
/// in the store (without its secret, which explain cannot check) and its
/// scope applied to the request.
fn token_lines(rt: &Runtime, j: &stack::Judged<'_>, d: &Described) -> Option<String> {
    let site = &j.site.site;
    let text = crate::token::presented(site, &d.headers)?;
    let mut out = String::new();
    let Some((id, _)) = crate::token::split(text) else {
        out.push_str("  - API token: malformed\ndecision: unauthenticated → HTTP 401\n");
        return Some(out);
    };
    let record = existing_store(rt).and_then(|s| s.token(id).ok().flatten());
    let Some(record) = record.filter(|r| r.site == site.name) else {
        out.push_str(&format!("  - API token {id}: not in the store for this site\ndecision: unauthenticated → HTTP 401\n"));
        return Some(out);
    };
    out.push_str(&format!(
        "  - API token {id} ({:?}): scopes {}; credential {}; the secret, expiry, networks and rate are checked when served\n",
        record.name,
        record.scopes.join(" "),
        record.credential
    ));
    let verdict = request_params(j, d, true)
        .map_err(|e| format!("unreadable parameters ({e})"))
        .and_then(|params| {
            crate::token::scope::parse(&record.scopes)?.check(
                site.app,
                &d.method,
                j.path.decoded(),
                d.uri.query(),
                &d.headers,
                &params,
            )
        });
    match verdict {
        Ok(()) => out.push_str("decision: token-scoped → forwarded with the token's credential\n"),
        Err(missing) => out.push_str(&format!(
            "decision: deny → HTTP 403 (outside the token's scope: needs {missing})\n"
        )),
    }
    Some(out)
}

/// The step-up verdict, when the request is administrative.
fn step_up_line(j: &stack::Judged<'_>, d: &Described) -> Option<String> {
    let site = &j.site.site;
    if !crate::stepup::in_use(site) {
        return None;
    }
    let params = match request_params(j, d, false) {
        Ok(p) => p,
        Err(e) => return Some(format!("decision: invalid → HTTP 400 (parameters: {e})\n")),
    };
    let reason = crate::stepup::admin_reason(
        site,
        j.access,
        &d.method,
        j.path.decoded(),
        &d.headers,
        &params,
    )?;
    Some(format!(
        "  - step-up: administrative ({reason})\n\
         decision: step-up → forwarded only with a grant of the session's ERP user \
         (browsers: 303 to {}; XHR/API: 401 JSON step_up_required)\n",
        crate::stepup::CHALLENGE_PATH
    ))
}

/// The app's parameters as the gateway reads them for this request (the
/// body counts where the profile, or a token's scope, would read it).
fn request_params(
    j: &stack::Judged<'_>,
    d: &Described,
    whole_body: bool,
) -> Result<crate::params::Params, crate::params::ParamError> {
    let site = &j.site.site;
    let view = RequestView {
        method: &d.method,
        path: j.path.decoded(),
        query: d.uri.query(),
        headers: &d.headers,
    };
    let body: &[u8] = if whole_body || profile::needs_body(site.app, &view) {
        &d.body
    } else {
        b""
    };
    profile::params(site.app, &view, body)
}

/// The login guard's view of the request: what it recognises and which counters apply.
fn login_lines(
    rt: &Runtime,
    j: &stack::Judged<'_>,
    d: &Described,
) -> Result<Option<(String, bool)>, String> {
    let site = &j.site.site;
    if !site.login.enabled {
        return Ok(None);
    }
    let params = request_params(j, d, false).map_err(|e| e.to_string())?;
    let view = RequestView {
        method: &d.method,
        path: j.path.decoded(),
        query: d.uri.query(),
        headers: &d.headers,
    };
    let Some(attempt) = profile::recognise(site.app, &view, &params).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let p = &site.login;
    let mut out = format!(
        "  - login guard: {:?} attempt via {} for {}\n",
        attempt.kind,
        attempt.endpoint,
        attempt.user.as_deref().unwrap_or("(no user named)")
    );
    match attempt.kind {
        AttemptKind::Password | AttemptKind::SecondFactor => {
            out.push_str(&format!(
                "    rate: {} attempts per client IP (IPv6 per /64)\n",
                p.per_ip
            ));
        }
        AttemptKind::Oracle => {
            out.push_str(&format!(
                "    rate: {} account-oracle requests per client IP\n",
                p.oracle_per_ip
            ));
        }
        AttemptKind::ApiCredential => {
            out.push_str("    API credentials: only failures are counted, per client IP\n");
        }
    }
    let mut locked = false;
    let store = existing_store(rt);
    for (key, lp) in login::keys(&site.name, p, &attempt, j.client.addr, None) {
        let (lock_note, is_locked) = current_lock(store.as_deref(), &key);
        locked |= is_locked;
        out.push_str(&format!(
            "    counter {} {:?}: locked after {} failures within {}; lock {} doubling up to {}{}\n",
            key.scope.as_str(),
            key.subject,
            lp.threshold,
            humantime::format_duration(lp.window),
            humantime::format_duration(lp.base),
            humantime::format_duration(lp.max),
            lock_note
        ));
    }
    if p.device_cookie && attempt.kind == AttemptKind::Password {
        out.push_str("    a browser holding this user's device cookie is counted on its own (a stranger cannot lock it out)\n");
    }
    Ok(Some((out, locked)))
}

/// The state store, if its file exists (explain never creates one).
fn existing_store(rt: &Runtime) -> Option<std::sync::Arc<dyn crate::store::StateStore>> {
    let state = &rt.config.state;
    state
        .path
        .exists()
        .then(|| crate::server::open_store(state).ok())
        .flatten()
}

/// The lock state of `key`, and whether it is locked now.
fn current_lock(
    store: Option<&dyn crate::store::StateStore>,
    key: &crate::store::Key,
) -> (String, bool) {
    let Some(store) = store else {
        return (String::new(), false);
    };
    let now = std::time::SystemTime::now();
    match store.lock(key, now) {
        Ok(Some(lock)) => {
            let left = lock.until.duration_since(now).map_or(0, |d| d.as_secs());
            (format!(" [LOCKED now, {left}s left]"), true)
        }
        Ok(None) => (" [not locked]".to_owned(), false),
        Err(_) => (" [store unreadable]".to_owned(), false),
    }
}

fn describe(args: &ExplainArgs) -> Result<Described, String> {
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("invalid method {:?}", args.method))?;
    let uri: Uri = args
        .url
        .parse()
        .map_err(|e| format!("invalid URL {:?}: {e}", args.url))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(format!(
                "the URL must start with https:// or http://, got {:?}",
                args.url
            ));
        }
    };
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("header {h:?} must be written Name: value"))?;
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| format!("invalid header name {k:?}"))?;
        let value = HeaderValue::from_str(v.trim())
            .map_err(|_| format!("invalid header value in {h:?}"))?;
        headers.append(name, value);
    }
    let peer = SocketAddr::new(args.ip.unwrap_or(DEFAULT_IP), 50000);
    let conn = ConnInfo::new(peer, tls.then(|| Arc::from(host.as_str())), tls);
    let body = args.body.clone().unwrap_or_default().into_bytes();
    Ok(Described {
        body,
        method,
        uri,
        headers,
        conn,
    })
}

fn explain(rt: &Runtime, d: &Described, default_ip: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!("request: {} {}\n", d.method, d.uri));
    if default_ip {
        out.push_str(&format!(
            "peer:    {} (default; pass --ip to choose)\n",
            d.conn.peer.ip()
        ));
    }
    if !d.conn.tls {
        let known = d
            .uri
            .host()
            .is_some_and(|h| rt.site_for(&h.to_ascii_lowercase()).is_some());
        out.push_str(match known {
            true => "plain HTTP: the http listener answers 308 to the same URL over https; nothing is forwarded\n",
            false => "plain HTTP: no site has this host, the http listener answers 404\n",
        });
        out.push_str("decision: redirect\n");
        return out;
    }
    out.push_str("tls:     SNI assumed equal to the URL's host\n");
    let mut trace = Trace::recording();
    let mut cx = RequestCx::default();
    let verdict = stack::judge(
        rt, &d.conn, &d.method, &d.uri, &d.headers, &mut cx, &mut trace,
    );
    for step in trace.steps() {
        out.push_str(&format!("  - {step}\n"));
    }
    match verdict {
        Ok(j) => {
            let why = match j.access {
                Access::NoRule => "no rule matched".to_owned(),
                Access::Rule(n) => format!("{} allows it", rule_name(&j, n)),
                Access::StepUp(n) => {
                    format!("{} lets it through with a step-up grant", rule_name(&j, n))
                }
            };
            if crate::stepup::is_reserved(j.path.decoded()) {
                out.push_str("decision: erpguard page (the /.erpguard/ prefix is served by erpguard itself and never forwarded)\n");
                return out;
            }
            out.push_str(&format!(
                "forwarded as: {} {}{}\n",
                d.method, j.site.site.upstream.url, j.path_and_query
            ));
            if let Some(lines) = token_lines(rt, &j, d) {
                out.push_str(&lines);
                return out;
            }
            if let Err(denial) =
                crate::token::refuse_direct(&j.site.site, j.path.decoded(), &d.headers)
            {
                out.push_str(&format!(
                    "decision: {} → HTTP {} ({denial})\n",
                    denial.decision(),
                    denial.status().as_u16()
                ));
                return out;
            }
            if let Some(line) = step_up_line(&j, d) {
                out.push_str(&line);
                return out;
            }
            match login_lines(rt, &j, d) {
                Ok(Some((lines, true))) => {
                    out.push_str(&lines);
                    out.push_str("decision: locked_out → HTTP 429 (a counter above is locked; the attempt would not reach the app)\n");
                }
                Ok(Some((lines, false))) => {
                    out.push_str(&lines);
                    out.push_str(&format!(
                        "decision: login-guarded ({why}; forwarded unless rate-limited or locked)\n"
                    ));
                }
                Ok(None) => out.push_str(&format!("decision: allow ({why})\n")),
                Err(e) => {
                    out.push_str(&format!("decision: invalid → HTTP 400 (parameters: {e})\n"));
                }
            }
        }
        Err(denial) => {
            out.push_str(&format!(
                "decision: {} → HTTP {} ({denial})\n",
                denial.decision(),
                denial.status().as_u16()
            ));
        }
    }
    out
}
