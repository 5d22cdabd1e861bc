//! Connection limits, over raw sockets: a request head must arrive within
//! the header-read timeout, an idle keep-alive connection is closed after the
//! idle timeout, and connections over the cap get a 503 and are closed.

use std::time::{Duration, Instant};

use auth_server::Config;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::helpers::{config, eventually_async, read_response, read_until_closed, spawn_app};

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(200);

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: auth\r\n\r\n";

/// Slack for timers that fire a little early or late on a busy machine.
const SLACK: Duration = Duration::from_millis(20);

fn with_limits(header_read_timeout: Duration, idle_timeout: Duration) -> Config {
    Config {
        header_read_timeout,
        idle_timeout,
        ..config()
    }
}

#[tokio::test]
async fn slowloris_a_half_sent_request_head_is_closed_after_the_header_read_timeout() {
    // An idle timeout far beyond the test's patience: only the header-read
    // timeout can close the connection in time.
    let app = spawn_app(with_limits(HEADER_READ_TIMEOUT, Duration::from_secs(600))).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();

    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: auth\r\n")
        .await
        .unwrap();
    let received = read_until_closed(&mut stream).await;

    assert_eq!(received, b"", "closed without an answer");
    assert!(opened.elapsed() >= HEADER_READ_TIMEOUT - SLACK);
}

#[tokio::test]
async fn slowloris_a_later_request_head_gets_the_header_read_timeout_from_its_first_byte() {
    let app = spawn_app(with_limits(HEADER_READ_TIMEOUT, Duration::from_secs(600))).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    let first = read_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(first.ends_with("\r\n\r\nok\n"), "{first}");

    stream.write_all(b"GET /healthz HTT").await.unwrap();
    let started = Instant::now();
    let received = read_until_closed(&mut stream).await;

    assert_eq!(received, b"");
    assert!(started.elapsed() >= HEADER_READ_TIMEOUT - SLACK);
}

#[tokio::test]
async fn idle_hoarding_a_kept_alive_connection_is_closed_after_the_idle_timeout_not_sooner() {
    let idle_timeout = Duration::from_millis(800);
    let app = spawn_app(with_limits(HEADER_READ_TIMEOUT, idle_timeout)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    let response = read_response(&mut stream).await;
    let answered = Instant::now();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");

    let received = read_until_closed(&mut stream).await;

    assert_eq!(received, b"");
    // Kept well past the header-read timeout: idle is not a slow request.
    assert!(
        answered.elapsed() >= idle_timeout - SLACK,
        "closed after {:?}",
        answered.elapsed()
    );
}

#[tokio::test]
async fn idle_hoarding_a_connection_that_never_sends_is_closed_after_the_header_read_timeout() {
    let app = spawn_app(with_limits(HEADER_READ_TIMEOUT, Duration::from_secs(600))).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();

    let received = read_until_closed(&mut stream).await;

    assert_eq!(received, b"");
    assert!(opened.elapsed() >= HEADER_READ_TIMEOUT - SLACK);
}

#[tokio::test]
async fn socket_exhaustion_a_connection_over_the_cap_gets_a_503_and_healthz_answers_once_one_closes()
 {
    let app = spawn_app(Config {
        max_connections: 2,
        // Long enough that the slow sockets stay for the whole test.
        header_read_timeout: Duration::from_secs(600),
        ..config()
    })
    .await;
    // Accepted in order: these two take both places.
    let slow = TcpStream::connect(app.addr).await.unwrap();
    let _other_slow = TcpStream::connect(app.addr).await.unwrap();

    let mut refused = TcpStream::connect(app.addr).await.unwrap();
    let answer = String::from_utf8(read_until_closed(&mut refused).await).unwrap();

    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("HTTP/1.1 503 Service Unavailable"));
    let headers: Vec<&str> = lines.collect();
    for expected in [
        "content-type: application/json",
        "x-ably-errorcode: 50000",
        "connection: close",
        "retry-after: 1",
        "cache-control: no-store",
    ] {
        assert!(headers.contains(&expected), "{expected} in {headers:?}");
    }
    assert!(headers.contains(&format!("content-length: {}", body.len()).as_str()));
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        json!({"error": {
            "code": 50000,
            "statusCode": 503,
            "message": "the server is at its connection limit; retry later",
            "href": "https://help.ably.io/error/50000",
        }})
    );

    drop(slow);
    eventually_async("/healthz to answer again", || async {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: auth\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until_closed(&mut stream).await;
        answer.starts_with(b"HTTP/1.1 200 OK\r\n")
    })
    .await;
}
