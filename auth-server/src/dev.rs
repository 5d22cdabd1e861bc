//! Dev mode (`auth-server --dev`): the whole pair on one machine with
//! nothing to set up.
//!
//! [`Dev::start`] starts an embedded [`mock_ably`] server, points the auth
//! server at it (its key, its REST URL) with a development app secret
//! ([`DEV_APP_SECRET`]), and publishes a small JSON message on
//! [`DEMO_CHANNEL`] every [`DEMO_INTERVAL`]. [`Dev::serve`] serves the
//! production router plus:
//!
//! - `GET /`: the demo page (log in, watch `demo` through the browser's own
//!   `EventSource`, publish, force credential expiry and watch the renewal;
//!   and a Spaces panel, an avatar stack and live cursors in the space
//!   [`DEMO_SPACE`] between tabs logged in as different users, with ably-js
//!   and @ably/spaces loaded from Ably's CDN as the seeds' recipe does: the
//!   only part of the page that needs the internet, and the only part that
//!   stops without it);
//! - `GET /dev/config`: `{"mockUrl","channel","space"}`, what the page needs;
//! - `POST /dev/login` with `{"user","roles"?}`: `{"token":"<app JWT>"}`;
//! - `POST /dev/publish` with `{"name"?,"data"}`: publishes on `demo`;
//! - `POST /dev/expire-credentials`: every Ably token and JWT the mock has
//!   seen expires, so open streams get 40142 and must renew.
//!
//! None of this exists without the `dev` feature (on by default), and the
//! production router has none of these routes. Dev mode refuses to listen on
//! anything but loopback addresses ([`check_loopback`]): `/dev/login` hands
//! out app tokens to anyone who asks. For the same reason a browser may call
//! `/dev/*` only from a page on a loopback origin (`http(s)://localhost`,
//! `127.0.0.0/8`, `[::1]`): a request with any other `Origin` gets 403/40300
//! and no CORS grant, whatever `AUTH_CORS_ORIGINS` says, so a web site the
//! developer visits cannot log in as an admin through it.

mod routes;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mock_ably::MockAbly;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

use crate::config::{AppAuth, AppJwtRules, Config, ConfigError, CorsOrigins};
use crate::error::ApiError;
use crate::mint::now_ms;
use crate::state::AppState;

/// The HS256 secret of dev mode's app tokens.
///
/// Public on purpose, like [`mock_ably::DEV_KEY`]: it only ever unlocks a
/// server on your own machine's loopback interface, which also answers
/// `/dev/login` for anyone. Fixed, so that a token printed by one run still
/// works after a restart.
pub const DEV_APP_SECRET: &str = "auth-server-dev-app-secret-loopback-only";

/// The channel the demo publisher sends to.
pub const DEMO_CHANNEL: &str = "demo";

/// The space the demo page's Spaces panel enters (its channels are
/// `demo-space::$space` and `demo-space::$cursors`).
pub const DEMO_SPACE: &str = "demo-space";

/// How often the demo publisher sends a message.
pub const DEMO_INTERVAL: Duration = Duration::from_secs(1);

/// How long an app token from `/dev/login` (or the banner) is valid.
pub const LOGIN_TTL: Duration = Duration::from_secs(3600);

/// The user the banner's ready-to-paste command logs in as.
pub const BANNER_USER: &str = "alice";

/// The variables dev mode sets itself; [`config_from_env`] ignores them.
const OWNED_VARIABLES: [&str; 5] = [
    "ABLY_API_KEY",
    "ABLY_REST_URL",
    "AUTH_APP_JWT_SECRET",
    "AUTH_JWKS_URL",
    "AUTH_JWT_ALGORITHMS",
];

/// Refuses `addr` unless it is a loopback address (`127.0.0.0/8`, `::1`).
/// `what` names the setting in the error (`AUTH_BIND`, `--mock-bind`).
///
/// # Errors
///
/// [`ConfigError`] naming `what` for any other address, `0.0.0.0` and `::`
/// included.
pub fn check_loopback(what: &'static str, addr: SocketAddr) -> Result<(), ConfigError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ConfigError::new(
            what,
            format!(
                "dev mode listens on loopback addresses only (such as 127.0.0.1:{}), not {addr}: \
                 its /dev/login gives a token to anyone who asks",
                addr.port()
            ),
        ))
    }
}

/// The configuration for dev mode from the environment: every `AUTH_*`
/// variable applies as in production (`AUTH_BIND`, `AUTH_POLICY_FILE`, ...)
/// but none is required. `AUTH_CORS_ORIGINS` defaults to `*`. The Ably key,
/// REST URL and app-token verification are dev mode's own ([`Dev::start`]
/// sets them); the names of the variables that were set for them and are
/// ignored come back with the configuration, for a warning.
///
/// # Errors
///
/// [`ConfigError`] naming the first malformed variable.
pub fn config_from_env() -> Result<(Config, Vec<&'static str>), ConfigError> {
    config_from_lookup(|name| std::env::var(name).ok())
}

fn config_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<&'static str>), ConfigError> {
    let ignored = OWNED_VARIABLES
        .into_iter()
        .filter(|name| lookup(name).is_some_and(|value| !value.trim().is_empty()))
        .collect();
    let cors_set = lookup("AUTH_CORS_ORIGINS").is_some_and(|value| !value.trim().is_empty());
    let mut config = Config::from_lookup(|name| match name {
        "ABLY_API_KEY" => Some(mock_ably::DEV_KEY.to_owned()),
        "AUTH_APP_JWT_SECRET" => Some(DEV_APP_SECRET.to_owned()),
        name if OWNED_VARIABLES.contains(&name) => None,
        name => lookup(name),
    })?;
    if !cors_set {
        // Browser code on other local origins (a dev server, ably-js tests)
        // may fetch tokens; authUrl requests carry no cookies.
        config.cors_origins = CorsOrigins::Any;
    }
    Ok((config, ignored))
}

/// Dev mode, running: the embedded mock Ably, the auth server's state wired
/// to it, and the demo publisher. Dropping it stops the publisher and the
/// mock.
#[derive(Debug)]
pub struct Dev {
    state: AppState,
    shared: Arc<DevShared>,
    publisher: JoinHandle<()>,
}

/// What the `/dev/*` routes and the publisher share.
#[derive(Debug)]
struct DevShared {
    mock: MockAbly,
    login: LoginSigner,
}

impl Dev {
    /// Starts the mock Ably on `mock_listener` and the demo publisher, and
    /// builds the auth server's state from `config` with dev mode's own Ably
    /// key ([`mock_ably::DEV_KEY`]), REST URL (the mock) and app secret
    /// ([`DEV_APP_SECRET`], HS256). Every other setting of `config` applies;
    /// its connection limits (header-read and idle timeouts, connection cap)
    /// apply to the mock as well.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if `config.bind` or the mock's address is not a
    /// loopback address, or if the configuration cannot be used.
    ///
    /// # Panics
    ///
    /// If the mock cannot use `mock_listener` (see
    /// [`mock_ably::MockAblyBuilder::start`]).
    pub async fn start(
        mut config: Config,
        mock_listener: std::net::TcpListener,
    ) -> Result<Self, ConfigError> {
        check_loopback("AUTH_BIND", config.bind)?;
        let mock_addr = mock_listener
            .local_addr()
            .map_err(|err| ConfigError::new("--mock-bind", err.to_string()))?;
        check_loopback("--mock-bind", mock_addr)?;

        config.api_key = mock_ably::DEV_KEY
            .parse()
            .expect("mock-ably's DEV_KEY is a valid key");
        config.app_auth = AppAuth::Secret(SecretString::from(DEV_APP_SECRET));
        config.app_jwt.algorithms = vec![Algorithm::HS256];
        // The embedded mock gets the auth server's connection limits.
        let mock = MockAbly::builder()
            .key(mock_ably::DEV_KEY)
            .header_read_timeout(config.header_read_timeout)
            .idle_timeout(config.idle_timeout)
            .max_connections(config.max_connections)
            .listener(mock_listener)
            .start()
            .await;
        config.ably_rest_url = Url::parse(mock.base_url())
            .map_err(|err| ConfigError::new("--mock-bind", err.to_string()))?;
        let login = LoginSigner {
            rules: config.app_jwt.clone(),
        };
        let state = AppState::new(config)?;
        let shared = Arc::new(DevShared { mock, login });
        let publisher = tokio::spawn(publish_demo(Arc::clone(&shared)));
        Ok(Self {
            state,
            shared,
            publisher,
        })
    }

    /// The auth server's state (the binary reloads its policy on `SIGHUP`).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The mock's base URL, `http://127.0.0.1:PORT`: Ably's REST and SSE
    /// endpoints for every client in dev mode.
    pub fn mock_url(&self) -> &str {
        self.shared.mock.base_url()
    }

    /// The production service plus dev mode's routes and the demo page, with
    /// every route closed to requests addressed to other than a loopback host
    /// (DNS rebinding) and `/dev/*` to browser pages on other than loopback
    /// origins (outside the CORS layer, so that its `*` never covers them).
    fn service(&self) -> impl crate::routes::AppService {
        let app = crate::routes::service_with(
            self.state.clone(),
            routes::router(Arc::clone(&self.shared)),
        );
        tower::ServiceBuilder::new()
            .layer(axum::middleware::from_fn(routes::loopback_only))
            .service(app)
    }

    /// What to print at start once the auth server listens on `addr`: the
    /// URLs and a ready-to-paste `sse-client` command with a fresh app token
    /// for [`BANNER_USER`].
    ///
    /// Printing that token is dev mode's one exception to "no tokens in
    /// output": it goes to the developer's own terminal, and it only unlocks
    /// the local mock.
    ///
    /// # Errors
    ///
    /// [`ApiError`] if the token cannot be signed.
    pub fn banner(&self, addr: SocketAddr) -> Result<Banner, ApiError> {
        Ok(Banner {
            auth_url: format!("http://{addr}"),
            mock_url: self.mock_url().to_owned(),
            token: self.shared.login.sign(BANNER_USER, &[])?,
        })
    }

    /// Serves the production router plus dev mode's routes and the demo page
    /// on `listener` until `shutdown` completes, then stops the publisher and
    /// the mock.
    ///
    /// # Errors
    ///
    /// None today (see [`crate::serve`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let app = self.service();
        crate::serve_app(listener, self.state.clone(), app, shutdown).await
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.publisher.abort();
    }
}

/// Publishes `{"n":N,"at":<ms>}` named `tick` on [`DEMO_CHANNEL`] every
/// [`DEMO_INTERVAL`], `n` counting from 1, so a gap or a repeat is visible.
async fn publish_demo(dev: Arc<DevShared>) {
    let mut interval = tokio::time::interval(DEMO_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1_u64.. {
        interval.tick().await;
        let mut message = shared::Message::default();
        message.name = Some("tick".to_owned());
        message.data = Some(json!({"n": n, "at": now_ms()}));
        if let Err(err) = dev.mock.try_publish(DEMO_CHANNEL, vec![message]) {
            tracing::warn!(error = %err, "the demo publisher cannot publish");
        }
    }
}

/// Signs dev mode's app tokens (`/dev/login`, the banner) for [`LOGIN_TTL`]
/// with the claims the verifier reads: the clientId and roles claims as
/// configured, and `iss`/`aud` when required.
#[derive(Debug)]
struct LoginSigner {
    rules: AppJwtRules,
}

/// The longest user name `/dev/login` accepts, in bytes.
const MAX_USER_LEN: usize = 128;
/// The most roles `/dev/login` accepts.
const MAX_ROLES: usize = 32;
/// The longest role name, in bytes.
const MAX_ROLE_LEN: usize = 64;

impl LoginSigner {
    fn sign(&self, user: &str, roles: &[String]) -> Result<String, ApiError> {
        check_name("user", user, MAX_USER_LEN)?;
        if user == "*" {
            return Err(ApiError::BadRequest(
                "user must not be \"*\", Ably's wildcard clientId".to_owned(),
            ));
        }
        if roles.len() > MAX_ROLES {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_ROLES} roles are accepted"
            )));
        }
        for role in roles {
            check_name("each role", role, MAX_ROLE_LEN)?;
        }
        let now = now_ms() / 1000;
        let mut claims = Map::new();
        claims.insert("iat".to_owned(), now.into());
        claims.insert("exp".to_owned(), (now + LOGIN_TTL.as_secs()).into());
        if let Some(issuer) = &self.rules.issuer {
            claims.insert("iss".to_owned(), issuer.clone().into());
        }
        if let Some(audience) = self.rules.audience.first() {
            claims.insert("aud".to_owned(), audience.clone().into());
        }
        // The configured claim names, written as top-level claims: the
        // verifier looks for an exact name before a dotted path.
        claims.insert(self.rules.roles_claim.clone(), json!(roles));
        claims.insert(self.rules.client_id_claim.clone(), user.into());
        let signed = EncodingKey::from_secret(DEV_APP_SECRET.as_bytes()).and_then(|key| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &Value::Object(claims), &key)
        });
        signed.map_err(|err| ApiError::Internal(anyhow::Error::new(err).context("signing")))
    }
}

/// A user or role name: not empty or blank, at most `max` bytes, no
/// control characters.
fn check_name(what: &str, name: &str, max: usize) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::BadRequest(format!("{what} must not be empty")));
    }
    if name.len() > max {
        return Err(ApiError::BadRequest(format!(
            "{what} must be at most {max} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

/// Dev mode's start-up banner (see [`Dev::banner`]); `Display` writes it,
/// a blank line first.
#[derive(Clone)]
pub struct Banner {
    auth_url: String,
    mock_url: String,
    token: String,
}

impl Banner {
    /// The ready-to-paste command streaming [`DEMO_CHANNEL`] through the auth
    /// server.
    fn sse_client_command(&self) -> String {
        format!(
            "cargo run --release -p sse-client -- subscribe --channel {DEMO_CHANNEL} \
             --endpoint {mock} --auth-url {auth}/api/ably-jwt \
             --auth-header \"Authorization: Bearer {token}\"",
            mock = self.mock_url,
            auth = self.auth_url,
            token = self.token,
        )
    }
}

/// Never shows the token.
impl fmt::Debug for Banner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Banner")
            .field("auth_url", &self.auth_url)
            .field("mock_url", &self.mock_url)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Banner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            auth_url, mock_url, ..
        } = self;
        let secs = DEMO_INTERVAL.as_secs();
        writeln!(f)?;
        writeln!(
            f,
            "Dev mode: a local mock Ably, this auth server wired to it, and a message on channel \
             \"{DEMO_CHANNEL}\" every {secs} s. Loopback only; not for production."
        )?;
        writeln!(f, "  demo page    {auth_url}/")?;
        writeln!(
            f,
            "  auth server  {auth_url}   (POST /dev/login, GET /api/ably-jwt, ...)"
        )?;
        writeln!(
            f,
            "  mock Ably    {mock_url}   (key {})",
            mock_ably::DEV_KEY
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "Stream \"{DEMO_CHANNEL}\" through the auth server (an app token for \"{BANNER_USER}\", \
             valid {} min; dev mode prints it, production never prints tokens):",
            LOGIN_TTL.as_secs() / 60
        )?;
        writeln!(f, "  {}", self.sse_client_command())?;
        writeln!(f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config_from(vars: &[(&str, &str)]) -> Result<(Config, Vec<&'static str>), ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        config_from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn loopback_addresses_are_accepted() {
        for addr in ["127.0.0.1:8080", "127.0.0.2:0", "[::1]:8090"] {
            assert!(
                check_loopback("AUTH_BIND", addr.parse().unwrap()).is_ok(),
                "{addr}"
            );
        }
    }

    #[test]
    fn other_addresses_are_refused_naming_the_setting() {
        for addr in [
            "0.0.0.0:8080",
            "[::]:8080",
            "192.168.1.10:8080",
            "10.0.0.1:0",
        ] {
            let err = check_loopback("--mock-bind", addr.parse().unwrap()).unwrap_err();

            assert_eq!(err.name, "--mock-bind", "{addr}");
            assert!(err.problem.contains("loopback"), "{}", err.problem);
        }
    }

    #[test]
    fn dev_config_needs_no_variables() {
        let (config, ignored) = config_from(&[]).unwrap();

        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.cors_origins, CorsOrigins::Any);
        assert!(ignored.is_empty());
    }

    #[test]
    fn dev_config_reads_auth_variables_and_ignores_the_ones_it_owns() {
        let (config, ignored) = config_from(&[
            ("ABLY_API_KEY", "appId.keyId:keySecret"),
            ("AUTH_APP_JWT_SECRET", "change-me"),
            ("AUTH_JWKS_URL", "https://idp.example/jwks"),
            ("AUTH_JWT_ALGORITHMS", "RS256"),
            ("AUTH_BIND", "127.0.0.1:0"),
            ("AUTH_CORS_ORIGINS", "http://localhost:3000"),
            ("AUTH_TOKEN_TTL", "15m"),
        ])
        .unwrap();

        assert_eq!(config.bind.port(), 0);
        assert_eq!(config.token_ttl, Duration::from_secs(900));
        assert_eq!(
            config.cors_origins,
            CorsOrigins::List(vec!["http://localhost:3000".to_owned()])
        );
        assert_eq!(config.api_key.key_name(), "mockApp.devKey");
        assert_eq!(
            ignored,
            [
                "ABLY_API_KEY",
                "AUTH_APP_JWT_SECRET",
                "AUTH_JWKS_URL",
                "AUTH_JWT_ALGORITHMS"
            ]
        );
    }

    #[test]
    fn dev_config_still_reports_malformed_variables() {
        let err = config_from(&[("AUTH_TOKEN_TTL", "soon")]).unwrap_err();

        assert_eq!(err.name, "AUTH_TOKEN_TTL");
    }

    #[test]
    fn login_refuses_bad_names() {
        let signer = LoginSigner {
            rules: AppJwtRules::defaults_for(&AppAuth::Secret(SecretString::from("x"))),
        };
        let long = "a".repeat(MAX_USER_LEN + 1);
        let many: Vec<String> = (0..=MAX_ROLES).map(|n| format!("r{n}")).collect();

        for (user, roles) in [
            ("", vec![]),
            ("  ", vec![]),
            ("*", vec![]),
            (long.as_str(), vec![]),
            ("bob\n", vec![]),
            ("bob", vec![String::new()]),
            ("bob", many),
        ] {
            let err = signer.sign(user, &roles).unwrap_err();

            assert!(matches!(err, ApiError::BadRequest(_)), "{user:?}: {err:?}");
        }
        assert!(signer.sign("bob", &["admin".to_owned()]).is_ok());
    }
}
