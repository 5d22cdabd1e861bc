//! Connection limits, over raw sockets: the mock closes a connection that
//! has not sent a request head in time or sits idle, never an open stream,
//! and answers connections over its cap with a 503.

use std::time::{Duration, Instant};

use mock_ably::MockAbly;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::helpers::{KEY, patience, with, within};
use test_support::{read_response, read_until_closed};

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(200);

/// Slack for timers that fire a little early on a busy machine.
const SLACK: Duration = Duration::from_millis(20);

/// Sends `GET /time` on `stream` and reads the whole response.
async fn get_time(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /time HTTP/1.1\r\nHost: mock\r\n\r\n")
        .await
        .unwrap();
    read_response(stream).await
}

#[tokio::test]
async fn slowloris_a_half_sent_request_head_to_the_mock_is_closed_after_the_header_read_timeout() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .idle_timeout(Duration::from_secs(600)),
    )
    .await;
    let mut stream = TcpStream::connect(app.mock.addr()).await.unwrap();
    let opened = Instant::now();

    stream
        .write_all(b"GET /time HTTP/1.1\r\nHost: mock\r\n")
        .await
        .unwrap();
    let received = read_until_closed(&mut stream).await;

    assert_eq!(received, b"", "closed without an answer");
    assert!(opened.elapsed() >= HEADER_READ_TIMEOUT - SLACK);
}

#[tokio::test]
async fn slow_body_a_request_whose_body_trickles_in_gets_503_with_50003_but_streams_are_not_cut() {
    let request_timeout = Duration::from_millis(300);
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .request_timeout(request_timeout)
            .header_read_timeout(Duration::from_secs(600)),
    )
    .await;
    assert!(mock_ably::DEFAULT_KEEPALIVE > patience());
    let mut frames = app.sse("channels=quiet").await;
    let mut stream = TcpStream::connect(app.mock.addr()).await.unwrap();
    let sent = Instant::now();

    // The head promises 100 bytes of body; 8 arrive, then nothing.
    stream
        .write_all(
            b"POST /channels/slow/messages HTTP/1.1\r\nHost: mock\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\":",
        )
        .await
        .unwrap();
    let response = read_response(&mut stream).await;

    assert!(sent.elapsed() >= request_timeout - SLACK);
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert!(
        response.contains("\r\ncontent-type: application/json\r\n")
            && response.contains("\r\nx-ably-errorcode: 50003\r\n"),
        "{response}"
    );
    let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], 50003);
    assert_eq!(body["error"]["statusCode"], 503);
    assert_eq!(
        body["error"]["message"],
        "Request not completed within 300 ms"
    );
    // The stream, open for longer than the request timeout, still delivers.
    app.mock.publish_data("quiet", "", "still here");
    assert_eq!(frames.message().await["data"], "still here");
}

#[tokio::test]
async fn idle_hoarding_the_mock_closes_an_idle_connection_but_not_a_silent_open_stream() {
    let idle_timeout = Duration::from_millis(500);
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .idle_timeout(idle_timeout),
    )
    .await;
    // Keepalives far apart: the stream sends nothing during the test.
    assert!(mock_ably::DEFAULT_KEEPALIVE > patience());
    let mut frames = app.sse("channels=quiet").await;
    let mut idle = TcpStream::connect(app.mock.addr()).await.unwrap();
    let response = get_time(&mut idle).await;
    let answered = Instant::now();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");

    let received = read_until_closed(&mut idle).await;
    assert_eq!(received, b"");
    assert!(answered.elapsed() >= idle_timeout - SLACK);
    // The stream, silent for longer than that, is still open.
    app.mock.publish_data("quiet", "", "still here");

    assert_eq!(frames.message().await["data"], "still here");
}

#[tokio::test]
async fn socket_exhaustion_a_connection_over_the_mocks_cap_gets_a_503_and_the_mock_recovers() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .max_connections(1)
            .header_read_timeout(Duration::from_secs(600)),
    )
    .await;
    let slow = TcpStream::connect(app.mock.addr()).await.unwrap();

    let mut refused = TcpStream::connect(app.mock.addr()).await.unwrap();
    let answer = String::from_utf8(read_until_closed(&mut refused).await).unwrap();

    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete response");
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    let headers: Vec<&str> = head.lines().skip(1).collect();
    assert!(headers.contains(&"connection: close"), "{head}");
    assert!(headers.contains(&"x-ably-errorcode: 50000"), "{head}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"]["code"], json!(50000));
    assert_eq!(body["error"]["statusCode"], json!(503));

    drop(slow);
    // Polls until the mock has noticed the close and freed the place.
    within(async {
        loop {
            let mut stream = TcpStream::connect(app.mock.addr()).await.unwrap();
            stream
                .write_all(b"GET /time HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n")
                .await
                .ok();
            if read_until_closed(&mut stream)
                .await
                .starts_with(b"HTTP/1.1 200 OK\r\n")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
