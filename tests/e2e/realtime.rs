//! Flow 5: one channel model across transports. alice publishes over
//! mock-ably's realtime WebSocket with an Ably JWT from the auth server (in
//! msgpack, ably-js's Node default); bob's sse-client subscription and a
//! realtime subscriber see her messages and a REST publish in one order,
//! each stamped with its publisher's clientId and connection.

use futures_util::{SinkExt as _, StreamExt as _};
use integration_tests::{TestEnv, connected, next_message, text, within_named};
use serde_json::json;
use shared::protocol::{Action, Format, ProtocolMessage};
use sse_client::ably::SubscribeOptions;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a realtime connection with `jwt` in msgpack and returns it with its
/// CONNECTED.
async fn realtime(env: &TestEnv, jwt: &str) -> (Socket, ProtocolMessage) {
    let url = format!(
        "ws://{}/?access_token={jwt}&format=msgpack&v=6",
        env.mock().addr()
    );
    let (mut socket, _) = within_named("the upgrade", tokio_tungstenite::connect_async(url))
        .await
        .expect("the upgrade succeeds");
    let connected = next_frame(&mut socket).await;
    assert_eq!(connected.action, Action::CONNECTED, "{connected:?}");
    (socket, connected)
}

async fn send(socket: &mut Socket, frame: &ProtocolMessage) {
    let bytes = Format::Msgpack.encode(frame).expect("a frame encodes");
    within_named("a send", socket.send(WsMessage::Binary(bytes.into())))
        .await
        .expect("the socket is open");
}

/// The next ProtocolMessage, skipping WebSocket pings.
async fn next_frame(socket: &mut Socket) -> ProtocolMessage {
    loop {
        match within_named("a realtime frame", socket.next()).await {
            Some(Ok(WsMessage::Binary(bytes))) => {
                return Format::Msgpack.decode(&bytes).expect("a ProtocolMessage");
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            other => panic!("expected a msgpack frame, got {other:?}"),
        }
    }
}

fn frame(action: Action, channel: &str) -> ProtocolMessage {
    let mut frame = ProtocolMessage::new(action);
    frame.channel = Some(channel.to_owned());
    frame
}

#[tokio::test]
async fn realtime_rest_and_sse_share_one_channel_in_one_order() {
    let env = TestEnv::start().await;
    let alice = env.login("alice", &[]);
    let bob = env.login("bob", &[]);
    let mut sse = env
        .client(&bob)
        .subscribe(SubscribeOptions::new(["chat:mixed"]));
    connected(&mut sse).await;
    let (mut watcher, _) = realtime(&env, &env.ably_jwt(&bob).await).await;
    send(&mut watcher, &frame(Action::ATTACH, "chat:mixed")).await;
    assert_eq!(next_frame(&mut watcher).await.action, Action::ATTACHED);

    let (mut publisher, connected_frame) = realtime(&env, &env.ably_jwt(&alice).await).await;
    let alice_connection = connected_frame.connection_id.expect("a connectionId");
    assert_eq!(
        connected_frame
            .connection_details
            .and_then(|d| d.client_id)
            .as_deref(),
        Some("alice"),
        "the clientId comes from the auth server's JWT"
    );
    for (serial, data) in [(0, "first"), (1, "second")] {
        let mut publish = frame(Action::MESSAGE, "chat:mixed");
        publish.msg_serial = Some(serial);
        publish.messages = Some(serde_json::from_value(json!([{"data": data}])).unwrap());
        send(&mut publisher, &publish).await;
        let ack = next_frame(&mut publisher).await;
        assert_eq!((ack.action, ack.msg_serial), (Action::ACK, Some(serial)));
    }
    let rest_id = env.publish("chat:mixed", "third, over REST").await;

    let expected = [
        (format!("{alice_connection}:0:0"), "first"),
        (format!("{alice_connection}:1:0"), "second"),
        (rest_id, "third, over REST"),
    ];
    for (id, data) in &expected {
        let (_, message) = next_message(&mut sse).await;
        assert_eq!(message.message.id.as_ref(), Some(id));
        assert_eq!(text(&message), *data);
        let on_realtime = next_frame(&mut watcher).await;
        assert_eq!(on_realtime.action, Action::MESSAGE);
        let item = &on_realtime.messages.expect("messages")[0];
        assert_eq!(item.id.as_ref(), Some(id));
        assert_eq!(item.data, Some(json!(data)));
    }
    let history = env.mock().stats().channels["chat:mixed"].published;
    assert_eq!(history, 3);
}
