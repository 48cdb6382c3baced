//! `erpguard lockout list|clear`: see and lift login lockouts. Works on the
//! same store file as the running gateway, which sees a cleared lock on the
//! next attempt (every login attempt reads the store).

use std::path::Path;
use std::time::SystemTime;

use crate::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::store::{Key, Lock};

/// `erpguard lockout ...`
#[derive(Debug, clap::Subcommand)]
pub enum LockoutCommand {
    /// Active lockouts, newest first.
    List {
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lift the lockouts and failure counts of a user or a client address.
    Clear {
        /// The site.
        #[arg(long)]
        site: String,
        /// The ERP user (case-insensitive).
        #[arg(long, required_unless_present = "ip", conflicts_with = "ip")]
        user: Option<String>,
        /// The client address (IPv6: any address of the /64).
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
    },
}

/// Runs a lockout verb.
pub fn run(config_path: &Path, cmd: &LockoutCommand) -> u8 {
    let config = match crate::cli::load_or_report(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match crate::server::open_store(&config.state) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("erpguard: {e}");
            return EXIT_FAILURE;
        }
    };
    match cmd {
        LockoutCommand::List { site, limit, json } => {
            match store.locks(site.as_deref(), None, SystemTime::now(), *limit) {
                Ok(locks) => {
                    print!("{}", render(&locks, *json));
                    EXIT_OK
                }
                Err(e) => fail(&e),
            }
        }
        LockoutCommand::Clear { site, user, ip } => {
            if !config.sites.iter().any(|s| &s.name == site) {
                eprintln!(
                    "erpguard: no site named {site:?} in {}",
                    config_path.display()
                );
                return EXIT_USAGE;
            }
            let ip = ip.map(crate::store::ip_subject);
            let user = user.as_deref().map(crate::profile::fold_user);
            match store.clear(site, user.as_deref(), ip.as_deref()) {
                Ok(n) => {
                    audit_clear(&config.audit_path, site, user.as_deref(), ip.as_deref(), n);
                    println!("cleared {n} counter(s) and lockout(s) on site {site}");
                    EXIT_OK
                }
                Err(e) => fail(&e),
            }
        }
    }
}

/// Records the operator's clear in the audit log (the log's file lock keeps
/// one chain while the gateway writes to it too).
fn audit_clear(path: &Path, site: &str, user: Option<&str>, ip: Option<&str>, cleared: usize) {
    let log = match crate::audit::AuditLog::open(path) {
        Ok(log) => log,
        Err(e) => {
            eprintln!(
                "erpguard: warning: could not write the audit log {}: {e}",
                path.display()
            );
            return;
        }
    };
    let mut ev = crate::audit::AuditEvent::new("lockout_cleared")
        .site(site)
        .reason("erpguard lockout clear")
        .detail(serde_json::json!({ "cleared": cleared, "ip": ip }));
    if let Some(user) = user {
        ev = ev.user(user);
    }
    log.record(ev);
    log.flush();
}

fn fail(e: &crate::store::StoreError) -> u8 {
    eprintln!("erpguard: state store: {e}");
    EXIT_FAILURE
}

fn render(locks: &[(Key, Lock)], json: bool) -> String {
    let now = SystemTime::now();
    let left = |l: &Lock| l.until.duration_since(now).map_or(0, |d| d.as_secs());
    if json {
        return locks
            .iter()
            .map(|(k, l)| {
                serde_json::json!({ "site": k.site, "scope": k.scope.as_str(), "subject": k.subject,
                    "remaining_secs": left(l), "strikes": l.strikes })
                .to_string()
                    + "\n"
            })
            .collect();
    }
    if locks.is_empty() {
        return "no active lockouts\n".to_owned();
    }
    let mut out = format!(
        "{:<12} {:<8} {:<48} {:>10} {:>7}\n",
        "SITE", "SCOPE", "SUBJECT", "REMAINING", "STRIKES"
    );
    for (k, l) in locks {
        let scope = k.scope.as_str();
        out.push_str(&format!(
            "{:<12} {:<8} {:<48} {:>9}s {:>7}\n",
            k.site,
            scope,
            k.subject,
            left(l),
            l.strikes
        ));
    }
    out
}
