//! Tamper-evident audit log of security events.
//!
//! What the log promises:
//! - One event is one line: a JSON object in which every control character (including `\n`
//!   and `\r`) and every quote is escaped, so no field can split a record or forge another.
//! - Keys come in a fixed order: `seq`, `ts`, the event's fields (absent ones omitted), `prev`.
//! - `seq` starts at 1 and grows by exactly 1 per line, continuing across restarts.
//! - `ts` is RFC 3339 UTC with milliseconds, taken when the event was recorded.
//! - `prev` is the lowercase hex SHA-256 of the previous line's exact bytes (without `\n`);
//!   the first line of a new file has 64 zeros. Editing, deleting, inserting or reordering a
//!   line breaks the chain, and [`verify`] names the first line concerned.
//! - Recording never waits for the disk: one writer thread owns the file. When its queue
//!   (8192 events) is full, callers wait rather than lose security events.
//! - A crash mid-write leaves at most a torn last line; the next [`AuditLog::open`] terminates
//!   it, chains over its bytes and writes an `audit_torn_line` event. [`verify`] still reports
//!   the torn line, so the damage stays visible.
//! - A write error never brings the process down: it is logged, the writer later re-reads the
//!   file to resume the chain from what really reached it, and writes an
//!   `audit_write_failed` event saying how many events were lost.
//! - The module writes exactly what callers give it; callers never pass secrets (passwords,
//!   TOTP codes, tokens, cookies, upstream credentials).
//!
//! Not promised: lines are flushed to the OS, not fsynced, so a power cut may lose the last
//! ones; and a hash chain alone cannot reveal lines removed from the end (see [`verify`]).

mod verify;

pub use verify::{VerifyError, VerifyReport, tail, verify};

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

use verify::{GENESIS_PREV, last_lines, parse_record, sha256_hex};

/// How many events may wait for the writer before `record` blocks.
const QUEUE_CAPACITY: usize = 8192;

/// One security event. Callers fill what they know; `None` fields are omitted from the line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditEvent {
    /// What happened, e.g. `rule_denied`, `config_reload_ok`, `login_failed`.
    pub event: &'static str,
    /// Name of the configured site concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The client's address as the gateway determined it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    /// The request id, to correlate with access logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The ERP user name (never a password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The gateway token's public id (never the secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The HTTP method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The canonical request path (without query string, which may hold secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why the decision was made, for a human reader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Further structured facts (must not contain secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl AuditEvent {
    /// An event of kind `event` with no other field set.
    #[must_use]
    pub fn new(event: &'static str) -> Self {
        AuditEvent {
            event,
            ..AuditEvent::default()
        }
    }

    /// Sets the site name.
    #[must_use]
    pub fn site(mut self, site: impl Into<String>) -> Self {
        self.site = Some(site.into());
        self
    }

    /// Sets the client address.
    #[must_use]
    pub fn client_ip(mut self, ip: impl Into<IpAddr>) -> Self {
        self.client_ip = Some(ip.into());
        self
    }

    /// Sets the request id.
    #[must_use]
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Sets the ERP user name.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the gateway token's public id.
    #[must_use]
    pub fn token_id(mut self, id: impl Into<String>) -> Self {
        self.token_id = Some(id.into());
        self
    }

    /// Sets the HTTP method.
    #[must_use]
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Sets the canonical request path.
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Sets the human-readable reason.
    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the structured detail.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<serde_json::Value>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file or its directory could not be created, read or written.
    #[error("audit log {}: {source}", path.display())]
    Io {
        /// The log's path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    Thread(io::Error),
}

/// What travels from callers to the writer thread.
enum Msg {
    // Boxed so the preallocated queue stays small.
    Event(Box<AuditEvent>, OffsetDateTime),
    Flush(mpsc::Sender<()>),
}

/// Handle to the audit log. Cheap to clone; all clones feed one writer thread.
///
/// Dropping the last clone waits for the writer to drain the queue (usually a moment), so
/// events recorded before shutdown reach the file.
#[derive(Clone)]
pub struct AuditLog {
    // Field order matters: `tx` must drop before `shared`, whose Drop joins the writer
    // thread, which only exits once every sender is gone.
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

/// State shared by all clones of one [`AuditLog`].
struct Shared {
    path: PathBuf,
    written: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: wait for the writer to drain the queue so that dropping
        // the log at shutdown does not lose the final events.
        if let Some(Err(_)) = self.thread.take().map(JoinHandle::join) {
            tracing::error!("audit writer thread panicked");
        }
    }
}

impl AuditLog {
    /// Opens the log at `path` (creating parent directories, and the file with mode 0640 on
    /// unix; an existing file keeps its mode) and resumes the chain from the file's last line.
    /// A torn last line is terminated and followed by an `audit_torn_line` event.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let written = Arc::new(AtomicU64::new(0));
        let writer = Writer::open(path, Arc::clone(&written)).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let handle = thread::Builder::new()
            .name("erpguard-audit".to_owned())
            .spawn(move || run(writer, &rx))
            .map_err(AuditError::Thread)?;
        let shared = Shared {
            path: path.to_path_buf(),
            written,
            thread: Some(handle),
        };
        Ok(AuditLog {
            tx,
            shared: Arc::new(shared),
        })
    }

    /// Queues one event, stamped with the current time. Never waits for disk I/O; if the
    /// queue (8192 events) is full it blocks until there is room, so that security events
    /// are slowed down rather than lost.
    pub fn record(&self, event: AuditEvent) {
        let msg = Msg::Event(Box::new(event), OffsetDateTime::now_utc());
        if self.tx.send(msg).is_err() {
            // Only possible if the writer thread died; do not take the caller down with it.
            tracing::error!(path = %self.shared.path.display(), "audit writer is gone; event dropped");
        }
    }

    /// Blocks until every event queued so far is written and flushed to the OS.
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(ack_tx)).is_ok() {
            // An error here means the writer is gone; nothing more can be flushed.
            let _ = ack_rx.recv();
        }
    }

    /// Number of lines written since open, including the log's own `audit_*` events.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

/// The writer thread's loop: write what is queued, flush whenever the queue is momentarily
/// empty, exit when every handle is dropped and the queue is drained.
fn run(mut writer: Writer, rx: &Receiver<Msg>) {
    while let Ok(msg) = rx.recv() {
        writer.begin_batch();
        writer.handle(msg);
        while let Ok(msg) = rx.try_recv() {
            writer.handle(msg);
        }
        writer.flush_out();
        writer.end_batch();
    }
}

/// Where the chain continues, read from the end of an existing file.
struct Resume {
    seq: u64,
    prev: String,
    torn: bool,
    needs_newline: bool,
}

/// Owns the file; only ever used by the writer thread (and by `open` before it starts).
struct Writer {
    path: PathBuf,
    /// `None` after a write error, until the file is reopened.
    out: Option<BufWriter<File>>,
    /// Seq and hash of the last line handed to `out`.
    seq: u64,
    prev: String,
    /// Events lost since the last write error.
    lost: u64,
    /// True from a write error until the loss has been recorded in the log.
    failing: bool,
    written: Arc<AtomicU64>,
}

impl Writer {
    fn open(path: &Path, written: Arc<AtomicU64>) -> io::Result<Writer> {
        let mut writer = Writer {
            path: path.to_path_buf(),
            out: None,
            seq: 0,
            prev: GENESIS_PREV.to_owned(),
            lost: 0,
            failing: false,
            written,
        };
        writer.reopen()?;
        Ok(writer)
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Event(event, at) => self.record(&event, at),
            Msg::Flush(ack) => {
                self.flush_out();
                // The caller may have given up waiting; that is fine.
                let _ = ack.send(());
            }
        }
    }

    /// Takes the cross-process lock on the file and re-reads where the chain
    /// ends: another process (an `erpguard` CLI verb beside the running
    /// gateway) may have appended since our last batch, and the next line must
    /// chain to that one, not to ours.
    fn begin_batch(&mut self) {
        let result = self.ensure_open().and_then(|()| self.resync());
        if let Err(err) = result {
            self.fail(&err);
        }
    }

    fn resync(&mut self) -> io::Result<()> {
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        out.flush()?;
        out.get_ref().lock()?;
        let resume = resume_point(out.get_mut())?;
        if resume.needs_newline {
            out.write_all(b"\n")?;
        }
        self.lost = self
            .lost
            .saturating_add(self.seq.saturating_sub(resume.seq));
        self.seq = resume.seq;
        self.prev = resume.prev;
        Ok(())
    }

    /// Releases the cross-process lock (the batch is flushed by then).
    fn end_batch(&mut self) {
        if let Some(out) = self.out.as_ref() {
            let _ = out.get_ref().unlock();
        }
    }

    /// Writes one event, first recovering from an earlier write error if there was one.
    fn record(&mut self, event: &AuditEvent, at: OffsetDateTime) {
        let result = self.ensure_open().and_then(|()| self.append(event, at));
        if let Err(err) = result {
            self.fail(&err);
            self.lost = self.lost.saturating_add(1);
        }
    }

    fn ensure_open(&mut self) -> io::Result<()> {
        if self.out.is_none() {
            self.reopen()?;
        }
        if self.failing {
            let marker = AuditEvent::new("audit_write_failed")
                .reason("events were lost after a write error")
                .detail(serde_json::json!({ "lost_events": self.lost }));
            self.append(&marker, OffsetDateTime::now_utc())?;
            tracing::warn!(path = %self.path.display(), lost = self.lost, "audit log writable again");
            self.lost = 0;
            self.failing = false;
        }
        Ok(())
    }

    /// Opens the file and resumes the chain from what is really on disk. After a write
    /// error this is what re-synchronises the chain, whatever part of the buffer got out.
    fn reopen(&mut self) -> io::Result<()> {
        let mut file = open_file(&self.path)?;
        let resume = resume_point(&mut file)?;
        let mut out = BufWriter::new(file);
        if resume.needs_newline {
            out.write_all(b"\n")?;
        }
        // Lines we believed written but that are not in the file were lost.
        self.lost = self
            .lost
            .saturating_add(self.seq.saturating_sub(resume.seq));
        self.seq = resume.seq;
        self.prev = resume.prev;
        self.out = Some(out);
        if resume.torn {
            let marker = AuditEvent::new("audit_torn_line").reason("previous line was incomplete");
            self.append(&marker, OffsetDateTime::now_utc())?;
        }
        self.flush_result()
    }

    /// Appends one line with a single `write_all` and advances the chain only on success.
    fn append(&mut self, event: &AuditEvent, at: OffsetDateTime) -> io::Result<()> {
        let Some(out) = self.out.as_mut() else {
            return Err(io::Error::other("audit log is not open"));
        };
        let seq = self.seq.saturating_add(1);
        let mut line = format_line(seq, at, event, &self.prev)?;
        let hash = sha256_hex(line.as_bytes());
        line.push('\n');
        out.write_all(line.as_bytes())?;
        self.seq = seq;
        self.prev = hash;
        self.written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn flush_result(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }

    fn flush_out(&mut self) {
        if let Err(err) = self.flush_result() {
            self.fail(&err);
        }
    }

    /// Logs a write error (once per episode) and drops the file and its buffer: the file
    /// on disk is the truth the next `reopen` resumes from.
    fn fail(&mut self, err: &io::Error) {
        if self.failing {
            tracing::debug!(path = %self.path.display(), error = %err, "audit log still failing");
        } else {
            tracing::error!(path = %self.path.display(), error = %err,
                "audit log write failed; will resume the chain from the file");
        }
        self.failing = true;
        if let Some(out) = self.out.take() {
            // into_parts discards the buffer instead of retrying the write on drop.
            let _ = out.into_parts();
        }
    }
}

/// Opens the log for reading (to find the chain's end) and appending.
fn open_file(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The log names users and client addresses: not for every local account.
        options.mode(0o640);
    }
    options.open(path)
}

/// Finds where the chain continues: after the last line if it is a complete record,
/// otherwise after the torn line, hashed as it stands.
fn resume_point(file: &mut File) -> io::Result<Resume> {
    let (lines, terminated) = last_lines(file, 2)?;
    let Some(last) = lines.last() else {
        return Ok(Resume {
            seq: 0,
            prev: GENESIS_PREV.to_owned(),
            torn: false,
            needs_newline: false,
        });
    };
    let prev = sha256_hex(last);
    if let Some((seq, _)) = parse_record(last) {
        return Ok(Resume {
            seq,
            prev,
            torn: !terminated,
            needs_newline: !terminated,
        });
    }
    // The torn line most likely took the seq after the last good one.
    let before = lines
        .len()
        .checked_sub(2)
        .and_then(|i| lines.get(i))
        .and_then(|l| parse_record(l))
        .map_or(0, |(seq, _)| seq);
    Ok(Resume {
        seq: before.saturating_add(1),
        prev,
        torn: true,
        needs_newline: !terminated,
    })
}

/// One line on disk; `flatten` keeps the key order seq, ts, event fields, prev.
#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    ts: &'a str,
    #[serde(flatten)]
    event: &'a AuditEvent,
    prev: &'a str,
}

fn format_line(seq: u64, at: OffsetDateTime, event: &AuditEvent, prev: &str) -> io::Result<String> {
    let ts = format_ts(at);
    let line = Line {
        seq,
        ts: &ts,
        event,
        prev,
    };
    // Cannot fail for these types (string keys only), but never panic if it somehow does.
    serde_json::to_string(&line).map_err(io::Error::other)
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T18:41:56.123Z`. `at` is always from
/// `now_utc()`; `checked_to_offset` is only there because `to_offset` may panic.
fn format_ts(at: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    let formatted = at
        .checked_to_offset(time::UtcOffset::UTC)
        .map(|utc| utc.format(format));
    match formatted {
        Some(Ok(ts)) => ts,
        // Only reachable for dates outside the years 0..=9999.
        _ => "0000-01-01T00:00:00.000Z".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::net::Ipv4Addr;

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn json(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    fn record_n(log: &AuditLog, n: usize) {
        for i in 0..n {
            log.record(
                AuditEvent::new("rule_denied")
                    .site("erp")
                    .request_id(format!("r{i}")),
            );
        }
        log.flush();
    }

    #[test]
    fn line_format_and_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.record(
            AuditEvent::new("login_failed")
                .site("erp")
                .client_ip(Ipv4Addr::new(203, 0, 113, 7))
                .user("alice")
                .reason("bad password")
                .detail(serde_json::json!({ "attempts": 3 })),
        );
        log.record(AuditEvent::new("config_reload_ok"));
        log.flush();
        let all = lines(&path);
        assert_eq!(all.len(), 2);
        let first = &all[0];
        let (head, rest) = first.split_at(first.find(",\"event\"").unwrap());
        assert!(head.starts_with("{\"seq\":1,\"ts\":\""), "{head}");
        let ts = json(first)["ts"].as_str().unwrap().to_owned();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
        let want = format!(
            ",\"event\":\"login_failed\",\"site\":\"erp\",\"client_ip\":\"203.0.113.7\",\"user\":\"alice\",\"reason\":\"bad password\",\"detail\":{{\"attempts\":3}},\"prev\":\"{GENESIS_PREV}\"}}"
        );
        assert_eq!(rest, want);
        let second = json(&all[1]);
        let keys: Vec<&str> = second
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["event", "prev", "seq", "ts"]); // absent fields omitted
        assert_eq!(second["prev"], sha256_hex(all[0].as_bytes()));
        assert_eq!(log.written(), 2);
        assert_eq!(log.path(), path);
    }

    #[test]
    fn hundred_events_then_reopen_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        record_n(&log, 100);
        assert_eq!(verify(&path).unwrap().lines, 100);
        drop(log);

        let log = AuditLog::open(&path).unwrap();
        record_n(&log, 20);
        assert_eq!(log.written(), 20);
        let all = lines(&path);
        let line101 = json(&all[100]);
        assert_eq!(line101["seq"], 101);
        assert_eq!(line101["prev"], sha256_hex(all[99].as_bytes()));
        assert_eq!(verify(&path).unwrap().lines, 120);
    }

    #[test]
    fn dropping_the_last_handle_drains_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let clone = log.clone();
        for _ in 0..500 {
            clone.record(AuditEvent::new("token_used"));
        }
        drop(clone);
        drop(log);
        assert_eq!(verify(&path).unwrap().lines, 500);
    }

    #[test]
    fn torn_last_line_is_terminated_and_chained_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        record_n(&AuditLog::open(&path).unwrap(), 10);
        let torn = "{\"seq\":11,\"ts\":\"2026-11-23T18:4";
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(torn.as_bytes()).unwrap();
        drop(file);

        let log = AuditLog::open(&path).unwrap();
        record_n(&log, 3);
        let all = lines(&path);
        assert_eq!(all.len(), 15);
        assert_eq!(all[10], torn);
        let marker = json(&all[11]);
        assert_eq!(marker["event"], "audit_torn_line");
        assert_eq!(marker["reason"], "previous line was incomplete");
        assert_eq!(marker["seq"], 12);
        assert_eq!(marker["prev"], sha256_hex(torn.as_bytes()));
        assert_eq!(json(&all[14])["seq"], 15);
        match verify(&path) {
            Err(VerifyError::ChainBroken { line, what }) => {
                assert_eq!((line, what.as_str()), (11, "not a valid audit record"));
            }
            other => panic!("torn line not reported: {other:?}"),
        }
    }

    #[test]
    fn complete_but_unterminated_last_line_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        record_n(&AuditLog::open(&path).unwrap(), 5);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.trim_end_matches('\n')).unwrap();

        let log = AuditLog::open(&path).unwrap();
        record_n(&log, 1);
        let all = lines(&path);
        assert_eq!(json(&all[5])["event"], "audit_torn_line");
        assert_eq!(json(&all[5])["seq"], 6);
        assert_eq!(verify(&path).unwrap().lines, 7);
    }

    #[test]
    fn hostile_field_values_stay_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let nasty = "a\nb\r\n{\"seq\":1,\"prev\":\"x\"}\"\\\u{0}\u{2028}é";
        let event = AuditEvent::new("rule_denied")
            .path(nasty)
            .user(nasty)
            .method(nasty)
            .token_id(nasty)
            .detail(serde_json::json!({ nasty: nasty }));
        log.record(event);
        log.record(AuditEvent::new("rule_denied"));
        log.flush();
        let all = lines(&path);
        assert_eq!(all.len(), 2);
        let first = json(&all[0]);
        assert_eq!(first["path"], nasty);
        assert_eq!(first["user"], nasty);
        assert_eq!(first["detail"][nasty], nasty);
        assert_eq!(verify(&path).unwrap().lines, 2);
    }

    #[test]
    fn two_processes_appending_to_one_file_keep_one_chain() {
        // Two independent logs on one file behave like the gateway and a CLI
        // verb in separate processes: the file lock and resync keep one chain.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let gateway = AuditLog::open(&path).unwrap();
        let cli = AuditLog::open(&path).unwrap();
        for i in 0..50 {
            let log = if i % 3 == 0 { &cli } else { &gateway };
            log.record(AuditEvent::new("test").reason(format!("event {i}")));
            log.flush();
        }
        drop(cli);
        drop(gateway);
        let report = verify(&path).unwrap();
        assert_eq!(report.lines, 50);
    }

    #[test]
    fn concurrent_writers_produce_one_valid_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                thread::spawn(move || {
                    for i in 0..1000 {
                        log.record(AuditEvent::new("token_used").request_id(format!("{t}-{i}")));
                    }
                })
            })
            .collect();
        for handle in threads {
            handle.join().unwrap();
        }
        log.flush();
        assert_eq!(verify(&path).unwrap().lines, 8000);
        let ids: std::collections::HashSet<String> = lines(&path)
            .iter()
            .map(|l| json(l)["request_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 8000);
        assert_eq!(log.written(), 8000);
    }

    #[test]
    fn record_after_directory_removal_does_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        record_n(&log, 2);
        fs::remove_dir_all(dir.path().join("logs")).unwrap();
        record_n(&log, 2);
        log.flush();
        assert!(log.written() >= 2);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn write_errors_do_not_panic() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let log = AuditLog::open(full).unwrap();
        record_n(&log, 50);
        log.record(AuditEvent::new("rule_denied"));
        log.flush();
    }

    #[test]
    fn resync_after_write_error_keeps_the_chain_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut writer = Writer::open(&path, Arc::new(AtomicU64::new(0))).unwrap();
        let now = OffsetDateTime::now_utc();
        writer.record(&AuditEvent::new("a"), now);
        writer.flush_out();
        // Two lines reach only the buffer, then the write "fails" and the buffer is lost.
        writer.record(&AuditEvent::new("b"), now);
        writer.record(&AuditEvent::new("c"), now);
        writer.fail(&io::Error::other("disk full"));
        writer.record(&AuditEvent::new("d"), now);
        writer.flush_out();

        let all = lines(&path);
        let events: Vec<Value> = all.iter().map(|l| json(l)["event"].clone()).collect();
        assert_eq!(events, ["a", "audit_write_failed", "d"]);
        assert_eq!(json(&all[1])["detail"]["lost_events"], 2);
        assert_eq!(verify(&path).unwrap().lines, 3);
    }

    #[cfg(unix)]
    #[test]
    fn new_file_is_not_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let _log = AuditLog::open(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    }

    #[test]
    fn handle_is_shareable() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<AuditLog>();
    }
}
