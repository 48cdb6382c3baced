//! Pooled HTTP/1.1 connections to one site's upstream: one pool per HTTPS
//! worker, and one more for every other thread.
//!
//! A connection is opened by, and driven on, the thread that needed it, and
//! goes back to that thread's pool when its response body has been read to
//! the end; a body dropped half-read closes the connection instead, so the
//! next request never reads the rest of an old answer. A request sent on a
//! pooled connection the upstream had already closed (gunicorn keeps idle
//! connections 2 s) is sent again on another one, which is safe because
//! hyper hands back only a request it never started writing.
//!
//! Why not hyper-util's pooled client: it hashes a pool key, boxes a future
//! and spawns a task on every request to learn when the connection is free
//! again; here a worker's pool is a stack behind an uncontended lock and the
//! response body itself says when the connection is free.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use crate::body::RequestBody;
use crate::config::Site;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Sender = http1::SendRequest<RequestBody>;

/// Most idle connections one pool keeps; more are closed when they come back.
const MAX_IDLE: usize = 1024;

/// Why a request got no answer from the upstream.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened (TCP, TLS or the HTTP/1.1 handshake).
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// A connection was open, but the exchange failed.
    Exchange(hyper::Error),
}

/// The pools toward one site's upstream.
#[derive(Clone)]
pub struct UpstreamClient {
    inner: Arc<Inner>,
}

struct Inner {
    pools: Box<[Mutex<Vec<Idle>>]>,
    connector: Connector,
    /// `scheme://authority` of the upstream, what the connector dials.
    target: Uri,
    /// How long a connection may sit idle in a pool.
    idle: Duration,
    /// Zero point of the idle clocks.
    epoch: Instant,
}

/// A connection waiting in a pool.
struct Idle {
    sender: Sender,
    state: Arc<ConnState>,
}

/// What a connection's driver task and its pool share.
struct ConnState {
    /// Milliseconds since the client's epoch when the connection last went
    /// idle, plus one; zero while a request owns it.
    idle_since: AtomicU64,
}

impl UpstreamClient {
    /// Builds `workers + 1` pools with the site's connect and idle timeouts.
    pub fn new(site: &Site, workers: usize) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(site.timeouts.connect));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| format!("upstream TLS setup failed: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let target = Uri::builder()
            .scheme(site.upstream.scheme.clone())
            .authority(site.upstream.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| format!("upstream URL: {e}"))?;
        Ok(UpstreamClient {
            inner: Arc::new(Inner {
                pools: (0..=workers).map(|_| Mutex::new(Vec::new())).collect(),
                connector,
                target,
                idle: site.timeouts.pool_idle,
                epoch: Instant::now(),
            }),
        })
    }

    /// Sends a request (origin-form URI, `Host` set by the caller) on a
    /// pooled connection, or a new one, and returns the answer's head.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let pool = self.pool_index();
        loop {
            let (mut lease, reused) = match self.checkout(pool).await {
                Some(lease) => (lease, true),
                // Boxed: a new connection is the rare case, and its future
                // (the TLS client inside) would otherwise be room every
                // request's future carries and copies.
                None => (Box::pin(self.connect(pool)).await?, false),
            };
            match lease.sender.try_send_request(req).await {
                Ok(resp) => return Ok(attach(resp, lease)),
                Err(mut e) => match e.take_message() {
                    // Never written: the pooled connection had closed under us.
                    Some(unsent) if reused => {
                        tracing::debug!(error = %e.into_error(), "pooled upstream connection closed; sending again");
                        req = unsent;
                    }
                    _ => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// The calling thread's pool: its worker's, or the shared last one.
    fn pool_index(&self) -> usize {
        let last = self.inner.pools.len() - 1;
        crate::worker::current().map_or(last, |w| w.min(last))
    }

    /// The most recently used idle connection that is still open and ready.
    async fn checkout(&self, pool: usize) -> Option<Lease> {
        loop {
            let Idle { mut sender, state } = self.pop(pool)?;
            let stale = state
                .take_idle()
                .is_none_or(|since| self.inner.idle_left(since).is_zero());
            if stale || sender.is_closed() {
                continue;
            }
            // Ready once the driver has seen the last answer's end; an error
            // means the upstream closed it meanwhile.
            if sender.ready().await.is_ok() {
                return Some(Lease::new(sender, state, &self.inner, pool));
            }
        }
    }

    fn pop(&self, pool: usize) -> Option<Idle> {
        self.inner.stack(pool).pop()
    }

    /// Opens a connection and starts its driver on the current runtime.
    async fn connect(&self, pool: usize) -> Result<Lease, SendError> {
        let mut connector = self.inner.connector.clone();
        let io = connector
            .call(self.inner.target.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| SendError::Connect(Box::new(e)))?;
        let state = Arc::new(ConnState {
            idle_since: AtomicU64::new(0),
        });
        tokio::spawn(drive(conn, state.clone(), self.inner.clone()));
        Ok(Lease::new(sender, state, &self.inner, pool))
    }
}

impl Inner {
    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How much longer a connection idle since `since` may wait in a pool.
    fn idle_left(&self, since: u64) -> Duration {
        let idle_for = Duration::from_millis(self.millis().saturating_sub(since));
        self.idle.saturating_sub(idle_for)
    }

    /// One worker's stack of idle connections.
    fn stack(&self, pool: usize) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A poisoned lock only means a panic elsewhere; the stack is still sound.
        self.pools[pool].lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ConnState {
    /// Marks the connection idle from `now` (milliseconds since the epoch).
    fn mark_idle(&self, now: u64) {
        self.idle_since
            .store(now.saturating_add(1), Ordering::Release);
    }

    /// When the connection went idle, if it is.
    fn idle_since(&self) -> Option<u64> {
        self.idle_since.load(Ordering::Acquire).checked_sub(1)
    }

    /// Takes the connection out of idleness; when it went idle, if it was.
    fn take_idle(&self) -> Option<u64> {
        self.idle_since.swap(0, Ordering::AcqRel).checked_sub(1)
    }
}

/// Runs one upstream connection until it ends, the upstream closes it, or it
/// has sat idle in its pool for the site's `pool_idle`.
async fn drive(
    conn: http1::Connection<MaybeTls, RequestBody>,
    state: Arc<ConnState>,
    inner: Arc<Inner>,
) {
    let conn = conn.with_upgrades();
    tokio::pin!(conn);
    loop {
        let wait = state
            .idle_since()
            .map_or(inner.idle, |since| inner.idle_left(since));
        tokio::select! {
            done = &mut conn => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {
                if state.idle_since().is_some_and(|since| inner.idle_left(since).is_zero()) {
                    // Dropping the connection closes the socket; its sender
                    // in the pool reports closed and is skipped.
                    return;
                }
            }
        }
    }
}

type MaybeTls = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;

/// A connection owned by one request until its answer has been read.
struct Lease {
    sender: Sender,
    state: Arc<ConnState>,
    home: Arc<Inner>,
    pool: usize,
}

impl Lease {
    fn new(sender: Sender, state: Arc<ConnState>, home: &Arc<Inner>, pool: usize) -> Lease {
        Lease {
            sender,
            state,
            home: home.clone(),
            pool,
        }
    }

    /// Puts the connection back on its pool's stack.
    fn release(self) {
        let Lease {
            sender,
            state,
            home,
            pool,
        } = self;
        state.mark_idle(home.millis());
        let mut idle = home.stack(pool);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { sender, state });
        }
    }
}

/// Gives the response body the lease, or, when there is no body to read,
/// frees the connection now. A `101` answer hands the connection over to the
/// upgrade, so it never comes back.
fn attach(resp: Response<Incoming>, lease: Lease) -> Response<UpstreamBody> {
    let keep = match resp.status() {
        StatusCode::SWITCHING_PROTOCOLS => None,
        _ if resp.body().is_end_stream() => {
            lease.release();
            None
        }
        _ => Some(lease),
    };
    resp.map(|inner| UpstreamBody { inner, lease: keep })
}

/// An upstream response body that frees its connection for the next request
/// once read to the end.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            None => self.free(),
            // A failed body leaves the connection in an unknown state.
            Some(Err(_)) => self.lease = None,
            Some(Ok(_)) if self.inner.is_end_stream() => self.free(),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl UpstreamBody {
    fn free(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A reader that stops at the end without asking for more (hyper
        // does, when `is_end_stream` says so) still frees the connection.
        if self.inner.is_end_stream() {
            self.free();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Either, Full};
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// How the test upstream answers each request on a connection.
    #[derive(Clone, Copy)]
    enum Script {
        /// `200` with a 5-byte body, connection kept.
        Small,
        /// `200` with a 256 KiB body, connection kept.
        Large,
        /// `204`, connection kept.
        NoContent,
        /// `200` with a 5-byte body, then the socket is closed without notice.
        CloseAfter,
    }

    struct Upstream {
        addr: std::net::SocketAddr,
        accepted: Arc<AtomicUsize>,
        closed_by_peer: Arc<AtomicUsize>,
    }

    async fn upstream(script: Script) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed_by_peer = Arc::new(AtomicUsize::new(0));
        let (a, c) = (accepted.clone(), closed_by_peer.clone());
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(sock, script, c.clone()));
            }
        });
        Upstream {
            addr,
            accepted,
            closed_by_peer,
        }
    }

    async fn serve(mut sock: TcpStream, script: Script, closed: Arc<AtomicUsize>) {
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..end + 4);
                let answer = match script {
                    Script::Small | Script::CloseAfter => {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()
                    }
                    Script::Large => {
                        let mut v = b"HTTP/1.1 200 OK\r\ncontent-length: 262144\r\n\r\n".to_vec();
                        v.resize(v.len() + 262_144, b'x');
                        v
                    }
                    Script::NoContent => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                };
                if sock.write_all(&answer).await.is_err() {
                    return;
                }
                if let Script::CloseAfter = script {
                    return;
                }
            }
        }
    }

    fn client(addr: std::net::SocketAddr, pool_idle: &str) -> UpstreamClient {
        let text = format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n[[site]]\nname = \"erp\"\nhosts = [\"erp.test\"]\n\
app = \"erpnext\"\nupstream = \"http://{addr}\"\ntls = \"self-signed\"\nallow = \"off\"\n\
timeouts = {{ pool_idle = \"{pool_idle}\" }}\n"
        );
        let config = crate::config::parse(std::path::Path::new("t.toml"), &text).unwrap();
        UpstreamClient::new(&config.sites[0], 2).unwrap()
    }

    fn get() -> Request<RequestBody> {
        Request::builder()
            .uri("/x")
            .header(http::header::HOST, "erp.test")
            .body(Either::Right(Full::new(Bytes::new())))
            .unwrap()
    }

    async fn read_all(resp: Response<UpstreamBody>) -> usize {
        resp.into_body().collect().await.unwrap().to_bytes().len()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_was_read() {
        let up = upstream(Script::Small).await;
        let client = client(up.addr, "90s");
        for _ in 0..5 {
            let resp = client.send(get()).await.unwrap();
            assert_eq!(read_all(resp).await, 5);
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn answers_without_a_body_free_the_connection_at_once() {
        let up = upstream(Script::NoContent).await;
        let client = client(up.addr, "90s");
        for _ in 0..3 {
            let resp = client.send(get()).await.unwrap();
            assert_eq!(resp.status(), StatusCode::NO_CONTENT);
            drop(resp);
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_half_read_answer_closes_its_connection() {
        let up = upstream(Script::Large).await;
        let client = client(up.addr, "90s");
        let resp = client.send(get()).await.unwrap();
        let mut body = resp.into_body();
        body.frame().await.unwrap().unwrap();
        drop(body);
        let resp = client.send(get()).await.unwrap();
        assert_eq!(read_all(resp).await, 262_144);
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
        wait_for(|| up.closed_by_peer.load(Ordering::SeqCst) == 1).await;
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_used_again() {
        let up = upstream(Script::CloseAfter).await;
        let client = client(up.addr, "90s");
        for _ in 0..3 {
            let resp = client.send(get()).await.unwrap();
            assert_eq!(read_all(resp).await, 5);
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_pool_idle() {
        let up = upstream(Script::Small).await;
        let client = client(up.addr, "200ms");
        let resp = client.send(get()).await.unwrap();
        assert_eq!(read_all(resp).await, 5);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(up.closed_by_peer.load(Ordering::SeqCst), 0);
        wait_for(|| up.closed_by_peer.load(Ordering::SeqCst) == 1).await;
        let resp = client.send(get()).await.unwrap();
        assert_eq!(read_all(resp).await, 5);
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_upstream_nobody_listens_on_is_a_connect_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let client = client(port, "90s");
        assert!(matches!(
            client.send(get()).await,
            Err(SendError::Connect(_))
        ));
    }

    async fn wait_for(done: impl Fn() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached within 2 s");
    }
}
