//! The accept loop and one connection's life: permit, TLS handshake under a
//! timeout, hyper with the header-read timer, graceful drain on shutdown.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

use super::Shared;
use crate::body::ResponseBody;
use crate::config::Limits;
use crate::stack::{self, ConnInfo};

/// What every listener's service takes and gives; refusals are responses, so it never fails.
type Req = http::Request<hyper::body::Incoming>;
type Resp = http::Response<ResponseBody>;

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
    pub(super) kind: Arc<Kind>,
}

impl Listener {
    /// Accepts until shutdown; each connection runs in its own tracked task.
    pub(super) async fn run(mut self, listener: TcpListener) {
        let kind = self.kind.clone();
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
    /// Serves one accepted connection to its end.
    ///
    /// Everything before serving (the TLS handshake, its timer, the limits)
    /// runs in a boxed future that is freed once it is done: a task keeps
    /// room for the largest state its future can be in, for its whole life,
    /// and an idle keep-alive connection should not pay for a handshake that
    /// ended long ago (1,680 bytes of it, measured, before this split).
    async fn serve(self, tcp: TcpStream) {
        let Some(served) = Box::pin(self.prepare(tcp)).await else {
            return;
        };
        let counted = matches!(*self.kind, Kind::Https(_));
        if counted {
            self.shared.metrics.connection(1);
        }
        served.await;
        if counted {
            self.shared.metrics.connection(-1);
        }
    }

    /// The connection ready to serve, or `None` if its TLS handshake failed.
    async fn prepare(&self, tcp: TcpStream) -> Option<Served> {
        let limits = self.shared.runtime.load().config.limits.clone();
        let stop = self.stop.clone();
        match &*self.kind {
            Kind::Https(acceptor) => self.accept_tls(acceptor, tcp, &limits).await,
            Kind::Redirect => {
                let info = Arc::new(ConnInfo::new(self.peer, None, false));
                let shared = self.shared.clone();
                let svc = service_fn(move |req| {
                    super::redirect::handle(shared.clone(), info.clone(), req)
                });
                Some(serve_http(TokioIo::new(tcp), svc, false, &limits, stop))
            }
            Kind::Admin => {
                let shared = self.shared.clone();
                let svc = service_fn(move |req| crate::admin::handle(shared.clone(), req));
                Some(serve_http(TokioIo::new(tcp), svc, false, &limits, stop))
            }
        }
    }

    /// The TLS handshake under its timeout, then the protocol ALPN chose.
    async fn accept_tls(
        &self,
        acceptor: &tokio_rustls::TlsAcceptor,
        tcp: TcpStream,
        limits: &Limits,
    ) -> Option<Served> {
        let metrics = &self.shared.metrics;
        let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                metrics.handshake("failed");
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                metrics.handshake("timeout");
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                return None;
            }
        };
        metrics.handshake("ok");
        let session = tls.get_ref().1;
        let sni = session.server_name().map(Arc::from);
        // HTTP/2 over TLS is only ever chosen by ALPN (RFC 9113 §3.2); a client
        // that offered none speaks HTTP/1.1.
        let h2 = session.alpn_protocol() == Some(b"h2");
        let info = Arc::new(ConnInfo::new(self.peer, sni, true));
        let shared = self.shared.clone();
        // Boxed: hyper keeps room for one in-flight service future for the whole
        // life of a connection, so an unboxed one would cost its full size on
        // every idle keep-alive connection instead of only during a request.
        let svc = service_fn(move |req| Box::pin(stack::handle(shared.clone(), info.clone(), req)));
        Some(serve_http(
            TokioIo::new(tls),
            svc,
            h2,
            limits,
            self.stop.clone(),
        ))
    }
}

/// HTTP/1.1 settings from the limits.
fn http1(limits: &Limits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    b
}

/// HTTP/2 settings from the limits.
fn http2(limits: &Limits) -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// A served connection, boxed: the connection task then holds a pointer, not
/// room for the largest thing a connection could become.
type Served = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Serves a connection with one protocol: HTTP/2 when TLS's ALPN chose it,
/// else HTTP/1.1 (with upgrades, for WebSocket). Each protocol's connection
/// is boxed on its own, so an idle HTTP/1.1 connection holds HTTP/1.1 state
/// only, not room for HTTP/2's too.
fn serve_http<I, S>(
    io: TokioIo<I>,
    svc: S,
    h2: bool,
    limits: &Limits,
    stop: watch::Receiver<bool>,
) -> Served
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Req, Response = Resp, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    match h2 {
        true => {
            let conn = Box::pin(http2(limits).serve_connection(io, svc));
            Box::pin(drive(conn, stop, http2::Connection::graceful_shutdown))
        }
        false => {
            let conn = Box::pin(http1(limits).serve_connection(io, svc).with_upgrades());
            Box::pin(drive(
                conn,
                stop,
                http1::UpgradeableConnection::graceful_shutdown,
            ))
        }
    }
}

/// Serves one connection until it ends, or drains it gracefully on shutdown.
///
/// The connection comes boxed: an `async fn` keeps its argument and the local
/// it is moved into as two slots, so an unboxed connection would be held
/// twice over for the connection's whole life (3,888 bytes for HTTP/1.1 over
/// TLS where the connection itself is 1,832, measured with `size_of_val`).
async fn drive<C, E>(
    mut conn: Pin<Box<C>>,
    mut stop: watch::Receiver<bool>,
    graceful_shutdown: fn(Pin<&mut C>),
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            graceful_shutdown(conn.as_mut());
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in connection as large as a real one is (1,832 bytes for
    /// HTTP/1.1 over TLS): only its size matters here.
    async fn big_conn() -> Result<(), std::io::Error> {
        let state = [0u8; 2048];
        tokio::task::yield_now().await;
        std::hint::black_box(&state);
        Ok(())
    }

    fn ignore_shutdown<C>(_: Pin<&mut C>) {}

    #[test]
    fn an_idle_connection_holds_its_state_once() {
        let (_tx, stop) = watch::channel(false);
        let conn = Box::pin(big_conn());
        let driven = drive(conn, stop, ignore_shutdown);
        // The driver holds a pointer to the connection, not a copy of it: a
        // second copy would cost every idle connection its full size again.
        assert!(
            std::mem::size_of_val(&driven) < 512,
            "drive future is {} bytes",
            std::mem::size_of_val(&driven)
        );
    }

    #[tokio::test]
    async fn a_driven_connection_runs_to_its_end() {
        let (_tx, stop) = watch::channel(false);
        drive(Box::pin(big_conn()), stop, ignore_shutdown).await;
    }
}
