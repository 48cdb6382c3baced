//! The config file as written: serde structs that mirror the TOML one to one.
//!
//! Every table refuses unknown keys, so a typo is an error with a position rather
//! than a silently ignored setting. Nothing outside `config` sees these types:
//! `validate` turns them into the checked [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::values::{Addr, ByteSize, Dur, MethodName, Rate};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: RawListen,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) client_ip: RawClientIp,
    #[serde(default)]
    pub(super) state: RawState,
    #[serde(default)]
    pub(super) audit: RawAudit,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default, rename = "site")]
    pub(super) sites: Vec<Spanned<RawSite>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub(super) https: Addr,
    pub(super) http: Option<Addr>,
    pub(super) admin: Option<Addr>,
    pub(super) https_redirect_port: Option<u16>,
    pub(super) workers: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_connections: Option<usize>,
    pub(super) handshake_timeout: Option<Dur>,
    pub(super) header_read_timeout: Option<Dur>,
    pub(super) max_header_bytes: Option<ByteSize>,
    pub(super) max_h2_streams: Option<u32>,
    pub(super) drain_timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientIp {
    #[serde(default)]
    pub(super) trusted_proxies: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) backend: Option<Spanned<String>>,
    pub(super) path: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) max_keys: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<LogFormat>,
    pub(super) level: Option<Spanned<String>>,
    pub(super) access: Option<bool>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    pub(super) name: Spanned<String>,
    pub(super) hosts: Spanned<Vec<Spanned<String>>>,
    pub(super) app: Option<AppKind>,
    pub(super) upstream: Spanned<String>,
    pub(super) upstream_host: Option<Spanned<String>>,
    pub(super) tls: Spanned<RawTls>,
    pub(super) allow: Option<Spanned<RawAllow>>,
    pub(super) max_body: Option<ByteSize>,
    pub(super) inspect_body_max: Option<ByteSize>,
    pub(super) login: Option<Spanned<RawLogin>>,
    pub(super) step_up: Option<Spanned<RawStepUp>>,
    pub(super) api: Option<Spanned<RawApi>>,
    #[serde(default)]
    pub(super) credentials: BTreeMap<String, Spanned<RawCredential>>,
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
    #[serde(default)]
    pub(super) headers: RawHeaders,
    #[serde(default, rename = "rule")]
    pub(super) rules: Vec<Spanned<RawRule>>,
}

/// Which built-in rule pack a site uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// ERPNext / Frappe.
    Erpnext,
    /// Akaunting 3.x.
    Akaunting,
    /// Only what the config says.
    Generic,
}

#[derive(Debug)]
pub(super) enum RawTls {
    Mode(String),
    Files(RawTlsFiles),
}

// By hand rather than `untagged`, so an error inside the table keeps its own
// message and position instead of "did not match any variant".
impl<'de> Deserialize<'de> for RawTls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTls;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"self-signed\" or a table { cert = \"...\", key = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTls, E> {
                Ok(RawTls::Mode(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTls, A::Error> {
                RawTlsFiles::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawTls::Files)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTlsFiles {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

#[derive(Debug)]
pub(super) enum RawAllow {
    Off(String),
    List(Vec<Spanned<String>>),
}

// By hand so the list keeps each element's position (CIDRs are parsed in
// validation, where an error can point at the element).
impl<'de> Deserialize<'de> for RawAllow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAllow;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of CIDRs such as [\"10.0.0.0/8\"], or \"off\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAllow, E> {
                Ok(RawAllow::Off(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawAllow, A::Error> {
                let mut nets = Vec::new();
                while let Some(net) = seq.next_element::<Spanned<String>>()? {
                    nets.push(net);
                }
                Ok(RawAllow::List(nets))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogin {
    pub(super) enabled: Option<bool>,
    pub(super) per_ip: Option<Rate>,
    pub(super) oracle_per_ip: Option<Rate>,
    pub(super) lockout_after: Option<u32>,
    pub(super) user_lockout_after: Option<u32>,
    pub(super) api_lockout_after: Option<u32>,
    pub(super) window: Option<Dur>,
    pub(super) lockout: Option<Dur>,
    pub(super) lockout_max: Option<Dur>,
    pub(super) lockout_memory: Option<Dur>,
    pub(super) device_cookie: Option<bool>,
    pub(super) device_ttl: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStepUp {
    pub(super) enabled: Option<bool>,
    pub(super) ttl: Option<Dur>,
    pub(super) bind_ip: Option<bool>,
    pub(super) unenrolled: Option<Spanned<String>>,
    pub(super) session_ttl: Option<Dur>,
    pub(super) max_failures: Option<u32>,
    pub(super) lockout: Option<Dur>,
    pub(super) issuer: Option<String>,
    #[serde(default)]
    pub(super) extra_paths: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) extra_doctypes: Vec<String>,
    #[serde(default)]
    pub(super) extra_methods: Vec<Spanned<String>>,
    pub(super) totp: Option<Spanned<RawTotp>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) allow_direct_credentials: Option<bool>,
    pub(super) token_header: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredential {
    pub(super) authorization_env: Option<String>,
    pub(super) authorization_file: Option<std::path::PathBuf>,
    /// Only read to refuse it: secrets never live in the config.
    pub(super) authorization: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTotp {
    pub(super) algorithm: Option<String>,
    pub(super) digits: Option<u32>,
    pub(super) period: Option<Dur>,
    pub(super) skew: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) connect: Option<Dur>,
    pub(super) response_header: Option<Dur>,
    pub(super) pool_idle: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaders {
    pub(super) hsts: Option<String>,
    pub(super) x_frame_options: Option<String>,
    pub(super) x_content_type_options: Option<String>,
    pub(super) referrer_policy: Option<String>,
    pub(super) content_security_policy: Option<String>,
    pub(super) permissions_policy: Option<String>,
    #[serde(default)]
    pub(super) set: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Option<String>,
    pub(super) paths: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) methods: Vec<MethodName>,
    pub(super) allow: Option<Vec<Spanned<String>>>,
    pub(super) action: Spanned<RuleAction>,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Let the request through (to the later checks).
    Allow,
    /// Refuse with a generic 403.
    Deny,
    /// Let the request through only with a fresh TOTP step-up grant.
    StepUp,
}
