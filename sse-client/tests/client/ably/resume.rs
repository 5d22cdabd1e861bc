//! Resuming: 5xx retried with the same token and cursor, other client
//! errors ending the subscription, resume without loss or duplicates,
//! rewind, the resume window, headers timeouts, and how a subscription ends.
//! Run on a paused clock where they would otherwise wait.

use std::time::Duration;

use sse_client::Error;
use sse_client::ably::{Auth, Client, SubscribeOptions};

use super::{
    Fixture, error_frame, fast, fatal, message_frame, names, next_message, next_update, reason,
    rejection, sse, sse_request, states_then_message, text, text_message,
};
use crate::support::{Script, within};

#[tokio::test]
async fn server_errors_are_retried_with_the_same_token_and_cursor() {
    let mut f = Fixture::start(vec![
        sse(&[
            message_frame("e1", &text_message("m1", "one")),
            error_frame(50003),
        ]),
        rejection(50000),
        Script::status(503),
        sse(&[message_frame("e2", &text_message("m2", "two"))]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]));

    assert_eq!(text(&next_message(&mut sub).await), "one");
    let (states, message) = states_then_message(&mut sub).await;

    assert_eq!(text(&message), "two");
    assert_eq!(
        names(&states),
        ["disconnected", "disconnected", "disconnected", "connected"]
    );
    assert_eq!(f.auth_calls(), 1);
    sse_request(&mut f.server).await;
    for _ in 0..3 {
        let request = sse_request(&mut f.server).await;
        assert_eq!(request.query("accessToken").as_deref(), Some("T1"));
        assert_eq!(request.query("lastEvent").as_deref(), Some("e1"));
    }
}

#[tokio::test]
async fn other_client_errors_end_the_subscription() {
    for script in [
        rejection(40160),
        rejection(40400),
        sse(&[error_frame(40010)]),
    ] {
        let mut f = Fixture::start(vec![script]).await;
        let mut sub = f.subscribe(SubscribeOptions::new(["ch"]));

        let err = fatal(&mut sub).await;

        assert!(!err.is_retryable() && !err.is_token_error(), "{err:?}");
        sse_request(&mut f.server).await;
        assert!(f.server.pending_requests().is_empty());
    }
}

#[tokio::test]
async fn resumes_without_loss_or_duplicates_across_drops() {
    let m = |i: u32| {
        message_frame(
            &format!("e{i}"),
            &text_message(&format!("m{i}"), &i.to_string()),
        )
    };
    let mut f = Fixture::start(vec![
        sse(&[m(1), m(2)]),
        // The stream breaks mid-event: the unfinished m4 is never delivered.
        Script::sse(&[
            [m(2), m(3)].concat().as_bytes(),
            b"id: e4\nevent: message\ndata: {\"id\"",
        ]),
        sse(&[m(3), m(4), m(5)]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]));

    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(text(&next_message(&mut sub).await).to_owned());
    }

    assert_eq!(seen, ["1", "2", "3", "4", "5"]);
    assert_eq!(sse_request(&mut f.server).await.query("lastEvent"), None);
    assert_eq!(
        sse_request(&mut f.server)
            .await
            .query("lastEvent")
            .as_deref(),
        Some("e2")
    );
    assert_eq!(
        sse_request(&mut f.server)
            .await
            .query("lastEvent")
            .as_deref(),
        Some("e3")
    );
}

#[tokio::test]
async fn rewind_is_sent_on_a_fresh_start_and_dropped_on_resume() {
    let mut f = Fixture::start(vec![sse(&[message_frame(
        "e1",
        &text_message("m1", "one"),
    )])])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]).rewind(Duration::from_secs(120)));

    next_message(&mut sub).await;
    next_update(&mut sub).await; // disconnected (the stream ended)
    next_update(&mut sub).await; // connected again

    let first = sse_request(&mut f.server).await;
    assert_eq!(first.query("rewind").as_deref(), Some("2m"));
    let second = sse_request(&mut f.server).await;
    assert_eq!(second.query("rewind"), None);
    assert_eq!(second.query("lastEvent").as_deref(), Some("e1"));
}

#[tokio::test]
async fn a_configured_last_event_resumes_the_first_connection() {
    let mut f = Fixture::start(vec![]).await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]).last_event("saved").rewind(5));

    next_update(&mut sub).await;

    let request = sse_request(&mut f.server).await;
    assert_eq!(request.query("lastEvent").as_deref(), Some("saved"));
    assert_eq!(request.query("rewind"), None);
}

/// A client whose reconnections wait 10, 20, 40, 80 and 160 ms, inside a
/// 300 ms resume window: the sixth connection comes after the window.
fn outage_client(f: &Fixture) -> Client {
    f.client()
        .reconnect(
            fast()
                .initial_delay(Duration::from_millis(10))
                .max_delay(Duration::from_millis(160)),
        )
        .resume_window(Duration::from_millis(300))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_long_outage_reports_continuity_lost_and_starts_fresh() {
    // Waits of 10, 20, 40, 80 and 160 ms: the sixth connection comes at least
    // 310 ms after the drop, past the 300 ms window, whatever the load; the
    // second comes 10 ms after it, well inside.
    let mut scripts = vec![sse(&[message_frame("e1", &text_message("m1", "one"))])];
    scripts.extend((0..4).map(|_| Script::status(503)));
    scripts.push(sse(&[message_frame("e9", &text_message("m9", "fresh"))]));
    let mut f = Fixture::start(scripts).await;
    let client = outage_client(&f);
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

    next_message(&mut sub).await;
    let (states, message) = states_then_message(&mut sub).await;

    assert_eq!(text(&message), "fresh");
    let names = names(&states);
    assert_eq!(
        names.iter().filter(|n| **n == "continuity lost").count(),
        1,
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&"connected"), "{names:?}");
    let mut last_events = Vec::new();
    for _ in 0..6 {
        last_events.push(sse_request(&mut f.server).await.query("lastEvent"));
    }
    assert_eq!(last_events[1].as_deref(), Some("e1"));
    assert_eq!(last_events[5], None, "a fresh start has no lastEvent");
}

#[tokio::test(start_paused = true)]
async fn a_long_outage_before_the_first_message_also_reports_continuity_lost() {
    // As above, but the first stream ends before any message, so there is
    // no cursor: the reconnections rewind to the first connection, until
    // the outage outlasts the window.
    let mut scripts = vec![Script::sse(&[b":keepalive\n"])];
    scripts.extend((0..4).map(|_| Script::status(503)));
    scripts.push(sse(&[message_frame("e9", &text_message("m9", "fresh"))]));
    let mut f = Fixture::start(scripts).await;
    let client = outage_client(&f);
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

    let (states, message) = states_then_message(&mut sub).await;

    assert_eq!(text(&message), "fresh");
    let names = names(&states);
    assert_eq!(
        names.iter().filter(|n| **n == "continuity lost").count(),
        1,
        "{names:?}"
    );
    assert_eq!(&names[names.len() - 2..], ["continuity lost", "connected"]);
    let mut rewinds = Vec::new();
    for _ in 0..6 {
        let request = sse_request(&mut f.server).await;
        assert_eq!(request.query("lastEvent"), None);
        rewinds.push(request.query("rewind"));
    }
    assert_eq!(rewinds[0], None);
    assert_eq!(rewinds[1].as_deref(), Some("1s"));
    assert_eq!(rewinds[5], None, "a fresh start rewinds to nothing");
}

#[tokio::test]
async fn dropping_the_subscription_closes_the_stream() {
    let mut f = Fixture::start(vec![
        sse(&[message_frame("e1", &text_message("m1", "one"))]).hang(),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]));
    next_message(&mut sub).await;

    drop(sub);

    f.server.body_dropped().await;
}

#[tokio::test]
async fn into_stream_yields_the_same_updates() {
    use futures_util::StreamExt;
    let f = Fixture::start(vec![rejection(40160)]).await;
    let stream = f.subscribe(SubscribeOptions::new(["ch"])).into_stream();

    let items: Vec<_> = within(stream.collect::<Vec<_>>()).await;

    assert_eq!(items.len(), 1, "{items:?}");
    assert!(matches!(&items[0], Err(err) if err.error_info().map(|i| i.code) == Some(40160)));
}

#[tokio::test]
async fn a_network_error_never_shows_the_token() {
    // Bind then drop: nothing listens on the port.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Client::builder()
        .endpoint(format!("http://{addr}"))
        .auth(Auth::token("secret-token-value"))
        .reconnect(fast().max_retries(Some(0)))
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

    let err = fatal(&mut sub).await;

    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(!text.contains("secret-token-value"), "{text}");
    assert!(matches!(err, Error::RetriesExhausted { .. }), "{err:?}");
}

#[tokio::test]
async fn a_drop_before_the_first_message_rewinds_to_the_first_connection() {
    let mut f = Fixture::start(vec![
        Script::sse(&[b":keepalive\n"]),
        sse(&[message_frame("e1", &text_message("m1", "one"))]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]));

    assert_eq!(text(&next_message(&mut sub).await), "one");

    assert_eq!(sse_request(&mut f.server).await.query("rewind"), None);
    // Within a second of the first connection: one second (rounded up).
    let second = sse_request(&mut f.server).await;
    assert_eq!(second.query("rewind").as_deref(), Some("1s"));
    assert_eq!(second.query("lastEvent"), None);
}

#[tokio::test(start_paused = true)]
async fn a_stream_request_left_unanswered_times_out_and_is_retried() {
    // First no answer at all, then an error status whose body never ends.
    let mut f = Fixture::start(vec![
        Script::stalled(),
        Script::status(503).hang(),
        sse(&[message_frame("e1", &text_message("m1", "one"))]),
    ])
    .await;
    let client = f
        .client()
        .headers_timeout(Some(Duration::from_millis(100)))
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

    let (states, message) = states_then_message(&mut sub).await;

    assert_eq!(text(&message), "one");
    assert_eq!(
        names(&states),
        ["disconnected", "disconnected", "connected"]
    );
    for state in &states[..2] {
        let reason = reason(state);
        assert!(
            matches!(reason, Error::HeadersTimeout(limit) if *limit == Duration::from_millis(100)),
            "{reason:?}"
        );
    }
    for _ in 0..3 {
        sse_request(&mut f.server).await;
    }
    assert_eq!(f.auth_calls(), 1, "a timeout keeps the token");
}
