//! `POST /api/revoke`: cut a user, a session or a tenant off now, rather
//! than at token expiry (`docs/protocol.md#token-revocation`).
//!
//! - Only with `AUTH_ADMIN_ROLE` set; otherwise the route does not exist
//!   (404, like any unknown path).
//! - Authorised by an app JWT (the `Authorization` header or the
//!   `AUTH_APP_JWT_COOKIE` cookie, as the token endpoints) whose roles
//!   include `AUTH_ADMIN_ROLE`: without it, 403/40300. The per-IP and
//!   per-user limits apply.
//! - Body: `application/json` only (a cross-site form cannot send it without
//!   a CORS preflight, so a session cookie alone cannot be made to revoke),
//!   `{"clientId": …}` or `{"revocationKey": …}`, exactly one, 1 to 1024
//!   bytes without control characters, and optionally `"allowReauthMargin":
//!   true` (Ably enforces the revocation 30 s later, so clients can renew
//!   first). Anything else is 400/40003, before Ably is asked.
//! - Calls Ably's `POST /keys/{keyName}/revokeTokens` with the server's key
//!   (Basic auth) and answers 200 with Ably's result (`{successCount,
//!   failureCount, results}`); Ably's refusals map as `/api/ably-token`'s do.
//! - Logs who revoked what kind of target at `info` (the clientId revoked,
//!   never a revocation key, which may be a session id).
//! - Remembers the revocation for a second, so that JWTs this instance mints
//!   next for the target are not revoked with it ([`crate::revocation`]).

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::token::{app_token, limit_ip, media_type, missing_app_token, read_body};
use crate::AppState;
use crate::app_jwt::target_problem;
use crate::error::ApiError;
use crate::mint;
use crate::revocation::TargetKind;

/// The route, when `enabled` (`AUTH_ADMIN_ROLE` is set); otherwise none, so
/// the path is answered 404 whatever the method.
pub(crate) fn router(enabled: bool) -> Router<AppState> {
    if enabled {
        Router::new().route("/api/revoke", post(revoke))
    } else {
        Router::new()
    }
}

/// The body of a revocation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RevokeBody {
    client_id: Option<String>,
    revocation_key: Option<String>,
    allow_reauth_margin: Option<bool>,
}

async fn revoke(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let config = state.config();
    let Some(admin_role) = &config.admin_role else {
        return Err(ApiError::NotFound);
    };
    limit_ip(&request, &state)?;
    let cookie = config.app_jwt_cookie.as_deref();
    let bearer = app_token(request.headers(), cookie)?.ok_or_else(|| missing_app_token(cookie))?;
    let admin = state.verifier().verify(&bearer).await?;
    if !admin.roles.iter().any(|role| role == admin_role) {
        return Err(ApiError::NotAdmin {
            role: admin_role.clone(),
        });
    }
    state.check_user_rate(&admin.client_id)?;
    if media_type(request.headers()).as_deref() != Some("application/json") {
        return Err(ApiError::BadRequest(
            "send the revocation as application/json".to_owned(),
        ));
    }
    let body = read_body(request, config.max_body_bytes).await?;
    let (kind, value, allow_reauth_margin) = parse(&body)?;

    let target = format!("{}:{value}", kind.as_str());
    let result = mint::revoke_tokens(
        state.http(),
        &config.ably_rest_url,
        &config.api_key,
        std::slice::from_ref(&target),
        allow_reauth_margin,
    )
    .await?;
    let now_ms = mint::now_ms();
    // Ably's own `issuedBefore` for the target, if it says; else our clock.
    let first = result
        .get("results")
        .and_then(Value::as_array)
        .and_then(|results| results.first());
    let issued_before = first
        .and_then(|r| r.get("issuedBefore"))
        .and_then(Value::as_u64);
    if first.is_some_and(|r| r.get("error").is_none()) {
        state
            .recent_revocations()
            .record(kind, &value, issued_before.unwrap_or(now_ms), now_ms);
    }
    let revoked_client = (kind == TargetKind::ClientId).then_some(value.as_str());
    let success_count = result.get("successCount").and_then(Value::as_u64);
    tracing::info!(
        admin = %admin.client_id,
        target_kind = kind.as_str(),
        client_id = revoked_client,
        allow_reauth_margin,
        success_count,
        "tokens revoked"
    );
    let mut response = Json(result).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Reads and checks the body: exactly one target, a usable value, and
/// `allowReauthMargin` a boolean if there.
fn parse(body: &[u8]) -> Result<(TargetKind, String, bool), ApiError> {
    let body: RevokeBody = serde_json::from_slice(body).map_err(|err| {
        ApiError::BadRequest(format!(
            "the body must be {{\"clientId\": \"...\"}} or {{\"revocationKey\": \"...\"}}, optionally with \"allowReauthMargin\": true or false ({err})"
        ))
    })?;
    let (kind, value) = match (body.client_id, body.revocation_key) {
        (Some(client_id), None) => (TargetKind::ClientId, client_id),
        (None, Some(key)) => (TargetKind::RevocationKey, key),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "name one target: clientId or revocationKey, not both".to_owned(),
            ));
        }
        (None, None) => {
            return Err(ApiError::BadRequest(
                "name a target: clientId or revocationKey".to_owned(),
            ));
        }
    };
    if let Some(problem) = target_problem(&value) {
        return Err(ApiError::BadRequest(format!("{} {problem}", kind.as_str())));
    }
    if kind == TargetKind::ClientId && value == "*" {
        return Err(ApiError::BadRequest(
            "clientId \"*\" is Ably's wildcard, not a user".to_owned(),
        ));
    }
    Ok((kind, value, body.allow_reauth_margin.unwrap_or(false)))
}
