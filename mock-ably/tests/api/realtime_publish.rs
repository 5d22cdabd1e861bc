//! Realtime publishing: ACK/NACK, fan-out and echo, and messages crossing
//! between realtime, REST, history and SSE.

use mock_ably::MockAbly;
use serde_json::json;
use shared::protocol::{Action, Format};

use crate::helpers::{KEY, enc, jwt, spawn, with};
use crate::ws::{Client, FORMATS, ids, publish_frame};

#[tokio::test]
async fn a_publish_is_acked_stamped_and_fanned_out_honouring_echo() {
    let app = spawn().await;
    for format in FORMATS {
        let (mut alice, connected) = Client::connected(&app.mock, "clientId=alice", format).await;
        let alice_id = connected.connection_id.unwrap();
        let (mut quiet, _) = Client::connected(&app.mock, "clientId=bob&echo=false", format).await;
        alice.attach("room").await;
        quiet.attach("room").await;

        alice
            .send(&publish_frame(
                "room",
                0,
                json!([{"name":"a","data":"one","action":0,"size":4},{"name":"b","data":{"n":1}}]),
            ))
            .await;

        let ack = alice.expect(Action::ACK).await;
        assert_eq!((ack.msg_serial, ack.count), (Some(0), Some(1)));
        for client in [&mut alice, &mut quiet] {
            for (index, name) in ["a", "b"].into_iter().enumerate() {
                let frame = client.expect(Action::MESSAGE).await;
                assert_eq!(frame.channel.as_deref(), Some("room"));
                assert!(frame.channel_serial.is_some());
                let message = &frame.messages.unwrap()[0];
                assert_eq!(message.id, Some(format!("{alice_id}:0:{index}")));
                assert_eq!(message.name.as_deref(), Some(name));
                assert_eq!(message.client_id.as_deref(), Some("alice"));
                assert_eq!(message.connection_id.as_deref(), Some(alice_id.as_str()));
                assert!(message.timestamp.is_some());
            }
        }

        // echo=false: bob's own message reaches alice, not bob.
        quiet
            .send(&publish_frame(
                "room",
                0,
                json!([{"name":"c","data":"AQID","encoding":"base64"}]),
            ))
            .await;
        assert_eq!(quiet.expect(Action::ACK).await.msg_serial, Some(0));
        quiet.nothing_queued("no-echo").await;
        let frame = alice.expect(Action::MESSAGE).await;
        let message = &frame.messages.unwrap()[0];
        assert_eq!(message.client_id.as_deref(), Some("bob"));
        // Binary data crosses formats as binary.
        assert_eq!(
            (message.data.clone(), message.encoding.as_deref()),
            (Some(json!("AQID")), Some("base64"))
        );
    }
}

#[tokio::test]
async fn a_publish_needs_no_attach_and_reaches_history_and_sse_in_order() {
    let app = spawn().await;
    let mut sse = app.sse("channels=log").await;
    for format in FORMATS {
        let (mut client, connected) = Client::connected(&app.mock, "clientId=carol", format).await;
        let id = connected.connection_id.unwrap();

        for serial in 0..3 {
            client
                .send(&publish_frame(
                    "log",
                    serial,
                    json!([{"data": format!("m{serial}")}]),
                ))
                .await;
            assert_eq!(client.expect(Action::ACK).await.msg_serial, Some(serial));
        }

        for serial in 0..3 {
            let message = sse.message().await;
            assert_eq!(message["id"], format!("{id}:{serial}:0"));
            assert_eq!(message["data"], format!("m{serial}"));
            assert_eq!(message["clientId"], "carol");
            assert_eq!(message["connectionId"], id.as_str());
        }
    }
    let history: serde_json::Value = app
        .get(&format!(
            "/channels/log/messages?direction=forwards&key={}",
            enc(KEY)
        ))
        .await
        .json()
        .await
        .unwrap();
    let data: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, ["m0", "m1", "m2", "m0", "m1", "m2"]);
}

#[tokio::test]
async fn rest_publishes_reach_realtime_subscribers() {
    let app = spawn().await;
    let (mut client, _) = Client::connected(&app.mock, "", Format::Msgpack).await;
    client.attach("news").await;

    let id = app.mock.publish_data("news", "headline", json!({"x": 1}));

    let frame = client.expect(Action::MESSAGE).await;
    let message = &frame.messages.unwrap()[0];
    assert_eq!(message.id.as_deref(), Some(id.as_str()));
    assert_eq!(message.data, Some(json!("{\"x\":1}")));
    assert_eq!(message.encoding.as_deref(), Some("json"));
    assert_eq!(app.mock.stats().channels["news"].subscribers, 1);
}

#[tokio::test]
async fn publishes_the_credential_does_not_allow_are_nacked() {
    let app = spawn().await;
    for format in FORMATS {
        let token = jwt(
            &app.mock,
            r#"{"ro:*":["subscribe"],"rw":["*"]}"#,
            Some("dave"),
            3600,
        );
        let (mut client, _) = Client::with_token(&app.mock, &token, format).await;

        client
            .send(&publish_frame("ro:x", 0, json!([{"data":"x"}])))
            .await;
        let nack = client.expect(Action::NACK).await;
        assert_eq!((nack.msg_serial, nack.count), (Some(0), Some(1)));
        assert_eq!(nack.error.unwrap().code, 40160);

        client
            .send(&publish_frame(
                "rw",
                1,
                json!([{"data":"x","clientId":"mallory"}]),
            ))
            .await;
        let nack = client.expect(Action::NACK).await;
        assert_eq!(nack.msg_serial, Some(1));
        assert_eq!(nack.error.unwrap().code, 40012);

        client
            .send(&publish_frame(
                "rw",
                2,
                json!([{"data":"x","clientId":"dave"}]),
            ))
            .await;
        assert_eq!(client.expect(Action::ACK).await.msg_serial, Some(2));
    }
    assert_eq!(app.mock.stats().published, 2);
}

#[tokio::test]
async fn a_run_of_publishes_gets_one_ack_covering_its_range() {
    let app = with(
        MockAbly::builder().key_with_capability(KEY, r#"{"open":["*"],"read":["subscribe"]}"#),
    )
    .await;
    for format in FORMATS {
        let (mut client, _) = Client::connected(&app.mock, "", format).await;
        let run: Vec<_> = (0..3)
            .map(|serial| publish_frame("open", serial, json!([{"data": serial.to_string()}])))
            .collect();
        client.send_together(&run).await;

        let ack = client.expect(Action::ACK).await;
        assert_eq!((ack.msg_serial, ack.count), (Some(0), Some(3)));
        let res = ack.res.unwrap();
        assert_eq!(res.len(), 3);
        assert!(
            res.iter()
                .all(|r| r["serials"].as_array().unwrap().len() == 1)
        );
        client.nothing_queued("one-ack").await;

        // A NACK splits the run: nothing is ACKed twice or skipped.
        client
            .send_together(&[
                publish_frame("open", 3, json!([{"data": "3"}])),
                publish_frame("read", 4, json!([{"data": "4"}])),
                publish_frame("open", 5, json!([{"data": "5"}])),
            ])
            .await;
        let ack = client.expect(Action::ACK).await;
        assert_eq!((ack.msg_serial, ack.count), (Some(3), Some(1)));
        let nack = client.expect(Action::NACK).await;
        assert_eq!((nack.msg_serial, nack.count), (Some(4), Some(1)));
        assert_eq!(nack.error.unwrap().code, 40160);
        let ack = client.expect(Action::ACK).await;
        assert_eq!((ack.msg_serial, ack.count), (Some(5), Some(1)));
        client.nothing_queued("split").await;
    }
}

#[tokio::test]
async fn realtime_and_history_carry_the_same_serial_and_action_create_and_sse_neither() {
    let app = spawn().await;
    let mut frames = app.sse("channels=news").await;
    let mut subscribers = Vec::new();
    for format in FORMATS {
        let (mut client, _) = Client::connected(&app.mock, "", format).await;
        client.attach("news").await;
        subscribers.push(client);
    }

    let published: serde_json::Value = app
        .publish("news", json!({"data": "x"}))
        .await
        .json()
        .await
        .unwrap();

    let serial = published["serials"][0].as_str().unwrap().to_owned();
    let history = app.history_forwards("news").await;
    assert_eq!(history[0]["serial"], serial.as_str());
    assert_eq!(history[0]["action"], 0);
    for client in &mut subscribers {
        let frame = client.expect(Action::MESSAGE).await;
        let message = &frame.messages.unwrap()[0];
        assert_eq!(message.serial.as_deref(), Some(serial.as_str()));
        assert_eq!(message.action, Some(shared::message::MessageAction::CREATE));
    }
    let envelope = frames.message().await;
    assert!(envelope.get("serial").is_none(), "{envelope}");
    assert!(envelope.get("action").is_none(), "{envelope}");
}

#[tokio::test]
async fn a_rest_publish_with_a_connection_key_is_attributed_to_that_connection() {
    let app = spawn().await;
    let (mut client, connected) = Client::connected(&app.mock, "", Format::Json).await;
    let (connection_id, connection_key) = ids(&connected);
    client.attach("behalf").await;

    let body = json!([
        {"name": "mine", "connectionKey": connection_key},
        {"name": "unknown", "connectionKey": "AAAAAAAAAAAA!BBBBBBBBBBBBBBBB"}
    ]);
    assert_eq!(app.publish("behalf", body).await.status(), 201);

    let mut delivered = client.expect(Action::MESSAGE).await.messages.unwrap();
    delivered.extend(client.expect(Action::MESSAGE).await.messages.unwrap());
    let seen: Vec<(Option<&str>, Option<&str>)> = delivered
        .iter()
        .map(|m| (m.name.as_deref(), m.connection_id.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("mine"), Some(connection_id.as_str())),
            (Some("unknown"), None)
        ]
    );
    assert!(delivered.iter().all(|m| m.connection_key.is_none()));
}
