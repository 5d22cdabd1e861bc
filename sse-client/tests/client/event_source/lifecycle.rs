//! The request hook, dropping the stream, the size caps, and the stream
//! form.

use std::sync::{Arc, Mutex};

use sse_client::Error;
use sse_client::sse::{EventSource, Item, Limits, Request};

use super::{expect_event, expect_fatal, expect_open, expect_reconnecting, fast, source};
use crate::support::{Script, ScriptServer, within};

#[tokio::test]
async fn the_hook_sees_the_last_event_id_and_previous_error_and_picks_the_url() {
    let mut server = ScriptServer::start(
        vec![Script::sse(&[b"id: 7\ndata: a\n\n"])],
        Script::sse(&[b"data: b\n\n"]).hang(),
    )
    .await;
    let base = server.url("/");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let mut source = EventSource::with_hook(move |attempt| {
        record.lock().unwrap().push((
            attempt.number,
            attempt.last_event_id.clone(),
            attempt.previous_error.as_ref().map(|e| e.to_string()),
        ));
        let url = format!(
            "{base}?attempt={}&lastEvent={}",
            attempt.number, attempt.last_event_id
        );
        async move { Request::get(&url) }
    })
    .reconnect(fast())
    .build()
    .unwrap();

    expect_open(&mut source).await;
    expect_event(&mut source).await;
    expect_reconnecting(&mut source).await;
    expect_open(&mut source).await;
    expect_event(&mut source).await;

    assert_eq!(
        *seen.lock().unwrap(),
        [
            (1, String::new(), None),
            (
                2,
                "7".to_owned(),
                Some("the server closed the stream".to_owned())
            ),
        ]
    );
    assert_eq!(
        server.request().await.query("attempt").as_deref(),
        Some("1")
    );
    let second = server.request().await;
    assert_eq!(second.query("lastEvent").as_deref(), Some("7"));
}

#[tokio::test]
async fn a_hook_error_that_is_not_retryable_ends_the_stream() {
    let mut source = EventSource::with_hook(|_| async { Err(Error::Config("no token".into())) })
        .build()
        .unwrap();

    let err = expect_fatal(&mut source).await;

    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_connection() {
    let mut server = ScriptServer::start(vec![], Script::sse(&[b"data: x\n\n"]).hang()).await;
    let mut source = source(&server);
    expect_open(&mut source).await;
    expect_event(&mut source).await;

    drop(source);

    server.body_dropped().await;
}

#[tokio::test]
async fn a_line_over_the_cap_ends_the_stream_without_reconnecting() {
    let mut server = ScriptServer::start(
        vec![Script::sse(&[b"data: ok\n\n", &[b'x'; 200], b"\n\n"])],
        Script::sse(&[b"data: never\n\n"]),
    )
    .await;
    let mut source = EventSource::get(&server.url("/"))
        .unwrap()
        .limits(Limits::new(100, 100))
        .build()
        .unwrap();

    expect_open(&mut source).await;
    assert_eq!(expect_event(&mut source).await.data(), "ok");
    let err = expect_fatal(&mut source).await;

    assert!(matches!(err, Error::LineTooLong { limit: 100 }), "{err:?}");
    server.request().await;
    assert!(server.pending_requests().is_empty());
}

#[tokio::test]
async fn events_before_an_oversized_line_in_the_same_chunk_come_first() {
    let body = [
        b"data: one\n\ndata: two\n\n".as_slice(),
        &[b'x'; 200],
        b"\n\n",
    ]
    .concat();
    let server = ScriptServer::start(vec![Script::sse(&[&body])], Script::status(204)).await;
    let mut source = EventSource::get(&server.url("/"))
        .unwrap()
        .limits(Limits::new(100, 100))
        .build()
        .unwrap();

    expect_open(&mut source).await;
    assert_eq!(expect_event(&mut source).await.data(), "one");
    assert_eq!(expect_event(&mut source).await.data(), "two");
    let err = expect_fatal(&mut source).await;

    assert!(matches!(err, Error::LineTooLong { limit: 100 }), "{err:?}");
}

#[tokio::test]
async fn into_stream_yields_the_same_items() {
    use futures_util::StreamExt;
    let server =
        ScriptServer::start(vec![Script::sse(&[b"data: a\n\n"])], Script::status(204)).await;
    let stream = source(&server).into_stream();

    let items: Vec<_> = within(stream.collect::<Vec<_>>()).await;

    assert_eq!(items.len(), 4, "{items:?}");
    assert!(matches!(&items[1], Ok(Item::Event(e)) if e.data() == "a"));
    assert!(matches!(&items[3], Err(e) if e.status() == Some(204)));
}
