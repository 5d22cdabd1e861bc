//! The three token endpoints: `/api/ably-jwt`, `/api/ably-token-request` and
//! `/api/ably-token`.
//!
//! Each accepts what ably-js's `authUrl` sends
//! (`docs/real-clients.md#authcallback-and-authurl`): GET with token parameters
//! in the query, or POST with them in a form body (or, for hand-written
//! callers, a JSON body); the URL's own query is read in both cases, and body
//! parameters win over query ones. Every request goes through the same decision
//! ([`decide`]) before minting.

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use shared::Capability;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::AppState;
use crate::app_jwt::GrantFor;
use crate::client_ip::client_ip;
use crate::error::ApiError;
use crate::metrics::TokenKind;
use crate::mint::{self, Grant};
use crate::policy::{Allowed, CanonicalCapability, without_redundant};
use crate::revocation::MAX_WAIT;
use crate::routes::accept::WantsJson;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/ably-jwt", get(ably_jwt).post(ably_jwt))
        .route(
            "/api/ably-token-request",
            get(ably_token_request).post(ably_token_request),
        )
        .route("/api/ably-token", get(ably_token).post(ably_token))
}

/// `200 application/jwt`: an Ably JWT.
async fn ably_jwt(
    State(state): State<AppState>,
    request: AuthRequest,
) -> Result<Response, ApiError> {
    let mut grant = decide(&state, request).await?;
    wait_out_revocation(&state, &mut grant).await;
    let token = state.signer().jwt(&grant)?;
    issued(&state, TokenKind::Jwt, &grant);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwt"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        token,
    )
        .into_response())
}

/// For a user (or revocation key) this instance revoked in the last second,
/// waits for the next whole second before the JWT is signed: its `iat` is
/// whole seconds, and one in the revocation's second would count as issued
/// before it (`crate::revocation`). At most [`MAX_WAIT`]; for anyone else,
/// one atomic load.
async fn wait_out_revocation(state: &AppState, grant: &mut Grant) {
    let recent = state.recent_revocations();
    let key = grant
        .identity
        .revocation_key
        .as_ref()
        .map(|key| key.value.as_str());
    let give_up_at = grant
        .now_ms
        .saturating_add(u64::try_from(MAX_WAIT.as_millis()).unwrap_or(u64::MAX));
    while let Some(not_before) = recent.not_before(grant.client_id(), key, grant.now_ms) {
        let until = not_before.min(give_up_at);
        if grant.now_ms >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(until - grant.now_ms)).await;
        grant.now_ms = mint::now_ms();
    }
}

/// `200 application/json`: a signed TokenRequest that ably-js exchanges itself.
async fn ably_token_request(
    State(state): State<AppState>,
    request: AuthRequest,
) -> Result<Response, ApiError> {
    let grant = decide(&state, request).await?;
    let token_request = mint::token_request(&state.config().api_key, &grant, grant.now_ms)?;
    issued(&state, TokenKind::TokenRequest, &grant);
    Ok(no_store(Json(token_request)))
}

/// A token obtained from Ably: `200 text/plain` with the bare token string,
/// or `200 application/json` with TokenDetails when the request's `Accept`
/// prefers JSON ([`crate::routes::accept::prefers_json`]). Either way `Vary: Accept`.
async fn ably_token(
    State(state): State<AppState>,
    WantsJson(wants_json): WantsJson,
    request: AuthRequest,
) -> Result<Response, ApiError> {
    let grant = decide(&state, request).await?;
    let config = state.config();
    let details =
        mint::request_token(state.http(), &config.ably_rest_url, &config.api_key, &grant).await?;
    issued(&state, TokenKind::Token, &grant);
    let mut response = if wants_json {
        no_store(Json(details))
    } else {
        no_store((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            details.token,
        ))
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    Ok(response)
}

fn no_store(body: impl IntoResponse) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        body,
    )
        .into_response()
}

/// Counts an issued credential and writes its audit line: at `debug` under
/// the target `auth_server::audit` (`RUST_LOG=info,auth_server::audit=debug`
/// turns it on). At `info` that line was a formatted event and a write to
/// stderr for every credential, the largest cost of issuing one, so the
/// default trail is `/metrics` (`auth_tokens_issued_total`).
fn issued(state: &AppState, kind: TokenKind, grant: &Grant) {
    state.metrics().issued(kind);
    tracing::debug!(
        target: "auth_server::audit",
        kind = kind.as_str(),
        client_id = %grant.client_id(),
        capability = %grant.capability.text,
        ttl_ms = u64::try_from(grant.ttl.as_millis()).unwrap_or(u64::MAX),
        "issued"
    );
}

/// Who is asking for what: verify the user (with at least a second left on
/// their app token, unless `AUTH_TTL_WITHIN_APP_TOKEN=false`), apply the
/// per-user limit, check the clientId, and compute policy ∩ request ∩ key.
async fn decide(state: &AppState, request: AuthRequest) -> Result<Grant, ApiError> {
    let config = state.config();
    let token = request
        .bearer
        .ok_or_else(|| missing_app_token(config.app_jwt_cookie.as_deref()))?;
    let identity = state.verifier().verify(&token).await?;
    let now_ms = mint::now_ms();
    // Verification forgives `exp` by AUTH_JWT_LEEWAY; a credential does not:
    // it ends by the app token's `exp`, so a token inside the leeway, or with
    // under a second left, gets nothing.
    let ends_by_ms = if config.ttl_within_app_token {
        let ends_by_ms = identity.exp.saturating_mul(1000);
        if ends_by_ms.saturating_sub(now_ms) < 1000 {
            return Err(mint::app_token_expired());
        }
        ends_by_ms
    } else {
        u64::MAX
    };
    state.check_user_rate(&identity.client_id)?;

    let params = request.params;
    if let Some(requested) = params.client_id
        && requested != identity.client_id
    {
        return Err(ApiError::ClientIdMismatch { requested });
    }
    // The grant remembered with the app token, if it was worked out under
    // the policy in force (one atomic load); else worked out now, and
    // remembered if it is the first.
    let grant_for = |state: &AppState| {
        let policy = state.policy();
        GrantFor {
            generation: policy.generation,
            allowed: Allowed::for_user(
                &policy.policy,
                &config.key_capability,
                &identity.client_id,
                &identity.roles,
            ),
        }
    };
    let remembered = identity.allowed.get_or_init(|| grant_for(state));
    let fresh;
    let grant = if remembered.generation == state.policy_generation() {
        remembered
    } else {
        fresh = grant_for(state);
        &fresh
    };
    let allowed = grant.allowed.as_ref().ok_or_else(|| {
        ApiError::CapabilityDenied("the policy grants this user nothing".to_owned())
    })?;
    let capability = match params.capability {
        None => Arc::clone(&allowed.granted),
        // Narrowing only: the result never exceeds `allowed`.
        Some(requested) => {
            let narrowed = requested.intersect(&allowed.capability).map_err(|_| {
                ApiError::CapabilityDenied(
                    "nothing in the requested capability is allowed for this user".to_owned(),
                )
            })?;
            Arc::new(CanonicalCapability::new(without_redundant(&narrowed)))
        }
    };
    let ttl = params
        .ttl_ms
        .map_or(config.token_ttl, Duration::from_millis)
        .min(config.max_token_ttl);
    Ok(Grant {
        identity,
        capability,
        ttl,
        now_ms,
        ends_by_ms,
    })
}

/// The refusal of a request without an app token: naming the cookie too when
/// `AUTH_APP_JWT_COOKIE` is set.
pub(super) fn missing_app_token(cookie: Option<&str>) -> ApiError {
    match cookie {
        Some(cookie) => ApiError::MissingCredentialsOrCookie {
            cookie: cookie.to_owned(),
        },
        None => ApiError::MissingCredentials,
    }
}

/// A token endpoint request: the bearer app token and the token parameters.
pub(crate) struct AuthRequest {
    bearer: Option<String>,
    params: RequestedParams,
}

/// Never shows the app token, only whether there is one.
impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("bearer", &self.bearer.as_ref().map(|_| "[REDACTED]"))
            .field("params", &self.params)
            .finish()
    }
}

/// The token parameters a caller may send (ably-js's `tokenParams`).
#[derive(Debug, Default)]
struct RequestedParams {
    capability: Option<Capability>,
    ttl_ms: Option<u64>,
    client_id: Option<String>,
}

impl FromRequest<AppState> for AuthRequest {
    type Rejection = ApiError;

    /// Applies the per-IP limit first: it sits in front of verification, so
    /// one address cannot spend the server's CPU on signatures. Then reads
    /// the bearer token and the parameters, a body up to
    /// `AUTH_MAX_BODY_BYTES`.
    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        limit_ip(&request, state)?;
        let bearer = app_token(request.headers(), state.config().app_jwt_cookie.as_deref())?;
        let mut params = RequestedParams::default();
        if let Some(query) = request.uri().query() {
            params.read_form(query.as_bytes())?;
        }
        if request.method() == Method::POST {
            let content_type = media_type(request.headers());
            let body = read_body(request, state.config().max_body_bytes).await?;
            if !body.is_empty() {
                match content_type.as_deref() {
                    Some("application/x-www-form-urlencoded") => params.read_form(&body)?,
                    Some("application/json") => params.read_json(&body)?,
                    _ => {
                        return Err(ApiError::BadRequest(
                            "send token parameters as application/x-www-form-urlencoded or application/json".to_owned(),
                        ));
                    }
                }
            }
        }
        Ok(Self { bearer, params })
    }
}

/// The request's body, at most `limit` bytes.
///
/// # Errors
///
/// 413 over the limit, 400 if it cannot be read.
pub(super) async fn read_body(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|err| {
            if std::error::Error::source(&err)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
            {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest(format!("cannot read the body: {err}"))
            }
        })
}

/// The media type of the request's `Content-Type`, lowercased, without
/// parameters.
pub(super) fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// Applies `AUTH_RATE_LIMIT_PER_IP`, when set. The address is the TCP
/// peer's, or the client a trusted proxy names in `X-Forwarded-For`
/// (`AUTH_TRUSTED_PROXIES`, see [`crate::client_ip`]). Without the peer
/// address (a router served without connect info) there is no limit.
pub(super) fn limit_ip(request: &Request, state: &AppState) -> Result<(), ApiError> {
    if !state.limits_ips() {
        return Ok(());
    }
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return Ok(());
    };
    let ip = client_ip(
        peer.ip(),
        request.headers(),
        &state.config().trusted_proxies,
    );
    state.check_ip_rate(ip)
}

/// The app token: from `Authorization: Bearer <token>` when that header is
/// there (it wins), else from the `cookie` cookie (`AUTH_APP_JWT_COOKIE`) when
/// one is configured.
pub(super) fn app_token(
    headers: &HeaderMap,
    cookie: Option<&str>,
) -> Result<Option<String>, ApiError> {
    match cookie {
        Some(name) if !headers.contains_key(header::AUTHORIZATION) => cookie_value(headers, name),
        _ => bearer(headers),
    }
}

/// The longest app token a cookie may carry: 4096 bytes, the most a browser
/// stores for one cookie (RFC 6265 §6.1), so anything longer did not come
/// from one.
pub(crate) const MAX_COOKIE_TOKEN_BYTES: usize = 4096;

/// The value of the cookie `name` in the request's `Cookie` headers
/// (RFC 6265 §4.2: `name=value` pairs separated by `; `), the first if it is
/// there more than once (browsers send the one with the longest path first).
/// Other cookies are not checked: pairs without `=` are skipped. An empty
/// value is no token.
///
/// # Errors
///
/// 401 ([`ApiError::InvalidCredentials`]) if a `Cookie` header is not
/// visible ASCII, or the cookie's value holds a character a cookie value may
/// not (RFC 6265 §4.1.1) or is longer than [`MAX_COOKIE_TOKEN_BYTES`].
fn cookie_value(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    for header in headers.get_all(header::COOKIE) {
        let header = header.to_str().map_err(|_| {
            ApiError::InvalidCredentials("Cookie header is not visible ASCII".to_owned())
        })?;
        for pair in header.split(';') {
            let Some((pair_name, value)) = pair.split_once('=') else {
                continue;
            };
            if pair_name.trim() != name {
                continue;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|inner| inner.strip_suffix('"'))
                .unwrap_or(value);
            if value.len() > MAX_COOKIE_TOKEN_BYTES {
                return Err(ApiError::InvalidCredentials(format!(
                    "the {name} cookie is longer than {MAX_COOKIE_TOKEN_BYTES} bytes"
                )));
            }
            if !value.bytes().all(is_cookie_octet) {
                return Err(ApiError::InvalidCredentials(format!(
                    "the {name} cookie holds a character no cookie value may hold"
                )));
            }
            return Ok((!value.is_empty()).then(|| value.to_owned()));
        }
    }
    Ok(None)
}

/// RFC 6265 §4.1.1's `cookie-octet`: visible ASCII but `"`, `,`, `;` and `\`.
fn is_cookie_octet(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// The app token from `Authorization: Bearer <token>`, if the header is there.
fn bearer(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| {
        ApiError::InvalidCredentials("Authorization header is not ASCII".to_owned())
    })?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(|| {
        ApiError::InvalidCredentials("Authorization must be Bearer <app JWT>".to_owned())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::InvalidCredentials(
            "Authorization must use the Bearer scheme".to_owned(),
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Ok(None);
    }
    Ok(Some(token.to_owned()))
}

impl RequestedParams {
    /// Reads `capability`, `ttl` and `clientId` from form-encoded pairs (a
    /// query string or a form body); other names (`rnd`, the app's own
    /// `authParams`) are ignored. A later value wins.
    fn read_form(&mut self, form: &[u8]) -> Result<(), ApiError> {
        for (name, value) in url::form_urlencoded::parse(form) {
            match &*name {
                "capability" => {
                    self.capability = Some(parse_capability(&Value::String(value.into_owned()))?)
                }
                "ttl" => self.ttl_ms = Some(parse_ttl(&Value::String(value.into_owned()))?),
                "clientId" => {
                    self.client_id = Some(parse_client_id(&Value::String(value.into_owned()))?)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads the same parameters from a JSON object; `capability` may also be
    /// an object there. `null` means absent.
    fn read_json(&mut self, body: &[u8]) -> Result<(), ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| ApiError::BadRequest(format!("body is not valid JSON: {err}")))?;
        let Value::Object(fields) = value else {
            return Err(ApiError::BadRequest(
                "JSON body must be an object".to_owned(),
            ));
        };
        for (name, value) in &fields {
            if value.is_null() {
                continue;
            }
            match name.as_str() {
                "capability" => self.capability = Some(parse_capability(value)?),
                "ttl" => self.ttl_ms = Some(parse_ttl(value)?),
                "clientId" => self.client_id = Some(parse_client_id(value)?),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The most resources a requested capability may list. Intersection and
/// simplification compare resources pairwise, and a JWT has to fit in an HTTP
/// header (`docs/protocol.md#jwt-size`), so requests are kept small.
const MAX_REQUESTED_RESOURCES: usize = 100;

fn parse_capability(value: &Value) -> Result<Capability, ApiError> {
    let capability = Capability::from_json(value)
        .map_err(|err| ApiError::BadRequest(format!("capability: {err}")))?;
    if capability.len() > MAX_REQUESTED_RESOURCES {
        return Err(ApiError::BadRequest(format!(
            "capability lists {} resources; at most {MAX_REQUESTED_RESOURCES} are accepted",
            capability.len()
        )));
    }
    Ok(capability)
}

fn parse_ttl(value: &Value) -> Result<u64, ApiError> {
    let ttl = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    };
    match ttl {
        Some(ttl) if ttl > 0 => Ok(ttl),
        _ => Err(ApiError::BadRequest(
            "ttl must be a positive whole number of milliseconds".to_owned(),
        )),
    }
}

fn parse_client_id(value: &Value) -> Result<String, ApiError> {
    match value {
        Value::String(id) if !id.is_empty() => Ok(id.clone()),
        _ => Err(ApiError::BadRequest(
            "clientId must be a non-empty string".to_owned(),
        )),
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;
    use crate::{AppAuth, Config};

    fn request(bearer: &str, capability: Option<&str>) -> AuthRequest {
        AuthRequest {
            bearer: Some(bearer.to_owned()),
            params: RequestedParams {
                capability: capability.map(|c| Capability::parse(c).unwrap()),
                ..RequestedParams::default()
            },
        }
    }

    #[tokio::test]
    async fn a_remembered_user_reuses_the_grant_worked_out_for_them() {
        let config = Config {
            rate_limit_per_user: None,
            ..Config::new(
                "app.key:secret".parse().unwrap(),
                AppAuth::Secret(SecretString::from("app-secret")),
            )
        };
        let state = AppState::new(config).unwrap();
        let key = jsonwebtoken::EncodingKey::from_secret(b"app-secret").unwrap();
        let claims = json!({"sub": "alice", "exp": mint::now_ms() / 1000 + 300});
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();

        let first = decide(&state, request(&token, None)).await.unwrap();
        let second = decide(&state, request(&token, None)).await.unwrap();
        let narrowed = decide(&state, request(&token, Some(r#"{"chat":["*"]}"#)))
            .await
            .unwrap();

        assert!(Arc::ptr_eq(&first.capability, &second.capability));
        assert_eq!(
            first.capability.text,
            r#"{"*":["history","presence","publish","subscribe"]}"#
        );
        assert_eq!(
            narrowed.capability.text,
            r#"{"chat":["history","presence","publish","subscribe"]}"#
        );
    }

    #[test]
    fn debug_never_shows_the_app_token() {
        let request = AuthRequest {
            bearer: Some("eyJhbGciOi.secret.part".to_owned()),
            params: RequestedParams::default(),
        };

        let debug = format!("{request:?}");

        assert!(debug.contains("[REDACTED]"), "{debug}");
        assert!(!debug.contains("secret.part"), "{debug}");
    }
}
