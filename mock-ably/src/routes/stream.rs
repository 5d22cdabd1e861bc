//! `GET /sse` and `GET /event-stream`
//! (`docs/protocol.md#the-streaming-endpoints`).
//!
//! Everything that can fail is checked before the response starts, and
//! answered with the error envelope: credentials, channel names (40010),
//! `subscribe` on every channel (40160,
//! `docs/protocol.md#missing-subscribe-capability`), a declared `clientId`
//! (40102), parameter values (40003). Then the channels are attached, and only
//! then does the `200` go out: every message published after the client sees
//! the status is delivered on the stream.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::capability::Operation;
use shared::codes;

use crate::auth::{CredentialKind, authenticate};
use crate::channel::StartAt;
use crate::error::{ApiError, ApiResult};
use crate::frame::Framing;
use crate::params::{ChannelSpec, Query, channel_specs, invalid_param};
use crate::state::{AppState, lock};
use crate::stream::{StreamConfig, body};

/// Ably's cap on `rewind` (`docs/protocol.md#stream-parameters`).
const MAX_REWIND: usize = 100;

/// `GET /sse`: always Server-Sent Events.
pub(super) async fn sse(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    open(&state, Framing::Sse, &headers, raw.as_deref()).unwrap_or_else(IntoResponse::into_response)
}

/// `GET /event-stream`: SSE with `Accept: text/event-stream`, else plain
/// JSON lines.
pub(super) async fn event_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let wants_sse = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    let framing = if wants_sse {
        Framing::Sse
    } else {
        Framing::Plain
    };
    open(&state, framing, &headers, raw.as_deref()).unwrap_or_else(IntoResponse::into_response)
}

fn open(
    state: &AppState,
    framing: Framing,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> ApiResult<Response> {
    // Watch for drops and expiries from before the credential is checked, so
    // one that races this request still reaches the stream.
    let control = state.control.subscribe();
    let seen = *control.borrow();

    let query = Query::parse(raw);
    let principal = authenticate(state, headers, &query)?;
    let channels = query
        .get("channels")
        .or_else(|| query.get("channel"))
        .ok_or_else(|| ApiError::new(codes::BAD_REQUEST, "No channels given: use channels=…"))?;
    let specs = channel_specs(channels, query.get("separator").unwrap_or(","))?;
    for spec in &specs {
        principal.require(Operation::Subscribe, &spec.name)?;
    }
    principal.identify(query.get("clientId"))?;
    let enveloped = query.flag("enveloped", true)?;
    let heartbeats = query.flag("heartbeats", false)?;

    let mut delta_channels = Vec::new();
    for spec in &specs {
        let delta = spec.params.get("delta").or_else(|| query.get("delta"));
        match delta {
            None | Some("") => {}
            Some("vcdiff") => delta_channels.push(spec.name.clone()),
            Some(other) => return Err(invalid_param("delta", other)),
        }
    }

    let now = state.clock.now_ms();
    let mut registry = lock(&state.registry);
    // `Last-Event-ID` (what an EventSource sends when it reconnects) wins
    // over `lastEvent`: the browser keeps the URL it was opened with, so the
    // header is the newer of the two. With either, rewind is ignored
    // (`docs/protocol.md#stream-parameters`).
    let last_event = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .or_else(|| query.get("lastEvent"));
    let starts = specs
        .iter()
        .map(|spec| {
            let start = match last_event {
                // An unknown or too-old cursor starts fresh, with no error
                // (a mock choice:
                // `docs/protocol.md#unknown-or-expired-resume-points`).
                Some(cursor) => registry
                    .parse_cursor(cursor)
                    .map_or(StartAt::Fresh, StartAt::After),
                None => rewind(spec, &query, now)?,
            };
            Ok((spec.name.clone(), start))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let attachment = registry.attach(&state.settings, &starts, now);
    drop(registry);

    let config = StreamConfig {
        framing,
        enveloped,
        heartbeats,
        delta_channels,
        expires_ms: principal.expires_ms,
        token_auth: principal.kind != CredentialKind::Key,
        principal,
    };
    let names = starts.into_iter().map(|(name, _)| name).collect();
    let body = body(state.clone(), config, attachment, names, control, seen);
    let content_type = match framing {
        Framing::Sse => "text/event-stream",
        Framing::Plain => "application/json",
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Where a channel starts without `lastEvent`: `rewind` from the channel's
/// qualifier or the request, a count (`rewind=5`) or a time (`rewind=10s`,
/// capped by `rewindLimit`), at most 100 messages either way.
pub(crate) fn rewind(spec: &ChannelSpec, query: &Query, now_ms: u64) -> ApiResult<StartAt> {
    let param = |name: &str| spec.params.get(name).or_else(|| query.get(name));
    let Some(value) = param("rewind") else {
        return Ok(StartAt::Fresh);
    };
    if let Ok(count) = value.parse::<usize>() {
        return Ok(StartAt::RewindCount(count.min(MAX_REWIND)));
    }
    let since = shared::duration::parse(value).map_err(|_| invalid_param("rewind", value))?;
    let limit = match param("rewindLimit") {
        None => MAX_REWIND,
        Some(limit) => limit
            .parse::<usize>()
            .map_err(|_| invalid_param("rewindLimit", limit))?
            .min(MAX_REWIND),
    };
    let since_ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
    Ok(StartAt::RewindSince {
        since_ms: now_ms.saturating_sub(since_ms),
        limit,
    })
}
