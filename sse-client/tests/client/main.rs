//! The sse-client integration tests: one binary, a module per area.
//!
//! Run with `cargo test -p sse-client`.

mod ably;
mod cli;
mod event_source;
mod mock;
mod parser;
mod parser_properties;
mod support;
