//! Reconnection: read and headers timeouts, `retry:`, backoff, the retry
//! limit, `close` and `restart`. On a paused clock where they would
//! otherwise wait.

use std::time::Duration;

use sse_client::Error;
use sse_client::sse::{Event, EventSource, ReconnectOptions};

use super::{expect_event, expect_fatal, expect_open, expect_reconnecting, fast, source};
use crate::support::{Script, ScriptServer, within};

#[tokio::test(start_paused = true)]
async fn a_silent_stream_times_out_and_reconnects() {
    // LD reconnection 6 (read-timeout).
    let mut server = ScriptServer::start(
        vec![Script::sse(&[b"data: Hello\n\n"]).hang()],
        Script::sse(&[b"data: again\n\n"]),
    )
    .await;
    let mut source = EventSource::get(&server.url("/"))
        .unwrap()
        .reconnect(fast())
        .read_timeout(Some(Duration::from_millis(200)))
        .build()
        .unwrap();

    expect_open(&mut source).await;
    assert_eq!(expect_event(&mut source).await.data(), "Hello");
    let (error, _) = expect_reconnecting(&mut source).await;
    expect_open(&mut source).await;

    assert!(matches!(*error, Error::ReadTimeout(_)), "{error:?}");
    server.body_dropped().await;
    assert_eq!(server.request().await.path(), "/");
    assert_eq!(server.request().await.path(), "/");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_times_out_and_is_retried() {
    let mut server = ScriptServer::start(
        vec![Script::stalled(), Script::sse(&[b"data: answered\n\n"])],
        Script::stalled(),
    )
    .await;
    let mut source = EventSource::get(&server.url("/"))
        .unwrap()
        .reconnect(fast().max_retries(Some(1)))
        .headers_timeout(Some(Duration::from_millis(100)))
        .build()
        .unwrap();

    let (error, _) = expect_reconnecting(&mut source).await;
    expect_open(&mut source).await;
    let event = expect_event(&mut source).await;

    assert!(
        matches!(*error, Error::HeadersTimeout(limit) if limit == Duration::from_millis(100)),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(event.data(), "answered");
    // Then the body ends, and the server stalls for good: the retry limit
    // ends the stream with the timeout.
    let (ended, _) = expect_reconnecting(&mut source).await;
    assert!(matches!(*ended, Error::StreamEnded), "{ended:?}");
    expect_reconnecting(&mut source).await;
    let err = expect_fatal(&mut source).await;
    let Error::RetriesExhausted { last, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(matches!(**last, Error::HeadersTimeout(_)), "{err:?}");
    assert_eq!(server.pending_requests().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_headers_timeout_does_not_limit_an_open_stream() {
    let mut server = ScriptServer::start(
        vec![Script::sse(&[b"data: first\n\n"]).hang()],
        Script::stalled(),
    )
    .await;
    let mut source = EventSource::get(&server.url("/"))
        .unwrap()
        .reconnect(fast())
        .headers_timeout(Some(Duration::from_millis(50)))
        .read_timeout(None)
        .build()
        .unwrap();
    expect_open(&mut source).await;
    assert_eq!(expect_event(&mut source).await.data(), "first");

    // Many headers timeouts' worth of a quiet, open stream: nothing happens.
    let quiet = tokio::time::timeout(Duration::from_millis(400), source.next()).await;

    assert!(quiet.is_err(), "expected no item, got {quiet:?}");
    server.request().await;
    assert!(server.pending_requests().is_empty());
}

#[tokio::test(start_paused = true)]
async fn retry_sets_the_reconnection_time_and_bogus_values_are_ignored() {
    // WPT format-field-retry and format-field-retry-bogus.
    let server = ScriptServer::start(
        vec![
            Script::sse(&[b"retry:0150\ndata:x\n\n"]),
            Script::sse(&[b"retry:1000x\ndata:x\n\n"]),
        ],
        Script::status(204),
    )
    .await;
    let mut source = source(&server);

    expect_open(&mut source).await;
    expect_event(&mut source).await;
    // Measured on tokio's clock, paused here: the wait is exactly the
    // reconnection time, in virtual time.
    let started = tokio::time::Instant::now();
    let (_, first) = expect_reconnecting(&mut source).await;
    expect_open(&mut source).await;
    let waited = started.elapsed();
    expect_event(&mut source).await;
    let (_, second) = expect_reconnecting(&mut source).await;

    assert_eq!(first, Duration::from_millis(150), "leading zero, not octal");
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert_eq!(second, Duration::from_millis(150));
    assert_eq!(source.reconnection_time(), Duration::from_millis(150));
}

#[tokio::test]
async fn the_default_floor_stops_retry_zero_from_storming() {
    let server = ScriptServer::start(
        vec![Script::sse(&[b"retry: 0\ndata:x\n\n"])],
        Script::status(204),
    )
    .await;
    let mut source = EventSource::get(&server.url("/"))
        .unwrap()
        .reconnect(ReconnectOptions::default().jitter(false))
        .build()
        .unwrap();

    expect_open(&mut source).await;
    expect_event(&mut source).await;
    let (_, delay) = expect_reconnecting(&mut source).await;

    assert_eq!(delay, Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_per_failure_and_resets_only_after_events() {
    let empty = Script::sse(&[b": nothing but a comment\n"]);
    let server = ScriptServer::start(
        vec![
            Script::status(500),
            empty.clone(),
            empty,
            Script::sse(&[b"data: finally\n\n"]),
        ],
        Script::sse(&[b""]),
    )
    .await;
    let mut source = EventSource::get(&server.url("/"))
        .unwrap()
        .reconnect(
            fast()
                .initial_delay(Duration::from_millis(10))
                .retry_server_errors(true),
        )
        .build()
        .unwrap();
    let mut delays = Vec::new();

    // 500, then two connections that open but deliver nothing.
    delays.push(expect_reconnecting(&mut source).await.1);
    expect_open(&mut source).await;
    delays.push(expect_reconnecting(&mut source).await.1);
    expect_open(&mut source).await;
    delays.push(expect_reconnecting(&mut source).await.1);
    // One that delivers an event resets the count.
    expect_open(&mut source).await;
    expect_event(&mut source).await;
    delays.push(expect_reconnecting(&mut source).await.1);

    let ms = Duration::from_millis;
    assert_eq!(delays, [ms(10), ms(20), ms(40), ms(10)]);
}

#[tokio::test]
async fn the_retry_limit_ends_the_stream_with_the_last_error() {
    let mut server = ScriptServer::start(vec![], Script::sse(&[b""])).await;
    let mut source = EventSource::get(&server.url("/"))
        .unwrap()
        .reconnect(fast().max_retries(Some(2)))
        .build()
        .unwrap();

    for _ in 0..2 {
        expect_open(&mut source).await;
        expect_reconnecting(&mut source).await;
    }
    expect_open(&mut source).await;
    let err = expect_fatal(&mut source).await;

    assert!(
        matches!(&err, Error::RetriesExhausted { attempts: 3, last } if matches!(**last, Error::StreamEnded)),
        "{err:?}"
    );
    assert_eq!(server.pending_requests().len(), 3);
}

#[tokio::test]
async fn network_errors_are_retried() {
    // Bind then drop: nothing listens on the port.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut source = EventSource::get(&format!("http://{addr}/"))
        .unwrap()
        .reconnect(fast().max_retries(Some(1)))
        .build()
        .unwrap();

    let (error, _) = expect_reconnecting(&mut source).await;
    let err = expect_fatal(&mut source).await;

    assert!(matches!(*error, Error::Transport(_)), "{error:?}");
    assert!(
        matches!(err, Error::RetriesExhausted { attempts: 2, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn close_stops_everything_even_with_a_retry_pending() {
    // WPT eventsource-close.
    let mut server = ScriptServer::start(vec![], Script::sse(&[b"retry: 1\ndata: x\n\n"])).await;
    let mut source = source(&server);
    expect_open(&mut source).await;
    expect_event(&mut source).await;
    expect_reconnecting(&mut source).await;

    source.close();

    assert!(within(source.next()).await.is_none());
    server.request().await;
    assert!(server.pending_requests().is_empty());
}

#[tokio::test]
async fn restart_reconnects_at_once_with_the_last_event_id() {
    // LD reconnection 1 (restart).
    let mut server = ScriptServer::start(
        vec![Script::sse(&[b"id: 1\ndata: Hello\n\n"]).hang()],
        Script::sse(&[b"data: Thanks\n\n"]).hang(),
    )
    .await;
    let mut source = source(&server);
    expect_open(&mut source).await;
    expect_event(&mut source).await;

    source.restart();
    expect_open(&mut source).await;

    assert_eq!(
        expect_event(&mut source).await,
        Event::new("", "Thanks", "1")
    );
    server.body_dropped().await;
    server.request().await;
    assert_eq!(server.request().await.header("last-event-id"), Some("1"));
}
