//! `GET /time`, `POST /channels/{channel}/messages`,
//! `GET /channels/{channel}/messages`, `POST /messages` (batch publish) and
//! `GET /channels/{channel}` (channel status), and message operations by
//! serial: `GET`/`PATCH /channels/{channel}/messages/{serial}` and
//! `GET /channels/{channel}/messages/{serial}/versions`
//! (`docs/protocol.md#rest-subset`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use serde_json::{Value, json};
use shared::capability::Operation;
use shared::message::MessageAction;
use shared::{Message, codes};

use crate::auth::{Principal, authenticate};
use crate::channel::StoredMessage;
use crate::error::{self, ApiError, ApiResult, PathParam, PathParams};
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
/// Message or an array of them (msgpack bodies arrive here as JSON, see
/// `msgpack`); needs `publish`; answers `201
/// {channel, messageId, serials}`.
pub(super) async fn publish(
    State(state): State<AppState>,
    PathParam(channel): PathParam,
    request: RestRequest,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = error::body(body)?;
    let principal = request.open_channel(&state, &channel, Some(Operation::Publish))?;
    let declared = declared_client_id(&request.headers)?;
    let identity = principal.identify(declared.as_deref())?;

    let messages = parse_messages(&body)?;
    let publisher = Publisher {
        principal: &principal,
        identity: identity.as_deref(),
    };
    let published = publish_to(&state, publisher, &channel, messages)?;
    Ok((StatusCode::CREATED, Json(published)).into_response())
}

/// What every REST endpoint reads its caller from: the request's headers
/// and its query, parsed. Taking them checks nothing: the handler does
/// ([`RestRequest::authenticate`], [`RestRequest::open_channel`]), after
/// reading the body where it has one, so a bad body is still the first
/// error.
pub(super) struct RestRequest {
    pub(super) headers: HeaderMap,
    pub(super) query: Query,
}

impl<S: Send + Sync> FromRequestParts<S> for RestRequest {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self {
            headers: parts.headers.clone(),
            query: Query::parse(parts.uri.query()),
        })
    }
}

impl RestRequest {
    /// The principal the request's credential names (an error for a bad
    /// one or none).
    pub(super) fn authenticate(&self, state: &AppState) -> ApiResult<Principal> {
        authenticate(state, &self.headers, &self.query)
    }

    /// The opening of an endpoint on one channel, in this order (the tests
    /// pin which error comes first): [`Self::authenticate`], then the
    /// channel's name validated, then, when given, `operation` required on
    /// the channel ([`check_may`]).
    pub(super) fn open_channel(
        &self,
        state: &AppState,
        channel: &str,
        operation: Option<Operation>,
    ) -> ApiResult<Principal> {
        let principal = self.authenticate(state)?;
        validate_channel_name(channel)?;
        if let Some(operation) = operation {
            check_may(&principal, operation, channel)?;
        }
        Ok(principal)
    }
}

/// Fails unless `principal` may do `operation` on `channel`: as its
/// capability says (40160), and never publish on a `[meta]` channel
/// (40160).
fn check_may(principal: &Principal, operation: Operation, channel: &str) -> ApiResult<()> {
    if operation == Operation::Publish && channel.starts_with("[meta]") {
        return Err(ApiError::new(
            codes::OPERATION_NOT_PERMITTED,
            format!("Metachannels cannot be published to; channel = {channel}"),
        ));
    }
    principal.require(operation, channel)
}

/// Publishes `messages` on `channel` for `publisher` (every check but the
/// channel name's and the capability's) and answers what a publish answers:
/// `{channel, messageId, serials}`.
pub(super) fn publish_to(
    state: &AppState,
    publisher: Publisher<'_>,
    channel: &str,
    messages: Vec<Message>,
) -> ApiResult<Value> {
    // A message carrying a realtime connection's `connectionKey` is
    // published on behalf of that connection: it gets its connectionId
    // too. A key the mock does not know is dropped like any other.
    let on_behalf: Vec<Option<String>> = {
        let connections = lock(&state.connections);
        messages
            .iter()
            .map(|m| {
                m.connection_key
                    .as_deref()
                    .and_then(|key| connections.connection_id(key))
            })
            .collect()
    };
    let mut prepared = publish::prepare(messages, Some(publisher), state.clock.now_ms())?;
    for (message, connection_id) in prepared.iter_mut().zip(on_behalf) {
        if connection_id.is_some() {
            message.connection_id = connection_id;
        }
    }
    let stored = publish::store(state, channel, prepared);
    let message_id = stored
        .first()
        .and_then(|m| m.message.id.clone())
        .unwrap_or_default();
    let serials: Vec<&str> = stored.iter().map(|m| m.serial.as_str()).collect();
    Ok(json!({"channel": channel, "messageId": message_id, "serials": serials}))
}

/// `POST /messages`, Ably's batch publish (`docs/protocol.md#batch-publish`):
/// a spec `{channels, messages}` or an array of them; each channel is
/// checked (name, `publish` capability) and published to on its own.
/// Answers `201`: for an array, one result per spec, `{successCount,
/// failureCount, results}`; for a single spec, its `results` alone. Each
/// result is `{channel, messageId, serials}` or `{channel, error}`.
pub(super) async fn batch_publish(
    State(state): State<AppState>,
    request: RestRequest,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = error::body(body)?;
    let principal = request.authenticate(&state)?;
    let declared = declared_client_id(&request.headers)?;
    let identity = principal.identify(declared.as_deref())?;
    let (specs, single) = parse_batch(&body)?;
    let publisher = Publisher {
        principal: &principal,
        identity: identity.as_deref(),
    };
    let publish_spec = |(channels, messages): BatchSpec| -> Vec<Value> {
        channels
            .iter()
            .map(|channel| {
                validate_channel_name(channel)
                    .and_then(|()| check_may(&principal, Operation::Publish, channel))
                    .and_then(|()| publish_to(&state, publisher, channel, messages.clone()))
                    .unwrap_or_else(|ApiError(error)| json!({"channel": channel, "error": error}))
            })
            .collect()
    };

    let answer = if single {
        // One spec, not in an array: the per-channel results, flat.
        Value::Array(specs.into_iter().flat_map(publish_spec).collect())
    } else {
        specs
            .into_iter()
            .map(|spec| {
                let results = publish_spec(spec);
                let failures = results.iter().filter(|r| r.get("error").is_some()).count();
                json!({
                    "successCount": results.len() - failures,
                    "failureCount": failures,
                    "results": results,
                })
            })
            .collect()
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// One spec of a batch publish: its channels and its messages.
type BatchSpec = (Vec<String>, Vec<Message>);

/// The specs of a batch publish body, a spec or an array of them, each
/// `{channels: [name…], messages: Message | [Message…]}`; and whether it
/// was a single spec, not in an array.
fn parse_batch(body: &[u8]) -> ApiResult<(Vec<BatchSpec>, bool)> {
    let invalid = |why: &str| {
        ApiError::new(
            codes::INVALID_REQUEST_BODY,
            format!("Invalid batch publish request: {why}"),
        )
    };
    let (specs, single) = match parse_json(body)? {
        Value::Array(specs) => (specs, false),
        spec @ Value::Object(_) => (vec![spec], true),
        _ => {
            return Err(invalid(
                "expected a spec {channels, messages} or an array of them",
            ));
        }
    };
    let specs = specs
        .into_iter()
        .map(|mut spec| {
            let channels = match spec.get_mut("channels").map(Value::take) {
                Some(Value::Array(names)) if !names.is_empty() => names
                    .into_iter()
                    .map(|name| match name {
                        Value::String(name) => Ok(name),
                        _ => Err(invalid("channels must be channel names")),
                    })
                    .collect::<ApiResult<Vec<_>>>()?,
                Some(Value::String(name)) if !name.is_empty() => vec![name],
                _ => {
                    return Err(invalid(
                        "channels must be a non-empty array of channel names",
                    ));
                }
            };
            let messages = match spec.get_mut("messages").map(Value::take) {
                Some(messages @ (Value::Array(_) | Value::Object(_))) => messages_from(messages)?,
                _ => return Err(invalid("messages must be a Message or an array of them")),
            };
            Ok((channels, messages))
        })
        .collect::<ApiResult<_>>()?;
    Ok((specs, single))
}

/// `GET /channels/{channel}`, channel status
/// (`docs/protocol.md#channel-status`): needs `channel-metadata`; answers
/// ChannelDetails with the channel's occupancy.
pub(super) async fn channel_status(
    State(state): State<AppState>,
    PathParam(channel): PathParam,
    request: RestRequest,
) -> ApiResult<Json<Value>> {
    request.open_channel(&state, &channel, Some(Operation::ChannelMetadata))?;
    let now = state.clock.now_ms();
    let occupancy = lock(&state.registry).occupancy(&state.settings, &channel, now);
    let presence = lock(&state.presence).counts(&channel);
    Ok(Json(json!({
        "channelId": channel,
        "name": channel,
        "status": {
            "isActive": occupancy.active || presence.members > 0,
            "occupancy": {
                "metrics": {
                    "connections": occupancy.connections,
                    "publishers": occupancy.publishers,
                    "subscribers": occupancy.subscribers,
                    "presenceConnections": presence.connections,
                    "presenceMembers": presence.members,
                    "presenceSubscribers": presence.subscribers,
                },
            },
        },
    })))
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

/// A JSON request body (a msgpack one arrives as JSON too).
fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::new(
            codes::INVALID_REQUEST_BODY,
            format!("Unable to parse request body as JSON: {err}"),
        )
    })
}

/// A Message object or an array of them.
pub(super) fn parse_messages(body: &[u8]) -> ApiResult<Vec<Message>> {
    messages_from(parse_json(body)?)
}

/// A Message object or an array of them, parsed.
fn messages_from(value: Value) -> ApiResult<Vec<Message>> {
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
/// default or `forwards`), `start`/`end` (ms, inclusive), `from_serial` (a
/// realtime ATTACHED's `channelSerial`: nothing published after it; one
/// this mock did not issue is 400/40003) and relative `Link` paging.
pub(super) async fn history(
    State(state): State<AppState>,
    PathParam(channel): PathParam,
    request: RestRequest,
) -> ApiResult<Response> {
    request.open_channel(&state, &channel, Some(Operation::History))?;
    let page = Page::from_query(&request.query)?;

    let now = state.clock.now_ms();
    let (retained, until) = {
        let mut registry = lock(&state.registry);
        let until = match page.from_serial.as_deref() {
            None => None,
            Some(serial) => Some(
                registry
                    .parse_cursor(serial)
                    .ok_or_else(|| invalid_param("from_serial", serial))?,
            ),
        };
        (registry.retained(&state.settings, &channel, now), until)
    };
    let in_range = retained.iter().map(Arc::as_ref).filter(|m| {
        let timestamp = m.message.timestamp.unwrap_or(m.received_ms);
        until.is_none_or(|until| m.seq <= until)
            && page.start.is_none_or(|start| timestamp >= start)
            && page.end.is_none_or(|end| timestamp <= end)
    });
    Ok(page.respond(in_range, "messages"))
}

/// A history query (message versions are paged by one too).
#[derive(Debug)]
pub(super) struct Page {
    limit: usize,
    forwards: bool,
    start: Option<u64>,
    end: Option<u64>,
    /// From a `next` link: the sequence number of the last message of the
    /// previous page (an opaque `cursor` parameter to clients).
    pub(super) after: Option<u64>,
    /// `from_serial` (ably-js's `untilAttach`, RTL10b): a realtime
    /// ATTACHED's `channelSerial`; only messages up to it are listed.
    from_serial: Option<String>,
}

/// A paged query's `direction`: whether it is `forwards` (`backwards` is the
/// default).
pub(super) fn forwards(query: &Query) -> ApiResult<bool> {
    match query.get("direction") {
        None | Some("backwards") => Ok(false),
        Some("forwards") => Ok(true),
        Some(other) => Err(invalid_param("direction", other)),
    }
}

/// A paged query's `limit`: 100 by default, 1 to 1000 (RSL2b3, RSP3a1).
pub(super) fn page_limit(query: &Query) -> ApiResult<usize> {
    match query.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(value) => value
            .parse()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| invalid_param("limit", value)),
    }
}

impl Page {
    pub(super) fn from_query(query: &Query) -> ApiResult<Self> {
        let number = |name: &str| -> ApiResult<Option<u64>> {
            query
                .get(name)
                .map(|value| value.parse().map_err(|_| invalid_param(name, value)))
                .transpose()
        };
        let limit = page_limit(query)?;
        let forwards = forwards(query)?;
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
            from_serial: query.get("from_serial").map(str::to_owned),
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
        if let Some(serial) = &self.from_serial {
            out.append_pair("from_serial", serial);
        }
        out.finish()
    }

    /// Answers this page of `candidates` (oldest first): those after the
    /// cursor in the page's direction, at most `limit` of them, with `Link`s
    /// relative to `./{path}` (`first`, `current`, and `next` when more are
    /// left).
    fn respond<'a>(
        &self,
        candidates: impl Iterator<Item = &'a StoredMessage>,
        path: &str,
    ) -> Response {
        let mut matching: Vec<_> = candidates
            .filter(|m| {
                self.after.is_none_or(|after| match self.forwards {
                    true => m.seq > after,
                    false => m.seq < after,
                })
            })
            .collect();
        if !self.forwards {
            matching.reverse();
        }
        let more = matching.len() > self.limit;
        matching.truncate(self.limit);
        let items: Vec<&Message> = matching.iter().map(|m| &m.message).collect();

        let mut links = vec![
            format!("<./{path}?{}>; rel=\"first\"", self.query(None)),
            format!("<./{path}?{}>; rel=\"current\"", self.query(self.after)),
        ];
        if more {
            let last = matching.last().map(|m| m.seq);
            links.push(format!("<./{path}?{}>; rel=\"next\"", self.query(last)));
        }
        let mut response = Json(items).into_response();
        response.headers_mut().insert(
            header::LINK,
            HeaderValue::from_str(&links.join(", ")).expect("link URLs are percent-encoded ASCII"),
        );
        response
    }
}

/// The 404/40400 for a message `serial` that retention does not hold on
/// `channel`.
fn not_found_message(channel: &str, serial: &str) -> ApiError {
    ApiError::new(
        codes::NOT_FOUND,
        format!("Message not found; channel = {channel}, serial = {serial}"),
    )
}

/// `GET /channels/{channel}/messages/{serial}`
/// (`docs/protocol.md#message-operations`, RSL11): needs `history`; answers
/// the latest version of the message, 404/40400 when retention holds no
/// message with that serial.
pub(super) async fn get_message(
    State(state): State<AppState>,
    PathParams(channel, serial): PathParams,
    request: RestRequest,
) -> ApiResult<Json<Message>> {
    request.open_channel(&state, &channel, Some(Operation::History))?;
    let now = state.clock.now_ms();
    let versions = lock(&state.registry).versions(&state.settings, &channel, &serial, now);
    versions
        .last()
        .map(|latest| Json(latest.message.clone()))
        .ok_or_else(|| not_found_message(&channel, &serial))
}

/// `PATCH /channels/{channel}/messages/{serial}`
/// (`docs/protocol.md#message-operations`, RSL12, RSL15): a Message whose
/// `action` is update (1), delete (2) or append (5) and whose `version` is
/// the operation (`clientId`, `description`, `metadata`). Records a new
/// version, delivers it to the channel's subscribers and answers
/// `{versionSerial}`. Needs `message-update-any` (update, append) or
/// `message-delete-any` (delete), or the `-own` one on a message whose
/// clientId is the caller's.
pub(super) async fn update_message(
    State(state): State<AppState>,
    PathParams(channel, serial): PathParams,
    request: RestRequest,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body = error::body(body)?;
    let principal = request.open_channel(&state, &channel, None)?;
    let declared = declared_client_id(&request.headers)?;
    let identity = principal.identify(declared.as_deref())?;
    let mut operation = match parse_json(&body)? {
        object @ Value::Object(_) => messages_from(object)?.remove(0),
        _ => {
            return Err(ApiError::new(
                codes::INVALID_REQUEST_BODY,
                "Request body must be one Message object",
            ));
        }
    };
    let action = operation.action.unwrap_or(MessageAction::UPDATE);
    let (any, own) = match action {
        MessageAction::UPDATE | MessageAction::APPEND => {
            (Operation::MessageUpdateAny, Operation::MessageUpdateOwn)
        }
        MessageAction::DELETE => (Operation::MessageDeleteAny, Operation::MessageDeleteOwn),
        MessageAction(other) => {
            return Err(ApiError::new(
                codes::INVALID_PARAMETER_VALUE,
                format!(
                    "Unsupported message action {other}: expected 1 (update), 2 (delete) or 5 (append)"
                ),
            ));
        }
    };
    operation.encode_data()?;
    let now = state.clock.now_ms();
    let stored = lock(&state.registry).add_version(
        &state.settings,
        &channel,
        &serial,
        now,
        |latest, version_serial| {
            let owner = latest.client_id.is_some() && latest.client_id == identity;
            if !(owner && principal.require(own, &channel).is_ok()) {
                principal.require(any, &channel)?;
            }
            next_version(latest, operation, action, version_serial, now)
        },
    )?;
    match stored {
        Some(stored) => {
            let version_serial = stored
                .message
                .version
                .as_ref()
                .and_then(|version| version.get("serial").cloned())
                .unwrap_or(Value::Null);
            Ok(Json(json!({"versionSerial": version_serial})))
        }
        None => Err(not_found_message(&channel, &serial)),
    }
}

/// The version `operation` (with `action`) makes of `latest`: the
/// operation's `name`, `data` (with its `encoding`) and `extras` replace the
/// latest's where given (for an append, its string `data` is added to the
/// latest's and the result is a `message.update`, as Ably shows an appended
/// message); `serial`, `id`, `clientId` and `timestamp` stay; `version` is
/// `{serial, timestamp, clientId?, description?, metadata?}`.
fn next_version(
    latest: &Message,
    operation: Message,
    action: MessageAction,
    version_serial: &str,
    now_ms: u64,
) -> ApiResult<Message> {
    let mut next = latest.clone();
    if action == MessageAction::APPEND {
        next.data = match (
            &latest.data,
            &latest.encoding,
            operation.data,
            &operation.encoding,
        ) {
            (Some(Value::String(before)), None, Some(Value::String(added)), None) => {
                Some(Value::String(format!("{before}{added}")))
            }
            (_, _, None, _) => latest.data.clone(),
            _ => {
                return Err(ApiError::new(
                    codes::INVALID_MESSAGE_DATA,
                    "An append needs string data on both the message and the append",
                ));
            }
        };
        next.action = Some(MessageAction::UPDATE);
    } else {
        if operation.data.is_some() {
            next.data = operation.data;
            next.encoding = operation.encoding;
        }
        next.action = Some(action);
    }
    if operation.name.is_some() {
        next.name = operation.name;
    }
    if operation.extras.is_some() {
        next.extras = operation.extras;
    }
    let mut version = serde_json::Map::new();
    version.insert("serial".into(), version_serial.into());
    version.insert("timestamp".into(), now_ms.into());
    if let Some(Value::Object(given)) = operation.version {
        for field in ["clientId", "description", "metadata"] {
            if let Some(value) = given.get(field) {
                version.insert(field.into(), value.clone());
            }
        }
    }
    next.version = Some(Value::Object(version));
    Ok(next)
}

/// `GET /channels/{channel}/messages/{serial}/versions`
/// (`docs/protocol.md#message-operations`, RSL14): needs `history`; every
/// retained version of the message, the publish first, paged as history is
/// (`limit`, `direction`, relative `Link`); 404/40400 when there is none.
pub(super) async fn message_versions(
    State(state): State<AppState>,
    PathParams(channel, serial): PathParams,
    request: RestRequest,
) -> ApiResult<Response> {
    request.open_channel(&state, &channel, Some(Operation::History))?;
    let page = Page::from_query(&request.query)?;
    let now = state.clock.now_ms();
    let versions = lock(&state.registry).versions(&state.settings, &channel, &serial, now);
    if versions.is_empty() {
        return Err(not_found_message(&channel, &serial));
    }
    Ok(page.respond(versions.iter().map(Arc::as_ref), "versions"))
}
