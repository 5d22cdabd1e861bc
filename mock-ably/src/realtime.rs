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
//!   `auth_lead` ahead (30 s by default), but at most half its remaining
//!   life, so short test tokens are renewed mid-way; `force_auth` asks at
//!   once. ably-js answers with AUTH and a new token.
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
//!   PRESENCE_SUBSCRIBE, `presence` → PRESENCE; the request's `params`
//!   echoed; a `channelSerial`. Nothing granted: a channel ERROR 40160, and
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
//!   use, so every transport and history see them in one order. ACK per
//!   `msgSerial`, or NACK with 40160 (no `publish`), 40012 (a message naming
//!   another clientId), 40010, 40013, 40009. A message re-sent with a serial
//!   seen before keeps its id, so it is ACKed again and never fanned out
//!   twice.
//! - Fan-out: to every connection attached with SUBSCRIBE, except the
//!   publisher when it connected with `echo=false`. A connection that falls
//!   `lag_limit` messages behind is dropped (resumable), as a stream is.
//! - AUTH that leaves an attached channel no mode: a channel ERROR 40160
//!   (RTC8a1).
//! - PRESENCE is NACKed (40000): presence is not implemented yet.
//!
//! # Resume
//!
//! `resume=<connectionKey>` (or a `recover` key naming one, RTN16) of a
//! connection dropped less than `connectionStateTtl` ago, acting as the same
//! clientId, gets CONNECTED with the same `connectionId` and its `msgSerial`
//! state (RTN15c6); an unknown, closed or expired key gets a new one and
//! error 80008 on CONNECTED (RTN15c7). ably-js then re-attaches each channel
//! with its `channelSerial` and gets what it missed, with RESUMED on
//! ATTACHED when retention still held all of it (RTL12).

mod connections;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use serde_json::json;
use shared::capability::Operation;
use shared::protocol::{Action, ConnectionDetails, Flags, Format, ProtocolMessage};
use shared::{ErrorInfo, Message, codes};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};

use crate::auth::{Credential, CredentialKind, Principal, authenticate, verify};
use crate::channel::{Member, StartAt, StoredMessage};
use crate::delta::Deltas;
use crate::error::{ApiError, ApiResult};
use crate::faults::RequestKind;
use crate::params::{Query, invalid_param, validate_channel_name};
use crate::publish::{self, Publisher};
use crate::state::{AppState, Control, lock, random_id};

pub(crate) use connections::Connections;
use connections::Entry;

/// `maxMessageSize` announced on CONNECTED: Ably's default of 64 KiB.
pub(crate) const MAX_MESSAGE_SIZE: u64 = 65_536;

/// The largest WebSocket frame or message read from a client. Above
/// `maxMessageSize`, as a ProtocolMessage may batch several messages.
const MAX_FRAME_BYTES: usize = 1 << 20;

/// At most this many channels attached on one connection; another ATTACH
/// gets a channel ERROR.
const MAX_CHANNELS: usize = 1000;

/// The modes granted when ATTACH asks for none: every mode a capability can
/// grant (RTL4l).
const DEFAULT_MODES: Flags =
    Flags(Flags::PRESENCE.0 | Flags::PUBLISH.0 | Flags::SUBSCRIBE.0 | Flags::PRESENCE_SUBSCRIBE.0);

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
        if let Some(value) = query.get("remainPresentFor")
            && value.parse::<u64>().is_err()
        {
            return Err(invalid_param("remainPresentFor", value));
        }
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
        })
    })();
    checked.map_err(|err| refuse(format, err))
}

/// The connectionKey in a recovery key (RTN16g: a JSON object with
/// `connectionKey`, `msgSerial` and `channelSerials`).
fn recovery_key(recover: &str) -> Option<String> {
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
    /// `force_auth`, and the connection uses a token or JWT: send AUTH.
    ForceAuth,
}

/// Removes the connection from the open count however its task ends, and
/// leaves it resumable or not.
struct Registration {
    state: AppState,
    key: String,
    entry: Entry,
    end: End,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let until = match self.end {
            End::Resumable => {
                let ttl = u64::try_from(self.state.settings.connection_state_ttl.as_millis())
                    .unwrap_or(u64::MAX);
                Some(self.state.clock.now_ms().saturating_add(ttl))
            }
            End::Gone => None,
        };
        lock(&self.state.connections).closed(&self.key, self.entry.clone(), until);
    }
}

/// The channels a connection is attached to, with the modes granted; it
/// leaves the registry's subscriber lists however the task ends.
struct Membership {
    state: AppState,
    member: Member,
    channels: HashMap<String, Flags>,
}

impl Membership {
    /// Records `channel` as attached with `modes`.
    fn attach(&mut self, channel: String, modes: Flags) {
        if self.channels.insert(channel, modes).is_none() {
            self.state.attached_channels.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets `channel` and leaves its subscriber list; whether it was
    /// attached.
    fn detach(&mut self, channel: &str) -> bool {
        let attached = self.channels.remove(channel).is_some();
        if attached {
            self.state.attached_channels.fetch_sub(1, Ordering::Relaxed);
        }
        lock(&self.state.registry).detach(self.member.id, &[channel.to_owned()]);
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
}

/// Sends CONNECTED and serves the connection until its socket ends.
async fn run(
    state: AppState,
    socket: WebSocket,
    opening: Opening,
    control: watch::Receiver<Control>,
    seen: Control,
) {
    let now_ms = state.clock.now_ms();
    // Only a client acting as the connection's clientId may take it over.
    let resumed = opening.resume.as_deref().and_then(|key| {
        lock(&state.connections)
            .resume(key, opening.client_id.as_deref(), now_ms)
            .map(|entry| (key.to_owned(), entry))
    });
    let mut resume_error = None;
    let (key, entry) = match resumed {
        Some(resumed) => resumed,
        None => {
            if opening.resume.is_some() {
                resume_error = Some(ErrorInfo::from_code(
                    codes::CONNECTION_EXPIRED,
                    "Unable to resume: the connection is unknown or has expired",
                ));
            }
            let connection_id = random_id(9);
            let key = format!("{connection_id}!{}", random_id(12));
            let entry = Entry {
                connection_id,
                client_id: opening.client_id.clone(),
                next_serial: 0,
            };
            lock(&state.connections).insert(key.clone(), entry.clone());
            (key, entry)
        }
    };
    let idle = state.settings.max_idle_interval;
    let (member, rx) = lock(&state.registry).member(&state.settings);
    let mut connection = Connection {
        membership: Membership {
            state: state.clone(),
            member,
            channels: HashMap::new(),
        },
        rx,
        echo: opening.echo,
        resumed: resume_error.is_none() && opening.resume.is_some(),
        deltas: Deltas::default(),
        heartbeat: Box::pin(tokio::time::sleep(idle / 2)),
        registration: Registration {
            state: state.clone(),
            key,
            entry,
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

impl Connection {
    /// CONNECTED for this connection as it stands.
    fn connected_frame(&self) -> ProtocolMessage {
        let entry = &self.registration.entry;
        let mut frame = ProtocolMessage::new(Action::CONNECTED);
        frame.connection_id = Some(entry.connection_id.clone());
        frame.connection_details = Some({
            let mut details = ConnectionDetails::default();
            details.client_id.clone_from(&entry.client_id);
            details.connection_key = Some(self.registration.key.clone());
            details.max_idle_interval = Some(millis(self.state.settings.max_idle_interval));
            details.connection_state_ttl = Some(millis(self.state.settings.connection_state_ttl));
            details.max_message_size = Some(MAX_MESSAGE_SIZE);
            details.server_id = Some(SERVER_ID.to_owned());
            details
        });
        frame
    }

    async fn send(&mut self, frame: &ProtocolMessage) -> Result<(), ()> {
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
                    }
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
                    let bytes = match message {
                        WsMessage::Text(text) => axum::body::Bytes::from(text),
                        WsMessage::Binary(bytes) => bytes,
                        WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                        WsMessage::Close(_) => break End::Resumable,
                    };
                    match self.on_frame(&bytes).await {
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
                let serial = self.take_serial(&frame);
                let error = ErrorInfo::from_code(
                    codes::BAD_REQUEST,
                    "mock-ably does not support realtime presence yet",
                );
                self.send(&nack(serial, error)).await?;
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

    /// ATTACH (RTL4): the granted modes are the requested ones (all when
    /// none are) narrowed by the capability; nothing granted is a channel
    /// ERROR 40160 and the connection stays up (RTL14). A `channelSerial`
    /// from an earlier attachment (RTL4c1) continues from there: what was
    /// published since follows ATTACHED, in order.
    async fn on_attach(&mut self, frame: ProtocolMessage) -> Result<(), ()> {
        let name = frame.channel.clone().unwrap_or_default();
        let granted = self.check_attach(&frame, &name);
        let modes = match granted {
            Ok(modes) => modes,
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
        // Every (re)attach starts from a full message.
        self.deltas.set(&name, delta);
        let mut reply = ProtocolMessage::new(Action::ATTACHED);
        reply.channel = Some(name);
        reply.flags = Some(if resumed {
            modes | Flags::RESUMED
        } else {
            modes
        });
        reply.params = frame.params.filter(|params| !params.is_empty());
        reply.channel_serial = Some(position);
        self.send(&reply).await?;
        for message in backlog {
            self.membership.member.owed.paid();
            self.deliver(&message).await?;
        }
        Ok(())
    }

    fn check_attach(&self, frame: &ProtocolMessage, name: &str) -> ApiResult<Flags> {
        validate_channel_name(name)?;
        if !self.membership.channels.contains_key(name)
            && self.membership.channels.len() >= MAX_CHANNELS
        {
            return Err(ApiError::new(
                codes::BAD_REQUEST,
                format!("At most {MAX_CHANNELS} channels may be attached on one connection"),
            ));
        }
        let requested = match frame.flags().modes() {
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
        Ok(granted)
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
        modes
    }

    /// DETACH (RTL5): always DETACHED, attached or not.
    async fn on_detach(&mut self, frame: ProtocolMessage) -> Result<(), ()> {
        let name = frame.channel.unwrap_or_default();
        if self.membership.channels.contains_key(&name) {
            self.membership.detach(&name);
            self.deltas.set(&name, false);
        }
        let mut reply = ProtocolMessage::new(Action::DETACHED);
        reply.channel = Some(name);
        self.send(&reply).await
    }

    /// The `msgSerial` a MESSAGE or PRESENCE carries (the next expected one
    /// when it has none), advancing the expected one past it (RTN7b).
    fn take_serial(&mut self, frame: &ProtocolMessage) -> u64 {
        let entry = &mut self.registration.entry;
        let serial = frame.msg_serial.unwrap_or(entry.next_serial);
        entry.next_serial = entry.next_serial.max(serial.saturating_add(1));
        serial
    }

    /// MESSAGE (RTL6): checked, stamped, stored on the one channel model
    /// (so REST history and SSE see it), then ACKed; or NACKed. Attaching
    /// first is not required (RTL6c). A message re-sent with a serial
    /// already seen (after a resume, RTN19a) has the same id, so the
    /// channel keeps its first copy and fans nothing out again; it is ACKed
    /// again.
    async fn on_message(&mut self, frame: ProtocolMessage) -> Result<(), ()> {
        let serial = self.take_serial(&frame);
        let reply = match self.publish(frame, serial) {
            Ok(stored) => {
                let serials: Vec<&str> = stored.iter().map(|m| m.serial.as_str()).collect();
                let mut ack = ProtocolMessage::new(Action::ACK);
                ack.msg_serial = Some(serial);
                ack.count = Some(1);
                ack.res = Some(vec![json!({ "serials": serials })]);
                ack
            }
            Err(error) => nack(serial, error.0),
        };
        self.send(&reply).await
    }

    fn publish(&self, frame: ProtocolMessage, serial: u64) -> ApiResult<Vec<Arc<StoredMessage>>> {
        let channel = frame.channel.unwrap_or_default();
        validate_channel_name(&channel)?;
        if channel.starts_with("[meta]") {
            return Err(ApiError::new(
                codes::OPERATION_NOT_PERMITTED,
                format!("Metachannels cannot be published to; channel = {channel}"),
            ));
        }
        self.principal.require(Operation::Publish, &channel)?;
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
        Ok(publish::store(&self.state, &channel, prepared))
    }

    /// Sends a stored message to this connection, if it is attached to the
    /// channel with SUBSCRIBE and the message is not its own under
    /// `echo=false`.
    async fn deliver(&mut self, message: &StoredMessage) -> Result<(), ()> {
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

    /// After AUTH: a channel the new capability no longer allows any of its
    /// modes on gets a channel ERROR 40160 and is detached (RTC8a1).
    async fn revoke_channels(&mut self) -> Result<(), ()> {
        let revoked: Vec<String> = self
            .membership
            .channels
            .iter()
            .filter(|(name, modes)| modes.intersection(self.allowed_modes(name)).is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in revoked {
            self.membership.detach(&name);
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

    /// Plans the AUTH that asks the client to renew its credential (RTN22):
    /// `auth_lead` before it expires, but at most half its remaining life
    /// from now, so a short test token is renewed mid-way.
    fn plan_auth(&mut self) {
        self.auth_at_ms = self.principal.expires_ms.map(|expires| {
            let now = self.state.clock.now_ms();
            let half = expires.saturating_sub(now) / 2;
            expires.saturating_sub(millis(self.state.settings.auth_lead).min(half))
        });
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

/// NACK of one `msgSerial` with `error`.
fn nack(serial: u64, error: ErrorInfo) -> ProtocolMessage {
    let mut frame = ProtocolMessage::with_error(Action::NACK, error);
    frame.msg_serial = Some(serial);
    frame.count = Some(1);
    frame
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
