//! `GET /channels/{channel}/presence`: the members present now (RSP3), as
//! ably-js's REST `presence.get()` reads them; and `GET /presence`, the same
//! for several channels at once (batch presence, RSC24).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shared::capability::Operation;
use shared::codes;

use super::rest::{RestRequest, forwards, page_limit};
use crate::error::{ApiError, ApiResult, PathParam};
use crate::params::{invalid_param, validate_channel_name};
use crate::state::{AppState, lock};

/// `GET /channels/{channel}/presence`: needs `subscribe`; `limit` (default
/// 100, at most 1000), `clientId` and `connectionId` filters (RSP3a), and
/// relative `Link` paging (`first`, `current`, `next`); msgpack when asked
/// for, as every REST answer (`docs/protocol.md#msgpack-on-rest`). Members
/// come as
/// PRESENT (action 1) with their ids, data, encoding and extras as they
/// entered, ordered by clientId then connectionId.
pub(super) async fn get_presence(
    State(state): State<AppState>,
    PathParam(channel): PathParam,
    request: RestRequest,
) -> ApiResult<Response> {
    request.open_channel(&state, &channel, Some(Operation::Subscribe))?;
    let query = &request.query;
    let limit = page_limit(query)?;
    let offset = match query.get("offset") {
        None => 0,
        Some(value) => value
            .parse::<usize>()
            .map_err(|_| invalid_param("offset", value))?,
    };
    let client_id = query.get("clientId");
    let connection_id = query.get("connectionId");
    let members: Vec<_> = lock(&state.presence)
        .members(&channel)
        .into_iter()
        .filter(|m| client_id.is_none_or(|id| m.client_id.as_deref() == Some(id)))
        .filter(|m| connection_id.is_none_or(|id| m.connection_id.as_deref() == Some(id)))
        .collect();
    let more = members.len() > offset.saturating_add(limit);
    let page: Vec<_> = members.into_iter().skip(offset).take(limit).collect();

    let link = |offset: usize| {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for name in ["clientId", "connectionId"] {
            if let Some(value) = query.get(name) {
                out.append_pair(name, value);
            }
        }
        out.append_pair("limit", &limit.to_string());
        if offset > 0 {
            out.append_pair("offset", &offset.to_string());
        }
        format!("<./presence?{}>", out.finish())
    };
    let mut links = vec![
        format!("{}; rel=\"first\"", link(0)),
        format!("{}; rel=\"current\"", link(offset)),
    ];
    if more {
        links.push(format!("{}; rel=\"next\"", link(offset + limit)));
    }
    let mut response = Json(page).into_response();
    response.headers_mut().insert(
        header::LINK,
        HeaderValue::from_str(&links.join(", ")).expect("link URLs are percent-encoded ASCII"),
    );
    Ok(response)
}

/// `GET /presence?channels=a,b`: every named channel's members, as
/// `{successCount, failureCount, results}` with one result per channel in
/// the order asked, `{channel, presence}` or `{channel, error}` for a channel
/// the credential may not read (40160) or whose name is invalid (BGR2,
/// BGF2). No channels is 400/40000.
pub(super) async fn batch_presence(
    State(state): State<AppState>,
    request: RestRequest,
) -> ApiResult<Json<Value>> {
    let principal = request.authenticate(&state)?;
    let query = &request.query;
    let channels: Vec<&str> = query
        .get("channels")
        .map(|list| list.split(',').filter(|c| !c.is_empty()).collect())
        .unwrap_or_default();
    if channels.is_empty() {
        return Err(ApiError::new(
            codes::BAD_REQUEST,
            "Batch presence needs channels=name[,name…]",
        ));
    }
    let results: Vec<Value> = channels
        .iter()
        .map(|&channel| {
            validate_channel_name(channel)
                .and_then(|()| principal.require(Operation::Subscribe, channel))
                .map(|()| json!({"channel": channel, "presence": lock(&state.presence).members(channel)}))
                .unwrap_or_else(|ApiError(error)| json!({"channel": channel, "error": error}))
        })
        .collect();
    let failures = results.iter().filter(|r| r.get("error").is_some()).count();
    Ok(Json(json!({
        "successCount": results.len() - failures,
        "failureCount": failures,
        "results": results,
    })))
}

/// `GET /channels/{channel}/presence/history` (RSP4): the channel's last
/// presence changes (enter, update, leave, with their original ids and
/// timestamps), newest first unless `direction=forwards`; `limit` as for
/// presence (default 100, at most 1000). Needs `history`. One page only:
/// no `next` link (the mock keeps at most 1000 changes per channel).
pub(super) async fn presence_history(
    State(state): State<AppState>,
    PathParam(channel): PathParam,
    request: RestRequest,
) -> ApiResult<Json<Vec<shared::protocol::PresenceMessage>>> {
    request.open_channel(&state, &channel, Some(Operation::History))?;
    let query = &request.query;
    let limit = page_limit(query)?;
    let forwards = forwards(query)?;
    let mut changes = lock(&state.presence).history(&channel);
    if !forwards {
        changes.reverse();
    }
    changes.truncate(limit);
    Ok(Json(changes))
}
