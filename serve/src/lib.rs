#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - `conn`: per-connection state shared by the I/O wrapper, the service
//!   wrapper and the response-body guard, all lock-free.
//! - `watchdog`: the per-connection timer that enforces the two timeouts.
//! - `refuse`: the answer over the cap.
//! - `rlimit`: [`raise_open_files_limit`].

mod conn;
mod refuse;
mod rlimit;
mod watchdog;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::Service;

pub use rlimit::{open_files_limit, raise_open_files_limit};

/// How long a client may take to send a complete request head, unless
/// [`Limits::header_read_timeout`] says otherwise.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a keep-alive connection may sit idle, unless
/// [`Limits::idle_timeout`] says otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many connections are served at once, unless
/// [`Limits::max_connections`] says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// File descriptors kept out of the connection cap for everything else the
/// process opens (the listener, outgoing HTTP clients, logs, the runtime's
/// own) and for refusing connections over the cap.
pub const RESERVED_FILES: u64 = 64;

/// The connection limits [`serve`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a connection may take to send a complete request head: from
    /// the accept for its first request, from the first byte of each later
    /// one. Then it is closed without an answer.
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight and nothing received
    /// since its last response may stay open.
    pub idle_timeout: Duration,
    /// The most connections served at once; over it, a connection gets a 503
    /// and is closed (see the crate docs).
    pub max_connections: usize,
}

impl Default for Limits {
    /// [`DEFAULT_HEADER_READ_TIMEOUT`], [`DEFAULT_IDLE_TIMEOUT`] and
    /// [`DEFAULT_MAX_CONNECTIONS`].
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `service` on `listener` within `limits` until `shutdown`
/// completes; then stops accepting, lets every connection finish the
/// requests it has in flight (an idle one closes at once), and returns when
/// all have.
///
/// HTTP/1.1 and HTTP/2 with prior knowledge are served, as `axum::serve`
/// does, with upgrades (WebSocket) enabled. Each request carries the peer's
/// address as [`axum::extract::ConnectInfo<SocketAddr>`]. Every accepted
/// socket gets `TCP_NODELAY`, so that small frames (SSE events) are not held
/// back by Nagle's algorithm.
///
/// The cap is [`Limits::max_connections`], lowered with a warning to the
/// open-files limit less [`RESERVED_FILES`] when that is smaller: past it,
/// `accept` itself would fail and nothing, not even `/healthz`, could be
/// answered. An `accept` error (such as running out of descriptors anyway)
/// is logged and retried after a second, never fatal.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let cap = effective_cap(limits.max_connections, open_files_limit());
    let connections = Arc::new(Semaphore::new(cap));
    let refuser = refuse::Refuser::new();
    let graceful = GracefulShutdown::new();
    // One warning per stretch of time spent at the cap, not one per refusal.
    let at_cap = AtomicBool::new(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                tracing::error!(error = %err, "cannot accept a connection; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            if !at_cap.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_connections = cap,
                    "at the connection cap: refusing new connections with 503"
                );
            }
            refuser.refuse(stream);
            continue;
        };
        at_cap.store(false, Ordering::Relaxed);
        serve_connection(
            stream,
            peer,
            service.clone(),
            limits,
            permit,
            graceful.watcher(),
        );
    }
    drop(listener);
    tracing::debug!(
        connections = graceful.count(),
        "stopped accepting; finishing requests in flight"
    );
    graceful.shutdown().await;
}

/// Spawns the task serving one accepted connection.
fn serve_connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    limits: Limits,
    permit: tokio::sync::OwnedSemaphorePermit,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY");
    }
    let state = Arc::new(conn::ConnState::new());
    let io = TokioIo::new(conn::WatchedIo::new(stream, Arc::clone(&state), permit));
    let service = conn::ConnService::new(service, peer, Arc::clone(&state));
    tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // As axum::serve: the CONNECT protocol carries WebSockets over HTTP/2.
        builder.http2().enable_connect_protocol();
        let connection = watcher.watch(builder.serve_connection_with_upgrades(io, service));
        match watchdog::watch(connection, &state, limits).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::trace!(%peer, error = %err, "connection ended with an error"),
            Err(expired) => tracing::debug!(%peer, "closing the connection: {expired}"),
        }
    });
}

/// The number of connections served at once: `wanted`, or fewer when the
/// open-files limit (`files`, `None` when unknown or unlimited) would run out
/// first.
fn effective_cap(wanted: usize, files: Option<u64>) -> usize {
    let wanted = wanted.clamp(1, Semaphore::MAX_PERMITS);
    let Some(files) = files else {
        return wanted;
    };
    let room = usize::try_from(files.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX);
    if room < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_files_limit = files,
            cap = room,
            "the open-files limit leaves room for fewer connections than the cap; \
             capping at {room} (raise the hard limit, e.g. LimitNOFILE= or ulimit -Hn)"
        );
        room
    } else {
        wanted
    }
}

/// Errors that concern one connection only (the peer gave up before the
/// accept completed): skip it and accept the next.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_reserved_files() {
        assert_eq!(effective_cap(10_000, None), 10_000);
        assert_eq!(effective_cap(10_000, Some(1_048_576)), 10_000);
        assert_eq!(effective_cap(10_000, Some(200)), 136);
        assert_eq!(effective_cap(10_000, Some(10)), 1);
        assert_eq!(effective_cap(0, None), 1);
    }
}
