//! mock-ably over real HTTP: every endpoint, parameter and error code.
//!
//! Run with `cargo test -p mock-ably --test api`. One binary on purpose
//! (each test binary is another link); one module per area.

mod helpers;

mod apps;
mod auth;
mod channels;
mod connections;
mod controls;
mod delta;
mod history;
mod keys;
mod msgpack;
mod operations;
mod presence;
mod publish;
mod realtime_auth;
mod realtime_channels;
mod realtime_connection;
mod realtime_publish;
mod realtime_resume;
mod resume;
mod revocation;
mod stream;
mod token;
mod ws;
