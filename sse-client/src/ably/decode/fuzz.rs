//! Property-based fuzz target for the subscriber's message decoding: the
//! envelope, the encoding chain and vcdiff deltas against the stored base,
//! over sequences of mutated messages (see `shared::fuzzing`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::json;
use shared::fuzzing::{config, mutated, mutated_text};
use shared::message::Message;
use shared::vcdiff;

use super::Decoder;

/// The decoder's payload cap in these cases: small, so deltas reach it.
const CAP: usize = 4096;

fn enveloped_examples() -> Vec<Vec<u8>> {
    let delta = |base: &[u8], target: &[u8]| STANDARD.encode(vcdiff::encode(base, target));
    let run = STANDARD.encode(vcdiff::encode(b"{\"n\":2}", &[b'x'; 3000]));
    [
        json!({"id": "m1", "channel": "c", "data": "{\"n\":1}", "encoding": "json"}),
        json!({"id": "m2", "channel": "c", "encoding": "json/utf-8/vcdiff/base64",
               "data": delta(b"{\"n\":1}", b"{\"n\":2}"),
               "extras": {"delta": {"from": "m1", "format": "vcdiff"}}}),
        json!({"id": "m3", "channel": "c", "encoding": "vcdiff/base64", "data": run,
               "extras": {"delta": {"from": "m2", "format": "vcdiff"}}}),
        json!({"id": "b1", "channel": "d", "data": "AAECAw==", "encoding": "base64"}),
    ]
    .iter()
    .map(|value| value.to_string().into_bytes())
    .collect()
}

fn unenveloped_examples() -> Vec<String> {
    vec![
        "{\"n\":1}".to_owned(),
        STANDARD.encode(vcdiff::encode(b"{\"n\":1}", b"{\"n\":2}")),
        STANDARD.encode(vcdiff::encode(b"{\"n\":2}", &[b'y'; 5000])),
    ]
}

/// One event on the stream, in either framing.
#[derive(Debug, Clone)]
enum Input {
    Enveloped(Vec<u8>),
    Unenveloped(String),
}

proptest! {
    #![proptest_config(config(256))]

    /// Sequences of mutated events through one decoder: never a panic, and
    /// never a delta's target over the cap.
    #[test]
    fn fuzz_ably_decoder_sequences(
        inputs in vec(
            prop_oneof![
                mutated(enveloped_examples()).prop_map(Input::Enveloped),
                mutated_text(unenveloped_examples()).prop_map(Input::Unenveloped),
            ],
            1..8,
        ),
        deltas in any::<bool>(),
    ) {
        let mut decoder = Decoder::new(CAP);
        for (index, input) in inputs.into_iter().enumerate() {
            let (result, was_delta) = match input {
                Input::Enveloped(bytes) => {
                    let Ok(message) = serde_json::from_slice::<Message>(&bytes) else {
                        continue;
                    };
                    let was_delta = message.delta().is_some();
                    (decoder.decode_enveloped(message, index.to_string(), Some("c")), was_delta)
                }
                Input::Unenveloped(text) => {
                    let was_delta = deltas && vcdiff::is_base64_delta(&text);
                    (decoder.decode_unenveloped(text, index.to_string(), Some("c"), deltas), was_delta)
                }
            };
            if let (Ok(decoded), true) = (result, was_delta) {
                // The delta's target became the channel's base.
                let slot = decoded.channel.unwrap_or_default();
                let base = decoder.bases.get(&slot).map_or(0, |(_, base)| base.len());
                prop_assert!(base <= CAP, "a delta built {} bytes", base);
            }
        }
    }
}
