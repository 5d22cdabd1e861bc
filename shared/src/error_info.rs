//! Ably's `ErrorInfo` (`docs/protocol.md#errors`): the error shape on the wire.
//!
//! REST and pre-stream failures wrap it as `{"error": {...}}` ([`ErrorResponse`]);
//! SSE `error` events carry it bare. Either may come without `statusCode`;
//! reading derives it from the code ([`status_for_code`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The base of the help link Ably puts in `href` (`https://help.ably.io/error/40142`).
pub const HELP_BASE_URL: &str = "https://help.ably.io/error/";

/// The response header that repeats an error's code on REST and pre-stream
/// errors (`docs/protocol.md#errors-before-the-stream`), lowercase as HTTP/2
/// requires. ably-js falls back to it when the body is not exactly
/// `application/json` (`docs/protocol.md#the-error-envelope`).
pub const ERROR_CODE_HEADER: &str = "x-ably-errorcode";

/// The response header that repeats an error's message
/// (`docs/protocol.md#errors-before-the-stream`); see
/// [`ErrorInfo::header_message`] for the form it takes.
pub const ERROR_MESSAGE_HEADER: &str = "x-ably-errormessage";

/// The longest [`ERROR_MESSAGE_HEADER`] value we send, in bytes.
pub const MAX_HEADER_MESSAGE_LEN: usize = 512;

/// Ably error codes this project uses, named (`docs/protocol.md#error-codes`).
pub mod codes {
    /// 40000: bad request (generic).
    pub const BAD_REQUEST: u32 = 40000;
    /// 40001: invalid request body; also a JWT whose `iat` is in the future.
    pub const INVALID_REQUEST_BODY: u32 = 40001;
    /// 40003: invalid parameter value (bad `limit`, TTL too large).
    pub const INVALID_PARAMETER_VALUE: u32 = 40003;
    /// 40005: invalid credential format.
    pub const INVALID_CREDENTIAL_FORMAT: u32 = 40005;
    /// 40009: message too large.
    pub const MESSAGE_TOO_LARGE: u32 = 40009;
    /// 40010: invalid channel name.
    pub const INVALID_CHANNEL_NAME: u32 = 40010;
    /// 40012: invalid clientId.
    pub const INVALID_CLIENT_ID: u32 = 40012;
    /// 40013: invalid message data or encoding.
    pub const INVALID_MESSAGE_DATA: u32 = 40013;
    /// 40018: a delta could not be applied.
    pub const DELTA_DECODE_FAILED: u32 = 40018;
    /// 40100: unauthorized (generic).
    pub const UNAUTHORIZED: u32 = 40100;
    /// 40101: invalid credentials (wrong secret, bad MAC, none at all).
    pub const INVALID_CREDENTIALS: u32 = 40101;
    /// 40102: incompatible credentials (clientId mismatch).
    pub const INCOMPATIBLE_CREDENTIALS: u32 = 40102;
    /// 40103: Basic auth over a non-TLS connection.
    pub const BASIC_AUTH_NON_TLS: u32 = 40103;
    /// 40104: TokenRequest timestamp not current.
    pub const TIMESTAMP_NOT_CURRENT: u32 = 40104;
    /// 40105: TokenRequest nonce replayed.
    pub const NONCE_REPLAYED: u32 = 40105;
    /// 40140: token error, unspecified.
    pub const TOKEN_ERROR: u32 = 40140;
    /// 40141: token revoked.
    pub const TOKEN_REVOKED: u32 = 40141;
    /// 40142: token expired.
    pub const TOKEN_EXPIRED: u32 = 40142;
    /// 40143: token unrecognised.
    pub const TOKEN_UNRECOGNISED: u32 = 40143;
    /// 40144: invalid JWT (decode failure, bad signature, bad claims, no `kid`).
    pub const INVALID_JWT: u32 = 40144;
    /// 40145: invalid Ably token format.
    pub const INVALID_TOKEN_FORMAT: u32 = 40145;
    /// 40160: operation not permitted by the capability.
    pub const OPERATION_NOT_PERMITTED: u32 = 40160;
    /// 40161: operation requires an identified client.
    pub const IDENTIFIED_CLIENT_REQUIRED: u32 = 40161;
    /// 40162: token revocation needs the key's Basic auth, not a token.
    pub const REVOCATION_NEEDS_BASIC_AUTH: u32 = 40162;
    /// 40170: the token callback or auth URL failed (SDK side).
    pub const AUTH_CALLBACK_FAILED: u32 = 40170;
    /// 40171: token expired and there is no way to renew it (SDK side).
    pub const NO_MEANS_TO_RENEW: u32 = 40171;
    /// 40300: forbidden.
    pub const FORBIDDEN: u32 = 40300;
    /// 40400: not found (also an unknown key).
    pub const NOT_FOUND: u32 = 40400;
    /// 40500: method not allowed.
    pub const METHOD_NOT_ALLOWED: u32 = 40500;
    /// 42910: rate limit.
    pub const RATE_LIMIT: u32 = 42910;
    /// 50000: internal error.
    pub const INTERNAL_ERROR: u32 = 50000;
    /// 50003: server-side timeout.
    pub const TIMEOUT: u32 = 50003;
    /// 80008: continuity lost: the connection expired (client side).
    pub const CONNECTION_EXPIRED: u32 = 80008;
    /// 80019: the auth provider request failed (SDK side).
    pub const AUTH_PROVIDER_FAILED: u32 = 80019;
    /// 91003: unable to enter a presence channel: the maximum number of
    /// members was reached.
    pub const PRESENCE_MEMBER_LIMIT: u32 = 91003;
}

/// An Ably error: `{"code", "statusCode", "message", "href"}` in camelCase,
/// optional fields omitted when absent.
///
/// Reading accepts an error without `statusCode` (or with `null`), as some
/// error bodies and SSE `error` events come: the status is then derived from
/// the code with [`status_for_code`], so `{"code":40142}` reads as status 401.
/// Writing always includes `statusCode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "WireErrorInfo")]
#[non_exhaustive]
pub struct ErrorInfo {
    /// The Ably error code, e.g. `40142`.
    pub code: u32,
    /// The HTTP status that goes with it, e.g. `401`; when the wire form has
    /// none, [`status_for_code`] of `code`.
    pub status_code: u16,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// Ably's help link for the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// The error that caused this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Box<ErrorInfo>>,
    /// The request id, when the server assigned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Extra string details; left out when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
}

/// [`ErrorInfo`] as read from the wire, where `statusCode` may be missing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireErrorInfo {
    code: u32,
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    href: Option<String>,
    #[serde(default)]
    cause: Option<Box<ErrorInfo>>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    detail: BTreeMap<String, String>,
}

impl From<WireErrorInfo> for ErrorInfo {
    fn from(wire: WireErrorInfo) -> Self {
        Self {
            status_code: wire
                .status_code
                .unwrap_or_else(|| status_for_code(wire.code)),
            code: wire.code,
            message: wire.message,
            href: wire.href,
            cause: wire.cause,
            request_id: wire.request_id,
            detail: wire.detail,
        }
    }
}

impl ErrorInfo {
    /// An error with an explicit HTTP status and the `href` Ably builds for `code`.
    pub fn new(code: u32, status_code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            status_code,
            message: message.into(),
            href: Some(href_for(code)),
            cause: None,
            request_id: None,
            detail: BTreeMap::new(),
        }
    }

    /// An error whose HTTP status is the registry's status for `code`
    /// (see [`status_for_code`]).
    pub fn from_code(code: u32, message: impl Into<String>) -> Self {
        Self::new(code, status_for_code(code), message)
    }

    /// Sets the cause.
    #[must_use]
    pub fn with_cause(mut self, cause: ErrorInfo) -> Self {
        self.cause = Some(Box::new(cause));
        self
    }

    /// True for a token error, `40140 <= code < 40150` (ably-js
    /// `Auth.isTokenErr`, `docs/protocol.md#token-errors`): the client should
    /// renew its token and retry.
    pub fn is_token_error(&self) -> bool {
        is_token_error_code(self.code)
    }

    /// The message as an [`ERROR_MESSAGE_HEADER`] value: visible ASCII and
    /// spaces kept, anything else (non-ASCII, control characters, newlines)
    /// replaced by `?`, cut at [`MAX_HEADER_MESSAGE_LEN`] bytes. Any HTTP
    /// library accepts the result as a header value.
    pub fn header_message(&self) -> String {
        self.message
            .chars()
            .take(MAX_HEADER_MESSAGE_LEN)
            .map(|c| {
                if c == ' ' || c.is_ascii_graphic() {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    }

    /// Wraps the error in the `{"error": ...}` envelope of REST responses.
    pub fn into_response(self) -> ErrorResponse {
        ErrorResponse { error: self }
    }
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (code {}, status {})",
            self.message, self.code, self.status_code
        )
    }
}

impl std::error::Error for ErrorInfo {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as _)
    }
}

/// True when `code` is a token error (`40140 <= code < 40150`).
pub fn is_token_error_code(code: u32) -> bool {
    (40140..40150).contains(&code)
}

/// Ably's help link for `code`: `https://help.ably.io/error/<code>`.
pub fn href_for(code: u32) -> String {
    format!("{HELP_BASE_URL}{code}")
}

/// The HTTP status the ably-common registry gives `code`
/// (`docs/protocol.md#error-codes`).
///
/// Most codes carry their status in their first three digits (`40142` → 401,
/// `50000` → 500); the registry's exceptions are listed explicitly (`40009` →
/// 413, `50003` → 503, `80016`/`80022` → 410, `80021` → 429). Other codes
/// outside 40000..=59999 (most `8xxxx` connection codes, and anything
/// unknown) have no registry status: ably-js uses 400 for them, and so does
/// this function. It never answers 500 for a code that does not say so: a
/// made-up server error would make a client retry a request that cannot
/// succeed.
///
/// [`ErrorInfo`] uses it for an error read without `statusCode`.
pub fn status_for_code(code: u32) -> u16 {
    match code {
        codes::MESSAGE_TOO_LARGE => 413,
        codes::TIMEOUT => 503,
        80016 | 80022 => 410,
        80021 => 429,
        40000..=59999 => {
            u16::try_from(code / 100).expect("a five-digit code divided by 100 fits u16")
        }
        _ => 400,
    }
}

/// The HTTP response Ably answers an error with: status `statusCode`,
/// exactly `Content-Type: application/json` (no charset), the
/// [`ERROR_CODE_HEADER`] and [`ERROR_MESSAGE_HEADER`] headers, and the body
/// `{"error": ErrorInfo}`. Both servers render every error through it.
#[cfg(feature = "http")]
impl ErrorInfo {
    /// This error as Ably's HTTP response.
    pub fn to_http_response(&self) -> http::Response<Vec<u8>> {
        use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
        let body = serde_json::to_vec(&ErrorResponse {
            error: self.clone(),
        })
        .expect("an ErrorInfo always serialises");
        let status = http::StatusCode::from_u16(self.status_code)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            HeaderName::from_static(ERROR_CODE_HEADER),
            HeaderValue::from(self.code),
        );
        if let Ok(message) = HeaderValue::from_str(&self.header_message()) {
            headers.insert(HeaderName::from_static(ERROR_MESSAGE_HEADER), message);
        }
        response
    }
}

/// The `{"error": ErrorInfo}` envelope of REST and pre-stream error bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorInfo,
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "http")]
    #[test]
    fn the_http_response_is_ablys_envelope_with_its_exact_headers() {
        let info = ErrorInfo::from_code(codes::TOKEN_EXPIRED, "Token expired\nnow");

        let response = info.to_http_response();

        assert_eq!(response.status(), 401);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-ably-errorcode"], "40142");
        assert_eq!(headers["x-ably-errormessage"], "Token expired?now");
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["error"]["code"], 40142);
        assert_eq!(body["error"]["statusCode"], 401);
        assert_eq!(body["error"]["message"], "Token expired\nnow");
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_camel_case_and_omits_absent_fields() {
        let err = ErrorInfo::from_code(codes::TOKEN_EXPIRED, "Token expired");

        let value = serde_json::to_value(&err).unwrap();

        assert_eq!(
            value,
            json!({
                "code": 40142,
                "statusCode": 401,
                "message": "Token expired",
                "href": "https://help.ably.io/error/40142"
            })
        );
    }

    #[test]
    fn parses_the_docs_error_event_and_ignores_unknown_fields() {
        let text = r#"{"message":"Token expired. (See https://help.ably.io/error/40142 for help.)","code":40142,"statusCode":401,"href":"https://help.ably.io/error/40142","serverId":"x"}"#;

        let err: ErrorInfo = serde_json::from_str(text).unwrap();

        assert_eq!(err.code, 40142);
        assert_eq!(err.status_code, 401);
        assert_eq!(
            err.href.as_deref(),
            Some("https://help.ably.io/error/40142")
        );
        assert!(err.is_token_error());
    }

    #[test]
    fn a_missing_or_null_status_code_is_derived_from_the_code() {
        let cases = [
            (r#"{"code":40142,"message":"Token expired"}"#, 40142, 401),
            (r#"{"code":40160,"statusCode":null}"#, 40160, 401),
            (r#"{"code":40001}"#, 40001, 400),
            (r#"{"code":40400}"#, 40400, 404),
            (r#"{"code":40009}"#, 40009, 413),
            (r#"{"code":42910}"#, 42910, 429),
            (r#"{"code":50000}"#, 50000, 500),
            (r#"{"code":50003}"#, 50003, 503),
            (r#"{"code":80003}"#, 80003, 400),
            (r#"{"code":80016}"#, 80016, 410),
            (r#"{"code":12345}"#, 12345, 400),
        ];

        for (text, code, status) in cases {
            let err: ErrorInfo = serde_json::from_str(text).unwrap();

            assert_eq!((err.code, err.status_code), (code, status), "{text}");
        }
    }

    #[test]
    fn an_explicit_status_code_wins_over_the_derived_one() {
        let err: ErrorInfo = serde_json::from_str(r#"{"code":40400,"statusCode":401}"#).unwrap();

        assert_eq!((err.code, err.status_code), (40400, 401));
    }

    #[test]
    fn an_envelope_and_a_cause_without_status_code_parse_and_write_it_back() {
        let text = r#"{"error":{"code":40144,"message":"bad jwt","cause":{"code":50003}}}"#;

        let body: ErrorResponse = serde_json::from_str(text).unwrap();

        assert_eq!(body.error.status_code, 401);
        assert_eq!(body.error.message, "bad jwt");
        assert_eq!(body.error.href, None);
        assert_eq!(body.error.cause.as_ref().unwrap().status_code, 503);
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":40144,"statusCode":401,"message":"bad jwt","cause":{"code":50003,"statusCode":503,"message":""}}}"#
        );
    }

    #[test]
    fn an_error_without_a_code_is_still_refused() {
        let result = serde_json::from_str::<ErrorInfo>(r#"{"statusCode":401,"message":"x"}"#);

        assert!(result.is_err());
    }

    #[test]
    fn envelope_wraps_the_error_under_error() {
        let body = ErrorInfo::new(40160, 401, "denied").into_response();

        let text = serde_json::to_string(&body).unwrap();

        assert_eq!(
            text,
            r#"{"error":{"code":40160,"statusCode":401,"message":"denied","href":"https://help.ably.io/error/40160"}}"#
        );
        let back: ErrorResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn optional_fields_round_trip() {
        let mut err =
            ErrorInfo::new(50000, 500, "outer").with_cause(ErrorInfo::from_code(40142, "inner"));
        err.request_id = Some("req-1".into());
        err.detail.insert("k".into(), "v".into());

        let value = serde_json::to_value(&err).unwrap();

        assert_eq!(value["requestId"], "req-1");
        assert_eq!(value["detail"], json!({"k": "v"}));
        assert_eq!(value["cause"]["code"], 40142);
        assert_eq!(serde_json::from_value::<ErrorInfo>(value).unwrap(), err);
        assert_eq!(
            std::error::Error::source(&err).unwrap().to_string(),
            "inner (code 40142, status 401)"
        );
    }

    #[test]
    fn token_error_range_is_40140_to_40149() {
        for (code, expected) in [
            (40139, false),
            (40140, true),
            (40144, true),
            (40149, true),
            (40150, false),
            (40160, false),
        ] {
            assert_eq!(is_token_error_code(code), expected, "{code}");
        }
    }

    #[test]
    fn status_follows_the_registry() {
        for (code, status) in [
            (40001, 400),
            (40009, 413),
            (40142, 401),
            (40300, 403),
            (40400, 404),
            (42910, 429),
            (50000, 500),
            (50003, 503),
            (80016, 410),
            (80003, 400),
        ] {
            assert_eq!(status_for_code(code), status, "{code}");
        }
    }

    #[test]
    fn header_message_replaces_what_a_header_cannot_carry() {
        let err =
            ErrorInfo::from_code(codes::BAD_REQUEST, "channel \u{201c}caf\u{e9}\u{201d}\nbad");

        assert_eq!(err.header_message(), "channel ?caf???bad");
    }

    #[test]
    fn header_message_is_cut_at_the_limit() {
        let err = ErrorInfo::from_code(codes::BAD_REQUEST, "x".repeat(MAX_HEADER_MESSAGE_LEN + 10));

        assert_eq!(err.header_message().len(), MAX_HEADER_MESSAGE_LEN);
    }

    #[test]
    fn display_names_code_and_status() {
        assert_eq!(
            ErrorInfo::new(40101, 401, "bad mac").to_string(),
            "bad mac (code 40101, status 401)"
        );
    }
}
