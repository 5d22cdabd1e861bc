//! The reconnecting stream against scripted local servers: every request
//! and reconnect rule of `docs/sse-conformance.md#conformance-cases` (WPT,
//! LaunchDarkly), a module per topic; the helpers they share are here.

use std::sync::Arc;
use std::time::Duration;

use sse_client::Error;
use sse_client::sse::{Event, EventSource, Item, ReconnectOptions};

use crate::support::{ScriptServer, within};

mod last_event_id;
mod lifecycle;
mod reconnection;
mod responses;

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
