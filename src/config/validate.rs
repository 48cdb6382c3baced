//! Raw config → checked [`Config`]: defaults filled in, cross-field rules
//! enforced, every error tied to a position and a hint.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use toml::Spanned;

use super::file::{
    AppKind, RawAllow, RawConfig, RawHeaders, RawLimits, RawListen, RawLog, RawLogin, RawRule,
    RawSite, RawState, RawTimeouts, RawTls, RuleAction,
};
use super::values::Rate;
use super::{
    Allow, Config, ConfigError, Limits, Listen, Log, LogFormat, LoginPolicy, Pos, Rule,
    SecurityHeaders, Site, SiteTls, State, StateBackend, Upstream, UpstreamTimeouts,
};
use crate::policy::glob::Glob;
use crate::tls::CertSource;

/// Where self-signed certificates are kept (relative to the working directory).
pub(super) const SELF_SIGNED_DIR: &str = "certs";
const DEFAULT_MAX_BODY: u64 = 25 << 20;
const DEFAULT_INSPECT_MAX: u64 = 10 << 20;

/// Checks one file's worth of raw config.
pub(super) fn validate(path: &Path, text: &str, raw: RawConfig) -> Result<Config, ConfigError> {
    let cx = Cx { path, text };
    let listen = listen(&cx, &raw.listen)?;
    let sites = sites(&cx, raw.sites)?;
    Ok(Config {
        source: path.to_path_buf(),
        listen,
        limits: limits(&raw.limits),
        trusted_proxies: cidrs(&cx, &raw.client_ip.trusted_proxies)?,
        state: state(&cx, raw.state)?,
        audit_path: raw
            .audit
            .path
            .unwrap_or_else(|| PathBuf::from("logs/audit.jsonl")),
        log: log(&cx, raw.log)?,
        sites,
    })
}

/// The file being validated, for positioned errors.
pub(super) struct Cx<'a> {
    pub(super) path: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    pub(super) fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.text, span, message)
    }

    pub(super) fn pos(&self, span: Range<usize>) -> Pos {
        Pos::of(self.text, span.start)
    }
}

/// More HTTPS workers than this is a typo, not a machine.
const MAX_WORKERS: usize = 1024;

fn listen(cx: &Cx<'_>, raw: &RawListen) -> Result<Listen, ConfigError> {
    let https = raw.https.0;
    let workers = match &raw.workers {
        Some(w) if *w.get_ref() > MAX_WORKERS => {
            return Err(cx
                .err(w.span(), format!("`workers` is at most {MAX_WORKERS}"))
                .hint("0 runs one worker per CPU"));
        }
        Some(w) => *w.get_ref(),
        None => 0,
    };
    Ok(Listen {
        https,
        http: raw.http.map(|a| a.0),
        admin: raw.admin.map(|a| a.0),
        https_redirect_port: raw.https_redirect_port,
        workers,
    })
}

fn limits(raw: &RawLimits) -> Limits {
    let secs = |d: Option<super::values::Dur>, default: u64| {
        d.map_or(Duration::from_secs(default), |d| d.0)
    };
    Limits {
        max_connections: raw.max_connections.unwrap_or(10_000).max(1),
        handshake_timeout: secs(raw.handshake_timeout, 10),
        header_read_timeout: secs(raw.header_read_timeout, 10),
        max_header_bytes: raw
            .max_header_bytes
            .map_or(64 << 10, |b| b.0.max(8192) as usize),
        max_h2_streams: raw.max_h2_streams.unwrap_or(128).max(1),
        drain_timeout: secs(raw.drain_timeout, 30),
    }
}

/// Parses a list of networks, pointing at the first bad element.
fn cidrs(cx: &Cx<'_>, raw: &[Spanned<String>]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    raw.iter()
        .map(|s| super::values::parse_cidr(s.get_ref()).map_err(|e| cx.err(s.span(), e)))
        .collect()
}

fn state(cx: &Cx<'_>, raw: RawState) -> Result<State, ConfigError> {
    let backend = match raw.backend {
        None => StateBackend::Sqlite,
        Some(b) if b.get_ref() == "sqlite" => StateBackend::Sqlite,
        Some(b) if b.get_ref() == "redis" => {
            return Err(cx
                .err(
                    b.span(),
                    "state backend \"redis\" is not available in this version",
                )
                .hint("use backend = \"sqlite\" (the embedded default)"));
        }
        Some(b) => {
            return Err(cx
                .err(b.span(), format!("unknown state backend {:?}", b.get_ref()))
                .hint("write backend = \"sqlite\""));
        }
    };
    let path = raw
        .path
        .unwrap_or_else(|| PathBuf::from("data/erpguard.db"));
    let key_file = raw
        .key_file
        .unwrap_or_else(|| PathBuf::from("data/erpguard.key"));
    let max_keys = raw.max_keys.unwrap_or(100_000).max(1_000);
    Ok(State {
        backend,
        path,
        key_file,
        max_keys,
    })
}

fn log(cx: &Cx<'_>, raw: RawLog) -> Result<Log, ConfigError> {
    let level = match raw.level {
        None => "info".to_owned(),
        Some(l) => {
            tracing_subscriber::EnvFilter::try_new(l.get_ref()).map_err(|e| {
                cx.err(
                    l.span(),
                    format!("invalid log level {:?}: {e}", l.get_ref()),
                )
                .hint("write e.g. \"info\", \"warn\" or \"erpguard=debug,info\"")
            })?;
            l.into_inner()
        }
    };
    Ok(Log {
        format: raw.format.unwrap_or(LogFormat::Human),
        level,
        access: raw.access.unwrap_or(false),
    })
}

fn sites(cx: &Cx<'_>, raw: Vec<Spanned<RawSite>>) -> Result<Vec<Site>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::whole(cx.path, "no [[site]] is configured")
            .hint("add a [[site]] table with name, hosts, app, upstream, tls and allow; see config/erpguard.example.toml"));
    }
    let mut hosts: HashMap<String, String> = HashMap::new();
    let mut out: Vec<Site> = Vec::with_capacity(raw.len());
    for spanned in raw {
        let span = spanned.span();
        let name_span = spanned.get_ref().name.span();
        let site = site(cx, span, spanned.into_inner())?;
        if out.iter().any(|s| s.name == site.name) {
            return Err(cx
                .err(name_span, format!("two sites are named {:?}", site.name))
                .hint("give every [[site]] a unique name"));
        }
        for h in &site.hosts {
            if let Some(other) = hosts.insert(h.clone(), site.name.clone()) {
                return Err(ConfigError::whole(
                    cx.path,
                    format!(
                        "host {h:?} belongs to both site {other:?} and site {:?}",
                        site.name
                    ),
                )
                .hint("a host name can belong to one site only"));
            }
        }
        out.push(site);
    }
    Ok(out)
}

fn site(cx: &Cx<'_>, span: Range<usize>, raw: RawSite) -> Result<Site, ConfigError> {
    let name = site_name(cx, &raw.name)?;
    let app = raw.app.ok_or_else(|| {
        cx.err(span.clone(), format!("site {name:?} has no `app`"))
            .hint("write app = \"erpnext\", \"akaunting\" or \"generic\"")
    })?;
    let allow = allow(cx, &name, span.clone(), raw.allow)?;
    let site = Site {
        hosts: hosts(cx, &raw.hosts)?,
        app,
        upstream: upstream(cx, &raw.upstream)?,
        upstream_host: raw
            .upstream_host
            .map(|h| header_value(cx, &h))
            .transpose()?,
        tls: tls(cx, &name, raw.tls)?,
        allow,
        max_body: raw.max_body.map_or(DEFAULT_MAX_BODY, |b| b.0),
        inspect_body_max: raw.inspect_body_max.map_or(DEFAULT_INSPECT_MAX, |b| b.0),
        login: login(cx, &name, app, raw.login)?,
        step_up: super::step_up::step_up(cx, &name, app, raw.step_up)?,
        api: super::api::api(cx, raw.api)?,
        credentials: super::api::credentials(cx, &name, raw.credentials)?,
        timeouts: timeouts(&raw.timeouts),
        headers: security_headers(cx, raw.headers)?,
        rules: rules(cx, raw.rules)?,
        name,
    };
    step_up_needs_login(cx, span, &site)?;
    Ok(site)
}

/// Step-up learns who owns a session from the logins the login guard sees;
/// without it no session has a user and every step-up would be a refusal.
fn step_up_needs_login(cx: &Cx<'_>, span: Range<usize>, site: &Site) -> Result<(), ConfigError> {
    let rule = site.rules.iter().any(|r| r.action == RuleAction::StepUp);
    if site.login.enabled || !(site.step_up.enabled || rule) {
        return Ok(());
    }
    let name = &site.name;
    let hint = match site.app {
        AppKind::Generic => {
            "step-up needs an app profile that knows the login: use app = \"erpnext\" or \"akaunting\", or action = \"deny\" / an `allow` list instead"
        }
        _ => {
            "enable [site.login] (the default), or write [site.step_up] enabled = false and drop step_up rules"
        }
    };
    Err(cx
        .err(span, format!("site {name:?}: step-up is on but the login guard is off, so no session could ever be tied to a user"))
        .hint(hint))
}

fn site_name(cx: &Cx<'_>, raw: &Spanned<String>) -> Result<String, ConfigError> {
    let n = raw.get_ref();
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(n.clone())
    } else {
        Err(cx
            .err(raw.span(), format!("invalid site name {n:?}"))
            .hint("use 1-64 characters of a-z, 0-9, '-' and '_', e.g. name = \"erp\""))
    }
}

fn hosts(cx: &Cx<'_>, raw: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<String>, ConfigError> {
    if raw.get_ref().is_empty() {
        return Err(cx
            .err(raw.span(), "`hosts` is empty")
            .hint("list the names clients use, e.g. hosts = [\"erp.example.com\"]"));
    }
    raw.get_ref().iter().map(|h| host(cx, h)).collect()
}

fn host(cx: &Cx<'_>, raw: &Spanned<String>) -> Result<String, ConfigError> {
    let bad = |why: &str| {
        cx.err(
            raw.span(),
            format!("invalid host {:?}: {why}", raw.get_ref()),
        )
        .hint(
            "write a bare DNS name such as \"erp.example.com\" (no scheme, port, path or wildcard)",
        )
    };
    if raw.get_ref().contains('*') {
        return Err(bad("wildcard hosts are not supported"));
    }
    match crate::canon::canonical_host(raw.get_ref()) {
        Ok(h) if h.port.is_none() => Ok(h.name),
        Ok(_) => Err(bad("a port is not part of a host name")),
        Err(e) => Err(bad(&e.to_string())),
    }
}

fn upstream(cx: &Cx<'_>, raw: &Spanned<String>) -> Result<Upstream, ConfigError> {
    let bad = |why: &str| {
        cx.err(
            raw.span(),
            format!("invalid upstream {:?}: {why}", raw.get_ref()),
        )
        .hint("write a base URL such as \"http://127.0.0.1:8000\" (http or https, no path)")
    };
    let uri: http::Uri = raw.get_ref().parse().map_err(|_| bad("not a URL"))?;
    let scheme = uri.scheme().cloned().ok_or_else(|| bad("no scheme"))?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(bad("the scheme must be http or https"));
    }
    let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("credentials do not belong in the URL"));
    }
    let path_ok = uri
        .path_and_query()
        .is_none_or(|pq| pq.as_str() == "/" || pq.as_str().is_empty());
    if !path_ok {
        return Err(bad("a path or query is not supported"));
    }
    Ok(Upstream {
        url: raw.get_ref().clone(),
        scheme,
        authority,
    })
}

fn header_value(cx: &Cx<'_>, raw: &Spanned<String>) -> Result<HeaderValue, ConfigError> {
    HeaderValue::from_str(raw.get_ref()).map_err(|_| {
        cx.err(raw.span(), "not a valid header value")
            .hint("use visible ASCII characters only")
    })
}

fn tls(cx: &Cx<'_>, site: &str, raw: Spanned<RawTls>) -> Result<SiteTls, ConfigError> {
    let pos = cx.pos(raw.span());
    let span = raw.span();
    let source = match raw.into_inner() {
        RawTls::Files(f) => CertSource::Files {
            cert: f.cert,
            key: f.key,
        },
        RawTls::Mode(m) if m == "self-signed" => CertSource::SelfSigned {
            dir: PathBuf::from(SELF_SIGNED_DIR),
        },
        RawTls::Mode(m) => {
            return Err(cx
                .err(span, format!("site {site:?}: unknown tls mode {m:?}"))
                .hint("write tls = \"self-signed\" or tls = { cert = \"certs/erp.pem\", key = \"certs/erp.key\" }"));
        }
    };
    Ok(SiteTls { source, pos })
}

fn allow(
    cx: &Cx<'_>,
    site: &str,
    site_span: Range<usize>,
    raw: Option<Spanned<RawAllow>>,
) -> Result<Allow, ConfigError> {
    let Some(raw) = raw else {
        return Err(cx
            .err(site_span, format!("site {site:?} has no `allow` list"))
            .hint("write the networks that may reach it, e.g. allow = [\"10.0.0.0/8\"]; to open it to everyone write allow = [\"0.0.0.0/0\", \"::/0\"]"));
    };
    let span = raw.span();
    match raw.into_inner() {
        RawAllow::List(nets) => Ok(Allow::Nets(cidrs(cx, &nets)?)),
        RawAllow::Off(s) if s == "off" => Ok(Allow::Off),
        RawAllow::Off(s) => Err(cx
            .err(span, format!("invalid allow value {s:?}"))
            .hint("write a list of CIDRs, e.g. allow = [\"10.0.0.0/8\"], or allow = \"off\"")),
    }
}

/// The login policy: the profile's defaults, overridden key by key.
fn login(
    cx: &Cx<'_>,
    site: &str,
    app: AppKind,
    raw: Option<Spanned<RawLogin>>,
) -> Result<LoginPolicy, ConfigError> {
    let span = raw.as_ref().map(Spanned::span);
    let raw = raw.map(Spanned::into_inner).unwrap_or_default();
    let enabled = raw.enabled.unwrap_or(app != AppKind::Generic);
    if enabled && app == AppKind::Generic {
        return Err(cx
            .err(
                span.unwrap_or(0..0),
                format!("site {site:?}: a generic site has no known login surface to guard"),
            )
            .hint(
                "use app = \"erpnext\" or \"akaunting\", or leave [site.login] enabled = false",
            ));
    }
    let d = |v: Option<super::values::Dur>, secs: u64| v.map_or(Duration::from_secs(secs), |d| d.0);
    let rate = |v: Option<Rate>, n: u32| {
        v.unwrap_or(Rate {
            count: std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN),
            per: Duration::from_secs(60),
        })
    };
    let policy = LoginPolicy {
        enabled,
        per_ip: rate(raw.per_ip, 20),
        oracle_per_ip: rate(raw.oracle_per_ip, 5),
        lockout_after: raw.lockout_after.unwrap_or(5).max(1),
        // Frappe locks a user itself after 10 consecutive failures (500, for
        // everyone, device or not): erpguard's user lock must come first.
        user_lockout_after: raw
            .user_lockout_after
            .unwrap_or(if app == AppKind::Erpnext { 8 } else { 15 })
            .max(1),
        api_lockout_after: raw.api_lockout_after.unwrap_or(10).max(1),
        window: d(raw.window, 15 * 60),
        lockout: d(raw.lockout, 15 * 60),
        lockout_max: d(raw.lockout_max, 24 * 3600),
        lockout_memory: d(raw.lockout_memory, 24 * 3600),
        device_cookie: raw.device_cookie.unwrap_or(true),
        device_ttl: d(raw.device_ttl, 180 * 86_400),
    };
    if policy.lockout_max < policy.lockout {
        return Err(cx
            .err(span.unwrap_or(0..0), format!("site {site:?}: lockout_max is shorter than lockout"))
            .hint("lockout is the first lock length; lockout_max caps its doubling, e.g. lockout = \"15m\", lockout_max = \"24h\""));
    }
    Ok(policy)
}

fn timeouts(raw: &RawTimeouts) -> UpstreamTimeouts {
    let or =
        |d: Option<super::values::Dur>, secs: u64| d.map_or(Duration::from_secs(secs), |d| d.0);
    UpstreamTimeouts {
        connect: or(raw.connect, 5),
        response_header: or(raw.response_header, 120),
        pool_idle: or(raw.pool_idle, 90),
    }
}

fn security_headers(cx: &Cx<'_>, raw: RawHeaders) -> Result<SecurityHeaders, ConfigError> {
    let whole = |msg: String| ConfigError::whole(cx.path, msg);
    let value = |name: &str, v: String| -> Result<Option<HeaderValue>, ConfigError> {
        if v.is_empty() {
            return Ok(None);
        }
        HeaderValue::from_str(&v)
            .map(Some)
            .map_err(|_| whole(format!("headers.{name}: {v:?} is not a valid header value")))
    };
    let hsts = value(
        "hsts",
        raw.hsts.unwrap_or_else(|| "max-age=31536000".into()),
    )?;
    let mut defaults = Vec::new();
    let named = [
        ("x-frame-options", raw.x_frame_options, Some("SAMEORIGIN")),
        (
            "x-content-type-options",
            raw.x_content_type_options,
            Some("nosniff"),
        ),
        (
            "referrer-policy",
            raw.referrer_policy,
            Some("strict-origin-when-cross-origin"),
        ),
        ("content-security-policy", raw.content_security_policy, None),
        ("permissions-policy", raw.permissions_policy, None),
    ];
    for (name, set, default) in named {
        let v = set.or(default.map(str::to_owned)).unwrap_or_default();
        if let Some(v) = value(name, v)? {
            defaults.push((HeaderName::from_static(name), v));
        }
    }
    for (k, v) in raw.set {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| whole(format!("headers.set: {k:?} is not a valid header name")))?;
        if let Some(v) = value(&k, v)? {
            defaults.push((name, v));
        }
    }
    Ok(SecurityHeaders { hsts, defaults })
}

fn rules(cx: &Cx<'_>, raw: Vec<Spanned<RawRule>>) -> Result<Vec<Rule>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let span = r.span();
            rule(cx, i + 1, span, r.into_inner())
        })
        .collect()
}

fn rule(cx: &Cx<'_>, n: usize, span: Range<usize>, raw: RawRule) -> Result<Rule, ConfigError> {
    let name = raw.name.unwrap_or_else(|| format!("rule #{n}"));
    if raw.paths.get_ref().is_empty() {
        return Err(cx
            .err(raw.paths.span(), format!("{name}: `paths` is empty"))
            .hint("list at least one pattern, e.g. paths = [\"/app/system-settings*\"]"));
    }
    let paths = raw
        .paths
        .get_ref()
        .iter()
        .map(|p| Glob::new(p.get_ref()).map_err(|e| cx.err(p.span(), format!("{name}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let action = *raw.action.get_ref();
    match action {
        RuleAction::Deny if raw.allow.is_some() => {
            return Err(cx
                .err(span, format!("{name}: `allow` has no effect on a deny rule"))
                .hint("to let only some networks through, write action = \"allow\" with that `allow` list"));
        }
        _ => {}
    }
    Ok(Rule {
        name,
        paths,
        methods: raw.methods.into_iter().map(|m| m.0).collect(),
        allow: raw.allow.map(|v| cidrs(cx, &v)).transpose()?,
        action,
    })
}
