//! Dev mode's routes: the demo page and `/dev/*`. Every error is Ably's
//! envelope, as on the production routes.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DEMO_CHANNEL, DEMO_SPACE, DevShared};
use crate::error::ApiError;

/// The demo page: one file; its only external assets are the two SDK
/// scripts of the Spaces panel, from Ably's CDN.
const PAGE: &str = include_str!("page.html");

/// Bodies here are a user name or one small message.
const MAX_BODY_BYTES: usize = 16 * 1024;

pub(super) fn router(dev: Arc<DevShared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/dev/config", get(config))
        .route("/dev/login", post(login))
        .route("/dev/publish", post(publish))
        .route("/dev/expire-credentials", post(expire_credentials))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(dev)
}

async fn page() -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Html(PAGE),
    )
        .into_response()
}

/// What the page needs to know: where the mock is (its `/sse`, and its
/// realtime WebSocket for the Spaces panel), the channel and the space.
async fn config(State(dev): State<Arc<DevShared>>) -> Json<Value> {
    Json(json!({"mockUrl": dev.mock.base_url(), "channel": DEMO_CHANNEL, "space": DEMO_SPACE}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

/// `{"user","roles"?}` → `{"token":"<app JWT>"}`, signed with the dev app
/// secret. No password: dev mode trusts whoever can reach loopback.
async fn login(
    State(dev): State<Arc<DevShared>>,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| bad_body(&rejection))?;
    let roles = body.roles.unwrap_or_default();
    let token = dev.login.sign(&body.user, &roles)?;
    tracing::info!(user = %body.user, ?roles, "dev login");
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(json!({ "token": token })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(default)]
    name: Option<String>,
    data: Value,
}

/// `{"name"?,"data"}` → `201 {"id"}`: published on the demo channel as a
/// REST publish would be (a string as text, an object or array as JSON).
async fn publish(
    State(dev): State<Arc<DevShared>>,
    body: Result<Json<PublishBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| bad_body(&rejection))?;
    let mut message = shared::Message::default();
    message.name = body.name.filter(|name| !name.is_empty());
    message.data = Some(body.data);
    let ids = dev
        .mock
        .try_publish(DEMO_CHANNEL, vec![message])
        .map_err(ApiError::Ably)?;
    let id = ids.into_iter().next().unwrap_or_default();
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

/// `204`: every Ably token and JWT the mock has seen expires now; open
/// streams get an `error` event with 40142 and close.
async fn expire_credentials(State(dev): State<Arc<DevShared>>) -> StatusCode {
    dev.mock.expire_credentials();
    tracing::info!("dev mode: credentials expired on the mock");
    StatusCode::NO_CONTENT
}

/// Dev mode answers only requests addressed to a loopback host: a page on
/// an attacker's name that DNS rebinding points at 127.0.0.1 sends its own
/// name in `Host` (and in HTTP/2's `:authority`), and gets 403/40300, so it
/// cannot read the demo page or `/dev/config` as a same-origin page would.
/// A request with neither (an HTTP/1.0 client) passes.
///
/// Then it lets a `/dev/*` request from a browser through only when its `Origin`
/// is a loopback one ([`mock_ably::is_loopback_origin`]); any other gets
/// 403/40300 before the CORS layer sees it, so no preflight is granted and
/// no simple request (which needs none) reaches a handler. `/dev/login`
/// signs tokens for any user, admin roles included, so a web page the
/// developer visits must not be able to ask it. A request without `Origin`
/// (curl, a test, a server) is not a browser's cross-origin request and
/// passes; so do the production routes, whose CORS is `AUTH_CORS_ORIGINS`.
pub(super) async fn loopback_only(request: Request, next: Next) -> Response {
    let host = request
        .uri()
        .authority()
        .map(|authority| authority.as_str())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .map(|host| host.to_str().unwrap_or("\u{fffd}"))
        });
    if host.is_some_and(|host| !mock_ably::is_loopback_origin(&format!("http://{host}"))) {
        return ApiError::ForbiddenHost.into_response();
    }
    if request.uri().path().starts_with("/dev/")
        && request
            .headers()
            .get(header::ORIGIN)
            .is_some_and(|origin| !origin.to_str().is_ok_and(mock_ably::is_loopback_origin))
    {
        return ApiError::ForbiddenOrigin.into_response();
    }
    next.run(request).await
}

fn bad_body(rejection: &JsonRejection) -> ApiError {
    ApiError::BadRequest(format!("bad JSON body: {}", rejection.body_text()))
}
