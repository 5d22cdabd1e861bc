//! Turning published messages into stored ones (`docs/protocol.md#publishing`):
//! wire encoding, ids, clientIds, timestamps, size limits.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use serde_json::Value;
use shared::{Message, codes};

use crate::auth::Principal;
use crate::channel::StoredMessage;
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, lock, random_id};

/// Ably's default maximum message size, 64 KiB (`docs/protocol.md#error-codes`,
/// 40009).
pub(crate) const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Who is publishing: `None` for the handle's own `publish`, which may do
/// anything.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Publisher<'a> {
    pub(crate) principal: &'a Principal,
    /// The clientId the request acts as (see [`Principal::identify`]).
    pub(crate) identity: Option<&'a str>,
}

/// Puts `messages` in the form the mock stores and delivers:
///
/// - `data` that is an object or array becomes JSON text with `json`
///   appended to `encoding`; numbers and booleans are refused (40013);
/// - `data` whose encoding ends in `base64` must be valid base64 (40013);
/// - the clientId is checked against the publisher (40012, 40102) and filled
///   in from its identity;
/// - a message without `id` gets `<random>:<index>`, as ably-js's
///   idempotent ids look;
/// - `timestamp` defaults to now;
/// - fields a publisher may not set (`channel`, `connectionId`,
///   `connectionKey`, `serial`, `action`, `version`, `annotations`) are
///   dropped.
///
/// # Errors
///
/// As above, and 40009 when the messages together exceed 64 KiB.
pub(crate) fn prepare(
    messages: Vec<Message>,
    publisher: Option<Publisher<'_>>,
    now_ms: u64,
) -> ApiResult<Vec<Message>> {
    let batch = random_id(9);
    let mut size = 0;
    let mut prepared = Vec::with_capacity(messages.len());
    for (index, mut message) in messages.into_iter().enumerate() {
        message.encode_data()?;
        check_base64(&message)?;
        if let Some(publisher) = publisher {
            message.client_id = publisher
                .principal
                .message_client_id(publisher.identity, message.client_id.take())?;
        } else if message.client_id.as_deref() == Some("") {
            return Err(ApiError::new(
                codes::INVALID_CLIENT_ID,
                "clientId can't be an empty string",
            ));
        }
        message.timestamp.get_or_insert(now_ms);
        message.id.get_or_insert_with(|| format!("{batch}:{index}"));
        message.channel = None;
        message.connection_id = None;
        message.connection_key = None;
        message.serial = None;
        message.action = None;
        message.version = None;
        message.annotations = None;
        size += message_size(&message);
        prepared.push(message);
    }
    if size > MAX_MESSAGE_SIZE {
        return Err(ApiError::new(
            codes::MESSAGE_TOO_LARGE,
            format!(
                "Maximum size of messages that can be published at once exceeded ({size} > {MAX_MESSAGE_SIZE} bytes)"
            ),
        ));
    }
    Ok(prepared)
}

/// Stores prepared messages on `channel` and fans them out.
pub(crate) fn store(
    state: &AppState,
    channel: &str,
    messages: Vec<Message>,
) -> Vec<Arc<StoredMessage>> {
    let now = state.clock.now_ms();
    lock(&state.registry).publish(&state.settings, channel, messages, now)
}

/// The size Ably counts: name, data, clientId and extras.
fn message_size(message: &Message) -> usize {
    let text_len = |value: &Option<Value>| match value {
        Some(Value::String(text)) => text.len(),
        Some(other) => other.to_string().len(),
        None => 0,
    };
    message.name.as_ref().map_or(0, String::len)
        + text_len(&message.data)
        + message.client_id.as_ref().map_or(0, String::len)
        + message
            .extras
            .as_ref()
            .map_or(0, |extras| Value::Object(extras.clone()).to_string().len())
}

fn check_base64(message: &Message) -> ApiResult<()> {
    let ends_in_base64 = message
        .encoding
        .as_deref()
        .is_some_and(|encoding| encoding.rsplit('/').next() == Some("base64"));
    if !ends_in_base64 {
        return Ok(());
    }
    match &message.data {
        Some(Value::String(text)) if STANDARD_PAD_INDIFFERENT.decode(text).is_ok() => Ok(()),
        None => Ok(()),
        _ => Err(ApiError::new(
            codes::INVALID_MESSAGE_DATA,
            "Message data is not valid base64 but its encoding says base64",
        )),
    }
}
