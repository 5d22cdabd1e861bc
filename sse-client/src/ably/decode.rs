//! From an SSE `message` event to a decoded [`ChannelMessage`]: the
//! `encoding` chain, vcdiff deltas with their per-channel base
//! (`docs/protocol.md#delta-bases`,
//! `docs/protocol.md#deltas-without-an-envelope`), and the memory of recent
//! message ids that keeps delivery exactly-once.

use std::collections::{HashMap, HashSet, VecDeque};

use base64::Engine as _;
use serde_json::Value;
use shared::message::{Message, Payload};
use shared::{Error as SharedError, vcdiff};

use crate::error::{Error, Result};

/// A message as delivered to the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChannelMessage {
    /// The channel it came from: the envelope's `channel`, or the only
    /// channel subscribed to when the stream is unenveloped.
    pub channel: Option<String>,
    /// The SSE event id: the resume cursor, not `Message.id`.
    pub event_id: String,
    /// The wire message (`data` still encoded). Unenveloped streams carry no
    /// envelope, so only `data` is set.
    pub message: Message,
    /// The decoded payload; `None` when the message has no data.
    pub payload: Option<Payload>,
    /// Encoding steps left undone (an unsupported `cipher+…`), left-most
    /// first; `None` when the whole chain was undone.
    pub encoding: Option<String>,
}

/// The decoder's memory: one delta base per channel.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// Channel (or `""` when unknown) → (base id, base bytes).
    bases: HashMap<String, (Option<String>, Vec<u8>)>,
    /// The largest payload a delta may produce: the client's cap on one
    /// event ([`Limits::max_event`](crate::sse::Limits)), so that a few
    /// bytes of delta can never build more than a whole message could
    /// have carried.
    max_payload: usize,
}

impl Decoder {
    /// A decoder with no bases that refuses delta targets over
    /// `max_payload` bytes.
    pub(crate) fn new(max_payload: usize) -> Self {
        Self {
            bases: HashMap::new(),
            max_payload,
        }
    }

    /// Forgets every base, after a discontinuity.
    pub(crate) fn clear(&mut self) {
        self.bases.clear();
    }

    /// Decodes an enveloped message (`docs/protocol.md#delta-bases`). A delta
    /// whose `from` is not the stored base, or that does not apply, is an
    /// error: the caller must not deliver anything and must resume from the
    /// last good message.
    pub(crate) fn decode_enveloped(
        &mut self,
        message: Message,
        event_id: String,
        only_channel: Option<&str>,
    ) -> Result<ChannelMessage> {
        let channel = message
            .channel
            .clone()
            .or_else(|| only_channel.map(str::to_owned));
        let slot = channel.clone().unwrap_or_default();
        let delta_from = message.delta().map(|delta| delta.from);
        let mut new_base: Option<Vec<u8>> = None;
        let decoded = {
            let base = self.bases.get(&slot);
            message
                .decode_data_with(|step, payload| match (step, payload) {
                    ("vcdiff", Payload::Binary(delta)) => {
                        let result = match delta_from.as_deref() {
                            Some(from) => apply_delta(base, Some(from), delta, self.max_payload),
                            // A delta names its base
                            // (`docs/protocol.md#delta-messages`); one that
                            // does not cannot be checked against ours.
                            None => Err(SharedError::Vcdiff(
                                "vcdiff message without extras.delta.from".into(),
                            )),
                        };
                        if let Ok(target) = &result {
                            new_base = Some(target.clone());
                        }
                        Some(result.map(Payload::Binary))
                    }
                    _ => None,
                })
                .map_err(Error::Decode)?
        };
        // The base for the next delta: the data with only an outermost
        // base64 removed (or the delta's result).
        let base = match new_base {
            Some(base) => Some(base),
            None => base_of(&message)?,
        };
        if let Some(base) = base {
            self.bases.insert(slot, (message.id.clone(), base));
        }
        let (payload, encoding) = match decoded {
            Some(decoded) => (Some(decoded.payload), decoded.encoding),
            None => (None, None),
        };
        Ok(ChannelMessage {
            channel,
            event_id,
            message,
            payload,
            encoding,
        })
    }

    /// Decodes an unenveloped payload
    /// (`docs/protocol.md#deltas-without-an-envelope`): the event data is the
    /// payload itself. When deltas were asked for (`deltas`), a delta is
    /// recognised by its `1sPE` (vcdiff magic) prefix and applied to the
    /// previous payload; otherwise every payload is taken as it is.
    pub(crate) fn decode_unenveloped(
        &mut self,
        data: String,
        event_id: String,
        only_channel: Option<&str>,
        deltas: bool,
    ) -> Result<ChannelMessage> {
        let slot = only_channel.unwrap_or_default().to_owned();
        let (payload, base) = if deltas && vcdiff::is_base64_delta(&data) {
            let delta = base64::engine::general_purpose::STANDARD
                .decode(&data)
                .map_err(|err| {
                    Error::Decode(SharedError::Vcdiff(format!("invalid base64: {err}")))
                })?;
            let target = apply_delta(self.bases.get(&slot), None, &delta, self.max_payload)
                .map_err(Error::Decode)?;
            let payload = match String::from_utf8(target.clone()) {
                Ok(text) => Payload::Text(text),
                Err(_) => Payload::Binary(target.clone()),
            };
            (payload, target)
        } else {
            let base = data.as_bytes().to_vec();
            (Payload::Text(data.clone()), base)
        };
        self.bases.insert(slot, (None, base));
        let mut message = Message::default();
        message.data = Some(Value::String(data));
        message.channel = only_channel.map(str::to_owned);
        Ok(ChannelMessage {
            channel: only_channel.map(str::to_owned),
            event_id,
            message,
            payload: Some(payload),
            encoding: None,
        })
    }
}

/// Applies a delta to the stored base, checking `extras.delta.from` when
/// there is one, and refusing a target over `max_payload` bytes before
/// reserving room for it.
fn apply_delta(
    base: Option<&(Option<String>, Vec<u8>)>,
    from: Option<&str>,
    delta: &[u8],
    max_payload: usize,
) -> Result<Vec<u8>, SharedError> {
    let Some((base_id, base)) = base else {
        return Err(SharedError::Vcdiff("delta received with no base".into()));
    };
    if let Some(from) = from
        && base_id.as_deref() != Some(from)
    {
        return Err(SharedError::Vcdiff(format!(
            "delta is against {from:?} but the base is {base_id:?}"
        )));
    }
    vcdiff::decode(base, delta, max_payload)
}

/// The delta base of a full message: its data with only an outermost
/// `base64` removed (`docs/protocol.md#delta-bases`).
fn base_of(message: &Message) -> Result<Option<Vec<u8>>> {
    let Some(data) = &message.data else {
        return Ok(None);
    };
    let outer_base64 = message
        .encoding
        .as_deref()
        .is_some_and(|encoding| encoding.rsplit('/').next() == Some("base64"));
    Ok(Some(match data {
        Value::String(text) if outer_base64 => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|err| Error::Decode(SharedError::InvalidEncoding(err.to_string())))?,
        Value::String(text) => text.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }))
}

/// The ids of recently delivered messages, bounded: the oldest are forgotten
/// first.
#[derive(Debug)]
pub(crate) struct RecentIds {
    order: VecDeque<String>,
    set: HashSet<String>,
    capacity: usize,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::with_capacity(capacity.min(1024)),
            set: HashSet::with_capacity(capacity.min(1024)),
            capacity,
        }
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    pub(crate) fn insert(&mut self, id: String) {
        if self.capacity == 0 || self.set.contains(&id) {
            return;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.set.insert(id.clone());
        self.order.push_back(id);
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::message::DeltaExtras;

    use super::*;

    /// The payload cap of these tests' decoders: Ably's default message
    /// size limit.
    const CAP: usize = 64 * 1024;

    fn message(value: Value) -> Message {
        serde_json::from_value(value).unwrap()
    }

    fn delta_message(id: &str, from: &str, base: &[u8], target: &[u8], encoding: &str) -> Message {
        let delta = vcdiff::encode(base, target);
        let mut m = message(json!({
            "id": id,
            "channel": "c",
            "data": base64::engine::general_purpose::STANDARD.encode(delta),
            "encoding": encoding,
        }));
        m.set_delta(DeltaExtras::vcdiff(from));
        m
    }

    #[test]
    fn a_json_delta_applies_to_the_previous_json_text() {
        let mut decoder = Decoder::new(CAP);
        let full = message(
            json!({"id": "m1", "channel": "c", "data": r#"{"score":1}"#, "encoding": "json"}),
        );
        decoder.decode_enveloped(full, "e1".into(), None).unwrap();

        let delta = delta_message(
            "m2",
            "m1",
            br#"{"score":1}"#,
            br#"{"score":2}"#,
            "json/utf-8/vcdiff/base64",
        );
        let decoded = decoder.decode_enveloped(delta, "e2".into(), None).unwrap();

        assert_eq!(decoded.payload, Some(Payload::Json(json!({"score": 2}))));
        assert_eq!(decoded.encoding, None);
        // Chains: the next delta applies to the result.
        let next = delta_message(
            "m3",
            "m2",
            br#"{"score":2}"#,
            br#"{"score":3}"#,
            "json/utf-8/vcdiff/base64",
        );
        let decoded = decoder.decode_enveloped(next, "e3".into(), None).unwrap();
        assert_eq!(decoded.payload, Some(Payload::Json(json!({"score": 3}))));
    }

    #[test]
    fn a_binary_delta_applies_to_the_decoded_bytes() {
        let mut decoder = Decoder::new(CAP);
        let full =
            message(json!({"id": "m1", "channel": "c", "data": "AAECAw==", "encoding": "base64"}));
        decoder.decode_enveloped(full, "e1".into(), None).unwrap();

        let delta = delta_message("m2", "m1", &[0, 1, 2, 3], &[0, 1, 2, 4], "vcdiff/base64");
        let decoded = decoder.decode_enveloped(delta, "e2".into(), None).unwrap();

        assert_eq!(decoded.payload, Some(Payload::Binary(vec![0, 1, 2, 4])));
    }

    #[test]
    fn a_delta_against_the_wrong_base_is_refused() {
        let mut decoder = Decoder::new(CAP);
        let full = message(json!({"id": "m1", "channel": "c", "data": "hello"}));
        decoder.decode_enveloped(full, "e1".into(), None).unwrap();

        let delta = delta_message("m3", "m2", b"hello", b"hello!", "utf-8/vcdiff/base64");
        let err = decoder
            .decode_enveloped(delta, "e3".into(), None)
            .unwrap_err();

        assert!(
            matches!(err, Error::Decode(SharedError::Vcdiff(_))),
            "{err:?}"
        );
    }

    #[test]
    fn a_delta_that_does_not_name_its_base_is_refused() {
        let mut decoder = Decoder::new(CAP);
        let full = message(json!({"id": "m1", "channel": "c", "data": "hello"}));
        decoder.decode_enveloped(full, "e1".into(), None).unwrap();
        let mut delta = delta_message("m2", "m1", b"hello", b"hello!", "utf-8/vcdiff/base64");
        delta.extras = None;

        let err = decoder
            .decode_enveloped(delta, "e2".into(), None)
            .unwrap_err();

        assert!(
            matches!(&err, Error::Decode(SharedError::Vcdiff(text)) if text.contains("extras.delta.from")),
            "{err:?}"
        );
    }

    #[test]
    fn a_delta_with_no_base_is_refused() {
        let mut decoder = Decoder::new(CAP);

        let delta = delta_message("m2", "m1", b"hello", b"hello!", "utf-8/vcdiff/base64");

        assert!(decoder.decode_enveloped(delta, "e".into(), None).is_err());
    }

    #[test]
    fn bases_are_kept_per_channel() {
        let mut decoder = Decoder::new(CAP);
        for (id, channel, data) in [("a1", "a", "aaaa"), ("b1", "b", "bbbb")] {
            let full = message(json!({"id": id, "channel": channel, "data": data}));
            decoder.decode_enveloped(full, id.into(), None).unwrap();
        }

        let mut delta = delta_message("a2", "a1", b"aaaa", b"aaaab", "utf-8/vcdiff/base64");
        delta.channel = Some("a".into());
        let decoded = decoder.decode_enveloped(delta, "e".into(), None).unwrap();

        assert_eq!(decoded.payload, Some(Payload::Text("aaaab".into())));
    }

    #[test]
    fn unenveloped_deltas_are_recognised_by_their_prefix() {
        let mut decoder = Decoder::new(CAP);
        decoder
            .decode_unenveloped(r#"{"n":1}"#.into(), "e1".into(), Some("c"), true)
            .unwrap();
        let delta = base64::engine::general_purpose::STANDARD
            .encode(vcdiff::encode(br#"{"n":1}"#, br#"{"n":2}"#));
        assert!(delta.starts_with("1sPE"));

        let decoded = decoder
            .decode_unenveloped(delta.clone(), "e2".into(), Some("c"), true)
            .unwrap();

        assert_eq!(decoded.payload, Some(Payload::Text(r#"{"n":2}"#.into())));
        assert_eq!(decoded.channel.as_deref(), Some("c"));
        // Without deltas asked for, the same text is a payload like any other.
        let plain = decoder
            .decode_unenveloped(delta.clone(), "e3".into(), Some("c"), false)
            .unwrap();
        assert_eq!(plain.payload, Some(Payload::Text(delta)));
    }

    /// An RFC 3284 integer (base 128, most significant digit first).
    fn varint(mut value: usize) -> Vec<u8> {
        let mut out = vec![(value & 0x7f) as u8];
        value >>= 7;
        while value > 0 {
            out.insert(0, 0x80 | (value & 0x7f) as u8);
            value >>= 7;
        }
        out
    }

    /// A one-window delta with no source: `target_len` declared, the given
    /// data and instruction sections, no addresses.
    fn hand_made_delta(target_len: usize, data: &[u8], instructions: &[u8]) -> Vec<u8> {
        let mut encoding = varint(target_len);
        encoding.push(0); // Delta_Indicator
        encoding.extend(varint(data.len()));
        encoding.extend(varint(instructions.len()));
        encoding.extend(varint(0));
        encoding.extend_from_slice(data);
        encoding.extend_from_slice(instructions);
        let mut delta = vcdiff::MAGIC.to_vec();
        delta.push(0); // Hdr_Indicator
        delta.push(0); // Win_Indicator: no source segment
        delta.extend(varint(encoding.len()));
        delta.extend(encoding);
        delta
    }

    /// The decoder after one full message, `m1`, on channel `c`, and a
    /// message carrying `delta` against it.
    fn after_one_message(delta: &[u8]) -> (Decoder, Message) {
        let mut decoder = Decoder::new(CAP);
        let full = message(json!({"id": "m1", "channel": "c", "data": "hello"}));
        decoder.decode_enveloped(full, "e1".into(), None).unwrap();
        let mut next = message(json!({
            "id": "m2",
            "channel": "c",
            "data": base64::engine::general_purpose::STANDARD.encode(delta),
            "encoding": "vcdiff/base64",
        }));
        next.set_delta(DeltaExtras::vcdiff("m1"));
        (decoder, next)
    }

    #[test]
    fn a_delta_declaring_a_huge_target_is_refused_before_allocating() {
        // 20 bytes declaring a 48 MiB window and holding no instructions:
        // the size must be refused as declared, not reserved and then found
        // short.
        let delta = hand_made_delta(48 << 20, b"", b"");
        assert!(delta.len() < 20, "{delta:?}");
        let (mut decoder, next) = after_one_message(&delta);

        let err = decoder
            .decode_enveloped(next, "e2".into(), None)
            .unwrap_err();

        let Error::Decode(SharedError::Vcdiff(text)) = &err else {
            panic!("expected a vcdiff error, got {err:?}");
        };
        assert_eq!(
            text,
            "window target size 50331648 at offset 5 exceeds limit (65536 of 65536 bytes left)"
        );
    }

    #[test]
    fn a_tiny_delta_cannot_expand_past_the_message_cap() {
        // RUN (opcode 0, size follows) of one byte repeated 1 MiB times: a
        // valid delta that builds 16 times the cap from 13 bytes.
        let mut instructions = vec![0x00];
        instructions.extend(varint(1 << 20));
        let delta = hand_made_delta(1 << 20, b"q", &instructions);
        let (mut decoder, next) = after_one_message(&delta);

        let err = decoder
            .decode_enveloped(next, "e2".into(), None)
            .unwrap_err();

        assert!(
            matches!(&err, Error::Decode(SharedError::Vcdiff(text))
                if text.contains("window target size 1048576 at offset 5 exceeds limit")),
            "{err:?}"
        );
        // A delta that stays within the cap still applies.
        let mut instructions = vec![0x00];
        instructions.extend(varint(CAP));
        let (mut decoder, next) = after_one_message(&hand_made_delta(CAP, b"q", &instructions));
        let decoded = decoder.decode_enveloped(next, "e2".into(), None).unwrap();
        assert_eq!(decoded.payload, Some(Payload::Binary(vec![b'q'; CAP])));
    }

    #[test]
    fn recent_ids_forget_the_oldest_first() {
        let mut ids = RecentIds::new(2);

        ids.insert("a".into());
        ids.insert("b".into());
        ids.insert("a".into());
        ids.insert("c".into());

        assert!(!ids.contains("a"));
        assert!(ids.contains("b") && ids.contains("c"));
    }
}
