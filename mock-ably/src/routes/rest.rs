//! `GET /time`, `POST /channels/{channel}/messages` and
//! `GET /channels/{channel}/messages` (`docs/protocol.md#rest-subset`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use serde::Serialize;
use serde_json::{Value, json};
use shared::capability::Operation;
use shared::protocol::Format;
use shared::{Message, codes};

use crate::auth::authenticate;
use crate::error::{self, ApiError, ApiResult, PathParam};
use crate::params::{Query, invalid_param, validate_channel_name};
use crate::publish::{self, Publisher};
use crate::state::{AppState, lock};

/// History's default and largest page sizes (`docs/protocol.md#history`).
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `GET /time`: `[ms]`, no auth (`docs/protocol.md#server-time`).
pub(super) async fn time(State(state): State<AppState>) -> Json<[u64; 1]> {
    Json([state.clock.now_ms()])
}

/// `POST /channels/{channel}/messages` (`docs/protocol.md#publishing`): a
/// Message or an array of them, JSON only; needs `publish`; answers `201
/// {channel, messageId, serials}`.
pub(super) async fn publish(
    State(state): State<AppState>,
    PathParam(channel): PathParam,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = error::body(body)?;
    let query = Query::parse(raw.as_deref());
    let principal = authenticate(&state, &headers, &query)?;
    validate_channel_name(&channel)?;
    if channel.starts_with("[meta]") {
        return Err(ApiError::new(
            codes::OPERATION_NOT_PERMITTED,
            format!("Metachannels cannot be published to; channel = {channel}"),
        ));
    }
    principal.require(Operation::Publish, &channel)?;
    reject_msgpack(&headers)?;
    let declared = declared_client_id(&headers)?;
    let identity = principal.identify(declared.as_deref())?;

    let messages = parse_messages(&body)?;
    let now = state.clock.now_ms();
    let publisher = Publisher {
        principal: &principal,
        identity: identity.as_deref(),
    };
    let prepared = publish::prepare(messages, Some(publisher), now)?;
    let stored = publish::store(&state, &channel, prepared);

    let message_id = stored
        .first()
        .and_then(|m| m.message.id.clone())
        .unwrap_or_default();
    let serials: Vec<&str> = stored.iter().map(|m| m.serial.as_str()).collect();
    let body = json!({"channel": channel, "messageId": message_id, "serials": serials});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// ably-js in Node defaults to msgpack; say what to change rather than fail
/// to parse (`docs/real-clients.md#pointing-ably-js-at-a-mock`).
fn reject_msgpack(headers: &HeaderMap) -> ApiResult<()> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.contains("msgpack") {
        return Err(ApiError::new(
            codes::BAD_REQUEST,
            "mock-ably speaks JSON only: set useBinaryProtocol: false in ably-js",
        ));
    }
    Ok(())
}

/// `X-Ably-ClientId`: base64 of the UTF-8 clientId
/// (`docs/protocol.md#clientid-rules`).
fn declared_client_id(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("x-ably-clientid") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| STANDARD_PAD_INDIFFERENT.decode(text).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                codes::INVALID_CLIENT_ID,
                "X-Ably-ClientId is not base64 of a UTF-8 clientId",
            )
        })
}

/// A Message object or an array of them.
pub(super) fn parse_messages(body: &[u8]) -> ApiResult<Vec<Message>> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        ApiError::new(
            codes::INVALID_REQUEST_BODY,
            format!("Unable to parse request body as JSON: {err}"),
        )
    })?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(ApiError::new(
                codes::INVALID_REQUEST_BODY,
                "Request body must be a Message object or an array of them",
            ));
        }
    };
    items
        .into_iter()
        .map(|item| {
            serde_json::from_value(item).map_err(|err| {
                ApiError::new(
                    codes::INVALID_REQUEST_BODY,
                    format!("Invalid message: {err}"),
                )
            })
        })
        .collect()
}

/// `GET /channels/{channel}/messages` (`docs/protocol.md#history`): needs
/// `history`; `limit` (default 100, at most 1000), `direction` (`backwards`
/// default or `forwards`), `start`/`end` (ms, inclusive) and relative `Link`
/// paging.
pub(super) async fn history(
    State(state): State<AppState>,
    PathParam(channel): PathParam,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = Query::parse(raw.as_deref());
    let principal = authenticate(&state, &headers, &query)?;
    validate_channel_name(&channel)?;
    principal.require(Operation::History, &channel)?;
    let page = Page::from_query(&query)?;

    let now = state.clock.now_ms();
    let retained = lock(&state.registry).retained(&state.settings, &channel, now);
    let mut matching: Vec<_> = retained
        .iter()
        .filter(|m| {
            let timestamp = m.message.timestamp.unwrap_or(m.received_ms);
            page.start.is_none_or(|start| timestamp >= start)
                && page.end.is_none_or(|end| timestamp <= end)
                && page.after.is_none_or(|after| match page.forwards {
                    true => m.seq > after,
                    false => m.seq < after,
                })
        })
        .collect();
    if !page.forwards {
        matching.reverse();
    }
    let more = matching.len() > page.limit;
    matching.truncate(page.limit);
    let items: Vec<&Message> = matching.iter().map(|m| &m.message).collect();

    let mut links = vec![
        format!("<./messages?{}>; rel=\"first\"", page.query(None)),
        format!("<./messages?{}>; rel=\"current\"", page.query(page.after)),
    ];
    if more {
        let last = matching.last().map(|m| m.seq);
        links.push(format!("<./messages?{}>; rel=\"next\"", page.query(last)));
    }
    let mut response = items_response(&headers, &items)?;
    response.headers_mut().insert(
        header::LINK,
        HeaderValue::from_str(&links.join(", ")).expect("link URLs are percent-encoded ASCII"),
    );
    Ok(response)
}

/// A page of messages or presence items, in the format `Accept` asks for:
/// msgpack for `application/x-msgpack`, else JSON. ably-js with
/// `useBinaryProtocol` (its Node default) asks for msgpack and decodes a
/// successful body as msgpack whatever its `Content-Type`
/// (`docs/real-clients.md#rest-responses-in-msgpack`); errors stay JSON,
/// which it reads by their `Content-Type`.
pub(super) fn items_response<T: Serialize>(
    headers: &HeaderMap,
    items: &[T],
) -> ApiResult<Response> {
    let msgpack = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("application/x-msgpack"));
    let (format, content_type) = if msgpack {
        (Format::Msgpack, "application/x-msgpack")
    } else {
        (Format::Json, "application/json")
    };
    let body = format
        .encode_items(items)
        .map_err(|err| ApiError::new(codes::INTERNAL_ERROR, err.to_string()))?;
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// A history query.
#[derive(Debug)]
pub(super) struct Page {
    limit: usize,
    forwards: bool,
    start: Option<u64>,
    end: Option<u64>,
    /// From a `next` link: the sequence number of the last message of the
    /// previous page (an opaque `cursor` parameter to clients).
    pub(super) after: Option<u64>,
}

impl Page {
    pub(super) fn from_query(query: &Query) -> ApiResult<Self> {
        let number = |name: &str| -> ApiResult<Option<u64>> {
            query
                .get(name)
                .map(|value| value.parse().map_err(|_| invalid_param(name, value)))
                .transpose()
        };
        let limit = match query.get("limit") {
            None => DEFAULT_LIMIT,
            Some(value) => value
                .parse()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or_else(|| invalid_param("limit", value))?,
        };
        let forwards = match query.get("direction") {
            None | Some("backwards") => false,
            Some("forwards") => true,
            Some(other) => return Err(invalid_param("direction", other)),
        };
        let (start, end) = (number("start")?, number("end")?);
        if let (Some(start), Some(end)) = (start, end)
            && start > end
        {
            return Err(ApiError::new(
                codes::INVALID_PARAMETER_VALUE,
                "start must not be later than end",
            ));
        }
        Ok(Self {
            limit,
            forwards,
            start,
            end,
            after: number("cursor")?,
        })
    }

    /// The query string of a link to this query from `after`.
    pub(super) fn query(&self, after: Option<u64>) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        if let Some(start) = self.start {
            out.append_pair("start", &start.to_string());
        }
        if let Some(end) = self.end {
            out.append_pair("end", &end.to_string());
        }
        out.append_pair("limit", &self.limit.to_string());
        out.append_pair(
            "direction",
            if self.forwards {
                "forwards"
            } else {
                "backwards"
            },
        );
        if let Some(after) = after {
            out.append_pair("cursor", &after.to_string());
        }
        out.finish()
    }
}
