//! The HTTP surface: routes and the middleware every request goes through.

mod health;
mod token;

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::client_ip::client_ip;
use crate::config::CorsOrigins;
use crate::error::{ApiError, RefusalReason, X_ABLY_ERRORCODE, X_ABLY_ERRORMESSAGE};

/// The whole application: routes, limits, CORS, tracing and metrics.
pub(crate) fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes (dev mode's) behind the same middleware.
pub(crate) fn router_with(state: AppState, extra: Router) -> Router {
    let config = state.config();
    let cors = cors(&config.cors_origins);
    let api = token::router()
        // Per-IP limits sit in front of JWT verification, so one address
        // cannot spend the server's CPU on signatures.
        .layer(middleware::from_fn_with_state(state.clone(), limit_ip))
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    let mut app = Router::new()
        .merge(api)
        .merge(health::router())
        .with_state(state.clone())
        .merge(extra)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state, track))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                // The path only: no query string, no headers (the app JWT
                // travels in `Authorization`). At debug level: building a
                // span per request costs throughput, and the events that
                // matter carry their own fields.
                tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
            }),
        );
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    app
}

/// `AUTH_CORS_ORIGINS` as a layer. authUrl requests carry no cookies, so no
/// credentials are allowed and `*` is safe; `Authorization` must still be
/// named, since a `*` in `Access-Control-Allow-Headers` does not cover it.
fn cors(origins: &CorsOrigins) -> Option<CorsLayer> {
    let allow_origin = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        ),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            // Browsers hide other headers from ably-js unless exposed
            // (REAL-CLIENTS.md §3e).
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

/// Ends a request that takes longer than `AUTH_REQUEST_TIMEOUT` (the Ably
/// round trip of `/api/ably-token` included) with 503/50003, and records
/// latency and refusals for `/metrics`. One layer for both keeps the
/// per-request overhead down.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let response =
        match tokio::time::timeout(state.config().request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError::Timeout.into_response(),
        };
    let metrics = state.metrics();
    metrics.observe(&path, started.elapsed());
    if let Some(RefusalReason(reason)) = response.extensions().get::<RefusalReason>() {
        metrics.refused(reason);
    }
    response
}

/// Applies `AUTH_RATE_LIMIT_PER_IP` to the token endpoints. The address is
/// the TCP peer's, or the client a trusted proxy names in `X-Forwarded-For`
/// (`AUTH_TRUSTED_PROXIES`, see [`crate::client_ip`]).
async fn limit_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::OPTIONS
        && let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>()
    {
        let ip = client_ip(
            peer.ip(),
            request.headers(),
            &state.config().trusted_proxies,
        );
        if let Err(err) = state.check_ip_rate(ip) {
            return err.into_response();
        }
    }
    next.run(request).await
}
