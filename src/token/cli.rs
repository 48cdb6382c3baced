//! `erpguard token create|list|show|revoke|rotate` and `erpguard report`.
//!
//! Works on the same store and key file as the running gateways, which pick
//! up every change within a second (they poll the store's token version).
//! Each change is written to the audit log; a token's secret is printed once,
//! at creation or rotation, and never stored or logged.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::audit::AuditEvent;
use crate::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::operator::{Operator, when};
use crate::store::TokenRecord;

/// `erpguard token ...`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Issue a token; its text is printed once.
    Create(CreateArgs),
    /// Every token (never a secret).
    List {
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One token in full (never its secret).
    Show {
        /// The token id (the hex after `eg_`).
        id: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: running gateways refuse it within a second.
    Revoke {
        /// The token id.
        id: String,
    },
    /// Give a token a new secret; the old one keeps working for the overlap.
    Rotate {
        /// The token id.
        id: String,
        /// How long the old secret keeps working.
        #[arg(long, default_value = "24h", value_parser = crate::config::values::parse_duration)]
        overlap: Duration,
    },
}

/// `erpguard token create` arguments.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The site the token works on.
    #[arg(long)]
    site: String,
    /// A short name for the integration.
    #[arg(long)]
    name: String,
    /// A scope (repeat): `Item:read`, `Sales Invoice:read+write`,
    /// `path:GET,POST:/api/method/my_app.*`, `invoices:write`, `company:1`.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// The site credential injected upstream (`[site.credentials.NAME]`).
    #[arg(long)]
    credential: String,
    /// Lifetime (e.g. 90d); none means until revoked.
    #[arg(long, value_parser = crate::config::values::parse_duration)]
    expires: Option<Duration>,
    /// A source network allowed to use it (repeat); none means any.
    #[arg(long = "allow")]
    allow: Vec<ipnet::IpNet>,
    /// A rate limit such as 60/min.
    #[arg(long)]
    rate: Option<String>,
    /// Who owns the integration.
    #[arg(long)]
    owner: Option<String>,
    /// What it is for.
    #[arg(long)]
    description: Option<String>,
}

/// `erpguard report` arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Only this site.
    #[arg(long)]
    site: Option<String>,
    /// Flag tokens unused for this long (never used counts from creation).
    #[arg(long, default_value = "30d", value_parser = crate::config::values::parse_duration)]
    dormant: Duration,
    /// Flag tokens that expire within this long.
    #[arg(long, default_value = "14d", value_parser = crate::config::values::parse_duration)]
    expiring: Duration,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

fn existing(env: &Operator, id: &str) -> Result<TokenRecord, u8> {
    match env.store.token(id) {
        Ok(Some(t)) => Ok(t),
        Ok(None) => {
            eprintln!("erpguard: no token {id:?}");
            Err(EXIT_FAILURE)
        }
        Err(e) => Err(store_err(&e)),
    }
}

fn store_err(e: &crate::store::StoreError) -> u8 {
    eprintln!("erpguard: {e}");
    EXIT_FAILURE
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(usage)
fn usage(msg: String) -> u8 {
    eprintln!("erpguard: {msg}");
    EXIT_USAGE
}

/// Runs a `token` verb.
pub fn run(config_path: &Path, cmd: &TokenCommand) -> u8 {
    let env = match Operator::open(config_path) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let result = match cmd {
        TokenCommand::Create(args) => create(&env, args),
        TokenCommand::List { site, json } => list(&env, site.as_deref(), *json),
        TokenCommand::Show { id, json } => show(&env, id, *json),
        TokenCommand::Revoke { id } => revoke(&env, id),
        TokenCommand::Rotate { id, overlap } => rotate(&env, id, *overlap),
    };
    result.err().unwrap_or(EXIT_OK)
}

fn create(env: &Operator, a: &CreateArgs) -> Result<(), u8> {
    let site = env.site(&a.site)?;
    if !site.credentials.contains_key(&a.credential) {
        return Err(usage(format!(
            "site {:?} has no credential {:?}; define [site.credentials.{}] with authorization_env or authorization_file",
            site.name, a.credential, a.credential
        )));
    }
    super::scope::parse(&a.scopes).map_err(usage)?;
    let company = a.scopes.iter().any(|s| s.trim().starts_with("company:"));
    if company && site.app != crate::config::AppKind::Akaunting {
        return Err(usage(
            "company: scopes exist for Akaunting sites only".to_owned(),
        ));
    }
    let by_name = a.scopes.iter().any(|s| {
        let s = s.trim();
        !s.starts_with("path:") && !s.starts_with("company:")
    });
    if by_name && site.app == crate::config::AppKind::Generic {
        return Err(usage(
            "a generic site knows no DocTypes or resources: use path: scopes".to_owned(),
        ));
    }
    if let Some(rate) = &a.rate {
        crate::config::values::parse_rate(rate).map_err(|e| usage(format!("--rate: {e}")))?;
    }
    let now = SystemTime::now();
    let new = super::generate(&env.key);
    let record = TokenRecord {
        id: new.id.clone(),
        site: site.name.clone(),
        name: a.name.clone(),
        owner: a.owner.clone(),
        description: a.description.clone(),
        scopes: a.scopes.iter().map(|s| s.trim().to_owned()).collect(),
        credential: a.credential.clone(),
        allow: a.allow.iter().map(ToString::to_string).collect(),
        rate: a.rate.clone(),
        hash: new.hash,
        old_hash: None,
        old_until: None,
        created: now,
        expires: a.expires.map(|d| now + d),
        revoked: None,
        last_used: None,
        uses: 0,
    };
    env.store.put_token(&record).map_err(|e| store_err(&e))?;
    env.audit(
        AuditEvent::new("token_created")
            .site(site.name.clone())
            .token_id(record.id.clone())
            .detail(serde_json::json!({ "name": record.name, "scopes": record.scopes, "owner": record.owner })),
    );
    println!(
        "Token {} ({:?}) for site {:?}. Shown once; store it in the integration's secret store:",
        record.id, record.name, site.name
    );
    println!("{}", new.text);
    Ok(())
}

fn revoke(env: &Operator, id: &str) -> Result<(), u8> {
    let token = existing(env, id)?;
    if !env
        .store
        .revoke_token(id, SystemTime::now())
        .map_err(|e| store_err(&e))?
    {
        eprintln!("erpguard: token {id} was already revoked");
        return Err(EXIT_FAILURE);
    }
    env.audit(
        AuditEvent::new("token_revoked")
            .site(token.site)
            .token_id(id.to_owned()),
    );
    println!("Revoked {id}: running gateways refuse it within a second.");
    Ok(())
}

fn rotate(env: &Operator, id: &str, overlap: Duration) -> Result<(), u8> {
    let token = existing(env, id)?;
    let new = super::new_secret(&env.key, id.to_owned());
    let until = SystemTime::now() + overlap;
    if !env
        .store
        .rotate_token(id, &new.hash, until)
        .map_err(|e| store_err(&e))?
    {
        eprintln!("erpguard: token {id} is revoked; it cannot be rotated");
        return Err(EXIT_FAILURE);
    }
    env.audit(
        AuditEvent::new("token_rotated")
            .site(token.site)
            .token_id(id.to_owned())
            .detail(serde_json::json!({ "overlap_secs": overlap.as_secs() })),
    );
    println!(
        "Rotated {id}. The old secret works until {}. The new token, shown once:",
        when(until)
    );
    println!("{}", new.text);
    Ok(())
}

fn state(t: &TokenRecord, now: SystemTime) -> &'static str {
    if t.revoked.is_some() {
        "revoked"
    } else if t.expires.is_some_and(|e| now >= e) {
        "expired"
    } else {
        "active"
    }
}

fn json_of(t: &TokenRecord, now: SystemTime) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "site": t.site,
        "name": t.name,
        "owner": t.owner,
        "description": t.description,
        "state": state(t, now),
        "scopes": t.scopes,
        "credential": t.credential,
        "allow": t.allow,
        "rate": t.rate,
        "created": when(t.created),
        "expires": t.expires.map(when),
        "revoked": t.revoked.map(when),
        "old_secret_until": t.old_until.filter(|u| *u > now).map(when),
        "last_used": t.last_used.map(when),
        "uses": t.uses,
    })
}

fn list(env: &Operator, site: Option<&str>, json: bool) -> Result<(), u8> {
    let all = env.store.tokens(site).map_err(|e| store_err(&e))?;
    let now = SystemTime::now();
    if json {
        all.iter().for_each(|t| println!("{}", json_of(t, now)));
        return Ok(());
    }
    if all.is_empty() {
        println!("no tokens");
        return Ok(());
    }
    println!(
        "{:<16} {:<10} {:<20} {:<8} {:<21} {:>8}  SCOPES",
        "ID", "SITE", "NAME", "STATE", "LAST USED", "USES"
    );
    for t in &all {
        println!(
            "{:<16} {:<10} {:<20} {:<8} {:<21} {:>8}  {}",
            t.id,
            t.site,
            t.name,
            state(t, now),
            t.last_used.map_or_else(|| "never".to_owned(), when),
            t.uses,
            t.scopes.join(" ")
        );
    }
    Ok(())
}

fn show(env: &Operator, id: &str, json: bool) -> Result<(), u8> {
    let t = existing(env, id)?;
    let v = json_of(&t, SystemTime::now());
    if json {
        println!("{v}");
        return Ok(());
    }
    if let Some(map) = v.as_object() {
        for (k, val) in map {
            let text = match val {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".to_owned(),
                other => other.to_string(),
            };
            println!("{k:<17} {text}");
        }
    }
    Ok(())
}

/// Runs `erpguard report`.
pub fn report(config_path: &Path, a: &ReportArgs) -> u8 {
    let env = match Operator::open(config_path) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let all = match env.store.tokens(a.site.as_deref()) {
        Ok(t) => t,
        Err(e) => return store_err(&e),
    };
    let now = SystemTime::now();
    let rows: Vec<(TokenRecord, Vec<&'static str>)> = all
        .into_iter()
        .map(|t| {
            let flags = flags(&t, now, a);
            (t, flags)
        })
        .collect();
    if a.json {
        for (t, flags) in &rows {
            let mut v = json_of(t, now);
            v["flags"] = serde_json::json!(flags);
            println!("{v}");
        }
        return EXIT_OK;
    }
    if rows.is_empty() {
        println!("no tokens");
        return EXIT_OK;
    }
    println!(
        "{:<16} {:<10} {:<20} {:<24} {:<21} {:<21} {:>7}  {:<26} SCOPES",
        "ID", "SITE", "NAME", "OWNER", "LAST USED", "EXPIRES", "USES", "FLAGS"
    );
    for (t, flags) in &rows {
        println!(
            "{:<16} {:<10} {:<20} {:<24} {:<21} {:<21} {:>7}  {:<26} {}",
            t.id,
            t.site,
            t.name,
            t.owner.as_deref().unwrap_or("-"),
            t.last_used.map_or_else(|| "never".to_owned(), when),
            t.expires.map_or_else(|| "never".to_owned(), when),
            t.uses,
            if flags.is_empty() {
                "-".to_owned()
            } else {
                flags.join(",")
            },
            t.scopes.join(" ")
        );
    }
    EXIT_OK
}

fn flags(t: &TokenRecord, now: SystemTime, a: &ReportArgs) -> Vec<&'static str> {
    let mut flags = Vec::new();
    match state(t, now) {
        "active" => {}
        other => flags.push(other),
    }
    let since = t.last_used.unwrap_or(t.created);
    if t.revoked.is_none() && now.duration_since(since).is_ok_and(|d| d >= a.dormant) {
        flags.push("dormant");
    }
    if let Some(e) = t.expires
        && e > now
        && e.duration_since(now).is_ok_and(|d| d <= a.expiring)
    {
        flags.push("expiring");
    }
    if t.revoked.is_none() && t.old_until.is_some_and(|u| u > now) {
        flags.push("rotating");
    }
    flags
}
