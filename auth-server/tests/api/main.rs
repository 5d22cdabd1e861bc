//! HTTP tests of the auth server over real sockets on 127.0.0.1 port 0.
//!
//! Run with `cargo test -p auth-server`. One binary, one module per area.

mod ably_token;
mod binary;
mod connections;
mod cookies;
#[cfg(feature = "dev")]
mod dev;
mod helpers;
mod http;
mod jwks;
mod logs;
mod mock_ably;
mod policy_reload;
mod refusals;
mod revoke;
mod tokens;
