#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - [`key`]: API keys (`appId.keyId:secret`), with the secret kept out of logs.
//! - [`capability`]: capabilities, canonical text, wildcard matching, intersection.
//! - [`duration`]: the one duration grammar (`500ms`, `30s`, `15m`, `1h`, `1d`).
//! - [`error_info`]: Ably's `ErrorInfo`, its envelope and the error codes.
//! - [`token`]: TokenRequest (with its MAC, over fields that cannot hold its
//!   separator) and TokenDetails.
//! - [`jwt`]: Ably JWTs: claims, signing and verification with Ably's error codes.
//! - [`message`]: the wire `Message` and its `encoding` chain.
//! - [`protocol`]: realtime `ProtocolMessage` frames, in JSON and msgpack.
//! - [`vcdiff`]: an RFC 3284 decoder and an encoder for Ably's delta subset.

pub mod capability;
pub mod duration;
pub mod error;
pub mod error_info;
#[cfg(test)]
mod fuzz;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod json;
pub mod jwt;
pub mod key;
pub mod message;
pub mod protocol;
pub mod token;
pub mod vcdiff;

pub use capability::{Capability, Operation};
pub use error::{Error, Result};
pub use error_info::{ErrorInfo, ErrorResponse, codes};
pub use jwt::{AblyJwtClaims, VerifiedJwt};
pub use key::ApiKey;
pub use message::{Message, Payload};
pub use token::{TokenDetails, TokenParams, TokenRequest};
