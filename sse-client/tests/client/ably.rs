//! The Ably layer against a purpose-built local server that emits the frames
//! of `docs/protocol.md#sse-framing` and the error envelopes of
//! `docs/protocol.md#errors`: renewal on error events and on 401 responses, the
//! wrong-secret loop cut off, proactive renewal, 5xx retry, resume without loss
//! or duplicates, rewind, deltas, unenveloped mode, and every way of getting a
//! token.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use shared::message::{DeltaExtras, Message, Payload};
use shared::{ApiKey, ErrorInfo, TokenDetails, TokenParams, TokenRequest, vcdiff};
use sse_client::Error;
use sse_client::ably::{
    Auth, AuthMethod, AuthUrl, ChannelMessage, Client, StateChange, SubscribeOptions, Subscription,
    TokenReply, Update,
};
use sse_client::sse::ReconnectOptions;

use crate::support::{Recorded, Script, ScriptServer, within};

/// A message frame as Ably sends it (`docs/protocol.md#sse-framing`).
fn message_frame(event_id: &str, message: &Value) -> String {
    format!("id: {event_id}\nevent: message\ndata: {message}\n\n")
}

/// `{"id", "channel", "data"}`: a string message.
fn text_message(id: &str, data: &str) -> Value {
    json!({"id": id, "channel": "ch", "name": "n", "data": data, "timestamp": 1})
}

/// An `error` event carrying a bare ErrorInfo
/// (`docs/protocol.md#error-events`).
fn error_frame(code: u32) -> String {
    let info = ErrorInfo::from_code(code, format!("error {code}"));
    format!(
        "event: error\ndata: {}\n\n",
        serde_json::to_string(&info).unwrap()
    )
}

fn sse(frames: &[String]) -> Script {
    let body: String = frames.concat();
    Script::sse(&[body.as_bytes()])
}

/// An error response before the stream, as Ably sends it
/// (`docs/protocol.md#the-error-envelope`).
fn rejection(code: u32) -> Script {
    let info = ErrorInfo::from_code(code, format!("error {code}"));
    Script::status(info.status_code)
        .header("content-type", "application/json")
        .header("x-ably-errorcode", &code.to_string())
        .body(&serde_json::to_string(&info.into_response()).unwrap())
}

/// An auth URL at `/auth` that hands out `T1`, `T2`… as `text/plain`.
fn token_route(calls: &Arc<AtomicUsize>) -> Router {
    let calls = Arc::clone(calls);
    Router::new().route(
        "/auth",
        get(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { ([("content-type", "text/plain")], format!("T{n}")) }
        }),
    )
}

fn fast() -> ReconnectOptions {
    ReconnectOptions::default()
        .initial_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(50))
        .jitter(false)
}

struct Fixture {
    server: ScriptServer,
    auth_calls: Arc<AtomicUsize>,
}

impl Fixture {
    async fn start(scripts: Vec<Script>) -> Self {
        let auth_calls = Arc::new(AtomicUsize::new(0));
        let server = ScriptServer::start_with(
            scripts,
            Script::sse(&[b""]).hang(),
            token_route(&auth_calls),
        )
        .await;
        Self { server, auth_calls }
    }

    fn client(&self) -> sse_client::ably::ClientBuilder {
        Client::builder()
            .endpoint(self.server.url(""))
            .auth(Auth::auth_url(
                AuthUrl::new(&self.server.url("/auth")).unwrap(),
            ))
            .reconnect(fast())
    }

    fn subscribe(&self, options: SubscribeOptions) -> Subscription {
        self.client().build().unwrap().subscribe(options)
    }

    fn auth_calls(&self) -> usize {
        self.auth_calls.load(Ordering::SeqCst)
    }
}

async fn next_update(sub: &mut Subscription) -> Update {
    match within(sub.next()).await {
        Some(Ok(update)) => update,
        other => panic!("expected an update, got {other:?}"),
    }
}

async fn next_message(sub: &mut Subscription) -> ChannelMessage {
    loop {
        match next_update(sub).await {
            Update::Message(message) => return message,
            Update::State(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// The state changes up to the next message, and that message.
async fn states_then_message(sub: &mut Subscription) -> (Vec<StateChange>, ChannelMessage) {
    let mut states = Vec::new();
    loop {
        match next_update(sub).await {
            Update::Message(message) => return (states, message),
            Update::State(state) => states.push(state),
            other => panic!("{other:?}"),
        }
    }
}

async fn fatal(sub: &mut Subscription) -> Error {
    loop {
        match within(sub.next()).await {
            Some(Ok(Update::State(_))) => {}
            Some(Err(err)) => {
                assert!(
                    within(sub.next()).await.is_none(),
                    "an Err is the last item"
                );
                return err;
            }
            other => panic!("expected a fatal error, got {other:?}"),
        }
    }
}

fn text(message: &ChannelMessage) -> &str {
    match &message.payload {
        Some(Payload::Text(text)) => text,
        other => panic!("expected text, got {other:?}"),
    }
}

fn names(states: &[StateChange]) -> Vec<&'static str> {
    states
        .iter()
        .map(|state| match state {
            StateChange::Connected => "connected",
            StateChange::Disconnected { .. } => "disconnected",
            StateChange::TokenRenewed { proactive: true } => "renewed early",
            StateChange::TokenRenewed { proactive: false } => "renewed",
            StateChange::ContinuityLost => "continuity lost",
            _ => "other",
        })
        .collect()
}

async fn sse_request(server: &mut ScriptServer) -> Recorded {
    let request = server.request().await;
    assert_eq!(request.path(), "/sse", "{request:?}");
    request
}

#[tokio::test]
async fn subscribes_with_the_documented_url_and_decodes_messages() {
    let json_message = json!({"id": "m1", "channel": "ch", "name": "greeting", "data": "{\"foo\":1}", "encoding": "json", "clientId": "alice", "timestamp": 1556806691343_u64});
    let mut f = Fixture::start(vec![sse(&[
        ":keepalive\n".to_owned(),
        message_frame("e1", &json_message),
    ])])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch", "other,chan"]).heartbeats(true));

    let (states, message) = states_then_message(&mut sub).await;

    assert_eq!(names(&states), ["connected"]);
    assert_eq!(message.payload, Some(Payload::Json(json!({"foo": 1}))));
    assert_eq!(message.channel.as_deref(), Some("ch"));
    assert_eq!(message.event_id, "e1");
    assert_eq!(message.message.client_id.as_deref(), Some("alice"));
    assert_eq!(sub.cursor(), Some("e1"));
    let request = sse_request(&mut f.server).await;
    assert_eq!(request.query("v").as_deref(), Some("1.2"));
    assert_eq!(request.query("channels").as_deref(), Some("ch|other,chan"));
    assert_eq!(request.query("separator").as_deref(), Some("|"));
    assert_eq!(request.query("accessToken").as_deref(), Some("T1"));
    assert_eq!(request.query("heartbeats").as_deref(), Some("true"));
    assert_eq!(request.query("lastEvent"), None);
    assert_eq!(request.header("accept"), Some("text/event-stream"));
}

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

fn delta_frame(event_id: &str, id: &str, from: &str, base: &[u8], target: &[u8]) -> String {
    let mut message: Message = serde_json::from_value(json!({
        "id": id,
        "channel": "ch",
        "data": base64::engine::general_purpose::STANDARD.encode(vcdiff::encode(base, target)),
        "encoding": "json/utf-8/vcdiff/base64",
    }))
    .unwrap();
    message.set_delta(DeltaExtras::vcdiff(from));
    message_frame(event_id, &serde_json::to_value(&message).unwrap())
}

fn json_frame(event_id: &str, id: &str, data: &str) -> String {
    message_frame(
        event_id,
        &json!({"id": id, "channel": "ch", "data": data, "encoding": "json"}),
    )
}

#[tokio::test]
async fn deltas_are_applied_and_a_bad_one_resumes_from_the_last_good_message() {
    let (s1, s2, s3) = (r#"{"score":1}"#, r#"{"score":2}"#, r#"{"score":3}"#);
    let mut f = Fixture::start(vec![
        sse(&[
            json_frame("e1", "m1", s1),
            delta_frame("e2", "m2", "m1", s1.as_bytes(), s2.as_bytes()),
            // Against a base we never had: must not be delivered.
            delta_frame("e3", "m3", "m9", s2.as_bytes(), s3.as_bytes()),
        ]),
        // After the resume, a full message first
        // (`docs/protocol.md#deltas-after-a-resume`).
        sse(&[json_frame("e3", "m3", s3)]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]).delta(true));

    let mut scores = Vec::new();
    for _ in 0..3 {
        let message = next_message(&mut sub).await;
        scores.push(message.payload.unwrap());
    }

    assert_eq!(
        scores,
        [1, 2, 3].map(|n| Payload::Json(json!({"score": n})))
    );
    assert_eq!(
        sse_request(&mut f.server).await.query("delta").as_deref(),
        Some("vcdiff")
    );
    assert_eq!(
        sse_request(&mut f.server)
            .await
            .query("lastEvent")
            .as_deref(),
        Some("e2")
    );
}

#[tokio::test]
async fn a_delta_that_does_not_name_its_base_is_not_applied_and_resumes() {
    let (s1, s2) = (r#"{"score":1}"#, r#"{"score":2}"#);
    let unchecked = message_frame(
        "e2",
        &json!({
            "id": "m2",
            "channel": "ch",
            "data": base64::engine::general_purpose::STANDARD
                .encode(vcdiff::encode(s1.as_bytes(), s2.as_bytes())),
            "encoding": "json/utf-8/vcdiff/base64",
        }),
    );
    let mut f = Fixture::start(vec![
        sse(&[json_frame("e1", "m1", s1), unchecked]),
        sse(&[json_frame("e2", "m2", s2)]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]).delta(true));

    let first = next_message(&mut sub).await;
    let (states, second) = states_then_message(&mut sub).await;

    assert_eq!(first.payload, Some(Payload::Json(json!({"score": 1}))));
    assert_eq!(second.payload, Some(Payload::Json(json!({"score": 2}))));
    assert_eq!(names(&states), ["disconnected", "connected"]);
    assert!(
        matches!(reason(&states[0]), Error::Decode(_)),
        "{:?}",
        states[0]
    );
    sse_request(&mut f.server).await;
    let resumed = sse_request(&mut f.server).await;
    assert_eq!(resumed.query("lastEvent").as_deref(), Some("e1"));
}

#[tokio::test]
async fn unenveloped_payloads_and_deltas_are_decoded() {
    let first = r#"{"n":1}"#;
    let delta = base64::engine::general_purpose::STANDARD
        .encode(vcdiff::encode(first.as_bytes(), br#"{"n":2}"#));
    let mut f = Fixture::start(vec![sse(&[
        format!("id: e1\nevent: message\ndata: {first}\n\n"),
        format!("id: e2\nevent: message\ndata: {delta}\n\n"),
    ])])
    .await;
    let mut sub = f.subscribe(
        SubscribeOptions::new(["[?rewind=1]ch"])
            .enveloped(false)
            .delta(true),
    );

    let one = next_message(&mut sub).await;
    let two = next_message(&mut sub).await;

    assert_eq!(text(&one), first);
    assert_eq!(text(&two), r#"{"n":2}"#);
    assert_eq!(two.channel.as_deref(), Some("ch"));
    assert_eq!(two.event_id, "e2");
    let request = sse_request(&mut f.server).await;
    assert_eq!(request.query("enveloped").as_deref(), Some("false"));
    assert_eq!(request.query("channels").as_deref(), Some("[?rewind=1]ch"));
}

#[tokio::test]
async fn a_message_that_never_decodes_is_skipped_after_three_tries_with_continuity_lost() {
    let poison = message_frame(
        "e2",
        &json!({"id": "m2", "channel": "ch", "data": "not json", "encoding": "json"}),
    );
    let mut f = Fixture::start(vec![
        sse(&[
            message_frame("e1", &text_message("m1", "one")),
            poison.clone(),
        ]),
        sse(std::slice::from_ref(&poison)),
        sse(std::slice::from_ref(&poison)),
        sse(&[message_frame("e3", &text_message("m3", "three"))]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]).rewind(5));

    assert_eq!(text(&next_message(&mut sub).await), "one");
    let (states, after) = states_then_message(&mut sub).await;

    assert_eq!(text(&after), "three");
    assert_eq!(
        names(&states),
        [
            "disconnected",
            "connected",
            "disconnected",
            "connected",
            "disconnected",
            "continuity lost",
            "connected"
        ]
    );
    for state in states
        .iter()
        .filter(|s| matches!(s, StateChange::Disconnected { .. }))
    {
        assert!(matches!(reason(state), Error::Decode(_)), "{state:?}");
    }
    let first = sse_request(&mut f.server).await;
    assert_eq!(first.query("rewind").as_deref(), Some("5"));
    for _ in 0..2 {
        let resumed = sse_request(&mut f.server).await;
        assert_eq!(resumed.query("lastEvent").as_deref(), Some("e1"));
    }
    // Fresh: neither the resume point nor a backlog that holds the message.
    let fresh = sse_request(&mut f.server).await;
    assert_eq!(
        (fresh.query("lastEvent"), fresh.query("rewind")),
        (None, None)
    );
}

#[tokio::test]
async fn a_bad_unenveloped_delta_is_never_delivered_and_the_stream_resumes() {
    let (first, second) = (r#"{"n":1}"#, r#"{"n":2}"#);
    // Made against a base we never had, copying from past the end of ours:
    // it cannot apply.
    let bad = base64::engine::general_purpose::STANDARD.encode(vcdiff::encode(
        br#"{"a long prefix that the delta copies":1}"#,
        br#"{"a long prefix that the delta copies":2}"#,
    ));
    let frame = |id: &str, data: &str| format!("id: {id}\nevent: message\ndata: {data}\n\n");
    let mut f = Fixture::start(vec![
        sse(&[frame("e1", first), frame("e2", &bad)]),
        // The resumed stream starts with a full payload
        // (`docs/protocol.md#asking-for-deltas`).
        sse(&[frame("e2", second)]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]).enveloped(false).delta(true));

    let one = next_message(&mut sub).await;
    let (states, two) = states_then_message(&mut sub).await;

    assert_eq!((text(&one), one.event_id.as_str()), (first, "e1"));
    assert_eq!((text(&two), two.event_id.as_str()), (second, "e2"));
    assert_eq!(names(&states), ["disconnected", "connected"]);
    assert!(
        matches!(reason(&states[0]), Error::Decode(_)),
        "{:?}",
        states[0]
    );
    assert_eq!(sse_request(&mut f.server).await.query("lastEvent"), None);
    let resumed = sse_request(&mut f.server).await;
    assert_eq!(resumed.query("lastEvent").as_deref(), Some("e1"));
    assert_eq!(resumed.query("delta").as_deref(), Some("vcdiff"));
}

#[tokio::test]
async fn without_deltas_an_unenveloped_payload_that_looks_like_one_is_delivered_as_is() {
    let looks_like_a_delta =
        base64::engine::general_purpose::STANDARD.encode(vcdiff::encode(b"", b"text"));
    assert!(looks_like_a_delta.starts_with("1sPE"));
    let f = Fixture::start(vec![sse(&[format!(
        "id: e1\nevent: message\ndata: {looks_like_a_delta}\n\n"
    )])])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["a", "b"]).enveloped(false));

    let message = next_message(&mut sub).await;

    assert_eq!(text(&message), looks_like_a_delta);
}

#[tokio::test]
async fn unenveloped_deltas_on_several_channels_are_refused_before_any_request() {
    let mut f = Fixture::start(vec![]).await;
    let mut sub = f.subscribe(
        SubscribeOptions::new(["a", "b"])
            .enveloped(false)
            .delta(true),
    );

    let err = fatal(&mut sub).await;

    assert!(
        matches!(&err, Error::Config(text) if text.contains("single channel")),
        "{err:?}"
    );
    assert_eq!(f.auth_calls(), 0);
    assert!(f.server.pending_requests().is_empty());
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

#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
async fn an_api_key_is_sent_as_basic_auth() {
    let mut f = Fixture::start(vec![]).await;
    let client = Client::builder()
        .endpoint(f.server.url(""))
        .auth(Auth::key(ApiKey::parse("app.key:secret").unwrap()))
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

    next_update(&mut sub).await;

    let request = sse_request(&mut f.server).await;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("app.key:secret")
    );
    assert_eq!(request.header("authorization"), Some(expected.as_str()));
    assert_eq!(request.query("accessToken"), None);
}

/// An auth server that answers with `content_type` and `body`, plus a
/// requestToken endpoint that issues `EXCHANGED`.
async fn auth_reply_server(
    content_type: Option<&'static str>,
    body: String,
) -> (
    ScriptServer,
    Arc<std::sync::Mutex<Vec<(HeaderMap, String)>>>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let routes = Router::new()
        .route(
            "/auth",
            get({
                let body = body.clone();
                let record = Arc::clone(&record);
                move |headers: HeaderMap, uri: axum::http::Uri| {
                    record.lock().unwrap().push((headers, uri.to_string()));
                    let body = body.clone();
                    async move {
                        let mut response =
                            axum::response::Response::new(axum::body::Body::from(body));
                        if let Some(content_type) = content_type {
                            response
                                .headers_mut()
                                .insert("content-type", content_type.parse().unwrap());
                        }
                        response
                    }
                }
            })
            .post(move |headers: HeaderMap, form: String| {
                record.lock().unwrap().push((headers, form));
                async move { ([("content-type", "application/jwt")], "posted-token") }
            }),
        )
        .route(
            "/keys/{key}/requestToken",
            post(|Path(key): Path<String>, body: String| async move {
                let request: TokenRequest = serde_json::from_str(&body).unwrap();
                assert_eq!(request.key_name, key);
                let details = TokenDetails {
                    token: "EXCHANGED".into(),
                    key_name: Some(key),
                    issued: 1,
                    expires: 0,
                    capability: None,
                    client_id: None,
                };
                (
                    axum::http::StatusCode::CREATED,
                    [("content-type", "application/json")],
                    serde_json::to_string(&details).unwrap(),
                )
            }),
        );
    let server = ScriptServer::start_with(vec![], Script::sse(&[b""]).hang(), routes).await;
    (server, seen)
}

async fn token_used(server: &mut ScriptServer, auth: Auth) -> Result<String, Error> {
    let client = Client::builder()
        .endpoint(server.url(""))
        .auth(auth)
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));
    match within(sub.next()).await {
        Some(Ok(Update::State(StateChange::Connected))) => {}
        Some(Err(err)) => return Err(err),
        other => panic!("{other:?}"),
    }
    Ok(sse_request(server).await.query("accessToken").unwrap())
}

#[tokio::test]
async fn auth_url_replies_are_read_by_content_type_like_ably_js() {
    let key = ApiKey::parse("app.key:secret").unwrap();
    let token_request =
        TokenRequest::new_signed(&key, TokenParams::default(), 1_700_000_000_000).unwrap();
    let cases = [
        (
            Some("application/jwt"),
            "a.jwt.token".to_owned(),
            "a.jwt.token",
        ),
        (
            Some("text/plain; charset=utf-8"),
            "plain-token\n".to_owned(),
            "plain-token",
        ),
        (
            Some("application/json"),
            json!({"token": "DETAILS", "issued": 1, "expires": 0}).to_string(),
            "DETAILS",
        ),
        (
            Some("application/json; charset=utf-8"),
            serde_json::to_string(&token_request).unwrap(),
            "EXCHANGED",
        ),
        // A JSON string is the token itself, as ably-js's JSON.parse makes it.
        (
            Some("application/json"),
            json!("json.string.token").to_string(),
            "json.string.token",
        ),
    ];
    for (content_type, body, expected) in cases {
        let (mut server, _) = auth_reply_server(content_type, body).await;
        let auth = Auth::auth_url(AuthUrl::new(&server.url("/auth")).unwrap());

        let token = token_used(&mut server, auth).await.unwrap();

        assert_eq!(token, expected, "{content_type:?}");
    }
}

#[tokio::test]
async fn unusable_auth_url_replies_fail_with_40170() {
    let token_request =
        json!({"keyName": "a.b", "timestamp": 1, "nonce": "0123456789abcdef", "mac": "m"});
    for (content_type, body) in [
        (None, "token".to_owned()),
        (Some("text/plain"), token_request.to_string()),
        (Some("text/html"), "<html>".to_owned()),
        (Some("text/plain"), String::new()),
        // A TokenRequest encoded twice: a JSON string holding JSON.
        (
            Some("application/json"),
            json!(token_request.to_string()).to_string(),
        ),
        (Some("application/json"), json!("null").to_string()),
        (Some("application/json"), "42".to_owned()),
    ] {
        let (mut server, _) = auth_reply_server(content_type, body).await;
        let auth = Auth::auth_url(AuthUrl::new(&server.url("/auth")).unwrap());

        let err = token_used(&mut server, auth).await.unwrap_err();

        assert_eq!(
            err.error_info().map(|i| i.code),
            Some(40170),
            "{content_type:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn auth_url_get_and_post_carry_headers_and_params() {
    let (mut server, seen) = auth_reply_server(Some("text/plain"), "t".to_owned()).await;
    let get_auth = AuthUrl::new(&server.url("/auth?fromUrl=1"))
        .unwrap()
        .header("Authorization", "Bearer user-jwt")
        .unwrap()
        .param("room", "r1");
    let post_auth = get_auth.clone().method(AuthMethod::Post);

    token_used(&mut server, Auth::auth_url(get_auth))
        .await
        .unwrap();
    let posted = token_used(&mut server, Auth::auth_url(post_auth))
        .await
        .unwrap();

    let seen = seen.lock().unwrap();
    let (get_headers, get_uri) = &seen[0];
    assert_eq!(get_uri, "/auth?fromUrl=1&room=r1");
    assert_eq!(get_headers["authorization"], "Bearer user-jwt");
    assert_eq!(get_headers["accept"], "application/json, text/plain");
    let (post_headers, form) = &seen[1];
    assert_eq!(form, "room=r1");
    assert_eq!(
        post_headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(post_headers["authorization"], "Bearer user-jwt");
    assert_eq!(posted, "posted-token");
}

#[tokio::test]
async fn auth_params_replace_same_named_parameters_and_the_last_one_wins() {
    let (mut server, seen) = auth_reply_server(Some("text/plain"), "t".to_owned()).await;
    let get_auth = AuthUrl::new(&server.url("/auth?room=old&fromUrl=1&room=older"))
        .unwrap()
        .param("room", "r1")
        .param("extra", "a")
        .param("extra", "b");
    let post_auth = get_auth.clone().method(AuthMethod::Post);

    token_used(&mut server, Auth::auth_url(get_auth))
        .await
        .unwrap();
    token_used(&mut server, Auth::auth_url(post_auth))
        .await
        .unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].1, "/auth?room=r1&fromUrl=1&extra=b");
    assert_eq!(seen[1].1, "room=r1&extra=b");
}

#[tokio::test]
async fn an_auth_url_error_envelope_is_read_only_from_exactly_application_json() {
    let envelope =
        serde_json::to_string(&ErrorInfo::from_code(40400, "no such user").into_response())
            .unwrap();
    let cases = [
        ("application/json", None, (40400, 404, "no such user")),
        // ably-js (Node) reads the body only for exactly application/json.
        (
            "application/json; charset=utf-8",
            None,
            (40170, 404, "authUrl responded with HTTP 404"),
        ),
        (
            "text/html",
            None,
            (40170, 404, "authUrl responded with HTTP 404"),
        ),
        // The header is read whatever the type.
        ("text/html", Some("40160"), (40160, 404, "HTTP 404")),
    ];
    for (content_type, code_header, expected) in cases {
        let envelope = envelope.clone();
        let routes = Router::new().route(
            "/auth",
            get(move || async move {
                let mut response = (axum::http::StatusCode::NOT_FOUND, envelope).into_response();
                let headers = response.headers_mut();
                headers.insert("content-type", content_type.parse().unwrap());
                if let Some(code) = code_header {
                    headers.insert("x-ably-errorcode", code.parse().unwrap());
                }
                response
            }),
        );
        let mut server = ScriptServer::start_with(vec![], Script::status(500), routes).await;
        let auth = Auth::auth_url(AuthUrl::new(&server.url("/auth")).unwrap());

        let err = token_used(&mut server, auth).await.unwrap_err();

        let info = err.error_info().expect("an Ably error");
        assert_eq!(
            (info.code, info.status_code, info.message.as_str()),
            expected,
            "{content_type} {code_header:?}"
        );
    }
}

#[tokio::test]
async fn a_callback_may_return_a_token_details_or_a_request() {
    let (mut server, _) = auth_reply_server(Some("text/plain"), String::new()).await;
    let key = ApiKey::parse("app.key:secret").unwrap();
    let callbacks = [
        Auth::callback(|_| async { Ok(TokenReply::Token("CB".into())) }),
        Auth::callback(|_| async {
            let details: TokenDetails =
                serde_json::from_value(json!({"token": "CBD", "issued": 1, "expires": 0})).unwrap();
            Ok(TokenReply::Details(details))
        }),
        Auth::callback(move |params| {
            let request = TokenRequest::new_signed(&key, params, 1_700_000_000_000).unwrap();
            async move { Ok(TokenReply::Request(request)) }
        }),
    ];

    let mut tokens = Vec::new();
    for auth in callbacks {
        tokens.push(token_used(&mut server, auth).await.unwrap());
    }

    assert_eq!(tokens, ["CB", "CBD", "EXCHANGED"]);
}

#[tokio::test]
async fn a_callback_string_holding_json_is_refused_as_double_encoded() {
    let (mut server, _) = auth_reply_server(Some("text/plain"), String::new()).await;
    let details = json!({"token": "CBD", "issued": 1, "expires": 0}).to_string();
    let auth = Auth::callback(move |_| {
        let details = details.clone();
        async move { Ok(TokenReply::Token(details)) }
    });

    let err = token_used(&mut server, auth).await.unwrap_err();

    let info = err.error_info().expect("an Ably error");
    assert_eq!((info.code, info.status_code), (40170, 401));
    assert!(info.message.contains("double-encoded"), "{info:?}");
    assert!(server.pending_requests().is_empty(), "no stream was opened");
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

fn reason(state: &StateChange) -> &Error {
    match state {
        StateChange::Disconnected { reason, .. } => reason,
        other => panic!("expected disconnected, got {other:?}"),
    }
}

#[tokio::test]
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

/// A server whose `/auth` (text/plain `T1`, `T2`…) and `requestToken`
/// (`EXCHANGED`) stall on their first call and answer every later one.
async fn first_auth_call_stalls() -> ScriptServer {
    let auth_calls = Arc::new(AtomicUsize::new(0));
    let exchanges = Arc::new(AtomicUsize::new(0));
    let routes = Router::new()
        .route(
            "/auth",
            get(move || {
                let n = auth_calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n == 1 {
                        std::future::pending::<()>().await;
                    }
                    ([("content-type", "text/plain")], format!("T{n}"))
                }
            }),
        )
        .route(
            "/keys/{key}/requestToken",
            post(move || {
                let n = exchanges.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n == 1 {
                        std::future::pending::<()>().await;
                    }
                    let details = json!({"token": "EXCHANGED", "issued": 1, "expires": 0});
                    ([("content-type", "application/json")], details.to_string())
                }
            }),
        );
    ScriptServer::start_with(vec![], Script::sse(&[b""]).hang(), routes).await
}

#[tokio::test]
async fn auth_url_request_token_and_callback_steps_time_out_and_are_retried() {
    let key = ApiKey::parse("app.key:secret").unwrap();
    let callback_calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&callback_calls);
    let stalling_callback = Auth::callback(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n == 1 {
                std::future::pending::<()>().await;
            }
            Ok(TokenReply::Token(format!("CB{n}")))
        }
    });
    let request_callback = Auth::callback(move |params| {
        let request = TokenRequest::new_signed(&key, params, 1_700_000_000_000).unwrap();
        async move { Ok(TokenReply::Request(request)) }
    });

    for (case, expected) in [
        ("auth URL", "T2"),
        ("callback", "CB2"),
        ("requestToken", "EXCHANGED"),
    ] {
        let mut server = first_auth_call_stalls().await;
        let auth = match case {
            "auth URL" => Auth::auth_url(AuthUrl::new(&server.url("/auth")).unwrap()),
            "callback" => stalling_callback.clone(),
            _ => request_callback.clone(),
        };
        let client = Client::builder()
            .endpoint(server.url(""))
            .auth(auth)
            .reconnect(fast())
            .auth_timeout(Some(Duration::from_millis(100)))
            .build()
            .unwrap();
        let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

        let first = next_update(&mut sub).await;
        let second = next_update(&mut sub).await;

        let Update::State(first) = first else {
            panic!("{case}: {first:?}")
        };
        let reason = reason(&first);
        assert!(
            matches!(reason, Error::AuthTimeout(limit) if *limit == Duration::from_millis(100)),
            "{case}: {reason:?}"
        );
        assert!(
            matches!(second, Update::State(StateChange::Connected)),
            "{case}: {second:?}"
        );
        let request = sse_request(&mut server).await;
        assert_eq!(
            request.query("accessToken").as_deref(),
            Some(expected),
            "{case}"
        );
    }
}
