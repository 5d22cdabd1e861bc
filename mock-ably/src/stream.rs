//! The body of an open SSE or plain stream: backlog first, then live
//! messages, keepalives, and the endings (`docs/protocol.md#sse-framing`,
//! `docs/protocol.md#continuity-and-resume`).
//!
//! A stream ends in one of three ways:
//!
//! - **error**: its token or JWT expires (at its expiry time, or when
//!   `expire_credentials` is called): an `error` event with 40142, then the
//!   response ends cleanly;
//! - **abort**: `drop_streams`, the handle being dropped, or the stream
//!   falling more than `lag_limit` messages behind (backlog still to send
//!   included): the connection is cut mid-body with no error event, as a
//!   network failure would;
//! - the client goes away.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use shared::{ErrorInfo, codes};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};

use crate::auth::Principal;
use crate::channel::{Attachment, Owed, StoredMessage};
use crate::delta::Deltas;
use crate::frame::Framing;
use crate::revocation::Status;
use crate::state::{AppState, Control, lock};

/// How a stream presents its events, and when its credential runs out.
#[derive(Debug)]
pub(crate) struct StreamConfig {
    pub(crate) framing: Framing,
    /// `enveloped` (default true): `data` is the Message, else the payload.
    pub(crate) enveloped: bool,
    /// `heartbeats=true`: heartbeat events instead of keepalives.
    pub(crate) heartbeats: bool,
    /// Channels with `delta=vcdiff`.
    pub(crate) delta_channels: Vec<String>,
    /// When the stream's token or JWT expires (mock-clock ms).
    pub(crate) expires_ms: Option<u64>,
    /// Whether the stream authenticated with a token or JWT (which
    /// `expire_credentials` ends) rather than a key.
    pub(crate) token_auth: bool,
    /// Who the stream authenticated as: checked again when a revocation is
    /// made or applies.
    pub(crate) principal: Principal,
}

/// Removes the stream from its channels and from the open-stream count when
/// the body is dropped, however it ends.
#[derive(Debug)]
struct Subscription {
    state: AppState,
    subscriber: u64,
    channels: Vec<String>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.state.registry).detach(self.subscriber, &self.channels);
        self.state.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Step {
    Chunk(Bytes),
    Abort,
    End,
}

struct Streamer {
    state: AppState,
    config: StreamConfig,
    backlog: VecDeque<Arc<StoredMessage>>,
    rx: mpsc::Receiver<Arc<StoredMessage>>,
    lagged: Arc<AtomicBool>,
    owed: Owed,
    control: watch::Receiver<Control>,
    seen: Control,
    expiry: Option<Pin<Box<Sleep>>>,
    /// Fires when a keepalive may be due; see [`Streamer::keepalive_due`].
    keepalive: Pin<Box<Sleep>>,
    /// When the stream last produced a frame (message or keepalive).
    last_write: Instant,
    deltas: Deltas,
    done: bool,
    _subscription: Subscription,
}

/// Builds the response body for an attached stream.
///
/// `control` must have been subscribed before the credential was verified,
/// with `seen` its value then, so that a `drop_streams` or
/// `expire_credentials` racing the request still reaches the stream.
pub(crate) fn body(
    state: AppState,
    config: StreamConfig,
    attachment: Attachment,
    channels: Vec<String>,
    control: watch::Receiver<Control>,
    seen: Control,
) -> Body {
    state.open_streams.fetch_add(1, Ordering::Relaxed);
    let subscription = Subscription {
        state: state.clone(),
        subscriber: attachment.subscriber,
        channels,
    };
    let deltas = Deltas::new(&config.delta_channels);
    let keepalive = Box::pin(tokio::time::sleep(state.settings.keepalive));
    let mut streamer = Streamer {
        state,
        backlog: attachment.backlog,
        rx: attachment.rx,
        lagged: attachment.lagged,
        owed: attachment.owed,
        control,
        seen,
        expiry: None,
        keepalive,
        last_write: Instant::now(),
        deltas,
        done: false,
        config,
        _subscription: subscription,
    };
    streamer.reset_expiry();
    let stream = futures_util::stream::unfold(streamer, |mut streamer| async move {
        match streamer.next().await {
            Step::Chunk(bytes) => Some((Ok(bytes), streamer)),
            Step::Abort => {
                streamer.done = true;
                Some((
                    Err(io::Error::other("stream dropped by mock-ably")),
                    streamer,
                ))
            }
            Step::End => None,
        }
    });
    Body::from_stream(stream)
}

impl Streamer {
    async fn next(&mut self) -> Step {
        if self.done {
            return Step::End;
        }
        loop {
            if self.lagged.load(Ordering::Relaxed) {
                tracing::info!("a stream fell too far behind and was disconnected");
                return Step::Abort;
            }
            // Checked before every event, so that a long backlog does not
            // delay a drop or an expiry.
            match self.control.has_changed() {
                // The server state is gone.
                Err(_) => return Step::Abort,
                Ok(true) => {
                    if let Some(step) = self.on_control() {
                        return step;
                    }
                }
                Ok(false) => {}
            }
            if self
                .config
                .expires_ms
                .is_some_and(|expires| self.state.clock.now_ms() >= expires)
            {
                return self.expired();
            }
            if let Some(message) = self.backlog.pop_front() {
                self.owed.paid();
                return Step::Chunk(self.message_frame(&message));
            }
            tokio::select! {
                biased;
                changed = self.control.changed() => {
                    if changed.is_err() {
                        return Step::Abort;
                    }
                    if let Some(step) = self.on_control() {
                        return step;
                    }
                }
                () = wait(&mut self.expiry) => {
                    let now = self.state.clock.now_ms();
                    if self.config.expires_ms.is_some_and(|expires| now >= expires) {
                        return self.expired();
                    }
                    self.reset_expiry();
                }
                message = self.rx.recv() => {
                    return match message {
                        Some(message) => {
                            self.owed.paid();
                            Step::Chunk(self.message_frame(&message))
                        }
                        None => Step::Abort,
                    };
                }
                () = &mut self.keepalive => {
                    if !self.keepalive_due() {
                        continue;
                    }
                    self.last_write = Instant::now();
                    self.reset_keepalive();
                    return Step::Chunk(if self.config.heartbeats {
                        self.config.framing.heartbeat()
                    } else {
                        self.config.framing.keepalive()
                    });
                }
            }
        }
    }

    /// Reacts to the control signal's current value, compared with the
    /// last one seen: `Some` when the stream ends.
    fn on_control(&mut self) -> Option<Step> {
        let now = *self.control.borrow_and_update();
        if now.shutdown || now.drops != self.seen.drops {
            return Some(Step::Abort);
        }
        if now.expiries != self.seen.expiries && self.config.token_auth {
            return Some(self.expired());
        }
        if now.clock != self.seen.clock {
            self.reset_expiry();
        }
        let recheck = now.revocations != self.seen.revocations || now.clock != self.seen.clock;
        self.seen = now;
        if recheck {
            let status = lock(&self.state.revocations)
                .status(&self.config.principal, self.state.clock.now_ms());
            if status == Status::Revoked {
                return Some(self.revoked());
            }
        }
        None
    }

    /// The 40141 error event that ends the stream: its token was revoked.
    fn revoked(&mut self) -> Step {
        self.done = true;
        let info = ErrorInfo::from_code(codes::TOKEN_REVOKED, "Token revoked");
        Step::Chunk(self.config.framing.error(&info))
    }

    /// The 40142 error event that ends the stream.
    fn expired(&mut self) -> Step {
        self.done = true;
        let info = ErrorInfo::from_code(codes::TOKEN_EXPIRED, "Token expired");
        Step::Chunk(self.config.framing.error(&info))
    }

    /// Points the expiry timer at the credential's expiry on the mock clock.
    fn reset_expiry(&mut self) {
        let Some(expires) = self.config.expires_ms else {
            return;
        };
        let left = expires.saturating_sub(self.state.clock.now_ms());
        let deadline = Instant::now() + Duration::from_millis(left);
        match &mut self.expiry {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.expiry = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn reset_keepalive(&mut self) {
        let deadline = Instant::now() + self.state.settings.keepalive;
        self.keepalive.as_mut().reset(deadline);
    }

    /// Called when the keepalive timer fires: true when the stream has been
    /// silent for a whole interval, so a keepalive goes out now. Otherwise a
    /// frame went out since the timer was set, and the timer moves to one
    /// interval after that frame. Messages only note the time: resetting the
    /// timer on every message would put timer-wheel work on the fan-out path,
    /// and this way a keepalive still goes out exactly one interval after the
    /// last frame.
    fn keepalive_due(&mut self) -> bool {
        let due = self.last_write + self.state.settings.keepalive;
        if due > Instant::now() {
            self.keepalive.as_mut().reset(due);
            return false;
        }
        true
    }

    /// The event for `message`, counted as delivered.
    fn message_frame(&mut self, message: &StoredMessage) -> Bytes {
        self.last_write = Instant::now();
        self.state.delivered.fetch_add(1, Ordering::Relaxed);
        message.channel.delivered.fetch_add(1, Ordering::Relaxed);
        let framing = self.config.framing;
        let delta = self.deltas.next(message);
        match (delta, self.config.enveloped) {
            (None, true) => match framing {
                Framing::Sse => message.sse_frame(),
                Framing::Plain => message.plain_frame(),
            },
            (Some(delta), true) => framing.message_json(&message.cursor, &delta.json),
            (delta, false) => {
                let data = delta
                    .as_ref()
                    .map_or(&message.message.data, |d| &d.message.data);
                let payload = match data {
                    Some(serde_json::Value::String(text)) => text.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                framing.message_raw(&message.cursor, &payload)
            }
        }
    }
}

/// Waits for the timer, or forever when there is none.
async fn wait(sleep: &mut Option<Pin<Box<Sleep>>>) {
    match sleep {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}
