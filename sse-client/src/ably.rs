//! Ably's SSE endpoint on top of [`sse`](crate::sse): credentials, the
//! per-attempt URL, message decoding, exactly-once delivery and token renewal
//! (`docs/protocol.md#the-streaming-endpoints`,
//! `docs/protocol.md#encoding-and-deltas`,
//! `docs/protocol.md#the-ably-js-token-contract`,
//! `docs/protocol.md#the-sse-client-algorithm`).
//!
//! - [`Auth`]: an auth URL ([`AuthUrl`]), an async callback, a fixed token or
//!   an API key. Auth URL replies are read by `Content-Type` as ably-js reads
//!   them: `application/jwt` or `text/plain` is a token string, JSON is
//!   TokenDetails (has `issued`), a TokenRequest (has `keyName`, exchanged
//!   at `POST {endpoint}/keys/{keyName}/requestToken`) or a JSON string (the
//!   token). A token string from JSON or a callback that starts with `{` is
//!   refused as double-encoded (40170), as ably-js refuses it. An auth URL's
//!   error response (300 or above) gives its `{"error": …}` envelope only
//!   with exactly `Content-Type: application/json`, as ably-js reads it;
//!   else its `X-Ably-ErrorCode`; else a 40170 naming the status.
//! - [`Client`] and [`SubscribeOptions`]: `GET {endpoint}/sse?v=1.2&channels=…`
//!   with `accessToken`, `lastEvent`, `rewind` ([`Rewind`]), `delta=vcdiff`,
//!   `enveloped=false` and `heartbeats` as asked.
//! - [`Subscription`]: yields [`Update`]s, decoded [`ChannelMessage`]s and
//!   [`StateChange`]s.
//!
//! # What the subscription guarantees
//!
//! - **Token errors** (40140–40149, 40141 "token revoked" included, as an
//!   `error` event or an error response before the stream, envelope or
//!   `X-Ably-ErrorCode`): the stream is closed, a *new* token fetched and the
//!   stream reopened with `lastEvent`. Nothing parsed after the error event is
//!   delivered. When the auth source then refuses (a revoked user), the
//!   subscription ends with that refusal. After
//!   [`ClientBuilder::max_token_renewals`] token errors in a row with no
//!   message in between, it ends with the Ably error.
//! - **Known expiry** (JWT `exp`, TokenDetails `expires`): the token is
//!   renewed before it, while the old stream is still open, and the stream is
//!   switched with `lastEvent`, so nothing is missed.
//! - **Network errors, 5xx, 5xxxx**: retried with jittered backoff, resuming
//!   with `lastEvent`; once disconnected for longer than the two-minute
//!   resume window, [`StateChange::ContinuityLost`] and a fresh start (also
//!   when the stream dropped before its first message, with no cursor). Any
//!   other 4xx/4xxxx ends the subscription with that error.
//! - **Stalled servers**: a stream request answered by nothing within
//!   [`ClientBuilder::headers_timeout`] (10 s), or a credential step (auth
//!   URL, `requestToken`, callback) that takes longer than
//!   [`ClientBuilder::auth_timeout`] (10 s), fails that attempt and is
//!   retried like a network error. An open stream is limited only by
//!   [`ClientBuilder::read_timeout`], never by a total-request timeout.
//! - **Exactly once, in order**: the cursor moves only when a message is
//!   handed out, and recent message ids are remembered (a bounded set), so
//!   replays after a resume are dropped. A stream that drops before its
//!   first message leaves no cursor (Ably ids only messages): the
//!   reconnection then asks for `rewind=<seconds since the first stream
//!   opened>`, and the ids drop what was already seen. A message that cannot
//!   be decoded (a delta with the wrong base or none named, data that does
//!   not match its `encoding`) is never delivered: the stream resumes from
//!   the last good message. If the same message fails three times in a row
//!   from the same point it never will: the subscription reports
//!   [`StateChange::ContinuityLost`] and starts fresh, without `lastEvent`
//!   or `rewind`, skipping it and whatever was sent meanwhile.
//! - **Deltas and unenveloped messages**: an unenveloped message carries no
//!   channel and no base id, so deltas are applied to the previous payload;
//!   [`SubscribeOptions::validate`] refuses deltas with unenveloped messages
//!   on more than one channel, where that payload may be another channel's.

mod auth;
mod client;
mod decode;
mod rewind;
mod subscription;

pub use auth::{Auth, AuthMethod, AuthUrl, TokenReply};
pub use client::{
    Client, ClientBuilder, DEFAULT_AUTH_TIMEOUT, DEFAULT_ENDPOINT, RESUME_WINDOW, SubscribeOptions,
};
pub use decode::ChannelMessage;
pub use rewind::{ParseRewindError, Rewind};
pub use subscription::{StateChange, Subscription, Update};

// The wire types this module's API names, so that applications need no
// other crate; everything else of Ably's wire formats is in
// [`crate::wire`].
pub use shared::{ApiKey, ErrorInfo, Message, Payload, TokenDetails, TokenParams, TokenRequest};
