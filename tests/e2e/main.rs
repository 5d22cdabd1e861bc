//! The end-to-end suite: one test binary, one module per flow.
//!
//! Run with `cargo test -p integration-tests --test e2e`. Flows arrive with the
//! auth-server, mock-ably and sse-client issues.
