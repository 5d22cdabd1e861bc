//! The reconnecting stream against scripted local servers: every request
//! and reconnect rule of `docs/sse-conformance.md#conformance-cases` (WPT,
//! LaunchDarkly).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use reqwest::Method;
use sse_client::Error;
use sse_client::sse::{Event, EventSource, Item, Limits, ReconnectOptions, Request};

use crate::support::{Script, ScriptServer, within};

/// Fast, deterministic reconnection for tests.
fn fast() -> ReconnectOptions {
    ReconnectOptions::default()
        .initial_delay(Duration::from_millis(5))
        .retry_floor(Duration::ZERO)
        .jitter(false)
}

fn source(server: &ScriptServer) -> EventSource {
    EventSource::get(&server.url("/stream"))
        .unwrap()
        .reconnect(fast())
        .build()
        .unwrap()
}

/// The next item that is not a comment.
async fn next(source: &mut EventSource) -> Option<sse_client::Result<Item>> {
    loop {
        match within(source.next()).await {
            Some(Ok(Item::Comment(_))) => {}
            other => return other,
        }
    }
}

async fn expect_open(source: &mut EventSource) {
    match next(source).await {
        Some(Ok(Item::Open(_))) => {}
        other => panic!("expected open, got {other:?}"),
    }
}

async fn expect_event(source: &mut EventSource) -> Event {
    match next(source).await {
        Some(Ok(Item::Event(event))) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn expect_reconnecting(source: &mut EventSource) -> (Arc<Error>, Duration) {
    match next(source).await {
        Some(Ok(Item::Reconnecting { error, delay })) => (error, delay),
        other => panic!("expected reconnecting, got {other:?}"),
    }
}

async fn expect_fatal(source: &mut EventSource) -> Error {
    let err = match next(source).await {
        Some(Err(err)) => err,
        other => panic!("expected a fatal error, got {other:?}"),
    };
    assert!(
        within(source.next()).await.is_none(),
        "an Err is the last item"
    );
    err
}

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

#[tokio::test]
async fn status_204_stops_after_exactly_one_request() {
    // LD HTTP 2, WPT status-reconnect.
    let mut server = ScriptServer::start(vec![], Script::status(204)).await;
    let mut source = source(&server);

    let err = expect_fatal(&mut source).await;

    assert_eq!(err.status(), Some(204));
    server.request().await;
    assert!(server.pending_requests().is_empty());
}

#[tokio::test]
async fn any_status_but_200_fails_without_reconnecting() {
    // WPT request-status-error.
    for status in [205, 210, 299, 404, 410, 429, 500, 503] {
        let mut server = ScriptServer::start(vec![], Script::status(status)).await;
        let mut source = source(&server);

        let err = expect_fatal(&mut source).await;

        assert!(
            matches!(err, Error::Status { status: s } if s == status),
            "{err:?}"
        );
        server.request().await;
        assert!(server.pending_requests().is_empty(), "{status}");
    }
}

#[tokio::test]
async fn server_errors_are_retried_when_configured() {
    let mut server = ScriptServer::start(
        vec![Script::status(503), Script::status(429)],
        Script::sse(&[b"data: back\n\n"]),
    )
    .await;
    let mut source = EventSource::get(&server.url("/"))
        .unwrap()
        .reconnect(fast().retry_server_errors(true))
        .build()
        .unwrap();

    let (first, _) = expect_reconnecting(&mut source).await;
    let (second, _) = expect_reconnecting(&mut source).await;
    expect_open(&mut source).await;

    assert_eq!(first.status(), Some(503));
    assert_eq!(second.status(), Some(429));
    assert_eq!(expect_event(&mut source).await.data(), "back");
    server.request().await;

    // 404 is still fatal in this mode.
    server.push(Script::status(404));
    source.restart();
    assert_eq!(expect_fatal(&mut source).await.status(), Some(404));
}

#[tokio::test]
async fn a_wrong_content_type_fails_without_reconnecting() {
    // WPT format-mime-bogus.
    let mut server = ScriptServer::start(
        vec![Script::sse(&[b"data: x\n\n"]).header("content-type", "text/x-bogus")],
        Script::status(204),
    )
    .await;
    let mut source = source(&server);

    let err = expect_fatal(&mut source).await;

    assert!(
        matches!(&err, Error::ContentType(t) if t == "text/x-bogus"),
        "{err:?}"
    );
    server.request().await;
    assert!(server.pending_requests().is_empty());
}

#[tokio::test]
async fn content_type_parameters_are_allowed_and_the_body_is_always_utf8() {
    // WPT format-mime-trailing-semicolon and format-utf-8.
    for content_type in [
        "text/event-stream;",
        "text/event-stream;charset=windows-1252",
    ] {
        let server = ScriptServer::start(
            vec![Script::sse(&[b"data:ok\xE2\x80\xA6\n\n"]).header("content-type", content_type)],
            Script::status(204),
        )
        .await;
        let mut source = source(&server);

        expect_open(&mut source).await;

        assert_eq!(expect_event(&mut source).await.data(), "ok…");
    }
}

/// A server whose `/start` redirects to `/stream` with `status`, counting
/// the hits on `/start`.
async fn redirecting_server(status: u16) -> (ScriptServer, Arc<AtomicUsize>) {
    let starts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&starts);
    let routes = Router::new().route(
        "/start",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let status = StatusCode::from_u16(status).unwrap();
                (status, [("location", "/stream")]).into_response()
            }
        }),
    );
    let server = ScriptServer::start_with(vec![], Script::sse(&[b"data: hello\n\n"]), routes).await;
    (server, starts)
}

#[tokio::test]
async fn redirects_are_followed_and_reconnects_go_to_the_original_url() {
    // WPT request-redirect; LD HTTP 3 and 4.
    for status in [301, 302, 303, 307] {
        let (mut server, starts) = redirecting_server(status).await;
        let mut source = EventSource::get(&server.url("/start"))
            .unwrap()
            .reconnect(fast())
            .build()
            .unwrap();

        expect_open(&mut source).await;
        assert_eq!(expect_event(&mut source).await.data(), "hello");
        expect_reconnecting(&mut source).await;
        expect_open(&mut source).await;

        assert_eq!(server.request().await.path(), "/stream");
        assert_eq!(server.request().await.path(), "/stream");
        assert_eq!(starts.load(Ordering::SeqCst), 2, "{status}");
    }
}

#[tokio::test]
async fn redirects_without_a_usable_location_fail_without_looping() {
    // LD HTTP 5 to 8.
    for (status, location) in [(301, Some("")), (301, None), (307, Some("")), (307, None)] {
        let mut script = Script::status(status);
        if let Some(location) = location {
            script = script.header("location", location);
        }
        let server = ScriptServer::start(vec![], script).await;
        let mut source = source(&server);

        let err = expect_fatal(&mut source).await;

        assert!(!err.is_retryable(), "{status} {location:?}: {err:?}");
    }
}

#[tokio::test]
async fn custom_headers_are_sent() {
    // LD HTTP 9.
    let mut server = ScriptServer::start(vec![], Script::status(204)).await;
    let request = Request::get(&server.url("/"))
        .unwrap()
        .header("header-name-1", "value-1")
        .unwrap()
        .header("header-name-2", "value-2")
        .unwrap();
    let mut source = EventSource::with_request(request).build().unwrap();

    expect_fatal(&mut source).await;

    let seen = server.request().await;
    assert_eq!(seen.header("header-name-1"), Some("value-1"));
    assert_eq!(seen.header("header-name-2"), Some("value-2"));
}

#[tokio::test]
async fn post_and_report_bodies_are_sent_on_every_attempt() {
    // LD HTTP 10 and 11, reconnection 5.
    for method in ["POST", "REPORT"] {
        let mut server =
            ScriptServer::start(vec![Script::sse(&[b"data: one\n\n"])], Script::status(204)).await;
        let url = reqwest::Url::parse(&server.url("/")).unwrap();
        let request = Request::new(Method::from_bytes(method.as_bytes()).unwrap(), url)
            .header("content-type", "application/json")
            .unwrap()
            .body(r#"{"hello":"world"}"#);
        let mut source = EventSource::with_request(request)
            .reconnect(fast())
            .build()
            .unwrap();

        expect_open(&mut source).await;
        expect_event(&mut source).await;
        expect_reconnecting(&mut source).await;
        expect_fatal(&mut source).await;

        for _ in 0..2 {
            let seen = server.request().await;
            assert_eq!(seen.method, method);
            assert_eq!(seen.header("content-type"), Some("application/json"));
            assert_eq!(&seen.body[..], br#"{"hello":"world"}"#);
        }
    }
}

#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
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
    let started = Instant::now();
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

#[tokio::test]
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
