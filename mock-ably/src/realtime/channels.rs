//! ATTACH and DETACH on a realtime connection: the modes granted (those
//! asked for, narrowed by the capability), the attach params (`modes`,
//! `rewind`, `delta`), channel serials, and the channels an AUTH no longer
//! allows.

use shared::capability::Operation;
use shared::protocol::{Action, Flags, ProtocolMessage};
use shared::{ErrorInfo, codes};

use super::Connection;
use crate::channel::StartAt;
use crate::error::{ApiError, ApiResult};
use crate::params::{Query, invalid_param, validate_channel_name};
use crate::state::lock;

/// At most this many channels attached on one connection; another ATTACH
/// gets a channel ERROR.
const MAX_CHANNELS: usize = 1000;

/// The modes granted when ATTACH asks for none: every mode a capability can
/// grant (RTL4l).
/// Ably grants `annotation_publish` too (though the mock serves no
/// annotations), not `annotation_subscribe`.
const DEFAULT_MODES: Flags = Flags(
    Flags::PRESENCE.0
        | Flags::PUBLISH.0
        | Flags::SUBSCRIBE.0
        | Flags::PRESENCE_SUBSCRIBE.0
        | Flags::ANNOTATION_PUBLISH.0,
);

/// The modes named in a `modes` channel param (`publish,subscribe`); names
/// it does not know are ignored.
fn modes_param(text: &str) -> Flags {
    text.split(',')
        .map(|name| match name.trim() {
            "presence" => Flags::PRESENCE,
            "publish" => Flags::PUBLISH,
            "subscribe" => Flags::SUBSCRIBE,
            "presence_subscribe" => Flags::PRESENCE_SUBSCRIBE,
            "annotation_publish" => Flags::ANNOTATION_PUBLISH,
            _ => Flags::default(),
        })
        .fold(Flags::default(), |all, mode| all | mode)
}

/// 40165: an operation on a channel attached without the mode it needs.
const MODE_NOT_REQUESTED: u32 = 40165;

/// The channel params ATTACHED echoes: those Ably recognises (RTL4k1).
/// Others are dropped, as Ably drops them.
const ECHOED_PARAMS: [&str; 4] = ["delta", "modes", "occupancy", "rewind"];

impl Connection {
    /// ATTACH (RTL4): the granted modes are the requested ones (all when
    /// none are) narrowed by the capability; nothing granted is a channel
    /// ERROR 40160 and the connection stays up (RTL14). A `channelSerial`
    /// from an earlier attachment (RTL4c1) continues from there: what was
    /// published since follows ATTACHED, in order.
    pub(super) async fn on_attach(&mut self, frame: ProtocolMessage) -> Result<(), ()> {
        let name = frame.channel.clone().unwrap_or_default();
        let granted = self.check_attach(&frame, &name);
        let modes = match granted {
            Ok((modes, requested)) => {
                self.requested_modes.insert(name.clone(), requested);
                modes
            }
            Err(error) => {
                let mut reply = ProtocolMessage::with_error(Action::ERROR, error.0);
                reply.channel = Some(name);
                return self.send(&reply).await;
            }
        };
        let now = self.state.clock.now_ms();
        let checked = delta_param(frame.params.as_ref()).and_then(|delta| {
            rewind_from(frame.params.as_ref(), &name, now).map(|start| (start, delta))
        });
        let rewinding = frame
            .params
            .as_ref()
            .is_some_and(|params| params.contains_key("rewind"))
            && frame.channel_serial.is_none()
            && !frame.flags().contains(Flags::ATTACH_RESUME);
        let (rewind, delta) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                let mut reply = ProtocolMessage::with_error(Action::ERROR, error.0);
                reply.channel = Some(name);
                return self.send(&reply).await;
            }
        };
        let (backlog, position, resumed) = {
            let mut registry = lock(&self.state.registry);
            // A channelSerial (a re-attach) wins over rewind, as lastEvent
            // does on SSE.
            let after = frame
                .channel_serial
                .as_deref()
                .and_then(|serial| registry.parse_cursor(serial));
            // An ATTACH flagged ATTACH_RESUME continues an attachment the
            // client had: a rewind applies only to a first attach (RTL4j).
            let rewind = if frame.flags().contains(Flags::ATTACH_RESUME) {
                StartAt::Fresh
            } else {
                rewind
            };
            let start = after.map_or(rewind, StartAt::After);
            // RESUMED: this connection was resumed and the channel lost
            // nothing since the serial the client names (RTL12, RTN15c6).
            let resumed = self.resumed && after.is_some_and(|seq| registry.continuous(&name, seq));
            let backlog = if modes.contains(Flags::SUBSCRIBE) {
                registry.join(
                    &self.state.settings,
                    &self.membership.member,
                    &name,
                    start,
                    now,
                )
            } else {
                registry.detach(self.membership.member.id, std::slice::from_ref(&name));
                Vec::new()
            };
            // For the channel's occupancy (`GET /channels/{name}`).
            registry.set_publisher(
                &self.state.settings,
                self.membership.member.id,
                &name,
                modes.contains(Flags::PUBLISH),
                now,
            );
            (backlog, registry.position(), resumed)
        };
        self.membership.attach(name.clone(), modes);
        // The members present now, and every change after them, atomically.
        let members = self.membership.listen(&name, modes);
        // Every (re)attach starts from a full message.
        self.deltas.set(&name, delta);
        let mut reply = ProtocolMessage::new(Action::ATTACHED);
        reply.channel = Some(name.clone());
        let mut flags = modes;
        if resumed {
            flags = flags | Flags::RESUMED;
        }
        if !members.is_empty() {
            flags = flags | Flags::HAS_PRESENCE;
        }
        // A rewind that found messages to send (RTL13a's hasBacklog).
        if rewinding && !backlog.is_empty() {
            flags = flags | Flags::HAS_BACKLOG;
        }
        reply.flags = Some(flags);
        reply.params = frame
            .params
            .map(|mut params| {
                params.retain(|name, _| ECHOED_PARAMS.contains(&name.as_str()));
                params
            })
            .filter(|params| !params.is_empty());
        reply.channel_serial = Some(position);
        self.send(&reply).await?;
        self.sync(&name, members).await?;
        for message in backlog {
            self.membership.member.owed.paid();
            self.deliver(&message).await?;
        }
        Ok(())
    }

    /// The modes granted and the modes asked for.
    fn check_attach(&self, frame: &ProtocolMessage, name: &str) -> ApiResult<(Flags, Flags)> {
        validate_channel_name(name)?;
        if !self.membership.channels.contains_key(name)
            && self.membership.channels.len() >= MAX_CHANNELS
        {
            return Err(ApiError::new(
                codes::BAD_REQUEST,
                format!("At most {MAX_CHANNELS} channels may be attached on one connection"),
            ));
        }
        // The `modes` param wins over the flags.
        let asked = frame
            .params
            .as_ref()
            .and_then(|params| params.get("modes"))
            .map_or_else(|| frame.flags().modes(), |modes| modes_param(modes));
        let requested = match asked {
            modes if modes.is_empty() => DEFAULT_MODES,
            modes => modes,
        };
        let granted = requested.intersection(self.allowed_modes(name));
        if granted.is_empty() {
            return Err(ApiError::new(
                codes::OPERATION_NOT_PERMITTED,
                format!("Channel denied access based on given capability; channel = {name}"),
            ));
        }
        Ok((granted, requested))
    }

    /// The modes the capability allows on `channel`: `publish` → PUBLISH,
    /// `subscribe` → SUBSCRIBE and PRESENCE_SUBSCRIBE, `presence` →
    /// PRESENCE.
    fn allowed_modes(&self, channel: &str) -> Flags {
        let capability = &self.principal.capability;
        let mut modes = Flags::default();
        if capability.allows(Operation::Publish, channel) {
            modes = modes | Flags::PUBLISH;
        }
        if capability.allows(Operation::Subscribe, channel) {
            modes = modes | Flags::SUBSCRIBE | Flags::PRESENCE_SUBSCRIBE;
        }
        if capability.allows(Operation::Presence, channel) {
            modes = modes | Flags::PRESENCE;
        }
        if capability.allows(Operation::AnnotationPublish, channel) {
            modes = modes | Flags::ANNOTATION_PUBLISH;
        }
        modes
    }

    /// DETACH (RTL5): always DETACHED, attached or not.
    pub(super) async fn on_detach(&mut self, frame: ProtocolMessage) -> Result<(), ()> {
        let name = frame.channel.unwrap_or_default();
        if self.membership.channels.contains_key(&name) {
            // Detached first: its own leave is not sent to it.
            self.membership.detach(&name);
            self.leave_presence(&name);
            self.deltas.set(&name, false);
        }
        let mut reply = ProtocolMessage::new(Action::DETACHED);
        reply.channel = Some(name);
        self.send(&reply).await
    }

    /// On a channel whose ATTACH asked for modes without `mode`, the
    /// operation is refused with 40165, as Ably does; a channel not
    /// attached is not limited by modes, and one whose capability kept a
    /// requested mode from being granted is checked by capability alone.
    pub(super) fn require_mode(&self, channel: &str, mode: Flags, name: &str) -> ApiResult<()> {
        let attached = self.membership.channels.contains_key(channel);
        match self.requested_modes.get(channel) {
            Some(modes) if attached && !modes.contains(mode) => Err(ApiError::new(
                MODE_NOT_REQUESTED,
                format!("{name} mode was not requested when attaching; channel = {channel}"),
            )),
            _ => Ok(()),
        }
    }

    /// After AUTH: a channel the new capability no longer allows any of its
    /// modes on gets a channel ERROR 40160 and is detached (RTC8a1).
    pub(super) async fn revoke_channels(&mut self) -> Result<(), ()> {
        let revoked: Vec<String> = self
            .membership
            .channels
            .iter()
            .filter(|(name, modes)| modes.intersection(self.allowed_modes(name)).is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in revoked {
            // Detached first: its own leave is not sent to it.
            self.membership.detach(&name);
            self.leave_presence(&name);
            self.deltas.set(&name, false);
            let mut reply = ProtocolMessage::with_error(
                Action::ERROR,
                ErrorInfo::from_code(
                    codes::OPERATION_NOT_PERMITTED,
                    format!("Channel capability revoked by AUTH; channel = {name}"),
                ),
            );
            reply.channel = Some(name);
            self.send(&reply).await?;
        }
        Ok(())
    }
}

/// Where an ATTACH without a `channelSerial` starts: `rewind` in its
/// params (a count, or a duration such as `10s`, at most 100 messages), as
/// on SSE; otherwise live.
fn rewind_from(
    params: Option<&std::collections::BTreeMap<String, String>>,
    name: &str,
    now_ms: u64,
) -> ApiResult<StartAt> {
    let Some(params) = params else {
        return Ok(StartAt::Fresh);
    };
    let spec = crate::params::ChannelSpec {
        name: name.to_owned(),
        params: Query::from_pairs(params.iter().map(|(k, v)| (k.clone(), v.clone()))),
    };
    crate::routes::rewind(&spec, &Query::default(), now_ms)
}

/// Whether an ATTACH's params ask for vcdiff deltas (`delta: "vcdiff"`,
/// as on SSE).
fn delta_param(params: Option<&std::collections::BTreeMap<String, String>>) -> ApiResult<bool> {
    match params.and_then(|p| p.get("delta")).map(String::as_str) {
        None | Some("") => Ok(false),
        Some("vcdiff") => Ok(true),
        Some(other) => Err(invalid_param("delta", other)),
    }
}
