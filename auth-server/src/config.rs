//! Configuration: a typed [`Config`] read once from the environment.
//!
//! Every variable is read through three helpers (`var`, `required_var`,
//! `var_parsed`) whose errors name the variable, so a bad deployment stops
//! with one line saying what to fix. Tests never touch the environment: they
//! build a [`Config`] with [`Config::new`] and struct update syntax.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use secrecy::SecretString;
use shared::{ApiKey, Capability};
use url::Url;

use crate::client_ip::IpRange;
use crate::policy::Policy;

/// Ably's production REST host (`docs/protocol.md#hosts-and-versions`).
pub const DEFAULT_ABLY_REST_URL: &str = "https://main.realtime.ably.net";

/// Where the server listens unless `AUTH_BIND` says otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// Ably's TTL cap (`docs/protocol.md#ttl-limits`); `AUTH_MAX_TOKEN_TTL` may
/// only lower it.
pub const ABLY_MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Everything the server needs, read once at start-up.
///
/// Build it with [`Config::from_env`] in a binary, or with [`Config::new`]
/// plus struct update syntax in tests and embedders:
///
/// ```
/// # use auth_server::{AppAuth, Config};
/// # use secrecy::SecretString;
/// let config = Config {
///     bind: "127.0.0.1:0".parse().unwrap(),
///     ..Config::new(
///         "app.key:secret".parse().unwrap(),
///         AppAuth::Secret(SecretString::from("app-jwt-secret")),
///     )
/// };
/// assert_eq!(config.token_ttl.as_secs(), 3600);
/// ```
///
/// The struct is not `#[non_exhaustive]` on purpose: struct literals are how
/// tests configure it. New fields get a default in [`Config::new`].
#[derive(Clone)]
pub struct Config {
    /// `AUTH_BIND`: the listening address.
    pub bind: SocketAddr,
    /// `ABLY_API_KEY`: the key Ably credentials are signed with.
    pub api_key: ApiKey,
    /// `ABLY_REST_URL`: where `/api/ably-token` sends `requestToken`.
    pub ably_rest_url: Url,
    /// How the app's own users are verified.
    pub app_auth: AppAuth,
    /// The rules every app JWT must pass.
    pub app_jwt: AppJwtRules,
    /// `AUTH_POLICY_FILE`: who may do what, as the server starts.
    pub policy: Policy,
    /// `AUTH_POLICY_FILE`: where [`policy`](Self::policy) was read from, and
    /// is read again on `SIGHUP` ([`AppState::reload_policy`](crate::AppState::reload_policy)).
    /// `None`: the policy was given in code (or is the default) and cannot
    /// be reloaded.
    pub policy_file: Option<PathBuf>,
    /// `AUTH_POLICY_RELOAD`: how often the policy file is checked for
    /// changes, and reloaded when it has; `None` (the default) reloads on
    /// `SIGHUP` only.
    pub policy_reload: Option<Duration>,
    /// `AUTH_KEY_CAPABILITY`: the key's own capability; grants never exceed it.
    pub key_capability: Capability,
    /// `AUTH_TOKEN_TTL`: the TTL of a token when the caller asks for none.
    pub token_ttl: Duration,
    /// `AUTH_MAX_TOKEN_TTL`: requested TTLs are clamped to this (at most 24 h).
    pub max_token_ttl: Duration,
    /// `AUTH_TTL_WITHIN_APP_TOKEN` (default `true`): every credential ends no
    /// later than the app token's `exp`, and an app token with less than a
    /// second left is refused like an expired one.
    pub ttl_within_app_token: bool,
    /// `AUTH_CORS_ORIGINS`: browser origins allowed to call the API.
    pub cors_origins: CorsOrigins,
    /// `AUTH_APP_JWT_COOKIE`: the cookie the app JWT is read from when a
    /// request has no `Authorization` header (a same-origin app's session
    /// cookie); `None` reads no cookie. With listed
    /// [`cors_origins`](Self::cors_origins), cross-origin requests from them
    /// may carry it (`Access-Control-Allow-Credentials: true`); with `*` they
    /// never do.
    pub app_jwt_cookie: Option<String>,
    /// `AUTH_ADMIN_ROLE`: the role an app token must hold to call
    /// `POST /api/revoke`; `None` (the default) turns that route off (404).
    pub admin_role: Option<String>,
    /// `AUTH_RATE_LIMIT_PER_USER`: per verified clientId; `None` is off.
    pub rate_limit_per_user: Option<RateLimit>,
    /// `AUTH_RATE_LIMIT_PER_IP`: per client IP address; `None` is off.
    pub rate_limit_per_ip: Option<RateLimit>,
    /// `AUTH_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` names the
    /// client for the per-IP limit; empty trusts no one.
    pub trusted_proxies: Vec<IpRange>,
    /// `AUTH_MAX_BODY_BYTES`: the largest request body accepted.
    pub max_body_bytes: usize,
    /// `AUTH_REQUEST_TIMEOUT`: how long one request may take, Ably round trip included.
    pub request_timeout: Duration,
    /// `AUTH_HEADER_READ_TIMEOUT`: how long a connection may take to send a
    /// complete request head, from the accept or from the first byte of a
    /// later request (default 10 s); then it is closed.
    pub header_read_timeout: Duration,
    /// `AUTH_IDLE_TIMEOUT`: how long a keep-alive connection may sit idle
    /// between requests (default 60 s).
    pub idle_timeout: Duration,
    /// `AUTH_MAX_CONNECTIONS`: connections served at once (default 10,000);
    /// one more is answered 503 and closed.
    pub max_connections: usize,
    /// How often the JWKS is refetched in the background (10 minutes).
    pub jwks_refresh_interval: Duration,
    /// The least time between two refetches triggered by unknown `kid`s (10 s).
    pub jwks_unknown_kid_cooldown: Duration,
    /// How long after a failed JWKS fetch the first retry comes (1 s); each
    /// further failure doubles it, up to a minute.
    pub jwks_retry_backoff: Duration,
}

/// Every setting, with the secrets and URL credentials redacted: the API
/// key shows only its name, the app-JWT secret and the JWKS URL's credentials
/// are hidden (see [`AppAuth`]), and `ably_rest_url` reads as
/// `RedactedUrl` shows it. Destructured, so a new field fails to compile
/// until it is shown here.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Config {
            bind,
            api_key,
            ably_rest_url,
            app_auth,
            app_jwt,
            policy,
            policy_file,
            policy_reload,
            key_capability,
            token_ttl,
            max_token_ttl,
            ttl_within_app_token,
            cors_origins,
            app_jwt_cookie,
            admin_role,
            rate_limit_per_user,
            rate_limit_per_ip,
            trusted_proxies,
            max_body_bytes,
            request_timeout,
            header_read_timeout,
            idle_timeout,
            max_connections,
            jwks_refresh_interval,
            jwks_unknown_kid_cooldown,
            jwks_retry_backoff,
        } = self;
        f.debug_struct("Config")
            .field("bind", &bind)
            .field("api_key", &api_key)
            .field("ably_rest_url", &RedactedUrl(ably_rest_url).to_string())
            .field("app_auth", &app_auth)
            .field("app_jwt", &app_jwt)
            .field("policy", &policy)
            .field("policy_file", &policy_file)
            .field("policy_reload", &policy_reload)
            .field("key_capability", &key_capability)
            .field("token_ttl", &token_ttl)
            .field("max_token_ttl", &max_token_ttl)
            .field("ttl_within_app_token", &ttl_within_app_token)
            .field("cors_origins", &cors_origins)
            .field("app_jwt_cookie", &app_jwt_cookie)
            .field("admin_role", &admin_role)
            .field("rate_limit_per_user", &rate_limit_per_user)
            .field("rate_limit_per_ip", &rate_limit_per_ip)
            .field("trusted_proxies", &trusted_proxies)
            .field("max_body_bytes", &max_body_bytes)
            .field("request_timeout", &request_timeout)
            .field("header_read_timeout", &header_read_timeout)
            .field("idle_timeout", &idle_timeout)
            .field("max_connections", &max_connections)
            .field("jwks_refresh_interval", &jwks_refresh_interval)
            .field("jwks_unknown_kid_cooldown", &jwks_unknown_kid_cooldown)
            .field("jwks_retry_backoff", &jwks_retry_backoff)
            .finish()
    }
}

/// How the caller's `Authorization: Bearer` app JWT is verified.
#[derive(Clone)]
pub enum AppAuth {
    /// `AUTH_APP_JWT_SECRET`: a shared HMAC secret (HS256 by default).
    Secret(SecretString),
    /// `AUTH_JWKS_URL`: the identity provider's JSON Web Key Set.
    Jwks(Url),
}

/// Shows which mode is configured, never the secret, nor the JWKS URL's
/// credentials, query or fragment (each shown as `[REDACTED]`).
impl fmt::Debug for AppAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppAuth::Secret(_) => f.write_str("Secret([REDACTED])"),
            AppAuth::Jwks(url) => f
                .debug_tuple("Jwks")
                .field(&format_args!("{:?}", RedactedUrl(url).to_string()))
                .finish(),
        }
    }
}

/// A URL as logs and `Debug` show it: its user name and password, query and
/// fragment are replaced by `[REDACTED]`, since a JWKS URL may carry a
/// credential in any of them (`https://user:pass@idp/jwks`,
/// `https://idp/jwks?api_key=…`). The scheme, host, port and path stay, so
/// the line still says which endpoint failed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RedactedUrl<'a>(pub(crate) &'a Url);

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        let Some(host) = url.host_str() else {
            // No authority (`mailto:`, `data:`): nothing but the scheme is safe.
            return write!(f, "{}:[REDACTED]", url.scheme());
        };
        write!(f, "{}://", url.scheme())?;
        if !url.username().is_empty() || url.password().is_some() {
            f.write_str("[REDACTED]@")?;
        }
        f.write_str(host)?;
        if let Some(port) = url.port() {
            write!(f, ":{port}")?;
        }
        f.write_str(url.path())?;
        if url.query().is_some() {
            f.write_str("?[REDACTED]")?;
        }
        if url.fragment().is_some() {
            f.write_str("#[REDACTED]")?;
        }
        Ok(())
    }
}

/// The checks every app JWT must pass, and where its identity is read from.
#[derive(Debug, Clone)]
pub struct AppJwtRules {
    /// `AUTH_JWT_ALGORITHMS`: the only algorithms accepted, whatever a token's
    /// header says. Defaults: `HS256` with a secret, `RS256,ES256,EdDSA` with
    /// a JWKS.
    pub algorithms: Vec<Algorithm>,
    /// `AUTH_JWT_ISSUER`: the required `iss`, when set. Required with a
    /// JWKS ([`AppState::new`](crate::AppState::new) refuses one without it).
    pub issuer: Option<String>,
    /// `AUTH_JWT_AUDIENCE`: accepted `aud` values (comma-separated); empty
    /// means `aud` is not checked, which only a shared secret allows.
    pub audience: Vec<String>,
    /// `AUTH_JWT_LEEWAY`: clock skew forgiven on `exp` and `nbf` (default 30 s),
    /// in whole seconds ([`AppState::new`](crate::AppState::new) refuses a fraction).
    pub leeway: Duration,
    /// `AUTH_CLIENT_ID_CLAIM`: the claim holding the Ably clientId (default `sub`).
    pub client_id_claim: String,
    /// `AUTH_ROLES_CLAIM`: the claim holding the user's roles (default `roles`).
    pub roles_claim: String,
    /// `AUTH_REVOCATION_KEY_CLAIM`: the claim (a session id, a tenant; a
    /// dotted path allowed) copied into `x-ably-revocation-key` on minted
    /// Ably JWTs, so that `POST /api/revoke` with `revocationKey` cuts off
    /// every JWT minted for it at once. A token without the claim gets JWTs
    /// without a revocation key; one whose claim is not a non-empty string
    /// of at most 1024 bytes without control characters is refused (401).
    /// `None` (the default) sets no revocation key.
    pub revocation_key_claim: Option<String>,
}

impl AppJwtRules {
    /// The defaults for `app_auth`: its algorithms, no issuer or audience,
    /// 30 s leeway, clientId from `sub`, roles from `roles`. With a JWKS, set
    /// `issuer` and `audience` too: [`AppState::new`](crate::AppState::new)
    /// refuses a JWKS without them.
    pub fn defaults_for(app_auth: &AppAuth) -> Self {
        Self {
            algorithms: default_algorithms(app_auth),
            issuer: None,
            audience: Vec::new(),
            leeway: Duration::from_secs(30),
            client_id_claim: "sub".to_owned(),
            roles_claim: "roles".to_owned(),
            revocation_key_claim: None,
        }
    }
}

/// Which browser origins may call the API cross-origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers at all (same-origin or non-browser callers only).
    None,
    /// `*`: any origin. Safe here, since no cross-origin request may carry
    /// cookies then (no `Access-Control-Allow-Credentials`), so only
    /// `Authorization` headers a caller chose to send.
    Any,
    /// Exactly these origins (`scheme://host[:port]`).
    List(Vec<String>),
}

/// A rate: `N/s` or `N/m`, with a burst of one period's worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per period, and the burst size.
    pub count: u32,
    /// The period: one second or one minute.
    pub period: Duration,
}

impl FromStr for RateLimit {
    type Err = String;

    /// Parses `N/s` or `N/m` (N ≥ 1).
    fn from_str(text: &str) -> Result<Self, String> {
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("expected N/s, N/m or off, got {text:?}"))?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            other => return Err(format!("unknown period {other:?}; use s or m")),
        };
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{count:?} is not a whole number"))?;
        if count == 0 {
            return Err("the count must be at least 1 (use off to disable)".to_owned());
        }
        Ok(Self { count, period })
    }
}

/// A configuration problem found at start-up. The message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    /// The environment variable at fault (two joined by `and` when a pair
    /// that goes together is missing).
    pub name: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(name: &'static str, problem: impl Into<String>) -> Self {
        Self {
            name,
            problem: problem.into(),
        }
    }
}

impl Config {
    /// A configuration with every optional setting at its default.
    pub fn new(api_key: ApiKey, app_auth: AppAuth) -> Self {
        Self {
            bind: DEFAULT_BIND.parse().expect("the default address parses"),
            api_key,
            ably_rest_url: Url::parse(DEFAULT_ABLY_REST_URL).expect("the default URL parses"),
            app_jwt: AppJwtRules::defaults_for(&app_auth),
            app_auth,
            policy: Policy::default(),
            policy_file: None,
            policy_reload: None,
            key_capability: Capability::all(),
            token_ttl: Duration::from_secs(3600),
            max_token_ttl: ABLY_MAX_TTL,
            ttl_within_app_token: true,
            cors_origins: CorsOrigins::None,
            app_jwt_cookie: None,
            admin_role: None,
            rate_limit_per_user: Some(RateLimit {
                count: 10,
                period: Duration::from_secs(1),
            }),
            rate_limit_per_ip: Some(RateLimit {
                count: 100,
                period: Duration::from_secs(1),
            }),
            trusted_proxies: Vec::new(),
            max_body_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            header_read_timeout: serve::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: serve::DEFAULT_IDLE_TIMEOUT,
            max_connections: serve::DEFAULT_MAX_CONNECTIONS,
            jwks_refresh_interval: Duration::from_secs(600),
            jwks_unknown_kid_cooldown: Duration::from_secs(10),
            jwks_retry_backoff: Duration::from_secs(1),
        }
    }

    /// Reads the configuration from the process environment.
    ///
    /// Every variable, its default and its meaning are in the Configuration
    /// table of `auth-server/README.md` (the crate documentation's
    /// [Configuration](crate#configuration) section), the one reference for
    /// them; a test checks that table against the variables this reads.
    /// Durations are written `500ms`, `30s`, `15m`, `1h` or `1d`, and an
    /// empty variable counts as unset.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first variable that is missing or malformed
    /// (including a policy file that does not parse, with its line).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] over any variable lookup (tests pass a map).
    ///
    /// Read section by section, each variable in a fixed order, so the first
    /// malformed one is the one reported.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let mut config = Self::read_identity(&env)?;
        config.read_endpoints(&env)?;
        config.read_app_jwt_rules(&env)?;
        config.read_policy(&env)?;
        config.read_token_lifetimes(&env)?;
        config.read_browser_access(&env)?;
        config.read_revocation(&env)?;
        config.read_limits(&env)?;
        Ok(config)
    }

    /// The two credentials everything else hangs on: the Ably key that
    /// signs, and how the app's own users are verified (`AUTH_APP_JWT_SECRET`
    /// or `AUTH_JWKS_URL`, exactly one); the defaults for the rest.
    fn read_identity(env: &Env<'_>) -> Result<Self, ConfigError> {
        let api_key: ApiKey = env.required_var_parsed("ABLY_API_KEY")?;
        let app_auth = match (
            env.var("AUTH_APP_JWT_SECRET"),
            env.var_parsed::<Url>("AUTH_JWKS_URL")?,
        ) {
            (Some(secret), None) => AppAuth::Secret(SecretString::from(secret)),
            (None, Some(url)) => AppAuth::Jwks(url),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "AUTH_JWKS_URL",
                    "set either AUTH_APP_JWT_SECRET or AUTH_JWKS_URL, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "AUTH_APP_JWT_SECRET",
                    "required: set AUTH_APP_JWT_SECRET (HS256) or AUTH_JWKS_URL",
                ));
            }
        };
        Ok(Config::new(api_key, app_auth))
    }

    /// Where the server listens and where Ably's REST API is.
    fn read_endpoints(&mut self, env: &Env<'_>) -> Result<(), ConfigError> {
        if let Some(bind) = env.var_parsed("AUTH_BIND")? {
            self.bind = bind;
        }
        if let Some(url) = env.var_parsed::<Url>("ABLY_REST_URL")? {
            self.ably_rest_url = url;
        }
        Ok(())
    }

    /// The rules every app JWT must pass: algorithms, issuer, audience,
    /// leeway, and the claims giving the clientId and the roles.
    fn read_app_jwt_rules(&mut self, env: &Env<'_>) -> Result<(), ConfigError> {
        if let Some(list) = env.var("AUTH_JWT_ALGORITHMS") {
            self.app_jwt.algorithms = parse_algorithms(&list)
                .map_err(|problem| ConfigError::new("AUTH_JWT_ALGORITHMS", problem))?;
        }
        check_algorithms(&self.app_auth, &self.app_jwt.algorithms)
            .map_err(|problem| ConfigError::new("AUTH_JWT_ALGORITHMS", problem))?;
        self.app_jwt.issuer = env.var("AUTH_JWT_ISSUER");
        if let Some(list) = env.var("AUTH_JWT_AUDIENCE") {
            self.app_jwt.audience = comma_list(&list);
        }
        check_issuer_and_audience(&self.app_auth, &self.app_jwt)?;
        if let Some(leeway) = env.var_parsed::<HumanDuration>("AUTH_JWT_LEEWAY")? {
            check_leeway(leeway.0)
                .map_err(|problem| ConfigError::new("AUTH_JWT_LEEWAY", problem))?;
            self.app_jwt.leeway = leeway.0;
        }
        if let Some(claim) = env.var("AUTH_CLIENT_ID_CLAIM") {
            self.app_jwt.client_id_claim = claim;
        }
        if let Some(claim) = env.var("AUTH_ROLES_CLAIM") {
            self.app_jwt.roles_claim = claim;
        }
        Ok(())
    }

    /// What users may do: the policy file, its reloading, and the key's own
    /// capability.
    fn read_policy(&mut self, env: &Env<'_>) -> Result<(), ConfigError> {
        if let Some(path) = env.var("AUTH_POLICY_FILE") {
            let path = PathBuf::from(path);
            let text = std::fs::read_to_string(&path).map_err(|err| {
                ConfigError::new(
                    "AUTH_POLICY_FILE",
                    format!("cannot read {}: {err}", path.display()),
                )
            })?;
            self.policy = Policy::from_toml(&text).map_err(|err| {
                ConfigError::new("AUTH_POLICY_FILE", format!("{}: {err}", path.display()))
            })?;
            self.policy_file = Some(path);
        }
        if let Some(every) = env.var("AUTH_POLICY_RELOAD")
            && !every.trim().eq_ignore_ascii_case("off")
        {
            let every: HumanDuration = every.trim().parse().map_err(|err| {
                ConfigError::new("AUTH_POLICY_RELOAD", format!("invalid value: {err}"))
            })?;
            if every.0.is_zero() {
                return Err(ConfigError::new(
                    "AUTH_POLICY_RELOAD",
                    "must be more than 0 (or off)",
                ));
            }
            if self.policy_file.is_none() {
                return Err(ConfigError::new(
                    "AUTH_POLICY_RELOAD",
                    "needs AUTH_POLICY_FILE: there is no file to watch",
                ));
            }
            self.policy_reload = Some(every.0);
        }
        if let Some(text) = env.var("AUTH_KEY_CAPABILITY") {
            self.key_capability = Capability::parse(&text)
                .map_err(|err| ConfigError::new("AUTH_KEY_CAPABILITY", err.to_string()))?;
        }
        Ok(())
    }

    /// How long issued credentials live.
    fn read_token_lifetimes(&mut self, env: &Env<'_>) -> Result<(), ConfigError> {
        if let Some(ttl) = env.var_parsed::<HumanDuration>("AUTH_MAX_TOKEN_TTL")? {
            if ttl.0 > ABLY_MAX_TTL || ttl.0.is_zero() {
                return Err(ConfigError::new(
                    "AUTH_MAX_TOKEN_TTL",
                    "must be more than 0 and at most 24h (Ably's cap)",
                ));
            }
            self.max_token_ttl = ttl.0;
        }
        if let Some(ttl) = env.var_parsed::<HumanDuration>("AUTH_TOKEN_TTL")? {
            if ttl.0.is_zero() {
                return Err(ConfigError::new("AUTH_TOKEN_TTL", "must be more than 0"));
            }
            self.token_ttl = ttl.0;
        }
        if self.token_ttl > self.max_token_ttl {
            return Err(ConfigError::new(
                "AUTH_TOKEN_TTL",
                "must not exceed AUTH_MAX_TOKEN_TTL",
            ));
        }
        if let Some(within) = env.var_parsed::<bool>("AUTH_TTL_WITHIN_APP_TOKEN")? {
            self.ttl_within_app_token = within;
        }
        Ok(())
    }

    /// What browsers may do: CORS origins and the session cookie.
    fn read_browser_access(&mut self, env: &Env<'_>) -> Result<(), ConfigError> {
        if let Some(origins) = env.var("AUTH_CORS_ORIGINS") {
            self.cors_origins = parse_cors_origins(&origins)
                .map_err(|problem| ConfigError::new("AUTH_CORS_ORIGINS", problem))?;
        }
        if let Some(name) = env.var("AUTH_APP_JWT_COOKIE") {
            let name = name.trim();
            check_cookie_name(name)
                .map_err(|problem| ConfigError::new("AUTH_APP_JWT_COOKIE", problem))?;
            self.app_jwt_cookie = Some(name.to_owned());
        }
        Ok(())
    }

    /// Who may revoke tokens, and the claim revocation keys come from.
    fn read_revocation(&mut self, env: &Env<'_>) -> Result<(), ConfigError> {
        if let Some(role) = env.var("AUTH_ADMIN_ROLE") {
            self.admin_role = Some(role.trim().to_owned());
        }
        if let Some(claim) = env.var("AUTH_REVOCATION_KEY_CLAIM") {
            self.app_jwt.revocation_key_claim = Some(claim.trim().to_owned());
        }
        Ok(())
    }

    /// Rate limits, the trusted proxies they see through, and the limits on
    /// bodies, requests and connections.
    fn read_limits(&mut self, env: &Env<'_>) -> Result<(), ConfigError> {
        if let Some(limit) = env.var_parsed::<RateLimitSetting>("AUTH_RATE_LIMIT_PER_USER")? {
            self.rate_limit_per_user = limit.0;
        }
        if let Some(limit) = env.var_parsed::<RateLimitSetting>("AUTH_RATE_LIMIT_PER_IP")? {
            self.rate_limit_per_ip = limit.0;
        }
        if let Some(list) = env.var("AUTH_TRUSTED_PROXIES") {
            self.trusted_proxies = comma_list(&list)
                .iter()
                .map(|range| range.parse())
                .collect::<Result<_, String>>()
                .map_err(|problem| ConfigError::new("AUTH_TRUSTED_PROXIES", problem))?;
        }
        if let Some(bytes) = env.var_parsed("AUTH_MAX_BODY_BYTES")? {
            self.max_body_bytes = bytes;
        }
        if let Some(timeout) = env.var_parsed::<HumanDuration>("AUTH_REQUEST_TIMEOUT")? {
            if timeout.0.is_zero() {
                return Err(ConfigError::new(
                    "AUTH_REQUEST_TIMEOUT",
                    "must be more than 0",
                ));
            }
            self.request_timeout = timeout.0;
        }
        for (name, setting) in [
            ("AUTH_HEADER_READ_TIMEOUT", &mut self.header_read_timeout),
            ("AUTH_IDLE_TIMEOUT", &mut self.idle_timeout),
        ] {
            if let Some(timeout) = env.var_parsed::<HumanDuration>(name)? {
                if timeout.0.is_zero() {
                    return Err(ConfigError::new(name, "must be more than 0"));
                }
                *setting = timeout.0;
            }
        }
        if let Some(max) = env.var_parsed::<usize>("AUTH_MAX_CONNECTIONS")? {
            if max == 0 {
                return Err(ConfigError::new(
                    "AUTH_MAX_CONNECTIONS",
                    "must be at least 1",
                ));
            }
            self.max_connections = max;
        }
        Ok(())
    }
}

/// The variable lookup behind the helpers.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// The variable's value; absent or empty (`VAR=` in a `.env`) is `None`.
    fn var(&self, name: &'static str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    /// The variable's value, which must be set.
    fn required_var(&self, name: &'static str) -> Result<String, ConfigError> {
        self.var(name)
            .ok_or_else(|| ConfigError::new(name, "required but not set"))
    }

    /// The variable parsed as `T`, if set. The error never echoes the value,
    /// which may be a secret.
    fn var_parsed<T>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.var(name)
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .map_err(|err| ConfigError::new(name, format!("invalid value: {err}")))
            })
            .transpose()
    }

    fn required_var_parsed<T>(&self, name: &'static str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.required_var(name)?;
        Ok(self
            .var_parsed(name)?
            .expect("required_var checked presence"))
    }
}

/// The default algorithms for a verification mode.
fn default_algorithms(app_auth: &AppAuth) -> Vec<Algorithm> {
    match app_auth {
        AppAuth::Secret(_) => vec![Algorithm::HS256],
        AppAuth::Jwks(_) => vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
    }
}

/// Parses a comma-separated list of JOSE algorithm names (`RS256,ES256`).
pub(crate) fn parse_algorithms(list: &str) -> Result<Vec<Algorithm>, String> {
    let algorithms = comma_list(list)
        .iter()
        .map(|name| Algorithm::from_str(name).map_err(|_| format!("unknown algorithm {name:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    if algorithms.is_empty() {
        return Err("list at least one algorithm".to_owned());
    }
    Ok(algorithms)
}

/// Refuses algorithm families that do not fit the verification mode: a
/// shared secret only verifies HMAC tokens and a JWKS only public-key ones,
/// so an HS256 token can never be checked against a public key (the
/// classic algorithm-confusion attack).
pub(crate) fn check_algorithms(app_auth: &AppAuth, algorithms: &[Algorithm]) -> Result<(), String> {
    let hmac =
        |alg: &Algorithm| matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    match app_auth {
        AppAuth::Secret(_) => match algorithms.iter().find(|alg| !hmac(alg)) {
            Some(alg) => Err(format!(
                "{alg:?} needs a public key; with AUTH_APP_JWT_SECRET use HS256, HS384 or HS512"
            )),
            None => Ok(()),
        },
        AppAuth::Jwks(_) => match algorithms.iter().find(|alg| hmac(alg)) {
            Some(alg) => Err(format!(
                "{alg:?} is a shared-secret algorithm; with AUTH_JWKS_URL use RS*, PS*, ES* or EdDSA"
            )),
            None => Ok(()),
        },
    }
}

/// With a JWKS, refuses a configuration that does not pin both the issuer
/// and the audience. Key sets are often shared by many tenants (Firebase's
/// `securetoken`, multi-tenant Auth0, Cognito): without `iss` and `aud`
/// checks, a token minted in an attacker's own project under the same keys,
/// with any `sub`, would verify. A shared secret is the app's own, so there
/// both stay optional.
///
/// # Errors
///
/// [`ConfigError`] naming what is missing: one variable, or both.
pub(crate) fn check_issuer_and_audience(
    app_auth: &AppAuth,
    rules: &AppJwtRules,
) -> Result<(), ConfigError> {
    if !matches!(app_auth, AppAuth::Jwks(_)) {
        return Ok(());
    }
    let issuer = rules.issuer.as_deref().is_some_and(|iss| !iss.is_empty());
    let audience = rules.audience.iter().any(|aud| !aud.is_empty());
    let missing = match (issuer, audience) {
        (true, true) => return Ok(()),
        (false, true) => "AUTH_JWT_ISSUER",
        (true, false) => "AUTH_JWT_AUDIENCE",
        (false, false) => "AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE",
    };
    Err(ConfigError::new(
        missing,
        "required with AUTH_JWKS_URL (its keys may also sign other tenants' tokens, \
         which only iss and aud tell apart)",
    ))
}

/// Refuses a leeway with a fraction of a second: `exp` and `nbf` are whole
/// seconds and jsonwebtoken takes the leeway in seconds, so `500ms` would
/// silently be no leeway at all.
pub(crate) fn check_leeway(leeway: Duration) -> Result<(), String> {
    if leeway.subsec_nanos() == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} ms is not a whole number of seconds (exp and nbf are in seconds); write e.g. 1s or 30s",
            leeway.as_millis()
        ))
    }
}

fn comma_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A cookie name is an HTTP token (RFC 6265 §4.1.1, RFC 9110 §5.6.2):
/// letters, digits and ``!#$%&'*+-.^_`|~``.
pub(crate) fn check_cookie_name(name: &str) -> Result<(), String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !name.is_empty() && name.chars().all(tchar) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~ only)"
        ))
    }
}

fn parse_cors_origins(text: &str) -> Result<CorsOrigins, String> {
    let origins = comma_list(text);
    if origins.iter().any(|origin| origin == "*") {
        return if origins.len() == 1 {
            Ok(CorsOrigins::Any)
        } else {
            Err("* cannot be combined with other origins".to_owned())
        };
    }
    for origin in &origins {
        let url = Url::parse(origin).map_err(|err| format!("{origin:?}: {err}"))?;
        // An origin is scheme://host[:port] exactly; browsers send no path.
        if url.origin().ascii_serialization() != *origin {
            return Err(format!(
                "{origin:?} is not an origin; write it as scheme://host[:port] with no path or trailing slash"
            ));
        }
    }
    Ok(if origins.is_empty() {
        CorsOrigins::None
    } else {
        CorsOrigins::List(origins)
    })
}

/// A duration written `500ms`, `30s`, `15m`, `1h` or `1d`: the grammar of
/// [`shared::duration::parse`], which every crate here shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub(crate) Duration);

impl FromStr for HumanDuration {
    type Err = shared::duration::ParseDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        shared::duration::parse(text).map(HumanDuration)
    }
}

/// `N/s`, `N/m` or `off`.
struct RateLimitSetting(Option<RateLimit>);

impl FromStr for RateLimitSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("off") {
            Ok(Self(None))
        } else {
            text.parse().map(|limit| Self(Some(limit)))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        ("ABLY_API_KEY", "app.key:s3cr3t"),
        ("AUTH_APP_JWT_SECRET", "app-secret"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut vars = BASE.to_vec();
        vars.extend_from_slice(extra);
        from(&vars)
    }

    #[test]
    fn minimal_environment_gives_the_documented_defaults() {
        let config = with(&[]).unwrap();

        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.api_key.key_name(), "app.key");
        assert_eq!(
            config.ably_rest_url.as_str(),
            "https://main.realtime.ably.net/"
        );
        assert!(
            matches!(&config.app_auth, AppAuth::Secret(s) if s.expose_secret() == "app-secret")
        );
        assert_eq!(config.app_jwt.algorithms, [Algorithm::HS256]);
        assert_eq!(config.app_jwt.leeway, Duration::from_secs(30));
        assert_eq!(config.app_jwt.client_id_claim, "sub");
        assert_eq!(config.app_jwt.roles_claim, "roles");
        assert_eq!(config.key_capability.to_string(), r#"{"[*]*":["*"]}"#);
        assert_eq!(config.token_ttl, Duration::from_secs(3600));
        assert_eq!(config.max_token_ttl, Duration::from_secs(86_400));
        assert!(config.ttl_within_app_token);
        assert_eq!(config.cors_origins, CorsOrigins::None);
        assert_eq!(config.rate_limit_per_user.unwrap().count, 10);
        assert_eq!(config.rate_limit_per_ip.unwrap().count, 100);
        assert_eq!(config.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.max_connections, 10_000);
    }

    #[test]
    fn connection_limits_are_read_and_must_be_positive() {
        let config = with(&[
            ("AUTH_HEADER_READ_TIMEOUT", "5s"),
            ("AUTH_IDLE_TIMEOUT", "2m"),
            ("AUTH_MAX_CONNECTIONS", "500"),
        ])
        .unwrap();
        let zero_idle = with(&[("AUTH_IDLE_TIMEOUT", "0s")]).unwrap_err();
        let zero_header = with(&[("AUTH_HEADER_READ_TIMEOUT", "0ms")]).unwrap_err();
        let zero_cap = with(&[("AUTH_MAX_CONNECTIONS", "0")]).unwrap_err();
        let bad_cap = with(&[("AUTH_MAX_CONNECTIONS", "many")]).unwrap_err();

        assert_eq!(config.header_read_timeout, Duration::from_secs(5));
        assert_eq!(config.idle_timeout, Duration::from_secs(120));
        assert_eq!(config.max_connections, 500);
        assert_eq!(
            zero_idle.to_string(),
            "AUTH_IDLE_TIMEOUT: must be more than 0"
        );
        assert_eq!(zero_header.name, "AUTH_HEADER_READ_TIMEOUT");
        assert_eq!(
            zero_cap.to_string(),
            "AUTH_MAX_CONNECTIONS: must be at least 1"
        );
        assert_eq!(bad_cap.name, "AUTH_MAX_CONNECTIONS");
    }

    #[test]
    fn missing_key_names_the_variable() {
        let err = from(&[("AUTH_APP_JWT_SECRET", "x")]).unwrap_err();

        assert_eq!(err.to_string(), "ABLY_API_KEY: required but not set");
    }

    #[test]
    fn malformed_key_names_the_variable_and_hides_the_secret() {
        let err = from(&[
            ("ABLY_API_KEY", "app.key:bad secret"),
            ("AUTH_APP_JWT_SECRET", "x"),
        ])
        .unwrap_err();

        let message = err.to_string();
        assert!(
            message.starts_with("ABLY_API_KEY: invalid value:"),
            "{message}"
        );
        assert!(!message.contains("bad secret"), "{message}");
    }

    #[test]
    fn a_verification_mode_is_required_and_only_one() {
        let none = from(&[("ABLY_API_KEY", "app.key:s")]).unwrap_err();
        let both = with(&[("AUTH_JWKS_URL", "https://idp.example/jwks")]).unwrap_err();

        assert_eq!(none.name, "AUTH_APP_JWT_SECRET");
        assert_eq!(both.name, "AUTH_JWKS_URL");
    }

    #[test]
    fn jwks_mode_defaults_to_public_key_algorithms_and_refuses_hmac() {
        let jwks = [
            ("ABLY_API_KEY", "app.key:s"),
            ("AUTH_JWKS_URL", "https://idp.example/.well-known/jwks.json"),
            ("AUTH_JWT_ISSUER", "https://idp.example/"),
            ("AUTH_JWT_AUDIENCE", "ably-auth"),
        ];
        let config = from(&jwks).unwrap();
        let mut mixed = jwks.to_vec();
        mixed.push(("AUTH_JWT_ALGORITHMS", "RS256,HS256"));
        let hmac_with_secret = with(&[("AUTH_JWT_ALGORITHMS", "RS256")]).unwrap_err();

        assert_eq!(
            config.app_jwt.algorithms,
            [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        );
        assert_eq!(from(&mixed).unwrap_err().name, "AUTH_JWT_ALGORITHMS");
        assert_eq!(hmac_with_secret.name, "AUTH_JWT_ALGORITHMS");
    }

    #[test]
    fn another_tenants_token_cannot_pass_a_jwks_without_issuer_and_audience() {
        let jwks = |extra: &[(&'static str, &'static str)]| {
            let mut vars = vec![
                ("ABLY_API_KEY", "app.key:s"),
                ("AUTH_JWKS_URL", "https://idp.example/.well-known/jwks.json"),
            ];
            vars.extend_from_slice(extra);
            from(&vars)
        };
        let why = "required with AUTH_JWKS_URL (its keys may also sign other tenants' tokens, \
                   which only iss and aud tell apart)";

        let neither = jwks(&[]).unwrap_err();
        let no_audience = jwks(&[("AUTH_JWT_ISSUER", "https://idp.example/")]).unwrap_err();
        let no_issuer = jwks(&[("AUTH_JWT_AUDIENCE", "ably-auth")]).unwrap_err();
        let blank_audience = jwks(&[
            ("AUTH_JWT_ISSUER", "https://idp.example/"),
            ("AUTH_JWT_AUDIENCE", " , "),
        ])
        .unwrap_err();
        let both = jwks(&[
            ("AUTH_JWT_ISSUER", "https://idp.example/"),
            ("AUTH_JWT_AUDIENCE", "ably-auth"),
        ])
        .unwrap();

        assert_eq!(
            neither.to_string(),
            format!("AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE: {why}")
        );
        assert_eq!(no_audience.to_string(), format!("AUTH_JWT_AUDIENCE: {why}"));
        assert_eq!(no_issuer.to_string(), format!("AUTH_JWT_ISSUER: {why}"));
        assert_eq!(blank_audience.name, "AUTH_JWT_AUDIENCE");
        assert_eq!(both.app_jwt.audience, ["ably-auth"]);
        // A shared secret is the app's own: both stay optional.
        assert!(with(&[]).unwrap().app_jwt.issuer.is_none());
    }

    #[test]
    fn unknown_algorithm_is_named() {
        let err = with(&[("AUTH_JWT_ALGORITHMS", "HS256, none")]).unwrap_err();

        assert_eq!(
            err.to_string(),
            r#"AUTH_JWT_ALGORITHMS: unknown algorithm "none""#
        );
    }

    #[test]
    fn durations_take_units() {
        for (text, expected) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("15m", Duration::from_secs(900)),
            ("1h", Duration::from_secs(3600)),
            ("1d", Duration::from_secs(86_400)),
        ] {
            assert_eq!(text.parse::<HumanDuration>().unwrap().0, expected, "{text}");
        }
        for bad in ["30", "s", "1.5h", "10x", "-1s", ""] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn leeway_must_be_whole_seconds() {
        let half = with(&[("AUTH_JWT_LEEWAY", "500ms")]).unwrap_err();
        let fraction = with(&[("AUTH_JWT_LEEWAY", "1500ms")]).unwrap_err();
        let whole = with(&[("AUTH_JWT_LEEWAY", "2000ms")]).unwrap();
        let none = with(&[("AUTH_JWT_LEEWAY", "0s")]).unwrap();

        assert_eq!(
            half.to_string(),
            "AUTH_JWT_LEEWAY: 500 ms is not a whole number of seconds (exp and nbf are in seconds); write e.g. 1s or 30s"
        );
        assert_eq!(fraction.name, "AUTH_JWT_LEEWAY");
        assert_eq!(whole.app_jwt.leeway, Duration::from_secs(2));
        assert_eq!(none.app_jwt.leeway, Duration::ZERO);
    }

    #[test]
    fn ttl_settings_are_checked_against_ablys_cap() {
        let too_long = with(&[("AUTH_MAX_TOKEN_TTL", "25h")]).unwrap_err();
        let default_over_max =
            with(&[("AUTH_MAX_TOKEN_TTL", "1h"), ("AUTH_TOKEN_TTL", "2h")]).unwrap_err();
        let ok = with(&[("AUTH_MAX_TOKEN_TTL", "2h"), ("AUTH_TOKEN_TTL", "15m")]).unwrap();

        assert_eq!(too_long.name, "AUTH_MAX_TOKEN_TTL");
        assert_eq!(default_over_max.name, "AUTH_TOKEN_TTL");
        assert_eq!(ok.max_token_ttl, Duration::from_secs(7200));
        assert_eq!(ok.token_ttl, Duration::from_secs(900));
    }

    #[test]
    fn ttl_within_app_token_is_on_unless_set_to_false() {
        let off = with(&[("AUTH_TTL_WITHIN_APP_TOKEN", "false")]).unwrap();
        let on = with(&[("AUTH_TTL_WITHIN_APP_TOKEN", "true")]).unwrap();
        let typo = with(&[("AUTH_TTL_WITHIN_APP_TOKEN", "no")]).unwrap_err();

        assert!(!off.ttl_within_app_token);
        assert!(on.ttl_within_app_token);
        assert_eq!(typo.name, "AUTH_TTL_WITHIN_APP_TOKEN");
    }

    #[test]
    fn rate_limits_parse_per_second_per_minute_and_off() {
        let config = with(&[
            ("AUTH_RATE_LIMIT_PER_USER", "5/m"),
            ("AUTH_RATE_LIMIT_PER_IP", "off"),
        ])
        .unwrap();
        let bad = with(&[("AUTH_RATE_LIMIT_PER_USER", "5/h")]).unwrap_err();
        let zero = with(&[("AUTH_RATE_LIMIT_PER_IP", "0/s")]).unwrap_err();

        assert_eq!(
            config.rate_limit_per_user,
            Some(RateLimit {
                count: 5,
                period: Duration::from_secs(60)
            })
        );
        assert_eq!(config.rate_limit_per_ip, None);
        assert_eq!(bad.name, "AUTH_RATE_LIMIT_PER_USER");
        assert_eq!(zero.name, "AUTH_RATE_LIMIT_PER_IP");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        let config = with(&[("AUTH_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]).unwrap();
        let bad = with(&[("AUTH_TRUSTED_PROXIES", "10.0.0.0/40")]).unwrap_err();

        assert_eq!(config.trusted_proxies.len(), 2);
        assert_eq!(config.trusted_proxies[1].to_string(), "127.0.0.1/32");
        assert_eq!(bad.name, "AUTH_TRUSTED_PROXIES");
    }

    #[test]
    fn cors_origins_are_any_or_a_list_of_exact_origins() {
        let any = with(&[("AUTH_CORS_ORIGINS", "*")]).unwrap();
        let list = with(&[(
            "AUTH_CORS_ORIGINS",
            "https://app.example, http://localhost:3000",
        )])
        .unwrap();
        let with_path = with(&[("AUTH_CORS_ORIGINS", "https://app.example/")]).unwrap_err();

        assert_eq!(any.cors_origins, CorsOrigins::Any);
        assert_eq!(
            list.cors_origins,
            CorsOrigins::List(vec![
                "https://app.example".to_owned(),
                "http://localhost:3000".to_owned()
            ])
        );
        assert_eq!(with_path.name, "AUTH_CORS_ORIGINS");
    }

    #[test]
    fn the_app_jwt_cookie_is_a_cookie_name() {
        let set = with(&[("AUTH_APP_JWT_COOKIE", " session ")]).unwrap();
        let bad = with(&[("AUTH_APP_JWT_COOKIE", "my session")]).unwrap_err();
        let semicolon = with(&[("AUTH_APP_JWT_COOKIE", "a;b")]).unwrap_err();

        assert_eq!(set.app_jwt_cookie.as_deref(), Some("session"));
        assert_eq!(with(&[]).unwrap().app_jwt_cookie, None);
        assert_eq!(
            bad.to_string(),
            "AUTH_APP_JWT_COOKIE: \"my session\" is not a cookie name (letters, digits and !#$%&'*+-.^_`|~ only)"
        );
        assert_eq!(semicolon.name, "AUTH_APP_JWT_COOKIE");
    }

    #[test]
    fn the_admin_role_and_revocation_key_claim_are_read_and_off_by_default() {
        let set = with(&[
            ("AUTH_ADMIN_ROLE", " ops "),
            ("AUTH_REVOCATION_KEY_CLAIM", "sid"),
        ])
        .unwrap();
        let unset = with(&[]).unwrap();

        assert_eq!(set.admin_role.as_deref(), Some("ops"));
        assert_eq!(set.app_jwt.revocation_key_claim.as_deref(), Some("sid"));
        assert_eq!(unset.admin_role, None);
        assert_eq!(unset.app_jwt.revocation_key_claim, None);
    }

    #[test]
    fn key_capability_and_audience_are_read() {
        let config = with(&[
            ("AUTH_KEY_CAPABILITY", r#"{"chat:*":["subscribe"]}"#),
            ("AUTH_JWT_AUDIENCE", "api, web"),
            ("AUTH_JWT_ISSUER", "https://idp.example/"),
        ])
        .unwrap();
        let bad = with(&[("AUTH_KEY_CAPABILITY", r#"{"chat:*":["subscrib"]}"#)]).unwrap_err();

        assert_eq!(
            config.key_capability.to_string(),
            r#"{"chat:*":["subscribe"]}"#
        );
        assert_eq!(config.app_jwt.audience, ["api", "web"]);
        assert_eq!(
            config.app_jwt.issuer.as_deref(),
            Some("https://idp.example/")
        );
        assert_eq!(bad.name, "AUTH_KEY_CAPABILITY");
        assert!(bad.problem.contains("subscrib"), "{}", bad.problem);
    }

    #[test]
    fn a_key_capability_with_star_beside_other_operations_is_refused_clearly() {
        let bad = with(&[("AUTH_KEY_CAPABILITY", r#"{"chat:*":["*","publish"]}"#)]).unwrap_err();

        assert_eq!(bad.name, "AUTH_KEY_CAPABILITY");
        assert_eq!(
            bad.problem,
            r#"invalid capability: operations for resource "chat:*" list "*" beside other operations; "*" already means all of them"#
        );
    }

    #[test]
    fn policy_reload_needs_a_policy_file_and_a_positive_interval() {
        let path = std::env::temp_dir().join(format!(
            "auth-server-config-policy-{}.toml",
            std::process::id()
        ));
        std::fs::write(&path, "[default]\n\"chat:*\" = [\"subscribe\"]\n").unwrap();
        let file = path.to_str().unwrap().to_owned();
        let file: &'static str = Box::leak(file.into_boxed_str());

        let polled = with(&[("AUTH_POLICY_FILE", file), ("AUTH_POLICY_RELOAD", "30s")]).unwrap();
        let off = with(&[("AUTH_POLICY_FILE", file), ("AUTH_POLICY_RELOAD", "off")]).unwrap();
        let no_file = with(&[("AUTH_POLICY_RELOAD", "30s")]).unwrap_err();
        let zero = with(&[("AUTH_POLICY_FILE", file), ("AUTH_POLICY_RELOAD", "0s")]).unwrap_err();
        std::fs::remove_file(&path).unwrap();

        assert_eq!(polled.policy_file.as_deref(), Some(path.as_path()));
        assert_eq!(polled.policy_reload, Some(Duration::from_secs(30)));
        assert_eq!(off.policy_reload, None);
        assert_eq!(off.policy_file.as_deref(), Some(path.as_path()));
        assert_eq!(
            no_file.to_string(),
            "AUTH_POLICY_RELOAD: needs AUTH_POLICY_FILE: there is no file to watch"
        );
        assert_eq!(zero.name, "AUTH_POLICY_RELOAD");
        assert_eq!(with(&[]).unwrap().policy_reload, None);
    }

    #[test]
    fn unreadable_policy_file_names_the_variable() {
        let err = with(&[("AUTH_POLICY_FILE", "/nonexistent/policy.toml")]).unwrap_err();

        assert_eq!(err.name, "AUTH_POLICY_FILE");
        assert!(err.problem.contains("/nonexistent/policy.toml"));
    }

    #[test]
    fn debug_never_shows_the_secrets() {
        let config = with(&[]).unwrap();

        let debug = format!("{config:?}");

        assert!(
            !debug.contains("s3cr3t") && !debug.contains("app-secret"),
            "{debug}"
        );
    }

    #[test]
    fn debug_never_shows_credentials_in_the_rest_url() {
        let config = with(&[(
            "ABLY_REST_URL",
            "https://us3rname:pa55@rest.example:8443/base?token=t0ken#frag",
        )])
        .unwrap();

        let debug = format!("{config:?}");

        assert!(
            debug.contains(r#"ably_rest_url: "https://[REDACTED]@rest.example:8443/base?[REDACTED]#[REDACTED]""#),
            "{debug}"
        );
        assert!(
            !debug.contains("pa55") && !debug.contains("t0ken") && !debug.contains("us3rname"),
            "{debug}"
        );
    }
}
