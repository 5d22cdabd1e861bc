//! `POST /keys/{keyName}/requestToken`
//! (`docs/protocol.md#exchanging-a-tokenrequest`).
//!
//! Checks, in order: the body parses (40001; 40003 for a `ttl` that is
//! negative or not a number, `docs/protocol.md#exchanging-a-tokenrequest`;
//! 40003 for a signed field that holds a line feed, see below); `keyName` in
//! the body is the one in the path (40001); field rules and the ±2 minute
//! timestamp window (40001, 40012, 40003, 40104); the key exists (40400); a
//! signed request's MAC (40101) or an unsigned request's Basic or token auth
//! (40101, 40102); the nonce is fresh (40105); the requested capability
//! intersects the key's (or the token's) (40160). Success is `200` with
//! TokenDetails whose `capability` is the canonical text of the intersection:
//! ably-js accepts any 2xx, and `docs/real-clients.md#requesttoken` recommends
//! 200 (`docs/protocol.md#exchanging-a-tokenrequest` leaves 200 or 201 open).
//!
//! **Mock policy, our choice:** a request whose `keyName`, `capability` or
//! `nonce` holds a line feed, or whose `clientId` holds any control character
//! (U+0000–U+001F, U+007F), is refused with 40003 (400) before its MAC is
//! looked at. The MAC covers the fields joined by `\n`, so such a field can
//! move text into the next one: a request signed for clientId
//! `"*\n<T>"` re-sent as clientId `"*"`, timestamp `T` and nonce
//! `"<timestamp>\n<nonce>"` carries a valid MAC for a wildcard token. What
//! real Ably answers to such a request is not publicly specified; the mock
//! refuses it outright (`TokenRequest::from_json`, whose field types cannot
//! hold the separator).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use shared::token::{TIMESTAMP_TOLERANCE_MS, TokenDetails, TokenRequest};
use shared::{Capability, codes};

use crate::auth::{CredentialKind, authenticate, find_credential, find_key, issue_token};
use crate::error::{self, ApiError, ApiResult, PathParam};
use crate::params::Query;
use crate::state::{AppState, lock};

pub(super) async fn request_token(
    State(state): State<AppState>,
    PathParam(key_name): PathParam,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<TokenDetails>> {
    let body = error::body(body)?;
    // Refuses (40003) a signed field holding the separator of the signed
    // text: see the mock policy above.
    let request = TokenRequest::from_json(&body)?;
    if request.key_name != key_name {
        return Err(ApiError::new(
            codes::INVALID_REQUEST_BODY,
            format!(
                "keyName {:?} in the body does not match {key_name:?} in the path",
                request.key_name
            ),
        ));
    }
    let now = state.clock.now_ms();
    request.validate(now)?;
    let key = find_key(&state.settings.keys, &key_name)?;

    // What the new token may get at most, and the clientId it must carry.
    let (bound, client_id) = if request.mac.is_some() {
        request.verify_mac(key.key.secret())?;
        (
            key.capability.clone(),
            request.client_id.clone().map(String::from),
        )
    } else {
        // An unsigned request is authenticated by the request itself.
        let query = Query::parse(raw.as_deref());
        if find_credential(&headers, &query)?.is_none() {
            return Err(ApiError::new(
                codes::INVALID_CREDENTIALS,
                "Request mac is missing, and the request carries no credentials",
            ));
        }
        let principal = authenticate(&state, &headers, &query)?;
        if principal.key_name != key_name {
            return Err(ApiError::new(
                codes::INVALID_CREDENTIALS,
                "The request's credentials belong to another key",
            ));
        }
        let client_id = match principal.kind {
            CredentialKind::Key => request.client_id.clone().map(String::from),
            _ => principal.identify(request.client_id.as_deref())?,
        };
        (principal.capability, client_id)
    };

    lock(&state.auth).use_nonce(
        &key_name,
        &request.nonce,
        request.timestamp.saturating_add(TIMESTAMP_TOLERANCE_MS),
        now,
    )?;
    let requested = match &request.capability {
        Some(text) => Capability::parse(text)?,
        None => Capability::all(),
    };
    let capability = requested.intersect(&bound)?;
    Ok(Json(issue_token(
        &state,
        key,
        capability,
        client_id,
        request.effective_ttl_ms(),
    )))
}
