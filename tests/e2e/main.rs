//! The end-to-end suite: mock-ably and the auth server on loopback ports in
//! this process, driven through the sse-client library as an app's users
//! would drive them. One test binary, one module per flow.
//!
//! Run it on its own with `cargo test -p integration-tests --test e2e`, and
//! the minute-long soak with `cargo test -p integration-tests --test e2e --
//! --ignored`.
//! `TEST_LOG=1` shows tracing; `TEST_PATIENCE_MS` bounds every wait
//! (default 10 000).

mod faults;
mod login;
mod realtime;
mod refusals;
mod revocation;
mod token_kinds;
