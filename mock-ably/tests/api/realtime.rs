//! The realtime WebSocket at `/`, driven frame by frame with
//! tokio-tungstenite, in JSON and msgpack: connecting with each kind of
//! credential, refusals in-band, heartbeats, pings, CLOSE, DISCONNECT, the
//! resume registry, AUTH, expiry and the mock's controls.

use std::time::Duration;

use futures_util::SinkExt as _;
use mock_ably::MockAbly;
use serde_json::json;
use shared::TokenParams;
use shared::protocol::{Action, AuthDetails, Flags, Format, ProtocolMessage};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::{KEY, TestMock, assert_error, b64, enc, eventually, jwt, spawn, with, within};
use crate::ws::{Client, FORMATS, Got, format_param, ids, on, publish_frame};

#[tokio::test]
async fn a_key_connects_with_every_connection_detail_in_both_formats() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .max_idle_interval(Duration::from_secs(20)),
    )
    .await;
    let mut clients = Vec::new();
    for format in FORMATS {
        // What ably-js sends, plus a parameter the mock does not know.
        let query = "clientId=alice&heartbeats=false&v=6&agent=ably-js%2F2.28.0%20nodejs%2F20.20.2\
                     &echo=false&remainPresentFor=15000&someFutureParam=1";
        let (client, connected) = Client::connected(&app.mock, query, format).await;
        clients.push(client);

        let (id, key) = ids(&connected);
        let details = connected.connection_details.unwrap();
        assert_eq!(details.client_id.as_deref(), Some("alice"));
        assert!(key.starts_with(&format!("{id}!")), "{key}");
        assert!(key.len() > id.len() + 8, "{key}");
        assert_eq!(details.max_idle_interval, Some(20_000));
        assert_eq!(details.connection_state_ttl, Some(120_000));
        assert_eq!(details.max_message_size, Some(65_536));
        assert_eq!(details.server_id.as_deref(), Some("mock-ably"));
        assert_eq!(connected.error, None);
    }
    assert_eq!(app.mock.stats().open_connections, 2);
}

#[tokio::test]
async fn a_token_from_request_token_gives_its_client_id_to_a_token_only_client() {
    let app = spawn().await;
    let params = TokenParams {
        client_id: Some("alice".into()),
        ..TokenParams::default()
    };
    let token = app.mock.issue_token(params).token;
    for format in FORMATS {
        for presented in [token.clone(), b64(&token)] {
            let (_client, connected) = Client::with_token(&app.mock, &presented, format).await;

            let details = connected.connection_details.unwrap();
            assert_eq!(details.client_id.as_deref(), Some("alice"));
        }
    }
}

#[tokio::test]
async fn an_ably_jwt_connects_with_its_client_id() {
    let app = spawn().await;
    let token = jwt(&app.mock, r#"{"*":["*"]}"#, Some("bob"), 3600);
    for format in FORMATS {
        let mut client = Client::connect(
            &app.mock,
            &format!("access_token={}&clientId=bob", enc(&token)),
            format,
        )
        .await;

        let connected = client.expect(Action::CONNECTED).await;

        assert_eq!(
            connected.connection_details.unwrap().client_id.as_deref(),
            Some("bob")
        );
    }
}

/// Connects with `query` and expects `action` with `code`, then a close.
async fn refused(app: &TestMock, query: &str, format: Format, action: Action, code: u32) {
    let mut client = Client::connect(&app.mock, query, format).await;
    let frame = client.expect(action).await;
    let error = frame.error.expect("an error");
    assert_eq!(error.code, code, "{query}: {}", error.message);
    assert_eq!(error.status_code, 401, "{query}");
    client.expect_close().await;
}

#[tokio::test]
async fn bad_credentials_are_refused_in_band_with_error_never_http_401() {
    let app = spawn().await;
    let other_key = shared::ApiKey::parse("testApp.testKey:wrong-secret").unwrap();
    let now = app.mock.now_ms() / 1000;
    let forged = shared::jwt::encode_jwt(
        &other_key,
        &shared::AblyJwtClaims::new(now, now + 60, r#"{"*":["*"]}"#),
    )
    .unwrap();
    for format in FORMATS {
        refused(
            &app,
            "key=testApp.testKey%3Awrong",
            format,
            Action::ERROR,
            40101,
        )
        .await;
        refused(&app, "clientId=alice", format, Action::ERROR, 40101).await;
        refused(
            &app,
            "access_token=testApp.nope",
            format,
            Action::ERROR,
            40143,
        )
        .await;
        refused(
            &app,
            &format!("access_token={forged}"),
            format,
            Action::ERROR,
            40144,
        )
        .await;
    }
    eventually("every refused connection is closed", || {
        app.mock.stats().open_connections == 0
    })
    .await;
}

#[tokio::test]
async fn a_client_id_the_credential_does_not_allow_is_refused_with_40102() {
    let app = spawn().await;
    let token = jwt(&app.mock, r#"{"*":["*"]}"#, Some("alice"), 3600);
    for format in FORMATS {
        refused(
            &app,
            &format!("access_token={}&clientId=bob", enc(&token)),
            format,
            Action::ERROR,
            40102,
        )
        .await;
    }
}

#[tokio::test]
async fn an_expired_token_is_disconnected_with_40142_so_the_client_renews() {
    let app = spawn().await;
    let params = TokenParams {
        ttl: Some(1_000),
        ..TokenParams::default()
    };
    let token = app.mock.issue_token(params).token;
    let expired_jwt = jwt(&app.mock, r#"{"*":["*"]}"#, None, 1);
    app.mock.advance_clock(Duration::from_secs(2));
    for format in FORMATS {
        for token in [&token, &expired_jwt] {
            refused(
                &app,
                &format!("access_token={}", enc(token)),
                format,
                Action::DISCONNECTED,
                40142,
            )
            .await;
        }
    }
}

#[tokio::test]
async fn bad_parameters_are_refused_in_band_with_40003() {
    let app = spawn().await;
    for query in [
        "format=xml",
        "echo=maybe",
        "heartbeats=2",
        "remainPresentFor=soon",
    ] {
        let url = format!("ws://{}/?key={}&{query}", app.mock.addr(), enc(KEY));
        let (socket, _) = within(tokio_tungstenite::connect_async(url)).await.unwrap();
        // An unknown format is answered in JSON.
        let mut client = Client {
            socket,
            format: Format::Json,
        };
        let error = client.expect(Action::ERROR).await.error.unwrap();
        assert_eq!(error.code, 40003, "{query}");
        client.expect_close().await;
    }
}

#[tokio::test]
async fn a_plain_get_of_the_root_is_still_a_404() {
    let app = spawn().await;

    let response = app.get("/").await;

    assert_error(response, 404, 40400).await;
    let post = within(app.client.post(app.url("/")).send()).await.unwrap();
    assert_error(post, 404, 40400).await;
}

#[tokio::test]
async fn heartbeats_follow_connected_once_the_connection_is_idle() {
    let idle = Duration::from_millis(200);
    let app = with(MockAbly::builder().key(KEY).max_idle_interval(idle)).await;
    for format in FORMATS {
        // Taken before the upgrade: CONNECTED cannot have been sent
        // earlier, however late this task reads it.
        let asked_at = std::time::Instant::now();
        let mut client = Client::connect(&app.mock, &format!("key={}", enc(KEY)), format).await;

        // CONNECTED comes first, then a heartbeat no sooner than half the
        // idle interval later.
        client.expect(Action::CONNECTED).await;
        let heartbeat = client.expect(Action::HEARTBEAT).await;
        assert!(asked_at.elapsed() >= idle / 2);
        assert_eq!(heartbeat.id, None);
        client.expect(Action::HEARTBEAT).await;
    }
}

#[tokio::test]
async fn a_ping_id_is_echoed() {
    let app = spawn().await;
    for format in FORMATS {
        let (mut client, _) = Client::connected(&app.mock, "", format).await;
        let mut ping = ProtocolMessage::new(Action::HEARTBEAT);
        ping.id = Some("12394404419098426".into());

        client.send(&ping).await;

        let pong = client.expect(Action::HEARTBEAT).await;
        assert_eq!(pong.id.as_deref(), Some("12394404419098426"));
    }
}

#[tokio::test]
async fn close_is_answered_closed_and_the_connection_is_gone() {
    let app = spawn().await;
    for format in FORMATS {
        let (mut client, connected) = Client::connected(&app.mock, "", format).await;
        let (id, key) = ids(&connected);

        client.send(&ProtocolMessage::new(Action::CLOSE)).await;

        client.expect(Action::CLOSED).await;
        client.expect_close().await;
        eventually("the connection is closed", || {
            app.mock.stats().open_connections == 0
        })
        .await;
        // A closed connection cannot be resumed: a new one, with 80008.
        let (_again, resumed) =
            Client::connected(&app.mock, &format!("resume={}", enc(&key)), format).await;
        assert_ne!(resumed.connection_id.as_deref(), Some(id.as_str()));
        assert_eq!(resumed.error.unwrap().code, 80008);
    }
}

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
async fn a_client_that_stays_silent_is_dropped_and_stays_resumable() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .max_idle_interval(Duration::from_millis(50)),
    )
    .await;
    let (client, connected) = Client::connected(&app.mock, "", Format::Json).await;
    let (id, key) = ids(&connected);
    assert_eq!(app.mock.stats().open_connections, 1);

    // Not reading means not answering the server's pings either.
    eventually("the silent client is dropped", || {
        app.mock.stats().open_connections == 0
    })
    .await;
    drop(client);

    let (_client, resumed) =
        Client::connected(&app.mock, &format!("resume={}", enc(&key)), Format::Json).await;
    assert_eq!(ids(&resumed).0, id);
}

#[tokio::test]
async fn auth_with_a_new_token_keeps_the_connection_and_another_client_id_fails_it() {
    let app = spawn().await;
    for format in FORMATS {
        let first = jwt(&app.mock, r#"{"*":["*"]}"#, Some("alice"), 3600);
        let (mut client, connected) = Client::with_token(&app.mock, &first, format).await;

        let mut auth = ProtocolMessage::new(Action::AUTH);
        auth.auth = Some(AuthDetails::new(jwt(
            &app.mock,
            r#"{"*":["subscribe"]}"#,
            Some("alice"),
            7200,
        )));
        client.send(&auth).await;
        let renewed = client.expect(Action::CONNECTED).await;
        assert_eq!(ids(&renewed), ids(&connected));
        assert_eq!(
            renewed.connection_details.unwrap().client_id.as_deref(),
            Some("alice")
        );

        auth.auth = Some(AuthDetails::new(jwt(
            &app.mock,
            r#"{"*":["*"]}"#,
            Some("bob"),
            3600,
        )));
        client.send(&auth).await;
        let error = client.expect(Action::ERROR).await.error.unwrap();
        assert_eq!(error.code, 40102);
        client.expect_close().await;
    }
}

#[tokio::test]
async fn a_token_expiring_while_connected_gets_disconnected_40142() {
    let app = spawn().await;
    for format in FORMATS {
        let token = jwt(&app.mock, r#"{"*":["*"]}"#, None, 60);
        let (mut client, _) = Client::with_token(&app.mock, &token, format).await;

        app.mock.advance_clock(Duration::from_secs(61));

        let error = client.expect(Action::DISCONNECTED).await.error.unwrap();
        assert_eq!(error.code, 40142);
        client.expect_close().await;
    }
}

#[tokio::test]
async fn expire_credentials_disconnects_token_connections_but_not_key_ones() {
    let app = spawn().await;
    let token = jwt(&app.mock, r#"{"*":["*"]}"#, None, 3600);
    let (mut on_token, _) = Client::with_token(&app.mock, &token, Format::Msgpack).await;
    let (mut on_key, _) = Client::connected(&app.mock, "", Format::Msgpack).await;

    app.mock.expire_credentials();

    let error = on_token.expect(Action::DISCONNECTED).await.error.unwrap();
    assert_eq!(error.code, 40142);
    on_token.expect_close().await;
    let mut ping = ProtocolMessage::new(Action::HEARTBEAT);
    ping.id = Some("still-here".into());
    on_key.send(&ping).await;
    assert_eq!(
        on_key.expect(Action::HEARTBEAT).await.id.as_deref(),
        Some("still-here")
    );
}

#[tokio::test]
async fn drop_streams_cuts_realtime_sockets_without_a_close() {
    let app = spawn().await;
    let (mut client, _) = Client::connected(&app.mock, "", Format::Json).await;

    app.mock.drop_streams();

    assert!(matches!(client.next().await, Got::Cut));
    eventually("the connection is counted closed", || {
        app.mock.stats().open_connections == 0
    })
    .await;
}

#[tokio::test]
async fn a_frame_that_does_not_read_is_an_error_40000() {
    let app = spawn().await;
    for (format, garbage) in [
        (Format::Json, WsMessage::Text("{\"action\":".into())),
        (Format::Msgpack, WsMessage::Binary(vec![0xc1].into())),
    ] {
        let (mut client, _) = Client::connected(&app.mock, "", format).await;

        within(client.socket.send(garbage)).await.unwrap();

        let error = client.expect(Action::ERROR).await.error.unwrap();
        assert_eq!(error.code, 40000);
        client.expect_close().await;
    }
}

#[tokio::test]
async fn open_connections_are_in_the_stats_endpoint() {
    let app = spawn().await;
    let (_client, _) = Client::connected(&app.mock, "", Format::Json).await;

    let stats: serde_json::Value = app.get("/_mock/stats").await.json().await.unwrap();

    assert_eq!(stats["openConnections"], 1);
}

// --- Channels and messages ---

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

#[tokio::test]
async fn a_reattach_with_its_channel_serial_gets_what_was_published_meanwhile() {
    let app = spawn().await;
    let (mut client, connected) = Client::connected(&app.mock, "", Format::Json).await;
    let (_, key) = ids(&connected);
    let serial = client.attach("feed").await.channel_serial.unwrap();
    client.send(&ProtocolMessage::new(Action::DISCONNECT)).await;
    client.expect_close().await;

    app.mock.publish_data("feed", "", "while-away-1");
    app.mock.publish_data("feed", "", "while-away-2");
    let (mut client, _) =
        Client::connected(&app.mock, &format!("resume={}", enc(&key)), Format::Json).await;
    let mut attach = on(Action::ATTACH, "feed");
    attach.channel_serial = Some(serial.clone());
    client.send(&attach).await;

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
    let (mut client, connected) = Client::connected(&app.mock, "", Format::Json).await;
    let (_, key) = ids(&connected);
    let serial = client.attach("feed").await.channel_serial.unwrap();
    client.send(&ProtocolMessage::new(Action::DISCONNECT)).await;
    client.expect_close().await;
    app.mock.publish_data("feed", "", "lost");
    app.mock.publish_data("feed", "", "kept");

    let (mut client, _) =
        Client::connected(&app.mock, &format!("resume={}", enc(&key)), Format::Json).await;
    let mut attach = on(Action::ATTACH, "feed");
    attach.channel_serial = Some(serial);
    client.send(&attach).await;

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
async fn auth_that_narrows_the_capability_fails_the_channels_it_no_longer_allows() {
    let app = spawn().await;
    let token = jwt(&app.mock, r#"{"*":["*"]}"#, Some("fay"), 3600);
    let (mut client, _) = Client::with_token(&app.mock, &token, Format::Json).await;
    client.attach("keep").await;
    client.attach("lose").await;

    let mut auth = ProtocolMessage::new(Action::AUTH);
    auth.auth = Some(AuthDetails::new(jwt(
        &app.mock,
        r#"{"keep":["subscribe"]}"#,
        Some("fay"),
        3600,
    )));
    client.send(&auth).await;

    client.expect(Action::CONNECTED).await;
    let revoked = client.expect(Action::ERROR).await;
    assert_eq!(revoked.channel.as_deref(), Some("lose"));
    assert_eq!(revoked.error.unwrap().code, 40160);
    app.mock.publish_data("lose", "", "not for fay");
    app.mock.publish_data("keep", "", "for fay");
    let frame = client.expect(Action::MESSAGE).await;
    assert_eq!(frame.channel.as_deref(), Some("keep"));
}

// --- Token lifecycle ---

#[tokio::test]
async fn auth_is_requested_ahead_of_expiry_and_a_renewal_keeps_the_connection() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .auth_lead(Duration::from_secs(30)),
    )
    .await;
    for format in FORMATS {
        let token = jwt(&app.mock, r#"{"*":["*"]}"#, Some("gil"), 600);
        let (mut client, connected) = Client::with_token(&app.mock, &token, format).await;

        // 30 s before expiry: AUTH, once.
        app.mock.advance_clock(Duration::from_secs(569));
        client.nothing_queued("too-early").await;
        app.mock.advance_clock(Duration::from_secs(2));
        let request = client.expect(Action::AUTH).await;
        assert_eq!(request.auth, None);

        let mut auth = ProtocolMessage::new(Action::AUTH);
        auth.auth = Some(AuthDetails::new(jwt(
            &app.mock,
            r#"{"*":["*"]}"#,
            Some("gil"),
            600,
        )));
        client.send(&auth).await;
        assert_eq!(
            ids(&client.expect(Action::CONNECTED).await),
            ids(&connected)
        );
        // The old token's expiry no longer applies.
        app.mock.advance_clock(Duration::from_secs(60));
        client.nothing_queued("renewed").await;
    }
}

#[tokio::test]
async fn a_token_shorter_than_the_auth_lead_gets_no_auth_and_just_expires() {
    // The default lead is 30 s; this token lives 10 s.
    let app = spawn().await;
    let token = jwt(&app.mock, r#"{"*":["*"]}"#, None, 10);
    let (mut client, _) = Client::with_token(&app.mock, &token, Format::Json).await;

    app.mock.advance_clock(Duration::from_secs(9));
    client.nothing_queued("no-auth-before-expiry").await;
    // Once more: by now the connection has surely handled the clock move
    // (half the token's life, when the mock used to ask, is long past).
    client.nothing_queued("still-no-auth").await;
    app.mock.advance_clock(Duration::from_secs(2));

    // The next frame is the expiry, with no AUTH before it.
    let error = client.expect(Action::DISCONNECTED).await.error.unwrap();
    assert_eq!(error.code, 40142);
    client.expect_close().await;
}

#[tokio::test]
async fn force_auth_asks_token_connections_to_renew_and_not_key_ones() {
    let app = spawn().await;
    let token = jwt(&app.mock, r#"{"*":["*"]}"#, None, 3600);
    let (mut on_token, _) = Client::with_token(&app.mock, &token, Format::Msgpack).await;
    let (mut on_key, _) = Client::connected(&app.mock, "", Format::Msgpack).await;

    app.mock.force_auth();
    on_token.expect(Action::AUTH).await;
    let response = within(app.client.post(app.url("/_mock/force-auth")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    on_token.expect(Action::AUTH).await;

    on_key.nothing_queued("no-auth-for-keys").await;
}

// --- Controls ---

#[tokio::test]
async fn fail_next_realtime_refuses_the_next_upgrades_in_band() {
    let app = spawn().await;
    let response = within(
        app.client
            .post(app.url("/_mock/fail-next"))
            .json(&json!({"count": 2, "code": 40142, "target": "realtime"}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 204);
    // REST is not claimed by a realtime rule.
    assert_eq!(app.get("/time").await.status(), 200);

    for format in FORMATS {
        let mut client = Client::connect(&app.mock, &format!("key={}", enc(KEY)), format).await;
        let error = client.expect(Action::DISCONNECTED).await.error.unwrap();
        assert_eq!((error.code, error.status_code), (40142, 401));
        client.expect_close().await;
    }
    app.mock.fail_next(
        mock_ably::FailNext::new(shared::ErrorInfo::from_code(40101, "injected"))
            .target(mock_ably::FailTarget::Realtime),
    );
    let mut client = Client::connect(&app.mock, &format!("key={}", enc(KEY)), Format::Json).await;
    assert_eq!(
        client.expect(Action::ERROR).await.error.unwrap().code,
        40101
    );
    client.expect_close().await;
    Client::connected(&app.mock, "", Format::Json).await;
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
async fn a_mode_the_capability_withheld_is_allowed_once_auth_grows_the_capability() {
    let app = spawn().await;
    let token = |capability: &str| {
        app.mock
            .issue_token(TokenParams {
                capability: Some(capability.to_owned()),
                ..TokenParams::default()
            })
            .token
    };
    for format in FORMATS {
        let channel = format!("grow-{}", format_param(format));
        let (mut client, _) =
            Client::with_token(&app.mock, &token(r#"{"*":["subscribe"]}"#), format).await;
        client.attach(&channel).await;
        client
            .send(&publish_frame(&channel, 0, json!([{"data": "x"}])))
            .await;
        let nack = client.expect(Action::NACK).await;
        assert_eq!(nack.error.unwrap().code, 40160);

        let mut auth = ProtocolMessage::new(Action::AUTH);
        auth.auth = Some(AuthDetails::new(token(r#"{"*":["publish","subscribe"]}"#)));
        client.send(&auth).await;
        client.expect(Action::CONNECTED).await;
        client
            .send(&publish_frame(&channel, 1, json!([{"data": "y"}])))
            .await;
        client.expect(Action::ACK).await;
    }
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
