//! `erpguard totp enroll|link|list|reset`: TOTP enrolments for step-up.
//!
//! Works on the same store and key file as the running gateway; a running
//! gateway sees an enrolment or a reset at the next administrative request
//! (every step-up check reads the store). Each change is written to the
//! audit log.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::audit::AuditEvent;
use crate::cli::{EXIT_FAILURE, EXIT_OK};
use crate::config::Site;
use crate::operator::{Operator, when};
use crate::stepup::{cookie, endpoint::RECOVERY_CODES, verify};
use crate::store::{EnrolLink, Enrolment, EnrolmentInfo, fold_user};
use crate::totp;

/// `erpguard totp ...`
#[derive(Debug, clap::Subcommand)]
pub enum TotpCommand {
    /// Enrol a user: print the otpauth:// URI, a QR code and the recovery codes (once).
    Enroll {
        /// The site (its `name` in the config).
        #[arg(long)]
        site: String,
        /// The ERP user (ERPNext user id such as an e-mail or Administrator;
        /// Akaunting e-mail). Case-insensitive.
        #[arg(long)]
        user: String,
        /// Also write the QR code as a PNG file.
        #[arg(long, value_name = "FILE")]
        png: Option<PathBuf>,
        /// Also write the QR code as an SVG file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Do not draw the QR code in the terminal.
        #[arg(long)]
        no_qr: bool,
        /// Replace an existing enrolment (its codes stop working).
        #[arg(long)]
        force: bool,
    },
    /// Print a one-time HTTPS link through which the user, signed in to the
    /// ERP, scans the QR code and confirms with a first code.
    Link {
        /// The site.
        #[arg(long)]
        site: String,
        /// The ERP user.
        #[arg(long)]
        user: String,
        /// How long the link works.
        #[arg(long, default_value = "24h", value_parser = crate::config::values::parse_duration)]
        expires: Duration,
        /// The site's public URL (default: https:// and the site's first host,
        /// with the HTTPS listener's port unless it is 443).
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// Replace an existing enrolment.
        #[arg(long)]
        force: bool,
    },
    /// List enrolments (never a secret).
    List {
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user's enrolment, recovery codes, grants and links.
    Reset {
        /// The site.
        #[arg(long)]
        site: String,
        /// The ERP user.
        #[arg(long)]
        user: String,
    },
}

/// Runs a `totp` verb.
pub fn run(config_path: &Path, cmd: &TotpCommand) -> u8 {
    let env = match Operator::open(config_path) {
        Ok(env) => env,
        Err(code) => return code,
    };
    let result = match cmd {
        TotpCommand::Enroll {
            site,
            user,
            png,
            svg,
            no_qr,
            force,
        } => enroll(
            &env,
            site,
            user,
            Qr {
                png: png.as_deref(),
                svg: svg.as_deref(),
                terminal: !no_qr,
            },
            *force,
        ),
        TotpCommand::Link {
            site,
            user,
            expires,
            base_url,
            force,
        } => link(&env, site, user, *expires, base_url.as_deref(), *force),
        TotpCommand::List { site, json } => list(&env, site.as_deref(), *json),
        TotpCommand::Reset { site, user } => reset(&env, site, user),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(code) => code,
    }
}

#[derive(Clone, Copy)]
struct Qr<'a> {
    png: Option<&'a Path>,
    svg: Option<&'a Path>,
    terminal: bool,
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(store_err)
fn store_err(e: crate::store::StoreError) -> u8 {
    eprintln!("erpguard: {e}");
    EXIT_FAILURE
}

/// Refuses to replace a working enrolment unless forced.
fn check_free(env: &Operator, site: &str, user: &str, force: bool) -> Result<(), u8> {
    let existing = env.store.enrolment(site, user).map_err(store_err)?;
    if existing.is_some_and(|e| e.active) && !force {
        eprintln!(
            "erpguard: {user:?} is already enrolled on site {site:?}; pass --force to replace the enrolment, or run `erpguard totp reset` first"
        );
        return Err(EXIT_FAILURE);
    }
    Ok(())
}

fn new_enrolment(
    env: &Operator,
    site: &str,
    user: &str,
    active: bool,
) -> Result<(totp::Secret, Enrolment), u8> {
    let secret = totp::Secret::generate();
    let sealed = totp::seal(
        &verify::seal_key(&env.key),
        &verify::seal_aad(site, user),
        &secret,
    )
    .map_err(|e| {
        eprintln!("erpguard: {e}");
        EXIT_FAILURE
    })?;
    let enrolment = Enrolment {
        site: site.to_owned(),
        user: user.to_owned(),
        sealed,
        last_step: None,
        active,
        created: SystemTime::now(),
    };
    Ok((secret, enrolment))
}

fn enroll(env: &Operator, site_name: &str, user: &str, qr: Qr<'_>, force: bool) -> Result<(), u8> {
    let site = env.site(site_name)?;
    let user = fold_user(user.trim());
    check_free(env, &site.name, &user, force)?;
    let (secret, enrolment) = new_enrolment(env, &site.name, &user, true)?;
    let codes = totp::recovery_codes(RECOVERY_CODES);
    let rkey = verify::recovery_key(&env.key);
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| totp::hash_recovery(&rkey, c))
        .collect();
    let uri = totp::otpauth_uri(&secret, &site.step_up.issuer, &user, &site.step_up.totp);
    write_qr_files(&uri, &qr)?;
    env.store
        .put_enrolment(&enrolment, &hashes)
        .map_err(store_err)?;
    env.audit(
        AuditEvent::new("totp_enrolled")
            .site(site.name.clone())
            .user(user.clone())
            .reason(if force { "cli (replaced)" } else { "cli" }),
    );
    println!(
        "Enrolled {user:?} on site {:?}. Add this to the user's authenticator app:\n",
        site.name
    );
    println!("{uri}\n");
    if qr.terminal {
        match totp::qr_terminal(&uri) {
            Ok(text) => println!("{text}\n"),
            Err(e) => eprintln!("erpguard: warning: {e}"),
        }
    }
    println!("Recovery codes (shown once; each works once; give them to the user):");
    for (i, code) in codes.iter().enumerate() {
        println!("  {:>2}. {code}", i + 1);
    }
    Ok(())
}

fn write_qr_files(uri: &str, qr: &Qr<'_>) -> Result<(), u8> {
    let fail = |path: &Path, e: String| {
        eprintln!("erpguard: cannot write {}: {e}", path.display());
        EXIT_FAILURE
    };
    if let Some(path) = qr.png {
        let png = totp::qr_png(uri).map_err(|e| fail(path, e.to_string()))?;
        std::fs::write(path, png).map_err(|e| fail(path, e.to_string()))?;
    }
    if let Some(path) = qr.svg {
        let svg = totp::qr_svg(uri).map_err(|e| fail(path, e.to_string()))?;
        std::fs::write(path, svg).map_err(|e| fail(path, e.to_string()))?;
    }
    Ok(())
}

fn link(
    env: &Operator,
    site_name: &str,
    user: &str,
    expires: Duration,
    base_url: Option<&str>,
    force: bool,
) -> Result<(), u8> {
    let site = env.site(site_name)?;
    let user = fold_user(user.trim());
    check_free(env, &site.name, &user, force)?;
    let (_, pending) = new_enrolment(env, &site.name, &user, false)?;
    let token = format!("{}{}", cookie::new_id(), cookie::new_id());
    let link = EnrolLink {
        id: cookie::stored(&env.key, "link", &token),
        site: site.name.clone(),
        user: user.clone(),
        expires: SystemTime::now() + expires,
    };
    env.store.put_enrolment(&pending, &[]).map_err(store_err)?;
    env.store.put_link(&link).map_err(store_err)?;
    env.audit(
        AuditEvent::new("totp_link_created")
            .site(site.name.clone())
            .user(user.clone()),
    );
    let base = base_url.map_or_else(
        || default_base(env, site),
        |b| b.trim_end_matches('/').to_owned(),
    );
    println!(
        "One-time enrolment link for {user:?} on site {:?} (valid {}):",
        site.name,
        humantime::format_duration(expires)
    );
    println!("{base}{}?token={token}", crate::stepup::ENROL_PATH);
    println!(
        "The user opens it while signed in to the ERP as {user:?}, scans the QR code and types the first code."
    );
    Ok(())
}

fn default_base(env: &Operator, site: &Site) -> String {
    let host = site.hosts.first().map_or("localhost", String::as_str);
    match env.config.listen.https.port() {
        443 => format!("https://{host}"),
        port => format!("https://{host}:{port}"),
    }
}

fn list(env: &Operator, site: Option<&str>, json: bool) -> Result<(), u8> {
    let all = env.store.enrolments(site).map_err(store_err)?;
    print!("{}", render(&all, json));
    Ok(())
}

/// The listing as a table or JSON lines.
pub fn render(all: &[EnrolmentInfo], json: bool) -> String {
    let mut out = String::new();
    if json {
        for e in all {
            let line = serde_json::json!({
                "site": e.site,
                "user": e.user,
                "state": if e.active { "active" } else { "pending" },
                "created": when(e.created),
                "last_used": e.last_used.map(when),
                "recovery_codes_left": e.recovery_left,
            });
            out.push_str(&format!("{line}\n"));
        }
        return out;
    }
    if all.is_empty() {
        return "no enrolments\n".to_owned();
    }
    out.push_str(&format!(
        "{:<12} {:<32} {:<8} {:<21} {:<21} {}\n",
        "SITE", "USER", "STATE", "CREATED", "LAST USED", "RECOVERY LEFT"
    ));
    for e in all {
        out.push_str(&format!(
            "{:<12} {:<32} {:<8} {:<21} {:<21} {}\n",
            e.site,
            e.user,
            if e.active { "active" } else { "pending" },
            when(e.created),
            e.last_used.map_or_else(|| "never".to_owned(), when),
            e.recovery_left
        ));
    }
    out
}

fn reset(env: &Operator, site_name: &str, user: &str) -> Result<(), u8> {
    let site = env.site(site_name)?;
    let user = fold_user(user.trim());
    let existed = env
        .store
        .delete_enrolment(&site.name, &user)
        .map_err(store_err)?;
    if !existed {
        eprintln!(
            "erpguard: {user:?} has no enrolment on site {:?}",
            site.name
        );
        return Err(EXIT_FAILURE);
    }
    env.audit(
        AuditEvent::new("totp_reset")
            .site(site.name.clone())
            .user(user.clone()),
    );
    println!(
        "Reset {user:?} on site {:?}: its codes, recovery codes and grants no longer work.",
        site.name
    );
    Ok(())
}
