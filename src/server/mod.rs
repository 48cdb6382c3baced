//! The running gateway: listeners, shared state, start-up and shutdown.
//!
//! Start-up validates everything (config, certificates, audit log) before a
//! single port is bound; `SIGTERM`/`SIGINT` stop accepting and drain in-flight
//! requests for up to `limits.drain_timeout`.

mod conn;
mod redirect;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

use crate::audit::{AuditEvent, AuditLog};
use crate::config::{Config, ConfigError, StateBackend};
use crate::keys::SecretKey;
use crate::metrics::Metrics;
use crate::runtime::{self, Runtime};
use crate::store::StateStore;
use crate::store::sqlite::SqliteStore;
use crate::tls::{self, Mode, SniResolver};
use crate::worker::Worker;

use conn::Listener;

/// State shared by every connection and the reload watcher.
pub struct Shared {
    /// The current config generation.
    pub runtime: ArcSwap<Runtime>,
    /// Certificates by SNI, swapped on reload.
    pub resolver: Arc<SniResolver>,
    /// The audit log.
    pub audit: AuditLog,
    /// Metrics.
    pub metrics: Metrics,
    /// Durable state: login counters and lockouts.
    pub store: Arc<dyn StateStore>,
    /// The gateway's secret key.
    pub key: SecretKey,
    /// Every API token, kept in step with the store.
    pub tokens: Arc<crate::token::cache::TokenCache>,
    /// The config file being served (and watched).
    pub config_path: PathBuf,
    /// The port the HTTPS listener actually bound (config may say 0).
    pub https_port: std::sync::OnceLock<u16>,
    generation: AtomicU64,
    reload_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The next generation number.
    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// Why `run` could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config (or a certificate it names) is invalid: exit 64.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Something outside the config failed (a port in use, an unwritable log): exit 1.
    #[error("{0}")]
    Startup(String),
}

/// Serves `config` until `SIGTERM` or `SIGINT`.
pub async fn run(config: Config) -> Result<(), RunError> {
    let certs = runtime::load_certs(&config, Mode::Run)?;
    let audit = AuditLog::open(&config.audit_path).map_err(|e| {
        RunError::Startup(format!(
            "cannot open the audit log {}: {e}",
            config.audit_path.display()
        ))
    })?;
    let store = open_store(&config.state)?;
    let key = SecretKey::load_or_create(&config.state.key_file)
        .map_err(|e| RunError::Startup(e.to_string()))?;
    let resolver = SniResolver::new(certs);
    let tls_config =
        tls::server_config(resolver.clone()).map_err(|e| RunError::Startup(e.to_string()))?;
    let listen = config.listen.clone();
    let config_path = config.source.clone();
    let rt = Runtime::build(config, 1)?;
    let metrics = Metrics::new();
    metrics.certificates(resolver.current().info());
    let tokens = Arc::new(crate::token::cache::TokenCache::default());
    tokens
        .refresh(&*store, Some(&audit))
        .map_err(|e| RunError::Startup(format!("cannot load API tokens: {e}")))?;
    let shared = Arc::new(Shared {
        runtime: ArcSwap::from_pointee(rt),
        resolver,
        audit,
        metrics,
        store,
        key,
        tokens,
        config_path,
        https_port: std::sync::OnceLock::new(),
        generation: AtomicU64::new(1),
        reload_lock: tokio::sync::Mutex::new(()),
    });
    let listeners = bind_all(&listen).await?;
    serve(shared, listeners, tls_config).await
}

/// Opens the configured state backend.
pub fn open_store(state: &crate::config::State) -> Result<Arc<dyn StateStore>, RunError> {
    match state.backend {
        StateBackend::Sqlite => SqliteStore::open(&state.path, state.max_keys)
            .map(|s| Arc::new(s) as Arc<dyn StateStore>)
            .map_err(|e| {
                RunError::Startup(format!(
                    "cannot open the state store {}: {e}",
                    state.path.display()
                ))
            }),
    }
}

/// Every minute: expire old counters and lockouts, trim idle rate-limit state.
async fn sweep(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.sweep(std::time::SystemTime::now())).await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(rows = n, "expired state swept"),
            Ok(Err(e)) => tracing::error!(error = %e, "state sweep failed"),
            _ => {}
        }
        for site in &shared.runtime.load().sites {
            site.guard.trim();
        }
    }
}

/// Keeps the token cache in step with the store (revocations within a
/// second) and writes use counts in batches; a last flush at shutdown.
async fn follow_tokens(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    use crate::token::cache::{FLUSH_EVERY, REFRESH_EVERY};
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let flush_every = (FLUSH_EVERY.as_millis() / REFRESH_EVERY.as_millis()).max(1);
    let mut n: u128 = 0;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        n += 1;
        let s = shared.clone();
        let flush = stopping || n.is_multiple_of(flush_every);
        let done = tokio::task::spawn_blocking(move || {
            s.tokens.refresh(&*s.store, Some(&s.audit))?;
            if flush {
                s.tokens.flush(&*s.store, &s.audit)?;
            }
            Ok::<(), crate::store::StoreError>(())
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::error!(error = %e, "API tokens could not be refreshed from the store");
        }
        if stopping {
            return;
        }
    }
}

/// The bound listeners.
struct Bound {
    /// One per HTTPS worker, all on the same port.
    https: Vec<std::net::TcpListener>,
    http: Option<TcpListener>,
    admin: Option<TcpListener>,
}

async fn bind_all(listen: &crate::config::Listen) -> Result<Bound, RunError> {
    let https =
        crate::worker::bind_reuseport(listen.https, listen.worker_count()).map_err(|e| {
            RunError::Startup(format!(
                "cannot listen for https on {}: {e} (is another process using the port?)",
                listen.https
            ))
        })?;
    let http = match listen.http {
        Some(a) => Some(bind(a, "http").await?),
        None => None,
    };
    let admin = match listen.admin {
        Some(a) => Some(bind(a, "admin").await?),
        None => None,
    };
    Ok(Bound { https, http, admin })
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr).await.map_err(|e| {
        RunError::Startup(format!(
            "cannot listen for {what} on {addr}: {e} (is another process using the port?)"
        ))
    })
}

fn local(l: &Option<TcpListener>) -> Option<String> {
    l.as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string())
}

async fn serve(
    shared: Arc<Shared>,
    bound: Bound,
    tls_config: Arc<rustls::ServerConfig>,
) -> Result<(), RunError> {
    let https_addr = bound
        .https
        .first()
        .map(std::net::TcpListener::local_addr)
        .ok_or_else(|| RunError::Startup("no HTTPS listener was bound".into()))?
        .map_err(|e| RunError::Startup(e.to_string()))?;
    let _ = shared.https_port.set(https_addr.port());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(sweep(shared.clone(), stop_rx.clone()));
    tokio::spawn(follow_tokens(shared.clone(), stop_rx.clone()));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(crate::reload::watch(
        shared.clone(),
        stop_rx.clone(),
        ready_tx,
    ));
    let _ = ready_rx.await;
    let tracker = TaskTracker::new();
    let limits = shared.runtime.load().config.limits.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let listener = |kind| Listener {
        shared: shared.clone(),
        permits: permits.clone(),
        tracker: tracker.clone(),
        stop: stop_rx.clone(),
        kind,
    };
    let (http_addr, admin_addr) = (local(&bound.http), local(&bound.admin));
    let https = Arc::new(conn::Kind::Https(acceptor));
    start_workers(bound.https, || listener(https.clone()))?;
    if let Some(http) = bound.http {
        tracker.spawn(listener(Arc::new(conn::Kind::Redirect)).run(http));
    }
    if let Some(admin) = bound.admin {
        tracker.spawn(listener(Arc::new(conn::Kind::Admin)).run(admin));
    }
    // Only now: every accept loop runs, so "listening" is a promise.
    tracing::info!(https = %https_addr, http = http_addr, admin = admin_addr,
        config = %shared.config_path.display(), "listening");
    shared.audit.record(
        AuditEvent::new("gateway_started").detail(serde_json::json!({
            "https": https_addr.to_string(), "generation": 1,
        })),
    );
    wait_for_shutdown().await;
    tracing::info!(drain = ?limits.drain_timeout, "shutting down: no new connections, draining");
    let _ = stop_tx.send(true);
    tracker.close();
    if tokio::time::timeout(limits.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing the remaining connections");
    }
    shared.audit.record(AuditEvent::new("gateway_stopped"));
    shared.audit.flush();
    Ok(())
}

/// Starts one HTTPS worker per listener. A worker's accept loop and every
/// connection it accepts run on its own thread; after shutdown it keeps
/// driving them until the drain is over (the tracker is shared, so the main
/// task's drain timeout still bounds it).
fn start_workers(
    listeners: Vec<std::net::TcpListener>,
    listener: impl Fn() -> Listener,
) -> Result<(), RunError> {
    let workers = listeners
        .into_iter()
        .enumerate()
        .map(|(id, l)| Worker::new(id, l))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| RunError::Startup(format!("cannot start the HTTPS workers: {e}")))?;
    for worker in workers {
        let accept = listener();
        let tracker = accept.tracker.clone();
        worker
            .start(move |tcp| async move {
                accept.run(tcp).await;
                tracker.wait().await;
            })
            .map_err(|e| RunError::Startup(format!("cannot start an HTTPS worker: {e}")))?;
    }
    Ok(())
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Re-reads the config and certificates and swaps them in, or keeps the old
/// generation serving if anything is wrong. Serialised: one reload at a time.
pub async fn reload(shared: &Arc<Shared>, trigger: &'static str) -> Result<u64, String> {
    let _one_at_a_time = shared.reload_lock.lock().await;
    let path = shared.config_path.clone();
    let built = tokio::task::spawn_blocking(move || {
        let config = crate::config::load(&path)?;
        let certs = runtime::load_certs(&config, Mode::Run)?;
        Ok::<_, ConfigError>((config, certs))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()))
    .and_then(|(config, certs)| {
        let listen_changed = config.listen != shared.runtime.load().config.listen;
        let rt = Runtime::build(config, 0).map_err(|e| e.to_string())?;
        Ok((rt, certs, listen_changed))
    });
    match built {
        Ok((mut rt, certs, listen_changed)) => {
            if listen_changed {
                tracing::warn!(
                    "[listen] changed: listener addresses and workers apply after a restart; the rest is reloaded"
                );
            }
            rt.generation = shared.next_generation();
            let generation = rt.generation;
            shared.metrics.certificates(certs.info());
            shared.resolver.replace(certs);
            shared.runtime.store(Arc::new(rt));
            shared.metrics.reload("ok");
            shared.audit.record(
                AuditEvent::new("config_reload_ok")
                    .detail(serde_json::json!({ "trigger": trigger, "generation": generation })),
            );
            tracing::info!(trigger, generation, "config reloaded");
            Ok(generation)
        }
        Err(reason) => {
            shared.metrics.reload("failed");
            shared.audit.record(
                AuditEvent::new("config_reload_failed")
                    .reason(reason.clone())
                    .detail(serde_json::json!({ "trigger": trigger })),
            );
            tracing::error!(trigger, error = %reason, "config reload refused; the previous config keeps serving");
            Err(reason)
        }
    }
}
