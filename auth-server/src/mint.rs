//! Turning a decided grant into Ably credentials: an Ably JWT (§2), a signed
//! TokenRequest (§3.1, §3.2), or TokenDetails fetched from Ably (§3.3).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use reqwest::StatusCode;
use shared::jwt::{AblyJwtClaims, encode_jwt};
use shared::token::generate_nonce;
use shared::{
    ApiKey, Capability, ErrorInfo, ErrorResponse, TokenDetails, TokenParams, TokenRequest, codes,
};
use url::Url;

use crate::error::ApiError;

/// What a user gets: decided by policy, request and key, then minted.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The verified clientId.
    pub(crate) client_id: String,
    /// The capability: policy ∩ request ∩ key, never empty.
    pub(crate) capability: Capability,
    /// The token lifetime, already clamped.
    pub(crate) ttl: Duration,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// An Ably JWT for `grant`, issued at `now_secs`: `kid` = key name, HS256
/// with the key secret, a random `jti` so two tokens minted in the same
/// second still differ, and `exp = iat + ttl` (rounded up to whole seconds).
pub(crate) fn jwt(key: &ApiKey, grant: &Grant, now_secs: u64) -> Result<String, ApiError> {
    let ttl_secs = ttl_ms(grant.ttl).div_ceil(1000).max(1);
    let mut claims = AblyJwtClaims::new(
        now_secs,
        now_secs.saturating_add(ttl_secs),
        grant.capability.to_canonical_string(),
    );
    claims.client_id = Some(grant.client_id.clone());
    claims.jti = Some(generate_nonce().context("generating a jti")?);
    Ok(encode_jwt(key, &claims).context("signing the Ably JWT")?)
}

/// A TokenRequest for `grant`, signed at `now_ms` with a fresh nonce; the
/// capability is canonical text (§3.2.1: we always canonicalise).
pub(crate) fn token_request(
    key: &ApiKey,
    grant: &Grant,
    now_ms: u64,
) -> Result<TokenRequest, ApiError> {
    let params = TokenParams {
        ttl: Some(ttl_ms(grant.ttl)),
        capability: Some(grant.capability.to_canonical_string()),
        client_id: Some(grant.client_id.clone()),
    };
    Ok(TokenRequest::new_signed(key, params, now_ms).context("signing the TokenRequest")?)
}

/// Exchanges a TokenRequest for `grant` at Ably's
/// `POST {rest_url}/keys/{keyName}/requestToken`.
///
/// Ably's refusals are mapped by [`refused`]; anything else that goes wrong
/// is ours to report as a 5xx: 502 when Ably answers with a server error or
/// garbage, 503 when it cannot be reached.
pub(crate) async fn request_token(
    client: &reqwest::Client,
    rest_url: &Url,
    key: &ApiKey,
    grant: &Grant,
) -> Result<TokenDetails, ApiError> {
    let request = token_request(key, grant, now_ms())?;
    // ably-js puts the key name into the path as it is (§3.3); it is made of
    // `[A-Za-z0-9_-.]` only (`ApiKey::parse`), so no escaping is needed.
    let url = format!(
        "{}/keys/{}/requestToken",
        rest_url.as_str().trim_end_matches('/'),
        key.key_name()
    );
    let response = client
        .post(url)
        .json(&request)
        // No timeout of its own: the request timeout middleware bounds the
        // whole request, this round trip included, and answers 503/50003.
        .send()
        .await
        .map_err(|err| {
            tracing::warn!(error = %err.without_url(), "requestToken to Ably failed");
            unavailable(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::INTERNAL_ERROR,
                "cannot reach Ably",
            )
        })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|err| {
        tracing::warn!(error = %err.without_url(), "reading Ably's requestToken answer failed");
        unavailable(
            StatusCode::BAD_GATEWAY,
            codes::INTERNAL_ERROR,
            "Ably's answer was cut short",
        )
    })?;
    if status.is_success() {
        // §3.3 [U]: 200 or 201; any 2xx is success.
        return serde_json::from_slice::<TokenDetails>(&body).map_err(|err| {
            tracing::warn!(error = %err, "Ably's requestToken answer is not TokenDetails");
            unavailable(
                StatusCode::BAD_GATEWAY,
                codes::INTERNAL_ERROR,
                "Ably's answer was not TokenDetails",
            )
        });
    }
    let info = serde_json::from_slice::<ErrorResponse>(&body)
        .map(|envelope| envelope.error)
        .unwrap_or_else(|_| {
            ErrorInfo::new(
                codes::INTERNAL_ERROR,
                status.as_u16(),
                format!("Ably answered {status}"),
            )
        });
    if status.is_client_error() {
        Err(refused(status, info))
    } else {
        tracing::warn!(status = status.as_u16(), code = info.code, message = %info.message, "Ably failed requestToken");
        Err(unavailable(
            StatusCode::BAD_GATEWAY,
            codes::INTERNAL_ERROR,
            &format!(
                "Ably failed to issue a token: {} (code {})",
                info.message, info.code
            ),
        ))
    }
}

/// What Ably's 4xx answer to the server's own `requestToken` means for the
/// caller. The caller never talks to Ably here: the key, the clock, the
/// nonce and the grant in the request are all the server's. So a refusal is
/// the server's problem (500), not bad user credentials: a 401/40101 would
/// blame the user and make SDKs retry forever (`ABLY-PROTOCOL.md` §9.1.3).
/// Two refusals keep a meaning for the caller:
/// - 429 (Ably's rate limit): passed on, so the caller retries later;
/// - 40160 (the key's own capability allows none of the grant): 403, as when
///   the policy grants nothing, so SDKs stop retrying.
fn refused(status: StatusCode, mut info: ErrorInfo) -> ApiError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        tracing::warn!(code = info.code, message = %info.message, "Ably rate-limited requestToken");
        info.status_code = status.as_u16();
        return ApiError::Ably(info);
    }
    if info.code == codes::OPERATION_NOT_PERMITTED {
        tracing::error!(
            code = info.code,
            message = %info.message,
            "Ably refused the grant's capability: is AUTH_KEY_CAPABILITY wider than the key's own?"
        );
        return ApiError::CapabilityDenied(format!(
            "the auth server's Ably key does not allow the granted capability ({})",
            info.message
        ));
    }
    let what = if matches!(status.as_u16(), 401 | 403 | 404) {
        "credentials (check its ABLY_API_KEY and clock)"
    } else {
        "token request"
    };
    tracing::error!(
        status = status.as_u16(),
        code = info.code,
        message = %info.message,
        "Ably refused the auth server's own requestToken: {what}"
    );
    ApiError::AblyRefusedServer {
        what,
        code: info.code,
        message: info.message,
    }
}

fn unavailable(status: StatusCode, code: u32, message: &str) -> ApiError {
    ApiError::Unavailable {
        status,
        code,
        message: message.to_owned(),
    }
}
