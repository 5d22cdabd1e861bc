//! A realtime client for the tests, speaking one format frame by frame
//! with tokio-tungstenite.

use futures_util::{SinkExt as _, StreamExt as _};
use mock_ably::MockAbly;
use shared::protocol::{Action, Format, ProtocolMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{KEY, enc, within};

pub(crate) const FORMATS: [Format; 2] = [Format::Json, Format::Msgpack];

pub(crate) fn format_param(format: Format) -> &'static str {
    match format {
        Format::Json => "json",
        Format::Msgpack => "msgpack",
    }
}

/// What the socket gave next.
#[derive(Debug)]
pub(crate) enum Got {
    Frame(Box<ProtocolMessage>),
    /// A close frame from the server (a graceful close).
    Closed,
    /// The connection ended without a close frame (cut).
    Cut,
}

/// A realtime client speaking one format.
pub(crate) struct Client {
    pub(crate) socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub(crate) format: Format,
}

impl Client {
    /// Opens `ws://…/?{query}&format=…`; the upgrade itself must succeed.
    pub(crate) async fn connect(mock: &MockAbly, query: &str, format: Format) -> Self {
        let url = format!(
            "ws://{}/?{query}&format={}",
            mock.addr(),
            format_param(format)
        );
        let (socket, response) = within(tokio_tungstenite::connect_async(url))
            .await
            .expect("the upgrade succeeds, whatever the credential");
        assert_eq!(response.status(), 101);
        Self { socket, format }
    }

    /// Connects with [`KEY`] and returns the client and its CONNECTED.
    pub(crate) async fn connected(
        mock: &MockAbly,
        query: &str,
        format: Format,
    ) -> (Self, ProtocolMessage) {
        let mut client = Self::connect(mock, &format!("key={}&{query}", enc(KEY)), format).await;
        let connected = client.expect(Action::CONNECTED).await;
        (client, connected)
    }

    /// Connects with the token or JWT `token` and returns the client and
    /// its CONNECTED.
    pub(crate) async fn with_token(
        mock: &MockAbly,
        token: &str,
        format: Format,
    ) -> (Self, ProtocolMessage) {
        let mut client = Self::connect(mock, &format!("access_token={}", enc(token)), format).await;
        let connected = client.expect(Action::CONNECTED).await;
        (client, connected)
    }

    pub(crate) fn ws_message(&self, frame: &ProtocolMessage) -> WsMessage {
        let bytes = self.format.encode(frame).unwrap();
        match self.format {
            Format::Json => WsMessage::Text(String::from_utf8(bytes).unwrap().into()),
            Format::Msgpack => WsMessage::Binary(bytes.into()),
        }
    }

    pub(crate) async fn send(&mut self, frame: &ProtocolMessage) {
        let message = self.ws_message(frame);
        within(self.socket.send(message)).await.unwrap();
    }

    /// Sends `frames` in one write, as a client does when it publishes
    /// several times before the server has answered.
    pub(crate) async fn send_together(&mut self, frames: &[ProtocolMessage]) {
        for frame in frames {
            let message = self.ws_message(frame);
            within(self.socket.feed(message)).await.unwrap();
        }
        within(self.socket.flush()).await.unwrap();
    }

    /// The next frame or ending, skipping WebSocket pings and pongs.
    pub(crate) async fn next(&mut self) -> Got {
        loop {
            let Some(Ok(message)) = within(self.socket.next()).await else {
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
    pub(crate) async fn expect(&mut self, action: Action) -> ProtocolMessage {
        match self.next().await {
            Got::Frame(frame) if frame.action == action => *frame,
            other => panic!("expected {action}, got {other:?}"),
        }
    }

    /// The server closes the socket gracefully next; the client completes
    /// the closing handshake, as a browser or Node's `ws` does.
    pub(crate) async fn expect_close(&mut self) {
        match self.next().await {
            Got::Closed => {}
            other => panic!("expected a close, got {other:?}"),
        }
        while let Some(Ok(_)) = within(self.socket.next()).await {}
    }
}

/// The connection key and id of a CONNECTED.
pub(crate) fn ids(connected: &ProtocolMessage) -> (String, String) {
    let details = connected.connection_details.as_ref().expect("details");
    (
        connected.connection_id.clone().expect("connectionId"),
        details.connection_key.clone().expect("connectionKey"),
    )
}

/// A frame for `channel` with `action`.
pub(crate) fn on(action: Action, channel: &str) -> ProtocolMessage {
    let mut frame = ProtocolMessage::new(action);
    frame.channel = Some(channel.to_owned());
    frame
}

/// A MESSAGE publishing `messages` with `serial`.
pub(crate) fn publish_frame(
    channel: &str,
    serial: u64,
    messages: serde_json::Value,
) -> ProtocolMessage {
    let mut frame = on(Action::MESSAGE, channel);
    frame.msg_serial = Some(serial);
    frame.messages = Some(serde_json::from_value(messages).unwrap());
    frame
}

impl Client {
    /// ATTACHes `channel` and returns ATTACHED.
    pub(crate) async fn attach(&mut self, channel: &str) -> ProtocolMessage {
        self.send(&on(Action::ATTACH, channel)).await;
        let attached = self.expect(Action::ATTACHED).await;
        assert_eq!(attached.channel.as_deref(), Some(channel));
        attached
    }

    /// Pings with `id` and expects the echo next: nothing else was queued.
    pub(crate) async fn nothing_queued(&mut self, id: &str) {
        let mut ping = ProtocolMessage::new(Action::HEARTBEAT);
        ping.id = Some(id.to_owned());
        self.send(&ping).await;
        let next = self.expect(Action::HEARTBEAT).await;
        assert_eq!(next.id.as_deref(), Some(id));
    }
}
