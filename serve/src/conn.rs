//! What one connection's watchdog watches, and the three wrappers that keep
//! it up to date without a lock or a per-request allocation:
//!
//! - [`WatchedIo`] notes the first byte received while the connection is
//!   idle (a request head has begun);
//! - [`ConnService`] counts a request in flight from the moment hyper hands
//!   it over, and adds the peer's address to it;
//! - [`GuardedBody`] holds that count until the response body has been sent
//!   or dropped.
//!
//! Reads and service calls happen while hyper's connection future is being
//! polled, on the connection's own task, and the watchdog looks at the state
//! right after each such poll; so they need no wake-up. A response body can
//! end on another task (HTTP/2 runs each stream on its own), and then its
//! guard wakes the connection's task.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tower::Service;
use tower::util::Oneshot;

/// What a connection is doing, as its watchdog sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// At least one request is in flight (its response not yet fully sent).
    Busy,
    /// Nothing in flight, and bytes have arrived since the last response
    /// ended (or the connection is new): a request head is on its way. The
    /// number tells one such stretch from the next.
    Reading(usize),
    /// Nothing in flight and nothing received since the last response ended.
    Idle(usize),
}

/// One connection's state, shared by its wrappers and its watchdog.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// Requests whose response has not been fully sent or dropped yet.
    in_flight: AtomicUsize,
    /// Bytes have arrived since the last response ended. A new connection
    /// starts `true`: its first request's deadline runs from the accept.
    reading: AtomicBool,
    /// Bumped on each change of `reading`, so the watchdog sees every new
    /// stretch even if it missed the states in between.
    epoch: AtomicUsize,
    /// The connection speaks HTTP/2, where bytes arrive between requests
    /// (window updates, pings, settings) without any request starting: once
    /// known, arrivals are not noted, and only the idle timeout applies
    /// between requests.
    http2: AtomicBool,
    /// The watchdog's task, to wake when a response ends elsewhere.
    waker: AtomicWaker,
    /// The id of the task that serves the connection (and runs the watchdog).
    task: OnceLock<tokio::task::Id>,
}

impl ConnState {
    pub(crate) fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            reading: AtomicBool::new(true),
            epoch: AtomicUsize::new(0),
            http2: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            task: OnceLock::new(),
        }
    }

    /// The connection's phase now.
    pub(crate) fn phase(&self) -> Phase {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Phase::Busy;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        if self.reading.load(Ordering::Acquire) {
            Phase::Reading(epoch)
        } else {
            Phase::Idle(epoch)
        }
    }

    /// Called by the watchdog on its connection's task: the task to leave
    /// alone and the waker to use from any other.
    pub(crate) fn register(&self, context: &Context<'_>) {
        if self.task.get().is_none()
            && let Some(id) = tokio::task::try_id()
        {
            let _ = self.task.set(id);
        }
        self.waker.register(context.waker());
    }

    /// Bytes arrived.
    fn note_read(&self) {
        if !self.reading.load(Ordering::Relaxed) && !self.http2.load(Ordering::Relaxed) {
            self.reading.store(true, Ordering::Release);
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The accepted socket, noting arrivals in the connection's state. It also
/// holds the connection's place under the cap, so an upgraded connection
/// (which outlives hyper's connection future) keeps counting until closed.
#[derive(Debug)]
pub(crate) struct WatchedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    _permit: OwnedSemaphorePermit,
}

impl WatchedIo {
    pub(crate) fn new(
        inner: TcpStream,
        state: Arc<ConnState>,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            inner,
            state,
            _permit: permit,
        }
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.note_read();
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request counted in flight until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

impl InFlight {
    fn enter(state: &Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(state))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &*self.0;
        if state.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Idle from now on, until the next byte arrives.
            state.reading.store(false, Ordering::Release);
            state.epoch.fetch_add(1, Ordering::AcqRel);
            // On the connection's own task the watchdog looks right after
            // this poll; elsewhere (HTTP/2 streams) it must be woken.
            if tokio::task::try_id() != state.task.get().copied() {
                state.waker.wake();
            }
        }
    }
}

/// The application service as hyper calls it, for one connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnService<S> {
    inner: S,
    peer: SocketAddr,
    state: Arc<ConnState>,
}

impl<S> ConnService<S> {
    pub(crate) fn new(inner: S, peer: SocketAddr, state: Arc<ConnState>) -> Self {
        Self { inner, peer, state }
    }
}

impl<S> hyper::service::Service<hyper::Request<Incoming>> for ConnService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = hyper::Response<GuardedBody>;
    type Error = Infallible;
    type Future = ResponseFuture<S>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let guard = InFlight::enter(&self.state);
        if request.version() == hyper::Version::HTTP_2 {
            self.state.http2.store(true, Ordering::Relaxed);
        }
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        ResponseFuture {
            inner: Oneshot::new(self.inner.clone(), request),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    /// The application's response future, whose response body takes over
    /// the request's [`InFlight`] guard.
    pub(crate) struct ResponseFuture<S>
    where
        S: Service<Request>,
    {
        #[pin]
        inner: Oneshot<S, Request>,
        guard: Option<InFlight>,
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Output = Result<hyper::Response<GuardedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready(result) = this.inner.poll(cx) else {
            return Poll::Pending;
        };
        let guard = this.guard.take();
        Poll::Ready(result.map(|response| {
            response.map(|body| GuardedBody {
                inner: body,
                _guard: guard,
            })
        }))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until it has been
    /// sent or dropped.
    pub(crate) struct GuardedBody {
        #[pin]
        inner: Body,
        _guard: Option<InFlight>,
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
