//! The embedded SQLite backend of [`StateStore`]: one file that the server and
//! the CLI open at the same time.
//!
//! Beyond the trait's promises, this backend promises:
//!
//! - **Private file.** On unix the file is created with mode 0600 (missing
//!   parent directories 0700); SQLite gives its `-wal` and `-shm` files the
//!   same mode.
//! - **Crash-safe.** WAL with `synchronous=NORMAL`: a power cut may lose the
//!   last commits before a checkpoint, never corrupt the file. A damaged file
//!   is refused at open ([`StoreError::Open`]); damage met later is an error
//!   like any other.
//! - **Atomic across processes.** Every write is one `BEGIN IMMEDIATE`
//!   transaction, so the server and `erpguard lockout` never interleave a
//!   read-modify-write; a writer waits up to 5 s for the other, then fails.
//! - **Versioned schema.** `PRAGMA user_version` records the schema; older
//!   files are migrated at open in one transaction, newer ones are refused
//!   ([`StoreError::SchemaTooNew`]).
//! - **Bounded.** At most `max_keys` rows; about 8 MB of page cache; the WAL
//!   is checkpointed at 4 MiB and truncated back to 4 MiB after checkpoints.
//! - **Never panics on a poisoned lock.** The one connection sits behind a
//!   `Mutex`; if a thread ever panicked while holding it, the next caller takes
//!   the connection anyway (`PoisonError::into_inner`): a transaction open at
//!   the panic rolled back when it was dropped, so the connection is clean.
//!
//! No read is cached in memory: each call asks the file, so a `clear` by the
//! CLI is seen by the server's next call.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior, params,
};

use super::{
    Counter, Key, Lock, LockPolicy, Record, Scope, StateStore, StoreError, clear_matches, from_ms,
    to_ms,
};

// The server and the CLI share the file; a writer waits this long for the other.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

// While the store is full of active locks, warn at most this often.
const WARN_EVERY_MS: i64 = 60_000;

/// Schema migrations: entry `i` takes a file from `user_version` `i` to `i + 1`.
///
/// To change the schema, append an entry; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[MIGRATION_1, stepup::MIGRATION_2, tokens::MIGRATION_3];

// `expires` is when the row stops mattering under the policy it was last
// written with (see `Record::expires`); `touched` orders eviction. The
// `counter_rows` total is kept by triggers so that the size check on every
// new key is one row read, not a count over the table.
const MIGRATION_1: &str = "
CREATE TABLE counters (
    id           INTEGER PRIMARY KEY,
    site         TEXT    NOT NULL,
    scope        TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    failures     INTEGER NOT NULL,
    window_start INTEGER,
    strikes      INTEGER NOT NULL,
    locked_at    INTEGER,
    lock_until   INTEGER,
    touched      INTEGER NOT NULL,
    expires      INTEGER NOT NULL,
    UNIQUE (site, scope, subject)
);
CREATE INDEX counters_expires ON counters (expires);
CREATE INDEX counters_touched ON counters (touched, lock_until);
CREATE INDEX counters_lock_until ON counters (lock_until) WHERE lock_until IS NOT NULL;
CREATE TABLE counter_rows (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    n    INTEGER NOT NULL
);
INSERT INTO counter_rows (only, n) VALUES (1, 0);
CREATE TRIGGER counters_added AFTER INSERT ON counters
    BEGIN UPDATE counter_rows SET n = n + 1; END;
CREATE TRIGGER counters_removed AFTER DELETE ON counters
    BEGIN UPDATE counter_rows SET n = n - 1; END;
";

/// The SQLite state store. Cheap to share behind an `Arc`; calls block briefly
/// on the file, so async callers use `spawn_blocking`.
#[derive(Debug)]
pub struct SqliteStore {
    inner: Mutex<Inner>,
    path: PathBuf,
    max_keys: usize,
}

#[derive(Debug)]
struct Inner {
    conn: Connection,
    lock_evictions: Burst,
}

mod stepup;
mod tokens;

// Rate-limits the warning about evicting active locks.
#[derive(Debug, Default)]
struct Burst {
    last_warn: Option<i64>,
    unreported: usize,
}

// Turns rusqlite's error into ours as a message, so no rusqlite type leaks
// into the public API.
trait OrStore<T> {
    fn or_store(self) -> Result<T, StoreError>;
}

impl<T> OrStore<T> for rusqlite::Result<T> {
    fn or_store(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Backend(e.to_string()))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, keeping at most
    /// `max_keys` keys (at least 1).
    ///
    /// Creates missing parent directories, configures the connection,
    /// checks the file's integrity and migrates its schema. Errors:
    /// [`StoreError::Open`] (cannot create, not a database, damaged),
    /// [`StoreError::SchemaTooNew`], [`StoreError::Migrate`].
    pub fn open(path: &Path, max_keys: usize) -> Result<SqliteStore, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.to_path_buf(),
            reason,
        };
        if max_keys == 0 {
            return Err(open_err("max_keys must be at least 1".to_owned()));
        }
        create_file(path).map_err(|e| open_err(e.to_string()))?;
        let _first_open = open_guard(path).map_err(|e| open_err(e.to_string()))?;
        // No CREATE flag: the file exists now with the right mode, and if it
        // vanished meanwhile we want an error, not a world-readable new file.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn =
            Connection::open_with_flags(path, flags).map_err(|e| open_err(e.to_string()))?;
        configure(&conn).map_err(open_err)?;
        migrate(&mut conn, path)?;
        Ok(SqliteStore {
            inner: Mutex::new(Inner {
                conn,
                lock_evictions: Burst::default(),
            }),
            path: path.to_path_buf(),
            max_keys,
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many keys the store holds now (for metrics).
    pub fn key_count(&self) -> Result<usize, StoreError> {
        row_count(&self.inner().conn)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Poison is safe to ignore: see the module docs.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serialises the open-time work (the switch to WAL, migrations) across
/// processes and threads: SQLite may answer "database is locked" at once,
/// without waiting on the busy handler, to a second connection switching a new
/// file to WAL. A sidecar file, because closing any descriptor of the database
/// file itself would drop this process's SQLite (POSIX) locks on it. Released
/// when the returned file is dropped, at the end of `open`.
fn open_guard(path: &Path) -> std::io::Result<fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".open-lock");
    let mut options = fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(PathBuf::from(name))?;
    file.lock()?;
    Ok(file)
}

fn create_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

fn configure(conn: &Connection) -> Result<(), String> {
    let msg = |e: rusqlite::Error| e.to_string();
    // First, so that the pragmas below also wait for a concurrent opener.
    conn.busy_timeout(BUSY_TIMEOUT).map_err(msg)?;
    // Small pages: each failure rewrites about six pages (row, three index
    // leaves, row count, amortised eviction) and under a spray the store is
    // bound by the bytes written to the WAL, so 1 KiB pages measured twice
    // the rate of 4 KiB ones. Only takes effect on a new file, before WAL.
    conn.execute_batch("PRAGMA page_size = 1024").map_err(msg)?;
    // journal_mode is the first statement that reads the file, so a file that
    // is not a database fails here.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(msg)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("cannot enable WAL (journal_mode stays {mode})"));
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA cache_size = -8000;
         PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = 4096;
         PRAGMA journal_size_limit = 4194304;
         PRAGMA trusted_schema = OFF;",
    )
    .map_err(msg)?;
    // The file is small (bounded by max_keys), so a full page check at open is
    // cheap and turns a damaged file into one clear error instead of odd
    // failures later.
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(msg)?;
    if check != "ok" {
        return Err(format!("integrity check failed: {check}"));
    }
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let failed = |version: u32| {
        move |e: rusqlite::Error| StoreError::Migrate {
            path: path.to_path_buf(),
            version,
            reason: e.to_string(),
        }
    };
    let known = u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX);
    // IMMEDIATE: two processes opening a new file must not both run migration 1.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed(1))?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(failed(1))?;
    if found > i64::from(known) {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    let start = usize::try_from(found).map_err(|_| StoreError::Open {
        path: path.to_path_buf(),
        reason: format!("invalid schema version {found}"),
    })?;
    for (sql, version) in MIGRATIONS.iter().zip(1u32..).skip(start) {
        tx.execute_batch(sql).map_err(failed(version))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed(version))?;
    }
    tx.commit().map_err(failed(known))
}

fn immediate(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .or_store()
}

fn row_count(conn: &Connection) -> Result<usize, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT n FROM counter_rows")
        .or_store()?
        .query_row([], |row| row.get(0))
        .or_store()?;
    usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("row count {n}")))
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn load(conn: &Connection, key: &Key) -> Result<Option<(i64, Record)>, StoreError> {
    conn.prepare_cached(
        "SELECT id, failures, window_start, strikes, locked_at, lock_until
         FROM counters WHERE site = ?1 AND scope = ?2 AND subject = ?3",
    )
    .or_store()?
    .query_row(params![key.site, key.scope.as_str(), key.subject], |row| {
        let record = Record {
            failures: row.get(1)?,
            window_start: row.get(2)?,
            strikes: row.get(3)?,
            locked_at: row.get(4)?,
            lock_until: row.get(5)?,
        };
        Ok((row.get(0)?, record))
    })
    .optional()
    .or_store()
}

fn update(
    conn: &Connection,
    id: i64,
    rec: &Record,
    now: i64,
    expires: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE counters SET failures = ?2, window_start = ?3, strikes = ?4, locked_at = ?5,
         lock_until = ?6, touched = ?7, expires = ?8 WHERE id = ?1",
    )
    .or_store()?
    .execute(params![
        id,
        rec.failures,
        rec.window_start,
        rec.strikes,
        rec.locked_at,
        rec.lock_until,
        now,
        expires
    ])
    .or_store()
    .map(drop)
}

fn insert(
    conn: &Connection,
    key: &Key,
    rec: &Record,
    now: i64,
    expires: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO counters (site, scope, subject, failures, window_start, strikes, locked_at,
         lock_until, touched, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .or_store()?
    .execute(params![
        key.site,
        key.scope.as_str(),
        key.subject,
        rec.failures,
        rec.window_start,
        rec.strikes,
        rec.locked_at,
        rec.lock_until,
        now,
        expires
    ])
    .or_store()
    .map(drop)
}

// Makes room for one new row: expired rows first, then the unlocked rows
// touched longest ago, and active locks only if nothing else is left.
fn make_room(
    conn: &Connection,
    now: i64,
    max_keys: usize,
    burst: &mut Burst,
) -> Result<(), StoreError> {
    if row_count(conn)? < max_keys {
        return Ok(());
    }
    conn.prepare_cached("DELETE FROM counters WHERE expires <= ?1")
        .or_store()?
        .execute([now])
        .or_store()?;
    let count = row_count(conn)?;
    if count < max_keys {
        return Ok(());
    }
    // A batch (1% of max_keys) so a spray pays for eviction once per batch
    // rather than on every new key; more if max_keys was lowered.
    let batch = (max_keys / 100).max(count + 1 - max_keys);
    conn.prepare_cached(
        "DELETE FROM counters WHERE id IN (SELECT id FROM counters INDEXED BY counters_touched
         WHERE lock_until IS NULL OR lock_until <= ?1 ORDER BY touched LIMIT ?2)",
    )
    .or_store()?
    .execute(params![now, to_i64(batch)])
    .or_store()?;
    let count = row_count(conn)?;
    if count < max_keys {
        return Ok(());
    }
    evict_locks(conn, now, count + 1 - max_keys, burst, max_keys)
}

// Every row is an active lock: gives up the `n` ending soonest (as few as
// possible, since each one evicted lets an attacker resume early).
fn evict_locks(
    conn: &Connection,
    now: i64,
    n: usize,
    burst: &mut Burst,
    max_keys: usize,
) -> Result<(), StoreError> {
    let evicted = conn
        .prepare_cached(
            "DELETE FROM counters WHERE id IN (SELECT id FROM counters
             WHERE lock_until > ?1 ORDER BY lock_until LIMIT ?2)",
        )
        .or_store()?
        .execute(params![now, to_i64(n)])
        .or_store()?;
    burst.note(now, evicted, max_keys);
    if row_count(conn)? < max_keys {
        Ok(())
    } else {
        Err(StoreError::Full { max_keys })
    }
}

impl Burst {
    // Warns on the first eviction of a burst, then at most once a minute
    // with the number evicted since, so an attack cannot flood the log.
    fn note(&mut self, now: i64, evicted: usize, max_keys: usize) {
        self.unreported = self.unreported.saturating_add(evicted);
        if self
            .last_warn
            .is_some_and(|at| now.saturating_sub(at) < WARN_EVERY_MS)
        {
            return;
        }
        tracing::warn!(
            evicted_locks = self.unreported,
            max_keys,
            "state store is full of active locks: evicting the locks that end soonest; \
             raise state.max_keys"
        );
        self.last_warn = Some(now);
        self.unreported = 0;
    }
}

fn matching_ids(
    conn: &Connection,
    site: &str,
    user: Option<&str>,
    ip: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, scope, subject FROM counters WHERE site = ?1")
        .or_store()?;
    let rows = stmt
        .query_map([site], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .or_store()?;
    let mut ids = Vec::new();
    for row in rows {
        let (id, scope, subject) = row.or_store()?;
        if clear_matches(parse_scope(&scope)?, &subject, user, ip) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn parse_scope(name: &str) -> Result<Scope, StoreError> {
    Scope::from_name(name).ok_or_else(|| StoreError::Corrupt(format!("unknown scope {name:?}")))
}

// One row of `locks()`, as stored.
struct LockRow {
    site: String,
    scope: String,
    subject: String,
    until: i64,
    strikes: u32,
}

fn lock_row(row: &Row<'_>) -> rusqlite::Result<LockRow> {
    Ok(LockRow {
        site: row.get(0)?,
        scope: row.get(1)?,
        subject: row.get(2)?,
        until: row.get(3)?,
        strikes: row.get(4)?,
    })
}

impl LockRow {
    fn into_pair(self) -> Result<(Key, Lock), StoreError> {
        let key = Key {
            site: self.site,
            scope: parse_scope(&self.scope)?,
            subject: self.subject,
        };
        let lock = Lock {
            until: from_ms(self.until)?,
            strikes: self.strikes,
        };
        Ok((key, lock))
    }
}

/// Counts one failure for `key` inside `tx`. While a lock is in force nothing
/// is counted (the caller does not forward the attempt).
fn count_one(
    tx: &rusqlite::Transaction<'_>,
    key: &Key,
    now: i64,
    policy: &LockPolicy,
    max_keys: usize,
    lock_evictions: &mut Burst,
) -> Result<Counter, StoreError> {
    let found = load(tx, key)?;
    let mut rec = found.map(|(_, rec)| rec).unwrap_or_default();
    if let Some(lock) = rec.active_lock(now)? {
        return Ok(Counter {
            failures: rec.failures,
            lock: Some(lock),
            tripped: false,
        });
    }
    let counter = rec.count_failure(now, policy)?;
    let expires = rec.expires(policy);
    match found.map(|(id, _)| id) {
        Some(id) => update(tx, id, &rec, now, expires)?,
        None => {
            make_room(tx, now, max_keys, lock_evictions)?;
            insert(tx, key, &rec, now, expires)?;
        }
    }
    Ok(counter)
}

impl StateStore for SqliteStore {
    fn add_failure(
        &self,
        key: &Key,
        now: SystemTime,
        policy: &LockPolicy,
    ) -> Result<Counter, StoreError> {
        let mut counters = self.add_failures(&[(key.clone(), *policy)], now)?;
        counters
            .pop()
            .ok_or_else(|| StoreError::Backend("no counter returned".into()))
    }

    fn add_failures(
        &self,
        keys: &[(Key, LockPolicy)],
        now: SystemTime,
    ) -> Result<Vec<Counter>, StoreError> {
        keys.iter().try_for_each(|(k, _)| k.check())?;
        let now = to_ms(now)?;
        let mut guard = self.inner();
        let Inner {
            conn,
            lock_evictions,
        } = &mut *guard;
        // One transaction for all of an attempt's counters: atomic together,
        // and one commit instead of one per counter.
        let tx = immediate(conn)?;
        let mut counters = Vec::with_capacity(keys.len());
        for (key, policy) in keys {
            counters.push(count_one(
                &tx,
                key,
                now,
                policy,
                self.max_keys,
                lock_evictions,
            )?);
        }
        tx.commit().or_store()?;
        Ok(counters)
    }

    fn lock(&self, key: &Key, now: SystemTime) -> Result<Option<Lock>, StoreError> {
        let now = to_ms(now)?;
        match load(&self.inner().conn, key)? {
            Some((_, rec)) => rec.active_lock(now),
            None => Ok(None),
        }
    }

    fn reset(&self, key: &Key) -> Result<(), StoreError> {
        let mut guard = self.inner();
        let tx = immediate(&mut guard.conn)?;
        let args = params![key.site, key.scope.as_str(), key.subject];
        // A key without strikes or lock carries nothing after a success:
        // drop the row rather than keep an empty one until it expires.
        tx.prepare_cached(
            "DELETE FROM counters WHERE site = ?1 AND scope = ?2 AND subject = ?3
             AND strikes = 0 AND lock_until IS NULL",
        )
        .or_store()?
        .execute(args)
        .or_store()?;
        tx.prepare_cached(
            "UPDATE counters SET failures = 0, window_start = NULL
             WHERE site = ?1 AND scope = ?2 AND subject = ?3",
        )
        .or_store()?
        .execute(args)
        .or_store()?;
        tx.commit().or_store()
    }

    fn locks(
        &self,
        site: Option<&str>,
        scope: Option<Scope>,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(Key, Lock)>, StoreError> {
        let now = to_ms(now)?;
        let guard = self.inner();
        let mut stmt = guard
            .conn
            .prepare_cached(
                "SELECT site, scope, subject, lock_until, strikes FROM counters
                 WHERE lock_until > ?1 AND (?2 IS NULL OR site = ?2)
                   AND (?4 IS NULL OR scope = ?4)
                 ORDER BY locked_at DESC, id DESC LIMIT ?3",
            )
            .or_store()?;
        let scope = scope.map(Scope::as_str);
        let rows = stmt
            .query_map(params![now, site, to_i64(limit), scope], lock_row)
            .or_store()?;
        rows.map(|row| row.or_store()?.into_pair()).collect()
    }

    fn clear(&self, site: &str, user: Option<&str>, ip: Option<&str>) -> Result<usize, StoreError> {
        if user.is_none() && ip.is_none() {
            return Ok(0);
        }
        let mut guard = self.inner();
        let tx = immediate(&mut guard.conn)?;
        let ids = matching_ids(&tx, site, user, ip)?;
        for id in &ids {
            tx.prepare_cached("DELETE FROM counters WHERE id = ?1")
                .or_store()?
                .execute([id])
                .or_store()?;
        }
        tx.commit().or_store()?;
        Ok(ids.len())
    }

    fn sweep(&self, now: SystemTime) -> Result<usize, StoreError> {
        let now = to_ms(now)?;
        let mut guard = self.inner();
        let tx = immediate(&mut guard.conn)?;
        let deleted = tx
            .prepare_cached("DELETE FROM counters WHERE expires <= ?1")
            .or_store()?
            .execute([now])
            .or_store()?
            + stepup::sweep(&tx, now)?;
        tx.commit().or_store()?;
        Ok(deleted)
    }

    fn ping(&self) -> Result<(), StoreError> {
        // Reads a table, not just `SELECT 1`, so a file gone bad is noticed.
        row_count(&self.inner().conn).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Barrier};
    use std::time::UNIX_EPOCH;

    use tempfile::TempDir;

    use super::*;

    const SITE: &str = "erp";

    // A fixed, realistic "now" so tests do not depend on the wall clock.
    fn at(minutes: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + minutes * 60)
    }

    fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    fn policy() -> LockPolicy {
        LockPolicy {
            threshold: 5,
            window: mins(10),
            base: mins(15),
            max: mins(60),
            strike_memory: mins(24 * 60),
        }
    }

    fn temp() -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("erpguard.db");
        (dir, path)
    }

    fn store(path: &Path) -> SqliteStore {
        SqliteStore::open(path, 10_000).unwrap()
    }

    // Fails `n` times at `now`, returning the last result.
    fn fail(s: &SqliteStore, key: &Key, now: SystemTime, p: &LockPolicy, n: u32) -> Counter {
        let mut last = None;
        for _ in 0..n {
            last = Some(s.add_failure(key, now, p).unwrap());
        }
        last.unwrap()
    }

    #[test]
    fn threshold_creates_lock() {
        let (_dir, path) = temp();
        let s = store(&path);
        let key = Key::user(SITE, "Alice");
        let p = policy();
        for n in 1..5 {
            let c = s.add_failure(&key, at(0), &p).unwrap();
            assert_eq!((c.failures, c.lock, c.tripped), (n, None, false));
        }
        assert_eq!(s.lock(&key, at(0)).unwrap(), None);
        let c = s.add_failure(&key, at(0), &p).unwrap();
        let lock = Lock {
            until: at(15),
            strikes: 1,
        };
        assert_eq!((c.failures, c.lock, c.tripped), (5, Some(lock), true));
        assert_eq!(s.lock(&key, at(14)).unwrap(), Some(lock));
        assert_eq!(s.lock(&key, at(15)).unwrap(), None);
        // While locked nothing is counted and the lock comes back.
        let c = s.add_failure(&key, at(1), &p).unwrap();
        assert_eq!((c.failures, c.lock, c.tripped), (0, Some(lock), false));
        let c = s.add_failure(&key, at(15), &p).unwrap();
        assert_eq!((c.failures, c.lock), (1, None));
    }

    #[test]
    fn window_expiry_starts_new_count() {
        let (_dir, path) = temp();
        let s = store(&path);
        let key = Key::ip(SITE, "192.0.2.7");
        let p = policy();
        assert_eq!(fail(&s, &key, at(0), &p, 4).failures, 4);
        // Exactly `window` after the first still counts.
        assert_eq!(
            fail(&s, &key, at(10), &p, 1).lock,
            Some(Lock {
                until: at(25),
                strikes: 1
            })
        );
        let other = Key::ip(SITE, "192.0.2.8");
        fail(&s, &other, at(0), &p, 4);
        assert_eq!(s.add_failure(&other, at(11), &p).unwrap().failures, 1);
        assert_eq!(s.add_failure(&other, at(12), &p).unwrap().failures, 2);
    }

    #[test]
    fn escalation_doubles_then_caps() {
        let (_dir, path) = temp();
        let s = store(&path);
        let key = Key::user(SITE, "bob");
        let p = policy();
        let mut now = at(0);
        for (strikes, len) in [(1, 15), (2, 30), (3, 60), (4, 60)] {
            let c = fail(&s, &key, now, &p, 5);
            assert!(c.tripped);
            assert_eq!(
                c.lock,
                Some(Lock {
                    until: now + mins(len),
                    strikes
                })
            );
            now += mins(len);
        }
    }

    #[test]
    fn strikes_forgotten_after_strike_memory() {
        let (_dir, path) = temp();
        let s = store(&path);
        let key = Key::user(SITE, "carol");
        let p = LockPolicy {
            strike_memory: mins(60),
            ..policy()
        };
        fail(&s, &key, at(0), &p, 5); // locked until 15
        let c = fail(&s, &key, at(15 + 59), &p, 5); // memory not yet over
        assert_eq!(
            c.lock,
            Some(Lock {
                until: at(74 + 30),
                strikes: 2
            })
        );
        let c = fail(&s, &key, at(104 + 60), &p, 5); // a full hour after it ended
        assert_eq!(
            c.lock,
            Some(Lock {
                until: at(164 + 15),
                strikes: 1
            })
        );
    }

    #[test]
    fn reset_clears_count_but_keeps_lock_and_strikes() {
        let (_dir, path) = temp();
        let s = store(&path);
        let p = policy();
        let key = Key::user(SITE, "dave");
        fail(&s, &key, at(0), &p, 5);
        s.reset(&key).unwrap();
        assert_eq!(
            s.lock(&key, at(1)).unwrap(),
            Some(Lock {
                until: at(15),
                strikes: 1
            })
        );
        fail(&s, &key, at(15), &p, 3);
        s.reset(&key).unwrap();
        assert_eq!(s.add_failure(&key, at(16), &p).unwrap().failures, 1);
        // The strike survived both resets: the next lock is doubled.
        assert_eq!(fail(&s, &key, at(16), &p, 4).lock.unwrap().strikes, 2);
        // A key with nothing to remember is dropped on success.
        let fresh = Key::user(SITE, "erin");
        fail(&s, &fresh, at(0), &p, 2);
        s.reset(&fresh).unwrap();
        s.reset(&Key::user(SITE, "nobody")).unwrap();
        assert_eq!(s.key_count().unwrap(), 1);
    }

    #[test]
    fn lock_survives_close_and_reopen() {
        let (_dir, path) = temp();
        let key = Key::user_ip(SITE, "frank", "198.51.100.1");
        {
            let s = store(&path);
            fail(&s, &key, at(0), &policy(), 5);
            fail(&s, &Key::user(SITE, "frank"), at(0), &policy(), 2);
        }
        let s = store(&path);
        assert_eq!(
            s.lock(&key, at(5)).unwrap(),
            Some(Lock {
                until: at(15),
                strikes: 1
            })
        );
        let c = s
            .add_failure(&Key::user(SITE, "frank"), at(1), &policy())
            .unwrap();
        assert_eq!(c.failures, 3);
    }

    // Runs `threads` concurrent add_failure calls on one key, spread over
    // `stores`, and checks the lock was created once after exactly 5 failures.
    fn race(stores: &[Arc<SqliteStore>], threads: usize) {
        let key = Key::user(SITE, "target");
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (s, key, barrier) = (
                    Arc::clone(&stores[i % stores.len()]),
                    key.clone(),
                    Arc::clone(&barrier),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    s.add_failure(&key, at(0), &policy()).unwrap()
                })
            })
            .collect();
        let results: Vec<Counter> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let tripped: Vec<_> = results.iter().filter(|c| c.tripped).collect();
        assert_eq!(tripped.len(), 1);
        assert_eq!(tripped[0].failures, 5);
        // Each failure before the lock saw a distinct count: none lost.
        let counted: BTreeSet<u32> = results
            .iter()
            .filter(|c| c.lock.is_none())
            .map(|c| c.failures)
            .collect();
        assert_eq!(counted, BTreeSet::from([1, 2, 3, 4]));
        assert_eq!(results.iter().filter(|c| c.lock.is_none()).count(), 4);
        let refused = results
            .iter()
            .filter(|c| c.lock.is_some() && !c.tripped)
            .count();
        assert_eq!(refused, threads - 5);
        assert_eq!(stores[0].lock(&key, at(0)).unwrap().unwrap().strikes, 1);
    }

    #[test]
    fn fifty_threads_one_key_lock_exactly_once() {
        let (_dir, path) = temp();
        race(&[Arc::new(store(&path))], 50);
    }

    #[test]
    fn fifty_threads_over_two_handles_lock_exactly_once() {
        let (_dir, path) = temp();
        race(&[Arc::new(store(&path)), Arc::new(store(&path))], 50);
    }

    #[test]
    fn two_handles_see_each_other_at_once() {
        let (_dir, path) = temp();
        let server = store(&path);
        let cli = store(&path);
        let key = Key::user(SITE, "grace");
        fail(&server, &key, at(0), &policy(), 5);
        assert!(cli.lock(&key, at(1)).unwrap().is_some());
        assert_eq!(cli.locks(None, None, at(1), 10).unwrap().len(), 1);
        assert_eq!(cli.clear(SITE, Some("GRACE"), None).unwrap(), 1);
        assert_eq!(server.lock(&key, at(1)).unwrap(), None);
        // Cleared means strikes too: the next lock is a first one again.
        assert_eq!(
            fail(&server, &key, at(2), &policy(), 5)
                .lock
                .unwrap()
                .strikes,
            1
        );
    }

    fn seed(s: &SqliteStore) {
        let p = LockPolicy {
            threshold: 1,
            ..policy()
        };
        for key in [
            Key::user(SITE, "henry"),
            Key::user_ip(SITE, "henry", "203.0.113.9"),
            Key::device(SITE, "henry", "d-1"),
            Key::user(SITE, "henrietta"),
            Key::ip(SITE, "203.0.113.9"),
            Key::token(SITE, "203.0.113.9"),
            Key::user_ip(SITE, "ivy", "203.0.113.9"),
            Key::ip(SITE, "2001:db8:5:6::/64"),
            Key::user(SITE, "203.0.113.9"),
            Key::user("other", "henry"),
            Key::ip("other", "203.0.113.9"),
        ] {
            s.add_failure(&key, at(0), &p).unwrap();
        }
    }

    #[test]
    fn clear_by_user() {
        let (_dir, path) = temp();
        let s = store(&path);
        seed(&s);
        assert_eq!(s.clear(SITE, Some("Henry"), None).unwrap(), 3);
        assert!(s.lock(&Key::user(SITE, "henry"), at(0)).unwrap().is_none());
        assert!(
            s.lock(&Key::user(SITE, "henrietta"), at(0))
                .unwrap()
                .is_some()
        );
        assert!(
            s.lock(&Key::user("other", "henry"), at(0))
                .unwrap()
                .is_some()
        );
        assert_eq!(s.clear(SITE, None, None).unwrap(), 0);
        assert_eq!(s.clear(SITE, Some("henry"), None).unwrap(), 0);
    }

    #[test]
    fn clear_by_ip() {
        let (_dir, path) = temp();
        let s = store(&path);
        seed(&s);
        // Ip, Token and both UserIp keys; not the User key named like an IP.
        assert_eq!(s.clear(SITE, None, Some("203.0.113.9")).unwrap(), 4);
        assert!(
            s.lock(&Key::user(SITE, "203.0.113.9"), at(0))
                .unwrap()
                .is_some()
        );
        assert!(
            s.lock(&Key::ip("other", "203.0.113.9"), at(0))
                .unwrap()
                .is_some()
        );
        // An address inside a counted /64 clears the prefix.
        assert_eq!(s.clear(SITE, None, Some("2001:db8:5:6::abcd")).unwrap(), 1);
        // User or ip: both kinds go at once.
        assert_eq!(
            s.clear("other", Some("henry"), Some("203.0.113.9"))
                .unwrap(),
            2
        );
        assert_eq!(s.key_count().unwrap(), 4);
    }

    #[test]
    fn locks_lists_active_newest_first_with_limit() {
        let (_dir, path) = temp();
        let s = store(&path);
        let p = LockPolicy {
            threshold: 1,
            ..policy()
        };
        for (i, user) in ["a", "b", "c", "d"].into_iter().enumerate() {
            s.add_failure(&Key::user(SITE, user), at(i as u64), &p)
                .unwrap();
        }
        s.add_failure(&Key::user("other", "z"), at(2), &p).unwrap();
        let names = |v: Vec<(Key, Lock)>| v.into_iter().map(|(k, _)| k.subject).collect::<Vec<_>>();
        // c and z locked at the same minute: the later write is newer.
        assert_eq!(
            names(s.locks(None, None, at(4), 10).unwrap()),
            ["d", "z", "c", "b", "a"]
        );
        assert_eq!(
            names(s.locks(Some(SITE), None, at(4), 2).unwrap()),
            ["d", "c"]
        );
        assert_eq!(
            names(s.locks(Some("other"), None, at(4), 10).unwrap()),
            ["z"]
        );
        // a's lock ended at 15.
        assert_eq!(
            names(s.locks(Some(SITE), None, at(15), 10).unwrap()),
            ["d", "c", "b"]
        );
        assert!(s.locks(None, None, at(4), 0).unwrap().is_empty());
        let (key, lock) = &s.locks(None, None, at(4), 1).unwrap()[0];
        assert_eq!(
            (key.scope, lock.until, lock.strikes),
            (Scope::User, at(18), 1)
        );
        s.add_failure(&Key::token(SITE, "192.0.2.1"), at(3), &p)
            .unwrap();
        assert_eq!(
            names(s.locks(None, Some(Scope::Token), at(4), 10).unwrap()),
            ["192.0.2.1"],
            "only the scope asked for"
        );
    }

    #[test]
    fn sweep_removes_only_expired_rows() {
        let (_dir, path) = temp();
        let s = store(&path);
        let p = LockPolicy {
            strike_memory: mins(60),
            ..policy()
        };
        fail(&s, &Key::user(SITE, "counting"), at(0), &p, 2); // expires at 10
        fail(&s, &Key::user(SITE, "locked"), at(0), &p, 5); // lock to 15, strike to 75
        assert_eq!(s.sweep(at(9)).unwrap(), 0);
        assert_eq!(s.sweep(at(10)).unwrap(), 1);
        assert_eq!(s.sweep(at(74)).unwrap(), 0);
        assert_eq!(s.sweep(at(75)).unwrap(), 1);
        assert_eq!(s.key_count().unwrap(), 0);
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    /// Sprays 240,000 distinct `User` keys (not a million: one durable
    /// transaction per call runs at about 8,000 calls/s in a debug build on
    /// this machine, so a million would take two minutes) into a store with
    /// `max_keys` = 10,000. The row count never exceeds the bound, an active
    /// lock made before the spray survives it, and the files stay small: the
    /// database under 2 MiB and database + WAL + shm under 8 MiB.
    #[test]
    fn spray_240k_distinct_users_stays_within_max_keys() {
        const SPRAY: u64 = 240_000;
        const MAX_KEYS: usize = 10_000;
        let (_dir, path) = temp();
        let s = SqliteStore::open(&path, MAX_KEYS).unwrap();
        let p = policy();
        let victim = Key::user(SITE, "victim");
        fail(&s, &victim, at(0), &p, 5);
        let started = std::time::Instant::now();
        for i in 0..SPRAY {
            let key = Key::user(SITE, &format!("spray-{i:07}@example.com"));
            s.add_failure(&key, at(0) + Duration::from_millis(i), &p)
                .unwrap();
            if i % 10_000 == 0 {
                assert!(s.key_count().unwrap() <= MAX_KEYS);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "spray: {SPRAY} add_failure calls in {secs:.1} s = {:.0}/s",
            SPRAY as f64 / secs
        );
        assert!(s.key_count().unwrap() <= MAX_KEYS);
        assert!(s.lock(&victim, at(5)).unwrap().is_some());
        let db = file_len(&path);
        let total =
            db + file_len(&with_suffix(&path, "-wal")) + file_len(&with_suffix(&path, "-shm"));
        eprintln!("spray: db {db} bytes, db+wal+shm {total} bytes");
        assert!(db < 2 << 20, "db is {db} bytes");
        assert!(total < 8 << 20, "files are {total} bytes");
    }

    #[test]
    fn lru_evicts_oldest_unlocked_and_keeps_locks() {
        let (_dir, path) = temp();
        let s = SqliteStore::open(&path, 200).unwrap();
        let p = policy();
        let locked = Key::user(SITE, "locked");
        fail(&s, &locked, at(0), &p, 5);
        for i in 0..250u64 {
            s.add_failure(
                &Key::user(SITE, &format!("u{i}")),
                at(1) + Duration::from_millis(i),
                &p,
            )
            .unwrap();
            assert!(s.key_count().unwrap() <= 200);
        }
        assert!(s.lock(&locked, at(2)).unwrap().is_some());
        // u0 was touched longest ago; u249 just now.
        assert_eq!(
            s.add_failure(&Key::user(SITE, "u249"), at(2), &p)
                .unwrap()
                .failures,
            2
        );
        assert_eq!(
            s.add_failure(&Key::user(SITE, "u0"), at(2), &p)
                .unwrap()
                .failures,
            1
        );
    }

    #[test]
    fn expired_rows_go_before_live_ones() {
        let (_dir, path) = temp();
        let s = SqliteStore::open(&path, 10).unwrap();
        let p = policy();
        for i in 0..9 {
            s.add_failure(&Key::user(SITE, &format!("old{i}")), at(0), &p)
                .unwrap();
        }
        s.add_failure(&Key::user(SITE, "live"), at(5), &p).unwrap();
        // At 11 the nine old counts are over; "live" (touched later) still counts.
        s.add_failure(&Key::user(SITE, "new"), at(11), &p).unwrap();
        assert_eq!(s.key_count().unwrap(), 2);
        assert_eq!(
            s.add_failure(&Key::user(SITE, "live"), at(12), &p)
                .unwrap()
                .failures,
            2
        );
    }

    #[test]
    fn full_of_locks_evicts_the_soonest_ending_lock() {
        let (_dir, path) = temp();
        let s = SqliteStore::open(&path, 3).unwrap();
        let p = LockPolicy {
            threshold: 1,
            ..policy()
        };
        for (i, user) in ["a", "b", "c", "d"].into_iter().enumerate() {
            s.add_failure(&Key::user(SITE, user), at(i as u64), &p)
                .unwrap();
        }
        assert_eq!(s.key_count().unwrap(), 3);
        assert!(s.lock(&Key::user(SITE, "a"), at(4)).unwrap().is_none());
        for user in ["b", "c", "d"] {
            assert!(s.lock(&Key::user(SITE, user), at(4)).unwrap().is_some());
        }
    }

    #[test]
    fn lowered_max_keys_is_enforced_on_next_insert() {
        let (_dir, path) = temp();
        {
            let s = SqliteStore::open(&path, 100).unwrap();
            for i in 0..100 {
                s.add_failure(&Key::user(SITE, &format!("k{i}")), at(0), &policy())
                    .unwrap();
            }
        }
        let s = SqliteStore::open(&path, 10).unwrap();
        s.add_failure(&Key::user(SITE, "new"), at(1), &policy())
            .unwrap();
        assert!(s.key_count().unwrap() <= 10);
    }

    #[test]
    fn too_long_key_is_refused_and_not_stored() {
        let (_dir, path) = temp();
        let s = store(&path);
        let key = Key::user(SITE, &"x".repeat(crate::store::MAX_FIELD_LEN + 1));
        let err = s.add_failure(&key, at(0), &policy()).unwrap_err();
        assert!(matches!(err, StoreError::KeyTooLong { .. }));
        assert_eq!(s.key_count().unwrap(), 0);
    }

    #[test]
    fn newer_schema_version_is_refused() {
        let (_dir, path) = temp();
        drop(store(&path));
        let raw = Connection::open(&path).unwrap();
        assert_eq!(
            raw.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
                .unwrap(),
            3
        );
        raw.pragma_update(None, "user_version", 4).unwrap();
        drop(raw);
        let err = SqliteStore::open(&path, 10).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 4,
                    known: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("newer"));
    }

    #[test]
    fn garbage_file_is_an_open_error() {
        let (_dir, path) = temp();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            b"this is not a database, just some bytes\n".repeat(200),
        )
        .unwrap();
        let err = SqliteStore::open(&path, 10).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
    }

    #[test]
    fn damaged_page_is_an_open_error() {
        let (_dir, path) = temp();
        {
            let s = store(&path);
            for i in 0..500 {
                s.add_failure(&Key::user(SITE, &format!("user{i}")), at(0), &policy())
                    .unwrap();
            }
        } // last close checkpoints the WAL into the file
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 8 * 1024);
        // Keep the header (page 1), scribble over the b-tree pages after it.
        for b in &mut bytes[1024..8 * 1024] {
            *b = 0xA5;
        }
        std::fs::write(&path, bytes).unwrap();
        let err = SqliteStore::open(&path, 10).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
    }

    #[test]
    fn zero_max_keys_is_refused() {
        let (_dir, path) = temp();
        assert!(matches!(
            SqliteStore::open(&path, 0),
            Err(StoreError::Open { .. })
        ));
    }

    #[test]
    fn concurrent_first_opens_migrate_once() {
        // Many rounds on fresh files: the race (two connections switching a new
        // file to WAL) is timing-dependent and showed up only under load.
        for _ in 0..20 {
            let (_dir, path) = temp();
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || SqliteStore::open(&path, 10).map(drop))
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
            store(&path).ping().unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = temp();
        let s = store(&path);
        s.add_failure(&Key::user(SITE, "x"), at(0), &policy())
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&with_suffix(&path, "-wal")), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn poisoned_mutex_is_recovered() {
        let (_dir, path) = temp();
        let s = Arc::new(store(&path));
        let poisoner = Arc::clone(&s);
        let result = std::thread::spawn(move || {
            let _guard = poisoner.inner();
            panic!("poison the store mutex");
        })
        .join();
        assert!(result.is_err());
        assert!(s.inner.is_poisoned());
        s.ping().unwrap();
        s.add_failure(&Key::user(SITE, "x"), at(0), &policy())
            .unwrap();
    }

    #[test]
    fn ping_and_path() {
        let (_dir, path) = temp();
        let s = store(&path);
        s.ping().unwrap();
        assert_eq!(s.path(), path);
    }
}
