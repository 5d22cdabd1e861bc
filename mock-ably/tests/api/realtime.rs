//! The realtime WebSocket at `/`, driven frame by frame with
//! tokio-tungstenite, in JSON and msgpack: connecting with each kind of
//! credential, refusals in-band, heartbeats, pings, CLOSE, DISCONNECT, the
//! resume registry, AUTH, expiry and the mock's controls.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use mock_ably::MockAbly;
use serde_json::json;
use shared::TokenParams;
use shared::protocol::{Action, AuthDetails, Format, ProtocolMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{
    KEY, TestMock, assert_error, b64, enc, eventually, jwt, spawn, timeout, with,
};

const FORMATS: [Format; 2] = [Format::Json, Format::Msgpack];

fn format_param(format: Format) -> &'static str {
    match format {
        Format::Json => "json",
        Format::Msgpack => "msgpack",
    }
}

/// What the socket gave next.
#[derive(Debug)]
enum Got {
    Frame(Box<ProtocolMessage>),
    /// A close frame from the server (a graceful close).
    Closed,
    /// The connection ended without a close frame (cut).
    Cut,
}

/// A realtime client speaking one format.
struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    format: Format,
}

impl Client {
    /// Opens `ws://…/?{query}&format=…`; the upgrade itself must succeed.
    async fn connect(mock: &MockAbly, query: &str, format: Format) -> Self {
        let url = format!(
            "ws://{}/?{query}&format={}",
            mock.addr(),
            format_param(format)
        );
        let (socket, response) = timeout(tokio_tungstenite::connect_async(url))
            .await
            .expect("the upgrade succeeds, whatever the credential");
        assert_eq!(response.status(), 101);
        Self { socket, format }
    }

    /// Connects with [`KEY`] and returns the client and its CONNECTED.
    async fn connected(mock: &MockAbly, query: &str, format: Format) -> (Self, ProtocolMessage) {
        let mut client = Self::connect(mock, &format!("key={}&{query}", enc(KEY)), format).await;
        let connected = client.expect(Action::CONNECTED).await;
        (client, connected)
    }

    async fn send(&mut self, frame: &ProtocolMessage) {
        let bytes = self.format.encode(frame).unwrap();
        let message = match self.format {
            Format::Json => WsMessage::Text(String::from_utf8(bytes).unwrap().into()),
            Format::Msgpack => WsMessage::Binary(bytes.into()),
        };
        timeout(self.socket.send(message)).await.unwrap();
    }

    /// The next frame or ending, skipping WebSocket pings and pongs.
    async fn next(&mut self) -> Got {
        loop {
            let Some(Ok(message)) = timeout(self.socket.next()).await else {
                return Got::Cut;
            };
            let bytes = match message {
                WsMessage::Text(text) => text.as_bytes().to_vec(),
                WsMessage::Binary(bytes) => {
                    assert_eq!(self.format, Format::Msgpack, "a binary frame on JSON");
                    bytes.to_vec()
                }
                WsMessage::Close(_) => return Got::Closed,
                _ => continue,
            };
            if self.format == Format::Msgpack {
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&bytes).is_err(),
                    "a JSON frame on msgpack"
                );
            }
            return Got::Frame(Box::new(
                self.format.decode(&bytes).expect("a ProtocolMessage"),
            ));
        }
    }

    /// The next frame, which must have `action`.
    async fn expect(&mut self, action: Action) -> ProtocolMessage {
        match self.next().await {
            Got::Frame(frame) if frame.action == action => *frame,
            other => panic!("expected {action}, got {other:?}"),
        }
    }

    /// The server closes the socket gracefully next; the client completes
    /// the closing handshake, as a browser or Node's `ws` does.
    async fn expect_close(&mut self) {
        match self.next().await {
            Got::Closed => {}
            other => panic!("expected a close, got {other:?}"),
        }
        while let Some(Ok(_)) = timeout(self.socket.next()).await {}
    }
}

/// The connection key and id of a CONNECTED.
fn ids(connected: &ProtocolMessage) -> (String, String) {
    let details = connected.connection_details.as_ref().expect("details");
    (
        connected.connection_id.clone().expect("connectionId"),
        details.connection_key.clone().expect("connectionKey"),
    )
}

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
            let mut client = Client::connect(
                &app.mock,
                &format!("access_token={}", enc(&presented)),
                format,
            )
            .await;

            let connected = client.expect(Action::CONNECTED).await;

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
        let (socket, _) = timeout(tokio_tungstenite::connect_async(url))
            .await
            .unwrap();
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
    let post = timeout(app.client.post(app.url("/")).send()).await.unwrap();
    assert_error(post, 404, 40400).await;
}

#[tokio::test]
async fn heartbeats_follow_connected_once_the_connection_is_idle() {
    let idle = Duration::from_millis(200);
    let app = with(MockAbly::builder().key(KEY).max_idle_interval(idle)).await;
    for format in FORMATS {
        let mut client = Client::connect(&app.mock, &format!("key={}", enc(KEY)), format).await;

        // CONNECTED comes first, then a heartbeat no sooner than half the
        // idle interval later.
        client.expect(Action::CONNECTED).await;
        let connected_at = std::time::Instant::now();
        let heartbeat = client.expect(Action::HEARTBEAT).await;
        assert!(connected_at.elapsed() >= idle / 2 - Duration::from_millis(5));
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

        // A socket dropped without any close: resumable too, once.
        drop(client);
        eventually("the socket is gone", || {
            app.mock.stats().open_connections == 0
        })
        .await;
        let (_client, resumed) = Client::connected(&app.mock, &query, format).await;
        assert_eq!(ids(&resumed), (id.clone(), key.clone()));
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

    // Within the TTL, a recovery key (RTN16g) names the connection too.
    let recover = json!({"connectionKey": key, "msgSerial": 0, "channelSerials": {}}).to_string();
    let (mut client, recovered) = Client::connected(
        &app.mock,
        &format!("recover={}", enc(&recover)),
        Format::Json,
    )
    .await;
    assert_eq!(ids(&recovered).0, id);
    client.send(&ProtocolMessage::new(Action::DISCONNECT)).await;
    client.expect_close().await;
    eventually("the socket is closed", || {
        app.mock.stats().open_connections == 0
    })
    .await;

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
        let mut client =
            Client::connect(&app.mock, &format!("access_token={}", enc(&first)), format).await;
        let connected = client.expect(Action::CONNECTED).await;

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
        let mut client =
            Client::connect(&app.mock, &format!("access_token={}", enc(&token)), format).await;
        client.expect(Action::CONNECTED).await;

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
    let mut on_token = Client::connect(
        &app.mock,
        &format!("access_token={}", enc(&token)),
        Format::Msgpack,
    )
    .await;
    on_token.expect(Action::CONNECTED).await;
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

        timeout(client.socket.send(garbage)).await.unwrap();

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
