//! Waiting with a bound: [`within`] and the subscription helpers built on it.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use shared::message::Payload;
use sse_client::ably::{ChannelMessage, StateChange, Subscription, Update};

/// The default of `TEST_PATIENCE_MS`: generous, since a wait that ends well
/// ends in milliseconds, and a loaded CI machine is slow.
const DEFAULT_PATIENCE: Duration = Duration::from_secs(10);

static PATIENCE: LazyLock<Duration> = LazyLock::new(|| match std::env::var("TEST_PATIENCE_MS") {
    Ok(text) => Duration::from_millis(text.trim().parse().unwrap_or_else(|_| {
        panic!("TEST_PATIENCE_MS must be a whole number of milliseconds, got {text:?}")
    })),
    Err(_) => DEFAULT_PATIENCE,
});

/// How long any single wait may take: `TEST_PATIENCE_MS`, default 10 s.
///
/// # Panics
///
/// If `TEST_PATIENCE_MS` is set but not a whole number.
pub fn patience() -> Duration {
    *PATIENCE
}

/// Awaits `future`, failing the test if it takes longer than [`patience`].
///
/// # Panics
///
/// On timeout, naming `what` was awaited.
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    let patience = patience();
    tokio::time::timeout(patience, future)
        .await
        .unwrap_or_else(|_| {
            panic!("timed out after {patience:?} waiting for {what} (a slow machine may need a larger TEST_PATIENCE_MS)")
        })
}

/// Waits until `check` is true, checking every 10 ms: for what a test can
/// only observe from outside, such as a server noticing a closed socket.
///
/// # Panics
///
/// If `check` is still false after [`patience`], naming `what`.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// The subscription's next item, which must exist.
///
/// # Panics
///
/// If the subscription ended (an `Err` is always followed by the end, so an
/// end here means the previous item was already an error), or on timeout.
pub async fn next_update(sub: &mut Subscription) -> sse_client::Result<Update> {
    within("the next update of the subscription", sub.next())
        .await
        .expect("the subscription ended")
}

/// Reads state changes up to and including the next
/// [`StateChange::Connected`]; returns the ones before it.
///
/// # Panics
///
/// On a message, an error or a timeout.
pub async fn connected(sub: &mut Subscription) -> Vec<StateChange> {
    let mut before = Vec::new();
    loop {
        match next_update(sub).await {
            Ok(Update::State(StateChange::Connected)) => return before,
            Ok(Update::State(state)) => before.push(state),
            other => panic!("expected to connect, got {other:?} after {before:?}"),
        }
    }
}

/// The next message, and the state changes that came before it.
///
/// # Panics
///
/// On an error or a timeout.
pub async fn next_message(sub: &mut Subscription) -> (Vec<StateChange>, ChannelMessage) {
    let mut before = Vec::new();
    loop {
        match next_update(sub).await {
            Ok(Update::Message(message)) => return (before, message),
            Ok(Update::State(state)) => before.push(state),
            Err(err) => panic!("expected a message, got the error {err:?} after {before:?}"),
            Ok(other) => panic!("unexpected update {other:?}"),
        }
    }
}

/// The error that ends the subscription, and the state changes before it;
/// checks that nothing follows it.
///
/// # Panics
///
/// On a message, a timeout, or an item after the error.
pub async fn final_error(sub: &mut Subscription) -> (Vec<StateChange>, sse_client::Error) {
    let mut before = Vec::new();
    let err = loop {
        match next_update(sub).await {
            Err(err) => break err,
            Ok(Update::State(state)) => before.push(state),
            Ok(other) => panic!("expected the subscription to fail, got {other:?}"),
        }
    };
    let after = within("the end of the subscription", sub.next()).await;
    assert!(
        after.is_none(),
        "{after:?} came after the final error {err:?}"
    );
    (before, err)
}

/// A message's payload as text: text as it is, JSON serialised.
///
/// # Panics
///
/// If the message has no payload or a binary one.
pub fn text(message: &ChannelMessage) -> String {
    match &message.payload {
        Some(Payload::Text(text)) => text.clone(),
        Some(Payload::Json(value)) => value.to_string(),
        other => panic!("expected a text or JSON payload, got {other:?}"),
    }
}
