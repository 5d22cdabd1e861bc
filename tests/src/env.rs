//! [`TestEnv`]: mock-ably and the auth server, started together in this
//! process, with a typed helper for each thing a flow does.

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_server::{AppAuth, AppState, Config, Policy};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mock_ably::MockAbly;
use reqwest::Url;
use reqwest::header::AUTHORIZATION;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::{ApiKey, ErrorInfo, ErrorResponse};
use sse_client::ably::{Auth, AuthUrl, Client};
use sse_client::sse::ReconnectOptions;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::metrics::AuthMetrics;
use crate::wait::within_named;

/// The Ably key mock-ably accepts and, unless told otherwise, the auth server
/// signs with.
pub const ABLY_KEY: &str = "e2eApp.e2eKey:e2e-ably-key-secret";

/// The same key name as [`ABLY_KEY`] with another secret: an auth server
/// signing with it mints JWTs that Ably (the mock) refuses with 40144.
pub const WRONG_SECRET_KEY: &str = "e2eApp.e2eKey:not-the-secret-ably-knows";

/// The HS256 secret of the app's own login tokens.
pub const APP_SECRET: &str = "e2e-app-login-secret";

/// The capability policy unless a test gives its own: everyone may read and
/// write `chat:*` and their own `private:{clientId}`; the `admin` role may do
/// anything anywhere.
pub const POLICY: &str = r#"
[default]
"chat:*" = ["subscribe", "publish", "history"]
"private:{clientId}" = ["subscribe", "publish"]

[roles.admin]
"*" = ["*"]
"#;

/// The role whose holders may call the auth server's `POST /api/revoke`
/// (its `AUTH_ADMIN_ROLE`); [`TestEnv::revoke`] logs in with it.
pub const ADMIN_ROLE: &str = "revoker";

/// How long an app login token lives.
const APP_TOKEN_LIFE: Duration = Duration::from_secs(600);

/// One of the auth server's three token endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpoint {
    /// `/api/ably-jwt`: an Ably JWT, used as it is.
    Jwt,
    /// `/api/ably-token-request`: a signed TokenRequest, which the client
    /// exchanges at Ably's `requestToken`.
    TokenRequest,
    /// `/api/ably-token`: TokenDetails the auth server got from Ably.
    TokenDetails,
}

impl TokenEndpoint {
    /// Every endpoint.
    pub const ALL: [TokenEndpoint; 3] = [
        TokenEndpoint::Jwt,
        TokenEndpoint::TokenRequest,
        TokenEndpoint::TokenDetails,
    ];

    /// The endpoint's path.
    pub fn path(self) -> &'static str {
        match self {
            TokenEndpoint::Jwt => "/api/ably-jwt",
            TokenEndpoint::TokenRequest => "/api/ably-token-request",
            TokenEndpoint::TokenDetails => "/api/ably-token",
        }
    }

    /// The `kind` label of `auth_tokens_issued_total` for this endpoint.
    pub fn metric_kind(self) -> &'static str {
        match self {
            TokenEndpoint::Jwt => "jwt",
            TokenEndpoint::TokenRequest => "token_request",
            TokenEndpoint::TokenDetails => "token",
        }
    }
}

/// How a client logs in to the auth server: the app token it presents (if
/// any), the endpoint, and token parameters such as `ttl` (in ms).
#[derive(Clone)]
pub struct Login {
    bearer: Option<String>,
    endpoint: TokenEndpoint,
    params: Vec<(String, String)>,
}

/// Says whether there is a bearer token, never what it is.
impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("bearer", &self.bearer.as_ref().map(|_| "[REDACTED]"))
            .field("endpoint", &self.endpoint)
            .field("params", &self.params)
            .finish()
    }
}

impl Login {
    /// Presents `token` as `Authorization: Bearer`, at `/api/ably-jwt`.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self {
            bearer: Some(token.into()),
            endpoint: TokenEndpoint::Jwt,
            params: Vec::new(),
        }
    }

    /// Presents no app token at all.
    pub fn anonymous() -> Self {
        Self {
            bearer: None,
            endpoint: TokenEndpoint::Jwt,
            params: Vec::new(),
        }
    }

    /// Asks `endpoint` instead of `/api/ably-jwt`.
    #[must_use]
    pub fn endpoint(mut self, endpoint: TokenEndpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Adds a token parameter, sent in the query (`ttl` in ms, `capability`).
    #[must_use]
    pub fn param(mut self, name: &str, value: impl Into<String>) -> Self {
        self.params.push((name.to_owned(), value.into()));
        self
    }
}

/// Configures a [`TestEnv`]. Made by [`TestEnv::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct TestEnvBuilder {
    policy: String,
    signing_key: String,
    token_ttl: Option<Duration>,
}

impl TestEnvBuilder {
    /// The auth server's capability policy, as TOML. Default [`POLICY`].
    pub fn policy(mut self, toml: &str) -> Self {
        toml.clone_into(&mut self.policy);
        self
    }

    /// The key the auth server signs with. Default [`ABLY_KEY`], the one
    /// the mock knows; [`WRONG_SECRET_KEY`] makes every credential it
    /// issues a forgery in the mock's eyes.
    pub fn signing_key(mut self, key: &str) -> Self {
        key.clone_into(&mut self.signing_key);
        self
    }

    /// The TTL of credentials when the client asks for none (the auth
    /// server's `AUTH_TOKEN_TTL`). Default one hour.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = Some(ttl);
        self
    }

    /// Starts mock-ably, then the auth server pointed at it; both are ready
    /// when this returns (their listeners are bound before they serve).
    ///
    /// # Panics
    ///
    /// If the policy or key is invalid or a port cannot be bound.
    pub async fn start(self) -> TestEnv {
        init_tracing();
        let mock = MockAbly::builder().key(ABLY_KEY).start().await;

        let signing_key: ApiKey = self
            .signing_key
            .parse()
            .unwrap_or_else(|err| panic!("invalid signing key: {err}"));
        let policy = Policy::from_toml(&self.policy)
            .unwrap_or_else(|err| panic!("invalid test policy: {err}"));
        let policy_file = PolicyFile::new(&self.policy);
        let defaults = Config::new(signing_key, AppAuth::Secret(SecretString::from(APP_SECRET)));
        let config = Config {
            bind: "127.0.0.1:0".parse().expect("a loopback address"),
            ably_rest_url: Url::parse(mock.base_url()).expect("the mock's URL parses"),
            policy,
            policy_file: Some(policy_file.0.clone()),
            admin_role: Some(ADMIN_ROLE.to_owned()),
            token_ttl: self.token_ttl.unwrap_or(defaults.token_ttl),
            // A test that renews often must not trip a limit it is not about.
            rate_limit_per_user: None,
            rate_limit_per_ip: None,
            ..defaults
        };
        let listener = TcpListener::bind(config.bind)
            .await
            .expect("cannot bind the auth server to 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("the auth server's listener has an address");
        let state = AppState::new(config).expect("the test configuration is valid");
        let (shutdown, stop) = oneshot::channel::<()>();
        let served = state.clone();
        tokio::spawn(async move {
            if let Err(err) = auth_server::serve(listener, served, async {
                stop.await.ok();
            })
            .await
            {
                panic!("the auth server stopped serving: {err}");
            }
        });

        TestEnv {
            key: ABLY_KEY.parse().expect("ABLY_KEY is a valid key"),
            mock,
            auth_base_url: format!("http://{addr}"),
            http: reqwest::Client::new(),
            state,
            policy_file,
            _shutdown: shutdown,
        }
    }
}

/// The auth server's `AUTH_POLICY_FILE`: a file of this environment's own
/// in the temporary directory, removed on drop.
struct PolicyFile(PathBuf);

impl PolicyFile {
    fn new(toml: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "e2e-policy-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, toml)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        Self(path)
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

/// mock-ably and the auth server, running in this process on loopback
/// ports. Dropping it stops both.
pub struct TestEnv {
    mock: MockAbly,
    auth_base_url: String,
    key: ApiKey,
    http: reqwest::Client,
    /// The auth server's state, for what a signal would do.
    state: AppState,
    policy_file: PolicyFile,
    /// Dropping the sender ends the auth server's graceful-shutdown future.
    _shutdown: oneshot::Sender<()>,
}

impl fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestEnv")
            .field("mock", &self.mock.base_url())
            .field("auth_server", &self.auth_base_url)
            .finish_non_exhaustive()
    }
}

impl TestEnv {
    /// A builder: policy, signing key and default TTL.
    pub fn builder() -> TestEnvBuilder {
        TestEnvBuilder {
            policy: POLICY.to_owned(),
            signing_key: ABLY_KEY.to_owned(),
            token_ttl: None,
        }
    }

    /// Starts an environment with every default.
    ///
    /// # Panics
    ///
    /// As [`TestEnvBuilder::start`].
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// The mock, for publishing through its handle, fault injection and
    /// counters.
    pub fn mock(&self) -> &MockAbly {
        &self.mock
    }

    /// `http://127.0.0.1:PORT` of the auth server.
    pub fn auth_base_url(&self) -> &str {
        &self.auth_base_url
    }

    /// The app's login token for `user` with `roles`: an HS256 JWT signed
    /// with [`APP_SECRET`], valid for ten minutes.
    pub fn app_token(&self, user: &str, roles: &[&str]) -> String {
        app_token_signed_with(APP_SECRET, user, roles)
    }

    /// `user` (with `roles`) logging in at `/api/ably-jwt`.
    pub fn login(&self, user: &str, roles: &[&str]) -> Login {
        Login::bearer(self.app_token(user, roles))
    }

    /// A client that gets its credentials from the auth server as `login`
    /// says, and subscribes at the mock. Reconnection delays are short (10
    /// to 100 ms, no jitter) so fault tests run fast; everything else is
    /// sse-client's default.
    ///
    /// # Panics
    ///
    /// If the client cannot be built.
    pub fn client(&self, login: &Login) -> Client {
        let mut url =
            AuthUrl::new(&self.url(login.endpoint.path())).expect("the auth server's URL parses");
        if let Some(token) = &login.bearer {
            url = url
                .header(AUTHORIZATION.as_str(), &format!("Bearer {token}"))
                .expect("a JWT is a valid header value");
        }
        for (name, value) in &login.params {
            url = url.param(name.as_str(), value.as_str());
        }
        Client::builder()
            .endpoint(self.mock.base_url())
            .auth(Auth::auth_url(url))
            .reconnect(
                ReconnectOptions::default()
                    .initial_delay(Duration::from_millis(10))
                    .max_delay(Duration::from_millis(100))
                    .jitter(false),
            )
            .build()
            .expect("the test client builds")
    }

    /// A client for `user`, with no roles, through `/api/ably-jwt`.
    pub fn client_for(&self, user: &str) -> Client {
        self.client(&self.login(user, &[]))
    }

    /// Publishes a message whose data is `data` on `channel` over the mock's
    /// REST API, as the app's backend would: with the API key, so it
    /// carries no clientId. Returns the message id.
    ///
    /// # Panics
    ///
    /// If the mock refuses the publish or does not answer in time.
    pub async fn publish(&self, channel: &str, data: impl Into<Value>) -> String {
        let request = self
            .http
            .post(self.channel_messages_url(channel))
            .basic_auth(self.key.key_name(), Some(secret(&self.key)))
            .json(&json!({ "data": data.into() }));
        let response = within_named("a REST publish", request.send())
            .await
            .unwrap_or_else(|err| panic!("publish on {channel:?} failed: {err}"));
        message_id(response)
            .await
            .unwrap_or_else(|err| panic!("publish on {channel:?} refused: {err:?}"))
    }

    /// Publishes `message` (a JSON Message) on `channel` over REST as the
    /// user of `login`: with an Ably JWT the auth server issues them, so the
    /// mock stamps (and checks) their clientId. Returns the message id, or
    /// the mock's refusal.
    ///
    /// # Panics
    ///
    /// If the auth server refuses the login, or a request fails or times out.
    pub async fn publish_as(
        &self,
        login: &Login,
        channel: &str,
        message: Value,
    ) -> Result<String, ErrorInfo> {
        let jwt = self.ably_jwt(login).await;
        let request = self
            .http
            .post(self.channel_messages_url(channel))
            .bearer_auth(jwt)
            .json(&message);
        let response = within_named("a REST publish", request.send())
            .await
            .unwrap_or_else(|err| panic!("publish on {channel:?} failed: {err}"));
        message_id(response).await
    }

    /// An Ably JWT for `login` from the auth server's JWT endpoint.
    ///
    /// # Panics
    ///
    /// If the auth server refuses the login, or the request fails or times
    /// out.
    pub async fn ably_jwt(&self, login: &Login) -> String {
        let mut request = self.http.get(self.url(TokenEndpoint::Jwt.path()));
        if let Some(token) = &login.bearer {
            request = request.bearer_auth(token);
        }
        let response = within_named("an Ably JWT from the auth server", request.send())
            .await
            .expect("the auth server answers");
        assert_eq!(
            response.status().as_u16(),
            200,
            "the auth server refused {login:?}"
        );
        within_named("the Ably JWT", response.text())
            .await
            .expect("the auth server's answer is readable")
    }

    /// Changes the auth server's policy to `toml` as an operator does: writes
    /// its `AUTH_POLICY_FILE` and reloads it (what `SIGHUP` does). Every
    /// credential issued from now on follows it.
    ///
    /// # Panics
    ///
    /// If the file cannot be written or the policy does not parse.
    pub fn change_policy(&self, toml: &str) {
        std::fs::write(&self.policy_file.0, toml)
            .unwrap_or_else(|err| panic!("cannot write the policy file: {err}"));
        self.state
            .reload_policy()
            .unwrap_or_else(|err| panic!("the policy reload failed: {err}"));
    }

    /// Revokes at Ably through the auth server's `POST /api/revoke`, as an
    /// admin (a user with [`ADMIN_ROLE`]): `body` is `{"clientId": …}` or
    /// `{"revocationKey": …}`. Returns Ably's result.
    ///
    /// # Panics
    ///
    /// If the auth server does not answer 200 in time.
    pub async fn revoke(&self, body: Value) -> Value {
        let request = self
            .http
            .post(self.url("/api/revoke"))
            .bearer_auth(self.app_token("ops-admin", &[ADMIN_ROLE]))
            .json(&body);
        let response = within_named("a revocation", request.send())
            .await
            .expect("the auth server answers /api/revoke");
        let status = response.status().as_u16();
        let answer: Value = within_named("the revocation's answer", response.json())
            .await
            .expect("the revocation's answer is JSON");
        assert_eq!(status, 200, "the revocation failed: {answer}");
        answer
    }

    /// The auth server's counters, from its `/metrics`.
    ///
    /// # Panics
    ///
    /// If the request fails or times out.
    pub async fn auth_metrics(&self) -> AuthMetrics {
        let response = within_named("/metrics", self.http.get(self.url("/metrics")).send())
            .await
            .expect("the auth server answers /metrics");
        let text = within_named("the /metrics body", response.text())
            .await
            .expect("/metrics is readable");
        AuthMetrics::parse(&text)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.auth_base_url)
    }

    fn channel_messages_url(&self, channel: &str) -> Url {
        let mut url = Url::parse(self.mock.base_url()).expect("the mock's URL parses");
        url.path_segments_mut()
            .expect("the mock's URL is a base")
            .extend(["channels", channel, "messages"]);
        url
    }
}

/// An app login token for `user` with `roles`, signed with `secret`: the
/// right one is [`APP_SECRET`]; anything else makes a user the auth server
/// does not know.
pub fn app_token_signed_with(secret: &str, user: &str, roles: &[&str]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let claims = json!({
        "sub": user,
        "roles": roles,
        "iat": now,
        "exp": now + APP_TOKEN_LIFE.as_secs(),
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("an HMAC key may be any bytes"),
    )
    .expect("HS256 signing does not fail")
}

fn secret(key: &ApiKey) -> String {
    use secrecy::ExposeSecret as _;
    key.secret().expose_secret().to_owned()
}

/// The `messageId` of a `201` publish answer, or the Ably error of a refusal.
async fn message_id(response: reqwest::Response) -> Result<String, ErrorInfo> {
    let status = response.status().as_u16();
    let body: Value = within_named("a REST publish answer", response.json())
        .await
        .unwrap_or_else(|err| panic!("the mock's answer ({status}) is not JSON: {err}"));
    if status == 201 {
        Ok(body["messageId"]
            .as_str()
            .unwrap_or_else(|| panic!("no messageId in {body}"))
            .to_owned())
    } else {
        Err(serde_json::from_value::<ErrorResponse>(body.clone())
            .unwrap_or_else(|_| panic!("a {status} answer without an Ably error: {body}"))
            .error)
    }
}

/// Tracing for the suite, once per process, only with `TEST_LOG=1`.
fn init_tracing() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let wanted = std::env::var("TEST_LOG").is_ok_and(|v| v == "1" || v == "true");
        if wanted {
            let filter =
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                    "auth_server=debug,mock_ably=debug,sse_client=debug,info".into()
                });
            // Another subscriber may already be set; then that one is used.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}
