//! `delta=vcdiff` (`docs/protocol.md#deltas`): frames decoded back with
//! `shared::vcdiff::decode`.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use shared::vcdiff;

use crate::helpers::*;

/// The decoder's limit: Ably's default message size limit, 64 KiB.
const LIMIT: usize = 64 * 1024;

/// A subscriber's delta bookkeeping (RTL19/RTL20,
/// `docs/protocol.md#delta-bases`).
#[derive(Debug, Default)]
struct Decoder {
    /// Channel → (base message id, base payload).
    bases: HashMap<String, (String, Vec<u8>)>,
}

impl Decoder {
    /// The payload bytes of an enveloped message: undoes a delta (checking
    /// `extras.delta.from`) or an outer base64, and records the new base.
    /// Returns the bytes and the encoding left to undo.
    fn apply(&mut self, message: &Value) -> (Vec<u8>, String) {
        let channel = message["channel"].as_str().unwrap().to_owned();
        let data = message["data"].as_str().unwrap();
        let encoding = message["encoding"].as_str().unwrap_or_default();
        let (payload, rest) = if let Some(delta) = message["extras"].get("delta") {
            assert_eq!(delta["format"], "vcdiff");
            let (base_id, base) = self.bases.get(&channel).expect("a delta needs a base");
            assert_eq!(
                delta["from"].as_str(),
                Some(base_id.as_str()),
                "delta from the wrong base"
            );
            let rest = encoding
                .strip_suffix("vcdiff/base64")
                .expect("a vcdiff encoding");
            let bytes = STANDARD.decode(data).unwrap();
            assert!(vcdiff::is_delta(&bytes));
            (
                vcdiff::decode(base, &bytes, LIMIT).unwrap(),
                rest.trim_end_matches('/').to_owned(),
            )
        } else if let Some(rest) = encoding.strip_suffix("base64") {
            (
                STANDARD.decode(data).unwrap(),
                rest.trim_end_matches('/').to_owned(),
            )
        } else {
            (data.as_bytes().to_vec(), encoding.to_owned())
        };
        let id = message["id"].as_str().unwrap().to_owned();
        self.bases.insert(channel, (id, payload.clone()));
        (payload, rest)
    }
}

fn scoreboard(round: usize) -> Value {
    json!({
        "game": "the long-running championship final",
        "players": (0..10).map(|p| json!({"name": format!("player-{p}"), "score": p * 100 + round})).collect::<Vec<_>>(),
        "round": round,
    })
}

#[tokio::test]
async fn json_deltas_decode_back_to_every_message() {
    let app = spawn().await;
    let mut frames = app.sse("channels=scores&delta=vcdiff").await;

    for round in 0..5 {
        app.publish(
            "scores",
            json!({"name": "update", "data": scoreboard(round)}),
        )
        .await;
    }

    let mut decoder = Decoder::default();
    let history = app.history_forwards("scores").await;
    for (round, stored) in history.iter().enumerate() {
        let message = frames.message().await;
        let (payload, rest) = decoder.apply(&message);
        if round == 0 {
            assert!(message.get("extras").is_none(), "the first message is full");
            assert_eq!(message["encoding"], "json");
        } else {
            assert_eq!(message["encoding"], "json/utf-8/vcdiff/base64");
            assert_eq!(message["extras"]["delta"]["from"], history[round - 1]["id"]);
            assert!(
                message["data"].as_str().unwrap().len() < stored["data"].as_str().unwrap().len()
            );
        }
        // What is left is the JSON text of the stored message, so decoding
        // gives back exactly what was published.
        assert!(rest == "json/utf-8" || rest == "json", "{rest}");
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            stored["data"].as_str().unwrap()
        );
        assert_eq!(message["name"], "update");
        assert_eq!(message["id"], stored["id"]);
    }
}

#[tokio::test]
async fn text_and_binary_deltas_carry_their_encodings() {
    let app = spawn().await;
    let mut frames = app.sse("channels=t,b&delta=vcdiff").await;
    let text = "lorem ipsum dolor sit amet ".repeat(20);
    let bytes: Vec<u8> = (0..=255).collect();
    let mut changed = bytes.clone();
    changed[100] = 0;

    app.mock.publish_data("t", "", text.as_str());
    app.mock.publish_data("t", "", format!("{text}!"));
    app.publish(
        "b",
        json!({"data": STANDARD.encode(&bytes), "encoding": "base64"}),
    )
    .await;
    app.publish(
        "b",
        json!({"data": STANDARD.encode(&changed), "encoding": "base64"}),
    )
    .await;

    let mut decoder = Decoder::default();
    let first = frames.message().await;
    let second = frames.message().await;
    assert_eq!(second["encoding"], "utf-8/vcdiff/base64");
    decoder.apply(&first);
    assert_eq!(decoder.apply(&second).0, format!("{text}!").into_bytes());
    let first = frames.message().await;
    let second = frames.message().await;
    assert_eq!(first["encoding"], "base64");
    assert_eq!(second["encoding"], "vcdiff/base64");
    decoder.apply(&first);
    assert_eq!(decoder.apply(&second).0, changed);
}

/// `len` pseudo-random letters: text no delta can shorten.
fn noise(seed: u64, len: usize) -> String {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'a' + u8::try_from((state >> 33) % 26).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_delta_is_sent_only_when_it_is_shorter() {
    let app = spawn().await;
    let mut frames = app.sse("channels=c&delta=vcdiff").await;

    app.mock.publish_data("c", "", "short");
    app.mock.publish_data("c", "", "other");
    app.mock.publish_data("c", "", noise(1, 300));
    app.mock.publish_data("c", "", noise(2, 300));

    for _ in 0..4 {
        let message = frames.message().await;
        assert!(message.get("extras").is_none(), "{message}");
    }
}

#[tokio::test]
async fn the_first_message_after_a_reconnect_is_full() {
    let app = spawn().await;
    let mut frames = app.sse("channels=c&delta=vcdiff").await;
    for round in 0..2 {
        app.publish("c", json!({"data": scoreboard(round)})).await;
    }
    frames.message().await;
    let second = frames.event().await;
    assert!(second.json()["extras"]["delta"].is_object());
    let last = second.id.unwrap();
    app.mock.drop_streams();
    for round in 2..4 {
        app.publish("c", json!({"data": scoreboard(round)})).await;
    }

    let mut resumed = app
        .sse(&format!("channels=c&delta=vcdiff&lastEvent={}", enc(&last)))
        .await;

    let replayed = resumed.message().await;
    let next = resumed.message().await;
    assert!(replayed.get("extras").is_none());
    assert_eq!(replayed["encoding"], "json");
    assert_eq!(next["encoding"], "json/utf-8/vcdiff/base64");
}

#[tokio::test]
async fn a_qualifier_turns_deltas_on_for_one_channel_and_bases_stay_per_channel() {
    let app = spawn().await;
    let mut frames = app
        .sse(&format!("channels={}", enc("[?delta=vcdiff]a,b")))
        .await;

    for round in 0..3 {
        app.publish("a", json!({"data": scoreboard(round)})).await;
        app.publish("b", json!({"data": scoreboard(round)})).await;
    }

    let mut decoder = Decoder::default();
    for round in 0..3 {
        let a = frames.message().await;
        let b = frames.message().await;
        assert_eq!(a["extras"]["delta"].is_object(), round > 0, "{a}");
        assert!(b.get("extras").is_none());
        let (payload, _) = decoder.apply(&a);
        assert_eq!(
            serde_json::from_slice::<Value>(&payload).unwrap(),
            scoreboard(round)
        );
        decoder.apply(&b);
    }
}

#[tokio::test]
async fn unenveloped_deltas_are_bare_base64_vcdiff() {
    let app = spawn().await;
    let mut frames = app.sse("channels=c&delta=vcdiff&enveloped=false").await;

    app.publish("c", json!({"data": scoreboard(0)})).await;
    app.publish("c", json!({"data": scoreboard(1)})).await;

    let full = frames.event().await.data.unwrap();
    let delta = frames.event().await.data.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&full).unwrap(), scoreboard(0));
    assert!(vcdiff::is_base64_delta(&delta));
    let decoded =
        vcdiff::decode(full.as_bytes(), &STANDARD.decode(&delta).unwrap(), LIMIT).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&decoded).unwrap(),
        scoreboard(1)
    );
}

#[tokio::test]
async fn streams_with_the_same_base_get_the_same_delta() {
    let app = spawn().await;
    let mut one = app.sse("channels=c&delta=vcdiff").await;
    let mut two = app.sse("channels=c&delta=vcdiff").await;
    let mut plain = app.sse("channels=c").await;

    for round in 0..2 {
        app.publish("c", json!({"data": scoreboard(round)})).await;
    }

    one.message().await;
    two.message().await;
    plain.message().await;
    let (a, b, full) = (
        one.message().await,
        two.message().await,
        plain.message().await,
    );
    assert_eq!(a, b);
    assert!(a["extras"]["delta"].is_object());
    assert!(full.get("extras").is_none());
}
