//! `[site.api]` and `[site.credentials.NAME]`.
//!
//! Credentials are read when the config is loaded (and again at every
//! reload), from an environment variable or a file: never from the config
//! itself, which is refused with a clear error. A missing variable or file is
//! an invalid config, so a gateway never starts (or reloads) without the
//! credential its tokens need.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};
use toml::Spanned;

use super::file::{RawApi, RawCredential};
use super::validate::Cx;
use super::{ApiPolicy, ConfigError, Credential};

pub(super) fn api(cx: &Cx<'_>, raw: Option<Spanned<RawApi>>) -> Result<ApiPolicy, ConfigError> {
    let raw = raw.map(Spanned::into_inner).unwrap_or_default();
    let token_header = match raw.token_header {
        None => None,
        Some(h) => {
            let name = HeaderName::from_bytes(h.get_ref().as_bytes()).map_err(|_| {
                cx.err(
                    h.span(),
                    format!("api.token_header: {:?} is not a header name", h.get_ref()),
                )
                .hint("write a header name such as \"X-ERPGuard-Token\"")
            })?;
            if name == http::header::AUTHORIZATION || name == http::header::COOKIE {
                return Err(cx
                    .err(h.span(), "api.token_header cannot be Authorization or Cookie")
                    .hint("Authorization already carries tokens as `Bearer eg_...`; pick another name"));
            }
            Some(name)
        }
    };
    Ok(ApiPolicy {
        allow_direct_credentials: raw.allow_direct_credentials.unwrap_or(false),
        token_header,
    })
}

pub(super) fn credentials(
    cx: &Cx<'_>,
    site: &str,
    raw: BTreeMap<String, Spanned<RawCredential>>,
) -> Result<BTreeMap<String, Credential>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, raw) in raw {
        let span = raw.span();
        let raw = raw.into_inner();
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_name {
            return Err(cx
                .err(
                    span,
                    format!("site {site:?}: invalid credential name {name:?}"),
                )
                .hint("use 1-64 characters of a-z, A-Z, 0-9, '-' and '_'"));
        }
        if let Some(literal) = raw.authorization {
            // Position only: the usual source snippet would print the secret.
            let pos = cx.pos(literal.span());
            return Err(ConfigError::whole(
                cx.path,
                format!(
                    "line {}: site {site:?}: credential {name:?} holds a literal secret (not shown)",
                    pos.line
                ),
            )
                .hint("secrets never live in the config: write authorization_env = \"VAR\" or authorization_file = \"/path\" holding the whole Authorization value"));
        }
        let (source, text) = match (raw.authorization_env, raw.authorization_file) {
            (Some(var), None) => {
                let text = std::env::var(&var).map_err(|_| {
                    cx.err(span.clone(), format!("site {site:?}: credential {name:?}: environment variable {var} is not set"))
                        .hint("export the variable before starting erpguard, e.g. ERP_SYNC_AUTH='token key:secret'")
                })?;
                (format!("env {var}"), text)
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    cx.err(span.clone(), format!("site {site:?}: credential {name:?}: cannot read {}: {e}", path.display()))
                        .hint("the file holds the whole upstream Authorization value on one line; keep it mode 0600")
                })?;
                (format!("file {}", path.display()), text)
            }
            _ => {
                return Err(cx
                    .err(span, format!("site {site:?}: credential {name:?} needs exactly one of authorization_env and authorization_file"))
                    .hint("e.g. authorization_env = \"ERP_SYNC_AUTH\""));
            }
        };
        let mut value = HeaderValue::from_str(text.trim()).map_err(|_| {
            ConfigError::whole(
                cx.path,
                format!(
                    "site {site:?}: credential {name:?} ({source}) is not a valid header value"
                ),
            )
        })?;
        if value.is_empty() {
            return Err(ConfigError::whole(
                cx.path,
                format!("site {site:?}: credential {name:?} ({source}) is empty"),
            ));
        }
        value.set_sensitive(true);
        out.insert(name, Credential { source, value });
    }
    Ok(out)
}
