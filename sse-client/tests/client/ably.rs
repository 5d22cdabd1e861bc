//! The Ably layer against a purpose-built local server that emits the frames
//! of `docs/protocol.md#sse-framing` and the error envelopes of
//! `docs/protocol.md#errors`, a module per topic; the helpers they share are
//! here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use shared::ErrorInfo;
use shared::message::Payload;
use sse_client::Error;
use sse_client::ably::{
    Auth, AuthUrl, ChannelMessage, Client, StateChange, SubscribeOptions, Subscription, Update,
};
use sse_client::sse::ReconnectOptions;

use crate::support::{Recorded, Script, ScriptServer, within};

mod decoding;
mod renewal;
mod resume;
mod token_source;

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

fn reason(state: &StateChange) -> &Error {
    match state {
        StateChange::Disconnected { reason, .. } => reason,
        other => panic!("expected disconnected, got {other:?}"),
    }
}
