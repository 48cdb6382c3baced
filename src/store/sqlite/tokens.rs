//! [`TokenStore`] on SQLite.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, Row, params};

use super::{OrStore, SqliteStore, immediate};
use crate::store::tokens::{TokenRecord, TokenStore};
use crate::store::{StoreError, from_ms, to_ms};

// Lists are JSON arrays of strings. `token_meta.version` is bumped by every
// change to what a token may do, and polled by running gateways.
pub(super) const MIGRATION_3: &str = "
CREATE TABLE tokens (
    id          TEXT    PRIMARY KEY,
    site        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    owner       TEXT,
    description TEXT,
    scopes      TEXT    NOT NULL,
    credential  TEXT    NOT NULL,
    allow       TEXT    NOT NULL,
    rate        TEXT,
    hash        TEXT    NOT NULL,
    old_hash    TEXT,
    old_until   INTEGER,
    created     INTEGER NOT NULL,
    expires     INTEGER,
    revoked     INTEGER,
    last_used   INTEGER,
    uses        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE token_meta (
    only    INTEGER PRIMARY KEY CHECK (only = 1),
    version INTEGER NOT NULL
);
INSERT INTO token_meta (only, version) VALUES (1, 0);
";

const COLUMNS: &str = "id, site, name, owner, description, scopes, credential, allow, rate, hash, \
                       old_hash, old_until, created, expires, revoked, last_used, uses";

fn list(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("token list: {e}")))
}

fn opt_time(ms: Option<i64>) -> Result<Option<SystemTime>, StoreError> {
    ms.map(from_ms).transpose()
}

fn opt_ms(t: Option<SystemTime>) -> Result<Option<i64>, StoreError> {
    t.map(to_ms).transpose()
}

type Raw = (
    (
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
    ),
    (
        String,
        String,
        Option<String>,
        String,
        Option<String>,
        Option<i64>,
    ),
    (i64, Option<i64>, Option<i64>, Option<i64>, i64),
);

fn raw(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        (
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        ),
        (
            row.get(6)?,
            row.get(7)?,
            row.get(8)?,
            row.get(9)?,
            row.get(10)?,
            row.get(11)?,
        ),
        (
            row.get(12)?,
            row.get(13)?,
            row.get(14)?,
            row.get(15)?,
            row.get(16)?,
        ),
    ))
}

fn record(r: Raw) -> Result<TokenRecord, StoreError> {
    let (
        (id, site, name, owner, description, scopes),
        (credential, allow, rate, hash, old_hash, old_until),
        (created, expires, revoked, last_used, uses),
    ) = r;
    Ok(TokenRecord {
        id,
        site,
        name,
        owner,
        description,
        scopes: list(&scopes)?,
        credential,
        allow: list(&allow)?,
        rate,
        hash,
        old_hash,
        old_until: opt_time(old_until)?,
        created: from_ms(created)?,
        expires: opt_time(expires)?,
        revoked: opt_time(revoked)?,
        last_used: opt_time(last_used)?,
        uses: u64::try_from(uses).unwrap_or(0),
    })
}

fn json(v: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn bump(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE token_meta SET version = version + 1")
        .or_store()?
        .execute([])
        .or_store()?;
    Ok(())
}

impl TokenStore for SqliteStore {
    fn put_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        let mut guard = self.inner();
        let tx = immediate(&mut guard.conn)?;
        tx.prepare_cached(&format!(
            "INSERT INTO tokens ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        ))
        .or_store()?
        .execute(params![
            t.id,
            t.site,
            t.name,
            t.owner,
            t.description,
            json(&t.scopes)?,
            t.credential,
            json(&t.allow)?,
            t.rate,
            t.hash,
            t.old_hash,
            opt_ms(t.old_until)?,
            to_ms(t.created)?,
            opt_ms(t.expires)?,
            opt_ms(t.revoked)?,
            opt_ms(t.last_used)?,
            i64::try_from(t.uses).unwrap_or(i64::MAX),
        ])
        .or_store()?;
        bump(&tx)?;
        tx.commit().or_store()
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let guard = self.inner();
        let row = guard
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"))
            .or_store()?
            .query_row([id], raw)
            .optional()
            .or_store()?;
        row.map(record).transpose()
    }

    fn tokens(&self, site: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let guard = self.inner();
        let mut stmt = guard
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tokens WHERE (?1 IS NULL OR site = ?1) ORDER BY created, id"
            ))
            .or_store()?;
        let rows = stmt.query_map(params![site], raw).or_store()?;
        rows.map(|r| record(r.or_store()?)).collect()
    }

    fn revoke_token(&self, id: &str, now: SystemTime) -> Result<bool, StoreError> {
        let mut guard = self.inner();
        let tx = immediate(&mut guard.conn)?;
        let n = tx
            .prepare_cached("UPDATE tokens SET revoked = ?2 WHERE id = ?1 AND revoked IS NULL")
            .or_store()?
            .execute(params![id, to_ms(now)?])
            .or_store()?;
        bump(&tx)?;
        tx.commit().or_store()?;
        Ok(n == 1)
    }

    fn rotate_token(
        &self,
        id: &str,
        hash: &str,
        old_until: SystemTime,
    ) -> Result<bool, StoreError> {
        let mut guard = self.inner();
        let tx = immediate(&mut guard.conn)?;
        let n = tx
            .prepare_cached(
                "UPDATE tokens SET old_hash = hash, old_until = ?3, hash = ?2
                 WHERE id = ?1 AND revoked IS NULL",
            )
            .or_store()?
            .execute(params![id, hash, to_ms(old_until)?])
            .or_store()?;
        bump(&tx)?;
        tx.commit().or_store()?;
        Ok(n == 1)
    }

    fn record_use(&self, id: &str, uses: u64, last_used: SystemTime) -> Result<(), StoreError> {
        let guard = self.inner();
        guard
            .conn
            .prepare_cached(
                "UPDATE tokens SET uses = uses + ?2, last_used = max(coalesce(last_used, 0), ?3)
                 WHERE id = ?1",
            )
            .or_store()?
            .execute(params![
                id,
                i64::try_from(uses).unwrap_or(i64::MAX),
                to_ms(last_used)?
            ])
            .or_store()?;
        Ok(())
    }

    fn token_version(&self) -> Result<i64, StoreError> {
        let guard = self.inner();
        guard
            .conn
            .prepare_cached("SELECT version FROM token_meta")
            .or_store()?
            .query_row([], |r| r.get(0))
            .or_store()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn token(id: &str) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            site: "erp".into(),
            name: "sync".into(),
            owner: Some("ops".into()),
            description: None,
            scopes: vec!["Item:read".into()],
            credential: "sync".into(),
            allow: vec!["10.0.0.0/8".into()],
            rate: Some("60/min".into()),
            hash: "h1".into(),
            old_hash: None,
            old_until: None,
            created: at(0),
            expires: Some(at(100)),
            revoked: None,
            last_used: None,
            uses: 0,
        }
    }

    #[test]
    fn tokens_round_trip_and_changes_bump_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db"), 100).unwrap();
        let v0 = s.token_version().unwrap();
        s.put_token(&token("a")).unwrap();
        assert_eq!(s.token("a").unwrap(), Some(token("a")));
        let v1 = s.token_version().unwrap();
        assert!(v1 > v0);
        s.record_use("a", 3, at(5)).unwrap();
        s.record_use("a", 2, at(4)).unwrap();
        assert_eq!(s.token_version().unwrap(), v1, "use does not bump");
        let t = s.token("a").unwrap().unwrap();
        assert_eq!((t.uses, t.last_used), (5, Some(at(5))));
        assert!(s.rotate_token("a", "h2", at(50)).unwrap());
        let t = s.token("a").unwrap().unwrap();
        assert_eq!((t.hash.as_str(), t.old_hash.as_deref()), ("h2", Some("h1")));
        assert!(s.revoke_token("a", at(6)).unwrap());
        assert!(!s.revoke_token("a", at(7)).unwrap(), "already revoked");
        assert!(!s.rotate_token("a", "h3", at(50)).unwrap());
        assert!(s.token_version().unwrap() > v1);
        assert_eq!(s.tokens(Some("erp")).unwrap().len(), 1);
        assert!(s.tokens(Some("other")).unwrap().is_empty());
    }
}
