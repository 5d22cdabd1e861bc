#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - [`config`]: [`Config`] from the environment.
//! - `app_jwt` and `jwks`: verifying the app's tokens, with a secret or a JWKS.
//! - [`policy`]: the TOML capability policy; `live_policy`: the one in force,
//!   reloaded on `SIGHUP` ([`AppState::reload_policy`]).
//! - `mint`: Ably JWTs, TokenRequests, and Ably's `requestToken` and
//!   `revokeTokens`; `revocation`: the revocations made here, which the next
//!   JWTs for their targets wait out.
//! - `routes`: the endpoints and their middleware; `rate_limit`, `client_ip`,
//!   `metrics`.
//! - [`error`]: [`ApiError`], rendered as Ably's error envelope.
//! - [`dev`] (feature `dev`, on by default): `--dev`, the embedded mock Ably,
//!   `/dev/*` and the demo page.

#![cfg_attr(not(test), warn(clippy::print_stdout, clippy::dbg_macro))]

mod app_jwt;
mod client_ip;
pub mod config;
#[cfg(feature = "dev")]
pub mod dev;
#[cfg(test)]
mod env_reference;
pub mod error;
#[cfg(test)]
mod fuzz;
mod jwks;
mod live_policy;
mod metrics;
mod mint;
pub mod policy;
mod rate_limit;
mod revocation;
mod routes;
mod state;

use std::future::Future;
use std::io;

use axum::Router;
use tokio::net::TcpListener;

pub use client_ip::IpRange;
pub use config::{AppAuth, AppJwtRules, Config, ConfigError, CorsOrigins, RateLimit};
pub use error::ApiError;
pub use live_policy::PolicyReloadError;
pub use policy::{Policy, PolicyError};
pub use state::AppState;

/// The application as an axum [`Router`], with all of its middleware.
///
/// Per-IP rate limits need the peer address: serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`, or with the
/// `serve` crate (as [`serve()`] does); without it, the per-IP limit is
/// skipped.
pub fn router(state: AppState) -> Router {
    routes::router(state)
}

/// Serves the application on `listener` until `shutdown` completes, then
/// finishes the requests in flight.
///
/// Connections are bounded by [`Config::header_read_timeout`],
/// [`Config::idle_timeout`] and [`Config::max_connections`]: a connection
/// that has not sent a complete request head in time, or sits idle too long,
/// is closed; one over the cap is answered 503 (Ably code 50000) and closed.
///
/// With [`Config::policy_reload`], checks the policy file that often and
/// reloads it when it changed ([`AppState::reload_policy`]).
///
/// With a JWKS, fetches it at once and then every
/// [`Config::jwks_refresh_interval`] in the background, retrying a failed
/// fetch after [`Config::jwks_retry_backoff`] (doubling, at most a minute
/// apart). Until the first fetch succeeds, `/healthz` answers while
/// `/readyz` and the token endpoints answer 503; [`AppState::ready`]
/// completes when it has.
///
/// # Errors
///
/// None today: an `accept` error is logged and retried, never fatal. The
/// `Result` leaves room for one.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = routes::service_with(state.clone(), Router::new());
    serve_app(listener, state, app, shutdown).await
}

/// [`serve`] with `app` as the service (dev mode adds routes to it).
async fn serve_app(
    listener: TcpListener,
    state: AppState,
    app: impl routes::AppService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let refresher = state.jwks().map(|jwks| {
        let jwks = std::sync::Arc::clone(jwks);
        let config = state.config();
        let (interval, backoff) = (config.jwks_refresh_interval, config.jwks_retry_backoff);
        tokio::spawn(async move { jwks.keep_fresh(interval, backoff).await })
    });
    let poller = state.config().policy_reload.map(|every| {
        let state = state.clone();
        tokio::spawn(async move { poll_policy(state, every).await })
    });
    let config = state.config();
    let limits = serve::Limits {
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections,
    };
    serve::serve(listener, app, limits, shutdown).await;
    for task in [refresher, poller].into_iter().flatten() {
        task.abort();
    }
    Ok(())
}

/// Every `every`, reloads the policy file if it holds something other than
/// what was last read (`AUTH_POLICY_RELOAD`). Reading a small file is quick,
/// so it is read in place, off no request's path.
async fn poll_policy(state: AppState, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once: the file was just read.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if state.policy_changed_on_disk() {
            // Logged and counted by `reload_policy`.
            let _ = state.reload_policy();
        }
    }
}
