//! A client for server-sent events, and for Ably's SSE endpoint on top of
//! it, that renews tokens and resumes without losing or repeating a message.
//!
//! The [`sse`] layer is a generic event-stream client: a sans-IO parser that
//! follows the WHATWG algorithm exactly in linear time and bounded memory,
//! and a reconnecting stream that honours `retry:` and `Last-Event-ID`. The
//! [`ably`] layer subscribes to Ably channels with it: it fetches tokens,
//! builds each attempt's URL, decodes messages (encodings and vcdiff deltas),
//! delivers each exactly once and renews tokens before or when they expire.
//!
//! # Example
//!
//! ```no_run
//! use sse_client::ably::{Auth, AuthUrl, Client, StateChange, SubscribeOptions, Update};
//!
//! # async fn run() -> sse_client::Result<()> {
//! let client = Client::builder()
//!     .auth(Auth::auth_url(
//!         AuthUrl::new("https://example.com/api/ably-jwt")?
//!             .header("Authorization", "Bearer my-session")?,
//!     ))
//!     .build()?;
//! let mut subscription = client.subscribe(SubscribeOptions::new(["chat:lobby"]).rewind(10));
//! while let Some(update) = subscription.next().await {
//!     match update? {
//!         Update::Message(message) => println!("{:?}: {:?}", message.channel, message.payload),
//!         Update::State(StateChange::ContinuityLost) => eprintln!("some messages may be missing"),
//!         Update::State(state) => eprintln!("{state:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`sse`]: bytes → events ([`sse::Parser`]), and the reconnecting
//!   [`sse::EventSource`] with its per-attempt request hook.
//! - [`ably`]: credentials ([`ably::Auth`]), the [`ably::Client`], and the
//!   [`ably::Subscription`] that decodes, deduplicates and renews.
//! - [`Error`]: the one error type, with [`Error::is_retryable`],
//!   [`Error::is_token_error`] and [`Error::status`].

#![cfg_attr(not(test), warn(clippy::print_stdout, clippy::dbg_macro))]

pub mod ably;
mod error;
pub mod sse;

pub use ably::{Auth, AuthUrl, ChannelMessage, Client, StateChange, SubscribeOptions, Update};
pub use error::{Error, Result};

/// Ably's wire types, as this crate's API names them: the workspace's
/// `shared` crate re-exported whole, so that `sse-client` is the only
/// dependency an application needs.
///
/// The ones an application meets every day are also at
/// [`sse_client::ably`](crate::ably): [`ApiKey`](crate::ably::ApiKey) for
/// [`Auth::key`], [`TokenParams`](crate::ably::TokenParams) for
/// [`Auth::callback`], [`TokenDetails`](crate::ably::TokenDetails) and
/// [`TokenRequest`](crate::ably::TokenRequest) for
/// [`TokenReply`](crate::ably::TokenReply), [`Message`](crate::ably::Message)
/// and [`Payload`](crate::ably::Payload) in a [`ChannelMessage`], and
/// [`ErrorInfo`](crate::ably::ErrorInfo) in [`Error::Ably`]. The rest
/// (`wire::message::DeltaExtras`, `wire::token::ClientId`, the error codes in
/// `wire::codes`, `wire::Error` inside [`Error::Decode`]) is here.
pub mod wire {
    #[doc(inline)]
    pub use shared::*;
}

// The README's Rust examples are compiled as doctests of this crate, so they
// cannot drift from the API. Snippets for the other crates there (top-level
// `.await` or `?`) are fenced `rust,ignore`; their own crate docs compile
// them.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
