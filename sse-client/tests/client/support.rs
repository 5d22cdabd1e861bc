//! A scripted SSE server on 127.0.0.1:0: each request gets the next scripted
//! response, and every request is recorded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

/// The waits every suite shares.
pub(crate) use test_support::within;

/// One scripted response.
#[derive(Clone, Debug)]
pub(crate) struct Script {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) chunks: Vec<Bytes>,
    /// Keep the body open after the chunks instead of ending it.
    pub(crate) hang: bool,
    /// Read the request and never answer it: no status, no headers.
    pub(crate) stall: bool,
}

impl Script {
    /// 200, `text/event-stream`, these chunks, then the body ends.
    pub(crate) fn sse(chunks: &[&[u8]]) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type", "text/event-stream".to_owned())],
            chunks: chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
            hang: false,
            stall: false,
        }
    }

    /// A response with `status` and no body.
    pub(crate) fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            chunks: Vec::new(),
            hang: false,
            stall: false,
        }
    }

    /// A server that took the request and never answers it.
    pub(crate) fn stalled() -> Self {
        Self {
            stall: true,
            ..Self::status(200)
        }
    }

    /// Keeps the body open after the chunks.
    pub(crate) fn hang(mut self) -> Self {
        self.hang = true;
        self
    }

    /// Replaces the body with one chunk.
    pub(crate) fn body(mut self, body: &str) -> Self {
        self.chunks = vec![Bytes::copy_from_slice(body.as_bytes())];
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) uri: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub(crate) fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(HeaderValue::as_bytes)
    }

    pub(crate) fn query(&self, name: &str) -> Option<String> {
        let url = url::Url::parse(&format!("http://x{}", self.uri)).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub(crate) fn path(&self) -> &str {
        self.uri.split('?').next().unwrap()
    }
}

#[derive(Clone)]
struct Shared {
    scripts: Arc<Mutex<VecDeque<Script>>>,
    /// Used when the queue is empty.
    fallback: Script,
    requests: mpsc::UnboundedSender<Recorded>,
    dropped: mpsc::UnboundedSender<()>,
}

/// The server handle. Dropping it stops the server.
pub(crate) struct ScriptServer {
    pub(crate) addr: SocketAddr,
    shared: Shared,
    requests: mpsc::UnboundedReceiver<Recorded>,
    dropped: mpsc::UnboundedReceiver<()>,
    _shutdown: oneshot::Sender<()>,
}

impl ScriptServer {
    /// Serves `scripts` in order, then `fallback` for every later request.
    pub(crate) async fn start(scripts: Vec<Script>, fallback: Script) -> Self {
        Self::start_with(scripts, fallback, Router::new()).await
    }

    /// Like [`ScriptServer::start`], with extra routes that take precedence.
    pub(crate) async fn start_with(scripts: Vec<Script>, fallback: Script, routes: Router) -> Self {
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let (dropped_tx, dropped) = mpsc::unbounded_channel();
        let shared = Shared {
            scripts: Arc::new(Mutex::new(scripts.into())),
            fallback,
            requests: requests_tx,
            dropped: dropped_tx,
        };
        let state = shared.clone();
        let app = routes.fallback(move |request: Request| handle(state.clone(), request));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            shared,
            requests,
            dropped,
            _shutdown: shutdown,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Queues more scripted responses.
    pub(crate) fn push(&self, script: Script) {
        self.shared.scripts.lock().unwrap().push_back(script);
    }

    /// The next recorded request.
    pub(crate) async fn request(&mut self) -> Recorded {
        within(self.requests.recv()).await.expect("server stopped")
    }

    /// The requests recorded so far and not yet taken.
    pub(crate) fn pending_requests(&mut self) -> Vec<Recorded> {
        std::iter::from_fn(|| self.requests.try_recv().ok()).collect()
    }

    /// Waits until a hanging body has been dropped by the client.
    pub(crate) async fn body_dropped(&mut self) {
        within(self.dropped.recv()).await.expect("server stopped");
    }
}

/// Sends on drop: tells the test that the client let go of the body.
struct DropSignal(mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

async fn handle(shared: Shared, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let _ = shared.requests.send(Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
    });
    let script = shared
        .scripts
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| shared.fallback.clone());
    if script.stall {
        std::future::pending::<()>().await;
    }
    respond(script, shared.dropped.clone())
}

/// Renders a script as a response.
pub(crate) fn respond(script: Script, dropped: mpsc::UnboundedSender<()>) -> Response {
    let status = StatusCode::from_u16(script.status).unwrap();
    let chunks = futures_util::stream::iter(
        script
            .chunks
            .into_iter()
            .map(Ok::<_, std::convert::Infallible>),
    );
    let body = if script.hang {
        let guard = DropSignal(dropped);
        Body::from_stream(chunks.chain(futures_util::stream::pending().map(move |()| {
            let _ = &guard;
            Ok(Bytes::new())
        })))
    } else {
        Body::from_stream(chunks)
    };
    let mut response = (status, body).into_response();
    for (name, value) in script.headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).unwrap());
    }
    if !response.headers().contains_key(header::CONTENT_TYPE) && script.status == 200 {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    response
}
