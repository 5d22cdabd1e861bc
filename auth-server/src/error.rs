//! [`ApiError`]: every way a request can fail, rendered as Ably's error
//! envelope (`docs/protocol.md#the-error-envelope`).
//!
//! Every error response is `{"error":{code,statusCode,message,href}}` with
//! exactly `Content-Type: application/json` (ably-js in Node parses the body
//! only then) and the `X-Ably-ErrorCode` / `X-Ably-ErrorMessage` headers
//! (which browsers and other content types fall back to).
//!
//! The status decides what an SDK does next
//! (`docs/protocol.md#auth-failures-and-retries`): 401 makes ably-js retry
//! later, 403 makes it stop. So bad or missing *user* credentials are 401, and
//! a user who is known but may not have what they asked for gets 403.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::error_info::{ERROR_CODE_HEADER, ERROR_MESSAGE_HEADER};
use shared::{ErrorInfo, codes};

/// `X-Ably-ErrorCode`.
pub(crate) const X_ABLY_ERRORCODE: HeaderName = HeaderName::from_static(ERROR_CODE_HEADER);
/// `X-Ably-ErrorMessage`.
pub(crate) const X_ABLY_ERRORMESSAGE: HeaderName = HeaderName::from_static(ERROR_MESSAGE_HEADER);

/// A failed request, as the client will see it.
///
/// Messages say what was wrong without quoting credentials: never the app
/// JWT, never a key secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No `Authorization: Bearer` app token: 401, 40101.
    #[error("no app token: send Authorization: Bearer <app JWT>")]
    MissingCredentials,
    /// Neither an `Authorization: Bearer` app token nor the
    /// `AUTH_APP_JWT_COOKIE` cookie: 401, 40101.
    #[error("no app token: send Authorization: Bearer <app JWT> or the {cookie} cookie")]
    MissingCredentialsOrCookie {
        /// The cookie's name.
        cookie: String,
    },
    /// The app token failed verification: 401, 40101.
    #[error("invalid app token: {0}")]
    InvalidCredentials(String),
    /// The verified user may not have any of what they asked for: 403, 40160.
    #[error("capability denied: {0}")]
    CapabilityDenied(String),
    /// `POST /api/revoke` from a verified user without `AUTH_ADMIN_ROLE`:
    /// 403, 40300.
    #[error("revoking tokens needs the {role} role")]
    NotAdmin {
        /// The role that would have been needed.
        role: String,
    },
    /// The request names a clientId that is not the verified user's: 403, 40102.
    #[error("clientId {requested:?} does not match the authenticated user")]
    ClientIdMismatch {
        /// The clientId the request asked for.
        requested: String,
    },
    /// A token parameter or the body is malformed: 400, 40003.
    #[error("{0}")]
    BadRequest(String),
    /// The body is over the configured limit: 413, 40009.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Over a rate limit: 429, 42910, with `Retry-After`.
    #[error("rate limit exceeded ({scope}); retry in {} s", retry_after.as_secs())]
    RateLimited {
        /// What was limited: `"per user"` or `"per IP"`.
        scope: &'static str,
        /// How long until a request will be allowed.
        retry_after: Duration,
    },
    /// No such endpoint: 404, 40400.
    #[error("not found: see the README for the endpoints")]
    NotFound,
    /// The endpoint exists but not with this method: 405, 40500.
    #[error("method not allowed: see the README for the endpoints")]
    MethodNotAllowed,
    /// Dev mode: a `/dev/*` request from a browser page whose origin is not
    /// a loopback one: 403, 40300.
    #[error(
        "dev mode's /dev/ endpoints answer browsers only from loopback origins \
         (http(s)://localhost, 127.0.0.0/8 or [::1], any port)"
    )]
    ForbiddenOrigin,
    /// Dev mode: a request addressed (`Host`) to another name than a
    /// loopback one, as a page on a DNS-rebound name sends: 403, 40300.
    #[error(
        "dev mode answers only requests addressed to a loopback host \
         (localhost, 127.0.0.0/8 or [::1], any port)"
    )]
    ForbiddenHost,
    /// The request took longer than the configured timeout: 503, 50003.
    #[error("request timed out")]
    Timeout,
    /// A dependency (the identity provider's keys, Ably) cannot be reached:
    /// the given status (502, 503 or 504) with a 5xxxx code.
    #[error("{message}")]
    Unavailable {
        /// The HTTP status.
        status: StatusCode,
        /// The Ably code.
        code: u32,
        /// What could not be reached.
        message: String,
    },
    /// Ably refused the request and the caller may act on it: its rate limit
    /// on `/api/ably-token` (429), or in dev mode the mock's refusal of a demo
    /// publish. Passed on as Ably sent it.
    #[error("Ably refused the request: {0}")]
    Ably(ErrorInfo),
    /// Ably refused the server's own `requestToken` (`/api/ably-token`): its
    /// key, its clock or its request, nothing the caller can fix: 500, 50000.
    #[error("Ably refused the auth server's {what}: {message} (Ably code {code})")]
    AblyRefusedServer {
        /// What was refused, with a hint for the operator.
        what: &'static str,
        /// Ably's error code.
        code: u32,
        /// Ably's message.
        message: String,
    },
    /// A bug or an unexpected failure: 500, 50000, with a generic message;
    /// the detail is logged.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// `Result` with [`ApiError`] as the default error type.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Why a request was refused: a short label for logs and the
/// `auth_refusals_total{reason=...}` metric, carried in the response's
/// extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefusalReason(pub(crate) &'static str);

impl ApiError {
    /// The Ably error the client receives.
    pub fn error_info(&self) -> ErrorInfo {
        let message = self.to_string();
        match self {
            ApiError::MissingCredentials
            | ApiError::MissingCredentialsOrCookie { .. }
            | ApiError::InvalidCredentials(_) => {
                ErrorInfo::new(codes::INVALID_CREDENTIALS, 401, message)
            }
            // Ably answers these codes with 401; we use 403 on purpose, so
            // that SDKs stop retrying
            // (`docs/protocol.md#auth-failures-and-retries`): retrying cannot
            // help.
            ApiError::CapabilityDenied(_) => {
                ErrorInfo::new(codes::OPERATION_NOT_PERMITTED, 403, message)
            }
            ApiError::ClientIdMismatch { .. } => {
                ErrorInfo::new(codes::INCOMPATIBLE_CREDENTIALS, 403, message)
            }
            ApiError::BadRequest(_) => ErrorInfo::new(codes::INVALID_PARAMETER_VALUE, 400, message),
            ApiError::PayloadTooLarge { .. } => {
                ErrorInfo::new(codes::MESSAGE_TOO_LARGE, 413, message)
            }
            ApiError::RateLimited { .. } => ErrorInfo::new(codes::RATE_LIMIT, 429, message),
            ApiError::NotFound => ErrorInfo::new(codes::NOT_FOUND, 404, message),
            ApiError::MethodNotAllowed => ErrorInfo::new(codes::METHOD_NOT_ALLOWED, 405, message),
            ApiError::ForbiddenOrigin | ApiError::ForbiddenHost | ApiError::NotAdmin { .. } => {
                ErrorInfo::new(codes::FORBIDDEN, 403, message)
            }
            ApiError::Timeout => ErrorInfo::new(codes::TIMEOUT, 503, message),
            ApiError::Unavailable { status, code, .. } => {
                ErrorInfo::new(*code, status.as_u16(), message)
            }
            ApiError::Ably(info) => info.clone(),
            ApiError::AblyRefusedServer { .. } => {
                ErrorInfo::new(codes::INTERNAL_ERROR, 500, message)
            }
            ApiError::Internal(_) => ErrorInfo::new(codes::INTERNAL_ERROR, 500, "internal error"),
        }
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.error_info().status_code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A short label for metrics and logs.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            ApiError::MissingCredentials | ApiError::MissingCredentialsOrCookie { .. } => {
                "no_credentials"
            }
            ApiError::InvalidCredentials(_) => "invalid_credentials",
            ApiError::CapabilityDenied(_) => "capability_denied",
            ApiError::ClientIdMismatch { .. } => "client_id_mismatch",
            ApiError::NotAdmin { .. } => "not_admin",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::ForbiddenOrigin => "forbidden_origin",
            ApiError::ForbiddenHost => "forbidden_host",
            ApiError::Timeout => "timeout",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Ably(_) => "ably_refused",
            ApiError::AblyRefusedServer { .. } => "ably_refused_server",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = ?err, "internal error");
        } else {
            tracing::debug!(reason = self.reason(), error = %self, "request refused");
        }
        // Exactly `application/json`, no charset: see the module docs.
        let mut response = self
            .error_info()
            .to_http_response()
            .map(axum::body::Body::from);
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            ApiError::MissingCredentials
            | ApiError::MissingCredentialsOrCookie { .. }
            | ApiError::InvalidCredentials(_) => {
                // RFC 6750 §3.
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited { retry_after, .. } => {
                // Whole seconds, rounded up: never invite a retry too early.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        response
            .extensions_mut()
            .insert(RefusalReason(self.reason()));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_maps_to_the_documented_status_and_code() {
        let cases = [
            (ApiError::MissingCredentials, 401, 40101),
            (
                ApiError::MissingCredentialsOrCookie {
                    cookie: "session".into(),
                },
                401,
                40101,
            ),
            (ApiError::InvalidCredentials("x".into()), 401, 40101),
            (ApiError::CapabilityDenied("x".into()), 403, 40160),
            (
                ApiError::ClientIdMismatch {
                    requested: "x".into(),
                },
                403,
                40102,
            ),
            (ApiError::BadRequest("x".into()), 400, 40003),
            (ApiError::PayloadTooLarge { limit: 1 }, 413, 40009),
            (
                ApiError::RateLimited {
                    scope: "per IP",
                    retry_after: Duration::from_millis(1),
                },
                429,
                42910,
            ),
            (ApiError::NotFound, 404, 40400),
            (ApiError::MethodNotAllowed, 405, 40500),
            (ApiError::ForbiddenOrigin, 403, 40300),
            (ApiError::ForbiddenHost, 403, 40300),
            (ApiError::NotAdmin { role: "ops".into() }, 403, 40300),
            (ApiError::Timeout, 503, 50003),
            (
                ApiError::AblyRefusedServer {
                    what: "credentials",
                    code: 40101,
                    message: "x".into(),
                },
                500,
                50000,
            ),
            (
                ApiError::Internal(anyhow::anyhow!("secret detail")),
                500,
                50000,
            ),
        ];

        for (err, status, code) in cases {
            let info = err.error_info();

            assert_eq!((info.status_code, info.code), (status, code), "{err:?}");
            assert_eq!(err.status().as_u16(), status);
        }
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let info = ApiError::Internal(anyhow::anyhow!("secret detail")).error_info();

        assert_eq!(info.message, "internal error");
    }
}
