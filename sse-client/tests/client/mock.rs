//! The Ably layer against mock-ably, the project's faithful stand-in for
//! Ably: renewal on 40142 events and on 401 envelopes, proactive renewal,
//! the wrong-secret loop cut off, 5xx retry, resume without loss or
//! duplicates across drops, rewind, deltas and unenveloped mode.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mock_ably::{FailNext, FailTarget, MockAbly};
use serde_json::json;
use shared::message::Payload;
use shared::{ApiKey, ErrorInfo, TokenParams};
use sse_client::ably::{
    Auth, ChannelMessage, Client, StateChange, SubscribeOptions, Subscription, TokenReply, Update,
};
use sse_client::sse::ReconnectOptions;

use crate::support::within;

const KEY: &str = "app.key:secret";

async fn mock() -> Arc<MockAbly> {
    Arc::new(MockAbly::builder().key(KEY).start().await)
}

/// Tokens issued by the mock through a callback, counted; `ttl` in ms.
fn callback_auth(mock: &Arc<MockAbly>, ttl: Option<u64>) -> (Auth, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (mock, counter) = (Arc::clone(mock), Arc::clone(&calls));
    let auth = Auth::callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        let details = mock.issue_token(TokenParams {
            ttl,
            ..TokenParams::default()
        });
        async move { Ok(TokenReply::Details(details)) }
    });
    (auth, calls)
}

fn client(mock: &MockAbly, auth: Auth) -> Client {
    Client::builder()
        .endpoint(mock.base_url())
        .auth(auth)
        .reconnect(
            ReconnectOptions::default()
                .initial_delay(Duration::from_millis(5))
                .max_delay(Duration::from_millis(50))
                .jitter(false),
        )
        .build()
        .unwrap()
}

/// Waits for the next state change that is `Connected`, skipping others.
async fn connected(sub: &mut Subscription) {
    loop {
        match within(sub.next()).await {
            Some(Ok(Update::State(StateChange::Connected))) => return,
            Some(Ok(Update::State(_))) => {}
            other => panic!("expected connected, got {other:?}"),
        }
    }
}

/// The next message, and the state changes before it.
async fn message(sub: &mut Subscription) -> (Vec<StateChange>, ChannelMessage) {
    let mut states = Vec::new();
    loop {
        match within(sub.next()).await {
            Some(Ok(Update::Message(message))) => return (states, message),
            Some(Ok(Update::State(state))) => states.push(state),
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

fn text(message: &ChannelMessage) -> String {
    match &message.payload {
        Some(Payload::Text(text)) => text.clone(),
        Some(Payload::Json(value)) => value.to_string(),
        other => panic!("{other:?}"),
    }
}

fn renewed(states: &[StateChange], proactive: bool) -> bool {
    states
        .iter()
        .any(|s| matches!(s, StateChange::TokenRenewed { proactive: p } if *p == proactive))
}

#[tokio::test]
async fn messages_arrive_decoded_from_a_mock_issued_token() {
    let mock = mock().await;
    let (auth, _) = callback_auth(&mock, None);
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]));
    connected(&mut sub).await;

    mock.publish_data("chat", "greeting", json!({"hello": "world"}));
    mock.publish_data("chat", "", "plain");

    let (_, first) = message(&mut sub).await;
    let (_, second) = message(&mut sub).await;
    assert_eq!(
        first.payload,
        Some(Payload::Json(json!({"hello": "world"})))
    );
    assert_eq!(first.message.name.as_deref(), Some("greeting"));
    assert_eq!(first.channel.as_deref(), Some("chat"));
    assert_eq!(text(&second), "plain");
}

#[tokio::test]
async fn an_expired_token_is_renewed_and_nothing_is_lost_or_repeated() {
    let mock = mock().await;
    let (auth, calls) = callback_auth(&mock, None);
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]));
    connected(&mut sub).await;
    mock.publish_data("chat", "", "before");
    assert_eq!(text(&message(&mut sub).await.1), "before");

    // The stream gets a 40142 error event; the message published meanwhile
    // must come through the resumed stream exactly once.
    mock.expire_credentials();
    mock.publish_data("chat", "", "during");
    let (states, during) = message(&mut sub).await;
    mock.publish_data("chat", "", "after");
    let (_, after) = message(&mut sub).await;

    assert_eq!(
        (text(&during), text(&after)),
        ("during".into(), "after".into())
    );
    assert!(renewed(&states, false), "{states:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_401_before_the_stream_renews_the_token() {
    let mock = mock().await;
    let (auth, calls) = callback_auth(&mock, None);
    mock.fail_next(
        FailNext::new(ErrorInfo::from_code(40142, "Token expired")).target(FailTarget::Stream),
    );
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]));

    connected(&mut sub).await;
    mock.publish_data("chat", "", "ok");

    assert_eq!(text(&message(&mut sub).await.1), "ok");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_jwt_signed_with_the_wrong_secret_is_cut_off() {
    let mock = mock().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let wrong = ApiKey::parse("app.key:not-the-secret").unwrap();
    let auth = Auth::callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = shared::AblyJwtClaims::new(now, now + 3600, r#"{"*":["*"]}"#);
        let jwt = shared::jwt::encode_jwt(&wrong, &claims).unwrap();
        async move { Ok(TokenReply::Token(jwt)) }
    });
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]));

    let err = loop {
        match within(sub.next()).await {
            Some(Ok(Update::State(_))) => {}
            Some(Err(err)) => break err,
            other => panic!("{other:?}"),
        }
    };

    assert_eq!(err.error_info().map(|info| info.code), Some(40144));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_token_is_renewed_before_it_expires_without_a_gap() {
    let mock = mock().await;
    let (auth, calls) = callback_auth(&mock, Some(1_500));
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]));
    connected(&mut sub).await;

    // Publish across the switch (at about 750 ms) and past the first
    // token's expiry; every message arrives once, in order.
    let publisher = {
        let mock = Arc::clone(&mock);
        tokio::spawn(async move {
            for n in 0..20 {
                mock.publish_data("chat", "", n.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut states = Vec::new();
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let (before, message) = message(&mut sub).await;
        states.extend(before);
        seen.push(text(&message));
    }
    publisher.await.unwrap();

    assert_eq!(seen, (0..20).map(|n| n.to_string()).collect::<Vec<_>>());
    assert!(renewed(&states, true), "{states:?}");
    assert!(
        !states
            .iter()
            .any(|s| matches!(s, StateChange::Disconnected { .. })),
        "the switch came before any rejection: {states:?}"
    );
    assert!(calls.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let mock = mock().await;
    let (auth, _) = callback_auth(&mock, None);
    mock.fail_next(
        FailNext::new(ErrorInfo::from_code(50003, "timeout"))
            .target(FailTarget::Stream)
            .count(2),
    );
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]));

    connected(&mut sub).await;
    mock.publish_data("chat", "", "ok");

    assert_eq!(text(&message(&mut sub).await.1), "ok");
}

#[tokio::test]
async fn drops_lose_and_repeat_nothing() {
    let mock = mock().await;
    let (auth, _) = callback_auth(&mock, None);
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]));
    connected(&mut sub).await;

    let mut seen = Vec::new();
    for round in 0..5 {
        for n in 0..10 {
            mock.publish_data("chat", "", format!("{round}-{n}"));
        }
        mock.drop_streams();
        while seen.len() < (round + 1) * 10 {
            seen.push(text(&message(&mut sub).await.1));
        }
    }

    let expected: Vec<String> = (0..5)
        .flat_map(|round| (0..10).map(move |n| format!("{round}-{n}")))
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn rewind_replays_the_last_messages() {
    let mock = mock().await;
    for n in 0..5 {
        mock.publish_data("chat", "", n.to_string());
    }
    let (auth, _) = callback_auth(&mock, None);
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]).rewind(2));

    let first = text(&message(&mut sub).await.1);
    let second = text(&message(&mut sub).await.1);

    assert_eq!((first.as_str(), second.as_str()), ("3", "4"));
}

#[tokio::test]
async fn deltas_decode_to_the_published_values() {
    let mock = mock().await;
    let (auth, _) = callback_auth(&mock, None);
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["scores"]).delta(true));
    connected(&mut sub).await;

    let values: Vec<_> = (0..10)
        .map(|n| json!({"game": "final", "home": n, "away": 3, "commentary": "a long enough text that a delta pays off"}))
        .collect();
    for value in &values {
        mock.publish_data("scores", "score", value.clone());
    }

    for value in values {
        let (_, message) = message(&mut sub).await;
        assert_eq!(message.payload, Some(Payload::Json(value)));
    }
}

#[tokio::test]
async fn unenveloped_payloads_arrive_bare() {
    let mock = mock().await;
    let (auth, _) = callback_auth(&mock, None);
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]).enveloped(false));
    connected(&mut sub).await;

    mock.publish_data("chat", "", "bare text");
    mock.publish_data("chat", "", json!({"a": 1}));

    assert_eq!(text(&message(&mut sub).await.1), "bare text");
    assert_eq!(text(&message(&mut sub).await.1), r#"{"a":1}"#);
}

#[tokio::test]
async fn a_token_request_is_exchanged_at_the_mock_and_a_jwt_is_accepted() {
    let mock = mock().await;
    let key = ApiKey::parse(KEY).unwrap();
    let now_ms = mock.now_ms();
    let request_key = key.clone();
    let by_request = Auth::callback(move |params| {
        let request = shared::TokenRequest::new_signed(&request_key, params, now_ms).unwrap();
        async move { Ok(TokenReply::Request(request)) }
    });
    let claims = shared::AblyJwtClaims::new(now_ms / 1000, now_ms / 1000 + 3600, r#"{"*":["*"]}"#);
    let jwt = shared::jwt::encode_jwt(&key, &claims).unwrap();

    for auth in [by_request, Auth::token(jwt)] {
        let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]));
        connected(&mut sub).await;
        mock.publish_data("chat", "", "through");

        assert_eq!(text(&message(&mut sub).await.1), "through");
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_quiet_stream_alive_under_a_short_read_timeout() {
    let mock = Arc::new(
        MockAbly::builder()
            .key(KEY)
            .keepalive(Duration::from_millis(50))
            .start()
            .await,
    );
    let (auth, _) = callback_auth(&mock, None);
    let client = Client::builder()
        .endpoint(mock.base_url())
        .auth(auth)
        .read_timeout(Some(Duration::from_millis(250)))
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["chat"]).heartbeats(true));
    connected(&mut sub).await;

    // Four read timeouts' worth of silence but for heartbeats: no update.
    let quiet = tokio::time::timeout(Duration::from_millis(1000), sub.next()).await;

    assert!(quiet.is_err(), "expected no update, got {quiet:?}");
    mock.publish_data("chat", "", "still here");
    assert_eq!(text(&message(&mut sub).await.1), "still here");
}

#[tokio::test(start_paused = true)]
async fn the_headers_timeout_does_not_limit_an_open_stream() {
    let mock = mock().await;
    let client = Client::builder()
        .endpoint(mock.base_url())
        .auth(Auth::key(ApiKey::parse(KEY).unwrap()))
        .headers_timeout(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));
    connected(&mut sub).await;

    // Many headers timeouts' worth of a quiet, open stream: nothing happens.
    let quiet = tokio::time::timeout(Duration::from_millis(400), sub.next()).await;

    assert!(quiet.is_err(), "expected no update, got {quiet:?}");
    mock.publish_data("ch", "", "still the first stream");
    assert_eq!(text(&message(&mut sub).await.1), "still the first stream");
    assert_eq!(mock.stats().open_streams, 1);
}

#[tokio::test(start_paused = true)]
async fn a_short_lived_jwt_is_renewed_before_its_exp_with_no_gap_and_no_repeat() {
    let mock = mock().await;
    let key = ApiKey::parse(KEY).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let first_exp = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let auth = {
        let (mock, calls, first_exp) = (
            Arc::clone(&mock),
            Arc::clone(&calls),
            Arc::clone(&first_exp),
        );
        Auth::callback(move |_| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let now = mock.now_ms() / 1000;
            // The first JWT expires one to two seconds from now (`exp` is in
            // whole seconds); the one that replaces it, in an hour. Only the
            // JWT's own `exp` says so: a bare token string.
            let exp = if n == 1 { now + 2 } else { now + 3600 };
            if n == 1 {
                first_exp.store(exp, Ordering::SeqCst);
            }
            let claims = shared::AblyJwtClaims::new(now, exp, r#"{"*":["*"]}"#);
            let jwt = shared::jwt::encode_jwt(&key, &claims).unwrap();
            async move { Ok(TokenReply::Token(jwt)) }
        })
    };
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]));
    connected(&mut sub).await;

    // A steady publisher across the switch and past the first JWT's expiry.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let publisher = {
        let mock = Arc::clone(&mock);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut sent = 0_usize;
            loop {
                tokio::select! {
                    _ = &mut stopped => return sent,
                    _ = tick.tick() => {
                        mock.publish_data("chat", "", sent.to_string());
                        sent += 1;
                    }
                }
            }
        })
    };
    // The first JWT's `exp` on tokio's clock, which is paused here: the
    // mock ends a stream at its credential's expiry on the same clock.
    let first_expires_at = {
        let wall_ms = mock.now_ms();
        let left = (first_exp.load(Ordering::SeqCst) * 1000).saturating_sub(wall_ms);
        tokio::time::Instant::now() + Duration::from_millis(left)
    };
    let first_expired =
        || tokio::time::Instant::now() > first_expires_at + Duration::from_millis(200);
    let (mut states, mut seen) = (Vec::new(), Vec::new());
    within(async {
        while !(renewed(&states, true) && first_expired()) {
            let (before, message) = message(&mut sub).await;
            states.extend(before);
            seen.push(text(&message));
        }
    })
    .await;
    stop.send(()).unwrap();
    let sent = publisher.await.unwrap();
    while seen.len() < sent {
        let (before, message) = message(&mut sub).await;
        states.extend(before);
        seen.push(text(&message));
    }

    assert_eq!(seen, (0..sent).map(|n| n.to_string()).collect::<Vec<_>>());
    assert_eq!(
        states
            .iter()
            .filter(|s| matches!(s, StateChange::TokenRenewed { proactive: true }))
            .count(),
        1,
        "{states:?}"
    );
    assert!(
        !states
            .iter()
            .any(|s| matches!(s, StateChange::Disconnected { .. })),
        "the old stream was never rejected: {states:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(mock.stats().open_streams, 1);
}

#[tokio::test]
async fn a_revoked_token_the_auth_source_then_refuses_ends_with_its_refusal_and_nothing_after() {
    let mock = mock().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let auth = {
        let (mock, calls) = (Arc::clone(&mock), Arc::clone(&calls));
        Auth::callback(move |_| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            // The first token is granted; once revoked, the user is refused.
            let reply = if n == 1 {
                Ok(TokenReply::Details(
                    mock.issue_token(TokenParams::default()),
                ))
            } else {
                Err(sse_client::Error::Ably(ErrorInfo::new(
                    40300,
                    403,
                    "user may no longer subscribe",
                )))
            };
            async move { reply }
        })
    };
    let mut sub = client(&mock, auth).subscribe(SubscribeOptions::new(["chat"]));
    connected(&mut sub).await;
    mock.publish_data("chat", "", "before");
    assert_eq!(text(&message(&mut sub).await.1), "before");

    // The token is revoked: its stream is cut, and it is refused with 40141
    // when the client comes back. A message published meanwhile would be
    // replayed by a resume; it must never arrive.
    mock.fail_next(
        FailNext::new(ErrorInfo::from_code(40141, "Token revoked")).target(FailTarget::Stream),
    );
    mock.drop_streams();
    mock.publish_data("chat", "", "after the revocation");
    let mut reasons = Vec::new();
    let err = loop {
        match within(sub.next()).await {
            Some(Ok(Update::State(StateChange::Disconnected { reason, .. }))) => {
                reasons.push(reason.error_info().map(|info| info.code));
            }
            Some(Err(err)) => break err,
            other => panic!("expected the end, got {other:?}"),
        }
    };

    assert_eq!(
        err.error_info().map(|info| (info.code, info.status_code)),
        Some((40300, 403))
    );
    assert!(
        within(sub.next()).await.is_none(),
        "an Err is the last item"
    );
    // The dropped stream (no Ably error), then the revoked token.
    assert_eq!(reasons, [None, Some(40141)]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
