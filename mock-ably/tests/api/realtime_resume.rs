//! Realtime continuity: DISCONNECT and lost sockets, the resume registry,
//! `resume`/`recover` keys, message serials re-sent after a resume, and
//! re-attaching with a channel serial.

use std::time::Duration;

use mock_ably::MockAbly;
use serde_json::json;
use shared::protocol::{Action, Flags, Format, ProtocolMessage};

use crate::helpers::{KEY, TestMock, enc, eventually, spawn, with};
use crate::ws::{Client, FORMATS, format_param, ids, on, publish_frame};

#[tokio::test]
async fn disconnect_and_a_lost_socket_leave_the_connection_resumable() {
    let app = spawn().await;
    for format in FORMATS {
        let (mut client, connected) = Client::connected(&app.mock, "clientId=alice", format).await;
        let (id, key) = ids(&connected);

        // DISCONNECT: the server closes the socket, the connection stays.
        client.send(&ProtocolMessage::new(Action::DISCONNECT)).await;
        client.expect_close().await;
        eventually("the socket is closed", || {
            app.mock.stats().open_connections == 0
        })
        .await;
        let query = format!("clientId=alice&resume={}", enc(&key));
        let (client, resumed) = Client::connected(&app.mock, &query, format).await;
        assert_eq!(ids(&resumed), (id.clone(), key.clone()));
        assert_eq!(resumed.error, None);

        // A socket dropped without any close: resumable too.
        drop(client);
        eventually("the socket is gone", || {
            app.mock.stats().open_connections == 0
        })
        .await;
        let (mut client, resumed) = Client::connected(&app.mock, &query, format).await;
        assert_eq!(ids(&resumed), (id.clone(), key.clone()));

        // CLOSE ends it: no resume after that.
        client.send(&ProtocolMessage::new(Action::CLOSE)).await;
        client.expect(Action::CLOSED).await;
        client.expect_close().await;
        let (_other, fresh) = Client::connected(&app.mock, &query, format).await;
        assert_ne!(fresh.connection_id.as_deref(), Some(id.as_str()));
        assert_eq!(fresh.error.unwrap().code, 80008);
    }
}

#[tokio::test]
async fn a_resume_or_recovery_key_past_the_connection_state_ttl_starts_afresh() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .connection_state_ttl(Duration::from_secs(10)),
    )
    .await;
    let (mut client, connected) = Client::connected(&app.mock, "", Format::Json).await;
    let (id, key) = ids(&connected);
    assert_eq!(
        connected.connection_details.unwrap().connection_state_ttl,
        Some(10_000)
    );
    client.send(&ProtocolMessage::new(Action::DISCONNECT)).await;
    client.expect_close().await;
    eventually("the socket is closed", || {
        app.mock.stats().open_connections == 0
    })
    .await;

    // Within the TTL, `recover` names the connection too: ably-js v2 sends
    // the bare connectionKey from its recovery key (RTN16f); a whole
    // recovery key (RTN16g) is read as well.
    let whole = json!({"connectionKey": key, "msgSerial": 0, "channelSerials": {}}).to_string();
    for recover in [key.clone(), whole] {
        let (mut client, recovered) = Client::connected(
            &app.mock,
            &format!("recover={}", enc(&recover)),
            Format::Json,
        )
        .await;
        assert_eq!(ids(&recovered).0, id, "recover={recover}");
        assert_eq!(recovered.error, None);
        client.send(&ProtocolMessage::new(Action::DISCONNECT)).await;
        client.expect_close().await;
        eventually("the socket is closed", || {
            app.mock.stats().open_connections == 0
        })
        .await;
    }

    app.mock.advance_clock(Duration::from_secs(11));
    let (_client, late) =
        Client::connected(&app.mock, &format!("resume={}", enc(&key)), Format::Json).await;
    assert_ne!(late.connection_id.as_deref(), Some(id.as_str()));
    assert_eq!(late.error.unwrap().code, 80008);
}

#[tokio::test]
async fn a_serial_resent_after_a_resume_is_acked_again_and_delivered_once() {
    let app = spawn().await;
    let (mut listener, _) = Client::connected(&app.mock, "", Format::Json).await;
    listener.attach("dup").await;
    let (mut client, connected) =
        Client::connected(&app.mock, "clientId=erin", Format::Msgpack).await;
    let (_, key) = ids(&connected);
    client
        .send(&publish_frame("dup", 0, json!([{"data":"once"}])))
        .await;
    client.expect(Action::ACK).await;
    client.send(&ProtocolMessage::new(Action::DISCONNECT)).await;
    client.expect_close().await;
    eventually("the socket is closed", || {
        app.mock.stats().open_connections == 1
    })
    .await;

    let query = format!("clientId=erin&resume={}", enc(&key));
    let (mut client, resumed) = Client::connected(&app.mock, &query, Format::Msgpack).await;
    assert_eq!(resumed.error, None);
    client
        .send(&publish_frame("dup", 0, json!([{"data":"once"}])))
        .await;
    assert_eq!(client.expect(Action::ACK).await.msg_serial, Some(0));
    client
        .send(&publish_frame("dup", 1, json!([{"data":"twice"}])))
        .await;
    assert_eq!(client.expect(Action::ACK).await.msg_serial, Some(1));

    let first = listener.expect(Action::MESSAGE).await.messages.unwrap();
    let second = listener.expect(Action::MESSAGE).await.messages.unwrap();
    assert_eq!(first[0].data, Some(json!("once")));
    assert_eq!(second[0].data, Some(json!("twice")));
    assert_eq!(app.mock.stats().published, 2);
}

/// Attaches a connection to "feed", leaves with DISCONNECT, has `meanwhile`
/// published on "feed", then resumes the connection and sends ATTACH with
/// the channel serial it had: the resumed client (ATTACHED not yet read) and
/// that serial.
async fn away_then_reattach(app: &TestMock, meanwhile: &[&str]) -> (Client, String) {
    let (mut client, connected) = Client::connected(&app.mock, "", Format::Json).await;
    let (_, key) = ids(&connected);
    let serial = client.attach("feed").await.channel_serial.unwrap();
    client.send(&ProtocolMessage::new(Action::DISCONNECT)).await;
    client.expect_close().await;
    for &data in meanwhile {
        app.mock.publish_data("feed", "", data);
    }
    let (mut client, _) =
        Client::connected(&app.mock, &format!("resume={}", enc(&key)), Format::Json).await;
    let mut attach = on(Action::ATTACH, "feed");
    attach.channel_serial = Some(serial.clone());
    client.send(&attach).await;
    (client, serial)
}

#[tokio::test]
async fn a_reattach_with_its_channel_serial_gets_what_was_published_meanwhile() {
    let app = spawn().await;

    let (mut client, serial) = away_then_reattach(&app, &["while-away-1", "while-away-2"]).await;

    let attached = client.expect(Action::ATTACHED).await;
    assert!(attached.flags().contains(Flags::RESUMED));
    for data in ["while-away-1", "while-away-2"] {
        let frame = client.expect(Action::MESSAGE).await;
        assert_eq!(frame.messages.unwrap()[0].data, Some(json!(data)));
    }
    client.nothing_queued("caught-up").await;

    // On a connection that was not resumed, the same serial still fills the
    // gap, but the channel is not RESUMED.
    let (mut fresh, _) = Client::connected(&app.mock, "", Format::Json).await;
    let mut attach = on(Action::ATTACH, "feed");
    attach.channel_serial = Some(serial);
    fresh.send(&attach).await;
    assert!(
        !fresh
            .expect(Action::ATTACHED)
            .await
            .flags()
            .contains(Flags::RESUMED)
    );
    assert_eq!(
        fresh.expect(Action::MESSAGE).await.messages.unwrap()[0].data,
        Some(json!("while-away-1"))
    );
}

#[tokio::test]
async fn a_reattach_past_retention_is_not_resumed() {
    let app = with(MockAbly::builder().key(KEY).retention_count(1)).await;

    let (mut client, _) = away_then_reattach(&app, &["lost", "kept"]).await;

    assert!(
        !client
            .expect(Action::ATTACHED)
            .await
            .flags()
            .contains(Flags::RESUMED)
    );
    client.nothing_queued("gap").await;
}

#[tokio::test]
async fn another_client_id_cannot_resume_a_connection() {
    let app = spawn().await;
    let (mut client, connected) =
        Client::connected(&app.mock, "clientId=alice", Format::Json).await;
    let (id, key) = ids(&connected);
    client.send(&ProtocolMessage::new(Action::DISCONNECT)).await;
    client.expect_close().await;
    eventually("the socket is closed", || {
        app.mock.stats().open_connections == 0
    })
    .await;

    let (mallory, refused) = Client::connected(
        &app.mock,
        &format!("clientId=mallory&resume={}", enc(&key)),
        Format::Json,
    )
    .await;
    assert_ne!(refused.connection_id.as_deref(), Some(id.as_str()));
    assert_eq!(refused.error.unwrap().code, 80008);
    drop(mallory);
    eventually("mallory's connection is closed", || {
        app.mock.stats().open_connections == 0
    })
    .await;

    let (_alice, resumed) = Client::connected(
        &app.mock,
        &format!("clientId=alice&resume={}", enc(&key)),
        Format::Json,
    )
    .await;
    assert_eq!(ids(&resumed).0, id);
    assert_eq!(app.mock.stats().open_connections, 1);
}

#[tokio::test]
async fn a_serial_resent_after_retention_dropped_its_first_copy_is_still_published_once() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .retention(Duration::from_secs(5))
            .connection_state_ttl(Duration::from_secs(120)),
    )
    .await;
    let (mut listener, _) = Client::connected(&app.mock, "", Format::Json).await;
    listener.attach("late").await;
    let (mut client, connected) = Client::connected(&app.mock, "", Format::Json).await;
    let (id, key) = ids(&connected);
    client
        .send(&publish_frame("late", 0, json!([{"data":"once"}])))
        .await;
    assert!(client.expect(Action::ACK).await.res.is_some());
    client.send(&ProtocolMessage::new(Action::DISCONNECT)).await;
    client.expect_close().await;
    eventually("the socket is closed", || {
        app.mock.stats().open_connections == 1
    })
    .await;
    app.mock.advance_clock(Duration::from_secs(60));

    let query = format!("resume={}", enc(&key));
    let (mut client, resumed) = Client::connected(&app.mock, &query, Format::Json).await;
    assert_eq!(ids(&resumed).0, id);
    client
        .send(&publish_frame("late", 0, json!([{"data":"once"}])))
        .await;
    let ack = client.expect(Action::ACK).await;
    assert_eq!((ack.msg_serial, ack.res), (Some(0), None));
    client
        .send(&publish_frame("late", 1, json!([{"data":"next"}])))
        .await;
    client.expect(Action::ACK).await;

    let first = listener.expect(Action::MESSAGE).await.messages.unwrap();
    let second = listener.expect(Action::MESSAGE).await.messages.unwrap();
    assert_eq!(first[0].data, Some(json!("once")));
    assert_eq!(second[0].data, Some(json!("next")));
    assert_eq!(app.mock.stats().published, 2);
}

#[tokio::test]
async fn a_resume_while_the_old_socket_still_looks_open_takes_the_connection_over() {
    let app = spawn().await;
    for format in FORMATS {
        let channel = format!("over-{}", format_param(format));
        let (mut old, connected) = Client::connected(&app.mock, "clientId=zoe", format).await;
        let (id, key) = ids(&connected);
        old.send(&publish_frame(&channel, 0, json!([{"data":"first"}])))
            .await;
        old.expect(Action::ACK).await;

        // Another clientId cannot take it over, nor end the old socket.
        let query = format!("clientId=mallory&resume={}", enc(&key));
        let (_mallory, refused) = Client::connected(&app.mock, &query, format).await;
        assert_eq!(refused.error.unwrap().code, 80008);
        old.nothing_queued("still-mine").await;

        let query = format!("clientId=zoe&resume={}", enc(&key));
        let (mut new, resumed) = Client::connected(&app.mock, &query, format).await;
        assert_eq!(ids(&resumed), (id.clone(), key.clone()));
        assert_eq!(resumed.error, None);
        old.expect_close().await;

        // The serials carried over: the re-sent 0 is not published again.
        new.send(&publish_frame(&channel, 0, json!([{"data":"first"}])))
            .await;
        assert_eq!(new.expect(Action::ACK).await.msg_serial, Some(0));
        new.send(&publish_frame(&channel, 1, json!([{"data":"second"}])))
            .await;
        assert_eq!(new.expect(Action::ACK).await.msg_serial, Some(1));
        let history: serde_json::Value = app
            .get(&format!(
                "/channels/{channel}/messages?direction=forwards&key={}",
                enc(KEY)
            ))
            .await
            .json()
            .await
            .unwrap();
        let data: Vec<_> = history
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["data"].clone())
            .collect();
        assert_eq!(data, [json!("first"), json!("second")]);
    }
}

#[tokio::test]
async fn a_resume_key_that_is_not_a_connection_key_is_80018_and_an_unknown_one_80008() {
    let app = spawn().await;
    for format in FORMATS {
        let (_fake, fresh) =
            Client::connected(&app.mock, "resume=_____!ablyjs_test_fake-key____", format).await;
        assert_eq!(fresh.error.unwrap().code, 80018);

        let (_unknown, fresh) =
            Client::connected(&app.mock, "resume=AAAAAAAAAAAA!BBBBBBBBBBBBBBBB", format).await;
        assert_eq!(fresh.error.unwrap().code, 80008);
    }
}
