//! The checked configuration.
//!
//! `load` reads a TOML file, deserialises it into the raw form in [`file`]
//! (unknown keys refused, bad values reported at their position) and validates
//! it into [`Config`], the only config type the rest of erpguard sees. Nothing
//! is bound or written while loading: `erpguard check` and `erpguard run` share
//! this exact code path.

mod api;
mod error;
mod file;
mod step_up;
mod validate;
pub mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use ipnet::IpNet;

pub use error::{ConfigError, Pos};
pub use file::{AppKind, LogFormat, RuleAction};

use crate::policy::glob::Glob;

/// The default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/erpguard.toml";

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// Listener addresses.
    pub listen: Listen,
    /// Connection-level limits and timeouts.
    pub limits: Limits,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Where durable state lives.
    pub state: State,
    /// Where the audit log is written.
    pub audit_path: PathBuf,
    /// Process logging.
    pub log: Log,
    /// The protected sites, in file order.
    pub sites: Vec<Site>,
}

/// Listener addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The public HTTPS listener.
    pub https: SocketAddr,
    /// The plain-HTTP listener that redirects to HTTPS, if any.
    pub http: Option<SocketAddr>,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`), if any.
    pub admin: Option<SocketAddr>,
    /// The port put into HTTP→HTTPS redirects (`None`: the port the HTTPS listener bound).
    pub https_redirect_port: Option<u16>,
    /// HTTPS worker threads (`0`: one per CPU); see [`Listen::worker_count`].
    pub workers: usize,
}

impl Listen {
    /// How many HTTPS workers to run: `workers`, or one per CPU the process
    /// may use when it is `0`.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

/// Connection-level limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent client connections across HTTPS and HTTP listeners.
    pub max_connections: usize,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers (slowloris defence).
    pub header_read_timeout: Duration,
    /// Largest request header block accepted.
    pub max_header_bytes: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_h2_streams: u32,
    /// How long `SIGTERM` waits for in-flight requests.
    pub drain_timeout: Duration,
}

/// Where durable state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The backend; only the embedded SQLite store exists today.
    pub backend: StateBackend,
    /// The SQLite file.
    pub path: PathBuf,
    /// The gateway's secret key (device cookies; later TOTP secrets), created on first start.
    pub key_file: PathBuf,
    /// Most counter and lockout keys kept; the least recently touched unlocked ones go first.
    pub max_keys: usize,
}

/// A state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateBackend {
    /// Embedded SQLite file.
    Sqlite,
}

/// Process logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// Human lines or JSON lines.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `erpguard=debug`.
    pub level: String,
    /// Whether every request is logged (method, path without query, status, duration).
    pub access: bool,
}

/// One protected site.
#[derive(Debug, Clone)]
pub struct Site {
    /// Short unique name used in logs, metrics and the CLI.
    pub name: String,
    /// Canonical host names (lower-case, no trailing dot, no port).
    pub hosts: Vec<String>,
    /// The rule pack.
    pub app: AppKind,
    /// Where requests are forwarded.
    pub upstream: Upstream,
    /// `Host` header sent upstream instead of the client's, if set.
    pub upstream_host: Option<HeaderValue>,
    /// Certificate source.
    pub tls: SiteTls,
    /// Who may reach the site at all.
    pub allow: Allow,
    /// Largest request body accepted.
    pub max_body: u64,
    /// Largest body erpguard buffers to read parameters from (login recognition);
    /// a bigger form or JSON body that must be read is refused with 413.
    pub inspect_body_max: u64,
    /// Login protection.
    pub login: LoginPolicy,
    /// Step-up TOTP before administrative requests.
    pub step_up: StepUpPolicy,
    /// API access: gateway-issued tokens and client-sent credentials.
    pub api: ApiPolicy,
    /// Upstream credentials tokens inject, by name.
    pub credentials: std::collections::BTreeMap<String, Credential>,
    /// Upstream timeouts.
    pub timeouts: UpstreamTimeouts,
    /// Response headers the gateway adds.
    pub headers: SecurityHeaders,
    /// Ordered rules; the first match decides.
    pub rules: Vec<Rule>,
}

/// A parsed upstream base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The URL as written.
    pub url: String,
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host:port`.
    pub authority: http::uri::Authority,
}

/// Where a site's certificate comes from, and where it was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteTls {
    /// The source.
    pub source: crate::tls::CertSource,
    /// The position of the `tls` key, for errors found while loading the files.
    pub pos: Pos,
}

/// A site's source-address allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// Written as `allow = "off"`: every address.
    Off,
    /// Only these networks; an empty list denies everyone.
    Nets(Vec<IpNet>),
}

impl std::fmt::Display for Allow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Allow::Off => f.write_str("off (everyone)"),
            Allow::Nets(nets) if nets.is_empty() => f.write_str("[] (nobody)"),
            Allow::Nets(nets) => {
                let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", list.join(", "))
            }
        }
    }
}

impl Allow {
    /// Whether `ip` may pass.
    pub fn permits(&self, ip: std::net::IpAddr) -> bool {
        match self {
            Allow::Off => true,
            Allow::Nets(nets) => nets.iter().any(|n| n.contains(&ip)),
        }
    }
}

/// Login protection for one site (defaults come from the app profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPolicy {
    /// Whether the login guard runs (off for `generic` sites unless configured).
    pub enabled: bool,
    /// Attempts on login endpoints per client IP (IPv6 grouped by /64).
    pub per_ip: values::Rate,
    /// Requests to account oracles (password reset, sign-up) per client IP.
    pub oracle_per_ip: values::Rate,
    /// Failures per (user, client IP), and per (user, known device), before a lock.
    pub lockout_after: u32,
    /// Failures per user from browsers without that user's device cookie before the
    /// user is locked for every such browser.
    pub user_lockout_after: u32,
    /// Failed API credentials per client IP before that IP is locked.
    pub api_lockout_after: u32,
    /// Failures older than this no longer count.
    pub window: Duration,
    /// First lock length; doubles on each repeat.
    pub lockout: Duration,
    /// Longest lock.
    pub lockout_max: Duration,
    /// How long past locks are remembered for doubling.
    pub lockout_memory: Duration,
    /// Whether a successful login gets a device cookie (OWASP "device cookies").
    pub device_cookie: bool,
    /// How long a device cookie is valid.
    pub device_ttl: Duration,
}

/// Step-up TOTP for one site (`[site.step_up]`).
#[derive(Debug, Clone)]
pub struct StepUpPolicy {
    /// Whether administrative requests need a grant (off for `generic` sites
    /// unless configured; `step_up` rules work either way).
    pub enabled: bool,
    /// How long a grant lasts after a correct code.
    pub ttl: Duration,
    /// Whether a grant also binds the client IP that earned it.
    pub bind_ip: bool,
    /// What happens to a user with no TOTP enrolment.
    pub unenrolled: Unenrolled,
    /// How long erpguard remembers which ERP user owns a session.
    pub session_ttl: Duration,
    /// Wrong codes in a row (within `lockout`) before step-up locks for the user.
    pub max_failures: u32,
    /// How long a step-up lock lasts.
    pub lockout: Duration,
    /// The issuer shown in authenticator apps.
    pub issuer: String,
    /// TOTP parameters.
    pub totp: crate::totp::Params,
    /// Admin paths, DocTypes and methods on top of the profile's.
    pub extra: crate::profile::admin::Extra,
}

/// `[site.api]`: how API callers authenticate.
#[derive(Debug, Clone)]
pub struct ApiPolicy {
    /// Whether clients may send the app's own API credentials (ERPNext
    /// `Authorization: token|Basic ...`, Akaunting HTTP Basic on `/api/`)
    /// instead of an erpguard token.
    pub allow_direct_credentials: bool,
    /// A header that carries the erpguard token for clients that cannot set
    /// `Authorization` (the value is the bare `eg_...` token).
    pub token_header: Option<HeaderName>,
}

/// An upstream credential: the whole `Authorization` value erpguard sets
/// toward the app for a token. Never printed: `Debug` shows only its source.
#[derive(Clone)]
pub struct Credential {
    /// Where it was read from, for messages.
    pub source: String,
    /// The header value (marked sensitive).
    pub value: HeaderValue,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({})", self.source)
    }
}

/// The policy for users without a TOTP enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unenrolled {
    /// Refuse administrative requests (a page says to ask an administrator).
    Deny,
    /// Let them through, audited (for a rollout).
    Allow,
}

/// Timeouts toward the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// From sending the request to the response headers.
    pub response_header: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle: Duration,
}

/// Response headers added to HTTPS responses (`None` = not added).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityHeaders {
    /// Always set, replacing any upstream value.
    pub hsts: Option<HeaderValue>,
    /// The rest are set only when the upstream did not send them.
    pub defaults: Vec<(HeaderName, HeaderValue)>,
}

/// One ordered rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name for explain, logs and the audit log (`rule #N` when unnamed).
    pub name: String,
    /// Path patterns; any may match.
    pub paths: Vec<Glob>,
    /// Methods; empty means every method.
    pub methods: Vec<http::Method>,
    /// If set, only these sources pass this rule.
    pub allow: Option<Vec<IpNet>>,
    /// What the rule does.
    pub action: RuleAction,
}

impl Rule {
    /// Whether the rule applies to this method and decoded canonical path.
    pub fn matches(&self, method: &http::Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.paths.iter().any(|g| g.matches(path))
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::whole(path, format!("cannot read the config file: {e}")).hint(
            "pass the right file with --config FILE (the default is config/erpguard.toml, relative to the working directory)",
        )
    })?;
    parse(path, &text)
}

/// Validates config text that was read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: file::RawConfig = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
    validate::validate(path, text, raw)
}

fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_owned();
    let hint = hint_for(&message);
    let err = match e.span() {
        Some(span) => ConfigError::at(path, text, span, message),
        None => ConfigError::whole(path, message),
    };
    match hint {
        Some(h) => err.hint(h),
        None => err,
    }
}

/// Extra advice for the common serde messages.
fn hint_for(message: &str) -> Option<&'static str> {
    if message.starts_with("unknown field") {
        Some("remove or rename the key; every key is documented in config/erpguard.example.toml")
    } else if message.starts_with("missing field") {
        Some("add the key; see config/erpguard.example.toml for an example")
    } else {
        None
    }
}
