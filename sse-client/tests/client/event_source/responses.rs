//! Responses that are not a healthy stream: statuses, content types,
//! redirects; and what each request carries (headers, bodies).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use reqwest::Method;
use sse_client::Error;
use sse_client::sse::{EventSource, Request};

use super::{expect_event, expect_fatal, expect_open, expect_reconnecting, fast, source};
use crate::support::{Script, ScriptServer};

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
