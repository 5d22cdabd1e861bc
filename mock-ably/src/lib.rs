//! A local, faithful stand-in for Ably's SSE and REST endpoints, with fault
//! injection: what our tests, our users' tests and offline development run
//! against.
//!
//! It serves the paths, parameters, frames, error codes and headers written
//! down in `docs/protocol.md` and observed from real clients in
//! `docs/real-clients.md`:
//!
//! - `GET /time`;
//! - `POST /keys/{keyName}/requestToken` with every check of
//!   `docs/protocol.md#exchanging-a-tokenrequest`;
//! - `POST` and `GET /channels/{name}/messages` (publish and history);
//! - `POST /messages` (batch publish) and `GET /channels/{name}` (channel
//!   status and occupancy);
//! - `GET /sse` and `GET /event-stream`, with every parameter of
//!   `docs/protocol.md#stream-parameters`;
//! - a WebSocket upgrade at `/`: Ably's realtime protocol in JSON and
//!   msgpack (the `realtime` module: connection, in-band refusals,
//!   heartbeats, AUTH, expiry, resume, channels and messages through the
//!   same channel model; no presence yet);
//! - under `/_mock/`, controls for tests: drop every stream, expire every
//!   credential, fail the next requests, move the clock, read counters.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mock_ably::{FailNext, FailTarget, MockAbly};
//! use shared::ErrorInfo;
//!
//! let mock = MockAbly::builder().key("app.key:secret").start().await;
//!
//! // Anything that speaks HTTP can talk to it.
//! let url = format!(
//!     "{}/sse?v=1.2&channels=chat&key=app.key:secret",
//!     mock.base_url()
//! );
//! let response = reqwest::get(&url).await?; // 200: the channel is attached
//! mock.publish_data("chat", "greeting", "hello"); // delivered on the stream
//!
//! // Fault injection.
//! mock.drop_streams();
//! mock.fail_next(FailNext::new(ErrorInfo::from_code(50003, "timeout")).target(FailTarget::Stream));
//! mock.expire_credentials();
//! assert_eq!(mock.stats().published, 1);
//! # drop(response);
//! # Ok(())
//! # }
//! ```
//!
//! # Mock policy
//!
//! Where Ably's behaviour is undocumented (\[U\] in `docs/protocol.md`) or
//! does not suit a local server, the mock does this:
//!
//! - **Basic auth over plain HTTP** is allowed (40103 is never sent): the mock
//!   serves loopback HTTP only.
//! - **`v` and `X-Ably-Version`** are accepted, whatever their value, and
//!   ignored; a stream without `v` is accepted too.
//! - **`requestToken`** answers `200` (clients accept any 2xx).
//! - **`requestToken` with a line feed in a signed field** (`keyName`,
//!   `capability`, `nonce`), or any control character in `clientId`, is
//!   refused with 40003 before the MAC is checked: the MAC covers the fields
//!   joined by `\n`, so such a field could carry a valid MAC over to a forged
//!   request. Real Ably's answer is not publicly specified.
//! - **Bearer tokens** are tried raw, then base64-decoded; `accessToken` and
//!   `access_token` are both accepted.
//! - **JWTs** are verified with no clock leeway.
//! - **No token revocation**: nothing revokes a token or JWT, so 40141
//!   (token revoked) is never sent; `x-ably-revocation-key` is only checked
//!   for shape. [`MockAbly::expire_credentials`] ends credentials early, with
//!   40142.
//! - **Subscribe capability** is checked for every channel before the
//!   stream starts: 401 with a 40160 envelope, no stream.
//! - **`lastEvent`** that is unknown or no longer covered by retention starts
//!   a fresh stream with no backlog and no error
//!   (`docs/protocol.md#unknown-or-expired-resume-points`). The
//!   **`Last-Event-ID`** header is accepted as well and wins over the
//!   parameter, since an `EventSource` keeps its original URL. With either,
//!   `rewind` is ignored. A resume covers exactly the channels of the new
//!   request.
//! - **Resume cursors** (the SSE `id:`) are `<instance>:<n>`: opaque, not the
//!   message id, meaningful only to the mock that issued them.
//! - **Heartbeats** (`heartbeats=true`) are `event: heartbeat` with an empty
//!   `data:` line, sent instead of `:keepalive` comments.
//! - **Envelopes** carry `channel` as the bare channel name, without any
//!   `[?…]` qualifier.
//! - **Deltas**: the first message on each channel after any (re)connect is
//!   sent in full (`docs/protocol.md#deltas-after-a-resume`).
//! - **clientId**: a declared (`X-Ably-ClientId`, `clientId=`) or message
//!   clientId that the credential does not allow is refused with 40102; an
//!   empty one with 40012.
//! - **Slow streams** more than `lag_limit` messages behind are cut off
//!   abruptly (no error event), and can resume with `lastEvent`. "Behind"
//!   counts what the stream has yet to send: the backlog of a resume or
//!   rewind as well as queued live messages. A backlog over the limit (one
//!   resume over several full channels) is still sent; a live message that
//!   arrives before it is back under the limit cuts the stream.
//! - **Connections** that send no complete request head within 10 s, or sit
//!   idle between requests for 60 s, are closed; past 10,000 at once, a new
//!   one is answered 503 with code 50000 and closed (all three adjustable on
//!   the builder). An open stream is never idle.
//! - **Realtime refusals** (bad credential, clientId or parameter) are sent
//!   in-band after the upgrade, never as an HTTP error; a parameter value the
//!   mock cannot use is ERROR 40003 (answered in JSON when `format` itself is
//!   the bad one). A realtime connection's `connectionKey` never changes,
//!   also across AUTH; a resume must act as the same clientId, and one of a
//!   connection still open is refused like an unknown key (80008).
//! - **Publishing to `[meta]` channels** is refused with 40160.
//! - **msgpack on REST**: a request whose `Accept` lists both JSON and
//!   msgpack gets the one ranked first (by `q`, then by order); `format`
//!   wins over `Accept`.
//!
//! # Layout
//!
//! - `server`: [`MockAbly`] and its builder.
//! - `keys`: [`KeySpec`], a key and its capability as `--key` takes them
//!   (`appId.keyId:secret={"chat:*":["subscribe"]}`); Ably's default
//!   [`DEFAULT_KEY_CAPABILITY`] for a key given without one.
//! - `routes`: the HTTP surface, CORS and the fail-next switch.
//! - `origin`: [`is_loopback_origin`], who may reach `/_mock/*` from a browser.
//! - `auth`: finding and verifying credentials; issued tokens and nonces.
//! - `channel`: the registry: retention rings, subscribers, the global
//!   sequence behind resume cursors.
//! - `stream` and `frame`: the body of an open stream and its bytes.
//! - `delta`: per-connection vcdiff state.
//! - `publish`: turning published messages into stored ones.
//! - `realtime`: the WebSocket connection and the registry of open and
//!   resumable connections.

#![cfg_attr(not(test), warn(clippy::print_stdout, clippy::dbg_macro))]

mod auth;
mod channel;
mod clock;
mod delta;
mod error;
mod faults;
mod frame;
#[cfg(test)]
mod fuzz;
mod keys;
mod origin;
mod params;
mod presence;
mod publish;
mod realtime;
mod revocation;
mod routes;
mod server;
mod state;
mod stats;
mod stream;

pub use clock::MAX_CLOCK_OFFSET;
pub use faults::{FailNext, FailTarget};
pub use keys::{DEFAULT_KEY_CAPABILITY, KeySpec, KeySpecError};
pub use origin::is_loopback_origin;
pub use server::{
    DEFAULT_AUTH_LEAD, DEFAULT_CONNECTION_STATE_TTL, DEFAULT_KEEPALIVE, DEFAULT_LAG_LIMIT,
    DEFAULT_MAX_IDLE_INTERVAL, DEFAULT_REMAIN_PRESENT_FOR, DEFAULT_RETENTION,
    DEFAULT_RETENTION_COUNT, DEV_KEY, MockAbly, MockAblyBuilder,
};
pub use stats::{ChannelStats, Stats};
