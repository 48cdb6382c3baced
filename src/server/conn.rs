//! The accept loop and one connection's life: permit, TLS handshake under a
//! timeout, hyper with the header-read timer, graceful drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

use super::Shared;
use crate::config::Limits;
use crate::stack::{self, ConnInfo};

/// What a listener serves.
pub(super) enum Kind {
    /// The public HTTPS gateway.
    Https(tokio_rustls::TlsAcceptor),
    /// Plain HTTP: redirects to HTTPS.
    Redirect,
    /// `/healthz`, `/readyz`, `/metrics`.
    Admin,
}

/// One accept loop.
pub(super) struct Listener {
    pub(super) shared: Arc<Shared>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) tracker: TaskTracker,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) kind: Kind,
}

impl Listener {
    /// Accepts until shutdown; each connection runs in its own tracked task.
    pub(super) async fn run(mut self, listener: TcpListener) {
        let kind = Arc::new(self.kind);
        loop {
            // Admin connections do not take public-connection permits: a flood on
            // the public port must not make the gateway unobservable.
            let permit = match *kind {
                Kind::Admin => None,
                _ => tokio::select! {
                    p = self.permits.clone().acquire_owned() => p.ok(),
                    _ = self.stop.changed() => break,
                },
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = self.stop.changed() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: log, back off briefly, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let conn = Connection {
                shared: self.shared.clone(),
                kind: kind.clone(),
                stop: self.stop.clone(),
                peer,
            };
            self.tracker.spawn(async move {
                conn.serve(tcp).await;
                drop(permit);
            });
        }
    }
}

struct Connection {
    shared: Arc<Shared>,
    kind: Arc<Kind>,
    stop: watch::Receiver<bool>,
    peer: std::net::SocketAddr,
}

impl Connection {
    async fn serve(self, tcp: TcpStream) {
        let limits = self.shared.runtime.load().config.limits.clone();
        match &*self.kind {
            Kind::Https(acceptor) => self.serve_tls(acceptor, tcp, &limits).await,
            Kind::Redirect => {
                let info = Arc::new(ConnInfo {
                    peer: self.peer,
                    sni: None,
                    tls: false,
                });
                let shared = self.shared.clone();
                let svc = service_fn(move |req| {
                    super::redirect::handle(shared.clone(), info.clone(), req)
                });
                drive(builder(&limits, None), TokioIo::new(tcp), svc, self.stop).await;
            }
            Kind::Admin => {
                let shared = self.shared.clone();
                let svc = service_fn(move |req| crate::admin::handle(shared.clone(), req));
                drive(builder(&limits, None), TokioIo::new(tcp), svc, self.stop).await;
            }
        }
    }

    async fn serve_tls(
        &self,
        acceptor: &tokio_rustls::TlsAcceptor,
        tcp: TcpStream,
        limits: &Limits,
    ) {
        let metrics = &self.shared.metrics;
        let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                metrics.handshake("failed");
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics.handshake("timeout");
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                return;
            }
        };
        metrics.handshake("ok");
        let session = tls.get_ref().1;
        let sni = session.server_name().map(Arc::from);
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let info = Arc::new(ConnInfo {
            peer: self.peer,
            sni,
            tls: true,
        });
        let shared = self.shared.clone();
        let svc = service_fn(move |req| stack::handle(shared.clone(), info.clone(), req));
        metrics.connection(1);
        drive(
            builder(limits, alpn.as_deref()),
            TokioIo::new(tls),
            svc,
            self.stop.clone(),
        )
        .await;
        metrics.connection(-1);
    }
}

/// hyper's server settings from the limits; the ALPN result pins the protocol.
fn builder(limits: &Limits, alpn: Option<&[u8]>) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    match alpn {
        Some(b"h2") => b.http2_only(),
        Some(_) => b.http1_only(),
        None => b,
    }
}

/// Serves one connection until it ends, or drains it gracefully on shutdown.
async fn drive<I, S, B>(
    builder: auto::Builder<TokioExecutor>,
    io: TokioIo<I>,
    svc: S,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
