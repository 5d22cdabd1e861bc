//! MESSAGE on a realtime connection: checked, stamped and stored on the
//! one channel model; ACKs coalesced over a run of serials, NACKs; and
//! delivery to the connections subscribed.

use std::sync::atomic::Ordering;

use serde_json::json;
use shared::capability::Operation;
use shared::protocol::{Action, Flags, ProtocolMessage};
use shared::{ErrorInfo, Message, codes};
use tokio::time::Instant;

use super::{Connection, send_bytes};
use crate::channel::StoredMessage;
use crate::error::{ApiError, ApiResult};
use crate::params::validate_channel_name;
use crate::publish::{self, Publisher};
use crate::state::lock;

impl Connection {
    /// The `msgSerial` a MESSAGE or PRESENCE carries (the next expected one
    /// when it has none), advancing the expected one past it (RTN7b).
    pub(super) fn take_serial(&mut self, frame: &ProtocolMessage) -> u64 {
        let entry = &mut self.registration.entry;
        let serial = frame.msg_serial.unwrap_or(entry.next_serial);
        entry.next_serial = entry.next_serial.max(serial.saturating_add(1));
        serial
    }

    /// MESSAGE (RTL6): checked, stamped, stored on the one channel model
    /// (so REST history and SSE see it), then ACKed; or NACKed. Attaching
    /// first is not required (RTL6c). ACKs of consecutive publishes handled
    /// in one go are coalesced into one covering their range.
    ///
    /// A serial below the next one expected was seen before: the client
    /// re-sent it after a resume (RTN19a). It is checked again and ACKed,
    /// never stored or fanned out twice, however long ago the first copy
    /// was published; its `res` names the first copy's serials while
    /// retention still holds them (and is left out otherwise, as ably-js
    /// allows).
    pub(super) async fn on_message(&mut self, frame: ProtocolMessage) -> Result<(), ()> {
        let duplicate = frame
            .msg_serial
            .is_some_and(|serial| serial < self.registration.entry.next_serial);
        let serial = self.take_serial(&frame);
        let channel = frame.channel.clone().unwrap_or_default();
        let result = self.prepare(frame, serial).map(|prepared| {
            if duplicate {
                let now = self.state.clock.now_ms();
                lock(&self.state.registry).find(&self.state.settings, &channel, &prepared, now)
            } else {
                Some(publish::store(&self.state, &channel, prepared))
            }
        });
        match result {
            Ok(stored) => {
                let res = stored.map(|stored| {
                    let serials: Vec<&str> = stored.iter().map(|m| m.serial.as_str()).collect();
                    json!({ "serials": serials })
                });
                self.owe_ack(serial, res).await
            }
            Err(error) => self.send(&nack(serial, error.0)).await,
        }
    }

    /// Adds `serial` to the ACK owed, or sends that one and starts another
    /// when `serial` does not extend it (or one has `res` and the other
    /// not).
    pub(super) async fn owe_ack(
        &mut self,
        serial: u64,
        res: Option<serde_json::Value>,
    ) -> Result<(), ()> {
        match &mut self.pending_ack {
            Some(ack) if ack.extends(serial, res.is_some()) => ack.push(res),
            _ => {
                self.send_ack().await?;
                self.pending_ack = Some(PendingAck::new(serial, res));
            }
        }
        Ok(())
    }

    /// Checks and stamps a MESSAGE's messages for `channel`, ready to store.
    fn prepare(&self, frame: ProtocolMessage, serial: u64) -> ApiResult<Vec<Message>> {
        let channel = frame.channel.unwrap_or_default();
        validate_channel_name(&channel)?;
        if channel.starts_with("[meta]") {
            return Err(ApiError::new(
                codes::OPERATION_NOT_PERMITTED,
                format!("Metachannels cannot be published to; channel = {channel}"),
            ));
        }
        self.principal.require(Operation::Publish, &channel)?;
        self.require_mode(&channel, Flags::PUBLISH, "PUBLISH")?;
        let connection_id = &self.registration.entry.connection_id;
        let identity = self.registration.entry.client_id.as_deref();
        let mut messages: Vec<Message> = frame.messages.unwrap_or_default();
        for (index, message) in messages.iter_mut().enumerate() {
            // Ably's id for a realtime publish (TM2a), unless the client
            // chose one.
            message
                .id
                .get_or_insert_with(|| format!("{connection_id}:{serial}:{index}"));
        }
        let publisher = Publisher {
            principal: &self.principal,
            identity,
        };
        let now = self.state.clock.now_ms();
        let mut prepared = publish::prepare(messages, Some(publisher), now).map_err(|error| {
            // On a realtime connection, a message naming another clientId
            // is an invalid clientId (RTL6g).
            if error.0.code == codes::INCOMPATIBLE_CREDENTIALS {
                ApiError::new(codes::INVALID_CLIENT_ID, error.0.message)
            } else {
                error
            }
        })?;
        for message in &mut prepared {
            message.connection_id = Some(connection_id.clone());
        }
        Ok(prepared)
    }

    /// Sends a stored message to this connection, if it is attached to the
    /// channel with SUBSCRIBE and the message is not its own under
    /// `echo=false`.
    pub(super) async fn deliver(&mut self, message: &StoredMessage) -> Result<(), ()> {
        let channel = &*message.channel.name;
        let subscribed = self
            .membership
            .channels
            .get(channel)
            .is_some_and(|modes| modes.contains(Flags::SUBSCRIBE));
        let own = message.message.connection_id.as_deref()
            == Some(self.registration.entry.connection_id.as_str());
        if !subscribed || (own && !self.echo) {
            return Ok(());
        }
        self.state.delivered.fetch_add(1, Ordering::Relaxed);
        message.channel.delivered.fetch_add(1, Ordering::Relaxed);
        let delta = self.deltas.next(message);
        let Some(delta) = delta else {
            // In full: the frame every connection in this format shares.
            let Some(bytes) = message.realtime_frame(self.format) else {
                return Err(());
            };
            self.last_sent = Instant::now();
            return send_bytes(&mut self.socket, self.format, bytes, !self.hold).await;
        };
        let mut item = delta.message.clone();
        item.channel = None;
        let mut frame = ProtocolMessage::new(Action::MESSAGE);
        frame.channel = Some(channel.to_owned());
        frame.channel_serial = Some(message.cursor.clone());
        frame.messages = Some(vec![item]);
        self.send(&frame).await
    }
}

/// ACKs owed for a run of consecutive `msgSerial`s.
#[derive(Debug)]
pub(super) struct PendingAck {
    serial: u64,
    count: u32,
    /// One publish result per serial; `None` once any is unknown, as `res`
    /// must then be left out.
    res: Option<Vec<serde_json::Value>>,
}

impl PendingAck {
    fn new(serial: u64, res: Option<serde_json::Value>) -> Self {
        Self {
            serial,
            count: 1,
            res: res.map(|res| vec![res]),
        }
    }

    /// Whether `serial` is the next one of the run, and its `res` (or lack
    /// of one) goes with the run's.
    fn extends(&self, serial: u64, has_res: bool) -> bool {
        self.serial.checked_add(u64::from(self.count)) == Some(serial)
            && self.count < u32::MAX
            && self.res.is_some() == has_res
    }

    fn push(&mut self, res: Option<serde_json::Value>) {
        self.count += 1;
        self.res = match (self.res.take(), res) {
            (Some(mut all), Some(res)) => {
                all.push(res);
                Some(all)
            }
            _ => None,
        };
    }

    /// The ACK covering `serial … serial + count - 1` (TR4).
    pub(super) fn frame(self) -> ProtocolMessage {
        let mut ack = ProtocolMessage::new(Action::ACK);
        ack.msg_serial = Some(self.serial);
        ack.count = Some(self.count);
        ack.res = self.res;
        ack
    }
}

/// NACK of one `msgSerial` with `error`.
pub(super) fn nack(serial: u64, error: ErrorInfo) -> ProtocolMessage {
    let mut frame = ProtocolMessage::with_error(Action::NACK, error);
    frame.msg_serial = Some(serial);
    frame.count = Some(1);
    frame
}
