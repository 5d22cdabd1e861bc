//! Reading what an auth source answers, with no I/O: ably-js's checks on a
//! token string, a JSON reply told apart by its fields, the error an HTTP
//! error response reports, and a wall-clock expiry turned into a deadline on
//! tokio's clock (`docs/protocol.md#what-an-auth-source-may-return`,
//! `docs/protocol.md#authurl-responses`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use shared::error_info::{ERROR_CODE_HEADER, ERROR_MESSAGE_HEADER};
use shared::{ErrorInfo, ErrorResponse, codes};
use tokio::time::Instant;

use super::TokenReply;
use crate::error::{Error, Result};

/// ably-js refuses token strings longer than this (`MAX_TOKEN_LENGTH`).
pub(super) const MAX_TOKEN_LEN: usize = 1 << 17;

/// ably-js's checks on a token string
/// (`docs/protocol.md#what-an-auth-source-may-return`).
pub(super) fn check_token_string(token: &str, json_allowed: bool) -> Result<()> {
    let problem = if token.is_empty() {
        "token string is empty"
    } else if token.len() > MAX_TOKEN_LEN {
        "token string is longer than 131072 characters"
    } else if token == "null" || token == "undefined" {
        "token string is null or undefined"
    } else if token.starts_with('{') && !json_allowed {
        "Token was double-encoded"
    } else {
        return Ok(());
    };
    Err(auth_failed(problem))
}

pub(super) fn auth_failed(message: impl Into<String>) -> Error {
    Error::Ably(ErrorInfo::new(codes::AUTH_CALLBACK_FAILED, 401, message))
}

/// Parameters mixed as ably-js mixes objects
/// (`docs/protocol.md#authurl-requests`, RSA8c1c): on a name clash the later
/// value wins, in the place of the first.
pub(super) fn merge_params<'a>(
    params: impl IntoIterator<Item = &'a (String, String)>,
) -> Vec<(&'a str, &'a str)> {
    let mut merged: Vec<(&str, &str)> = Vec::new();
    for (name, value) in params {
        match merged.iter_mut().find(|(seen, _)| seen == name) {
            Some(slot) => slot.1 = value,
            None => merged.push((name, value)),
        }
    }
    merged
}

/// Classifies a JSON reply as ably-js does
/// (`docs/protocol.md#what-an-auth-source-may-return`,
/// `docs/protocol.md#authurl-responses`): a JSON string is a token string
/// (checked like one, `{` refused since the type is not `application/jwt`), an
/// object is TokenDetails (has `issued`) or a TokenRequest (has `keyName`).
pub(super) fn token_reply_from_json(value: serde_json::Value) -> Result<TokenReply> {
    if let serde_json::Value::String(token) = value {
        check_token_string(&token, false)?;
        return Ok(TokenReply::Token(token));
    }
    let Some(object) = value.as_object() else {
        return Err(auth_failed(
            "authUrl returned JSON that is neither a string nor an object",
        ));
    };
    if object.contains_key("issued") {
        let details = serde_json::from_value(value)
            .map_err(|err| auth_failed(format!("invalid TokenDetails: {err}")))?;
        Ok(TokenReply::Details(details))
    } else if object.contains_key("keyName") {
        let request = serde_json::from_value(value)
            .map_err(|err| auth_failed(format!("invalid TokenRequest: {err}")))?;
        Ok(TokenReply::Request(request))
    } else {
        Err(auth_failed(
            "authUrl returned JSON that is neither TokenDetails nor a TokenRequest",
        ))
    }
}

/// The Ably error an HTTP error response carries, from its parts
/// (`docs/protocol.md#the-error-envelope`): see [`reported_error`], else one
/// made up from the status with [`fallback_error`].
pub(super) fn error_info_from_parts(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    fallback_code: u32,
) -> ErrorInfo {
    reported_error(status, headers, body)
        .unwrap_or_else(|| fallback_error(status, fallback_code, format!("HTTP {status}")))
}

/// The error a response reports itself: the `{"error": …}` envelope in
/// `body`, else the `X-Ably-ErrorCode` header.
pub(super) fn reported_error(status: u16, headers: &HeaderMap, body: &[u8]) -> Option<ErrorInfo> {
    if let Ok(envelope) = serde_json::from_slice::<ErrorResponse>(body) {
        return Some(envelope.error);
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let code = header(ERROR_CODE_HEADER).and_then(|code| code.trim().parse().ok())?;
    let message = header(ERROR_MESSAGE_HEADER).unwrap_or_else(|| format!("HTTP {status}"));
    Some(ErrorInfo::new(code, status, message))
}

/// An error made up from the status: `fallback_code` for 4xx, the status ×
/// 100 for 5xx, so that they stay retryable.
pub(super) fn fallback_error(status: u16, fallback_code: u32, message: String) -> ErrorInfo {
    let code = if status >= 500 {
        u32::from(status) * 100
    } else {
        fallback_code
    };
    ErrorInfo::new(code, status, message)
}

/// The deadline, on tokio's clock, of an expiry given in wall time (since
/// the Unix epoch), read when both clocks say `wall_now` and `now`. An
/// expiry in the past is `now`; one too far ahead to represent is no known
/// expiry at all.
///
/// This is the one place wall time meets the subscription: Ably states
/// expiries as wall time, and the subscription measures everything after on
/// tokio's clock, so that its timers can run on a paused clock in tests.
pub(super) fn deadline(expires: Duration, wall_now: SystemTime, now: Instant) -> Option<Instant> {
    let wall_now = wall_now.duration_since(UNIX_EPOCH).unwrap_or_default();
    now.checked_add(expires.saturating_sub(wall_now))
}

#[cfg(test)]
mod tests;
