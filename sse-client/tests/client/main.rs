//! The sse-client integration tests: one binary, a module per area.
//!
//! Run with `cargo test -p sse-client`.

mod ably;
// The CLI's tests need the binary, which only the `cli` feature builds.
#[cfg(feature = "cli")]
mod cli;
mod event_source;
mod mock;
mod parser;
mod parser_properties;
mod support;
