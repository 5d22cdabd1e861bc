#![doc = include_str!("../README.md")]
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
