//! The durable state of step-up: who owns a session, grants, TOTP enrolments
//! and enrolment links.
//!
//! What every backend promises, on top of the [`super`] promises:
//!
//! - **Nothing usable is stored in the clear.** Session and grant ids and link
//!   tokens are stored as keyed hashes (the caller hashes them; a copy of the
//!   store yields no cookie), TOTP secrets sealed, recovery codes hashed.
//! - **Expired is absent.** A binding, grant or link past its expiry is never
//!   returned, whether or not the sweeper has deleted it yet.
//! - **A code or recovery code is used once**, even by racing requests on
//!   several gateway processes: [`StepUpStore::accept_step`] and
//!   [`StepUpStore::use_recovery`] are single atomic writes.
//! - **Ending a session ends its grants**; resetting an enrolment ends the
//!   user's grants and links.

use std::time::SystemTime;

use super::StoreError;

/// Which ERP user owns a browser session, learnt at a successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Keyed hash of erpguard's session cookie value.
    pub id: String,
    /// The site.
    pub site: String,
    /// The ERP user (case-folded).
    pub user: String,
    /// Keyed hash of the ERP's own session id, where it is stable (ERPNext's
    /// `sid`); `None` where it rotates (Akaunting).
    pub erp_session: Option<String>,
    /// When the binding stops counting.
    pub expires: SystemTime,
}

/// A step-up grant: a correct code, for one session and user, for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Keyed hash of the grant cookie value.
    pub id: String,
    /// The site.
    pub site: String,
    /// The binding ([`Binding::id`]) the code was typed in.
    pub binding: String,
    /// The user who typed it.
    pub user: String,
    /// The client address it was earned from (only when the site binds grants to IPs).
    pub ip: Option<String>,
    /// When it ends.
    pub expires: SystemTime,
}

/// One user's TOTP enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The site.
    pub site: String,
    /// The ERP user (case-folded).
    pub user: String,
    /// The sealed secret (`totp::seal`, associated data `site|user`).
    pub sealed: Vec<u8>,
    /// The last accepted time step.
    pub last_step: Option<u64>,
    /// False while an enrolment link waits for its first code.
    pub active: bool,
    /// When it was made.
    pub created: SystemTime,
}

/// An enrolment as `erpguard totp list` shows it: no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentInfo {
    /// The site.
    pub site: String,
    /// The user.
    pub user: String,
    /// Whether it is in use (false: a link waits for its first code).
    pub active: bool,
    /// When it was made.
    pub created: SystemTime,
    /// When a code or recovery code was last accepted.
    pub last_used: Option<SystemTime>,
    /// Recovery codes not yet used.
    pub recovery_left: usize,
}

/// A one-time enrolment link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolLink {
    /// Keyed hash of the link token.
    pub id: String,
    /// The site.
    pub site: String,
    /// The user it enrols.
    pub user: String,
    /// When it stops working.
    pub expires: SystemTime,
}

/// Step-up state. Calls block on I/O; async callers use `spawn_blocking`.
pub trait StepUpStore {
    /// Stores a new binding (replacing one with the same id).
    fn put_binding(&self, binding: &Binding) -> Result<(), StoreError>;
    /// The binding with this id, unless expired at `now`.
    fn binding(&self, site: &str, id: &str, now: SystemTime)
    -> Result<Option<Binding>, StoreError>;
    /// Deletes a binding and every grant made in it; returns rows deleted.
    fn end_binding(&self, site: &str, id: &str) -> Result<usize, StoreError>;

    /// Stores a grant.
    fn put_grant(&self, grant: &Grant) -> Result<(), StoreError>;
    /// The grant with this id, unless expired at `now`.
    fn grant(&self, site: &str, id: &str, now: SystemTime) -> Result<Option<Grant>, StoreError>;

    /// The user's enrolment, active or pending.
    fn enrolment(&self, site: &str, user: &str) -> Result<Option<Enrolment>, StoreError>;
    /// Stores an enrolment with its recovery-code hashes, replacing any
    /// earlier one (its recovery codes, grants and links are dropped).
    fn put_enrolment(&self, enrolment: &Enrolment, recovery: &[String]) -> Result<(), StoreError>;
    /// Makes a pending enrolment active with its first accepted step and
    /// these recovery-code hashes; false if there is no pending enrolment.
    fn activate_enrolment(
        &self,
        site: &str,
        user: &str,
        step: u64,
        now: SystemTime,
        recovery: &[String],
    ) -> Result<bool, StoreError>;
    /// Deletes the user's enrolment, recovery codes, grants and links; false
    /// if there was no enrolment.
    fn delete_enrolment(&self, site: &str, user: &str) -> Result<bool, StoreError>;
    /// Every enrolment, optionally of one site, by site and user.
    fn enrolments(&self, site: Option<&str>) -> Result<Vec<EnrolmentInfo>, StoreError>;
    /// Records `step` as the user's last accepted step if it is later than
    /// the stored one; false means another request used it (or a later one) first.
    fn accept_step(
        &self,
        site: &str,
        user: &str,
        step: u64,
        now: SystemTime,
    ) -> Result<bool, StoreError>;
    /// Removes the recovery code with this hash; false if the user has none such.
    fn use_recovery(
        &self,
        site: &str,
        user: &str,
        hash: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError>;

    /// Stores an enrolment link.
    fn put_link(&self, link: &EnrolLink) -> Result<(), StoreError>;
    /// The link with this id, unless expired at `now`.
    fn link(&self, id: &str, now: SystemTime) -> Result<Option<EnrolLink>, StoreError>;
    /// Deletes a link (used, or replaced); false if it was not there.
    fn take_link(&self, id: &str) -> Result<bool, StoreError>;
}
