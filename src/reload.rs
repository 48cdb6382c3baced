//! Reload triggers: `SIGHUP`, and a change to the config file or any
//! certificate file it names.
//!
//! Files are polled (once a second, by content hash) rather than watched with
//! inotify: editors and config-management tools replace files by rename, and
//! Kubernetes swaps a symlink, which silently breaks inotify watches. A hash
//! poll of a few small files costs nothing and cannot miss a change.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{oneshot, watch};

use crate::server::{self, Shared};

const POLL: Duration = Duration::from_secs(1);

/// Runs until shutdown, reloading on `SIGHUP` or a file change. `ready` fires
/// once the starting fingerprint is taken, so a change made after start-up is
/// announced is never mistaken for the starting state.
pub async fn watch(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    ready: oneshot::Sender<()>,
) {
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; not reloading");
            let _ = ready.send(());
            return;
        }
    };
    let mut seen = fingerprint(&watched_files(&shared)).await;
    let _ = ready.send(());
    let mut tick = tokio::time::interval(POLL);
    // A changed fingerprint waits one more poll before it is acted on: a
    // certificate and its key are written one after the other (certbot, cp),
    // and reading the pair in between would refuse a perfectly good rotation.
    let mut pending: Option<u64> = None;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading");
                let _ = server::reload(&shared, "sighup").await;
            }
            _ = tick.tick() => {
                let now = fingerprint(&watched_files(&shared)).await;
                if now == seen || pending != Some(now) {
                    pending = (now != seen).then_some(now);
                    continue;
                }
                pending = None;
                tracing::info!("config or certificate file changed: reloading");
                let _ = server::reload(&shared, "file_change").await;
            }
            _ = stop.changed() => return,
        }
        // Re-read after any reload: a refused config must not be retried every
        // second, and a successful one may name different certificate files.
        seen = fingerprint(&watched_files(&shared)).await;
    }
}

/// The config file and every certificate file of the current generation.
fn watched_files(shared: &Shared) -> Vec<PathBuf> {
    let mut files = vec![shared.config_path.clone()];
    files.extend(shared.resolver.current().files());
    files
}

/// A hash of the files' contents; an unreadable file hashes as absent.
async fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        tokio::fs::read(f).await.ok().hash(&mut h);
    }
    h.finish()
}
