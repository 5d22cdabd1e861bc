//! Waiting with a bound: the shared waits of `test-support` ([`within_named`],
//! [`eventually`], [`patience`]) and the subscription helpers built on them.

use shared::message::Payload;
use sse_client::ably::{ChannelMessage, StateChange, Subscription, Update};

pub use test_support::{eventually, patience, within_named};

/// The subscription's next item, which must exist.
///
/// # Panics
///
/// If the subscription ended (an `Err` is always followed by the end, so an
/// end here means the previous item was already an error), or on timeout.
pub async fn next_update(sub: &mut Subscription) -> sse_client::Result<Update> {
    within_named("the next update of the subscription", sub.next())
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
    let after = within_named("the end of the subscription", sub.next()).await;
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
