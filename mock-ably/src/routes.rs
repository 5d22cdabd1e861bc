//! The HTTP surface: Ably's endpoints, the `/_mock/` controls, CORS, and the
//! fail-next switch.

mod control;
#[cfg(test)]
mod fuzz;
mod msgpack;
mod presence;
mod rest;
mod revoke;
mod stream;
mod token;

pub(crate) use stream::rewind;

use std::any::Any;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use shared::codes;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::faults::RequestKind;
use crate::state::{AppState, lock};

/// The whole app.
pub(crate) fn router(state: AppState) -> Router {
    let panics = state.clone();
    Router::new()
        .route("/", any(crate::realtime::upgrade))
        .route("/time", get(rest::time))
        .route("/keys/{key_name}/requestToken", post(token::request_token))
        .route("/keys/{key_name}/revokeTokens", post(revoke::revoke_tokens))
        .route(
            "/channels/{channel}/messages",
            post(rest::publish).get(rest::history),
        )
        .route(
            "/channels/{channel}/messages/{serial}",
            get(rest::get_message).patch(rest::update_message),
        )
        .route(
            "/channels/{channel}/messages/{serial}/versions",
            get(rest::message_versions),
        )
        .route("/channels/{channel}/presence", get(presence::get_presence))
        .route(
            "/channels/{channel}/presence/history",
            get(presence::presence_history),
        )
        .route("/channels/{channel}", get(rest::channel_status))
        .route("/messages", post(rest::batch_publish))
        .route("/presence", get(presence::batch_presence))
        .route("/sse", get(stream::sse))
        .route("/event-stream", get(stream::event_stream))
        // Only Ably's endpoints can be made to fail; the controls cannot.
        .layer(middleware::from_fn_with_state(state.clone(), fail_next))
        .merge(control::router())
        // Provisioning needs no credentials and cannot be made to fail.
        .route("/apps", post(crate::apps::create))
        .route("/apps/{app_id}", delete(crate::apps::delete))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(
            move |panic: Box<dyn Any + Send>| {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a handler panicked".to_owned());
                tracing::error!(%message, "handler panicked");
                lock(&panics.panics).push(message);
                ApiError::new(codes::INTERNAL_ERROR, "Internal error in mock-ably").into_response()
            },
        ))
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        // msgpack bodies in, msgpack answers out for whoever asks (errors
        // included), around everything but CORS.
        .layer(middleware::from_fn(msgpack::rest_format))
        .layer(middleware::from_fn(cors))
        .with_state(state)
}

/// Answers a request not done within the request timeout (a body trickling
/// in, most likely) with 503 and code 50003, as auth-server does. Only the
/// answer's start is timed: a stream's or a realtime connection's response
/// has begun by then, however long it then runs.
async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let timeout = state.settings.request_timeout;
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            codes::TIMEOUT,
            format!("Request not completed within {} ms", timeout.as_millis()),
        )
        .into_response(),
    }
}

/// Answers the next request with an injected error if a rule claims it.
async fn fail_next(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let kind = match request.uri().path() {
        "/sse" | "/event-stream" => RequestKind::Stream,
        // Realtime upgrades take their rule in the handler, to answer it
        // in-band after the upgrade; a plain request for `/` is the 404 it
        // always was.
        "/" => return next.run(request).await,
        _ => RequestKind::Rest,
    };
    let injected = lock(&state.faults).take(kind);
    match injected {
        Some(error) => ApiError(error).into_response(),
        None => next.run(request).await,
    }
}

/// Browser ably-js sends credentialed requests, so the origin is echoed
/// (never `*`) with `Allow-Credentials`, and the headers it must read are
/// exposed. Preflights are answered here, before routing.
///
/// Except on the `/_mock/` controls, which need no credentials: there a
/// request whose `Origin` is not a loopback one
/// ([`is_loopback_origin`](crate::is_loopback_origin)), preflight or not,
/// gets 403/40300 and no CORS headers, so a web page the developer happens
/// to visit can neither read them nor trigger them (a simple POST needs no
/// preflight). Requests without `Origin` (curl, tests) are not affected.
///
/// Hand-written rather than tower-http's `CorsLayer` (which auth-server
/// uses), because that layer cannot express three things the mock promises:
/// it answers every `OPTIONS` itself as a preflight (an `OPTIONS` without
/// `Origin` or `Access-Control-Request-Method` must reach routing and get
/// Ably's 404/40400 envelope, as a wrong method does); it puts
/// `Allow-Credentials`, `Vary` and `Expose-Headers` on every response, with
/// or without `Origin` (here a request without `Origin` gets no CORS headers
/// at all); and it writes `Expose-Headers` only on non-preflight answers.
/// The `/_mock/` loopback guard would stay a middleware of its own anyway.
/// The tests `cors_*` and `an_options_request_that_is_not_a_preflight_*`
/// pin this behaviour.
async fn cors(request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    if request.uri().path().starts_with("/_mock/")
        && !origin.to_str().is_ok_and(crate::is_loopback_origin)
    {
        return ApiError::new(
            codes::FORBIDDEN,
            "mock-ably's /_mock/ controls answer browsers only from loopback origins \
             (http(s)://localhost, 127.0.0.0/8 or [::1], any port)",
        )
        .into_response();
    }
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET,POST,PUT,DELETE,PATCH,OPTIONS"),
        );
        if let Some(requested) = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        response
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Link, X-Ably-Errorcode, X-Ably-Errormessage"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

async fn not_found() -> ApiError {
    not_found_error()
}

fn not_found_error() -> ApiError {
    ApiError::new(
        codes::NOT_FOUND,
        "Not found: mock-ably does not serve this path",
    )
}

/// The fallback's 404, for handlers that serve only some requests to their
/// path (`/` serves WebSocket upgrades only).
pub(crate) fn not_found_response() -> Response {
    not_found_error().into_response()
}

/// A known path asked with a method it does not take: Ably answers 404 with
/// 40400, as for an unknown path, never 405
/// (`docs/protocol.md#rest-subset`).
async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        codes::NOT_FOUND,
        format!(
            "Not found: mock-ably does not serve {} {}",
            request.method(),
            request.uri().path()
        ),
    )
}
