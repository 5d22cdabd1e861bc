//! Realtime channels: ATTACH/DETACH, the modes a capability grants, attach
//! params (modes, rewind, delta) and the channel counters.

use futures_util::SinkExt as _;
use mock_ably::MockAbly;
use serde_json::json;
use shared::protocol::{Action, Flags, Format};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::{KEY, enc, eventually, spawn, with};
use crate::ws::{Client, FORMATS, format_param, on, publish_frame};

#[tokio::test]
async fn attach_grants_the_requested_modes_the_capability_allows() {
    let app = with(MockAbly::builder().key_with_capability(
        KEY,
        r#"{"all":["*"],"chat:*":["subscribe"],"pub:*":["publish","presence"]}"#,
    ))
    .await;
    for format in FORMATS {
        let (mut client, _) = Client::connected(&app.mock, "", format).await;

        // No modes requested: every mode the capability allows; a param
        // Ably does not recognise is not echoed.
        let mut attach = on(Action::ATTACH, "all");
        attach.params = Some([("agent".to_owned(), "spaces/0.5.2".to_owned())].into());
        client.send(&attach).await;
        let all = client.expect(Action::ATTACHED).await;
        // The four, and annotation_publish, which Ably grants by default too.
        assert_eq!(all.flags, Some(Flags(983_040) | Flags::ANNOTATION_PUBLISH));
        assert_eq!(all.params, None);
        assert!(all.channel_serial.is_some());

        let chat = client.attach("chat:x").await;
        assert_eq!(
            chat.flags,
            Some(Flags::SUBSCRIBE | Flags::PRESENCE_SUBSCRIBE)
        );
        assert_eq!(chat.params, None);

        let mut attach = on(Action::ATTACH, "pub:x");
        attach.flags = Some(Flags::PUBLISH | Flags::SUBSCRIBE);
        client.send(&attach).await;
        assert_eq!(
            client.expect(Action::ATTACHED).await.flags,
            Some(Flags::PUBLISH)
        );

        // Nothing granted: a channel ERROR 40160, and the connection stays.
        let mut attach = on(Action::ATTACH, "chat:y");
        attach.flags = Some(Flags::PUBLISH);
        client.send(&attach).await;
        let denied = client.expect(Action::ERROR).await;
        assert_eq!(denied.channel.as_deref(), Some("chat:y"));
        assert_eq!(denied.error.unwrap().code, 40160);
        client.send(&on(Action::ATTACH, "secret")).await;
        assert_eq!(
            client.expect(Action::ERROR).await.error.unwrap().code,
            40160
        );
        client.nothing_queued("still-up").await;

        client.send(&on(Action::DETACH, "chat:x")).await;
        let detached = client.expect(Action::DETACHED).await;
        assert_eq!(detached.channel.as_deref(), Some("chat:x"));
    }
}

#[tokio::test]
async fn rewind_in_attach_params_replays_from_the_store_sse_uses() {
    let app = spawn().await;
    for data in ["one", "two", "three"] {
        app.mock.publish_data("past", "", data);
    }
    for format in FORMATS {
        let (mut client, _) = Client::connected(&app.mock, "", format).await;
        let mut attach = on(Action::ATTACH, "past");
        attach.params = Some([("rewind".to_owned(), "2".to_owned())].into());
        client.send(&attach).await;

        let attached = client.expect(Action::ATTACHED).await;
        assert_eq!(attached.params, attach.params);
        for data in ["two", "three"] {
            let frame = client.expect(Action::MESSAGE).await;
            assert_eq!(frame.messages.unwrap()[0].data, Some(json!(data)));
        }
        client.nothing_queued("rewound").await;

        let mut attach = on(Action::ATTACH, "other");
        attach.params = Some([("rewind".to_owned(), "soon".to_owned())].into());
        client.send(&attach).await;
        let refused = client.expect(Action::ERROR).await;
        assert_eq!(refused.channel.as_deref(), Some("other"));
        assert_eq!(refused.error.unwrap().code, 40003);
    }
}

#[tokio::test]
async fn attached_channels_are_counted_while_attached() {
    let app = spawn().await;
    let (mut first, _) = Client::connected(&app.mock, "", Format::Json).await;
    let (mut second, _) = Client::connected(&app.mock, "", Format::Msgpack).await;
    first.attach("a").await;
    first.attach("b").await;
    first.attach("b").await;
    second.attach("a").await;
    assert_eq!(app.mock.stats().attached_channels, 3);

    first.send(&on(Action::DETACH, "a")).await;
    first.expect(Action::DETACHED).await;
    let stats: serde_json::Value = app.get("/_mock/stats").await.json().await.unwrap();
    assert_eq!(stats["attachedChannels"], 2);

    drop(second);
    eventually(
        "the dropped connection's channel is no longer counted",
        || app.mock.stats().attached_channels == 1,
    )
    .await;
}

#[tokio::test]
async fn delta_vcdiff_in_attach_params_sends_deltas_after_a_full_message() {
    use base64::Engine as _;
    let app = spawn().await;
    let first = "the quick brown fox jumps over the lazy dog, again and again and again";
    let second = "the quick brown fox jumps over the lazy cat, again and again and again";
    for format in FORMATS {
        let channel = format!("deltas-{}", format_param(format));
        let (mut client, _) = Client::connected(&app.mock, "", format).await;
        let mut attach = on(Action::ATTACH, &channel);
        attach.params = Some([("delta".to_owned(), "vcdiff".to_owned())].into());
        client.send(&attach).await;
        client.expect(Action::ATTACHED).await;

        let base_id = app.mock.publish_data(&channel, "", first);
        app.mock.publish_data(&channel, "", second);

        let full = client
            .expect(Action::MESSAGE)
            .await
            .messages
            .unwrap()
            .remove(0);
        assert_eq!(full.data, Some(json!(first)));
        let delta = client
            .expect(Action::MESSAGE)
            .await
            .messages
            .unwrap()
            .remove(0);
        assert_eq!(delta.encoding.as_deref(), Some("utf-8/vcdiff/base64"));
        assert_eq!(delta.delta().unwrap().from, base_id);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(delta.data.unwrap().as_str().unwrap())
            .unwrap();
        let target = shared::vcdiff::decode(first.as_bytes(), &bytes, 1 << 20).unwrap();
        assert_eq!(target, second.as_bytes());

        let mut attach = on(Action::ATTACH, "x");
        attach.params = Some([("delta".to_owned(), "xdelta".to_owned())].into());
        client.send(&attach).await;
        assert_eq!(
            client.expect(Action::ERROR).await.error.unwrap().code,
            40003
        );
    }
}

#[tokio::test]
async fn channel_status_counts_realtime_publishers_and_subscribers() {
    let app = spawn().await;
    let metrics = || async {
        let status: serde_json::Value = app
            .get(&format!("/channels/room?key={}", enc(KEY)))
            .await
            .json()
            .await
            .unwrap();
        let metrics = &status["status"]["occupancy"]["metrics"];
        [
            metrics["connections"].as_u64().unwrap(),
            metrics["publishers"].as_u64().unwrap(),
            metrics["subscribers"].as_u64().unwrap(),
        ]
    };
    let (mut publisher, _) = Client::connected(&app.mock, "", Format::Json).await;
    let (mut both, _) = Client::connected(&app.mock, "", Format::Msgpack).await;

    let mut attach = on(Action::ATTACH, "room");
    attach.flags = Some(Flags::PUBLISH);
    publisher.send(&attach).await;
    publisher.expect(Action::ATTACHED).await;
    both.attach("room").await;
    let attached = metrics().await;
    both.send(&on(Action::DETACH, "room")).await;
    both.expect(Action::DETACHED).await;
    let one_left = metrics().await;
    publisher.send(&on(Action::DETACH, "room")).await;
    publisher.expect(Action::DETACHED).await;
    let none_left = metrics().await;

    assert_eq!(attached, [2, 2, 1]);
    assert_eq!(one_left, [1, 1, 0]);
    assert_eq!(none_left, [0, 0, 0]);
}

#[tokio::test]
async fn the_modes_param_wins_over_the_flags_and_only_recognised_params_are_echoed() {
    let app = with(
        MockAbly::builder()
            .key_with_capability(KEY, r#"{"all":["*"],"pub":["publish","subscribe"]}"#),
    )
    .await;
    for format in FORMATS {
        let (mut client, _) = Client::connected(&app.mock, "", format).await;
        let params = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };

        let mut attach = on(Action::ATTACH, "all");
        attach.flags = Some(Flags::PUBLISH | Flags::PRESENCE_SUBSCRIBE);
        attach.params = params(&[
            ("modes", "presence,subscribe"),
            ("delta", "vcdiff"),
            ("nonexistent", "foo"),
        ]);
        client.send(&attach).await;
        let attached = client.expect(Action::ATTACHED).await;
        assert_eq!(attached.flags, Some(Flags::PRESENCE | Flags::SUBSCRIBE));
        assert_eq!(
            attached.params,
            params(&[("delta", "vcdiff"), ("modes", "presence,subscribe")])
        );

        // Narrowed by the capability like flags are.
        let mut attach = on(Action::ATTACH, "pub");
        attach.params = params(&[("modes", "subscribe,presence")]);
        client.send(&attach).await;
        assert_eq!(
            client.expect(Action::ATTACHED).await.flags,
            Some(Flags::SUBSCRIBE)
        );
    }
}

#[tokio::test]
async fn publish_and_presence_on_a_channel_attached_without_their_mode_are_40165() {
    let app = spawn().await;
    for format in FORMATS {
        let (mut client, _) = Client::connected(&app.mock, "clientId=alice", format).await;
        let mut attach = on(Action::ATTACH, "sub-only");
        attach.flags = Some(Flags::SUBSCRIBE);
        client.send(&attach).await;
        client.expect(Action::ATTACHED).await;

        client
            .send(&publish_frame("sub-only", 0, json!([{"data": "x"}])))
            .await;
        let nack = client.expect(Action::NACK).await;
        assert_eq!(nack.error.unwrap().code, 40165);
        let mut enter = on(Action::PRESENCE, "sub-only");
        enter.msg_serial = Some(1);
        enter.presence = Some(serde_json::from_value(json!([{"action": 2}])).unwrap());
        client.send(&enter).await;
        let nack = client.expect(Action::NACK).await;
        assert_eq!(nack.error.unwrap().code, 40165);

        // A channel not attached is not limited by modes.
        client
            .send(&publish_frame("elsewhere", 2, json!([{"data": "x"}])))
            .await;
        client.expect(Action::ACK).await;
    }
}

#[tokio::test]
async fn attached_says_has_backlog_when_a_rewind_finds_messages() {
    let app = spawn().await;
    app.mock.publish_data("rewound", "n", "one");
    for format in FORMATS {
        let (mut client, _) = Client::connected(&app.mock, "", format).await;
        let mut attach = on(Action::ATTACH, "rewound");
        attach.params = Some([("rewind".to_owned(), "1".to_owned())].into());
        client.send(&attach).await;
        let attached = client.expect(Action::ATTACHED).await;
        assert!(attached.flags.unwrap().contains(Flags::HAS_BACKLOG));
        client.expect(Action::MESSAGE).await;

        let mut attach = on(Action::ATTACH, "empty-rewind");
        attach.params = Some([("rewind".to_owned(), "1".to_owned())].into());
        client.send(&attach).await;
        let attached = client.expect(Action::ATTACHED).await;
        assert!(!attached.flags.unwrap().contains(Flags::HAS_BACKLOG));

        let (mut plain, _) = Client::connected(&app.mock, "", format).await;
        let attached = plain.attach("rewound").await;
        assert!(!attached.flags.unwrap().contains(Flags::HAS_BACKLOG));
    }
}

#[tokio::test]
async fn an_attach_with_a_numeric_rewind_param_rewinds() {
    let app = spawn().await;
    app.mock.publish_data("numeric", "n", "kept");
    let (mut client, _) = Client::connected(&app.mock, "", Format::Json).await;

    let attach = json!({"action": 10, "channel": "numeric", "params": {"rewind": 1}});
    client
        .socket
        .send(WsMessage::text(attach.to_string()))
        .await
        .unwrap();

    let attached = client.expect(Action::ATTACHED).await;
    assert_eq!(attached.params.unwrap()["rewind"], "1");
    let message = client.expect(Action::MESSAGE).await;
    assert_eq!(
        message.messages.unwrap()[0].data,
        Some(serde_json::Value::from("kept"))
    );
}

#[tokio::test]
async fn a_rewind_on_an_attach_flagged_attach_resume_sends_no_backlog() {
    let app = spawn().await;
    app.mock.publish_data("resumed-rewind", "n", "old");
    for format in FORMATS {
        let (mut client, _) = Client::connected(&app.mock, "", format).await;
        let mut attach = on(Action::ATTACH, "resumed-rewind");
        attach.params = Some([("rewind".to_owned(), "1".to_owned())].into());
        attach.flags = Some(Flags::ATTACH_RESUME);
        client.send(&attach).await;
        let attached = client.expect(Action::ATTACHED).await;
        assert!(!attached.flags.unwrap().contains(Flags::HAS_BACKLOG));
        client.nothing_queued("no-backlog").await;
    }
}
