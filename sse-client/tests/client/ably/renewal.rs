//! Token renewal: on `error` events and on error responses before the
//! stream (40140–40149, 40141 "token revoked" included), the wrong-secret
//! loop cut off, a fixed token that cannot be renewed, and renewal ahead of
//! a known expiry. Run on a paused clock where they would otherwise wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use shared::ErrorInfo;
use sse_client::ably::{Auth, AuthUrl, Client, StateChange, SubscribeOptions, Update};

use super::{
    Fixture, error_frame, fast, fatal, message_frame, names, next_message, reason, rejection, sse,
    sse_request, states_then_message, text, text_message,
};
use crate::support::{Script, ScriptServer, within};

#[tokio::test]
async fn a_token_error_event_renews_and_resumes_with_last_event() {
    let mut f = Fixture::start(vec![
        sse(&[
            message_frame("e1", &text_message("m1", "one")),
            error_frame(40142),
        ]),
        // The resumed stream replays m1 before m2: it must not repeat.
        sse(&[
            message_frame("e1", &text_message("m1", "one")),
            message_frame("e2", &text_message("m2", "two")),
        ]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]));

    assert_eq!(text(&next_message(&mut sub).await), "one");
    let (states, second) = states_then_message(&mut sub).await;

    assert_eq!(text(&second), "two");
    assert_eq!(names(&states), ["disconnected", "renewed", "connected"]);
    let StateChange::Disconnected { reason, retry_in } = &states[0] else {
        panic!()
    };
    assert_eq!(reason.error_info().map(|i| i.code), Some(40142));
    assert_eq!(*retry_in, Duration::ZERO, "the first renewal is immediate");
    assert_eq!(f.auth_calls(), 2);
    assert_eq!(
        sse_request(&mut f.server)
            .await
            .query("accessToken")
            .as_deref(),
        Some("T1")
    );
    let resumed = sse_request(&mut f.server).await;
    assert_eq!(resumed.query("accessToken").as_deref(), Some("T2"));
    assert_eq!(resumed.query("lastEvent").as_deref(), Some("e1"));
}

#[tokio::test]
async fn a_revoked_token_event_renews_and_resumes_with_last_event() {
    // 40141 (token revoked) is a token error like 40142: the next token may
    // be granted, and the stream resumes where it stopped.
    let mut f = Fixture::start(vec![
        sse(&[
            message_frame("e1", &text_message("m1", "one")),
            error_frame(40141),
        ]),
        sse(&[message_frame("e2", &text_message("m2", "two"))]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]));

    assert_eq!(text(&next_message(&mut sub).await), "one");
    let (states, second) = states_then_message(&mut sub).await;

    assert_eq!(text(&second), "two");
    assert_eq!(names(&states), ["disconnected", "renewed", "connected"]);
    assert_eq!(reason(&states[0]).error_info().map(|i| i.code), Some(40141));
    assert_eq!(f.auth_calls(), 2);
    sse_request(&mut f.server).await;
    let resumed = sse_request(&mut f.server).await;
    assert_eq!(resumed.query("accessToken").as_deref(), Some("T2"));
    assert_eq!(resumed.query("lastEvent").as_deref(), Some("e1"));
}

#[tokio::test]
async fn a_revoked_user_the_auth_server_then_refuses_gets_its_error_and_nothing_after_the_revocation()
 {
    // The auth server hands out T1, then refuses the revoked user as an
    // auth server does (403, 40300 in an `application/json` envelope).
    let auth_calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&auth_calls);
    let refusal = serde_json::to_string(
        &ErrorInfo::new(40300, 403, "user may no longer subscribe").into_response(),
    )
    .unwrap();
    let routes = Router::new().route(
        "/auth",
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let refusal = refusal.clone();
            async move {
                if n == 1 {
                    (
                        StatusCode::OK,
                        [("content-type", "text/plain")],
                        "T1".to_owned(),
                    )
                } else {
                    (
                        StatusCode::FORBIDDEN,
                        [("content-type", "application/json")],
                        refusal,
                    )
                }
            }
        }),
    );
    // The message after the error event is in the same chunk: it must be
    // dropped with the stream, not delivered.
    let mut server = ScriptServer::start_with(
        vec![sse(&[
            message_frame("e1", &text_message("m1", "before")),
            error_frame(40141),
            message_frame("e2", &text_message("m2", "after the revocation")),
        ])],
        Script::sse(&[message_frame("e3", &text_message("m3", "later")).as_bytes()]),
        routes,
    )
    .await;
    let client = Client::builder()
        .endpoint(server.url(""))
        .auth(Auth::auth_url(AuthUrl::new(&server.url("/auth")).unwrap()))
        .reconnect(fast())
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

    assert_eq!(text(&next_message(&mut sub).await), "before");
    let mut updates = Vec::new();
    let err = loop {
        match within(sub.next()).await {
            Some(Ok(update)) => updates.push(update),
            Some(Err(err)) => break err,
            None => panic!("ended without an error after {updates:?}"),
        }
    };

    let info = err.error_info().expect("the auth server's error");
    assert_eq!(
        (info.code, info.status_code, info.message.as_str()),
        (40300, 403, "user may no longer subscribe")
    );
    assert!(
        within(sub.next()).await.is_none(),
        "an Err is the last item"
    );
    let [Update::State(disconnected)] = updates.as_slice() else {
        panic!("expected only the disconnection, got {updates:?}");
    };
    assert_eq!(
        reason(disconnected).error_info().map(|i| i.code),
        Some(40141)
    );
    assert_eq!(auth_calls.load(Ordering::SeqCst), 2);
    sse_request(&mut server).await;
    assert!(
        server.pending_requests().is_empty(),
        "no stream after the refusal"
    );
}

#[tokio::test]
async fn a_401_envelope_before_the_stream_renews_the_token() {
    let mut f = Fixture::start(vec![
        rejection(40142),
        sse(&[message_frame("e1", &text_message("m1", "one"))]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]));

    let (states, message) = states_then_message(&mut sub).await;

    assert_eq!(text(&message), "one");
    assert_eq!(names(&states), ["disconnected", "renewed", "connected"]);
    assert_eq!(
        sse_request(&mut f.server)
            .await
            .query("accessToken")
            .as_deref(),
        Some("T1")
    );
    assert_eq!(
        sse_request(&mut f.server)
            .await
            .query("accessToken")
            .as_deref(),
        Some("T2")
    );
}

#[tokio::test]
async fn the_error_code_header_alone_is_enough() {
    let header_only = Script::status(401)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-ably-errorcode", "40142")
        .body("expired");
    let mut f = Fixture::start(vec![
        header_only,
        sse(&[message_frame("e1", &text_message("m1", "one"))]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]));

    assert_eq!(text(&next_message(&mut sub).await), "one");

    assert_eq!(f.auth_calls(), 2);
    sse_request(&mut f.server).await;
}

#[tokio::test]
async fn a_wrong_secret_loop_is_cut_off_after_a_few_renewals() {
    let mut f = Fixture::start(vec![]).await;
    for _ in 0..10 {
        f.server.push(rejection(40144));
    }
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]));

    let err = fatal(&mut sub).await;

    assert_eq!(err.error_info().map(|i| i.code), Some(40144));
    // The first token plus three renewals.
    assert_eq!(f.auth_calls(), 4);
    assert_eq!(f.server.pending_requests().len(), 4);
}

#[tokio::test]
async fn a_message_between_token_errors_resets_the_count() {
    let mut scripts = Vec::new();
    for i in 0..5 {
        scripts.push(rejection(40142));
        scripts.push(sse(&[
            message_frame(&format!("e{i}"), &text_message(&format!("m{i}"), "x")),
            error_frame(40142),
        ]));
    }
    let f = Fixture::start(scripts).await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]));

    for _ in 0..5 {
        next_message(&mut sub).await;
    }
}

#[tokio::test]
async fn a_fixed_token_cannot_be_renewed() {
    let f = Fixture::start(vec![sse(&[error_frame(40142)])]).await;
    let client = Client::builder()
        .endpoint(f.server.url(""))
        .auth(Auth::token("fixed"))
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

    let err = fatal(&mut sub).await;

    assert!(err.is_token_error(), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn a_token_with_a_known_expiry_is_renewed_before_it_and_the_stream_switched() {
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&issued);
    let routes = Router::new().route(
        "/auth",
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64;
                let details =
                    json!({"token": format!("T{n}"), "issued": now, "expires": now + 1_000});
                ([("content-type", "application/json")], details.to_string())
            }
        }),
    );
    let mut server = ScriptServer::start_with(
        vec![
            sse(&[message_frame("e1", &text_message("m1", "one"))]).hang(),
            sse(&[
                message_frame("e1", &text_message("m1", "one")),
                message_frame("e2", &text_message("m2", "two")),
            ])
            .hang(),
        ],
        Script::sse(&[b""]).hang(),
        routes,
    )
    .await;
    let client = Client::builder()
        .endpoint(server.url(""))
        .auth(Auth::auth_url(AuthUrl::new(&server.url("/auth")).unwrap()))
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

    assert_eq!(text(&next_message(&mut sub).await), "one");
    let (states, message) = states_then_message(&mut sub).await;

    assert_eq!(text(&message), "two");
    assert_eq!(names(&states), ["renewed early", "connected"]);
    server.body_dropped().await;
    sse_request(&mut server).await;
    let switched = sse_request(&mut server).await;
    assert_eq!(switched.query("accessToken").as_deref(), Some("T2"));
    assert_eq!(switched.query("lastEvent").as_deref(), Some("e1"));
}

#[tokio::test(start_paused = true)]
async fn a_token_about_to_expire_is_not_renewed_early_in_a_loop() {
    let routes = Router::new().route(
        "/auth",
        get(|| async {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let details = json!({"token": "SHORT", "issued": now, "expires": now + 100});
            ([("content-type", "application/json")], details.to_string())
        }),
    );
    let mut server = ScriptServer::start_with(
        vec![sse(&[message_frame("e1", &text_message("m1", "one"))]).hang()],
        Script::sse(&[b""]).hang(),
        routes,
    )
    .await;
    let client = Client::builder()
        .endpoint(server.url(""))
        .auth(Auth::auth_url(AuthUrl::new(&server.url("/auth")).unwrap()))
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

    assert_eq!(text(&next_message(&mut sub).await), "one");
    // Well past the token's expiry, the stream is still the first one.
    let next = tokio::time::timeout(Duration::from_millis(400), sub.next()).await;

    assert!(next.is_err(), "no switch expected, got {next:?}");
    sse_request(&mut server).await;
    assert!(server.pending_requests().is_empty());
}
