//! Ably's realtime protocol over a WebSocket at `/`, on the listener REST
//! and SSE use: what an unmodified ably-js `Realtime` client connects to.
//!
//! # Connecting
//!
//! ably-js opens `ws://host:port/?key=…` (or `access_token=…`) with
//! `clientId`, `format` (`json` or `msgpack`), `echo`, `heartbeats`, `v`,
//! `agent`, and for a resume `resume` or `recover`; other parameters are
//! ignored. It then sends nothing and waits for CONNECTED (RTN2, RTN4).
//!
//! The credential is checked by the code REST and SSE use (keys, tokens
//! from `requestToken`, Ably JWTs with no leeway). Every refusal is sent
//! **in-band** after the upgrade, then the socket closes (RTN14): an HTTP
//! 401 on the upgrade reads to ably-js as a network failure, after which it
//! never renews its token.
//!
//! - a token that has expired: DISCONNECTED 40142, so the client renews and
//!   reconnects (RTN14b);
//! - any other credential failure (40101, 40143, 40144 …), a clientId the
//!   credential does not allow (40102), a bad parameter (40003): ERROR,
//!   which fails the connection (RTN14g).
//!
//! Otherwise CONNECTED carries `connectionId` and `connectionDetails`
//! (CD2): a `connectionKey` that stays the same for the life of the
//! connection (also across AUTH, since ably-js resumes with the first one
//! it was given), the `clientId`, `maxIdleInterval`, `connectionStateTtl`,
//! `maxMessageSize` and `serverId`.
//!
//! # While connected
//!
//! - HEARTBEAT frames, and WebSocket pings, once the connection has been
//!   sent nothing for half of `maxIdleInterval` (RTN23); never before
//!   CONNECTED. A client HEARTBEAT is answered with one carrying the same
//!   `id` (RTN13e).
//! - Nothing heard from the client (no frame, not even a pong) for twice
//!   `maxIdleInterval`: the socket is dropped, and the connection stays
//!   resumable. Each send has a timeout too.
//! - AUTH with a new token (RTC8a): the credential is checked again; the
//!   same clientId gets CONNECTED with the same `connectionId` and key, a
//!   different one ERROR 40102 and the connection fails.
//! - Before a token or JWT expires, AUTH asks the client to renew (RTN22):
//!   `auth_lead` ahead (30 s by default); a credential with no more than
//!   that left when presented gets no AUTH and just expires; `force_auth`
//!   asks at once. ably-js answers with AUTH and a new token.
//! - The credential's expiry (or `expire_credentials`): DISCONNECTED 40142,
//!   then close; the client renews and resumes (RTN15h).
//! - CLOSE: CLOSED, then close; the connection is gone (RTN12).
//! - DISCONNECT, a lost socket, or `drop_streams` (an abrupt close, as a
//!   network failure): the connection stays resumable for
//!   `connectionStateTtl`.
//! - A frame that does not read: ERROR 40000, then close.
//!
//! # Channels and messages
//!
//! - ATTACH → ATTACHED with the granted modes in `flags` (RTL4l, RTL4m):
//!   the requested modes (all four when none are) narrowed by the
//!   capability, `publish` → PUBLISH, `subscribe` → SUBSCRIBE and
//!   PRESENCE_SUBSCRIBE, `presence` → PRESENCE; modes may also be asked
//!   for as the `modes` channel param (`subscribe,presence`), which wins
//!   over the flags, as Ably does; the request's params that Ably
//!   recognises (`delta`, `rewind`, `modes`, `occupancy`) echoed, any other
//!   dropped; a `channelSerial`. Nothing granted: a channel ERROR 40160, and
//!   the connection stays up (RTL14). A re-ATTACH carrying the
//!   `channelSerial` of an earlier ATTACHED or MESSAGE gets, after
//!   ATTACHED, what was published on the channel since, while retention
//!   holds it (if it no longer does: nothing, as an SSE `lastEvent` past
//!   retention). Otherwise `rewind` in the ATTACH params (a count, or a
//!   duration such as `10s`; at most 100 messages) replays from the store
//!   SSE's rewind uses. `delta: "vcdiff"` in the params sends vcdiff deltas
//!   as SSE does (the first message after each attach in full). DETACH →
//!   DETACHED.
//! - MESSAGE (RTL6): `publish` is checked whether or not the channel is
//!   attached (RTL6c); messages are stamped as Ably does (id
//!   `connectionId:msgSerial:index`, `clientId`, `connectionId`,
//!   `timestamp`) and stored through the one channel model REST and SSE
//!   use, so every transport and history see them in one order. ACK, or
//!   NACK with 40160 (no `publish`), 40012 (a message naming another
//!   clientId), 40010, 40013, 40009; the ACKs of a run of publishes read in
//!   one go are coalesced into one ACK covering the range (`msgSerial`,
//!   `count`, a `res` entry per serial; TR4), and a NACK ends the run, so no
//!   serial is skipped or ACKed twice. A message re-sent with a serial below
//!   the next expected one (after a resume, RTN19a) is ACKed again and never
//!   stored or fanned out twice, however long ago it was first published.
//! - Fan-out: to every connection attached with SUBSCRIBE, except the
//!   publisher when it connected with `echo=false`. A connection that falls
//!   `lag_limit` messages behind is dropped (resumable), as a stream is.
//! - AUTH that leaves an attached channel no mode: a channel ERROR 40160
//!   (RTC8a1).
//! - PRESENCE (RTP8, RTP9, RTP10): enter, update and leave, checked
//!   (`presence` capability, else NACK 40160; a concrete clientId, else
//!   40012), stamped and applied to the channel's presence set
//!   ([`crate::presence`]), ACKed, then fanned out to the connections
//!   attached with PRESENCE_SUBSCRIBE and always to the sender. After every
//!   ATTACHED on a channel with members: HAS_PRESENCE and a SYNC in pages of
//!   100 with the members' original ids. DETACH and CLOSE make the
//!   connection's members leave at once; a lost connection, after
//!   `remainPresentFor` unless it resumes first.
//!
//! # Resume
//!
//! `resume=<connectionKey>` (or a `recover` key naming one, RTN16) of a
//! connection dropped less than `connectionStateTtl` ago, acting as the same
//! clientId, gets CONNECTED with the same `connectionId` and its `msgSerial`
//! state (RTN15c6); an unknown, closed or expired key gets a new one and
//! error 80008 on CONNECTED (RTN15c7); a key that is not shaped like one
//! the mock makes gets 80018 (invalid connectionKey) instead, as Ably
//! answers a malformed one. A resume while the old socket still
//! looks open to the mock (the client saw it fail first) takes the
//! connection over: the old socket is closed and the resume proceeds, with
//! the state the old socket left. ably-js v2 sends `recover` as the bare
//! connectionKey and restores `msgSerial` and channel serials itself
//! (RTN16f, RTN16j). ably-js then re-attaches each channel
//! with its `channelSerial` and gets what it missed, with RESUMED on
//! ATTACHED when retention still held all of it (RTL12).

mod channels;
mod connections;
mod messages;
mod presence;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt as _, SinkExt};
use shared::protocol::{
    Action, ConnectionDetails, Flags, Format, PresenceMessage, ProtocolMessage,
};
use shared::{ErrorInfo, codes};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};

use crate::auth::{Credential, CredentialKind, Principal, authenticate, verify};
use crate::channel::{Member, StoredMessage};
use crate::delta::Deltas;
use crate::error::ApiError;
use crate::faults::RequestKind;
use crate::params::{Query, invalid_param};
use crate::presence::{Listener, PresenceEvent};
use crate::revocation::Status;
use crate::state::{AppState, Control, lock, random_id};

pub(crate) use connections::Connections;
use connections::{Entry, Handover, Resume};
use messages::PendingAck;

/// `maxMessageSize` announced on CONNECTED: Ably's default of 64 KiB.
pub(crate) const MAX_MESSAGE_SIZE: u64 = 65_536;

/// The largest WebSocket frame or message read from a client. Above
/// `maxMessageSize`, as a ProtocolMessage may batch several messages.
const MAX_FRAME_BYTES: usize = 1 << 20;

/// 80018: a resume or recover key that is not a connectionKey at all (Ably
/// answers it so; a well-formed key it does not know is 80008).
const INVALID_CONNECTION_KEY: u32 = 80018;

/// Whether `key` has the shape of the connectionKeys this mock makes,
/// `<12 chars>!<16 chars>` of unpadded base64url (`connectionId!secret`).
fn is_connection_key(key: &str) -> bool {
    let base64url = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    key.split_once('!')
        .is_some_and(|(id, secret)| base64url(id, 12) && base64url(secret, 16))
}

/// At most this many queued messages are written before one flush.
const MAX_BATCH: usize = 64;

/// The read buffer each socket starts with.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// `serverId` on CONNECTED.
const SERVER_ID: &str = "mock-ably";

/// How long one frame may take to be written before the client is deemed
/// gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long, after a closing frame, the client has to close its side
/// before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long a resume waits for the socket still serving the connection to
/// let go of it (a takeover) before starting a new connection instead.
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);

/// At most this many frames already received are handled before what is
/// owed to the client (a coalesced ACK, queued messages) goes out.
const MAX_DRAIN: usize = 64;

/// `GET /` with `Upgrade: websocket`: a realtime connection. Anything else
/// on `/` is answered as before there was one: 404.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) if method == Method::GET => ws,
        _ => return crate::routes::not_found_response(),
    };
    // Watch for drops and expiries from before the credential is checked, so
    // one that races the upgrade still reaches the connection.
    let control = state.control.subscribe();
    let seen = *control.borrow();
    let query = Query::parse(raw.as_deref());
    let injected = lock(&state.faults).take(RequestKind::Realtime);
    let opening = match injected {
        // A fail-next rule: refused in-band like a credential, in the
        // requested format when it is one.
        Some(error) => Err(Refusal {
            format: query
                .get("format")
                .and_then(Format::from_param)
                .unwrap_or(Format::Json),
            frame: Box::new(refusal_frame(error)),
        }),
        None => open(&state, &headers, &query),
    };
    // tungstenite reserves its whole read buffer per socket up front (128
    // KiB by default): 8 KiB keeps an idle connection small, and larger
    // frames still grow it as they arrive.
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            match opening {
                Ok(opening) => run(state, socket, opening, control, seen).await,
                Err(refusal) => refuse(socket, refusal).await,
            }
        })
        .into_response()
}

/// A checked connection request.
#[derive(Debug)]
struct Opening {
    format: Format,
    principal: Principal,
    /// The clientId the connection acts as.
    client_id: Option<String>,
    /// `echo=false`: the client's own messages are not delivered back to it.
    echo: bool,
    /// The connectionKey to resume, from `resume` or a `recover` key.
    resume: Option<String>,
    /// `remainPresentFor` (ms): how long the connection's members stay
    /// present after it is lost without CLOSE.
    remain_present_for: Option<Duration>,
}

/// A connection request refused in-band.
#[derive(Debug)]
struct Refusal {
    format: Format,
    frame: Box<ProtocolMessage>,
}

/// Checks a connection request: parameters, credential, clientId.
fn open(state: &AppState, headers: &HeaderMap, query: &Query) -> Result<Opening, Refusal> {
    let format = match query.get("format") {
        None => Ok(Format::Json),
        Some(value) => Format::from_param(value).ok_or_else(|| invalid_param("format", value)),
    };
    let refuse = |format: Format, error: ApiError| Refusal {
        format,
        frame: Box::new(refusal_frame(error.0)),
    };
    let format = format.map_err(|err| refuse(Format::Json, err))?;
    let checked = (|| {
        let echo = query.flag("echo", true)?;
        query.flag("heartbeats", false)?;
        let remain_present_for = query
            .get("remainPresentFor")
            .map(|value| {
                value
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| invalid_param("remainPresentFor", value))
            })
            .transpose()?;
        let principal = authenticate(state, headers, query)?;
        let client_id = principal.identify(query.get("clientId"))?;
        let resume = query
            .get("resume")
            .map(str::to_owned)
            .or_else(|| query.get("recover").and_then(recovery_key));
        Ok(Opening {
            format,
            principal,
            client_id,
            echo,
            resume,
            remain_present_for,
        })
    })();
    checked.map_err(|err| refuse(format, err))
}

/// The connectionKey a `recover` parameter names. ably-js v2 sends the
/// bare connectionKey from its recovery key, and applies the key's
/// `msgSerial` and `channelSerials` itself (RTN16f, RTN16j); a whole
/// recovery key (RTN16g: a JSON object with `connectionKey`) is read too.
fn recovery_key(recover: &str) -> Option<String> {
    if !recover.starts_with('{') {
        return Some(recover.to_owned());
    }
    let value: serde_json::Value = serde_json::from_str(recover).ok()?;
    value.get("connectionKey")?.as_str().map(str::to_owned)
}

/// DISCONNECTED for an expired token (the client renews and retries),
/// ERROR for anything else (the connection fails).
fn refusal_frame(error: ErrorInfo) -> ProtocolMessage {
    let action = if error.code == codes::TOKEN_EXPIRED {
        Action::DISCONNECTED
    } else {
        Action::ERROR
    };
    ProtocolMessage::with_error(action, error)
}

/// Sends the refusal, then closes.
async fn refuse(mut socket: WebSocket, refusal: Refusal) {
    tracing::debug!(code = ?refusal.frame.error.as_ref().map(|e| e.code), "realtime connection refused");
    if send(&mut socket, refusal.format, &refusal.frame)
        .await
        .is_ok()
    {
        close(&mut socket).await;
    }
}

/// Writes one frame, within [`SEND_TIMEOUT`].
async fn send(socket: &mut WebSocket, format: Format, frame: &ProtocolMessage) -> Result<(), ()> {
    let bytes = format.encode(frame).map_err(|err| {
        tracing::error!(%err, action = %frame.action, "cannot encode a realtime frame");
    })?;
    send_bytes(socket, format, bytes.into(), true).await
}

/// Writes an encoded frame: a text frame in JSON, a binary one in msgpack.
async fn send_bytes(
    socket: &mut WebSocket,
    format: Format,
    bytes: axum::body::Bytes,
    flush: bool,
) -> Result<(), ()> {
    let message = match format {
        Format::Json => {
            WsMessage::Text(axum::extract::ws::Utf8Bytes::try_from(bytes).map_err(|_| ())?)
        }
        Format::Msgpack => WsMessage::Binary(bytes),
    };
    write(socket, message, flush).await
}

async fn send_raw(socket: &mut WebSocket, message: WsMessage) -> Result<(), ()> {
    write(socket, message, true).await
}

/// Writes `message`, flushing it out at once unless `flush` is false (then
/// it waits in the socket's write buffer for the next flush).
async fn write(socket: &mut WebSocket, message: WsMessage, flush: bool) -> Result<(), ()> {
    let written = if flush {
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await
    } else {
        tokio::time::timeout(SEND_TIMEOUT, SinkExt::feed(socket, message)).await
    };
    match written {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Flushes what [`write`] left buffered.
async fn flush(socket: &mut WebSocket) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, SinkExt::flush(socket)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Starts the closing handshake and waits, within [`CLOSE_GRACE`], for the
/// client's side of it.
async fn close(socket: &mut WebSocket) {
    let frame = CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    };
    if send_raw(socket, WsMessage::Close(Some(frame)))
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// How a connection's socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Dropped, or DISCONNECTED: the connection stays resumable.
    Resumable,
    /// CLOSE or a fatal ERROR: the connection is gone.
    Gone,
}

/// What a frame from the client asks for.
enum Next {
    Continue,
    /// Close the socket gracefully, then end so.
    Close(End),
}

/// What a change of the mock's controls means for a connection.
enum ControlEvent {
    None,
    /// The mock is shutting down: close.
    Shutdown,
    /// `drop_streams`: drop the socket abruptly.
    Drop,
    /// `expire_credentials`, and the connection uses a token or JWT.
    Expired,
    /// `force_auth`, and the connection uses a token or JWT; or a
    /// revocation that will apply to its credential: send AUTH.
    ForceAuth,
    /// A revocation applies to the connection's credential now.
    Revoked,
}

/// Removes the connection from the open count however its task ends, and
/// leaves it resumable or not.
///
/// Its presence members leave at once when the connection is gone (CLOSE,
/// RTN12), or `remain_present_for` after a loss unless it resumes first.
struct Registration {
    state: AppState,
    key: String,
    entry: Entry,
    /// Where a resume on another socket asks this one to let go; also what
    /// tells a later socket of the same connection from this one.
    handover: Arc<Handover>,
    remain_present_for: Duration,
    end: End,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let now = self.state.clock.now_ms();
        let until = match self.end {
            End::Resumable => {
                let ttl = u64::try_from(self.state.settings.connection_state_ttl.as_millis())
                    .unwrap_or(u64::MAX);
                Some(now.saturating_add(ttl))
            }
            End::Gone => None,
        };
        lock(&self.state.connections).closed(&self.key, self.entry.clone(), until);
        let connection_id = &self.entry.connection_id;
        if self.end == End::Gone {
            lock(&self.state.presence).leave_connection(connection_id, None, now);
            return;
        }
        if !lock(&self.state.presence).has_members(connection_id) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (state, key, handover) = (
            self.state.clone(),
            self.key.clone(),
            Arc::clone(&self.handover),
        );
        let (connection_id, window) = (connection_id.clone(), self.remain_present_for);
        runtime.spawn(async move {
            tokio::time::sleep(window).await;
            // Still away: no socket has resumed it since this one ended.
            if lock(&state.connections).away(&key, &handover) {
                let now = state.clock.now_ms();
                lock(&state.presence).leave_connection(&connection_id, None, now);
            }
        });
    }
}

/// The channels a connection is attached to, with the modes granted; it
/// leaves the registry's subscriber lists however the task ends.
struct Membership {
    state: AppState,
    member: Member,
    channels: HashMap<String, Flags>,
    /// This connection on a channel's presence (its queue, its id); the
    /// modes decide whether it subscribes.
    listener: Listener,
}

impl Membership {
    /// Records `channel` as attached with `modes`.
    fn attach(&mut self, channel: String, modes: Flags) {
        if self.channels.insert(channel, modes).is_none() {
            self.state.attached_channels.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Listens to `channel`'s presence with `modes`; the members to SYNC
    /// (none without PRESENCE_SUBSCRIBE).
    fn listen(&self, channel: &str, modes: Flags) -> Vec<PresenceMessage> {
        let mut listener = self.listener.clone();
        listener.subscribes = modes.contains(Flags::PRESENCE_SUBSCRIBE);
        lock(&self.state.presence).listen(channel, self.member.id, listener)
    }

    /// Forgets `channel`, leaves its subscriber list and presence
    /// listeners; whether it was attached.
    fn detach(&mut self, channel: &str) -> bool {
        let attached = self.channels.remove(channel).is_some();
        if attached {
            self.state.attached_channels.fetch_sub(1, Ordering::Relaxed);
        }
        lock(&self.state.registry).detach(self.member.id, &[channel.to_owned()]);
        lock(&self.state.presence).unlisten(channel, self.member.id);
        attached
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let names: Vec<String> = self.channels.keys().cloned().collect();
        self.state
            .attached_channels
            .fetch_sub(names.len() as u64, Ordering::Relaxed);
        lock(&self.state.registry).detach(self.member.id, &names);
        let mut presence = lock(&self.state.presence);
        for name in &names {
            presence.unlisten(name, self.member.id);
        }
    }
}

/// One connection served by one socket.
struct Connection {
    state: AppState,
    socket: WebSocket,
    format: Format,
    principal: Principal,
    /// `echo=false`: the connection's own messages are not delivered to it.
    echo: bool,
    /// Whether this socket resumed an earlier connection.
    resumed: bool,
    /// vcdiff bases of the channels attached with `delta: "vcdiff"`.
    deltas: Deltas,
    registration: Registration,
    membership: Membership,
    /// Messages of the channels this connection subscribes to, in order.
    rx: mpsc::Receiver<Arc<StoredMessage>>,
    /// Presence changes on the channels this connection listens to.
    presence_rx: mpsc::Receiver<Arc<PresenceEvent>>,
    /// ACKs not yet sent: consecutive publishes handled in one go are
    /// ACKed by one frame covering their range (`msgSerial`, `count`).
    pending_ack: Option<PendingAck>,
    control: watch::Receiver<Control>,
    seen: Control,
    /// Fires at the credential's expiry, or earlier at `auth_at_ms`.
    expiry: Option<Pin<Box<Sleep>>>,
    /// When to ask the client to renew (AUTH, RTN22), on the mock clock;
    /// `None` once asked, or for a key.
    auth_at_ms: Option<u64>,
    heartbeat: Pin<Box<Sleep>>,
    last_sent: Instant,
    last_heard: Instant,
    /// While set, frames wait in the socket's write buffer: a run of queued
    /// messages goes out in one flush.
    hold: bool,
    /// Whether AUTH was sent for a revocation that will apply to the
    /// current credential (once per credential).
    revocation_hinted: bool,
    /// The modes each attached channel's ATTACH asked for (all when it
    /// asked for none): what 40165 checks, so a capability that grows on
    /// AUTH allows what was asked for (granted modes are narrower).
    requested_modes: HashMap<String, Flags>,
}

/// Sends CONNECTED and serves the connection until its socket ends.
async fn run(
    state: AppState,
    socket: WebSocket,
    opening: Opening,
    control: watch::Receiver<Control>,
    seen: Control,
) {
    let resumed = match opening.resume.as_deref() {
        Some(key) => take_over(&state, key, opening.client_id.as_deref())
            .await
            .map(|(entry, handover)| (key.to_owned(), entry, handover)),
        None => None,
    };
    let mut resume_error = None;
    let (key, entry, handover) = match resumed {
        Some(resumed) => resumed,
        None => {
            if let Some(asked) = opening.resume.as_deref() {
                resume_error = Some(if is_connection_key(asked) {
                    ErrorInfo::from_code(
                        codes::CONNECTION_EXPIRED,
                        "Unable to resume: the connection is unknown or has expired",
                    )
                } else {
                    ErrorInfo::from_code(
                        INVALID_CONNECTION_KEY,
                        "Unable to resume: invalid connectionKey",
                    )
                });
            }
            let connection_id = random_id(9);
            let key = format!("{connection_id}!{}", random_id(12));
            let entry = Entry {
                connection_id,
                client_id: opening.client_id.clone(),
                next_serial: 0,
            };
            let handover = lock(&state.connections).insert(key.clone(), entry.clone());
            (key, entry, handover)
        }
    };
    let idle = state.settings.max_idle_interval;
    let (member, rx) = lock(&state.registry).member(&state.settings);
    let (presence_tx, presence_rx) = mpsc::channel(state.settings.lag_limit.max(1));
    let listener = Listener {
        connection_id: Arc::from(entry.connection_id.as_str()),
        subscribes: false,
        tx: presence_tx,
        lagged: Arc::new(AtomicBool::new(false)),
    };
    let mut connection = Connection {
        membership: Membership {
            state: state.clone(),
            member,
            channels: HashMap::new(),
            listener,
        },
        rx,
        presence_rx,
        pending_ack: None,
        echo: opening.echo,
        resumed: resume_error.is_none() && opening.resume.is_some(),
        deltas: Deltas::default(),
        heartbeat: Box::pin(tokio::time::sleep(idle / 2)),
        registration: Registration {
            remain_present_for: opening
                .remain_present_for
                .unwrap_or(state.settings.remain_present_for),
            state: state.clone(),
            key,
            entry,
            handover,
            end: End::Resumable,
        },
        state,
        socket,
        format: opening.format,
        principal: opening.principal,
        control,
        seen,
        expiry: None,
        auth_at_ms: None,
        last_sent: Instant::now(),
        last_heard: Instant::now(),
        hold: false,
        revocation_hinted: false,
        requested_modes: HashMap::new(),
    };
    let mut connected = connection.connected_frame();
    connected.error = resume_error;
    if connection.send(&connected).await.is_err() {
        return;
    }
    connection.plan_auth();
    connection.reset_expiry();
    connection.serve().await;
}

/// Resumes the connection `key` for a client acting as `client_id`,
/// taking it over from the socket that still serves it, if any (RTN15): that
/// socket is asked to end, and the resume goes ahead once it has. `None`
/// when the connection cannot be resumed.
async fn take_over(
    state: &AppState,
    key: &str,
    client_id: Option<&str>,
) -> Option<(Entry, Arc<Handover>)> {
    let mut asked = false;
    loop {
        let now_ms = state.clock.now_ms();
        let found = lock(&state.connections).resume(key, client_id, now_ms);
        match found {
            Resume::Resumed(entry, handover) => return Some((entry, handover)),
            Resume::Refused => return None,
            // Asked once already, and it still has not let go.
            Resume::Busy(_) if asked => return None,
            Resume::Busy(handover) => {
                asked = true;
                handover.takeover.notify_one();
                if tokio::time::timeout(TAKEOVER_WAIT, handover.released.notified())
                    .await
                    .is_err()
                {
                    return None;
                }
            }
        }
    }
}

impl Connection {
    /// CONNECTED for this connection as it stands.
    fn connected_frame(&self) -> ProtocolMessage {
        let entry = &self.registration.entry;
        let mut frame = ProtocolMessage::new(Action::CONNECTED);
        frame.connection_id = Some(entry.connection_id.clone());
        frame.connection_details = Some({
            let mut details = ConnectionDetails::default();
            // A wildcard token's connection acts as no clientId, but is
            // told `*`, which ably-js then reports as its clientId (RSA7b4).
            details.client_id = entry.client_id.clone().or_else(|| {
                (self.principal.client_id.as_deref() == Some("*")).then(|| "*".to_owned())
            });
            details.connection_key = Some(self.registration.key.clone());
            details.max_idle_interval = Some(millis(self.state.settings.max_idle_interval));
            details.connection_state_ttl = Some(millis(self.state.settings.connection_state_ttl));
            details.max_message_size = Some(MAX_MESSAGE_SIZE);
            details.server_id = Some(SERVER_ID.to_owned());
            details
        });
        frame
    }

    /// Sends `frame`, after any ACK owed (so replies keep their order).
    async fn send(&mut self, frame: &ProtocolMessage) -> Result<(), ()> {
        self.send_ack().await?;
        self.send_frame(frame).await
    }

    /// Sends the ACK owed, if any.
    async fn send_ack(&mut self) -> Result<(), ()> {
        match self.pending_ack.take() {
            Some(ack) => self.send_frame(&ack.frame()).await,
            None => Ok(()),
        }
    }

    async fn send_frame(&mut self, frame: &ProtocolMessage) -> Result<(), ()> {
        self.last_sent = Instant::now();
        let bytes = self.format.encode(frame).map_err(|err| {
            tracing::error!(%err, action = %frame.action, "cannot encode a realtime frame");
        })?;
        send_bytes(&mut self.socket, self.format, bytes.into(), !self.hold).await
    }

    /// The loop: client frames, heartbeats, expiry and the mock's controls.
    async fn serve(mut self) {
        let idle = self.state.settings.max_idle_interval;
        let end = loop {
            let silence_deadline = self.last_heard + idle * 2;
            tokio::select! {
                biased;
                changed = self.control.changed() => {
                    if changed.is_err() {
                        break End::Resumable;
                    }
                    match self.on_control() {
                        ControlEvent::None => {}
                        ControlEvent::Shutdown => {
                            close(&mut self.socket).await;
                            break End::Gone;
                        }
                        // An abrupt end, as a network failure: no close
                        // handshake; the socket is dropped with the task.
                        ControlEvent::Drop => break End::Resumable,
                        ControlEvent::ForceAuth => {
                            if self.send(&ProtocolMessage::new(Action::AUTH)).await.is_err() {
                                break End::Resumable;
                            }
                        }
                        ControlEvent::Expired => {
                            if self.expired().await.is_ok() {
                                close(&mut self.socket).await;
                            }
                            break End::Resumable;
                        }
                        // DISCONNECTED with a token error: ably-js renews
                        // and resumes, or stops if it cannot (RTN15h2).
                        ControlEvent::Revoked => {
                            let frame = ProtocolMessage::with_error(
                                Action::DISCONNECTED,
                                ErrorInfo::from_code(codes::TOKEN_REVOKED, "Token revoked"),
                            );
                            if self.send(&frame).await.is_ok() {
                                close(&mut self.socket).await;
                            }
                            break End::Resumable;
                        }
                    }
                }
                () = self.registration.handover.takeover.notified() => {
                    // A resume on another socket takes the connection over.
                    close(&mut self.socket).await;
                    break End::Resumable;
                }
                () = wait(&mut self.expiry) => {
                    let now = self.state.clock.now_ms();
                    if self.principal.expires_ms.is_some_and(|expires| now >= expires) {
                        if self.expired().await.is_ok() {
                            close(&mut self.socket).await;
                        }
                        break End::Resumable;
                    }
                    if self.auth_at_ms.is_some_and(|at| now >= at) {
                        self.auth_at_ms = None;
                        if self.send(&ProtocolMessage::new(Action::AUTH)).await.is_err() {
                            break End::Resumable;
                        }
                    }
                    self.reset_expiry();
                }
                // Before the client's frames: what is queued for the client
                // goes out first, so a reply never overtakes a message
                // published before the frame it answers.
                message = self.rx.recv() => {
                    let Some(message) = message else { break End::Resumable };
                    // This message and up to MAX_BATCH - 1 more already
                    // queued go out in one flush.
                    self.hold = true;
                    let mut next = Some(message);
                    let mut sent = Ok(());
                    let mut batch = 0;
                    while let Some(message) = next.take() {
                        self.membership.member.owed.paid();
                        sent = self.deliver(&message).await;
                        batch += 1;
                        if sent.is_err() || batch == MAX_BATCH {
                            break;
                        }
                        next = self.rx.try_recv().ok();
                    }
                    self.hold = false;
                    if sent.is_err() || flush(&mut self.socket).await.is_err() {
                        break End::Resumable;
                    }
                    if self.membership.member.lagged.load(Ordering::Relaxed) {
                        tracing::info!("a realtime connection fell too far behind and was dropped");
                        break End::Resumable;
                    }
                }
                event = self.presence_rx.recv() => {
                    let Some(event) = event else { break End::Resumable };
                    self.hold = true;
                    let mut next = Some(event);
                    let mut sent = Ok(());
                    let mut batch = 0;
                    while let Some(event) = next.take() {
                        sent = self.send_presence(&event).await;
                        batch += 1;
                        if sent.is_err() || batch == MAX_BATCH {
                            break;
                        }
                        next = self.presence_rx.try_recv().ok();
                    }
                    self.hold = false;
                    if sent.is_err() || flush(&mut self.socket).await.is_err() {
                        break End::Resumable;
                    }
                    if self.membership.listener.lagged.load(Ordering::Relaxed) {
                        tracing::info!("a realtime connection fell too far behind on presence and was dropped");
                        break End::Resumable;
                    }
                }
                incoming = tokio::time::timeout_at(silence_deadline, self.socket.recv()) => {
                    let message = match incoming {
                        Ok(Some(Ok(message))) => message,
                        Err(_) => {
                            tracing::debug!("realtime client silent too long; dropped");
                            break End::Resumable;
                        }
                        // The socket failed or the client went away.
                        Ok(_) => break End::Resumable,
                    };
                    self.last_heard = Instant::now();
                    // This frame and up to MAX_DRAIN - 1 more already
                    // received are handled before what they are owed goes
                    // out, so a run of publishes gets one ACK.
                    let mut next = Some(message);
                    let mut handled = 0;
                    let mut outcome = Ok(Next::Continue);
                    while let Some(message) = next.take() {
                        outcome = self.on_ws_message(message).await;
                        handled += 1;
                        if !matches!(outcome, Ok(Next::Continue)) || handled == MAX_DRAIN {
                            break;
                        }
                        next = match self.socket.recv().now_or_never() {
                            Some(Some(Ok(message))) => Some(message),
                            _ => None,
                        };
                    }
                    if outcome.is_ok() && self.send_ack().await.is_err() {
                        break End::Resumable;
                    }
                    match outcome {
                        Ok(Next::Continue) => {}
                        Ok(Next::Close(end)) => {
                            close(&mut self.socket).await;
                            break end;
                        }
                        Err(()) => break End::Resumable,
                    }
                }
                () = &mut self.heartbeat => {
                    let due = self.last_sent + idle / 2;
                    if due > Instant::now() {
                        self.heartbeat.as_mut().reset(due);
                        continue;
                    }
                    if self.send(&ProtocolMessage::new(Action::HEARTBEAT)).await.is_err()
                        || send_raw(&mut self.socket, WsMessage::Ping(axum::body::Bytes::new())).await.is_err()
                    {
                        break End::Resumable;
                    }
                    self.heartbeat.as_mut().reset(Instant::now() + idle / 2);
                }
            }
        };
        self.registration.end = end;
    }

    /// What the mock's controls changed for this connection.
    fn on_control(&mut self) -> ControlEvent {
        let now = *self.control.borrow_and_update();
        let seen = std::mem::replace(&mut self.seen, now);
        if now.shutdown {
            return ControlEvent::Shutdown;
        }
        if now.drops != seen.drops {
            return ControlEvent::Drop;
        }
        let token = self.principal.kind != CredentialKind::Key;
        if now.expiries != seen.expiries && token {
            return ControlEvent::Expired;
        }
        if now.clock != seen.clock {
            self.reset_expiry();
        }
        if now.force_auth != seen.force_auth && token {
            return ControlEvent::ForceAuth;
        }
        if token && (now.revocations != seen.revocations || now.clock != seen.clock) {
            let now_ms = self.state.clock.now_ms();
            match lock(&self.state.revocations).status(&self.principal, now_ms) {
                Status::Revoked => return ControlEvent::Revoked,
                // Asked once per credential to renew ahead of enforcement.
                Status::Pending if !self.revocation_hinted => {
                    self.revocation_hinted = true;
                    return ControlEvent::ForceAuth;
                }
                Status::Pending | Status::Valid => {}
            }
        }
        ControlEvent::None
    }

    /// DISCONNECTED 40142: the token has expired (RTN15h).
    async fn expired(&mut self) -> Result<(), ()> {
        let frame = ProtocolMessage::with_error(
            Action::DISCONNECTED,
            ErrorInfo::from_code(codes::TOKEN_EXPIRED, "Token expired"),
        );
        self.send(&frame).await
    }

    /// Handles one WebSocket message from the client.
    async fn on_ws_message(&mut self, message: WsMessage) -> Result<Next, ()> {
        let bytes = match message {
            WsMessage::Text(text) => axum::body::Bytes::from(text),
            WsMessage::Binary(bytes) => bytes,
            WsMessage::Ping(_) | WsMessage::Pong(_) => return Ok(Next::Continue),
            WsMessage::Close(_) => return Err(()),
        };
        self.on_frame(&bytes).await
    }

    /// Handles one frame from the client.
    async fn on_frame(&mut self, bytes: &[u8]) -> Result<Next, ()> {
        let frame = match self.format.decode(bytes) {
            Ok(frame) => frame,
            Err(err) => {
                let error = err.error_info();
                self.send(&ProtocolMessage::with_error(Action::ERROR, error))
                    .await?;
                return Ok(Next::Close(End::Gone));
            }
        };
        match frame.action {
            Action::HEARTBEAT => {
                let mut reply = ProtocolMessage::new(Action::HEARTBEAT);
                reply.id = frame.id;
                self.send(&reply).await?;
                Ok(Next::Continue)
            }
            Action::CLOSE => {
                self.send(&ProtocolMessage::new(Action::CLOSED)).await?;
                Ok(Next::Close(End::Gone))
            }
            Action::DISCONNECT => Ok(Next::Close(End::Resumable)),
            Action::AUTH => self.on_auth(frame).await,
            Action::ATTACH | Action::DETACH if frame.channel.is_none() => {
                let error = ErrorInfo::from_code(
                    codes::BAD_REQUEST,
                    format!("{} without a channel", frame.action),
                );
                self.send(&ProtocolMessage::with_error(Action::ERROR, error))
                    .await?;
                Ok(Next::Close(End::Gone))
            }
            Action::ATTACH => {
                self.on_attach(frame).await?;
                Ok(Next::Continue)
            }
            Action::DETACH => {
                self.on_detach(frame).await?;
                Ok(Next::Continue)
            }
            Action::MESSAGE => {
                self.on_message(frame).await?;
                Ok(Next::Continue)
            }
            Action::PRESENCE => {
                self.on_presence(frame).await?;
                Ok(Next::Continue)
            }
            Action::SYNC => {
                self.on_sync(frame).await?;
                Ok(Next::Continue)
            }
            other => {
                let error = ErrorInfo::from_code(
                    codes::BAD_REQUEST,
                    format!("Unexpected {other} frame from a client"),
                );
                self.send(&ProtocolMessage::with_error(Action::ERROR, error))
                    .await?;
                Ok(Next::Close(End::Gone))
            }
        }
    }

    /// AUTH with a new credential (RTC8a): the same clientId gets CONNECTED
    /// with the same connectionId and key; anything else fails the
    /// connection with ERROR (RTC8a2), never DISCONNECTED.
    async fn on_auth(&mut self, frame: ProtocolMessage) -> Result<Next, ()> {
        let checked = frame
            .auth
            .ok_or_else(|| ApiError::new(codes::BAD_REQUEST, "AUTH without auth.accessToken"))
            .and_then(|auth| verify(&self.state, &Credential::Token(auth.access_token)))
            .and_then(|principal| {
                let own = self.registration.entry.client_id.as_deref();
                match principal.identify(own) {
                    Ok(id) if id.as_deref() == own => Ok(principal),
                    Ok(_) | Err(_) => Err(ApiError::new(
                        codes::INCOMPATIBLE_CREDENTIALS,
                        format!(
                            "Mismatched clientId on AUTH: the connection's is {own:?}, the new token's is {:?}",
                            principal.client_id
                        ),
                    )),
                }
            });
        match checked {
            Ok(principal) => {
                self.principal = principal;
                self.revocation_hinted = false;
                self.plan_auth();
                self.reset_expiry();
                let frame = self.connected_frame();
                self.send(&frame).await?;
                self.revoke_channels().await?;
                Ok(Next::Continue)
            }
            Err(error) => {
                self.send(&ProtocolMessage::with_error(Action::ERROR, error.0))
                    .await?;
                Ok(Next::Close(End::Gone))
            }
        }
    }

    /// Plans the AUTH that asks the client to renew its credential (RTN22):
    /// `auth_lead` before it expires. A credential with no more than
    /// `auth_lead` left gets none: it simply expires (DISCONNECTED 40142),
    /// as Ably does with a short token (a client holding a bare token cannot
    /// renew in-band, and fails on an AUTH it cannot answer).
    fn plan_auth(&mut self) {
        let now = self.state.clock.now_ms();
        let lead = millis(self.state.settings.auth_lead);
        self.auth_at_ms = self
            .principal
            .expires_ms
            .and_then(|expires| expires.checked_sub(lead))
            .filter(|at| *at > now);
    }

    /// Points the timer at the next credential event on the mock clock: the
    /// AUTH request while not sent, then expiry.
    fn reset_expiry(&mut self) {
        let Some(expires) = self.principal.expires_ms else {
            self.expiry = None;
            return;
        };
        let next = self.auth_at_ms.map_or(expires, |at| at.min(expires));
        let left = next.saturating_sub(self.state.clock.now_ms());
        let deadline = Instant::now() + Duration::from_millis(left);
        match &mut self.expiry {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.expiry = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }
}

/// A duration in whole ms.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Waits for the timer, or forever when there is none.
async fn wait(sleep: &mut Option<Pin<Box<Sleep>>>) {
    match sleep {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}
