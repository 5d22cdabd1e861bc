//! A client for server-sent events, and for Ably's SSE endpoint on top of
//! it, that renews tokens and resumes without losing or repeating a message.
//!
//! The [`sse`] layer is a generic event-stream client: a sans-IO parser that
//! follows the WHATWG algorithm exactly in linear time and bounded memory,
//! and a reconnecting stream that honours `retry:` and `Last-Event-ID`.
//!
//! # Layout
//!
//! - [`sse`]: bytes → events ([`sse::Parser`]), and the reconnecting stream.
//! - [`Error`]: the one error type, with [`Error::is_retryable`] and
//!   [`Error::status`].

#![cfg_attr(not(test), warn(clippy::print_stdout, clippy::dbg_macro))]

mod error;
pub mod sse;

pub use error::{Error, Result};
