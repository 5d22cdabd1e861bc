//! Ably's error envelope as an axum response
//! (`docs/protocol.md#the-error-envelope`,
//! `docs/real-clients.md#token-errors-and-renewal`).
//!
//! Every error the mock answers over HTTP is:
//!
//! - the status of the `ErrorInfo`;
//! - `Content-Type: application/json` exactly, with no `charset`: ably-js in
//!   Node parses the body only when the type is exactly that;
//! - `X-Ably-ErrorCode` and `X-Ably-ErrorMessage`, which the browser build
//!   needs before it reads the body at all;
//! - the body `{"error": ErrorInfo}`.
//!
//! That includes requests axum cannot read. Handlers therefore take only
//! extractors that cannot fail (`State`, `HeaderMap`, `RawQuery`; query
//! strings are decoded by `params::Query`, leniently) or whose failure is
//! mapped here: [`PathParam`] instead of axum's `Path` (40003), and
//! `Result<Bytes, BytesRejection>` through [`body`] (40009, 40000). axum's
//! `Query`, `Json` and `Form` extractors, whose rejections are `text/plain`,
//! are not used.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use shared::{ErrorInfo, codes};

/// An Ably error on its way out as an HTTP response.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) ErrorInfo);

/// `Result` for handlers.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with the registry status for `code`.
    pub(crate) fn new(code: u32, message: impl Into<String>) -> Self {
        Self(ErrorInfo::from_code(code, message))
    }
}

impl From<ErrorInfo> for ApiError {
    fn from(info: ErrorInfo) -> Self {
        Self(info)
    }
}

impl From<shared::Error> for ApiError {
    fn from(err: shared::Error) -> Self {
        Self(err.error_info())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.to_http_response().map(axum::body::Body::from)
    }
}

/// A request body, or the envelope for one axum could not read: 40009 (413)
/// past axum's 2 MB default limit, 40000 otherwise.
pub(crate) fn body(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(codes::MESSAGE_TOO_LARGE, "Request body too large")
        } else {
            ApiError::new(codes::BAD_REQUEST, rejection.body_text())
        }
    })
}

/// The one parameter of a route's path (`{channel}`, `{key_name}`),
/// percent-decoded: axum's `Path<String>` with the mock's envelope for a
/// segment that does not decode (`/channels/%FF/messages`: not UTF-8), 40003
/// (400), instead of axum's `text/plain` 400.
#[derive(Debug)]
pub(crate) struct PathParam(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

/// Two path parameters (a channel and a message serial), with
/// [`PathParam`]'s rejections.
#[derive(Debug)]
pub(crate) struct PathParams(pub(crate) String, pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<(String, String)>::from_request_parts(parts, state).await {
            Ok(Path((first, second))) => Ok(Self(first, second)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

/// A path that does not decode is the client's fault (40003); anything else
/// axum can reject a `Path` for (a route without the parameter) is ours.
fn path_rejection(rejection: &PathRejection) -> ApiError {
    if rejection.status().is_client_error() {
        ApiError::new(
            codes::INVALID_PARAMETER_VALUE,
            format!("Invalid path: {}", rejection.body_text()),
        )
    } else {
        ApiError::new(codes::INTERNAL_ERROR, rejection.body_text())
    }
}
