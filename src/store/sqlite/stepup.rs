//! [`StepUpStore`] on SQLite: four tables beside the counters.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{OrStore, SqliteStore, immediate};
use crate::store::stepup::{Binding, EnrolLink, Enrolment, EnrolmentInfo, Grant, StepUpStore};
use crate::store::{MAX_FIELD_LEN, StoreError, from_ms, to_ms};

// Ids and token columns hold keyed hashes (hex), never the cookie or link
// values themselves. `grants.binding` ties a grant to its session so that
// ending the session ends the grant in one statement.
pub(super) const MIGRATION_2: &str = "
CREATE TABLE step_up_sessions (
    id          TEXT    PRIMARY KEY,
    site        TEXT    NOT NULL,
    user        TEXT    NOT NULL,
    erp_session TEXT,
    expires     INTEGER NOT NULL
);
CREATE INDEX step_up_sessions_expires ON step_up_sessions (expires);
CREATE TABLE step_up_grants (
    id       TEXT    PRIMARY KEY,
    site     TEXT    NOT NULL,
    binding  TEXT    NOT NULL,
    user     TEXT    NOT NULL,
    ip       TEXT,
    expires  INTEGER NOT NULL
);
CREATE INDEX step_up_grants_binding ON step_up_grants (binding);
CREATE INDEX step_up_grants_user ON step_up_grants (site, user);
CREATE INDEX step_up_grants_expires ON step_up_grants (expires);
CREATE TABLE totp_enrolments (
    site      TEXT    NOT NULL,
    user      TEXT    NOT NULL,
    sealed    BLOB    NOT NULL,
    last_step INTEGER,
    active    INTEGER NOT NULL,
    created   INTEGER NOT NULL,
    last_used INTEGER,
    PRIMARY KEY (site, user)
);
CREATE TABLE totp_recovery (
    site TEXT NOT NULL,
    user TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (site, user, hash)
);
CREATE TABLE totp_links (
    id      TEXT    PRIMARY KEY,
    site    TEXT    NOT NULL,
    user    TEXT    NOT NULL,
    expires INTEGER NOT NULL
);
";

/// Deletes expired sessions, grants and links inside the sweeper's transaction.
pub(super) fn sweep(tx: &Transaction<'_>, now: i64) -> Result<usize, StoreError> {
    let mut deleted = 0;
    for sql in [
        "DELETE FROM step_up_sessions WHERE expires <= ?1",
        "DELETE FROM step_up_grants WHERE expires <= ?1",
        "DELETE FROM totp_links WHERE expires <= ?1",
    ] {
        deleted += tx
            .prepare_cached(sql)
            .or_store()?
            .execute([now])
            .or_store()?;
    }
    Ok(deleted)
}

fn check(fields: &[&str]) -> Result<(), StoreError> {
    match fields.iter().map(|f| f.len()).max() {
        Some(len) if len > MAX_FIELD_LEN => Err(StoreError::KeyTooLong {
            len,
            max: MAX_FIELD_LEN,
        }),
        _ => Ok(()),
    }
}

fn step_to_i64(step: u64) -> Result<i64, StoreError> {
    i64::try_from(step).map_err(|_| StoreError::Corrupt(format!("time step {step}")))
}

fn binding_row(row: &Row<'_>) -> rusqlite::Result<(String, String, String, Option<String>, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn grant_row(
    row: &Row<'_>,
) -> rusqlite::Result<(String, String, String, String, Option<String>, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

type EnrolmentRow = (String, String, Vec<u8>, Option<i64>, bool, i64);

fn enrolment_row(row: &Row<'_>) -> rusqlite::Result<EnrolmentRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

type InfoRow = (String, String, bool, i64, Option<i64>, i64);

fn info_row(row: &Row<'_>) -> rusqlite::Result<InfoRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

impl StepUpStore for SqliteStore {
    fn put_binding(&self, b: &Binding) -> Result<(), StoreError> {
        check(&[&b.id, &b.site, &b.user])?;
        let guard = self.inner();
        guard
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO step_up_sessions (id, site, user, erp_session, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .or_store()?
            .execute(params![
                b.id,
                b.site,
                b.user,
                b.erp_session,
                to_ms(b.expires)?
            ])
            .or_store()?;
        Ok(())
    }

    fn binding(
        &self,
        site: &str,
        id: &str,
        now: SystemTime,
    ) -> Result<Option<Binding>, StoreError> {
        let guard = self.inner();
        let row = guard
            .conn
            .prepare_cached(
                "SELECT id, site, user, erp_session, expires FROM step_up_sessions
                 WHERE id = ?1 AND site = ?2 AND expires > ?3",
            )
            .or_store()?
            .query_row(params![id, site, to_ms(now)?], binding_row)
            .optional()
            .or_store()?;
        row.map(|(id, site, user, erp_session, expires)| {
            Ok(Binding {
                id,
                site,
                user,
                erp_session,
                expires: from_ms(expires)?,
            })
        })
        .transpose()
    }

    fn end_binding(&self, site: &str, id: &str) -> Result<usize, StoreError> {
        let mut guard = self.inner();
        let tx = immediate(&mut guard.conn)?;
        let grants = tx
            .prepare_cached("DELETE FROM step_up_grants WHERE binding = ?1 AND site = ?2")
            .or_store()?
            .execute(params![id, site])
            .or_store()?;
        let sessions = tx
            .prepare_cached("DELETE FROM step_up_sessions WHERE id = ?1 AND site = ?2")
            .or_store()?
            .execute(params![id, site])
            .or_store()?;
        tx.commit().or_store()?;
        Ok(grants + sessions)
    }

    fn put_grant(&self, g: &Grant) -> Result<(), StoreError> {
        check(&[&g.id, &g.site, &g.binding, &g.user])?;
        let guard = self.inner();
        guard
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO step_up_grants (id, site, binding, user, ip, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .or_store()?
            .execute(params![
                g.id,
                g.site,
                g.binding,
                g.user,
                g.ip,
                to_ms(g.expires)?
            ])
            .or_store()?;
        Ok(())
    }

    fn grant(&self, site: &str, id: &str, now: SystemTime) -> Result<Option<Grant>, StoreError> {
        let guard = self.inner();
        let row = guard
            .conn
            .prepare_cached(
                "SELECT id, site, binding, user, ip, expires FROM step_up_grants
                 WHERE id = ?1 AND site = ?2 AND expires > ?3",
            )
            .or_store()?
            .query_row(params![id, site, to_ms(now)?], grant_row)
            .optional()
            .or_store()?;
        row.map(|(id, site, binding, user, ip, expires)| {
            Ok(Grant {
                id,
                site,
                binding,
                user,
                ip,
                expires: from_ms(expires)?,
            })
        })
        .transpose()
    }

    fn enrolment(&self, site: &str, user: &str) -> Result<Option<Enrolment>, StoreError> {
        let guard = self.inner();
        let row = guard
            .conn
            .prepare_cached(
                "SELECT site, user, sealed, last_step, active, created FROM totp_enrolments
                 WHERE site = ?1 AND user = ?2",
            )
            .or_store()?
            .query_row(params![site, user], enrolment_row)
            .optional()
            .or_store()?;
        row.map(|(site, user, sealed, last_step, active, created)| {
            let last_step = last_step
                .map(|s| u64::try_from(s).map_err(|_| StoreError::Corrupt(format!("step {s}"))))
                .transpose()?;
            Ok(Enrolment {
                site,
                user,
                sealed,
                last_step,
                active,
                created: from_ms(created)?,
            })
        })
        .transpose()
    }

    fn put_enrolment(&self, e: &Enrolment, recovery: &[String]) -> Result<(), StoreError> {
        check(&[&e.site, &e.user])?;
        let mut guard = self.inner();
        let tx = immediate(&mut guard.conn)?;
        forget_user(&tx, &e.site, &e.user)?;
        let last_step = e.last_step.map(step_to_i64).transpose()?;
        tx.prepare_cached(
            "INSERT INTO totp_enrolments (site, user, sealed, last_step, active, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .or_store()?
        .execute(params![
            e.site,
            e.user,
            e.sealed,
            last_step,
            e.active,
            to_ms(e.created)?
        ])
        .or_store()?;
        for hash in recovery {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO totp_recovery (site, user, hash) VALUES (?1, ?2, ?3)",
            )
            .or_store()?
            .execute(params![e.site, e.user, hash])
            .or_store()?;
        }
        tx.commit().or_store()
    }

    fn activate_enrolment(
        &self,
        site: &str,
        user: &str,
        step: u64,
        now: SystemTime,
        recovery: &[String],
    ) -> Result<bool, StoreError> {
        let mut guard = self.inner();
        let tx = immediate(&mut guard.conn)?;
        let changed = tx
            .prepare_cached(
                "UPDATE totp_enrolments SET active = 1, last_step = ?3, last_used = ?4
                 WHERE site = ?1 AND user = ?2 AND active = 0",
            )
            .or_store()?
            .execute(params![site, user, step_to_i64(step)?, to_ms(now)?])
            .or_store()?;
        if changed == 1 {
            tx.prepare_cached("DELETE FROM totp_recovery WHERE site = ?1 AND user = ?2")
                .or_store()?
                .execute(params![site, user])
                .or_store()?;
            for hash in recovery {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO totp_recovery (site, user, hash) VALUES (?1, ?2, ?3)",
                )
                .or_store()?
                .execute(params![site, user, hash])
                .or_store()?;
            }
        }
        tx.commit().or_store()?;
        Ok(changed == 1)
    }

    fn delete_enrolment(&self, site: &str, user: &str) -> Result<bool, StoreError> {
        let mut guard = self.inner();
        let tx = immediate(&mut guard.conn)?;
        let existed = forget_user(&tx, site, user)?;
        tx.commit().or_store()?;
        Ok(existed)
    }

    fn enrolments(&self, site: Option<&str>) -> Result<Vec<EnrolmentInfo>, StoreError> {
        let guard = self.inner();
        let mut stmt = guard
            .conn
            .prepare_cached(
                "SELECT e.site, e.user, e.active, e.created, e.last_used,
                        (SELECT count(*) FROM totp_recovery r WHERE r.site = e.site AND r.user = e.user)
                 FROM totp_enrolments e WHERE (?1 IS NULL OR e.site = ?1)
                 ORDER BY e.site, e.user",
            )
            .or_store()?;
        let rows = stmt.query_map(params![site], info_row).or_store()?;
        rows.map(|row| {
            let (site, user, active, created, last_used, left) = row.or_store()?;
            Ok(EnrolmentInfo {
                site,
                user,
                active,
                created: from_ms(created)?,
                last_used: last_used.map(from_ms).transpose()?,
                recovery_left: usize::try_from(left).unwrap_or(0),
            })
        })
        .collect()
    }

    fn accept_step(
        &self,
        site: &str,
        user: &str,
        step: u64,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let guard = self.inner();
        // One conditional UPDATE: of two racing requests with the same code,
        // exactly one changes the row.
        let changed = guard
            .conn
            .prepare_cached(
                "UPDATE totp_enrolments SET last_step = ?3, last_used = ?4
                 WHERE site = ?1 AND user = ?2 AND active = 1
                   AND (last_step IS NULL OR last_step < ?3)",
            )
            .or_store()?
            .execute(params![site, user, step_to_i64(step)?, to_ms(now)?])
            .or_store()?;
        Ok(changed == 1)
    }

    fn use_recovery(
        &self,
        site: &str,
        user: &str,
        hash: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let mut guard = self.inner();
        let tx = immediate(&mut guard.conn)?;
        let removed = tx
            .prepare_cached("DELETE FROM totp_recovery WHERE site = ?1 AND user = ?2 AND hash = ?3")
            .or_store()?
            .execute(params![site, user, hash])
            .or_store()?;
        if removed == 1 {
            tx.prepare_cached(
                "UPDATE totp_enrolments SET last_used = ?3 WHERE site = ?1 AND user = ?2",
            )
            .or_store()?
            .execute(params![site, user, to_ms(now)?])
            .or_store()?;
        }
        tx.commit().or_store()?;
        Ok(removed == 1)
    }

    fn put_link(&self, link: &EnrolLink) -> Result<(), StoreError> {
        check(&[&link.id, &link.site, &link.user])?;
        let guard = self.inner();
        guard
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO totp_links (id, site, user, expires) VALUES (?1, ?2, ?3, ?4)",
            )
            .or_store()?
            .execute(params![link.id, link.site, link.user, to_ms(link.expires)?])
            .or_store()?;
        Ok(())
    }

    fn link(&self, id: &str, now: SystemTime) -> Result<Option<EnrolLink>, StoreError> {
        let guard = self.inner();
        let row = guard
            .conn
            .prepare_cached(
                "SELECT id, site, user, expires FROM totp_links WHERE id = ?1 AND expires > ?2",
            )
            .or_store()?
            .query_row(params![id, to_ms(now)?], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .optional()
            .or_store()?;
        row.map(|(id, site, user, expires)| {
            Ok(EnrolLink {
                id,
                site,
                user,
                expires: from_ms(expires)?,
            })
        })
        .transpose()
    }

    fn take_link(&self, id: &str) -> Result<bool, StoreError> {
        let guard = self.inner();
        let removed = guard
            .conn
            .prepare_cached("DELETE FROM totp_links WHERE id = ?1")
            .or_store()?
            .execute([id])
            .or_store()?;
        Ok(removed == 1)
    }
}

/// Drops the user's enrolment, recovery codes, grants and links; whether an
/// enrolment existed.
fn forget_user(tx: &Transaction<'_>, site: &str, user: &str) -> Result<bool, StoreError> {
    let mut removed = 0;
    for sql in [
        "DELETE FROM totp_enrolments WHERE site = ?1 AND user = ?2",
        "DELETE FROM totp_recovery WHERE site = ?1 AND user = ?2",
        "DELETE FROM step_up_grants WHERE site = ?1 AND user = ?2",
        "DELETE FROM totp_links WHERE site = ?1 AND user = ?2",
    ] {
        let n = tx
            .prepare_cached(sql)
            .or_store()?
            .execute(params![site, user])
            .or_store()?;
        if removed == 0 {
            removed = n;
        }
    }
    Ok(removed > 0)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db"), 1000).unwrap();
        (dir, s)
    }

    fn enrolment(active: bool) -> Enrolment {
        Enrolment {
            site: "erp".into(),
            user: "a@x".into(),
            sealed: vec![1, 2, 3],
            last_step: None,
            active,
            created: at(0),
        }
    }

    #[test]
    fn a_step_is_accepted_once_and_never_an_older_one() {
        let (_d, s) = store();
        s.put_enrolment(&enrolment(true), &[]).unwrap();
        assert!(s.accept_step("erp", "a@x", 100, at(1)).unwrap());
        assert!(!s.accept_step("erp", "a@x", 100, at(2)).unwrap(), "replay");
        assert!(!s.accept_step("erp", "a@x", 99, at(2)).unwrap(), "older");
        assert!(s.accept_step("erp", "a@x", 101, at(3)).unwrap());
        assert_eq!(
            s.enrolment("erp", "a@x").unwrap().unwrap().last_step,
            Some(101)
        );
    }

    #[test]
    fn pending_enrolments_take_no_step_until_activated() {
        let (_d, s) = store();
        s.put_enrolment(&enrolment(false), &[]).unwrap();
        assert!(!s.accept_step("erp", "a@x", 5, at(1)).unwrap());
        assert!(
            s.activate_enrolment("erp", "a@x", 5, at(1), &["r".into()])
                .unwrap()
        );
        assert!(!s.activate_enrolment("erp", "a@x", 6, at(1), &[]).unwrap());
        assert_eq!(s.enrolments(None).unwrap()[0].recovery_left, 1);
        assert!(!s.accept_step("erp", "a@x", 5, at(1)).unwrap());
    }

    #[test]
    fn recovery_codes_work_once() {
        let (_d, s) = store();
        s.put_enrolment(&enrolment(true), &["h1".into(), "h2".into()])
            .unwrap();
        assert!(s.use_recovery("erp", "a@x", "h1", at(1)).unwrap());
        assert!(!s.use_recovery("erp", "a@x", "h1", at(2)).unwrap());
        assert!(
            !s.use_recovery("erp", "b@x", "h2", at(2)).unwrap(),
            "other user"
        );
        let info = s.enrolments(None).unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].recovery_left, 1);
        assert_eq!(info[0].last_used, Some(at(1)));
    }

    fn grant(id: &str, binding: &str, expires: SystemTime) -> Grant {
        Grant {
            id: id.into(),
            site: "erp".into(),
            binding: binding.into(),
            user: "a@x".into(),
            ip: None,
            expires,
        }
    }

    #[test]
    fn ending_a_session_ends_its_grants_and_expiry_hides_rows() {
        let (_d, s) = store();
        let b = Binding {
            id: "b1".into(),
            site: "erp".into(),
            user: "a@x".into(),
            erp_session: Some("sid".into()),
            expires: at(100),
        };
        s.put_binding(&b).unwrap();
        s.put_grant(&grant("g1", "b1", at(50))).unwrap();
        s.put_grant(&grant("g2", "b2", at(50))).unwrap();
        assert_eq!(s.binding("erp", "b1", at(10)).unwrap(), Some(b));
        assert!(
            s.binding("other", "b1", at(10)).unwrap().is_none(),
            "site-bound"
        );
        assert!(
            s.binding("erp", "b1", at(100)).unwrap().is_none(),
            "expired"
        );
        assert!(s.grant("erp", "g1", at(49)).unwrap().is_some());
        assert!(s.grant("erp", "g1", at(50)).unwrap().is_none(), "expired");
        assert_eq!(s.end_binding("erp", "b1").unwrap(), 2);
        assert!(s.grant("erp", "g1", at(10)).unwrap().is_none());
        assert!(s.grant("erp", "g2", at(10)).unwrap().is_some());
        // The sweeper deletes what has expired.
        assert_eq!(s.sweep_step_up(at(60)), 1);
    }

    #[test]
    fn reset_forgets_codes_grants_and_links_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = SqliteStore::open(&path, 100).unwrap();
            s.put_enrolment(&enrolment(true), &["h1".into()]).unwrap();
            s.put_grant(&grant("g1", "b1", at(50))).unwrap();
            s.put_link(&EnrolLink {
                id: "l1".into(),
                site: "erp".into(),
                user: "a@x".into(),
                expires: at(50),
            })
            .unwrap();
        }
        let s = SqliteStore::open(&path, 100).unwrap();
        assert!(
            s.grant("erp", "g1", at(1)).unwrap().is_some(),
            "survives reopen"
        );
        assert!(s.link("l1", at(1)).unwrap().is_some());
        assert!(s.delete_enrolment("erp", "a@x").unwrap());
        assert!(s.enrolment("erp", "a@x").unwrap().is_none());
        assert!(s.grant("erp", "g1", at(1)).unwrap().is_none());
        assert!(s.link("l1", at(1)).unwrap().is_none());
        assert!(!s.use_recovery("erp", "a@x", "h1", at(1)).unwrap());
        assert!(!s.delete_enrolment("erp", "a@x").unwrap());
    }

    impl SqliteStore {
        fn sweep_step_up(&self, now: SystemTime) -> usize {
            let mut guard = self.inner();
            let tx = immediate(&mut guard.conn).unwrap();
            let n = sweep(&tx, to_ms(now).unwrap()).unwrap();
            tx.commit().unwrap();
            n
        }
    }
}
