//! Test support for the end-to-end suite: [`TestEnv`] starts mock-ably and
//! the auth server in this process, on `127.0.0.1` port 0, and hands out
//! sse-client [`Client`](sse_client::ably::Client)s that log in through the
//! auth server as the app's users.
//!
//! The suite itself is `e2e/main.rs`, one test binary with a module per
//! flow; run it with `cargo test -p integration-tests --test e2e`.
//!
//! # Knobs
//!
//! - `TEST_LOG=1` turns tracing on (`RUST_LOG` filters it; default `debug`
//!   for our crates). Off otherwise.
//! - `TEST_PATIENCE_MS` is how long any single wait may take before the test
//!   fails (default 10 000). Every await on a stream or a socket goes through
//!   [`within_named`], so a bug fails the test instead of hanging it.
//!
//! # Example
//!
//! ```no_run
//! use integration_tests::{TestEnv, connected, next_message, text};
//! use sse_client::ably::SubscribeOptions;
//!
//! # async fn run() {
//! let env = TestEnv::start().await;
//! let mut sub = env
//!     .client_for("alice")
//!     .subscribe(SubscribeOptions::new(["chat:lobby"]));
//! connected(&mut sub).await;
//!
//! env.publish("chat:lobby", "hello").await;
//!
//! let (_, message) = next_message(&mut sub).await;
//! assert_eq!(text(&message), "hello");
//! # }
//! ```
//!
//! # Layout
//!
//! - `env`: [`TestEnv`], its builder, [`Login`] and [`TokenEndpoint`].
//! - `metrics`: [`AuthMetrics`], the auth server's counters read from
//!   `/metrics`.
//! - `wait`: [`within_named`], [`eventually`] and the subscription helpers ([`connected`],
//!   [`next_message`], [`final_error`], ...).
//! - `citations` (unit tests only): every `docs/` citation in the repository
//!   resolves to a file and heading, and nothing names a path outside it; run
//!   it with `cargo test -p integration-tests --lib citations`.

#[cfg(test)]
mod citations;
mod env;
mod metrics;
mod wait;

pub use env::{
    ABLY_KEY, ADMIN_ROLE, APP_SECRET, Login, POLICY, TestEnv, TestEnvBuilder, TokenEndpoint,
    WRONG_SECRET_KEY, app_token_signed_with,
};
pub use metrics::AuthMetrics;
pub use wait::{
    connected, eventually, final_error, next_message, next_update, patience, text, within_named,
};
