//! `serve` over real sockets: upgrades keep working and are exempt from the
//! idle timeout; HTTP/2 with prior knowledge is served and idles out too;
//! shutdown finishes a request in flight.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serve::Limits;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use test_support::{read_until_closed, within};

const SLACK: Duration = Duration::from_millis(20);

const LIMITS: Limits = Limits {
    header_read_timeout: Duration::from_millis(100),
    idle_timeout: Duration::from_millis(300),
    max_connections: 100,
};

/// Upgrades to a byte echo (`Upgrade: echo`), as a WebSocket handler would
/// take over its connection.
async fn echo(mut request: Request) -> Response {
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        let mut buf = [0_u8; 64];
        while let Ok(n @ 1..) = io.read(&mut buf).await {
            if io.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "echo")
        .body(Body::empty())
        .unwrap()
}

/// Says it has started, then answers when released.
async fn slow(axum::Extension(gate): axum::Extension<Gate>) -> &'static str {
    gate.entered.notify_one();
    gate.release.notified().await;
    "done"
}

#[derive(Clone, Default)]
struct Gate {
    entered: std::sync::Arc<tokio::sync::Notify>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<()>,
}

async fn start(router: Router) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(serve::serve(listener, router, LIMITS, async {
        stopped.await.ok();
    }));
    Server {
        addr,
        stop: Some(stop),
        served,
    }
}

fn router() -> Router {
    Router::new()
        .route("/echo", get(echo))
        .route("/", get(|| async { "hello" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
}

#[tokio::test]
async fn an_upgraded_connection_is_exempt_from_the_idle_timeout() {
    let server = start(router()).await;
    let mut upgraded = TcpStream::connect(server.addr).await.unwrap();
    upgraded
        .write_all(b"GET /echo HTTP/1.1\r\nHost: s\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    within(async {
        let mut byte = [0_u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            upgraded.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
    })
    .await;
    assert!(head.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));

    // A plain connection opened now idles out: the idle timeout has passed.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: s\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    let response = read_until_closed(&mut plain).await;
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(answered.elapsed() >= LIMITS.idle_timeout - SLACK);

    upgraded.write_all(b"ping").await.unwrap();
    let mut echoed = [0_u8; 4];
    within(upgraded.read_exact(&mut echoed)).await.unwrap();
    assert_eq!(&echoed, b"ping");
}

#[tokio::test]
async fn requests_carry_the_peer_address() {
    let server = start(router()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap();

    stream
        .write_all(b"GET /peer HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let response = String::from_utf8(read_until_closed(&mut stream).await).unwrap();

    assert!(
        response.ends_with(&format!("\r\n\r\n{local}")),
        "{response}"
    );
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_and_idles_out() {
    let server = start(router()).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);

    let request = hyper::Request::get(format!("http://{}/", server.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = within(sender.send_request(request)).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let body = within(response.into_body().collect()).await.unwrap();
    assert_eq!(body.to_bytes(), "hello");
    let answered = Instant::now();

    // The response ended on the stream's own task: the watchdog must still
    // notice that the connection went idle, and close it.
    within(connection).await.unwrap().ok();
    assert!(answered.elapsed() >= LIMITS.idle_timeout - SLACK);
}

#[tokio::test]
async fn shutdown_finishes_a_request_in_flight() {
    let gate = Gate::default();
    let router = Router::new()
        .route("/slow", get(slow))
        .layer(axum::Extension(gate.clone()));
    let mut server = start(router).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: s\r\n\r\n")
        .await
        .unwrap();
    within(gate.entered.notified()).await;

    server.stop.take().unwrap().send(()).unwrap();
    // The listener closes while the request is still in flight.
    within(async {
        while TcpStream::connect(server.addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(!server.served.is_finished(), "serve waits for the request");
    gate.release.notify_one();
    let response = String::from_utf8(read_until_closed(&mut stream).await).unwrap();

    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\ndone"), "{response}");
    within(server.served).await.unwrap();
}
