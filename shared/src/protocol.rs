//! Ably's realtime `ProtocolMessage` (TR1–TR4): the frames of a realtime
//! WebSocket connection, in both wire formats Ably speaks, JSON and msgpack.
//!
//! # The message (TR4)
//!
//! [`ProtocolMessage`] has the fields of Ably's feature spec TR4 in
//! camelCase, each optional and left out when absent (Ably's protocol says
//! empty fields may be absent). Unknown fields are ignored when reading:
//! ably-js adds a cached `size` to each message it publishes, and builds
//! replies from known fields only. [`Action`] and [`Flags`] are the TR2 and
//! TR3 numbers.
//!
//! Messages inside it are the same [`Message`] that REST and SSE use, so a
//! message keeps its `data`, `encoding` and `extras` whatever transport it
//! crossed. Presence items are [`PresenceMessage`] (TP3).
//!
//! # The two formats
//!
//! [`Format::Json`] frames are WebSocket text frames holding the JSON object.
//! [`Format::Msgpack`] frames are binary frames holding a msgpack map with
//! the same field names (what ably-js in Node sends by default).
//!
//! They differ in one way that matters: binary `data`. In msgpack it is a
//! `bin` value; in JSON it is base64 text with `base64` as the last step of
//! `encoding` (RSL4d, RSL6a). The in-memory form is the JSON one, so every
//! part of a server can keep treating `data` as a JSON value: decoding a
//! msgpack frame turns `bin` data into base64 and appends `base64` to the
//! encoding, and encoding one does the reverse. Binary data published in one
//! format therefore arrives as binary in the other.
//!
//! REST bodies (RSC8) use the same msgpack form: [`rest_body_to_msgpack`]
//! and [`rest_body_from_msgpack`] convert any JSON body, treating every map
//! that holds `data` (a message in a publish, a batch or a history page) as
//! an item.
//!
//! ```
//! use shared::protocol::{Action, Format, ProtocolMessage};
//!
//! let ping = Format::Json.decode(br#"{"action":0,"id":"12394404419098426"}"#)?;
//! assert_eq!(ping.action, Action::HEARTBEAT);
//!
//! // The reply echoes the id (RTN13e), in whichever format the client chose.
//! let mut reply = ProtocolMessage::new(Action::HEARTBEAT);
//! reply.id = ping.id.clone();
//! let bytes = Format::Msgpack.encode(&reply)?;
//! assert_eq!(Format::Msgpack.decode(&bytes)?, reply);
//! # Ok::<(), shared::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::BitOr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::error_info::ErrorInfo;
use crate::message::Message;

/// A ProtocolMessage's `action` (TR2). Unknown numbers are kept, so a frame
/// from a newer client can be answered rather than dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Action(pub u32);

impl Action {
    /// 0: a heartbeat, or a ping when it carries an `id` (RTN13).
    pub const HEARTBEAT: Self = Self(0);
    /// 1: messages up to `msgSerial + count - 1` were accepted.
    pub const ACK: Self = Self(1);
    /// 2: messages up to `msgSerial + count - 1` were refused, with `error`.
    pub const NACK: Self = Self(2);
    /// 3: unused on WebSocket (the query string connects).
    pub const CONNECT: Self = Self(3);
    /// 4: the connection is up (also the reply to AUTH).
    pub const CONNECTED: Self = Self(4);
    /// 5: the client abandons this transport (it may resume).
    pub const DISCONNECT: Self = Self(5);
    /// 6: the server drops this transport; the client may resume.
    pub const DISCONNECTED: Self = Self(6);
    /// 7: the client closes the connection for good.
    pub const CLOSE: Self = Self(7);
    /// 8: the reply to CLOSE.
    pub const CLOSED: Self = Self(8);
    /// 9: an error: for the connection (fatal) without `channel`, for one
    /// channel with it.
    pub const ERROR: Self = Self(9);
    /// 10: attach a channel.
    pub const ATTACH: Self = Self(10);
    /// 11: a channel is attached.
    pub const ATTACHED: Self = Self(11);
    /// 12: detach a channel.
    pub const DETACH: Self = Self(12);
    /// 13: a channel is detached.
    pub const DETACHED: Self = Self(13);
    /// 14: presence messages.
    pub const PRESENCE: Self = Self(14);
    /// 15: messages.
    pub const MESSAGE: Self = Self(15);
    /// 16: a page of the presence set.
    pub const SYNC: Self = Self(16);
    /// 17: re-authenticate (server → client), or a new token (client → server).
    pub const AUTH: Self = Self(17);
    /// 18: push activation (not used over realtime by ably-js).
    pub const ACTIVATE: Self = Self(18);
    /// 19: LiveObjects operations.
    pub const OBJECT: Self = Self(19);
    /// 20: LiveObjects state sync.
    pub const OBJECT_SYNC: Self = Self(20);
    /// 21: annotations.
    pub const ANNOTATION: Self = Self(21);

    /// The TR2 name, or `None` for a number TR2 does not list.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 22] = [
            "HEARTBEAT",
            "ACK",
            "NACK",
            "CONNECT",
            "CONNECTED",
            "DISCONNECT",
            "DISCONNECTED",
            "CLOSE",
            "CLOSED",
            "ERROR",
            "ATTACH",
            "ATTACHED",
            "DETACH",
            "DETACHED",
            "PRESENCE",
            "MESSAGE",
            "SYNC",
            "AUTH",
            "ACTIVATE",
            "OBJECT",
            "OBJECT_SYNC",
            "ANNOTATION",
        ];
        usize::try_from(self.0)
            .ok()
            .and_then(|i| NAMES.get(i).copied())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "action {}", self.0),
        }
    }
}

/// A ProtocolMessage's `flags` (TR3): channel state bits and the channel
/// modes a client asks for on ATTACH and is granted on ATTACHED (RTL4l,
/// RTL4m).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Flags(pub u32);

impl Flags {
    /// Bit 0: ATTACHED is followed by a SYNC of the presence set.
    pub const HAS_PRESENCE: Self = Self(1 << 0);
    /// Bit 1: the channel has a backlog.
    pub const HAS_BACKLOG: Self = Self(1 << 1);
    /// Bit 2: ATTACHED after a resume with continuity kept (RTL12).
    pub const RESUMED: Self = Self(1 << 2);
    /// Bit 4: a transient publish.
    pub const TRANSIENT: Self = Self(1 << 4);
    /// Bit 5: attach resuming a previous attachment (deprecated).
    pub const ATTACH_RESUME: Self = Self(1 << 5);
    /// Bit 7: the channel has LiveObjects state.
    pub const HAS_OBJECTS: Self = Self(1 << 7);
    /// Bit 16: mode: enter presence.
    pub const PRESENCE: Self = Self(1 << 16);
    /// Bit 17: mode: publish.
    pub const PUBLISH: Self = Self(1 << 17);
    /// Bit 18: mode: receive messages.
    pub const SUBSCRIBE: Self = Self(1 << 18);
    /// Bit 19: mode: receive presence.
    pub const PRESENCE_SUBSCRIBE: Self = Self(1 << 19);
    /// Bit 21: mode: publish annotations.
    pub const ANNOTATION_PUBLISH: Self = Self(1 << 21);
    /// Bit 22: mode: receive annotations.
    pub const ANNOTATION_SUBSCRIBE: Self = Self(1 << 22);
    /// Bit 24: mode: receive LiveObjects.
    pub const OBJECT_SUBSCRIBE: Self = Self(1 << 24);
    /// Bit 25: mode: publish LiveObjects.
    pub const OBJECT_PUBLISH: Self = Self(1 << 25);
    /// Every channel mode bit.
    pub const MODES: Self = Self(
        Self::PRESENCE.0
            | Self::PUBLISH.0
            | Self::SUBSCRIBE.0
            | Self::PRESENCE_SUBSCRIBE.0
            | Self::ANNOTATION_PUBLISH.0
            | Self::ANNOTATION_SUBSCRIBE.0
            | Self::OBJECT_SUBSCRIBE.0
            | Self::OBJECT_PUBLISH.0,
    );

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits set in both.
    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Whether no bit is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Only the channel mode bits.
    pub fn modes(self) -> Self {
        self.intersection(Self::MODES)
    }
}

impl BitOr for Flags {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// `auth` on an AUTH frame from the client: the new credential (RTC8a).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AuthDetails {
    /// The new token or JWT.
    pub access_token: String,
}

impl AuthDetails {
    /// Details carrying `access_token`.
    pub fn new(access_token: impl Into<String>) -> Self {
        Self {
            access_token: access_token.into(),
        }
    }
}

/// `connectionDetails` on CONNECTED (CD2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ConnectionDetails {
    /// The identity the connection acts as (CD2a): how a client holding
    /// only a token learns its clientId.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The key to resume the connection with (CD2b); ably-js sets
    /// `connection.id` only once it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_key: Option<String>,
    /// Longest allowed message, in bytes (CD2c).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<u64>,
    /// Longest allowed frame, in bytes (CD2d).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame_size: Option<u64>,
    /// Inbound message rate allowed (CD2e).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_inbound_rate: Option<u64>,
    /// How long, in ms, the server keeps a dropped connection's state for a
    /// resume (CD2f).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_state_ttl: Option<u64>,
    /// Which server the connection is on (CD2g).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    /// The longest the server stays silent, in ms (CD2h): past it plus the
    /// client's request timeout, the client drops the transport.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_idle_interval: Option<u64>,
}

/// A presence action (TP2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PresenceAction(pub u32);

impl PresenceAction {
    /// 0: not present (in a SYNC).
    pub const ABSENT: Self = Self(0);
    /// 1: present (in a SYNC).
    pub const PRESENT: Self = Self(1);
    /// 2: entered.
    pub const ENTER: Self = Self(2);
    /// 3: left.
    pub const LEAVE: Self = Self(3);
    /// 4: updated its data.
    pub const UPDATE: Self = Self(4);
}

/// A presence message (TP3), `data`, `encoding` and `extras` kept as they
/// came.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PresenceMessage {
    /// Unique id, `connectionId:msgSerial:index` when the server assigns it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Enter, leave, update, present or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<PresenceAction>,
    /// The member's clientId.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The member's connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The member's data, encoded per `encoding`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// The transforms applied to `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Metadata, kept as it came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extras: Option<Map<String, Value>>,
    /// When the server received it, in ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// A realtime frame (TR4). Start from [`ProtocolMessage::new`] and set what
/// the action needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ProtocolMessage {
    /// What the frame does (TR2).
    pub action: Action,
    /// A ping's id (RTN13e), or `connectionId:msgSerial` on delivered
    /// messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The new credential on a client's AUTH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthDetails>,
    /// The channel, for channel-level frames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The channel position: sent on ATTACHED and messages, returned on
    /// re-ATTACH (RTL15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_serial: Option<String>,
    /// The connection's id, on CONNECTED and delivered messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// Deprecated top-level key; ably-js reads `connectionDetails` instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_key: Option<String>,
    /// On CONNECTED: the key, clientId and server limits (CD2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_details: Option<ConnectionDetails>,
    /// On ACK and NACK: how many serials from `msgSerial` the reply covers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Why: on ERROR, NACK, DISCONNECTED, and on CONNECTED after a failed
    /// resume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// TR3 bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<Flags>,
    /// The serial of a published MESSAGE or PRESENCE, per connection from 0
    /// (RTN7b); the first serial covered by an ACK or NACK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_serial: Option<u64>,
    /// Messages, on MESSAGE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// Presence messages, on PRESENCE and SYNC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<Vec<PresenceMessage>>,
    /// Channel params: requested on ATTACH, granted on ATTACHED (RTL4k).
    /// A number or boolean value is read as its text (ably-js sends
    /// `params: { rewind: 1 }` as given, and Ably accepts it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_params"
    )]
    pub params: Option<BTreeMap<String, String>>,
    /// When the server sent it, in ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// On ACK: per-message publish results (`[{"serials":[…]}]`), kept as
    /// they came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub res: Option<Vec<Value>>,
}

impl ProtocolMessage {
    /// A frame with only its action set.
    pub fn new(action: Action) -> Self {
        Self {
            action,
            id: None,
            auth: None,
            channel: None,
            channel_serial: None,
            connection_id: None,
            connection_key: None,
            connection_details: None,
            count: None,
            error: None,
            flags: None,
            msg_serial: None,
            messages: None,
            presence: None,
            params: None,
            timestamp: None,
            res: None,
        }
    }

    /// A frame with an action and an error: ERROR, DISCONNECTED, NACK.
    pub fn with_error(action: Action, error: ErrorInfo) -> Self {
        Self {
            error: Some(error),
            ..Self::new(action)
        }
    }

    /// The flags, or none set when absent.
    pub fn flags(&self) -> Flags {
        self.flags.unwrap_or_default()
    }
}

/// The wire format of a realtime connection: the `format` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `format=json`: text frames (the browser default).
    Json,
    /// `format=msgpack`: binary frames (the Node default of ably-js).
    Msgpack,
}

impl Format {
    /// The format named by a `format` parameter value, `None` for another.
    pub fn from_param(value: &str) -> Option<Self> {
        match value {
            "json" => Some(Self::Json),
            "msgpack" => Some(Self::Msgpack),
            _ => None,
        }
    }

    /// Whether frames go out as WebSocket binary frames (else text).
    pub fn is_binary(self) -> bool {
        self == Self::Msgpack
    }

    /// `message` as frame bytes: JSON text or a msgpack map.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidProtocolMessage`] if a value cannot be written in the
    /// format (a float that is not finite in msgpack cannot occur, as JSON
    /// values never hold one).
    pub fn encode(self, message: &ProtocolMessage) -> Result<Vec<u8>> {
        match self {
            Self::Json => serde_json::to_vec(message).map_err(invalid),
            Self::Msgpack => {
                let json = serde_json::to_value(message).map_err(invalid)?;
                let value = to_msgpack(json, Items::ProtocolMessage);
                let mut bytes = Vec::new();
                rmpv::encode::write_value(&mut bytes, &value).map_err(invalid)?;
                Ok(bytes)
            }
        }
    }

    /// Reads a frame.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidProtocolMessage`] for bytes that are not one
    /// ProtocolMessage in this format: malformed, trailing bytes, a
    /// required field missing or of the wrong type, a msgpack map key that
    /// is not a string, or `bin`/extension values outside `data`.
    pub fn decode(self, bytes: &[u8]) -> Result<ProtocolMessage> {
        match self {
            Self::Json => serde_json::from_slice(bytes).map_err(invalid),
            Self::Msgpack => {
                let mut reader = bytes;
                let value = rmpv::decode::read_value(&mut reader).map_err(invalid)?;
                if !reader.is_empty() {
                    return Err(Error::InvalidProtocolMessage(format!(
                        "{} bytes after the msgpack value",
                        reader.len()
                    )));
                }
                let json = from_msgpack(value, Items::ProtocolMessage)?;
                serde_json::from_value(json).map_err(invalid)
            }
        }
    }
}

fn invalid(err: impl fmt::Display) -> Error {
    Error::InvalidProtocolMessage(err.to_string())
}

/// The ProtocolMessage fields whose items carry `data`.
const ITEM_LISTS: [&str; 2] = ["messages", "presence"];

/// Where [`to_msgpack`] and [`from_msgpack`] find message-like items, whose
/// `data` is `bin` in msgpack and base64 (with `base64` ending `encoding`)
/// in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Items {
    /// The top of a ProtocolMessage: the items of its `messages` and
    /// `presence` lists.
    ProtocolMessage,
    /// Below the top of a ProtocolMessage: nowhere.
    Nowhere,
    /// A REST body: every map with a `data` entry, at any depth.
    Everywhere,
}

impl Items {
    /// Where items are below a value of this level.
    fn below(self) -> Self {
        match self {
            Self::Everywhere => Self::Everywhere,
            Self::ProtocolMessage | Self::Nowhere => Self::Nowhere,
        }
    }
}

/// A REST request or response body (a Message or array of them, a batch
/// publish, a history page, TokenDetails, an error envelope, …) as msgpack
/// bytes (RSC8). Every map holding `data` is a message-like item: data that
/// is base64 with `base64` ending its `encoding` goes out as `bin`, that
/// step dropped, as on a realtime connection ([`Format`]).
///
/// ```
/// use serde_json::json;
/// use shared::protocol::{rest_body_from_msgpack, rest_body_to_msgpack};
///
/// let page = json!([{"id": "m:0", "data": "AAEC", "encoding": "base64"}]);
/// let bytes = rest_body_to_msgpack(&page)?;
/// assert_eq!(rest_body_from_msgpack(&bytes)?, page);
/// # Ok::<(), shared::Error>(())
/// ```
///
/// # Errors
///
/// Never for a JSON value; the `Result` is for symmetry with the decoder.
pub fn rest_body_to_msgpack(body: &Value) -> Result<Vec<u8>> {
    let value = to_msgpack(body.clone(), Items::Everywhere);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &value).map_err(invalid_body)?;
    Ok(bytes)
}

/// A msgpack REST body in its JSON form (RSC8): the reverse of
/// [`rest_body_to_msgpack`]. `bin` data of any map becomes base64 text
/// with `base64` appended to its `encoding`.
///
/// # Errors
///
/// [`Error::InvalidMsgpackBody`] for bytes that are not exactly one msgpack
/// value, a map key that is not a string, a string that is not UTF-8, or a
/// `bin` or extension value other than a `data` entry.
pub fn rest_body_from_msgpack(bytes: &[u8]) -> Result<Value> {
    let mut reader = bytes;
    let value = rmpv::decode::read_value(&mut reader).map_err(invalid_body)?;
    if !reader.is_empty() {
        return Err(Error::InvalidMsgpackBody(format!(
            "{} bytes after the msgpack value",
            reader.len()
        )));
    }
    from_msgpack(value, Items::Everywhere).map_err(|err| match err {
        Error::InvalidProtocolMessage(message) => Error::InvalidMsgpackBody(message),
        other => other,
    })
}

fn invalid_body(err: impl fmt::Display) -> Error {
    Error::InvalidMsgpackBody(err.to_string())
}

/// Converts the JSON form to msgpack, with the data of the items `items`
/// says where to find as `bin` when its encoding ends in `base64` (that
/// step dropped).
fn to_msgpack(value: Value, items: Items) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else {
                rmpv::Value::F64(n.as_f64().unwrap_or_default())
            }
        }
        Value::String(s) => rmpv::Value::String(s.into()),
        Value::Array(values) => rmpv::Value::Array(
            values
                .into_iter()
                .map(|v| to_msgpack(v, items.below()))
                .collect(),
        ),
        Value::Object(map) if items == Items::Everywhere && map.contains_key("data") => {
            item_to_msgpack(map, Items::Everywhere)
        }
        Value::Object(map) => rmpv::Value::Map(
            map.into_iter()
                .map(|(key, value)| {
                    let value = match value {
                        Value::Array(list)
                            if items == Items::ProtocolMessage
                                && ITEM_LISTS.contains(&key.as_str()) =>
                        {
                            rmpv::Value::Array(
                                list.into_iter()
                                    .map(|item| match item {
                                        Value::Object(map) => item_to_msgpack(map, Items::Nowhere),
                                        other => to_msgpack(other, Items::Nowhere),
                                    })
                                    .collect(),
                            )
                        }
                        value => to_msgpack(value, items.below()),
                    };
                    (rmpv::Value::String(key.into()), value)
                })
                .collect(),
        ),
    }
}

/// One message or presence item to msgpack, with base64 data as `bin`;
/// its other values converted at level `rest`.
fn item_to_msgpack(mut map: Map<String, Value>, rest: Items) -> rmpv::Value {
    let binary = match (map.get("data"), map.get("encoding")) {
        (Some(Value::String(data)), Some(Value::String(encoding))) => {
            let rest = match encoding.rsplit_once('/') {
                Some((rest, "base64")) if !rest.is_empty() => Some(rest),
                None if encoding == "base64" => Some(""),
                _ => None,
            };
            rest.and_then(|rest| {
                STANDARD
                    .decode(data)
                    .ok()
                    .map(|bytes| (bytes, rest.to_owned()))
            })
        }
        _ => None,
    };
    let mut out = Vec::with_capacity(map.len());
    if let Some((bytes, rest)) = binary {
        map.remove("data");
        map.remove("encoding");
        out.push((rmpv::Value::from("data"), rmpv::Value::Binary(bytes)));
        if !rest.is_empty() {
            out.push((rmpv::Value::from("encoding"), rmpv::Value::from(rest)));
        }
    }
    out.extend(
        map.into_iter()
            .map(|(key, value)| (rmpv::Value::String(key.into()), to_msgpack(value, rest))),
    );
    rmpv::Value::Map(out)
}

/// Converts msgpack to the JSON form; the reverse of [`to_msgpack`].
fn from_msgpack(value: rmpv::Value, items: Items) -> Result<Value> {
    Ok(match value {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(b),
        rmpv::Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            (None, None) => return Err(invalid("integer out of range")),
        },
        rmpv::Value::F32(f) => float(f64::from(f))?,
        rmpv::Value::F64(f) => float(f)?,
        rmpv::Value::String(s) => Value::String(
            s.into_str()
                .ok_or_else(|| invalid("a msgpack string is not UTF-8"))?,
        ),
        rmpv::Value::Binary(_) => return Err(invalid("binary value outside a message's data")),
        rmpv::Value::Ext(..) => return Err(invalid("msgpack extension values are not used")),
        rmpv::Value::Array(values) => Value::Array(
            values
                .into_iter()
                .map(|v| from_msgpack(v, items.below()))
                .collect::<Result<_>>()?,
        ),
        rmpv::Value::Map(entries)
            if items == Items::Everywhere
                && entries.iter().any(|(key, _)| key.as_str() == Some("data")) =>
        {
            item_from_msgpack(entries, Items::Everywhere)?
        }
        rmpv::Value::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (key, value) in entries {
                let key = map_key(key)?;
                let value = match value {
                    rmpv::Value::Array(list)
                        if items == Items::ProtocolMessage
                            && ITEM_LISTS.contains(&key.as_str()) =>
                    {
                        Value::Array(
                            list.into_iter()
                                .map(|item| match item {
                                    rmpv::Value::Map(entries) => {
                                        item_from_msgpack(entries, Items::Nowhere)
                                    }
                                    other => from_msgpack(other, Items::Nowhere),
                                })
                                .collect::<Result<_>>()?,
                        )
                    }
                    value => from_msgpack(value, items.below())?,
                };
                map.insert(key, value);
            }
            Value::Object(map)
        }
    })
}

/// A msgpack map key, which must be a UTF-8 string.
fn map_key(key: rmpv::Value) -> Result<String> {
    let rmpv::Value::String(key) = key else {
        return Err(invalid("a msgpack map key is not a string"));
    };
    key.into_str()
        .ok_or_else(|| invalid("a msgpack map key is not UTF-8"))
}

fn float(f: f64) -> Result<Value> {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| invalid("a float that is not finite"))
}

/// One message or presence item from msgpack: `bin` data becomes base64
/// with `base64` appended to the encoding; its other values are converted
/// at level `rest`.
fn item_from_msgpack(entries: Vec<(rmpv::Value, rmpv::Value)>, rest: Items) -> Result<Value> {
    let mut binary = None;
    let mut map = Map::with_capacity(entries.len());
    for (key, value) in entries {
        let key = map_key(key)?;
        match (key.as_str(), value) {
            ("data", rmpv::Value::Binary(bytes)) => binary = Some(bytes),
            (_, value) => {
                map.insert(key, from_msgpack(value, rest)?);
            }
        }
    }
    if let Some(bytes) = binary {
        map.insert("data".to_owned(), Value::String(STANDARD.encode(bytes)));
        let encoding = match map.get("encoding") {
            Some(Value::String(earlier)) if !earlier.is_empty() => format!("{earlier}/base64"),
            _ => "base64".to_owned(),
        };
        map.insert("encoding".to_owned(), Value::String(encoding));
    }
    Ok(Value::Object(map))
}

/// Channel params with string, number or boolean values, each kept as text;
/// any other value (an object, an array) is refused.
fn lenient_params<'de, D>(
    deserializer: D,
) -> std::result::Result<Option<BTreeMap<String, String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, Value>> = Deserialize::deserialize(deserializer)?;
    raw.map(|params| {
        params
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(text) => Ok((name, text)),
                Value::Number(number) => Ok((name, number.to_string())),
                Value::Bool(flag) => Ok((name, flag.to_string())),
                other => Err(serde::de::Error::custom(format!(
                    "channel param {name:?} must be a string, number or boolean, not {other}"
                ))),
            })
            .collect()
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn json_frame(text: &str) -> ProtocolMessage {
        Format::Json.decode(text.as_bytes()).unwrap()
    }

    fn json_text(message: &ProtocolMessage) -> Value {
        serde_json::from_slice(&Format::Json.encode(message).unwrap()).unwrap()
    }

    #[test]
    fn the_minimal_connected_frame_of_an_ably_js_capture_reads() {
        let frame = json_frame(
            r#"{"action":4,"connectionId":"conn1","connectionDetails":{"connectionKey":"conn1key"}}"#,
        );

        assert_eq!(frame.action, Action::CONNECTED);
        assert_eq!(frame.connection_id.as_deref(), Some("conn1"));
        let details = frame.connection_details.unwrap();
        assert_eq!(details.connection_key.as_deref(), Some("conn1key"));
        assert_eq!(details.client_id, None);
    }

    #[test]
    fn a_full_connected_frame_writes_every_detail_in_camel_case() {
        let mut frame = ProtocolMessage::new(Action::CONNECTED);
        frame.connection_id = Some("c-7f3a".into());
        frame.connection_details = Some(ConnectionDetails {
            client_id: Some("alice".into()),
            connection_key: Some("c-7f3a!k".into()),
            max_idle_interval: Some(15000),
            connection_state_ttl: Some(120_000),
            max_message_size: Some(65536),
            server_id: Some("ably-mock".into()),
            ..ConnectionDetails::default()
        });

        assert_eq!(
            json_text(&frame),
            json!({"action":4,"connectionId":"c-7f3a","connectionDetails":{"clientId":"alice",
                "connectionKey":"c-7f3a!k","maxIdleInterval":15000,"connectionStateTtl":120000,
                "maxMessageSize":65536,"serverId":"ably-mock"}})
        );
    }

    #[test]
    fn a_ping_keeps_its_id() {
        let ping = json_frame(r#"{"action":0,"id":"12394404419098426"}"#);

        assert_eq!(ping.action, Action::HEARTBEAT);
        assert_eq!(ping.id.as_deref(), Some("12394404419098426"));
        assert_eq!(
            json_text(&ping),
            json!({"action":0,"id":"12394404419098426"})
        );
    }

    #[test]
    fn channel_params_given_as_numbers_or_booleans_read_as_text() {
        let frame = json_frame(
            r#"{"action":10,"channel":"y","params":{"rewind":1,"delta":"vcdiff","x":true}}"#,
        );
        let expected: BTreeMap<String, String> =
            [("delta", "vcdiff"), ("rewind", "1"), ("x", "true")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(frame.params.as_ref(), Some(&expected));

        let packed = rmpv::Value::Map(vec![
            (rmpv::Value::from("action"), rmpv::Value::from(10)),
            (rmpv::Value::from("channel"), rmpv::Value::from("y")),
            (
                rmpv::Value::from("params"),
                rmpv::Value::Map(vec![(rmpv::Value::from("rewind"), rmpv::Value::from(1))]),
            ),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &packed).unwrap();
        let frame = Format::Msgpack.decode(&bytes).unwrap();
        assert_eq!(frame.params.unwrap()["rewind"], "1");

        let nested = Format::Json.decode(br#"{"action":10,"params":{"rewind":{"a":1}}}"#);
        assert!(nested.unwrap_err().to_string().contains("\"rewind\""));
    }

    #[test]
    fn attach_frames_of_the_capture_read_with_params_flags_and_serial() {
        let spaces = json_frame(
            r#"{"action":10,"channel":"y","params":{"agent":"spaces/0.5.2"},"flags":589824}"#,
        );
        let reattach = json_frame(r#"{"action":10,"channel":"x","channelSerial":"chser:1"}"#);

        assert_eq!(spaces.action, Action::ATTACH);
        assert_eq!(spaces.channel.as_deref(), Some("y"));
        assert_eq!(
            spaces
                .params
                .as_ref()
                .unwrap()
                .get("agent")
                .map(String::as_str),
            Some("spaces/0.5.2")
        );
        assert_eq!(spaces.flags(), Flags::PRESENCE | Flags::PRESENCE_SUBSCRIBE);
        assert_eq!(reattach.channel_serial.as_deref(), Some("chser:1"));
        assert_eq!(reattach.flags(), Flags::default());
    }

    #[test]
    fn the_four_modes_make_983040() {
        let all = Flags::PRESENCE | Flags::PUBLISH | Flags::SUBSCRIBE | Flags::PRESENCE_SUBSCRIBE;
        let attached = ProtocolMessage {
            channel: Some("demo::$space".into()),
            flags: Some(all),
            params: Some(BTreeMap::from([("agent".into(), "spaces/0.5.2".into())])),
            channel_serial: Some("ser0".into()),
            ..ProtocolMessage::new(Action::ATTACHED)
        };

        assert_eq!(all, Flags(983_040));
        assert_eq!((all | Flags::HAS_PRESENCE).modes(), all);
        assert!(all.contains(Flags::PUBLISH));
        assert!(!Flags::PUBLISH.contains(all));
        assert_eq!(
            json_text(&attached),
            json!({"action":11,"channel":"demo::$space","flags":983040,
                "params":{"agent":"spaces/0.5.2"},"channelSerial":"ser0"})
        );
    }

    #[test]
    fn a_publish_from_ably_js_reads_and_its_size_field_is_dropped() {
        let publish = json_frame(
            r#"{"action":15,"channel":"x","messages":[{"name":"a","data":"one","action":0,"size":4},{"name":"b","data":"two","action":0,"size":4}],"msgSerial":3}"#,
        );

        assert_eq!(publish.action, Action::MESSAGE);
        assert_eq!(publish.msg_serial, Some(3));
        let messages = publish.messages.as_ref().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].name.as_deref(), Some("b"));
        assert_eq!(messages[1].data, Some(json!("two")));
        assert_eq!(
            json_text(&publish)["messages"][0],
            json!({"name":"a","data":"one","action":0})
        );
    }

    #[test]
    fn json_data_and_its_encoding_pass_through_unchanged() {
        let text = r#"{"action":15,"channel":"demo::$cursors","messages":[{"name":"cursorUpdate","data":"[{\"cursor\":{\"position\":{\"x\":10,\"y\":20},\"data\":{\"color\":\"red\"}},\"offset\":0}]","action":0,"encoding":"json","size":87}],"msgSerial":5}"#;

        let frame = json_frame(text);
        let message = &frame.messages.as_ref().unwrap()[0];

        assert_eq!(message.encoding.as_deref(), Some("json"));
        assert_eq!(
            message.data,
            Some(json!(
                "[{\"cursor\":{\"position\":{\"x\":10,\"y\":20},\"data\":{\"color\":\"red\"}},\"offset\":0}]"
            ))
        );
        let again = Format::Msgpack
            .decode(&Format::Msgpack.encode(&frame).unwrap())
            .unwrap();
        assert_eq!(again, frame);
    }

    #[test]
    fn a_delivered_message_of_the_capture_round_trips() {
        let text = r#"{"action":15,"channel":"demo::$cursors","id":"connA:5","connectionId":"connA","timestamp":1795328524859,"messages":[{"id":"connA:5:0","name":"cursorUpdate","clientId":"alice","connectionId":"connA","timestamp":1795328524859,"data":"[...]","encoding":"json","extras":{"headers":{"k":"v"}}}]}"#;

        let frame = json_frame(text);

        assert_eq!(
            json_text(&frame),
            serde_json::from_str::<Value>(text).unwrap()
        );
        let message = &frame.messages.as_ref().unwrap()[0];
        assert_eq!(message.id.as_deref(), Some("connA:5:0"));
        assert_eq!(
            message.extras.as_ref().unwrap()["headers"],
            json!({"k":"v"})
        );
    }

    #[test]
    fn ack_nack_and_error_frames_of_the_capture_read() {
        let ack = json_frame(r#"{"action":1,"msgSerial":5,"count":1,"res":[{"serials":["s0"]}]}"#);
        let nack = json_frame(
            r#"{"action":2,"msgSerial":0,"count":1,"error":{"code":40160,"statusCode":401,"message":"denied"}}"#,
        );
        let expired = json_frame(
            r#"{"action":6,"error":{"code":40142,"statusCode":401,"message":"Token expired"}}"#,
        );
        let denied = json_frame(
            r#"{"action":9,"channel":"secret","error":{"code":40160,"statusCode":401,"message":"..."}}"#,
        );

        assert_eq!(
            (ack.action, ack.msg_serial, ack.count),
            (Action::ACK, Some(5), Some(1))
        );
        assert_eq!(ack.res, Some(vec![json!({"serials":["s0"]})]));
        assert_eq!(nack.action, Action::NACK);
        assert_eq!(nack.error.unwrap().code, 40160);
        assert_eq!(expired.action, Action::DISCONNECTED);
        assert_eq!(expired.error.as_ref().unwrap().status_code, 401);
        assert_eq!(denied.action, Action::ERROR);
        assert_eq!(denied.channel.as_deref(), Some("secret"));
    }

    #[test]
    fn presence_and_auth_frames_of_the_capture_read() {
        let enter = json_frame(
            r#"{"action":14,"channel":"x","presence":[{"data":"{\"status\":\"here\"}","action":2,"encoding":"json"}],"msgSerial":0}"#,
        );
        let auth = json_frame(r#"{"action":17,"auth":{"accessToken":"tok-2"}}"#);

        let item = &enter.presence.as_ref().unwrap()[0];
        assert_eq!(item.action, Some(PresenceAction::ENTER));
        assert_eq!(item.data, Some(json!("{\"status\":\"here\"}")));
        assert_eq!(item.encoding.as_deref(), Some("json"));
        assert_eq!(auth.action, Action::AUTH);
        assert_eq!(auth.auth, Some(AuthDetails::new("tok-2")));
    }

    #[test]
    fn bare_frames_and_unknown_actions_read() {
        for (text, action) in [
            (r#"{"action":7}"#, Action::CLOSE),
            (r#"{"action":8}"#, Action::CLOSED),
            (r#"{"action":5}"#, Action::DISCONNECT),
            (r#"{"action":12,"channel":"x"}"#, Action::DETACH),
            (r#"{"action":99}"#, Action(99)),
        ] {
            assert_eq!(json_frame(text).action, action, "{text}");
        }
        assert_eq!(Action::SYNC.to_string(), "SYNC");
        assert_eq!(Action(99).to_string(), "action 99");
    }

    #[test]
    fn malformed_frames_are_refused_with_40000() {
        for bytes in [&b"{"[..], b"{}", br#"{"action":"x"}"#, b"[1]"] {
            let err = Format::Json.decode(bytes).unwrap_err();
            assert_eq!(err.error_info().code, 40000, "{bytes:?}");
        }
        // A msgpack map with an integer key, and a value with a byte left over.
        for bytes in [
            &[0x81, 0x01, 0x00][..],
            &[0x81, 0xa6, b'a', b'c', b't', b'i', b'o', b'n', 0x00, 0x00],
        ] {
            let err = Format::Msgpack.decode(bytes).unwrap_err();
            assert!(matches!(err, Error::InvalidProtocolMessage(_)), "{bytes:?}");
        }
    }

    /// `{"action":0,"id":"ab"}` in msgpack: a fixmap of two entries.
    const PING_MSGPACK: &[u8] = &[
        0x82, 0xa6, b'a', b'c', b't', b'i', b'o', b'n', 0x00, 0xa2, b'i', b'd', 0xa2, b'a', b'b',
    ];

    #[test]
    fn a_msgpack_ping_reads_and_writes_exact_bytes() {
        let ping = Format::Msgpack.decode(PING_MSGPACK).unwrap();

        assert_eq!(ping.action, Action::HEARTBEAT);
        assert_eq!(ping.id.as_deref(), Some("ab"));
        assert_eq!(Format::Msgpack.encode(&ping).unwrap(), PING_MSGPACK);
    }

    /// `{"action":15,"channel":"x","messages":[{"data":<bin 01 02 03>}]}`.
    const BINARY_PUBLISH: &[u8] = &[
        0x83, 0xa6, b'a', b'c', b't', b'i', b'o', b'n', 0x0f, 0xa7, b'c', b'h', b'a', b'n', b'n',
        b'e', b'l', 0xa1, b'x', 0xa8, b'm', b'e', b's', b's', b'a', b'g', b'e', b's', 0x91, 0x81,
        0xa4, b'd', b'a', b't', b'a', 0xc4, 0x03, 0x01, 0x02, 0x03,
    ];

    #[test]
    fn binary_data_is_msgpack_bin_and_base64_with_encoding_in_json() {
        let frame = Format::Msgpack.decode(BINARY_PUBLISH).unwrap();

        let message = &frame.messages.as_ref().unwrap()[0];
        assert_eq!(message.data, Some(json!("AQID")));
        assert_eq!(message.encoding.as_deref(), Some("base64"));
        assert_eq!(
            json_text(&frame),
            json!({"action":15,"channel":"x","messages":[{"data":"AQID","encoding":"base64"}]})
        );
        assert_eq!(Format::Msgpack.encode(&frame).unwrap(), BINARY_PUBLISH);
    }

    #[test]
    fn binary_data_keeps_the_earlier_steps_of_its_encoding() {
        // Encrypted text: the cipher step before base64 stays in msgpack.
        let json = json_frame(
            r#"{"action":15,"channel":"x","messages":[{"data":"AQID","encoding":"utf-8/cipher+aes-128-cbc/base64"}]}"#,
        );

        let packed = Format::Msgpack.encode(&json).unwrap();
        let value = rmpv::decode::read_value(&mut &packed[..]).unwrap();
        let item = &value["messages"][0];

        assert_eq!(item["data"], rmpv::Value::Binary(vec![1, 2, 3]));
        assert_eq!(item["encoding"].as_str(), Some("utf-8/cipher+aes-128-cbc"));
        assert_eq!(Format::Msgpack.decode(&packed).unwrap(), json);
    }

    #[test]
    fn binary_presence_data_crosses_formats_too() {
        let json = json_frame(
            r#"{"action":14,"channel":"x","presence":[{"action":2,"data":"/wA=","encoding":"base64"}]}"#,
        );

        let packed = Format::Msgpack.encode(&json).unwrap();
        let value = rmpv::decode::read_value(&mut &packed[..]).unwrap();

        assert_eq!(
            value["presence"][0]["data"],
            rmpv::Value::Binary(vec![0xff, 0])
        );
        assert!(value["presence"][0]["encoding"].is_nil());
        assert_eq!(Format::Msgpack.decode(&packed).unwrap(), json);
    }

    #[test]
    fn binary_values_outside_data_are_refused() {
        // {"action":0,"id":<bin>}
        let bytes = [
            0x82, 0xa6, b'a', b'c', b't', b'i', b'o', b'n', 0x00, 0xa2, b'i', b'd', 0xc4, 0x01,
            0x00,
        ];
        assert!(Format::Msgpack.decode(&bytes).is_err());
    }

    #[test]
    fn text_data_and_numbers_survive_msgpack() {
        let frame = json_frame(
            r#"{"action":15,"channel":"x","msgSerial":18446744073709551615,"messages":[{"name":"n","data":"héllo","extras":{"n":-3,"f":1.5,"b":true,"z":null}}]}"#,
        );

        let again = Format::Msgpack
            .decode(&Format::Msgpack.encode(&frame).unwrap())
            .unwrap();

        assert_eq!(again, frame);
        assert_eq!(again.msg_serial, Some(u64::MAX));
    }

    #[test]
    fn format_parameter_values() {
        assert_eq!(Format::from_param("json"), Some(Format::Json));
        assert_eq!(Format::from_param("msgpack"), Some(Format::Msgpack));
        assert_eq!(Format::from_param("xml"), None);
        assert!(Format::Msgpack.is_binary());
        assert!(!Format::Json.is_binary());
    }

    #[test]
    fn rest_bodies_carry_binary_data_as_bin_at_any_depth() {
        let batch = json!({
            "channels": ["a", "b"],
            "messages": [
                {"name": "bin", "data": "AAEC/w==", "encoding": "base64"},
                {"name": "text", "data": "hi"},
                {"data": "aGk=", "encoding": "utf-8/base64", "extras": {"headers": {"k": "v"}}},
            ],
        });

        let bytes = rest_body_to_msgpack(&batch).unwrap();

        let raw = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
        let messages = raw["messages"].as_array().unwrap();
        assert_eq!(messages[0]["data"], rmpv::Value::Binary(vec![0, 1, 2, 255]));
        assert!(
            messages[0]
                .as_map()
                .unwrap()
                .iter()
                .all(|(k, _)| k.as_str() != Some("encoding"))
        );
        assert_eq!(messages[1]["data"], rmpv::Value::from("hi"));
        assert_eq!(messages[2]["data"], rmpv::Value::Binary(b"hi".to_vec()));
        assert_eq!(messages[2]["encoding"], rmpv::Value::from("utf-8"));
        assert_eq!(rest_body_from_msgpack(&bytes).unwrap(), batch);
    }

    #[test]
    fn a_rest_body_from_msgpack_turns_bin_data_into_base64() {
        let value = rmpv::Value::Array(vec![rmpv::Value::Map(vec![
            ("name".into(), "m".into()),
            ("data".into(), rmpv::Value::Binary(vec![1, 2, 3])),
        ])]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();

        let body = rest_body_from_msgpack(&bytes).unwrap();

        assert_eq!(
            body,
            json!([{"name": "m", "data": "AQID", "encoding": "base64"}])
        );
    }

    #[test]
    fn a_rest_body_that_is_not_one_msgpack_value_is_40001() {
        let mut trailing = rest_body_to_msgpack(&json!({"a": 1})).unwrap();
        trailing.push(0xc0);
        let mut stray_bin = Vec::new();
        rmpv::encode::write_value(
            &mut stray_bin,
            &rmpv::Value::Map(vec![("name".into(), rmpv::Value::Binary(vec![1]))]),
        )
        .unwrap();

        let trailing = rest_body_from_msgpack(&trailing).unwrap_err();
        let stray_bin = rest_body_from_msgpack(&stray_bin).unwrap_err();

        assert_eq!(
            trailing.to_string(),
            "invalid msgpack body: 1 bytes after the msgpack value"
        );
        assert_eq!(
            stray_bin.to_string(),
            "invalid msgpack body: binary value outside a message's data"
        );
        assert_eq!(
            trailing.error_info().code,
            crate::codes::INVALID_REQUEST_BODY
        );
    }
}
