//! What the operator verbs that change state (`totp`, `token`, `report`)
//! open: the checked config, the state store and the gateway key, plus a
//! way to write their audit lines to the same log the gateway writes.

use std::path::Path;
use std::sync::Arc;

use crate::audit::{AuditEvent, AuditLog};
use crate::cli::{EXIT_FAILURE, EXIT_USAGE};
use crate::config::{Config, Site};
use crate::keys::SecretKey;
use crate::store::StateStore;

/// A time as operator output shows it (RFC 3339, seconds, UTC).
pub fn when(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The config, store and key of one CLI invocation.
pub struct Operator {
    /// The checked config.
    pub config: Config,
    /// The state store the gateways use.
    pub store: Arc<dyn StateStore>,
    /// The gateway key (created if this is the first use).
    pub key: SecretKey,
}

impl Operator {
    /// Opens everything, or prints why not and returns the exit code.
    pub fn open(config_path: &Path) -> Result<Operator, u8> {
        let config = crate::cli::load_or_report(config_path)?;
        let store = crate::server::open_store(&config.state).map_err(|e| {
            eprintln!("erpguard: {e}");
            EXIT_FAILURE
        })?;
        let key = SecretKey::load_or_create(&config.state.key_file).map_err(|e| {
            eprintln!("erpguard: {e}");
            EXIT_FAILURE
        })?;
        Ok(Operator { config, store, key })
    }

    /// The site named `name`, or a usage error.
    pub fn site(&self, name: &str) -> Result<&Site, u8> {
        self.config
            .sites
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                eprintln!("erpguard: no site named {name:?} in the config");
                EXIT_USAGE
            })
    }

    /// Writes one audit line (the log is shared with running gateways; its
    /// hash chain is kept across processes). A failure is a warning: the
    /// change itself has been made.
    pub fn audit(&self, event: AuditEvent) {
        match AuditLog::open(&self.config.audit_path) {
            Ok(log) => {
                log.record(event);
                log.flush();
            }
            Err(e) => eprintln!("erpguard: warning: the audit log could not be written: {e}"),
        }
    }
}
