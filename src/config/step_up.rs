//! `[site.step_up]`: the profile's step-up defaults, overridden key by key.

use std::time::Duration;

use toml::Spanned;

use super::file::{AppKind, RawStepUp, RawTotp};
use super::validate::Cx;
use super::{ConfigError, StepUpPolicy, Unenrolled};
use crate::profile::admin::Extra;
use crate::totp::{Algorithm, Params};

/// Checks `[site.step_up]` of site `site`.
pub(super) fn step_up(
    cx: &Cx<'_>,
    site: &str,
    app: AppKind,
    raw: Option<Spanned<RawStepUp>>,
) -> Result<StepUpPolicy, ConfigError> {
    let span = raw.as_ref().map_or(0..0, Spanned::span);
    let raw = raw.map(Spanned::into_inner).unwrap_or_default();
    let d = |v: Option<super::values::Dur>, secs: u64| v.map_or(Duration::from_secs(secs), |d| d.0);
    let policy = StepUpPolicy {
        enabled: raw.enabled.unwrap_or(app != AppKind::Generic),
        ttl: d(raw.ttl, 10 * 60),
        bind_ip: raw.bind_ip.unwrap_or(false),
        unenrolled: unenrolled(cx, raw.unenrolled.as_ref())?,
        // Frappe's default idle expiry is 170 hours; a binding need not outlive it.
        session_ttl: d(raw.session_ttl, 7 * 86_400),
        max_failures: raw.max_failures.unwrap_or(5).max(1),
        lockout: d(raw.lockout, 15 * 60),
        issuer: raw.issuer.unwrap_or_else(|| format!("erpguard {site}")),
        totp: totp(cx, site, span.clone(), raw.totp)?,
        extra: Extra {
            doctypes: raw.extra_doctypes,
            methods: methods(cx, &raw.extra_methods)?,
            paths: paths(cx, &raw.extra_paths)?,
        },
    };
    if policy.ttl < Duration::from_secs(1) || policy.ttl > Duration::from_secs(24 * 3600) {
        return Err(cx
            .err(
                span,
                format!("site {site:?}: step_up.ttl must be between 1s and 24h"),
            )
            .hint("a grant is meant to be short: ttl = \"10m\" is usual"));
    }
    Ok(policy)
}

fn unenrolled(cx: &Cx<'_>, raw: Option<&Spanned<String>>) -> Result<Unenrolled, ConfigError> {
    match raw.map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("deny", _)) => Ok(Unenrolled::Deny),
        Some(("allow", _)) => Ok(Unenrolled::Allow),
        Some((other, span)) => Err(cx
            .err(
                span,
                format!("unknown step_up.unenrolled value {other:?} (in a [site.step_up] table)"),
            )
            .hint("write \"deny\" (the default) or \"allow\" (audited, for a rollout)")),
    }
}

fn totp(
    cx: &Cx<'_>,
    site: &str,
    span: std::ops::Range<usize>,
    raw: Option<Spanned<RawTotp>>,
) -> Result<Params, ConfigError> {
    let span = raw.as_ref().map_or(span, Spanned::span);
    let raw = raw.map(Spanned::into_inner).unwrap_or_default();
    let defaults = Params::default();
    let algorithm = match raw.algorithm {
        None => Algorithm::Sha1,
        Some(name) => name.parse().map_err(|_| {
            cx.err(
                span.clone(),
                format!("site {site:?}: unknown TOTP algorithm {name:?}"),
            )
            .hint(
                "write \"SHA1\" (what every authenticator app supports), \"SHA256\" or \"SHA512\"",
            )
        })?,
    };
    let params = Params {
        algorithm,
        digits: raw.digits.unwrap_or(defaults.digits),
        period: raw.period.map_or(defaults.period, |d| d.0.as_secs()),
        skew: raw.skew.unwrap_or(defaults.skew),
    };
    if params.validate().is_err() || params.skew > 10 {
        return Err(cx
            .err(span, format!("site {site:?}: unusable TOTP parameters"))
            .hint("digits must be 6 to 8, period at least 1s, skew at most 10 steps"));
    }
    Ok(params)
}

fn paths(cx: &Cx<'_>, raw: &[Spanned<String>]) -> Result<Vec<String>, ConfigError> {
    raw.iter()
        .map(|p| match p.get_ref().starts_with('/') {
            true => Ok(p.get_ref().clone()),
            false => Err(cx
                .err(
                    p.span(),
                    format!(
                        "step_up.extra_paths: {:?} does not start with '/'",
                        p.get_ref()
                    ),
                )
                .hint("write a path glob such as \"/app/my-admin-page*\"")),
        })
        .collect()
}

fn methods(cx: &Cx<'_>, raw: &[Spanned<String>]) -> Result<Vec<String>, ConfigError> {
    raw.iter()
        .map(|m| {
            let name = m.get_ref();
            // The three forms admin.rs matches: exact, `prefix.*`, `*.suffix`.
            let core = name
                .strip_suffix(".*")
                .or_else(|| name.strip_prefix("*."))
                .unwrap_or(name);
            let ok = !core.is_empty()
                && core.bytes().all(|b| b.is_ascii_alphanumeric() || b"._".contains(&b));
            match ok {
                true => Ok(name.clone()),
                false => Err(cx
                    .err(m.span(), format!("step_up.extra_methods: {name:?} is not a method name"))
                    .hint("write dotted names such as \"my_app.api.reset_all\", \"my_app.admin.*\" or \"*.take_backup\"")),
            }
        })
        .collect()
}
