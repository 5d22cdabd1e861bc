//! Decoding: the documented URL and message fields, vcdiff deltas,
//! unenveloped payloads, and messages that do not decode.

use base64::Engine as _;
use serde_json::json;
use shared::message::{DeltaExtras, Message, Payload};
use shared::vcdiff;
use sse_client::Error;
use sse_client::ably::{StateChange, SubscribeOptions};

use super::{
    Fixture, fatal, message_frame, names, next_message, reason, sse, sse_request,
    states_then_message, text, text_message,
};

#[tokio::test]
async fn subscribes_with_the_documented_url_and_decodes_messages() {
    let json_message = json!({"id": "m1", "channel": "ch", "name": "greeting", "data": "{\"foo\":1}", "encoding": "json", "clientId": "alice", "timestamp": 1556806691343_u64});
    let mut f = Fixture::start(vec![sse(&[
        ":keepalive\n".to_owned(),
        message_frame("e1", &json_message),
    ])])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch", "other,chan"]).heartbeats(true));

    let (states, message) = states_then_message(&mut sub).await;

    assert_eq!(names(&states), ["connected"]);
    assert_eq!(message.payload, Some(Payload::Json(json!({"foo": 1}))));
    assert_eq!(message.channel.as_deref(), Some("ch"));
    assert_eq!(message.event_id, "e1");
    assert_eq!(message.message.client_id.as_deref(), Some("alice"));
    assert_eq!(sub.cursor(), Some("e1"));
    let request = sse_request(&mut f.server).await;
    assert_eq!(request.query("v").as_deref(), Some("1.2"));
    assert_eq!(request.query("channels").as_deref(), Some("ch|other,chan"));
    assert_eq!(request.query("separator").as_deref(), Some("|"));
    assert_eq!(request.query("accessToken").as_deref(), Some("T1"));
    assert_eq!(request.query("heartbeats").as_deref(), Some("true"));
    assert_eq!(request.query("lastEvent"), None);
    assert_eq!(request.header("accept"), Some("text/event-stream"));
}

fn delta_frame(event_id: &str, id: &str, from: &str, base: &[u8], target: &[u8]) -> String {
    let mut message: Message = serde_json::from_value(json!({
        "id": id,
        "channel": "ch",
        "data": base64::engine::general_purpose::STANDARD.encode(vcdiff::encode(base, target)),
        "encoding": "json/utf-8/vcdiff/base64",
    }))
    .unwrap();
    message.set_delta(DeltaExtras::vcdiff(from));
    message_frame(event_id, &serde_json::to_value(&message).unwrap())
}

fn json_frame(event_id: &str, id: &str, data: &str) -> String {
    message_frame(
        event_id,
        &json!({"id": id, "channel": "ch", "data": data, "encoding": "json"}),
    )
}

#[tokio::test]
async fn deltas_are_applied_and_a_bad_one_resumes_from_the_last_good_message() {
    let (s1, s2, s3) = (r#"{"score":1}"#, r#"{"score":2}"#, r#"{"score":3}"#);
    let mut f = Fixture::start(vec![
        sse(&[
            json_frame("e1", "m1", s1),
            delta_frame("e2", "m2", "m1", s1.as_bytes(), s2.as_bytes()),
            // Against a base we never had: must not be delivered.
            delta_frame("e3", "m3", "m9", s2.as_bytes(), s3.as_bytes()),
        ]),
        // After the resume, a full message first
        // (`docs/protocol.md#deltas-after-a-resume`).
        sse(&[json_frame("e3", "m3", s3)]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]).delta(true));

    let mut scores = Vec::new();
    for _ in 0..3 {
        let message = next_message(&mut sub).await;
        scores.push(message.payload.unwrap());
    }

    assert_eq!(
        scores,
        [1, 2, 3].map(|n| Payload::Json(json!({"score": n})))
    );
    assert_eq!(
        sse_request(&mut f.server).await.query("delta").as_deref(),
        Some("vcdiff")
    );
    assert_eq!(
        sse_request(&mut f.server)
            .await
            .query("lastEvent")
            .as_deref(),
        Some("e2")
    );
}

#[tokio::test]
async fn a_delta_that_does_not_name_its_base_is_not_applied_and_resumes() {
    let (s1, s2) = (r#"{"score":1}"#, r#"{"score":2}"#);
    let unchecked = message_frame(
        "e2",
        &json!({
            "id": "m2",
            "channel": "ch",
            "data": base64::engine::general_purpose::STANDARD
                .encode(vcdiff::encode(s1.as_bytes(), s2.as_bytes())),
            "encoding": "json/utf-8/vcdiff/base64",
        }),
    );
    let mut f = Fixture::start(vec![
        sse(&[json_frame("e1", "m1", s1), unchecked]),
        sse(&[json_frame("e2", "m2", s2)]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]).delta(true));

    let first = next_message(&mut sub).await;
    let (states, second) = states_then_message(&mut sub).await;

    assert_eq!(first.payload, Some(Payload::Json(json!({"score": 1}))));
    assert_eq!(second.payload, Some(Payload::Json(json!({"score": 2}))));
    assert_eq!(names(&states), ["disconnected", "connected"]);
    assert!(
        matches!(reason(&states[0]), Error::Decode(_)),
        "{:?}",
        states[0]
    );
    sse_request(&mut f.server).await;
    let resumed = sse_request(&mut f.server).await;
    assert_eq!(resumed.query("lastEvent").as_deref(), Some("e1"));
}

#[tokio::test]
async fn unenveloped_payloads_and_deltas_are_decoded() {
    let first = r#"{"n":1}"#;
    let delta = base64::engine::general_purpose::STANDARD
        .encode(vcdiff::encode(first.as_bytes(), br#"{"n":2}"#));
    let mut f = Fixture::start(vec![sse(&[
        format!("id: e1\nevent: message\ndata: {first}\n\n"),
        format!("id: e2\nevent: message\ndata: {delta}\n\n"),
    ])])
    .await;
    let mut sub = f.subscribe(
        SubscribeOptions::new(["[?rewind=1]ch"])
            .enveloped(false)
            .delta(true),
    );

    let one = next_message(&mut sub).await;
    let two = next_message(&mut sub).await;

    assert_eq!(text(&one), first);
    assert_eq!(text(&two), r#"{"n":2}"#);
    assert_eq!(two.channel.as_deref(), Some("ch"));
    assert_eq!(two.event_id, "e2");
    let request = sse_request(&mut f.server).await;
    assert_eq!(request.query("enveloped").as_deref(), Some("false"));
    assert_eq!(request.query("channels").as_deref(), Some("[?rewind=1]ch"));
}

#[tokio::test]
async fn a_message_that_never_decodes_is_skipped_after_three_tries_with_continuity_lost() {
    let poison = message_frame(
        "e2",
        &json!({"id": "m2", "channel": "ch", "data": "not json", "encoding": "json"}),
    );
    let mut f = Fixture::start(vec![
        sse(&[
            message_frame("e1", &text_message("m1", "one")),
            poison.clone(),
        ]),
        sse(std::slice::from_ref(&poison)),
        sse(std::slice::from_ref(&poison)),
        sse(&[message_frame("e3", &text_message("m3", "three"))]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]).rewind(5));

    assert_eq!(text(&next_message(&mut sub).await), "one");
    let (states, after) = states_then_message(&mut sub).await;

    assert_eq!(text(&after), "three");
    assert_eq!(
        names(&states),
        [
            "disconnected",
            "connected",
            "disconnected",
            "connected",
            "disconnected",
            "continuity lost",
            "connected"
        ]
    );
    for state in states
        .iter()
        .filter(|s| matches!(s, StateChange::Disconnected { .. }))
    {
        assert!(matches!(reason(state), Error::Decode(_)), "{state:?}");
    }
    let first = sse_request(&mut f.server).await;
    assert_eq!(first.query("rewind").as_deref(), Some("5"));
    for _ in 0..2 {
        let resumed = sse_request(&mut f.server).await;
        assert_eq!(resumed.query("lastEvent").as_deref(), Some("e1"));
    }
    // Fresh: neither the resume point nor a backlog that holds the message.
    let fresh = sse_request(&mut f.server).await;
    assert_eq!(
        (fresh.query("lastEvent"), fresh.query("rewind")),
        (None, None)
    );
}

#[tokio::test]
async fn a_bad_unenveloped_delta_is_never_delivered_and_the_stream_resumes() {
    let (first, second) = (r#"{"n":1}"#, r#"{"n":2}"#);
    // Made against a base we never had, copying from past the end of ours:
    // it cannot apply.
    let bad = base64::engine::general_purpose::STANDARD.encode(vcdiff::encode(
        br#"{"a long prefix that the delta copies":1}"#,
        br#"{"a long prefix that the delta copies":2}"#,
    ));
    let frame = |id: &str, data: &str| format!("id: {id}\nevent: message\ndata: {data}\n\n");
    let mut f = Fixture::start(vec![
        sse(&[frame("e1", first), frame("e2", &bad)]),
        // The resumed stream starts with a full payload
        // (`docs/protocol.md#asking-for-deltas`).
        sse(&[frame("e2", second)]),
    ])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["ch"]).enveloped(false).delta(true));

    let one = next_message(&mut sub).await;
    let (states, two) = states_then_message(&mut sub).await;

    assert_eq!((text(&one), one.event_id.as_str()), (first, "e1"));
    assert_eq!((text(&two), two.event_id.as_str()), (second, "e2"));
    assert_eq!(names(&states), ["disconnected", "connected"]);
    assert!(
        matches!(reason(&states[0]), Error::Decode(_)),
        "{:?}",
        states[0]
    );
    assert_eq!(sse_request(&mut f.server).await.query("lastEvent"), None);
    let resumed = sse_request(&mut f.server).await;
    assert_eq!(resumed.query("lastEvent").as_deref(), Some("e1"));
    assert_eq!(resumed.query("delta").as_deref(), Some("vcdiff"));
}

#[tokio::test]
async fn without_deltas_an_unenveloped_payload_that_looks_like_one_is_delivered_as_is() {
    let looks_like_a_delta =
        base64::engine::general_purpose::STANDARD.encode(vcdiff::encode(b"", b"text"));
    assert!(looks_like_a_delta.starts_with("1sPE"));
    let f = Fixture::start(vec![sse(&[format!(
        "id: e1\nevent: message\ndata: {looks_like_a_delta}\n\n"
    )])])
    .await;
    let mut sub = f.subscribe(SubscribeOptions::new(["a", "b"]).enveloped(false));

    let message = next_message(&mut sub).await;

    assert_eq!(text(&message), looks_like_a_delta);
}

#[tokio::test]
async fn unenveloped_deltas_on_several_channels_are_refused_before_any_request() {
    let mut f = Fixture::start(vec![]).await;
    let mut sub = f.subscribe(
        SubscribeOptions::new(["a", "b"])
            .enveloped(false)
            .delta(true),
    );

    let err = fatal(&mut sub).await;

    assert!(
        matches!(&err, Error::Config(text) if text.contains("single channel")),
        "{err:?}"
    );
    assert_eq!(f.auth_calls(), 0);
    assert!(f.server.pending_requests().is_empty());
}
