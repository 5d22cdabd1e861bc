//! The crate's one error type.

use std::time::Duration;

use shared::ErrorInfo;

/// Everything that can go wrong in this crate.
///
/// Ask the error what it means rather than matching on text:
/// [`Error::is_retryable`] says whether a reconnection may help, and
/// [`Error::status`] gives the HTTP status behind it, if any.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Ably said no: an `error` event, an error response before the stream
    /// started, or a credential that could not be obtained. Carries Ably's
    /// own code, status and message
    /// ([`ErrorInfo`](crate::ably::ErrorInfo)).
    #[error("ably error {}: {}", .0.code, .0.message)]
    Ably(ErrorInfo),
    /// The server answered with a status other than 200 (a plain event stream;
    /// Ably errors arrive as [`Error::Ably`]). 204 is how a server says stop.
    #[error("unexpected HTTP status {status}")]
    Status {
        /// The response status.
        status: u16,
    },
    /// The server answered 200 with something other than `text/event-stream`.
    #[error("unexpected content type {0:?}, expected text/event-stream")]
    ContentType(String),
    /// The request failed: connection refused, reset, TLS, a broken body,
    /// a redirect loop. The URL is stripped from the error, since its query
    /// may carry a token.
    #[error("request failed")]
    Transport(#[source] reqwest::Error),
    /// No bytes arrived for the configured read timeout.
    #[error("no data for {0:?}")]
    ReadTimeout(Duration),
    /// The server took the request but sent no response headers within the
    /// configured headers timeout (for an Ably stream: no complete error
    /// response either). Retried like a network error.
    #[error("no response headers within {0:?}")]
    HeadersTimeout(Duration),
    /// The auth URL, the `requestToken` exchange or the auth callback gave
    /// no answer within the configured auth timeout. Retried like a network
    /// error.
    #[error("no credential within {0:?}")]
    AuthTimeout(Duration),
    /// The server closed the stream.
    #[error("the server closed the stream")]
    StreamEnded,
    /// A line was longer than [`Limits::max_line`](crate::sse::Limits).
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The cap that was exceeded.
        limit: usize,
    },
    /// An event was larger than [`Limits::max_event`](crate::sse::Limits).
    #[error("event larger than {limit} bytes")]
    EventTooLarge {
        /// The cap that was exceeded.
        limit: usize,
    },
    /// A message could not be decoded (its `data` does not match its
    /// `encoding`, or a delta does not apply). The source is
    /// [`wire::Error`](crate::wire::Error).
    #[error("cannot decode message")]
    Decode(#[source] shared::Error),
    /// The client was configured with something unusable: a URL that does not
    /// parse, a header that is not valid HTTP.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The reconnection limit was reached; carries the last failure.
    #[error("gave up after {attempts} attempts")]
    RetriesExhausted {
        /// How many connections were tried in a row.
        attempts: u32,
        /// Why the last one failed.
        #[source]
        last: Box<Error>,
    },
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a reqwest error without its URL: `accessToken=` and auth URL
    /// parameters must never reach a log line or an error message.
    pub(crate) fn transport(err: reqwest::Error) -> Self {
        Error::Transport(err.without_url())
    }

    /// Whether reconnecting may help: network failures, timeouts, the stream
    /// ending, 5xx and 429 responses, and Ably errors with a 5xx status or a
    /// 5xxxx code. Token errors (40140–40149) are not retryable as such: they
    /// need a new token first, see [`Error::is_token_error`].
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(err) => !(err.is_builder() || err.is_redirect()),
            Error::ReadTimeout(_)
            | Error::HeadersTimeout(_)
            | Error::AuthTimeout(_)
            | Error::StreamEnded => true,
            Error::Status { status } => *status >= 500 || *status == 429,
            Error::Ably(info) => info.status_code >= 500 || (50000..60000).contains(&info.code),
            Error::RetriesExhausted { .. }
            | Error::ContentType(_)
            | Error::LineTooLong { .. }
            | Error::EventTooLarge { .. }
            | Error::Decode(_)
            | Error::Config(_) => false,
        }
    }

    /// Whether this is an Ably token error (codes 40140–40149), which a new
    /// token cures.
    pub fn is_token_error(&self) -> bool {
        matches!(self, Error::Ably(info) if info.is_token_error())
    }

    /// The HTTP status behind the error: the response status, or an Ably
    /// error's `statusCode`.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status } => Some(*status),
            Error::Ably(info) => Some(info.status_code),
            Error::Transport(err) => err.status().map(|status| status.as_u16()),
            Error::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The Ably error behind this error, if there is one.
    pub fn error_info(&self) -> Option<&ErrorInfo> {
        match self {
            Error::Ably(info) => Some(info),
            Error::RetriesExhausted { last, .. } => last.error_info(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        assert!(Error::StreamEnded.is_retryable());
        assert!(Error::ReadTimeout(Duration::from_secs(1)).is_retryable());
        assert!(Error::HeadersTimeout(Duration::from_secs(1)).is_retryable());
        assert!(Error::AuthTimeout(Duration::from_secs(1)).is_retryable());
        assert!(Error::Status { status: 503 }.is_retryable());
        assert!(Error::Status { status: 429 }.is_retryable());
        assert!(Error::Ably(ErrorInfo::from_code(50003, "timeout")).is_retryable());

        assert!(!Error::Status { status: 404 }.is_retryable());
        assert!(!Error::Status { status: 204 }.is_retryable());
        assert!(!Error::ContentType("text/plain".into()).is_retryable());
        assert!(!Error::Ably(ErrorInfo::from_code(40142, "expired")).is_retryable());
        assert!(!Error::Ably(ErrorInfo::from_code(40160, "denied")).is_retryable());
    }

    #[test]
    fn token_errors_and_statuses_are_reported() {
        let expired = Error::Ably(ErrorInfo::from_code(40142, "expired"));

        assert!(expired.is_token_error());
        assert_eq!(expired.status(), Some(401));
        assert_eq!(Error::Status { status: 204 }.status(), Some(204));
        assert_eq!(Error::StreamEnded.status(), None);
        let exhausted = Error::RetriesExhausted {
            attempts: 3,
            last: Box::new(expired),
        };
        assert_eq!(exhausted.error_info().map(|info| info.code), Some(40142));
    }
}
