//! The crate's one error type.

use crate::error_info::{ErrorInfo, codes};

/// Everything that can go wrong in `shared`.
///
/// Messages are lowercase fragments without trailing punctuation so that they
/// chain well. [`Error::error_info`] maps each variant to the Ably error a
/// server should answer with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An API key string is not of the form `appId.keyId:secret`.
    #[error("invalid API key: {0}")]
    InvalidKey(&'static str),
    /// A capability is not a JSON object mapping resource names to arrays of
    /// known operations.
    #[error("invalid capability: {0}")]
    InvalidCapability(String),
    /// Intersecting two capabilities left nothing (Ably rejects this).
    #[error("capability intersection is empty")]
    EmptyCapability,
    /// A TokenRequest is missing a field or has an out-of-range value.
    #[error("invalid token request: {0}")]
    InvalidTokenRequest(String),
    /// Ably's rules reject a credential: a JWT that fails verification, a
    /// TokenRequest whose MAC does not match. Carries the exact Ably error.
    #[error("rejected: {0}")]
    Rejected(ErrorInfo),
    /// Signing a JWT failed.
    #[error("cannot sign JWT")]
    JwtSign(#[source] jsonwebtoken::errors::Error),
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(getrandom::Error),
    /// A message's `data` does not match its `encoding`.
    #[error("invalid message encoding: {0}")]
    InvalidEncoding(String),
    /// A VCDIFF delta is malformed, unsupported, or does not fit its base.
    #[error("invalid vcdiff delta: {0}")]
    Vcdiff(String),
    /// A realtime frame is not a ProtocolMessage in the connection's format
    /// (JSON or msgpack).
    #[error("invalid protocol message: {0}")]
    InvalidProtocolMessage(String),
    /// A REST body sent as msgpack does not read.
    #[error("invalid msgpack body: {0}")]
    InvalidMsgpackBody(String),
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The Ably error a server should return for this failure.
    ///
    /// Client faults map to 4xxxx codes with their registry status (see
    /// `docs/protocol.md#error-codes`); internal failures map to 50000.
    pub fn error_info(&self) -> ErrorInfo {
        match self {
            Error::Rejected(info) => info.clone(),
            Error::InvalidKey(_) => {
                ErrorInfo::from_code(codes::INVALID_CREDENTIAL_FORMAT, self.to_string())
            }
            Error::InvalidCapability(_) => {
                ErrorInfo::from_code(codes::BAD_REQUEST, self.to_string())
            }
            Error::EmptyCapability => {
                ErrorInfo::from_code(codes::OPERATION_NOT_PERMITTED, self.to_string())
            }
            Error::InvalidTokenRequest(_) => {
                ErrorInfo::from_code(codes::INVALID_REQUEST_BODY, self.to_string())
            }
            Error::InvalidEncoding(_) => {
                ErrorInfo::from_code(codes::INVALID_MESSAGE_DATA, self.to_string())
            }
            Error::Vcdiff(_) => ErrorInfo::from_code(codes::DELTA_DECODE_FAILED, self.to_string()),
            Error::InvalidProtocolMessage(_) => {
                ErrorInfo::from_code(codes::BAD_REQUEST, self.to_string())
            }
            Error::InvalidMsgpackBody(_) => {
                ErrorInfo::from_code(codes::INVALID_REQUEST_BODY, self.to_string())
            }
            Error::JwtSign(_) | Error::Random(_) => {
                ErrorInfo::from_code(codes::INTERNAL_ERROR, "internal error")
            }
        }
    }
}
