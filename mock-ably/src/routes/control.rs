//! The fault switchboard under `/_mock/`: no credentials, never subject to
//! `fail-next`.
//!
//! - `POST /_mock/drop-streams` → 204: every open stream is cut, no error
//!   event.
//! - `POST /_mock/expire-credentials` → 204: every token and JWT accepted or
//!   issued so far is expired from now on; streams using one get 40142.
//! - `POST /_mock/force-auth` → 204: every realtime connection on a token
//!   or JWT is sent AUTH (the client renews).
//! - `POST /_mock/fail-next` with `{"count","statusCode","code","message","target"}` → 204.
//! - `POST /_mock/advance-clock` with `{"ms": N}` → 204: the mock's clock
//!   moves N ms forward; 400/40003 (and no move) if that would put it more
//!   than [`MAX_CLOCK_OFFSET`](crate::MAX_CLOCK_OFFSET) (100 years) ahead of
//!   real time.
//! - `GET /_mock/stats` → 200 [`Stats`](crate::Stats).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use shared::codes;

use crate::error::{self, ApiError, ApiResult};
use crate::faults::{FailNext, FailNextBody};
use crate::state::AppState;
use crate::stats::Stats;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/_mock/drop-streams", post(drop_streams))
        .route("/_mock/expire-credentials", post(expire_credentials))
        .route("/_mock/force-auth", post(force_auth))
        .route("/_mock/fail-next", post(fail_next))
        .route("/_mock/advance-clock", post(advance_clock))
        .route("/_mock/stats", get(stats))
}

async fn drop_streams(State(state): State<AppState>) -> StatusCode {
    state.drop_streams();
    StatusCode::NO_CONTENT
}

async fn expire_credentials(State(state): State<AppState>) -> StatusCode {
    state.expire_credentials();
    StatusCode::NO_CONTENT
}

async fn force_auth(State(state): State<AppState>) -> StatusCode {
    state.force_auth();
    StatusCode::NO_CONTENT
}

async fn fail_next(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    let body = error::body(body)?;
    let body: FailNextBody = if body.is_empty() {
        serde_json::from_str("{}").expect("an empty object is a valid rule")
    } else {
        parse(&body)?
    };
    state.fail_next(FailNext::from(body));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceClock {
    ms: u64,
}

async fn advance_clock(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    let body = error::body(body)?;
    let AdvanceClock { ms } = parse(&body)?;
    state.try_advance_clock_ms(ms).map_err(|ahead| {
        ApiError::new(
            codes::INVALID_PARAMETER_VALUE,
            format!(
                "ms: the mock's clock moves at most {} ms (100 years) ahead of real time \
                 in all, and is {ahead} ms ahead already",
                crate::MAX_CLOCK_OFFSET.as_millis()
            ),
        )
    })?;
    Ok(StatusCode::NO_CONTENT)
}

async fn stats(State(state): State<AppState>) -> Json<Stats> {
    Json(state.stats())
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::new(
            codes::INVALID_REQUEST_BODY,
            format!("Invalid control request body: {err}"),
        )
    })
}
