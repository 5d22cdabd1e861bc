//! A generic event-stream client that knows nothing about Ably.
//!
//! - [`Parser`]: the pure WHATWG parser, bytes in and [`Frame`]s out.
//! - [`EventSource`]: a reconnecting stream with browser semantics and a
//!   per-attempt request hook ([`EventSource::with_hook`]).
//! - [`ReconnectOptions`]: reconnection time, backoff, jitter, limits.
//!
//! # The parser
//!
//! [`Parser::feed`] takes the body in chunks of any size, split anywhere, and
//! queues what they complete; [`Parser::next_frame`] hands the queue out in
//! order. The work is linear in the input whatever the chunking:
//!
//! - line ends are found with `memchr2`, and only bytes not yet scanned are
//!   scanned: a line that spans chunks is copied once into a carry-over buffer
//!   and the search resumes in the next chunk, never from the line's start;
//! - a CR that ends a chunk ends the line at once, and an LF that starts the
//!   next chunk is then swallowed (the CRLF split across chunks);
//! - each line is decoded from UTF-8 once, lossily: invalid sequences become
//!   U+FFFD and never stop the stream;
//! - memory is bounded by [`Limits`]: a line or an event larger than its cap
//!   ends the stream with [`Error::LineTooLong`](crate::Error::LineTooLong) or
//!   [`Error::EventTooLarge`](crate::Error::EventTooLarge).

mod backoff;
pub(crate) mod connection;
mod event_source;
mod parser;

pub(crate) use backoff::Jitter;
pub use backoff::ReconnectOptions;
pub use connection::Request;
pub(crate) use event_source::default_client;
pub use event_source::{
    Attempt, DEFAULT_HEADERS_TIMEOUT, DEFAULT_READ_TIMEOUT, EventSource, EventSourceBuilder, Item,
};
pub use parser::{DEFAULT_MAX_SIZE, Event, Frame, Limits, Parser};
