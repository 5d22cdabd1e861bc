//! Test apps, as Ably's sandbox provisions them: `POST /apps` and
//! `DELETE /apps/{id}`.
//!
//! Every Ably SDK's test suite provisions its own app before it runs: it
//! posts ably-common's `test-app-setup.json` (`post_apps`: keys with their
//! capabilities and flags, namespaces, channels with presence fixtures) and
//! reads back the app's id and keys. Here each app is a whole mock of its
//! own, started in-process on its own port of the creating mock's address,
//! with the creating mock's settings (retention, timers, connection limits)
//! and only the app's keys; so apps share nothing (keys, channels, history,
//! presence, connections, revocations). The answer also names where the app
//! is served (`endpoint`, `port`, `tls: false`), which ably-js's harness
//! reads in its local-sandbox mode (`ABLY_LOCAL_SANDBOX_URL`).
//!
//! - `POST /apps` → 201 with the app (see [`AppSetup`] for what is read of
//!   the body); 400/40000 for a body that is not such a setup; 429/42910 when
//!   [`MockAblyBuilder::max_apps`](crate::MockAblyBuilder::max_apps) apps are
//!   already live.
//! - `DELETE /apps/{id}` → 204: the app's server stops, its connections
//!   close; 404/40400 for an app this mock does not hold.
//!
//! Neither needs credentials (like the `/_mock/` controls: the mock serves
//! loopback development only), and neither is subject to `fail-next`. An
//! app's own server does not provision apps (404/40400 there).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::protocol::{PresenceAction, PresenceMessage};
use shared::{ApiKey, codes};

use crate::error::{self, ApiError, ApiResult, PathParam};
use crate::keys::{DEFAULT_KEY_CAPABILITY, KeySpec};
use crate::server::{MockAbly, MockAblyBuilder};
use crate::state::{AppState, KeyEntry, lock};

/// How many apps may be live at once on one mock, by default.
pub const DEFAULT_MAX_APPS: usize = 100;

/// The apps a mock has made, and what it needs to make more.
#[derive(Debug)]
pub(crate) struct Provisioner {
    /// Live apps by id; `None` while one is starting (its place is taken,
    /// so the bound holds under concurrent requests).
    apps: Mutex<HashMap<String, Option<MockAbly>>>,
    /// At most this many at once.
    max_apps: usize,
    /// The address apps listen on (port 0: the OS picks).
    ip: IpAddr,
    /// The connection limits of the creating mock, given to every app.
    limits: serve::Limits,
}

impl Provisioner {
    /// Apps on `ip`, at most `max_apps` at once, each with `limits`.
    pub(crate) fn new(ip: IpAddr, max_apps: usize, limits: serve::Limits) -> Self {
        Self {
            apps: Mutex::new(HashMap::new()),
            max_apps,
            ip,
            limits,
        }
    }
}

/// The part of ably-common's `post_apps` body the mock reads; anything else
/// (`limits`, a namespace's flags) is accepted and ignored, namespaces and
/// channels are echoed back as given.
#[derive(Debug, Deserialize)]
struct AppSetup {
    /// One key each; an empty list gets one key with the default capability.
    #[serde(default)]
    keys: Vec<KeySetup>,
    /// Channel namespaces: echoed, not enforced.
    #[serde(default)]
    namespaces: Vec<Value>,
    /// Channels, each with presence members to enter.
    #[serde(default)]
    channels: Vec<Value>,
}

/// A key of the setup.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeySetup {
    /// Its capability as JSON text; Ably's default `{"*":["*"]}` without.
    capability: Option<String>,
    /// Whether its tokens can be revoked (`revokeTokens`).
    #[serde(default)]
    revocable_tokens: bool,
}

/// A channel of the setup: its name and presence fixtures.
#[derive(Debug, Deserialize)]
struct ChannelSetup {
    name: String,
    #[serde(default)]
    presence: Vec<PresenceFixture>,
}

/// A member present on a channel from the start.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PresenceFixture {
    client_id: String,
    data: Option<Value>,
    encoding: Option<String>,
}

/// A key made for an app, with the capability text the answer shows.
struct MadeKey {
    entry: KeyEntry,
    key_id: String,
    secret: String,
    capability: String,
}

/// `POST /apps`.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Some(provisioner) = state.provisioner.as_ref() else {
        return Err(not_provisioning());
    };
    let body = error::body(body)?;
    let setup: AppSetup = serde_json::from_slice(&body).map_err(|err| {
        ApiError::new(
            codes::BAD_REQUEST,
            format!("Invalid app setup (ably-common's post_apps): {err}"),
        )
    })?;
    let app_id = alphanumeric(6);
    let keys = make_keys(&app_id, &setup.keys)?;
    let fixtures = presence_fixtures(&setup.channels)?;
    {
        let mut apps = lock(&provisioner.apps);
        if apps.len() >= provisioner.max_apps {
            return Err(ApiError::new(
                codes::RATE_LIMIT,
                format!(
                    "mock-ably already holds {} apps (its limit): DELETE /apps/{{id}} some first",
                    provisioner.max_apps
                ),
            ));
        }
        apps.insert(app_id.clone(), None);
    }
    let started = start_app(&state, provisioner, &keys).await;
    let app = match started {
        Ok(app) => app,
        Err(err) => {
            lock(&provisioner.apps).remove(&app_id);
            return Err(err);
        }
    };
    enter_fixtures(&app, &fixtures);
    let port = app.addr().port();
    {
        let mut apps = lock(&provisioner.apps);
        match apps.get_mut(&app_id) {
            Some(slot) => *slot = Some(app),
            // Deleted while it started: it stops as it drops.
            None => drop(app),
        }
    }
    tracing::info!(app_id, port, "app provisioned");
    let endpoint = if provisioner.ip.is_unspecified() {
        request_host(&headers).unwrap_or_else(|| "127.0.0.1".to_owned())
    } else {
        provisioner.ip.to_string()
    };
    let keys: Vec<Value> = keys
        .iter()
        .map(|made| {
            let key_name = made.entry.key.key_name();
            json!({
                "id": made.key_id,
                "appId": app_id,
                "keyName": key_name,
                "keySecret": made.secret,
                "keyStr": format!("{key_name}:{}", made.secret),
                "value": made.secret,
                "capability": made.capability,
                "revocableTokens": made.entry.revocable,
                "status": 0,
            })
        })
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "accountId": "mock-ably",
            "id": app_id,
            "appId": app_id,
            "status": "enabled",
            "tlsOnly": false,
            "keys": keys,
            "namespaces": setup.namespaces,
            "channels": setup.channels,
            "connections": [],
            "endpoint": endpoint,
            "port": port,
            "tls": false,
        })),
    ))
}

/// `DELETE /apps/{id}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    PathParam(app_id): PathParam,
) -> ApiResult<StatusCode> {
    let Some(provisioner) = state.provisioner.as_ref() else {
        return Err(not_provisioning());
    };
    let removed = lock(&provisioner.apps).remove(&app_id);
    match removed {
        // Dropping the handle stops the app's server and its connections.
        Some(app) => {
            drop(app);
            tracing::info!(app_id, "app deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::new(
            codes::NOT_FOUND,
            format!("No app {app_id:?} on this mock"),
        )),
    }
}

fn not_provisioning() -> ApiError {
    ApiError::new(
        codes::NOT_FOUND,
        "Not found: this mock does not provision apps (an app's own server never does; \
         POST /apps to the mock that made it)",
    )
}

/// The setup's keys as the app's: `appId.keyId` with a random secret, the
/// capability given (canonical) or Ably's default, revocable as flagged.
fn make_keys(app_id: &str, setups: &[KeySetup]) -> ApiResult<Vec<MadeKey>> {
    let default = [KeySetup {
        capability: None,
        revocable_tokens: false,
    }];
    let setups = if setups.is_empty() { &default } else { setups };
    setups
        .iter()
        .enumerate()
        .map(|(index, setup)| {
            let key_id = alphanumeric(6);
            let secret = alphanumeric(43);
            let key = ApiKey::parse(&format!("{app_id}.{key_id}:{secret}"))
                .map_err(|err| ApiError::new(codes::INTERNAL_ERROR, err.to_string()))?;
            let text = setup
                .capability
                .as_deref()
                .unwrap_or(DEFAULT_KEY_CAPABILITY);
            let spec = KeySpec::with_capability(key, text).map_err(|err| {
                ApiError::new(
                    codes::BAD_REQUEST,
                    format!("Invalid app setup: keys[{index}]: {err}"),
                )
            })?;
            let capability = spec.capability().to_string();
            let (key, capability_grant) = spec.into_parts();
            Ok(MadeKey {
                entry: KeyEntry {
                    key,
                    capability: capability_grant,
                    revocable: setup.revocable_tokens,
                },
                key_id,
                secret,
                capability,
            })
        })
        .collect()
}

/// Every channel's presence fixtures, checked.
fn presence_fixtures(channels: &[Value]) -> ApiResult<Vec<(String, Vec<PresenceFixture>)>> {
    channels
        .iter()
        .enumerate()
        .map(|(index, channel)| {
            let setup = ChannelSetup::deserialize(channel).map_err(|err| {
                ApiError::new(
                    codes::BAD_REQUEST,
                    format!("Invalid app setup: channels[{index}]: {err}"),
                )
            })?;
            crate::params::validate_channel_name(&setup.name)?;
            Ok((setup.name, setup.presence))
        })
        .collect()
}

/// Starts the app's own mock: the creating mock's settings, the app's keys.
async fn start_app(
    state: &AppState,
    provisioner: &Provisioner,
    keys: &[MadeKey],
) -> ApiResult<MockAbly> {
    let listener = std::net::TcpListener::bind((provisioner.ip, 0)).map_err(|err| {
        ApiError::new(
            codes::INTERNAL_ERROR,
            format!("mock-ably cannot open a port for the app: {err}"),
        )
    })?;
    let mut settings = state.settings.clone();
    settings.keys = keys.iter().map(|made| made.entry.clone()).collect();
    Ok(
        MockAblyBuilder::for_app(settings, provisioner.limits, listener)
            .start()
            .await,
    )
}

/// Enters the fixtures as members the server made: one connection of its
/// own per app, so they never leave; REST presence and realtime SYNC show
/// them like any member.
fn enter_fixtures(app: &MockAbly, fixtures: &[(String, Vec<PresenceFixture>)]) {
    let state = app.state();
    let connection_id = format!("fixtures{}", alphanumeric(6));
    let now = state.clock.now_ms();
    let mut presence = lock(&state.presence);
    for (channel, members) in fixtures {
        for (index, fixture) in members.iter().enumerate() {
            let mut message = PresenceMessage::default();
            message.id = Some(format!("{connection_id}:0:{index}"));
            message.action = Some(PresenceAction::ENTER);
            message.client_id = Some(fixture.client_id.clone());
            message.connection_id = Some(connection_id.clone());
            message.data = fixture.data.clone();
            message.encoding = fixture.encoding.clone();
            message.timestamp = Some(now);
            if let Err(err) = presence.apply(channel, message) {
                tracing::warn!(channel, error = %err.0.message, "presence fixture not entered");
            }
        }
    }
}

/// The host part of the request's `Host` header: how the client reached us.
fn request_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let url = url::Url::parse(&format!("http://{host}")).ok()?;
    url.host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
}

/// `len` random ASCII letters and digits (ids and secrets Ably-shaped: no
/// `.`, `:`, `-` or `_`).
fn alphanumeric(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0_u8; len];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}
