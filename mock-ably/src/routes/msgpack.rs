//! msgpack on REST, as Ably serves it (RSC8; `docs/protocol.md#msgpack-on-rest`).
//!
//! - A request body sent with `Content-Type: application/x-msgpack` is read
//!   as msgpack and handed on as its JSON form (`bin` data becomes base64
//!   with `base64` ending its `encoding`), so every handler reads JSON only.
//!   An empty body is no body, whatever its type (ably-js sends the type on
//!   a GET too).
//! - A request that prefers msgpack, by `format=msgpack` or by an `Accept`
//!   header that ranks `application/x-msgpack` above `application/json`,
//!   gets every JSON answer (successes and error envelopes alike) as msgpack
//!   with `Content-Type: application/x-msgpack` (base64 data back to `bin`);
//!   the `X-Ably-ErrorCode` and `X-Ably-ErrorMessage` headers stay. ably-js
//!   in Node asks for msgpack by default, decodes a success body in the
//!   format it asked for whatever its type, and an error body by its
//!   `Content-Type`.
//!
//! Streams, WebSocket upgrades and empty answers are left alone.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use shared::codes;
use shared::protocol::{rest_body_from_msgpack, rest_body_to_msgpack};

use crate::error::ApiError;
use crate::params::Query;

/// msgpack's media type.
const MSGPACK: &str = "application/x-msgpack";

/// The largest request body read, as axum's default limit for handlers.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Decodes msgpack request bodies and encodes JSON answers as msgpack for
/// requests that prefer it.
pub(super) async fn rest_format(request: Request, next: Next) -> Response {
    let msgpack_out = wants_msgpack(request.headers(), request.uri().query());
    let request = if is_msgpack(request.headers()) {
        match msgpack_request_as_json(request).await {
            Ok(request) => request,
            Err(error) => return encode(error.into_response(), msgpack_out).await,
        }
    } else {
        request
    };
    encode(next.run(request).await, msgpack_out).await
}

/// Whether the request's own body is msgpack.
fn is_msgpack(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| media_type(value).eq_ignore_ascii_case(MSGPACK))
}

/// The media type of a `Content-Type` or `Accept` entry, without
/// parameters.
fn media_type(value: &str) -> &str {
    value.split(';').next().unwrap_or_default().trim()
}

/// Whether the answer should be msgpack: `format` says so, else `Accept`
/// ranks `application/x-msgpack` above `application/json` (by `q`, then by
/// order).
fn wants_msgpack(headers: &HeaderMap, query: Option<&str>) -> bool {
    match Query::parse(query).get("format") {
        Some("msgpack") => return true,
        Some("json") => return false,
        _ => {}
    }
    let Some(accept) = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let mut best: Option<(f32, bool)> = None;
    for entry in accept.split(',') {
        let kind = media_type(entry);
        let msgpack = kind.eq_ignore_ascii_case(MSGPACK);
        if !msgpack && !kind.eq_ignore_ascii_case("application/json") {
            continue;
        }
        let q = entry
            .split(';')
            .skip(1)
            .find_map(|param| param.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, msgpack));
        }
    }
    best.is_some_and(|(q, msgpack)| msgpack && q > 0.0)
}

/// The request with its msgpack body replaced by the JSON form.
async fn msgpack_request_as_json(request: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = request.into_parts();
    let bytes = to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::new(codes::MESSAGE_TOO_LARGE, "Request body too large"))?;
    if bytes.is_empty() {
        // No body at all (ably-js sends its msgpack Content-Type on GETs
        // too): nothing to decode.
        return Ok(Request::from_parts(parts, Body::empty()));
    }
    let value = rest_body_from_msgpack(&bytes)?;
    let json = serde_json::to_vec(&value).map_err(|err| {
        ApiError::new(
            codes::INTERNAL_ERROR,
            format!("cannot write the body as JSON: {err}"),
        )
    })?;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Request::from_parts(parts, Body::from(json)))
}

/// `response` as msgpack if `msgpack` and it is a JSON answer; otherwise as
/// it is.
async fn encode(response: Response, msgpack: bool) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value == "application/json");
    if !msgpack || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return ApiError::new(codes::INTERNAL_ERROR, "cannot read the answer").into_response();
    };
    let encoded = serde_json::from_slice::<Value>(&bytes)
        .map_err(|err| err.to_string())
        .and_then(|value| rest_body_to_msgpack(&value).map_err(|err| err.to_string()));
    match encoded {
        Ok(packed) => {
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(MSGPACK));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(packed))
        }
        // Every JSON answer is written by the mock itself, so this cannot
        // happen; the JSON is still a readable answer.
        Err(_) => Response::from_parts(parts, Body::from(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn format_wins_then_accept_ranks_by_q_then_order() {
        assert!(wants_msgpack(
            &accept("application/json"),
            Some("format=msgpack")
        ));
        assert!(!wants_msgpack(&accept(MSGPACK), Some("format=json")));
        assert!(wants_msgpack(&accept(MSGPACK), None));
        assert!(wants_msgpack(
            &accept("application/x-msgpack, application/json"),
            None
        ));
        assert!(!wants_msgpack(
            &accept("application/json, application/x-msgpack"),
            None
        ));
        assert!(wants_msgpack(
            &accept("application/json;q=0.5, application/x-msgpack"),
            None
        ));
        assert!(!wants_msgpack(&accept("application/x-msgpack;q=0"), None));
        assert!(!wants_msgpack(&accept("*/*"), None));
        assert!(!wants_msgpack(&HeaderMap::new(), None));
    }
}
