//! `erpguard check`: full validation without binding a port or writing a file,
//! then a one-screen summary of the effective policy.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use crate::cli::{EXIT_OK, EXIT_USAGE};
use crate::config::{Allow, Config, Site};
use crate::runtime::{self, Runtime};
use crate::tls::{CertSource, CertStore, Mode};

/// Validates the config at `path`; prints the summary (exit 0) or the error (exit 64).
pub fn check(path: &Path) -> u8 {
    let config = match crate::cli::load_or_report(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let certs = match runtime::load_certs(&config, Mode::CheckOnly) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_USAGE;
        }
    };
    if let Err(e) = Runtime::build(config.clone(), 0) {
        eprintln!("{e}");
        return EXIT_USAGE;
    }
    print!("{}", summary(&config, &certs));
    EXIT_OK
}

/// The summary text.
pub fn summary(config: &Config, certs: &CertStore) -> String {
    let mut out = String::new();
    let l = &config.listen;
    let _ = writeln!(out, "{}: ok", config.source.display());
    let workers = match l.workers {
        0 => format!("{} workers, one per CPU", l.worker_count()),
        n => format!("{n} workers"),
    };
    let _ = writeln!(out, "listen:    https {} ({workers})", l.https);
    if let Some(http) = l.http {
        let port = l.https_redirect_port.unwrap_or(l.https.port());
        let _ = writeln!(
            out,
            "           http  {http} (redirects to https port {port})"
        );
    }
    match l.admin {
        Some(admin) => {
            let _ = writeln!(out, "           admin {admin} (/healthz /readyz /metrics)");
        }
        None => {
            let _ = writeln!(out, "           admin: off");
        }
    }
    let _ = match config.trusted_proxies.is_empty() {
        true => writeln!(
            out,
            "client ip: the TCP peer (no trusted proxies; X-Forwarded-For is ignored)"
        ),
        false => writeln!(
            out,
            "client ip: X-Forwarded-For from trusted proxies {}",
            join(&config.trusted_proxies)
        ),
    };
    let _ = writeln!(
        out,
        "state:     {:?} {} (key {}, at most {} counters)",
        config.state.backend,
        config.state.path.display(),
        config.state.key_file.display(),
        config.state.max_keys
    );
    let _ = writeln!(out, "audit:     {}", config.audit_path.display());
    for site in &config.sites {
        site_summary(&mut out, site, certs);
    }
    out
}

fn site_summary(out: &mut String, site: &Site, certs: &CertStore) {
    let _ = writeln!(
        out,
        "site {} ({:?}): {} → {}",
        site.name,
        site.app,
        site.hosts.join(", "),
        site.upstream.url
    );
    let _ = writeln!(out, "  tls:   {}", tls_line(site, certs));
    let allow = match &site.allow {
        Allow::Off => "everyone (allow = \"off\")".to_owned(),
        Allow::Nets(n) if n.is_empty() => {
            "NOBODY: the allow list is empty, every request is refused".to_owned()
        }
        Allow::Nets(n) => join(n),
    };
    let _ = writeln!(out, "  allow: {allow}");
    let t = &site.timeouts;
    let _ = writeln!(
        out,
        "  limits: body {} bytes; upstream connect {:?}, response {:?}",
        site.max_body, t.connect, t.response_header
    );
    let l = &site.login;
    if l.enabled {
        let _ = writeln!(
            out,
            "  login: {} per IP; lock after {} failures per (user, IP) or {} per user, within {}; lock {} doubling to {}; device cookie {}",
            l.per_ip,
            l.lockout_after,
            l.user_lockout_after,
            humantime::format_duration(l.window),
            humantime::format_duration(l.lockout),
            humantime::format_duration(l.lockout_max),
            if l.device_cookie { "on" } else { "off" }
        );
    } else {
        let _ = writeln!(out, "  login: guard off");
    }
    let su = &site.step_up;
    match (su.enabled, crate::stepup::in_use(site)) {
        (true, _) => {
            let _ = writeln!(
                out,
                "  step-up: on for the {:?} profile's admin requests; grant {}; unenrolled users {}; lock after {} wrong codes for {}",
                site.app,
                humantime::format_duration(su.ttl),
                match su.unenrolled {
                    crate::config::Unenrolled::Deny => "refused",
                    crate::config::Unenrolled::Allow => "let through (audited)",
                },
                su.max_failures,
                humantime::format_duration(su.lockout),
            );
        }
        (false, true) => {
            let _ = writeln!(out, "  step-up: only on step_up rules");
        }
        (false, false) => {
            let _ = writeln!(out, "  step-up: off");
        }
    }
    let creds: Vec<String> = site
        .credentials
        .iter()
        .map(|(name, c)| format!("{name} ({})", c.source))
        .collect();
    let _ = writeln!(
        out,
        "  api: erpguard tokens{}; the app's own credentials from clients {}; credentials: {}",
        site.api
            .token_header
            .as_ref()
            .map(|h| format!(" (also in {h})"))
            .unwrap_or_default(),
        if site.api.allow_direct_credentials {
            "allowed"
        } else {
            "refused"
        },
        if creds.is_empty() {
            "none".to_owned()
        } else {
            creds.join(", ")
        }
    );
    if site.rules.is_empty() {
        let _ = writeln!(
            out,
            "  rules: none (everything the allow list admits is forwarded)"
        );
    }
    for (i, r) in site.rules.iter().enumerate() {
        let paths: Vec<&str> = r.paths.iter().map(|g| g.as_str()).collect();
        let methods = if r.methods.is_empty() {
            "any method".to_owned()
        } else {
            join(&r.methods)
        };
        let from = r
            .allow
            .as_ref()
            .map(|a| format!(" from {}", join(a)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  rule {}: {} [{}] {methods}{from} → {:?}",
            i + 1,
            r.name,
            paths.join(", "),
            r.action
        );
    }
}

fn tls_line(site: &Site, certs: &CertStore) -> String {
    if certs.pending_self_signed().iter().any(|s| s == &site.name) {
        return "self-signed, generated under certs/ on first start".to_owned();
    }
    let kind = match &site.tls.source {
        CertSource::SelfSigned { .. } => "self-signed",
        CertSource::Files { .. } => "files",
    };
    match certs.info().iter().find(|c| c.site == site.name) {
        Some(info) => format!(
            "{kind} {}, expires {}",
            info.path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            days_left(info.not_after)
        ),
        None => kind.to_owned(),
    }
}

fn days_left(t: SystemTime) -> String {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => format!("in {} days", d.as_secs() / 86_400),
        Err(_) => "already (expired)".to_owned(),
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
