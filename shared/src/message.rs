//! The wire `Message` and its `encoding` chain (`docs/protocol.md#the-message`,
//! `docs/protocol.md#publishing`, `docs/protocol.md#the-encoding-chain`).
//!
//! # The message (`docs/protocol.md#the-message`)
//!
//! > With `enveloped=true`, the default, the `data` of a `message` event is a
//! > JSON `Message` (TM2).
//!
//! [`Message`] has every field of that table, in camelCase, each optional and
//! left out when absent. Unknown fields are ignored, so newer servers do not
//! break older clients. The same type serves REST publish bodies
//! (`docs/protocol.md#publishing`) and history (`docs/protocol.md#history`).
//!
//! > **\[I\]** The client should accept `data` that is either an encoded string
//! > or an already-parsed JSON value.
//!
//! Hence `data` is a [`serde_json::Value`], not a `String`.
//!
//! # The `encoding` chain (`docs/protocol.md#the-encoding-chain`)
//!
//! > `encoding` lists the transforms separated by `/`. The **rightmost**
//! > transform was applied last, so it is undone first. Decode from right to
//! > left. […] An unknown step stops decoding. The message is delivered with
//! > the remaining `encoding` (RSL6b).
//!
//! [`Message::decode_data`] (or [`decode_data`] for a bare `data`/`encoding`
//! pair) undoes `base64`, `utf-8` and `json` into a [`Payload`] and stops at
//! anything else, leaving it in [`Decoded::encoding`]. Encryption is not
//! supported. Deltas (`docs/protocol.md#deltas`) are not decoded here, but
//! [`decode_data_with`] takes a hook for unknown steps, so a caller holding the
//! delta base can undo `vcdiff` in the middle of `json/utf-8/vcdiff/base64` and
//! let this module do the rest.
//!
//! ```
//! use serde_json::json;
//! use shared::message::{Message, Payload};
//!
//! let text = r#"{"name":"greeting","data":"{\"foo\":1}","encoding":"json"}"#;
//! let message: Message = serde_json::from_str(text)?;
//!
//! let decoded = message.decode_data()?.expect("the message has data");
//!
//! assert_eq!(decoded.payload, Payload::Json(json!({"foo": 1})));
//! assert_eq!(decoded.encoding, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod encoding;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;

pub use encoding::{Decoded, Payload, decode_data, decode_data_with};

/// An Ably message as it travels in JSON (TM2, `docs/protocol.md#the-message`).
///
/// Every field is optional: a REST publish may send only `data`, and the server
/// fills in `id`, `timestamp` and the connection fields. Absent fields are
/// left out when serializing; unknown fields are ignored when parsing.
///
/// The struct is `#[non_exhaustive]`: outside this crate, start from
/// `Message::default()` and set fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Message {
    /// Unique message id, e.g. `YqigX7VFsR:0:0` for a realtime publish. Not
    /// the SSE event id, which is a resume cursor
    /// (`docs/protocol.md#sse-framing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The event name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The payload: normally a string encoded per [`Message::encoding`], but an
    /// object or array is accepted too (`docs/protocol.md#the-message`,
    /// `docs/protocol.md#publishing`). A JSON `null` reads as `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// The transforms applied to `data`, e.g. `json` or `utf-8/vcdiff/base64`
    /// (`docs/protocol.md#the-encoding-chain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// When Ably received the message, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The channel the message came from; present in SSE envelopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The publisher's client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The publisher's connection id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// On a REST publish, the key of a realtime connection to publish on
    /// behalf of (`docs/protocol.md#publishing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_key: Option<String>,
    /// Metadata sent alongside the payload: `headers`, `push`, `delta`, … See
    /// [`Message::delta`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extras: Option<Map<String, Value>>,
    /// The message serial assigned by Ably (newer protocol versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// What the message does: create, update, delete, … (newer protocol
    /// versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<MessageAction>,
    /// Version information: an object in current protocol versions, a string
    /// in older ones; kept as it came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Value>,
    /// An annotations summary; kept as it came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
}

impl Message {
    /// Decodes `data` by undoing `encoding` from right to left; see
    /// [`decode_data`]. `None` when the message has no `data`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEncoding`](crate::Error::InvalidEncoding) when a step cannot be undone
    /// (invalid base64, UTF-8 or JSON, or input of the wrong kind); the message
    /// names the step.
    pub fn decode_data(&self) -> Result<Option<Decoded>> {
        self.decode_data_with(|_, _| None)
    }

    /// Decodes `data` like [`Message::decode_data`], asking `hook` about steps
    /// this module does not know; see [`decode_data_with`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEncoding`](crate::Error::InvalidEncoding) when a known step cannot be
    /// undone; errors from `hook` as they are.
    pub fn decode_data_with<F>(&self, hook: F) -> Result<Option<Decoded>>
    where
        F: FnMut(&str, &Payload) -> Option<Result<Payload>>,
    {
        self.data
            .as_ref()
            .map(|data| decode_data_with(data, self.encoding.as_deref(), hook))
            .transpose()
    }

    /// Puts `data` in wire form as a REST publish does
    /// (`docs/protocol.md#publishing`): an object or array becomes compact JSON
    /// text and `json` is appended to `encoding` (`"json"`, or
    /// `"<encoding>/json"` if there already was one). A string, `null` or
    /// absent `data` is left as it is.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEncoding`](crate::Error::InvalidEncoding) when `data` is a number or a
    /// boolean, which Ably does not carry (ably-js rejects them with 40013, the
    /// code this error maps to). The message is then unchanged.
    pub fn encode_data(&mut self) -> Result<()> {
        let text = match &self.data {
            None | Some(Value::Null | Value::String(_)) => return Ok(()),
            Some(value) => encoding::json_text(value)?,
        };
        self.data = Some(Value::String(text));
        self.encoding = Some(match self.encoding.take() {
            Some(earlier) if !earlier.is_empty() => format!("{earlier}/json"),
            _ => "json".to_owned(),
        });
        Ok(())
    }

    /// The delta reference in `extras.delta` (DE2,
    /// `docs/protocol.md#delta-messages`): which message this one's `data` is a
    /// delta against, and in what format.
    ///
    /// `None` when there is no `extras.delta`, or when it is not an object with
    /// string `from` and `format`.
    pub fn delta(&self) -> Option<DeltaExtras> {
        let delta = self.extras.as_ref()?.get("delta")?;
        DeltaExtras::deserialize(delta).ok()
    }

    /// Sets `extras.delta`, creating `extras` if needed and keeping its other
    /// entries.
    pub fn set_delta(&mut self, delta: DeltaExtras) {
        let DeltaExtras { from, format } = delta;
        let delta = Map::from_iter([
            ("from".to_owned(), Value::String(from)),
            ("format".to_owned(), Value::String(format)),
        ]);
        self.extras
            .get_or_insert_with(Map::new)
            .insert("delta".to_owned(), Value::Object(delta));
    }
}

/// `extras.delta` of a delta message (DE2, `docs/protocol.md#delta-messages`):
/// `{"from": "<id of base message>", "format": "vcdiff"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaExtras {
    /// The id of the message whose payload is the delta's base.
    pub from: String,
    /// The delta format; Ably only uses `vcdiff`.
    pub format: String,
}

impl DeltaExtras {
    /// A `vcdiff` delta against the message with id `from`.
    pub fn vcdiff(from: impl Into<String>) -> Self {
        Self {
            from: from.into(),
            format: "vcdiff".to_owned(),
        }
    }
}

/// A message's `action`, an integer on the wire
/// (`docs/protocol.md#the-message`).
///
/// A newtype rather than an enum so that values added by newer protocol
/// versions survive a parse and re-serialize unchanged; compare against the
/// associated constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageAction(pub u32);

impl MessageAction {
    /// 0: a new message.
    pub const CREATE: Self = Self(0);
    /// 1: an update to an earlier message.
    pub const UPDATE: Self = Self(1);
    /// 2: the deletion of an earlier message.
    pub const DELETE: Self = Self(2);
    /// 3: a meta message.
    pub const META: Self = Self(3);
    /// 4: a summary of an earlier message's annotations.
    pub const SUMMARY: Self = Self(4);
    /// 5: data appended to an earlier message.
    pub const APPEND: Self = Self(5);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_sse_docs_example() {
        let text = r#"{"id":"cbfKayrzgAXDWM:0:0","name":"greeting","data":"{\"foo\":1}","encoding":"json","timestamp":1556806691343,"channel":"test","clientId":"alice","connectionId":"cbfKayrzgA"}"#;

        let message: Message = serde_json::from_str(text).unwrap();

        assert_eq!(message.id.as_deref(), Some("cbfKayrzgAXDWM:0:0"));
        assert_eq!(message.name.as_deref(), Some("greeting"));
        assert_eq!(message.data, Some(json!(r#"{"foo":1}"#)));
        assert_eq!(message.encoding.as_deref(), Some("json"));
        assert_eq!(message.timestamp, Some(1_556_806_691_343));
        assert_eq!(message.channel.as_deref(), Some("test"));
        assert_eq!(message.client_id.as_deref(), Some("alice"));
        assert_eq!(message.connection_id.as_deref(), Some("cbfKayrzgA"));
        assert_eq!(serde_json::to_string(&message).unwrap(), text);
    }

    #[test]
    fn every_field_round_trips_in_camel_case() {
        let value = json!({
            "id": "m1",
            "name": "n",
            "data": "aGk=",
            "encoding": "utf-8/base64",
            "timestamp": 1_700_000_000_000_u64,
            "channel": "ch",
            "clientId": "c",
            "connectionId": "conn",
            "connectionKey": "key",
            "extras": {"headers": {"h": "v"}},
            "serial": "01726585978590-001@abcdefghij:001",
            "action": 1,
            "version": {"serial": "v1", "timestamp": 1_700_000_000_001_u64},
            "annotations": {"summary": {}}
        });

        let message: Message = serde_json::from_value(value.clone()).unwrap();

        assert_eq!(message.connection_key.as_deref(), Some("key"));
        assert_eq!(message.action, Some(MessageAction::UPDATE));
        assert_eq!(serde_json::to_value(&message).unwrap(), value);
    }

    #[test]
    fn absent_fields_are_left_out() {
        let message = Message {
            name: Some("only".into()),
            ..Message::default()
        };

        assert_eq!(
            serde_json::to_string(&message).unwrap(),
            r#"{"name":"only"}"#
        );
        assert_eq!(serde_json::to_string(&Message::default()).unwrap(), "{}");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let text = r#"{"name":"x","createdAt":1,"operation":{"clientId":"c"},"size":3}"#;

        let message: Message = serde_json::from_str(text).unwrap();

        assert_eq!(message.name.as_deref(), Some("x"));
        assert_eq!(serde_json::to_string(&message).unwrap(), r#"{"name":"x"}"#);
    }

    #[test]
    fn null_data_and_encoding_read_as_absent() {
        // The ably-common fixtures write `"encoding": null`.
        let message: Message = serde_json::from_str(r#"{"data":null,"encoding":null}"#).unwrap();

        assert_eq!(message, Message::default());
        assert_eq!(message.decode_data().unwrap(), None);
    }

    #[test]
    fn unknown_actions_survive_a_round_trip() {
        let message: Message = serde_json::from_str(r#"{"action":42}"#).unwrap();

        assert_eq!(message.action, Some(MessageAction(42)));
        assert_eq!(serde_json::to_string(&message).unwrap(), r#"{"action":42}"#);
    }

    #[test]
    fn action_constants_match_the_wire_numbers() {
        let actions = [
            MessageAction::CREATE,
            MessageAction::UPDATE,
            MessageAction::DELETE,
            MessageAction::META,
            MessageAction::SUMMARY,
            MessageAction::APPEND,
        ];

        assert_eq!(actions.map(|action| action.0), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn version_may_be_a_string_or_an_object() {
        for version in [
            json!("01726585978590-001@abcdefghij:001"),
            json!({"serial": "s"}),
        ] {
            let message: Message = serde_json::from_value(json!({"version": version})).unwrap();

            assert_eq!(message.version, Some(version));
        }
    }

    #[test]
    fn data_may_arrive_already_parsed() {
        // The `[meta]stats:minute` example (`docs/protocol.md#the-message`).
        let text = r#"{"name":"[meta]minute","data":{"entries":{"messages.all.all.count":1}},"encoding":"json"}"#;
        let message: Message = serde_json::from_str(text).unwrap();

        let decoded = message.decode_data().unwrap().unwrap();

        assert_eq!(
            decoded.payload,
            Payload::Json(json!({"entries": {"messages.all.all.count": 1}}))
        );
        assert_eq!(decoded.encoding, None);
    }

    #[test]
    fn delta_message_exposes_its_base_id_and_leaves_vcdiff_undone() {
        let text = r#"{"id":"m2","data":"1sPEAA==","encoding":"json/utf-8/vcdiff/base64","extras":{"delta":{"from":"m1","format":"vcdiff"}}}"#;
        let message: Message = serde_json::from_str(text).unwrap();

        let decoded = message.decode_data().unwrap().unwrap();

        assert_eq!(message.delta(), Some(DeltaExtras::vcdiff("m1")));
        assert_eq!(
            decoded.payload,
            Payload::Binary(vec![0xd6, 0xc3, 0xc4, 0x00])
        );
        assert_eq!(decoded.encoding.as_deref(), Some("json/utf-8/vcdiff"));
        // Compared as values: `extras` is a map, re-serialized in key order.
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn hook_on_a_message_undoes_vcdiff_and_decoding_continues() {
        // Stand-in for a vcdiff decoder: the "delta" is ignored and the target
        // is `{"foo":2}`.
        let text = r#"{"data":"1sPEAA==","encoding":"json/utf-8/vcdiff/base64","extras":{"delta":{"from":"m1","format":"vcdiff"}}}"#;
        let message: Message = serde_json::from_str(text).unwrap();

        let decoded = message
            .decode_data_with(|step, payload| match (step, payload) {
                ("vcdiff", Payload::Binary(_)) => {
                    Some(Ok(Payload::Binary(br#"{"foo":2}"#.to_vec())))
                }
                _ => None,
            })
            .unwrap()
            .unwrap();

        assert_eq!(decoded.payload, Payload::Json(json!({"foo": 2})));
        assert_eq!(decoded.encoding, None);
    }

    #[test]
    fn delta_is_none_when_absent_or_malformed() {
        for extras in [
            json!({}),
            json!({"headers": {}}),
            json!({"delta": "m1"}),
            json!({"delta": {"from": 1, "format": "vcdiff"}}),
            json!({"delta": {"format": "vcdiff"}}),
        ] {
            let message: Message = serde_json::from_value(json!({"extras": extras})).unwrap();

            assert_eq!(message.delta(), None, "{extras}");
        }
        assert_eq!(Message::default().delta(), None);
    }

    #[test]
    fn set_delta_keeps_other_extras() {
        let mut message: Message =
            serde_json::from_value(json!({"extras": {"headers": {"h": "v"}}})).unwrap();

        message.set_delta(DeltaExtras::vcdiff("m1"));

        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({"extras": {"headers": {"h": "v"}, "delta": {"from": "m1", "format": "vcdiff"}}})
        );
        assert_eq!(message.delta(), Some(DeltaExtras::vcdiff("m1")));
    }

    #[test]
    fn encode_data_turns_objects_and_arrays_into_json_text() {
        for (data, encoding, expected_data, expected_encoding) in [
            (json!({"foo": 42}), None, r#"{"foo":42}"#, "json"),
            (json!([1, "x"]), None, r#"[1,"x"]"#, "json"),
            (json!({}), Some(""), "{}", "json"),
            (json!({}), Some("utf-8"), "{}", "utf-8/json"),
        ] {
            let mut message = Message {
                data: Some(data),
                encoding: encoding.map(str::to_owned),
                ..Message::default()
            };

            message.encode_data().unwrap();

            assert_eq!(message.data, Some(json!(expected_data)));
            assert_eq!(message.encoding.as_deref(), Some(expected_encoding));
        }
    }

    #[test]
    fn encode_data_leaves_strings_alone() {
        let mut message = Message {
            data: Some(json!("3q2+7w==")),
            encoding: Some("base64".into()),
            ..Message::default()
        };
        let before = message.clone();

        message.encode_data().unwrap();

        assert_eq!(message, before);
    }

    #[test]
    fn encode_data_refuses_numbers_and_booleans() {
        let mut message = Message {
            data: Some(json!(42)),
            ..Message::default()
        };
        let before = message.clone();

        let err = message.encode_data().unwrap_err();

        assert_eq!(err.error_info().code, crate::codes::INVALID_MESSAGE_DATA);
        assert_eq!(message, before);
    }

    #[test]
    fn rest_publish_body_decodes_to_the_published_value() {
        let body = json!({"name": "e", "data": {"foo": [1, 2]}});
        let mut message: Message = serde_json::from_value(body).unwrap();

        message.encode_data().unwrap();
        let decoded = message.decode_data().unwrap().unwrap();

        assert_eq!(decoded.payload, Payload::Json(json!({"foo": [1, 2]})));
    }
}
