//! `/healthz` (the process is up), `/readyz` (ready to issue credentials) and
//! `/metrics` (Prometheus text).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::error::ApiError;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Always `200 ok` while the process serves requests.
async fn healthz() -> &'static str {
    "ok\n"
}

/// `200 ready` once the configuration is loaded and, with `AUTH_JWKS_URL`,
/// the key set has been fetched; `503` with the Ably envelope before that.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if state.is_ready() {
        Ok("ready\n")
    } else {
        Err(ApiError::Unavailable {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: shared::codes::INTERNAL_ERROR,
            message: "not ready: the identity provider's keys (JWKS) have not been fetched yet"
                .to_owned(),
        })
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics().render();
    if let Some(jwks) = state.jwks() {
        text.push_str(&jwks.render_metrics());
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}
