//! PRESENCE and SYNC on a realtime connection: enter, update and leave
//! checked, stamped and applied, the members synced after ATTACHED, and
//! presence changes sent on.

use shared::capability::Operation;
use shared::codes;
use shared::protocol::{Action, Flags, PresenceAction, PresenceMessage, ProtocolMessage};

use super::messages::nack;
use super::{Connection, MAX_MESSAGE_SIZE};
use crate::auth::CredentialKind;
use crate::error::{ApiError, ApiResult};
use crate::params::validate_channel_name;
use crate::presence::{PresenceEvent, SYNC_PAGE};
use crate::state::{lock, random_id};

impl Connection {
    /// PRESENCE (RTP8, RTP9, RTP10): enter, update or leave, each checked
    /// (`presence` capability, else 40160; a concrete clientId, else
    /// 40012), stamped as Ably does (id `connectionId:msgSerial:index`, kept
    /// when the client re-sends its own on an automatic re-entry, RTP17g),
    /// applied to the channel's presence set and fanned out; then ACKed, so
    /// the sender's ACK goes out before its own echo. A serial seen before
    /// (a re-send after a resume) is ACKed and not applied again.
    pub(super) async fn on_presence(&mut self, frame: ProtocolMessage) -> Result<(), ()> {
        let duplicate = frame
            .msg_serial
            .is_some_and(|serial| serial < self.registration.entry.next_serial);
        let serial = self.take_serial(&frame);
        let channel = frame.channel.clone().unwrap_or_default();
        let applied = self.stamp_presence(frame, serial).and_then(|stamped| {
            if duplicate {
                return Ok(());
            }
            let mut presence = lock(&self.state.presence);
            stamped
                .into_iter()
                .try_for_each(|message| presence.apply(&channel, message))
        });
        match applied {
            Ok(()) => self.owe_ack(serial, None).await,
            Err(error) => self.send(&nack(serial, error.0)).await,
        }
    }

    /// Checks a PRESENCE frame's items and stamps them for `channel`.
    fn stamp_presence(
        &self,
        frame: ProtocolMessage,
        serial: u64,
    ) -> ApiResult<Vec<PresenceMessage>> {
        let channel = frame.channel.unwrap_or_default();
        validate_channel_name(&channel)?;
        self.principal.require(Operation::Presence, &channel)?;
        self.require_mode(&channel, Flags::PRESENCE, "PRESENCE")?;
        let connection_id = &self.registration.entry.connection_id;
        let own = self
            .registration
            .entry
            .client_id
            .as_deref()
            .filter(|id| *id != "*");
        let any_client = match self.registration.entry.client_id.as_deref() {
            Some(id) => id == "*",
            None => {
                self.principal.kind == CredentialKind::Key
                    || self.principal.client_id.as_deref() == Some("*")
            }
        };
        let now = self.state.clock.now_ms();
        let items = frame.presence.unwrap_or_default();
        let mut stamped = Vec::with_capacity(items.len());
        for (index, mut item) in items.into_iter().enumerate() {
            // The member is the connection's clientId; an item may name it
            // again (an automatic re-entry), or name any clientId on a
            // wildcard connection or one authenticated by an API key without
            // a clientId, which Ably treats alike (RTP15).
            let client_id = match (item.client_id.take(), own) {
                (None, Some(own)) => own.to_owned(),
                (Some(named), Some(own)) if named == own => named,
                (Some(named), None) if any_client && !named.is_empty() && named != "*" => named,
                (named, _) => {
                    return Err(ApiError::new(
                        codes::INVALID_CLIENT_ID,
                        match named {
                            Some(named) => format!(
                                "Unable to enter presence as {named:?}: the connection's clientId is {:?}",
                                self.registration.entry.client_id
                            ),
                            None => "Unable to enter presence without a clientId".to_owned(),
                        },
                    ));
                }
            };
            if !matches!(
                item.action,
                Some(PresenceAction::ENTER | PresenceAction::UPDATE | PresenceAction::LEAVE)
            ) {
                return Err(ApiError::new(
                    codes::BAD_REQUEST,
                    format!("Unexpected presence action {:?}", item.action),
                ));
            }
            if presence_size(&item) > MAX_MESSAGE_SIZE as usize {
                return Err(ApiError::new(
                    codes::MESSAGE_TOO_LARGE,
                    format!("Presence data larger than the {MAX_MESSAGE_SIZE}-byte limit"),
                ));
            }
            // Keep the client's own id on a re-entry (same connection);
            // otherwise Ably's `connectionId:msgSerial:index`.
            let keep = item
                .id
                .as_deref()
                .is_some_and(|id| own_presence_id(id, connection_id));
            if !keep {
                item.id = Some(format!("{connection_id}:{serial}:{index}"));
            }
            item.client_id = Some(client_id);
            item.connection_id = Some(connection_id.clone());
            item.timestamp = Some(now);
            stamped.push(item);
        }
        Ok(stamped)
    }

    /// This connection's members on `channel` leave (DETACH, or a channel
    /// AUTH no longer allows).
    pub(super) fn leave_presence(&self, channel: &str) {
        let now = self.state.clock.now_ms();
        lock(&self.state.presence).leave_connection(
            &self.registration.entry.connection_id,
            Some(channel),
            now,
        );
    }

    /// SYNC of `members` after ATTACHED with HAS_PRESENCE (RTP18, RTP19):
    /// pages of [`SYNC_PAGE`], each `channelSerial` `<syncId>:<cursor>`, the
    /// last with an empty cursor so the sync ends.
    pub(super) async fn sync(
        &mut self,
        channel: &str,
        members: Vec<PresenceMessage>,
    ) -> Result<(), ()> {
        if members.is_empty() {
            return Ok(());
        }
        let sync_id = random_id(6);
        let pages = members.len().div_ceil(SYNC_PAGE);
        let mut members = members.into_iter();
        for page in 1..=pages {
            let mut frame = ProtocolMessage::new(Action::SYNC);
            frame.channel = Some(channel.to_owned());
            frame.channel_serial = Some(if page == pages {
                format!("{sync_id}:")
            } else {
                format!("{sync_id}:{page}")
            });
            frame.presence = Some(members.by_ref().take(SYNC_PAGE).collect());
            self.send(&frame).await?;
        }
        Ok(())
    }

    /// SYNC from the client (ably-js's `channel.sync()`, a re-sync): the
    /// channel's members again, as after ATTACHED, and a single empty final
    /// page when there are none, so the client's sync completes. Ignored
    /// on a channel that is not attached.
    pub(super) async fn on_sync(&mut self, frame: ProtocolMessage) -> Result<(), ()> {
        let name = frame.channel.unwrap_or_default();
        let Some(&modes) = self.membership.channels.get(&name) else {
            return Ok(());
        };
        let members = self.membership.listen(&name, modes);
        if !members.is_empty() {
            return self.sync(&name, members).await;
        }
        let mut frame = ProtocolMessage::new(Action::SYNC);
        frame.channel = Some(name);
        frame.channel_serial = Some(format!("{}:", random_id(6)));
        frame.presence = Some(Vec::new());
        self.send(&frame).await
    }

    /// Sends one presence change as a PRESENCE frame.
    pub(super) async fn send_presence(&mut self, event: &PresenceEvent) -> Result<(), ()> {
        let mut frame = ProtocolMessage::new(Action::PRESENCE);
        frame.channel = Some(event.channel.to_string());
        frame.presence = Some(vec![event.message.clone()]);
        self.send(&frame).await
    }
}

/// Whether `id` is one this connection's client may keep: Ably's form
/// `connectionId:msgSerial:index` on this connection (RTP17g).
fn own_presence_id(id: &str, connection_id: &str) -> bool {
    let Some(rest) = id
        .strip_prefix(connection_id)
        .and_then(|rest| rest.strip_prefix(':'))
    else {
        return false;
    };
    let mut parts = rest.split(':');
    let numeric = |part: Option<&str>| {
        part.is_some_and(|p| {
            !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit())
        })
    };
    numeric(parts.next()) && numeric(parts.next()) && parts.next().is_none()
}

/// The size Ably counts for a presence item: clientId, data and extras.
fn presence_size(item: &PresenceMessage) -> usize {
    let data = match &item.data {
        Some(serde_json::Value::String(text)) => text.len(),
        Some(other) => other.to_string().len(),
        None => 0,
    };
    let extras = item.extras.as_ref().map_or(0, |extras| {
        serde_json::Value::Object(extras.clone()).to_string().len()
    });
    data + extras + item.client_id.as_ref().map_or(0, String::len)
}
