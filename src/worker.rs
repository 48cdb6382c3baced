//! HTTPS workers: one OS thread per worker, each running a single-threaded
//! tokio runtime over its own `SO_REUSEPORT` listener.
//!
//! The kernel spreads new connections over the workers' listeners, and from
//! then on a connection's TLS, its judging and its upstream exchange stay on
//! one thread: every wake-up between the client connection, the request and
//! the pooled upstream connection is a push onto a local run queue, never a
//! cross-thread notification. Work-stealing runtimes pay a futex wake for
//! those, which on a small machine shared with the ERP costs more than the
//! proxying itself (see `bench/load`).

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;

thread_local! {
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The worker the calling thread belongs to, `None` off the HTTPS workers
/// (the control runtime, blocking-pool threads, CLI verbs, tests).
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// Binds `n` listening sockets to `addr` that share its port through
/// `SO_REUSEPORT`. Port 0 is resolved first, so all `n` share whatever port
/// the kernel chose.
///
/// A port something already listens on is refused ("address in use"), even
/// when that something is a reuse-port group of the same user, such as a
/// second erpguard started by mistake, which `SO_REUSEPORT` alone would let
/// share the connections. Linux lets only sockets of the same user join a
/// group, so another account cannot take connections either way.
pub fn bind_reuseport(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    // A plain bind fails on a port any socket listens on, reuse-port or not;
    // it is closed again at once (no connection can have been accepted).
    let probe = std::net::TcpListener::bind(addr)?;
    let addr = probe.local_addr()?;
    drop(probe);
    (0..n.max(1)).map(|_| bind_one(addr)).collect()
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A worker ready to start: its runtime, built (and its listener registered)
/// before any thread starts, so a failure is a start-up error.
pub struct Worker {
    id: usize,
    runtime: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
}

impl Worker {
    /// Builds the worker's runtime and registers `listener` with it.
    pub fn new(id: usize, listener: std::net::TcpListener) -> io::Result<Worker> {
        // The name is for the runtime's blocking-pool threads (store calls);
        // the worker thread itself is named in `start`.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("erpguard-b{id}"))
            .build()?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        Ok(Worker {
            id,
            runtime,
            listener,
        })
    }

    /// Runs `serve(listener)` on a new thread until it returns; the future
    /// and everything it spawns run on this worker's thread.
    pub fn start<F, Fut>(self, serve: F) -> io::Result<std::thread::JoinHandle<()>>
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let Worker {
            id,
            runtime,
            listener,
        } = self;
        std::thread::Builder::new()
            .name(format!("erpguard-w{id}"))
            .spawn(move || {
                CURRENT.with(|c| c.set(Some(id)));
                runtime.block_on(serve(listener));
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_every_socket() {
        let all = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = all.iter().map(|l| l.local_addr().unwrap().port()).collect();
        assert_eq!(ports.len(), 3);
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|p| *p == ports[0]), "{ports:?}");
    }

    #[test]
    fn a_port_held_without_reuseport_is_refused() {
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = plain.local_addr().unwrap();
        assert!(bind_reuseport(taken, 2).is_err());
    }

    #[test]
    fn a_port_held_by_another_reuseport_group_is_refused() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let taken = first[0].local_addr().unwrap();
        let err = bind_reuseport(taken, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(first);
        assert!(bind_reuseport(taken, 2).is_ok(), "free again once closed");
    }

    #[test]
    fn the_worker_id_is_set_on_its_thread_only() {
        let l = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1)
            .unwrap()
            .pop()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = Worker::new(7, l)
            .unwrap()
            .start(move |_listener| async move {
                let on_blocking = tokio::task::spawn_blocking(current).await.unwrap();
                tx.send((current(), on_blocking)).unwrap();
            })
            .unwrap();
        handle.join().unwrap();
        assert_eq!(rx.recv().unwrap(), (Some(7), None));
        assert_eq!(current(), None);
    }
}
