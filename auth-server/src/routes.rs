//! The HTTP surface: routes and the middleware every request goes through.

mod accept;
mod health;
mod revoke;
mod token;

use std::convert::Infallible;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::{Service, ServiceBuilder};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::config::CorsOrigins;
use crate::error::{ApiError, RefusalReason, X_ABLY_ERRORCODE, X_ABLY_ERRORMESSAGE};
use crate::metrics::Route;

/// The whole application as a [`Router`]: routes, limits, CORS, tracing
/// and metrics ([`service_with`] inside a router, for embedders).
pub(crate) fn router(state: AppState) -> Router {
    Router::new().fallback_service(service_with(state, Router::new()))
}

/// The application with `extra` routes (dev mode's) behind the same
/// middleware, as the service [`crate::serve`] runs.
///
/// The middleware wraps the routes once, as one service: `Router::layer`
/// would wrap each route's handler in boxed copies of every layer, and each
/// of those boxes is cloned for every request. The token endpoints' own
/// checks (per-IP limit, body limit) are in their extractor
/// ([`token::AuthRequest`]) for the same reason.
pub(crate) fn service_with(state: AppState, extra: Router) -> impl AppService {
    let config = state.config();
    let cors = cors(&config.cors_origins, config.app_jwt_cookie.as_deref());
    let app = Router::new()
        .merge(token::router())
        .merge(revoke::router(config.admin_role.is_some()))
        .merge(health::router())
        .with_state(state.clone())
        .merge(extra)
        .fallback(not_found)
        // After every merge: it applies to the routes registered so far.
        .method_not_allowed_fallback(method_not_allowed);
    ServiceBuilder::new()
        .option_layer(cors)
        // Back to axum's body type, which CORS needs for its preflights.
        .map_response(IntoResponse::into_response)
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                // The path only: no query string, no headers (the app JWT
                // travels in `Authorization`). At debug level: building a
                // span per request costs throughput, and the events that
                // matter carry their own fields.
                tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
            }),
        )
        .layer(middleware::from_fn_with_state(state, track))
        .service(app)
}

/// What [`service_with`] returns: a service axum can serve.
pub(crate) trait AppService:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> AppService for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// `AUTH_CORS_ORIGINS` as a layer. `Authorization` must be named, since a
/// `*` in `Access-Control-Allow-Headers` does not cover it. With listed
/// origins and `AUTH_APP_JWT_COOKIE`, `Access-Control-Allow-Credentials:
/// true` lets their pages send the session cookie (`fetch` with
/// `credentials: 'include'`); with `*` never, whatever is configured: any
/// site could otherwise mint credentials with a visitor's cookie.
fn cors(origins: &CorsOrigins, cookie: Option<&str>) -> Option<CorsLayer> {
    let (allow_origin, credentials) = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => (AllowOrigin::any(), false),
        CorsOrigins::List(list) => (
            AllowOrigin::list(
                list.iter()
                    .filter_map(|origin| HeaderValue::from_str(origin).ok()),
            ),
            cookie.is_some(),
        ),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_credentials(credentials)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            // Browsers hide other headers from ably-js unless exposed
            // (`docs/real-clients.md#token-errors-and-renewal`).
            .expose_headers([
                X_ABLY_ERRORCODE,
                X_ABLY_ERRORMESSAGE,
                HeaderName::from_static("retry-after"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Unknown paths get the Ably envelope too.
async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// And so do known paths with the wrong method.
async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Ends a request that takes longer than `AUTH_REQUEST_TIMEOUT` (the Ably
/// round trip of `/api/ably-token` included) with 503/50003, and records
/// latency and refusals for `/metrics`. One layer for both keeps the
/// per-request overhead down.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = Route::of(request.uri().path());
    let response =
        match tokio::time::timeout(state.config().request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError::Timeout.into_response(),
        };
    let metrics = state.metrics();
    metrics.observe(route, started.elapsed());
    if let Some(RefusalReason(reason)) = response.extensions().get::<RefusalReason>() {
        metrics.refused(reason);
    }
    response
}
