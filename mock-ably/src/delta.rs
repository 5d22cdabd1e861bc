//! `delta=vcdiff`: per stream and channel, the previous payload as the base
//! for the next one (`docs/protocol.md#deltas`).
//!
//! - The first message on a channel after any (re)connect is sent in full
//!   (`docs/protocol.md#asking-for-deltas`, and the mock's choice for resumes,
//!   `docs/protocol.md#deltas-after-a-resume`).
//! - After that each message is encoded against the previous one sent on
//!   that channel on this stream, with [`shared::vcdiff::encode`], and the
//!   delta is sent only when its base64 is shorter than the full `data`.
//! - The base is the `data` with only an outermost `base64` undone
//!   (`docs/protocol.md#delta-bases`): a string's or JSON text's UTF-8 bytes, a
//!   binary payload's bytes.
//! - A delta keeps the message's other fields, carries `extras.delta =
//!   {from: <base message id>, format: "vcdiff"}`, and its encoding is the
//!   message's with `vcdiff/base64` in place of its outer `base64`, or with
//!   `utf-8/vcdiff/base64` appended when there was none
//!   (`docs/protocol.md#delta-messages`): `utf-8/vcdiff/base64` for text,
//!   `json/utf-8/vcdiff/base64` for JSON, `vcdiff/base64` for binary.
//!
//! Deltas depend only on the base message and the message, so the first
//! stream to need one computes it and later streams with the same base reuse
//! it.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use serde_json::Value;
use shared::Message;
use shared::message::DeltaExtras;
use shared::vcdiff;

use crate::channel::StoredMessage;

/// A delta ready to send: the message with delta `data`, and its envelope JSON.
#[derive(Debug)]
pub(crate) struct DeltaMessage {
    /// The envelope (with `channel`), `data` the base64 delta.
    pub(crate) message: Message,
    /// `message` as one line of JSON.
    pub(crate) json: String,
}

/// What a stored message offers as a delta base, computed once.
#[derive(Debug)]
pub(crate) struct DeltaBase {
    /// The bytes a delta against this message starts from.
    payload: Arc<[u8]>,
    /// The encoding a delta *to* this message carries.
    encoding: String,
}

/// The base payload of `message` (`docs/protocol.md#delta-bases`), or `None`
/// when it has no data, no id, or data that is not text.
pub(crate) fn delta_base(message: &Message) -> Option<DeltaBase> {
    message.id.as_ref()?;
    let Some(Value::String(data)) = &message.data else {
        return None;
    };
    let encoding = message.encoding.as_deref().filter(|e| !e.is_empty());
    let (payload, rest) = match encoding {
        Some(encoding) if encoding == "base64" || encoding.ends_with("/base64") => {
            let bytes = STANDARD_PAD_INDIFFERENT.decode(data).ok()?;
            let rest = encoding.strip_suffix("base64").unwrap_or_default();
            (bytes, format!("{rest}vcdiff/base64"))
        }
        Some(encoding) => (
            data.as_bytes().to_vec(),
            format!("{encoding}/utf-8/vcdiff/base64"),
        ),
        None => (data.as_bytes().to_vec(), "utf-8/vcdiff/base64".to_owned()),
    };
    Some(DeltaBase {
        payload: payload.into(),
        encoding: rest,
    })
}

/// The base a stream holds for one channel.
#[derive(Debug, Clone)]
struct Base {
    id: String,
    payload: Arc<[u8]>,
}

/// The delta bases of one stream, per channel with deltas on.
#[derive(Debug, Default)]
pub(crate) struct Deltas {
    /// Channel → the last payload sent on it (`None` before the first).
    bases: HashMap<String, Option<Base>>,
}

impl Deltas {
    /// State for a stream with deltas on for `channels`.
    pub(crate) fn new(channels: &[String]) -> Self {
        Self {
            bases: channels.iter().map(|c| (c.clone(), None)).collect(),
        }
    }

    /// Turns deltas on for `channel` (a realtime ATTACH with `delta`), from
    /// a full message; or off.
    pub(crate) fn set(&mut self, channel: &str, on: bool) {
        if on {
            self.bases.insert(channel.to_owned(), None);
        } else {
            self.bases.remove(channel);
        }
    }

    /// The delta form of `stored` for this stream, or `None` to send it in
    /// full. Either way `stored` becomes the channel's base.
    pub(crate) fn next(&mut self, stored: &StoredMessage) -> Option<Arc<DeltaMessage>> {
        let slot = self.bases.get_mut(&*stored.channel.name)?;
        let Some(target) = stored.delta_base() else {
            *slot = None;
            return None;
        };
        let delta = slot
            .take()
            .and_then(|base| stored.delta_from(&base.id, &base.payload, target));
        *slot = stored.message.id.clone().map(|id| Base {
            id,
            payload: Arc::clone(&target.payload),
        });
        delta
    }
}

/// Encodes `target` against `base_payload` (message `base_id`), or `None`
/// when the delta's base64 is not shorter than the full data.
pub(crate) fn encode(
    stored: &StoredMessage,
    base_id: &str,
    base_payload: &[u8],
    target: &DeltaBase,
) -> Option<Arc<DeltaMessage>> {
    let full_len = match &stored.message.data {
        Some(Value::String(data)) => data.len(),
        _ => return None,
    };
    let delta = STANDARD.encode(vcdiff::encode(base_payload, &target.payload));
    if delta.len() >= full_len {
        return None;
    }
    let mut message = stored.envelope();
    message.data = Some(Value::String(delta));
    message.encoding = Some(target.encoding.clone());
    message.set_delta(DeltaExtras::vcdiff(base_id));
    let json = serde_json::to_string(&message).expect("a Message always serialises");
    Some(Arc::new(DeltaMessage { message, json }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(data: &str, encoding: Option<&str>) -> Message {
        let mut message = Message::default();
        message.id = Some("m:0".into());
        message.data = Some(Value::String(data.into()));
        message.encoding = encoding.map(str::to_owned);
        message
    }

    #[test]
    fn bases_undo_only_an_outer_base64_and_name_the_delta_encoding() {
        let cases = [
            (message("hi", None), b"hi".to_vec(), "utf-8/vcdiff/base64"),
            (
                message("{\"a\":1}", Some("json")),
                b"{\"a\":1}".to_vec(),
                "json/utf-8/vcdiff/base64",
            ),
            (
                message("AQID", Some("base64")),
                vec![1, 2, 3],
                "vcdiff/base64",
            ),
            (
                message("AQID", Some("utf-8/cipher+aes-128-cbc/base64")),
                vec![1, 2, 3],
                "utf-8/cipher+aes-128-cbc/vcdiff/base64",
            ),
        ];

        for (message, payload, encoding) in cases {
            let base = delta_base(&message).unwrap();
            assert_eq!(&*base.payload, payload.as_slice());
            assert_eq!(base.encoding, encoding);
        }
    }

    #[test]
    fn messages_without_text_data_or_id_are_no_base() {
        let mut no_id = message("x", None);
        no_id.id = None;
        let mut no_data = message("x", None);
        no_data.data = None;

        assert!(delta_base(&no_id).is_none());
        assert!(delta_base(&no_data).is_none());
        assert!(delta_base(&message("!!", Some("base64"))).is_none());
    }
}
