//! Ably's wire formats, shared by `auth-server`, `sse-client` and `mock-ably`
//! so that the three can never disagree.
//!
//! Everything here is pure: no I/O, no async runtime. The rules it implements
//! are written down in `ABLY-PROTOCOL.md`; each module quotes the section it
//! follows.
//!
//! # Layout
//!
//! - [`key`]: API keys (`appId.keyId:secret`), with the secret kept out of logs.
//! - [`capability`]: capabilities, canonical text, wildcard matching, intersection.
//! - [`error_info`]: Ably's `ErrorInfo`, its envelope and the error codes.
//! - [`token`]: TokenRequest (with its MAC) and TokenDetails.
//! - [`jwt`]: Ably JWTs: claims, signing and verification with Ably's error codes.
//! - [`message`]: the wire `Message` and its `encoding` chain.
//! - [`vcdiff`]: an RFC 3284 decoder and an encoder for Ably's delta subset.

pub mod capability;
pub mod error;
pub mod error_info;
pub mod jwt;
pub mod key;
pub mod message;
pub mod token;
pub mod vcdiff;

pub use capability::{Capability, Operation};
pub use error::{Error, Result};
pub use error_info::{ErrorInfo, ErrorResponse, codes};
pub use jwt::{AblyJwtClaims, VerifiedJwt};
pub use key::ApiKey;
pub use message::{Message, Payload};
pub use token::{TokenDetails, TokenParams, TokenRequest};
