//! The subscription driver: connect, decode, deliver exactly once, renew
//! tokens, resume (`docs/protocol.md#the-sse-client-algorithm`).
//!
//! The driver does the I/O and keeps the delivery state (the cursor, the
//! recent ids, the delta bases); what to do after a failure, what to resume
//! from and when to renew ahead of expiry are asked of [`policy`], which
//! reads no clock; [`request`] builds each attempt's URL. The driver reads time only through tokio
//! ([`tokio::time::Instant`], `sleep`), so tests can run it on a paused
//! clock.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use shared::message::Message;
use shared::{ErrorInfo, ErrorResponse};
use tokio::time::{Instant, Sleep};

use self::policy::{Decision, Policy, Settings};
use self::request::stream_request;
use super::auth::{Credential, error_from_response};
use super::client::{Client, SubscribeOptions};
use super::decode::{ChannelMessage, Decoder, RecentIds};
use crate::error::{Error, Result};
use crate::sse::connection::{self, Body};
use crate::sse::{Event, Frame, Jitter, Parser};

mod policy;
mod request;

/// What a subscription yields, besides a final [`Error`].
// Messages are the common case: boxing them to shrink the rare state
// changes would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
#[non_exhaustive]
pub enum Update {
    /// A message, decoded, delivered once and in order.
    Message(ChannelMessage),
    /// The connection changed state.
    State(StateChange),
}

/// A change in the subscription's connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StateChange {
    /// A stream is open.
    Connected,
    /// The stream ended or could not be opened; the subscription reconnects
    /// after `retry_in`, resuming after the last delivered message.
    Disconnected {
        /// Why.
        reason: Arc<Error>,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// A new token was fetched: before the old one expired (`proactive`), or
    /// because the server rejected it.
    TokenRenewed {
        /// Whether the renewal came before any rejection.
        proactive: bool,
    },
    /// The subscription starts afresh, without resuming: it was
    /// disconnected for longer than the resume window, or it skips a message
    /// that failed to decode several times in a row. Messages sent meanwhile
    /// may be lost.
    ContinuityLost,
}

enum State {
    Connecting,
    Waiting(Pin<Box<Sleep>>),
    Open {
        body: Body,
        renew_at: Option<Pin<Box<Sleep>>>,
    },
    Closed,
}

/// A live subscription to Ably channels. Read it with
/// [`Subscription::next`] or as a [`Stream`] via
/// [`Subscription::into_stream`]; an `Err` is always the last item.
/// Dropping it closes the stream.
pub struct Subscription {
    client: Client,
    options: SubscribeOptions,
    only_channel: Option<String>,
    /// Whether deltas were asked for (unenveloped payloads are sniffed for
    /// one only then).
    deltas: bool,
    parser: Parser,
    credential: Option<Credential>,
    fetched_tokens: u32,
    state: State,
    /// The SSE id of the last delivered message: `lastEvent` for a resume.
    cursor: Option<String>,
    /// The decisions and the counters they read.
    policy: Policy,
    decoder: Decoder,
    recent: RecentIds,
    pending: VecDeque<Update>,
    /// The error that ends the subscription once the queued messages are out.
    fatal: Option<Error>,
    jitter: Jitter,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("channels", &self.options.channels)
            .field("cursor", &self.cursor)
            .field("failures", &self.policy.failures())
            .field("token_errors", &self.policy.token_errors())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(client: Client, options: SubscribeOptions) -> Self {
        let config = &client.config;
        // Options that cannot work safely end the subscription before any
        // request: its only item is the error.
        let refused = options.validate().err();
        let mut subscription = Self {
            parser: Parser::new(config.limits),
            recent: RecentIds::new(config.recent_ids),
            only_channel: options.only_channel(),
            deltas: options.wants_deltas(),
            cursor: options.last_event.clone(),
            policy: Policy::new(Settings {
                can_renew: config.auth.can_renew(),
                max_token_renewals: config.max_token_renewals,
                reconnect: config.reconnect.clone(),
                resume_window: config.resume_window,
                renew_before: config.renew_before,
            }),
            options,
            credential: None,
            fetched_tokens: 0,
            state: State::Connecting,
            decoder: Decoder::new(config.limits.max_event),
            pending: VecDeque::new(),
            fatal: None,
            jitter: Jitter::new(),
            client,
        };
        if let Some(err) = refused {
            subscription.state = State::Closed;
            subscription.fatal = Some(err);
        }
        subscription
    }

    /// The SSE id of the last delivered message: save it to resume later
    /// with [`SubscribeOptions::last_event`].
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The subscription as a [`Stream`].
    pub fn into_stream(self) -> impl Stream<Item = Result<Update>> + Send + Unpin {
        Box::pin(futures_util::stream::unfold(self, |mut sub| async move {
            let item = sub.next().await?;
            Some((item, sub))
        }))
    }

    /// The next message or state change; `None` once the subscription has
    /// ended. An `Err` is always followed by `None`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes (the losing
    /// branch of a `tokio::select!`, a `tokio::time::timeout`), no message is
    /// lost or repeated because of it, and the next call carries on.
    ///
    /// - A message is taken from the parser, decoded, remembered and the
    ///   resume cursor moved past it in one step with no `.await` in it,
    ///   which ends by returning it: a message is either handed out or still
    ///   queued. Bytes read from the stream go straight into the parser, and
    ///   reading them is itself cancel safe.
    /// - State changes already queued ([`StateChange::Connected`],
    ///   [`StateChange::TokenRenewed`], [`StateChange::ContinuityLost`]) stay
    ///   queued and come out of the next call.
    /// - A backoff wait is kept, not restarted: its deadline is stored in the
    ///   subscription.
    /// - What is abandoned is in-flight I/O, repeated by the next call: a
    ///   credential being fetched, also for an early renewal (the auth URL,
    ///   callback or `requestToken` is asked again; a token the dropped request would have brought is
    ///   never used, and the auth timeout starts over), and a stream request
    ///   awaiting its response (sent again, from the same resume point).
    /// - The read timeout
    ///   ([`ClientBuilder::read_timeout`](crate::ably::ClientBuilder::read_timeout))
    ///   is measured within one call: a caller that drops `next()` more
    ///   often than that timeout never sees [`Error::ReadTimeout`].
    ///
    /// [`into_stream`](Subscription::into_stream) keeps its pending future
    /// across polls, so dropping a `StreamExt::next` on it abandons nothing.
    pub async fn next(&mut self) -> Option<Result<Update>> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                return Some(Ok(update));
            }
            if let Some(frame) = self.parser.next_frame() {
                let Frame::Event(event) = frame else {
                    // Comments are keepalives; Ably's `retry:` is not used,
                    // our own backoff decides.
                    continue;
                };
                match self.on_event(event) {
                    Ok(Some(message)) => return Some(Ok(Update::Message(message))),
                    Ok(None) => continue,
                    Err(err) => match self.fail(err) {
                        Some(fatal) => return Some(fatal),
                        None => continue,
                    },
                }
            }
            match &mut self.state {
                State::Closed => return self.fatal.take().map(Err),
                State::Waiting(sleep) => {
                    sleep.as_mut().await;
                    self.state = State::Connecting;
                }
                State::Connecting => {
                    if let Err(err) = self.connect().await
                        && let Some(fatal) = self.fail(err)
                    {
                        return Some(fatal);
                    }
                }
                State::Open { body, renew_at } => {
                    let read = match renew_at {
                        Some(deadline) => tokio::select! {
                            read = body.chunk() => Some(read),
                            () = deadline.as_mut() => None,
                        },
                        None => Some(body.chunk().await),
                    };
                    match read {
                        None => self.renew_early().await,
                        Some(Ok(Some(chunk))) => {
                            if let Err(err) = self.parser.feed(&chunk) {
                                // Deliver what came before the offending
                                // line, then end.
                                self.state = State::Closed;
                                self.fatal = Some(err);
                            }
                        }
                        Some(Ok(None)) => {
                            if let Some(fatal) = self.fail(Error::StreamEnded) {
                                return Some(fatal);
                            }
                        }
                        Some(Err(err)) => {
                            if let Some(fatal) = self.fail(err) {
                                return Some(fatal);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Opens a stream: credential, URL, request, status and type checks.
    async fn connect(&mut self) -> Result<()> {
        let config = Arc::clone(&self.client.config);
        // A resume point is a cursor, or, when a stream dropped before its
        // first message, the time it opened (the reconnection rewinds to it).
        if self
            .policy
            .resume_expired(self.cursor.is_some(), Instant::now())
        {
            // Ably has forgotten the connection: start afresh, and say so.
            self.lose_continuity();
        }
        let now = Instant::now();
        let credential = match &self.credential {
            Some(held) if !self.policy.needs_credential(true, held.expires_at(), now) => {
                held.clone()
            }
            _ => {
                let credential = config
                    .auth
                    .credential(&self.client.http, &config.endpoint, config.auth_timeout)
                    .await?;
                self.fetched_tokens = self.fetched_tokens.saturating_add(1);
                if self.fetched_tokens > 1 {
                    self.pending
                        .push_back(Update::State(StateChange::TokenRenewed {
                            proactive: false,
                        }));
                }
                self.credential = Some(credential.clone());
                credential
            }
        };
        let resume = self.policy.resume_from(
            self.cursor.as_deref(),
            self.options.rewind.as_ref(),
            Instant::now(),
        );
        let request = stream_request(&config.endpoint, &self.options, &credential, resume);
        // The headers, and an error response's body, within the limit: a
        // server that accepts and stalls must not hang the subscription.
        let response = connection::within(config.headers_timeout, Error::HeadersTimeout, async {
            let response = connection::send(&self.client.http, &request, "").await?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(error_from_response(response, u32::from(status) * 100).await);
            }
            Ok(response)
        })
        .await?;
        if !connection::is_event_stream(response.headers()) {
            return Err(Error::ContentType(connection::content_type(
                response.headers(),
            )));
        }
        self.parser.reset();
        let now = Instant::now();
        self.policy.on_open(now);
        // When to renew ahead of a known expiry.
        let renew_at = self
            .policy
            .renew_at(credential.expires_at(), now)
            .map(|at| Box::pin(tokio::time::sleep_until(at)));
        self.state = State::Open {
            body: Body::new(response, config.read_timeout),
            renew_at,
        };
        self.pending
            .push_back(Update::State(StateChange::Connected));
        Ok(())
    }

    /// The token is about to expire: fetch the next one while the old stream
    /// is still open, then switch, resuming after the last delivered message.
    async fn renew_early(&mut self) {
        let config = Arc::clone(&self.client.config);
        match config
            .auth
            .credential(&self.client.http, &config.endpoint, config.auth_timeout)
            .await
        {
            Ok(credential) => {
                tracing::debug!("token renewed before expiry; switching streams");
                self.credential = Some(credential);
                self.fetched_tokens = self.fetched_tokens.saturating_add(1);
                // Frames already parsed stay queued and are delivered first;
                // the new stream resumes from the last delivered one, and
                // any overlap is dropped by message id.
                self.state = State::Connecting;
                self.pending
                    .push_back(Update::State(StateChange::TokenRenewed { proactive: true }));
            }
            Err(err) => {
                // Keep the old stream until the server ends it; the renewal
                // happens then.
                tracing::warn!(error = %err, "early token renewal failed");
                if let State::Open { renew_at, .. } = &mut self.state {
                    *renew_at = None;
                }
            }
        }
    }

    /// Handles one SSE event: a message to deliver, an error that ends the
    /// stream, or something to skip.
    fn on_event(&mut self, event: Event) -> Result<Option<ChannelMessage>> {
        match event.event_type() {
            "message" => self.on_message(event),
            "error" => Err(Error::Ably(error_event(event.data()))),
            "heartbeat" => {
                self.policy.on_heartbeat();
                Ok(None)
            }
            other => {
                tracing::debug!(event = other, "ignoring event");
                Ok(None)
            }
        }
    }

    fn on_message(&mut self, event: Event) -> Result<Option<ChannelMessage>> {
        let event_id = event.id().to_owned();
        let message = if self.options.enveloped {
            let message: Message = serde_json::from_str(event.data()).map_err(|err| {
                Error::Decode(shared::Error::InvalidEncoding(format!(
                    "message is not a JSON Message: {err}"
                )))
            })?;
            let key = message.id.clone().unwrap_or_else(|| event_id.clone());
            if self.is_duplicate(&key, &event_id) {
                return Ok(None);
            }
            let decoded = self.decoder.decode_enveloped(
                message,
                event_id.clone(),
                self.only_channel.as_deref(),
            )?;
            (key, decoded)
        } else {
            if self.is_duplicate(&event_id, &event_id) {
                return Ok(None);
            }
            let decoded = self.decoder.decode_unenveloped(
                event.into_data(),
                event_id.clone(),
                self.only_channel.as_deref(),
                self.deltas,
            )?;
            (event_id.clone(), decoded)
        };
        let (key, decoded) = message;
        if !key.is_empty() {
            self.recent.insert(key);
        }
        // Delivered: only now does the resume cursor move.
        self.advance(&event_id);
        self.policy.on_message();
        Ok(Some(decoded))
    }

    /// Whether a message was already delivered; if so, the cursor still moves
    /// past it.
    fn is_duplicate(&mut self, key: &str, event_id: &str) -> bool {
        if key.is_empty() || !self.recent.contains(key) {
            return false;
        }
        tracing::debug!(id = key, "dropping a message delivered before");
        self.advance(event_id);
        true
    }

    fn advance(&mut self, event_id: &str) {
        if !event_id.is_empty() {
            self.cursor = Some(event_id.to_owned());
        }
    }

    /// Ends the current connection because of `err`: renews, schedules a
    /// retry, or returns the error that ends the subscription.
    fn fail(&mut self, err: Error) -> Option<Result<Update>> {
        if let Some(fatal) = self.fatal.take() {
            // Already ending: nothing revives the subscription.
            return Some(self.close(fatal));
        }
        // Nothing parsed after a failure is trusted: it is replayed from the
        // cursor.
        while self.parser.next_frame().is_some() {}
        self.parser.reset();
        self.state = State::Connecting;
        let decision = self.policy.on_failure(
            &err,
            self.cursor.as_deref(),
            Instant::now(),
            self.jitter.sample(),
        );
        let delay = match decision {
            Decision::GiveUp => return Some(self.close(err)),
            Decision::Exhausted { attempts } => {
                return Some(self.close(Error::RetriesExhausted {
                    attempts,
                    last: Box::new(err),
                }));
            }
            Decision::Renew { delay } => {
                self.credential = None;
                delay
            }
            Decision::Retry { delay } => delay,
            Decision::Skip { delay } => {
                tracing::warn!(error = %err, "skipping a message that cannot be decoded");
                delay
            }
        };
        tracing::debug!(error = %err, ?delay, "disconnected");
        if !delay.is_zero() {
            self.state = State::Waiting(Box::pin(tokio::time::sleep(delay)));
        }
        self.pending
            .push_back(Update::State(StateChange::Disconnected {
                reason: Arc::new(err),
                retry_in: delay,
            }));
        if matches!(decision, Decision::Skip { .. }) {
            self.lose_continuity();
        }
        None
    }

    /// Forgets the resume point and the delta bases: the next stream starts
    /// fresh, and the application is told messages may be missing.
    fn lose_continuity(&mut self) {
        self.cursor = None;
        self.decoder.clear();
        self.pending
            .push_back(Update::State(StateChange::ContinuityLost));
    }

    fn close(&mut self, err: Error) -> Result<Update> {
        self.state = State::Closed;
        self.pending.clear();
        Err(err)
    }
}

/// The ErrorInfo of an `error` event: a bare ErrorInfo
/// (`docs/protocol.md#error-events`), or an envelope, or text we cannot read
/// (then a generic 50000, retried).
fn error_event(data: &str) -> ErrorInfo {
    serde_json::from_str::<ErrorInfo>(data)
        .or_else(|_| serde_json::from_str::<ErrorResponse>(data).map(|envelope| envelope.error))
        .unwrap_or_else(|_| {
            ErrorInfo::from_code(
                shared::codes::INTERNAL_ERROR,
                format!("unreadable error event: {data:.200}"),
            )
        })
}
