//! The request and the last event ID: the default headers, `Last-Event-ID`
//! across reconnections, and the ids that must not be sent.

use std::time::Duration;

use sse_client::Error;
use sse_client::sse::{Event, EventSource};

use super::{expect_event, expect_fatal, expect_open, expect_reconnecting, source};
use crate::support::{Script, ScriptServer};

#[tokio::test]
async fn default_request_is_a_get_with_accept_and_no_cache_and_no_last_event_id() {
    let mut server = ScriptServer::start(vec![], Script::sse(&[b"data: x\n\n"])).await;
    let mut source = source(&server);

    expect_open(&mut source).await;
    expect_event(&mut source).await;
    expect_reconnecting(&mut source).await;
    expect_open(&mut source).await;

    // request-accept, request-cache-control (on two connections), LD HTTP 1.
    for _ in 0..2 {
        let request = server.request().await;
        assert_eq!(request.method, "GET");
        assert_eq!(request.header("accept"), Some("text/event-stream"));
        assert_eq!(request.header("cache-control"), Some("no-cache"));
        assert_eq!(request.header("last-event-id"), None);
    }
}

#[tokio::test]
async fn reconnects_with_last_event_id_after_disconnect() {
    // LD reconnection 2 and 3; eventsource-reconnect.
    let mut server = ScriptServer::start(
        vec![
            Script::sse(&[b"retry: 2\nid: abc\ndata: Hello\n\n", b"data: World\n\n"]),
            Script::sse(&[b"data: data\n\n"]),
        ],
        Script::status(204),
    )
    .await;
    let mut source = source(&server);

    expect_open(&mut source).await;
    assert_eq!(
        expect_event(&mut source).await,
        Event::new("", "Hello", "abc")
    );
    assert_eq!(
        expect_event(&mut source).await,
        Event::new("", "World", "abc")
    );
    let (error, delay) = expect_reconnecting(&mut source).await;
    expect_open(&mut source).await;
    assert_eq!(
        expect_event(&mut source).await,
        Event::new("", "data", "abc")
    );

    assert!(matches!(*error, Error::StreamEnded), "{error:?}");
    assert_eq!(delay, Duration::from_millis(2), "retry: is honoured");
    assert_eq!(server.request().await.header("last-event-id"), None);
    assert_eq!(server.request().await.header("last-event-id"), Some("abc"));
}

#[tokio::test]
async fn an_empty_id_means_no_last_event_id_header() {
    // LD reconnection 4.
    let mut server = ScriptServer::start(
        vec![Script::sse(&[
            b"id: abc\ndata: Hello\n\n",
            b"id: \ndata: World\n\n",
        ])],
        Script::status(204),
    )
    .await;
    let mut source = source(&server);

    expect_open(&mut source).await;
    expect_event(&mut source).await;
    expect_event(&mut source).await;
    expect_reconnecting(&mut source).await;
    expect_fatal(&mut source).await;

    server.request().await;
    assert_eq!(server.request().await.header("last-event-id"), None);
}

#[tokio::test]
async fn the_id_of_an_unfinished_event_is_not_sent() {
    // LD reconnection 7, WPT format-data-before-final-empty-line.
    let mut server = ScriptServer::start(
        vec![
            Script::sse(&[b"id: abc\ndata: Hello\n\nid: def\ndata: Goodbye"]),
            Script::sse(&[b"data: We meet again\n\n"]),
        ],
        Script::status(204),
    )
    .await;
    let mut source = source(&server);

    expect_open(&mut source).await;
    assert_eq!(expect_event(&mut source).await.id(), "abc");
    expect_reconnecting(&mut source).await;
    expect_open(&mut source).await;
    assert_eq!(expect_event(&mut source).await.id(), "abc");

    server.request().await;
    assert_eq!(server.request().await.header("last-event-id"), Some("abc"));
}

#[tokio::test]
async fn a_new_id_on_the_next_connection_replaces_the_old_one() {
    // LD reconnection 8.
    let mut server = ScriptServer::start(
        vec![
            Script::sse(&[b"id: abc\ndata: Hello\n\n"]),
            Script::sse(&[b"id: def\ndata: World\n\n"]),
        ],
        Script::status(204),
    )
    .await;
    let mut source = source(&server);

    expect_open(&mut source).await;
    expect_event(&mut source).await;
    expect_reconnecting(&mut source).await;
    expect_open(&mut source).await;

    assert_eq!(
        expect_event(&mut source).await,
        Event::new("", "World", "def")
    );
    server.request().await;
    assert_eq!(server.request().await.header("last-event-id"), Some("abc"));
}

#[tokio::test]
async fn the_id_persists_across_several_reconnects_as_raw_utf8() {
    // WPT format-field-id and format-field-id-2.
    let mut server = ScriptServer::start(
        vec![
            Script::sse(&["id: …\nretry: 1\ndata: hello\n\n".as_bytes()]),
            Script::sse(&["data: …\n\n".as_bytes()]),
            Script::sse(&[b"data: again\n\n"]),
        ],
        Script::status(204),
    )
    .await;
    let mut source = source(&server);

    for data in ["hello", "…", "again"] {
        expect_open(&mut source).await;
        assert_eq!(expect_event(&mut source).await, Event::new("", data, "…"));
        expect_reconnecting(&mut source).await;
    }
    expect_fatal(&mut source).await;

    assert_eq!(server.request().await.header("last-event-id"), None);
    for _ in 0..3 {
        let request = server.request().await;
        assert_eq!(request.header_bytes("last-event-id"), Some("…".as_bytes()));
    }
}

#[tokio::test]
async fn a_nul_id_is_ignored_and_no_header_is_sent() {
    // WPT format-field-id-null.
    let mut server = ScriptServer::start(
        vec![Script::sse(&[b"id: \0\0\nretry: 1\ndata: hello\n\n"])],
        Script::status(204),
    )
    .await;
    let mut source = source(&server);

    expect_open(&mut source).await;
    assert_eq!(expect_event(&mut source).await, Event::new("", "hello", ""));
    expect_reconnecting(&mut source).await;
    expect_fatal(&mut source).await;

    server.request().await;
    assert_eq!(server.request().await.header("last-event-id"), None);
}

#[tokio::test]
async fn a_configured_last_event_id_is_sent_on_the_first_request() {
    // LD HTTP 12.
    let mut server = ScriptServer::start(vec![], Script::status(204)).await;
    let mut source = EventSource::get(&server.url("/"))
        .unwrap()
        .last_event_id("abc")
        .build()
        .unwrap();

    expect_fatal(&mut source).await;

    assert_eq!(server.request().await.header("last-event-id"), Some("abc"));
}
