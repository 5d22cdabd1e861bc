//! `POST /keys/{keyName}/revokeTokens` (RSA17; Ably's "Token revocation"
//! docs): cuts off the tokens and JWTs a key issued to a clientId or a
//! revocation key.
//!
//! - Basic auth with the key named in the path only: a token or JWT is
//!   refused with 40162 (as ably-js refuses it before sending), another key
//!   with 40101.
//! - Body `{"targets": ["clientId:…", "revocationKey:…"], "issuedBefore": ms,
//!   "allowReauthMargin": bool}`: 1 to 100 targets; `issuedBefore` defaults
//!   to now and may not be in the future (40003); with `allowReauthMargin`
//!   the revocation applies 30 s later, and the realtime connections it will
//!   cut off are sent AUTH at once so they can renew first.
//! - Answer `200 {"successCount", "failureCount", "results"}`, one result
//!   per target in order: `{target, issuedBefore, appliesAt}`, or `{target,
//!   error}` for a target that does not read (TRS2, TRF2).
//!
//! **Mock policy, our choice:** a key without revocable tokens (only keys a
//! future `POST /apps` creates can be one) is refused with 40000; what real
//! Ably answers there is not publicly documented.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::codes;

use crate::auth::{Credential, find_credential, find_key, no_credentials, verify};
use crate::error::{self, ApiError, ApiResult, PathParam};
use crate::params::Query;
use crate::revocation::{MAX_TARGETS, REAUTH_MARGIN, Revocation, Target};
use crate::state::{AppState, lock};

/// The request body (TRS1 options, RSA17).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokeRequest {
    targets: Vec<String>,
    issued_before: Option<u64>,
    #[serde(default)]
    allow_reauth_margin: bool,
}

pub(super) async fn revoke_tokens(
    State(state): State<AppState>,
    PathParam(key_name): PathParam,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let query = Query::parse(raw.as_deref());
    let credential = find_credential(&headers, &query)?.ok_or_else(no_credentials)?;
    if matches!(credential, Credential::Token(_)) {
        return Err(ApiError::new(
            codes::REVOCATION_NEEDS_BASIC_AUTH,
            "Cannot revoke tokens when using token auth: use the key's Basic auth",
        ));
    }
    let principal = verify(&state, &credential)?;
    if principal.key_name != key_name {
        return Err(ApiError::new(
            codes::INVALID_CREDENTIALS,
            format!("Tokens of key {key_name} can only be revoked with that key"),
        ));
    }
    let entry = find_key(&state.settings.keys, &key_name)?;
    if !entry.revocable {
        return Err(ApiError::new(
            codes::BAD_REQUEST,
            format!("Revocable tokens are not enabled for key {key_name}"),
        ));
    }
    let body = error::body(body)?;
    let request: RevokeRequest = serde_json::from_slice(&body).map_err(|err| {
        ApiError::new(
            codes::INVALID_REQUEST_BODY,
            format!("Invalid revokeTokens body: {err}"),
        )
    })?;
    if request.targets.is_empty() || request.targets.len() > MAX_TARGETS {
        return Err(ApiError::new(
            codes::INVALID_PARAMETER_VALUE,
            format!("targets must list 1 to {MAX_TARGETS} targets"),
        ));
    }
    let now = state.clock.now_ms();
    let issued_before = request.issued_before.unwrap_or(now);
    if issued_before > now {
        return Err(ApiError::new(
            codes::INVALID_PARAMETER_VALUE,
            "issuedBefore must not be in the future",
        ));
    }
    let margin = if request.allow_reauth_margin {
        REAUTH_MARGIN
    } else {
        std::time::Duration::ZERO
    };
    let applies_at = now.saturating_add(u64::try_from(margin.as_millis()).unwrap_or(u64::MAX));
    let revocation = Revocation {
        issued_before_ms: issued_before,
        applies_at_ms: applies_at,
    };

    let mut results = Vec::with_capacity(request.targets.len());
    let mut successes = 0;
    {
        let mut revocations = lock(&state.revocations);
        for text in &request.targets {
            let added = Target::parse(text)
                .and_then(|target| revocations.add(&key_name, target, revocation, now));
            match added {
                Ok(()) => {
                    successes += 1;
                    results.push(json!({
                        "target": text,
                        "issuedBefore": issued_before,
                        "appliesAt": applies_at,
                    }));
                }
                Err(error) => results.push(json!({ "target": text, "error": error.0 })),
            }
        }
    }
    if successes > 0 {
        state.revocations_changed(margin);
    }
    Ok(Json(json!({
        "successCount": successes,
        "failureCount": request.targets.len() - successes,
        "results": results,
    })))
}
