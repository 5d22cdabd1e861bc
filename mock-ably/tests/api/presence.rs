//! Presence on the realtime WebSocket, frame by frame in JSON and msgpack:
//! enter, update and leave with Ably's semantics, the ACK before the echo,
//! fan-out by mode, SYNC after ATTACHED, the leaves the server makes, and
//! REST `GET /channels/{name}/presence`.

use std::time::Duration;

use mock_ably::MockAbly;
use serde_json::json;
use shared::protocol::{Action, Flags, Format, PresenceAction, PresenceMessage, ProtocolMessage};

use crate::helpers::{KEY, KEY_NAME, TestMock, assert_error, enc, spawn, with, within};
use crate::ws::{Client, FORMATS, ids, on};

/// A PRESENCE frame with `items` and `serial`.
fn presence_frame(channel: &str, serial: u64, items: serde_json::Value) -> ProtocolMessage {
    let mut frame = on(Action::PRESENCE, channel);
    frame.msg_serial = Some(serial);
    frame.presence = Some(serde_json::from_value(items).unwrap());
    frame
}

impl TestMock {
    /// GETs `path` with [`KEY`]'s Basic auth, and its JSON body.
    async fn get_as_key(&self, path: &str) -> serde_json::Value {
        within(
            self.client
                .get(self.url(path))
                .basic_auth(KEY_NAME, Some("test-secret"))
                .send(),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
    }
}

impl Client {
    /// The next PRESENCE frame's single item.
    async fn presence_event(&mut self) -> PresenceMessage {
        let frame = self.expect(Action::PRESENCE).await;
        let mut items = frame.presence.expect("a presence array");
        assert_eq!(items.len(), 1, "one change per frame");
        items.remove(0)
    }
}

#[tokio::test]
async fn enter_update_and_leave_are_acked_echoed_and_fanned_out_with_ablys_semantics() {
    let app = spawn().await;
    for format in FORMATS {
        let room = format!("room-{format:?}");
        let (mut alice, connected) = Client::connected(&app.mock, "clientId=alice", format).await;
        let (alice_id, _) = ids(&connected);
        let (mut bob, _) = Client::connected(&app.mock, "clientId=bob", format).await;
        alice.attach(&room).await;
        bob.attach(&room).await;

        // Spaces keeps its profile in `data` (a JSON string) and its locks
        // in `extras`: both verbatim.
        let extras = json!({"locks": [{"id": "lock-1", "status": "pending"}]});
        alice
            .send(&presence_frame(
                &room,
                0,
                json!([{"action": 2, "data": "{\"name\":\"Alice\"}", "encoding": "json", "extras": extras}]),
            ))
            .await;
        let ack = alice.expect(Action::ACK).await;
        assert_eq!((ack.msg_serial, ack.count), (Some(0), Some(1)));
        let echo = alice.presence_event().await;
        let seen = bob.presence_event().await;
        assert_eq!(echo, seen);
        assert_eq!(seen.action, Some(PresenceAction::ENTER));
        assert_eq!(seen.id, Some(format!("{alice_id}:0:0")));
        assert_eq!(seen.client_id.as_deref(), Some("alice"));
        assert_eq!(seen.connection_id.as_deref(), Some(alice_id.as_str()));
        assert!(seen.timestamp.is_some());
        assert_eq!(seen.data, Some(json!("{\"name\":\"Alice\"}")));
        assert_eq!(seen.encoding.as_deref(), Some("json"));
        assert_eq!(seen.extras, extras.as_object().cloned());

        // Enter while present: an update.
        alice
            .send(&presence_frame(
                &room,
                1,
                json!([{"action": 2, "data": "again"}]),
            ))
            .await;
        alice.expect(Action::ACK).await;
        let update = bob.presence_event().await;
        assert_eq!(update.action, Some(PresenceAction::UPDATE));
        assert_eq!(update.id, Some(format!("{alice_id}:1:0")));
        assert_eq!(alice.presence_event().await, update);

        // Leave, then a leave while absent: ACKed, nothing broadcast.
        alice
            .send(&presence_frame(&room, 2, json!([{"action": 3}])))
            .await;
        alice.expect(Action::ACK).await;
        let leave = bob.presence_event().await;
        assert_eq!(leave.action, Some(PresenceAction::LEAVE));
        assert_eq!(leave.data, Some(json!("again")), "the member's last data");
        alice.presence_event().await;
        alice
            .send(&presence_frame(&room, 3, json!([{"action": 3}])))
            .await;
        alice.expect(Action::ACK).await;
        alice.nothing_queued("no-echo").await;
        bob.nothing_queued("no-leave").await;

        // Update while absent: an enter.
        alice
            .send(&presence_frame(
                &room,
                4,
                json!([{"action": 4, "data": "back"}]),
            ))
            .await;
        alice.expect(Action::ACK).await;
        assert_eq!(
            bob.presence_event().await.action,
            Some(PresenceAction::ENTER)
        );
    }
}

#[tokio::test]
async fn presence_needs_the_presence_capability_and_a_concrete_client_id() {
    let app = with(MockAbly::builder().key_with_capability(
        KEY,
        r#"{"lobby":["subscribe","publish"],"room":["presence","subscribe"]}"#,
    ))
    .await;
    for format in FORMATS {
        let (mut alice, _) = Client::connected(&app.mock, "clientId=alice", format).await;
        alice
            .send(&presence_frame("lobby", 0, json!([{"action": 2}])))
            .await;
        let nack = alice.expect(Action::NACK).await;
        assert_eq!(nack.msg_serial, Some(0));
        assert_eq!(nack.error.unwrap().code, 40160);

        // Another clientId than the connection's.
        alice
            .send(&presence_frame(
                "room",
                1,
                json!([{"action": 2, "clientId": "mallory"}]),
            ))
            .await;
        assert_eq!(alice.expect(Action::NACK).await.error.unwrap().code, 40012);

        // No clientId at all.
        let (mut anonymous, _) = Client::connected(&app.mock, "", format).await;
        anonymous
            .send(&presence_frame("room", 0, json!([{"action": 2}])))
            .await;
        assert_eq!(
            anonymous.expect(Action::NACK).await.error.unwrap().code,
            40012
        );
        anonymous.nothing_queued("still-up").await;
    }
}

#[tokio::test]
async fn a_late_attacher_gets_every_member_in_a_paged_sync_with_original_ids() {
    let app = spawn().await;
    // A wildcard connection enters 150 clientIds (enterClient, RTP15).
    let (mut host, connected) = Client::connected(&app.mock, "clientId=*", Format::Json).await;
    let (host_id, _) = ids(&connected);
    host.attach("crowd").await;
    let items: Vec<_> = (0..150)
        .map(|i| json!({"action": 2, "clientId": format!("m{i:03}"), "data": i.to_string()}))
        .collect();
    host.send(&presence_frame("crowd", 0, json!(items))).await;
    host.expect(Action::ACK).await;

    for format in FORMATS {
        let (mut late, _) = Client::connected(&app.mock, "clientId=late", format).await;
        let attached = late.attach("crowd").await;
        assert!(attached.flags.unwrap().contains(Flags::HAS_PRESENCE));
        let first = late.expect(Action::SYNC).await;
        let second = late.expect(Action::SYNC).await;
        let (first_serial, second_serial) = (
            first.channel_serial.unwrap(),
            second.channel_serial.unwrap(),
        );
        let (sync_id, cursor) = first_serial.split_once(':').unwrap();
        assert!(!cursor.is_empty(), "the first page names a next one");
        assert!(
            sync_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
        assert_eq!(
            second_serial,
            format!("{sync_id}:"),
            "the last page ends it"
        );
        let members: Vec<PresenceMessage> = first
            .presence
            .unwrap()
            .into_iter()
            .chain(second.presence.unwrap())
            .collect();
        assert_eq!(members.len(), 150);
        for (i, member) in members.iter().enumerate() {
            assert_eq!(member.action, Some(PresenceAction::PRESENT));
            assert_eq!(member.client_id, Some(format!("m{i:03}")));
            assert_eq!(member.id, Some(format!("{host_id}:0:{i}")));
            assert_eq!(member.data, Some(json!(i.to_string())));
        }
    }

    // An empty channel: no HAS_PRESENCE, no SYNC.
    let (mut quiet, _) = Client::connected(&app.mock, "", Format::Json).await;
    let attached = quiet.attach("empty").await;
    assert!(!attached.flags.unwrap().contains(Flags::HAS_PRESENCE));
    quiet.nothing_queued("no-sync").await;
}

#[tokio::test]
async fn a_resumed_member_keeps_its_id_through_the_sync_and_its_automatic_reentry() {
    let app = spawn().await;
    for format in FORMATS {
        let room = format!("resume-{format:?}");
        let (mut bob, _) = Client::connected(&app.mock, "clientId=bob", format).await;
        bob.attach(&room).await;
        let (mut alice, connected) = Client::connected(&app.mock, "clientId=alice", format).await;
        let (alice_id, key) = ids(&connected);
        alice.attach(&room).await;
        alice
            .send(&presence_frame(
                &room,
                0,
                json!([{"action": 2, "data": "hi"}]),
            ))
            .await;
        alice.expect(Action::ACK).await;
        alice.presence_event().await;
        bob.presence_event().await;

        alice.send(&ProtocolMessage::new(Action::DISCONNECT)).await;
        alice.expect_close().await;
        let query = format!("clientId=alice&resume={}", enc(&key));
        let (mut alice, resumed) = Client::connected(&app.mock, &query, format).await;
        assert_eq!(ids(&resumed).0, alice_id);
        let attached = alice.attach(&room).await;
        assert!(attached.flags.unwrap().contains(Flags::HAS_PRESENCE));
        let sync = alice.expect(Action::SYNC).await.presence.unwrap();
        assert_eq!(sync.len(), 1);
        assert_eq!(
            sync[0].id,
            Some(format!("{alice_id}:0:0")),
            "the original id"
        );

        // ably-js re-enters with its own id and clientId (RTP17g): kept.
        alice
            .send(&presence_frame(
                &room,
                1,
                json!([{"action": 2, "id": format!("{alice_id}:0:0"), "clientId": "alice", "data": "hi"}]),
            ))
            .await;
        alice.expect(Action::ACK).await;
        let reentry = bob.presence_event().await;
        assert_eq!(reentry.action, Some(PresenceAction::UPDATE));
        assert_eq!(reentry.id, Some(format!("{alice_id}:0:0")));
        assert_eq!(alice.presence_event().await, reentry);

        // An id that is not this connection's own is not kept.
        alice
            .send(&presence_frame(
                &room,
                2,
                json!([{"action": 4, "id": "someoneElse:0:0", "data": "x"}]),
            ))
            .await;
        alice.expect(Action::ACK).await;
        assert_eq!(
            bob.presence_event().await.id,
            Some(format!("{alice_id}:2:0"))
        );
    }
}

#[tokio::test]
async fn detach_and_close_make_the_connections_members_leave_at_once() {
    let app = spawn().await;
    let (mut bob, _) = Client::connected(&app.mock, "clientId=bob", Format::Json).await;
    bob.attach("a").await;
    bob.attach("b").await;
    let (mut alice, connected) =
        Client::connected(&app.mock, "clientId=alice", Format::Msgpack).await;
    let (alice_id, _) = ids(&connected);
    for (serial, channel) in [(0, "a"), (1, "b")] {
        alice.attach(channel).await;
        alice
            .send(&presence_frame(
                channel,
                serial,
                json!([{"action": 2, "data": channel}]),
            ))
            .await;
        alice.expect(Action::ACK).await;
        alice.presence_event().await;
        bob.presence_event().await;
    }

    alice.send(&on(Action::DETACH, "a")).await;
    alice.expect(Action::DETACHED).await;
    let leave = bob.presence_event().await;
    assert_eq!(leave.action, Some(PresenceAction::LEAVE));
    assert_eq!(leave.client_id.as_deref(), Some("alice"));
    assert_eq!(leave.data, Some(json!("a")));
    // A leave the server made: an id that ably-js reads as synthesized.
    assert!(!leave.id.unwrap().starts_with(&alice_id));

    alice.send(&ProtocolMessage::new(Action::CLOSE)).await;
    alice.expect(Action::CLOSED).await;
    let leave = bob.presence_event().await;
    assert_eq!(leave.action, Some(PresenceAction::LEAVE));
    assert_eq!(leave.data, Some(json!("b")));
    bob.nothing_queued("nothing-else").await;
}

#[tokio::test]
async fn a_lost_connections_members_leave_after_remain_present_for_unless_it_resumes() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .remain_present_for(Duration::from_secs(3600)),
    )
    .await;
    let (mut watcher, _) = Client::connected(&app.mock, "clientId=watcher", Format::Json).await;
    watcher.attach("lost").await;
    let enter = async |client_id: &str| {
        let query = format!("clientId={client_id}&remainPresentFor=300");
        let (mut client, connected) = Client::connected(&app.mock, &query, Format::Json).await;
        if client
            .attach("lost")
            .await
            .flags
            .unwrap()
            .contains(Flags::HAS_PRESENCE)
        {
            client.expect(Action::SYNC).await;
        }
        client
            .send(&presence_frame("lost", 0, json!([{"action": 2}])))
            .await;
        client.expect(Action::ACK).await;
        client.presence_event().await;
        (client, ids(&connected))
    };

    // Alice is lost and resumes within the window: she stays.
    let (alice, (alice_id, alice_key)) = enter("alice").await;
    assert_eq!(
        watcher.presence_event().await.client_id.as_deref(),
        Some("alice")
    );
    drop(alice);
    let query = format!("clientId=alice&resume={}", enc(&alice_key));
    let (_alice, resumed) = Client::connected(&app.mock, &query, Format::Json).await;
    assert_eq!(ids(&resumed).0, alice_id);

    // Carol is lost after Alice's window began, with the same window: her
    // leave comes after Alice's would have, so it is the next event.
    let (carol, (carol_id, _)) = enter("carol").await;
    assert_eq!(
        watcher.presence_event().await.client_id.as_deref(),
        Some("carol")
    );
    drop(carol);
    let leave = watcher.presence_event().await;
    assert_eq!(leave.action, Some(PresenceAction::LEAVE));
    assert_eq!(leave.client_id.as_deref(), Some("carol"));
    assert!(!leave.id.unwrap().starts_with(&carol_id));
    let members: serde_json::Value = app.get_as_key("/channels/lost/presence").await;
    let present: Vec<_> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["clientId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(present, ["alice"]);
}

#[tokio::test]
async fn rest_presence_lists_members_paged_and_filtered_and_needs_subscribe() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .key_with_capability("testApp.narrow:narrow-secret", r#"{"*":["publish"]}"#),
    )
    .await;
    let (mut host, connected) = Client::connected(&app.mock, "clientId=*", Format::Msgpack).await;
    let (host_id, _) = ids(&connected);
    let items: Vec<_> = ["carol", "alice", "bob"]
        .iter()
        .map(|id| json!({"action": 2, "clientId": id, "data": format!("{id}-data"), "extras": {"k": id}}))
        .collect();
    host.send(&presence_frame("rest", 0, json!(items))).await;
    host.expect(Action::ACK).await;

    let get = async |query: &str, key: (&str, &str)| {
        within(
            app.client
                .get(app.url(&format!("/channels/rest/presence{query}")))
                .basic_auth(key.0, Some(key.1))
                .send(),
        )
        .await
        .unwrap()
    };
    let key = (KEY_NAME, "test-secret");
    let page = get("?limit=2", key).await;
    assert_eq!(page.status(), 200);
    let link = page.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains("<./presence?limit=2&offset=2>; rel=\"next\""),
        "{link}"
    );
    let body: serde_json::Value = page.json().await.unwrap();
    assert_eq!(
        body,
        json!([
            {"id": format!("{host_id}:0:1"), "action": 1, "clientId": "alice", "connectionId": host_id,
             "data": "alice-data", "extras": {"k": "alice"}, "timestamp": body[0]["timestamp"]},
            {"id": format!("{host_id}:0:2"), "action": 1, "clientId": "bob", "connectionId": host_id,
             "data": "bob-data", "extras": {"k": "bob"}, "timestamp": body[1]["timestamp"]},
        ])
    );
    let rest: serde_json::Value = get("?limit=2&offset=2", key).await.json().await.unwrap();
    assert_eq!(rest[0]["clientId"], "carol");
    let filtered: serde_json::Value = get("?clientId=bob", key).await.json().await.unwrap();
    assert_eq!(filtered.as_array().unwrap().len(), 1);

    let refused = get("", ("testApp.narrow", "narrow-secret")).await;
    assert_error(refused, 401, 40160).await;

    // Channel status counts them too.
    let status: serde_json::Value = app.get_as_key("/channels/rest").await;
    let metrics = &status["status"]["occupancy"]["metrics"];
    assert_eq!(
        (
            metrics["presenceMembers"].clone(),
            metrics["presenceConnections"].clone()
        ),
        (json!(3), json!(1))
    );
    assert_eq!(status["status"]["isActive"], true);
}

/// `field` of a msgpack map.
fn msgpack_field<'a>(item: &'a rmpv::Value, name: &str) -> Option<&'a rmpv::Value> {
    item.as_map()?
        .iter()
        .find(|(key, _)| key.as_str() == Some(name))
        .map(|(_, value)| value)
}

// Spaces' `cursors.getAll()` in Node reads `::$cursors` history through
// ably-js left on its default, msgpack: it asks for `application/x-msgpack`
// and decodes the body as msgpack whatever its Content-Type
// (`docs/protocol.md#msgpack-on-rest`). A JSON body failed in
// the client with "N trailing bytes".
#[tokio::test]
async fn rest_history_and_presence_answer_msgpack_when_accept_asks_for_it() {
    let app = spawn().await;
    let channel = "board::$cursors";
    let (mut alice, connected) =
        Client::connected(&app.mock, "clientId=alice", Format::Msgpack).await;
    let (alice_id, _) = ids(&connected);
    alice
        .send(&presence_frame(
            channel,
            0,
            json!([{"action": 2, "data": "here"}]),
        ))
        .await;
    alice.expect(Action::ACK).await;
    let mut publish = on(Action::MESSAGE, channel);
    publish.msg_serial = Some(1);
    publish.messages = Some(vec![
        serde_json::from_value(
            json!({"name": "cursorUpdate", "data": "[{\"offset\":0}]", "encoding": "json"}),
        )
        .unwrap(),
        serde_json::from_value(json!({"name": "bytes", "data": "AQL/", "encoding": "base64"}))
            .unwrap(),
    ]);
    alice.send(&publish).await;
    alice.expect(Action::ACK).await;

    let get = async |path: &str, accept: &str| {
        within(
            app.client
                .get(app.url(&format!("/channels/board%3A%3A%24cursors/{path}")))
                .basic_auth(KEY_NAME, Some("test-secret"))
                .header("accept", accept)
                .send(),
        )
        .await
        .unwrap()
    };
    let read = async |response: reqwest::Response| {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/x-msgpack");
        assert!(
            response.headers()["link"]
                .to_str()
                .unwrap()
                .contains("rel=\"current\"")
        );
        let bytes = response.bytes().await.unwrap();
        let mut reader = &bytes[..];
        let value = rmpv::decode::read_value(&mut reader).unwrap();
        assert!(reader.is_empty(), "one msgpack value, nothing after it");
        value.as_array().cloned().expect("an array")
    };

    let history = read(get("messages", "application/x-msgpack").await).await;
    assert_eq!(history.len(), 2);
    // Newest first; binary data as `bin`, the rest as published.
    assert_eq!(
        msgpack_field(&history[0], "name").and_then(rmpv::Value::as_str),
        Some("bytes")
    );
    assert_eq!(
        msgpack_field(&history[0], "data"),
        Some(&rmpv::Value::Binary(vec![1, 2, 255]))
    );
    assert_eq!(msgpack_field(&history[0], "encoding"), None);
    assert_eq!(
        msgpack_field(&history[1], "data").and_then(rmpv::Value::as_str),
        Some("[{\"offset\":0}]")
    );
    assert_eq!(
        msgpack_field(&history[1], "connectionId").and_then(rmpv::Value::as_str),
        Some(alice_id.as_str())
    );

    let members = read(get("presence", "application/x-msgpack").await).await;
    assert_eq!(members.len(), 1);
    assert_eq!(
        msgpack_field(&members[0], "action").and_then(rmpv::Value::as_u64),
        Some(1)
    );
    assert_eq!(
        msgpack_field(&members[0], "clientId").and_then(rmpv::Value::as_str),
        Some("alice")
    );
    assert_eq!(
        msgpack_field(&members[0], "data").and_then(rmpv::Value::as_str),
        Some("here")
    );

    // JSON stays the default.
    let json = get("messages", "application/json").await;
    assert_eq!(json.headers()["content-type"], "application/json");
    let body: serde_json::Value = json.json().await.unwrap();
    assert_eq!(body[0]["data"], "AQL/");
    assert_eq!(body[0]["encoding"], "base64");
}

#[tokio::test]
async fn batch_presence_answers_each_channel_in_order_with_members_or_its_error() {
    let app = with(MockAbly::builder().key(KEY).key_with_capability(
        "testApp.narrow:narrow-secret",
        r#"{"open":["subscribe"],"shut":["publish"]}"#,
    ))
    .await;
    let (mut host, connected) = Client::connected(&app.mock, "clientId=*", Format::Json).await;
    let (host_id, _) = ids(&connected);
    for (serial, channel) in ["open", "shut"].iter().enumerate() {
        let item = json!([{"action": 2, "clientId": format!("{channel}-member"), "data": "d"}]);
        host.send(&presence_frame(channel, serial as u64, item))
            .await;
        host.expect(Action::ACK).await;
    }

    let response = within(
        app.client
            .get(app.url("/presence?channels=shut,open,empty"))
            .basic_auth("testApp.narrow", Some("narrow-secret"))
            .send(),
    )
    .await
    .unwrap();

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["successCount"], 1);
    assert_eq!(body["failureCount"], 2);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["channel"], "shut");
    assert_eq!(results[0]["error"]["code"], 40160);
    assert_eq!(results[0]["error"]["statusCode"], 401);
    assert!(results[0].get("presence").is_none());
    assert_eq!(
        results[1],
        json!({"channel": "open", "presence": [
            {"id": format!("{host_id}:0:0"), "action": 1, "clientId": "open-member",
             "connectionId": host_id, "data": "d", "timestamp": results[1]["presence"][0]["timestamp"]}
        ]})
    );
    assert_eq!(results[2]["channel"], "empty");
    assert_eq!(results[2]["error"]["code"], 40160);

    let none = within(
        app.client
            .get(app.url("/presence"))
            .basic_auth(KEY_NAME, Some("test-secret"))
            .send(),
    )
    .await
    .unwrap();
    assert_error(none, 400, 40000).await;
}

#[tokio::test]
async fn a_connection_on_a_key_without_a_client_id_may_enter_any_client_id_but_a_token_may_not() {
    let app = spawn().await;
    for format in FORMATS {
        let (mut keyed, connected) = Client::connected(&app.mock, "", format).await;
        let (keyed_id, _) = ids(&connected);
        let room = format!("room-{}", crate::ws::format_param(format));
        keyed.attach(&room).await;
        keyed
            .send(&presence_frame(
                &room,
                0,
                json!([{"action": 2, "clientId": "bob", "data": "b"}]),
            ))
            .await;
        keyed.expect(Action::ACK).await;
        let seen = keyed.presence_event().await;
        assert_eq!(
            (seen.client_id.as_deref(), seen.connection_id.as_deref()),
            (Some("bob"), Some(keyed_id.as_str()))
        );

        let token = app.mock.issue_token(shared::TokenParams::default()).token;
        let (mut anonymous, _) = Client::with_token(&app.mock, &token, format).await;
        anonymous
            .send(&presence_frame(
                &room,
                0,
                json!([{"action": 2, "clientId": "bob"}]),
            ))
            .await;
        assert_eq!(
            anonymous.expect(Action::NACK).await.error.unwrap().code,
            40012
        );
    }
}

#[tokio::test]
async fn a_wildcard_token_connection_is_told_star_and_may_enter_any_client_id() {
    let app = spawn().await;
    let params = shared::TokenParams {
        client_id: Some("*".to_owned()),
        ..shared::TokenParams::default()
    };
    let token = app.mock.issue_token(params).token;
    for format in FORMATS {
        let (mut wild, connected) = Client::with_token(&app.mock, &token, format).await;
        let details = connected.connection_details.unwrap();
        assert_eq!(details.client_id.as_deref(), Some("*"));

        let room = format!("wild-{}", crate::ws::format_param(format));
        wild.attach(&room).await;
        wild.send(&presence_frame(
            &room,
            0,
            json!([{"action": 2, "clientId": "carol"}]),
        ))
        .await;
        wild.expect(Action::ACK).await;
        assert_eq!(
            wild.presence_event().await.client_id.as_deref(),
            Some("carol")
        );
    }
}

#[tokio::test]
async fn presence_history_lists_the_changes_newest_first_and_needs_history() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .key_with_capability("testApp.narrow:narrow-secret", r#"{"*":["subscribe"]}"#),
    )
    .await;
    let (mut alice, connected) = Client::connected(&app.mock, "clientId=alice", Format::Json).await;
    let (alice_id, _) = ids(&connected);
    for (serial, action) in [(0, 2), (1, 4), (2, 3)] {
        let item = json!([{"action": action, "data": format!("d{serial}")}]);
        alice.send(&presence_frame("hist", serial, item)).await;
        alice.expect(Action::ACK).await;
    }

    let get = async |query: &str, key: (&str, &str)| {
        within(
            app.client
                .get(app.url(&format!("/channels/hist/presence/history{query}")))
                .basic_auth(key.0, Some(key.1))
                .send(),
        )
        .await
        .unwrap()
    };
    let key = (KEY_NAME, "test-secret");
    let newest_first: serde_json::Value = get("", key).await.json().await.unwrap();
    let seen: Vec<(&serde_json::Value, &serde_json::Value, &serde_json::Value)> = newest_first
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (&m["action"], &m["clientId"], &m["data"]))
        .collect();
    assert_eq!(
        seen,
        [
            (&json!(3), &json!("alice"), &json!("d2")),
            (&json!(4), &json!("alice"), &json!("d1")),
            (&json!(2), &json!("alice"), &json!("d0")),
        ]
    );
    assert_eq!(newest_first[2]["id"], format!("{alice_id}:0:0"));
    let forwards: serde_json::Value = get("?direction=forwards&limit=1", key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(forwards.as_array().unwrap().len(), 1);
    assert_eq!(forwards[0]["action"], 2);

    assert_error(
        get("", ("testApp.narrow", "narrow-secret")).await,
        401,
        40160,
    )
    .await;
    assert_error(get("?direction=sideways", key).await, 400, 40003).await;
}

#[tokio::test]
async fn a_client_sync_gets_the_members_again_and_an_empty_channel_one_empty_page() {
    let app = spawn().await;
    for format in FORMATS {
        let room = format!("resync-{}", crate::ws::format_param(format));
        let (mut alice, connected) = Client::connected(&app.mock, "clientId=alice", format).await;
        let (alice_id, _) = ids(&connected);
        alice.attach(&room).await;
        alice
            .send(&presence_frame(
                &room,
                0,
                json!([{"action": 2, "data": "a"}]),
            ))
            .await;
        alice.expect(Action::ACK).await;
        alice.presence_event().await;

        alice.send(&on(Action::SYNC, &room)).await;
        let sync = alice.expect(Action::SYNC).await;
        assert!(sync.channel_serial.unwrap().ends_with(':'));
        let members = sync.presence.unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].id, Some(format!("{alice_id}:0:0")));
        assert_eq!(members[0].action, Some(PresenceAction::PRESENT));

        let empty = format!("empty-{}", crate::ws::format_param(format));
        alice.attach(&empty).await;
        alice.send(&on(Action::SYNC, &empty)).await;
        let sync = alice.expect(Action::SYNC).await;
        assert_eq!(sync.channel.as_deref(), Some(empty.as_str()));
        assert_eq!(sync.presence, Some(Vec::new()));
        alice.nothing_queued("still-up").await;
    }
}
