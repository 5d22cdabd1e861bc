//! `GET /channels/{channel}/presence`: the members present now (RSP3), as
//! ably-js's REST `presence.get()` reads them.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use shared::capability::Operation;

use crate::auth::authenticate;
use crate::error::{ApiResult, PathParam};
use crate::params::{Query, invalid_param, validate_channel_name};
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
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let query = Query::parse(raw.as_deref());
    let principal = authenticate(&state, &headers, &query)?;
    validate_channel_name(&channel)?;
    principal.require(Operation::Subscribe, &channel)?;
    let limit = super::rest::page_limit(&query)?;
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
