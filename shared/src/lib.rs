//! Ably's wire formats, shared by `auth-server`, `sse-client` and `mock-ably`
//! so that the three can never disagree.
//!
//! Everything here is pure: no I/O, no async runtime. The rules it implements
//! are written down in `docs/protocol.md`; each module quotes the section it
//! follows.
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
//!
//! # Example
//!
//! ```
//! use shared::capability::{Capability, Operation};
//! use shared::jwt::{self, AblyJwtClaims};
//! use shared::message::{Message, Payload};
//! use shared::token::{TokenParams, TokenRequest};
//! use shared::ApiKey;
//!
//! let key = ApiKey::parse("xVLyHw.mDYnFA:s3cr3t")?;
//!
//! // What a user may do: the request narrowed by the key's own capability.
//! let requested = Capability::parse(r#"{"chat:*":["subscribe","publish"],"private":["*"]}"#)?;
//! let key_capability = Capability::parse(r#"{"chat:*":["subscribe"],"[*]*":["history"]}"#)?;
//! let granted = requested.intersect(&key_capability)?;
//! assert_eq!(granted.to_string(), r#"{"chat:*":["subscribe"],"private":["history"]}"#);
//! assert!(granted.allows(Operation::Subscribe, "chat:lobby"));
//!
//! // An Ably JWT for that capability, and the same check Ably makes on it.
//! let now = 1_700_000_000;
//! let mut claims = AblyJwtClaims::new(now, now + 3600, granted.to_string());
//! claims.client_id = Some("user-1".to_owned());
//! let token = jwt::encode_jwt(&key, &claims)?;
//! let verified = jwt::verify_jwt(&token, [&key], now, 0)?;
//! assert_eq!(verified.claims.client_id.as_deref(), Some("user-1"));
//!
//! // A signed TokenRequest (`docs/protocol.md#the-tokenrequest-mac`).
//! let params = TokenParams { client_id: Some("user-1".to_owned()), ..TokenParams::default() };
//! let request = TokenRequest::new_signed(&key, params, 1_700_000_000_000)?;
//! request.verify_mac(key.secret())?;
//!
//! // A message as it arrives on the SSE stream, decoded right to left.
//! let message: Message = serde_json::from_str(r#"{"id":"a:0:0","data":"eyJmb28iOjF9","encoding":"json/utf-8/base64"}"#)?;
//! let decoded = message.decode_data()?.expect("the message has data");
//! assert_eq!(decoded.payload, Payload::Json(serde_json::json!({"foo": 1})));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
