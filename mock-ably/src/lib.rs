#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - `server`: [`MockAbly`] and its builder.
//! - `keys`: [`KeySpec`], a key and its capability as `--key` takes them
//!   (`appId.keyId:secret={"chat:*":["subscribe"]}`); Ably's default
//!   [`DEFAULT_KEY_CAPABILITY`] for a key given without one.
//! - `apps`: `POST /apps` and `DELETE /apps/{id}`, each app a [`MockAbly`]
//!   of its own.
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

mod apps;
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

pub use apps::DEFAULT_MAX_APPS;
pub use clock::MAX_CLOCK_OFFSET;
pub use faults::{FailNext, FailTarget};
pub use keys::{DEFAULT_KEY_CAPABILITY, KeySpec, KeySpecError};
pub use origin::is_loopback_origin;
pub use server::{
    DEFAULT_AUTH_LEAD, DEFAULT_CONNECTION_STATE_TTL, DEFAULT_KEEPALIVE, DEFAULT_LAG_LIMIT,
    DEFAULT_MAX_IDLE_INTERVAL, DEFAULT_REMAIN_PRESENT_FOR, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETENTION, DEFAULT_RETENTION_COUNT, DEV_KEY, MockAbly, MockAblyBuilder,
};
pub use stats::{ChannelStats, Stats};
