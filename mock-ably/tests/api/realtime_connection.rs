//! The realtime WebSocket at `/`, driven frame by frame with
//! tokio-tungstenite, in JSON and msgpack: connecting with each kind of
//! credential, refusals in-band, heartbeats, pings, CLOSE, frames that do
//! not read, and the mock's connection controls.

use std::time::Duration;

use futures_util::SinkExt as _;
use mock_ably::MockAbly;
use serde_json::json;
use shared::TokenParams;
use shared::protocol::{Action, Format, ProtocolMessage};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::{KEY, TestMock, assert_error, b64, enc, eventually, jwt, spawn, with, within};
use crate::ws::{Client, FORMATS, Got, ids};

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
