//! [`AppState`]: the configuration and the long-lived parts built from it.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::app_jwt::AppJwtVerifier;
use crate::client_ip::IpKey;
use crate::config::{AppAuth, Config, ConfigError, RedactedUrl};
use crate::error::ApiError;
use crate::jwks::JwksCache;
use crate::live_policy::{LivePolicy, PolicyReloadError, Snapshot};
use crate::metrics::Metrics;
use crate::mint::JwtSigner;
use crate::rate_limit::{DEFAULT_MAX_KEYS, RateLimiter};
use crate::revocation::RecentRevocations;

/// Shared state of the server: cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    verifier: AppJwtVerifier,
    signer: JwtSigner,
    jwks: Option<Arc<JwksCache>>,
    http: reqwest::Client,
    user_limiter: Option<RateLimiter<String>>,
    ip_limiter: Option<RateLimiter<IpKey>>,
    metrics: Metrics,
    policy: LivePolicy,
    recent_revocations: RecentRevocations,
}

impl AppState {
    /// Builds the state for `config`. Nothing is fetched yet: with a JWKS,
    /// [`serve`](crate::serve) fetches it in the background, and `/readyz`
    /// says when it has arrived.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if a setting cannot be used (an empty app JWT secret,
    /// an algorithm that does not fit the verification mode, a leeway with a
    /// fraction of a second, a JWKS without both an issuer and an audience)
    /// or the HTTP client cannot be built.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        crate::config::check_algorithms(&config.app_auth, &config.app_jwt.algorithms)
            .map_err(|problem| ConfigError::new("AUTH_JWT_ALGORITHMS", problem))?;
        crate::config::check_leeway(config.app_jwt.leeway)
            .map_err(|problem| ConfigError::new("AUTH_JWT_LEEWAY", problem))?;
        crate::config::check_issuer_and_audience(&config.app_auth, &config.app_jwt)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("auth-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| {
                ConfigError::new(
                    "ABLY_REST_URL",
                    format!("cannot build an HTTP client: {err}"),
                )
            })?;
        if let (Some(cookie), crate::config::CorsOrigins::Any) =
            (&config.app_jwt_cookie, &config.cors_origins)
        {
            tracing::warn!(
                cookie = %cookie,
                "AUTH_APP_JWT_COOKIE with AUTH_CORS_ORIGINS=*: the cookie is read from \
                 same-origin requests only (no origin may send credentials to *); list the \
                 origins in AUTH_CORS_ORIGINS for cross-origin pages to send it"
            );
        }
        let (verifier, jwks) = match &config.app_auth {
            AppAuth::Secret(secret) => (
                AppJwtVerifier::with_secret(secret, config.app_jwt.clone())?,
                None,
            ),
            AppAuth::Jwks(url) => {
                if crate::jwks::is_plain_http_off_loopback(url) {
                    tracing::warn!(
                        url = %RedactedUrl(url),
                        "AUTH_JWKS_URL is plain http:// to a host that is not loopback: \
                         anyone on the path can swap the keys and sign app tokens for any \
                         user; use https://"
                    );
                }
                let client = crate::jwks::client_builder()
                    .user_agent(concat!("auth-server/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|err| {
                        ConfigError::new(
                            "AUTH_JWKS_URL",
                            format!("cannot build an HTTP client: {err}"),
                        )
                    })?;
                let cache = Arc::new(JwksCache::new(
                    url.clone(),
                    client,
                    config.jwks_unknown_kid_cooldown,
                ));
                (
                    AppJwtVerifier::with_jwks(Arc::clone(&cache), config.app_jwt.clone()),
                    Some(cache),
                )
            }
        };
        Ok(Self(Arc::new(Inner {
            user_limiter: config
                .rate_limit_per_user
                .map(|limit| RateLimiter::new(limit, DEFAULT_MAX_KEYS)),
            ip_limiter: config
                .rate_limit_per_ip
                .map(|limit| RateLimiter::new(limit, DEFAULT_MAX_KEYS)),
            signer: JwtSigner::new(&config.api_key),
            policy: LivePolicy::new(config.policy.clone(), config.policy_file.clone()),
            config,
            verifier,
            jwks,
            http,
            metrics: Metrics::default(),
            recent_revocations: RecentRevocations::default(),
        })))
    }

    /// The configuration the state was built from.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// Reads `AUTH_POLICY_FILE` again and puts it in force: every credential
    /// issued once this returns follows it, and the grants remembered for
    /// app tokens seen before are dropped. What `SIGHUP` and
    /// `AUTH_POLICY_RELOAD` call. Counted in `/metrics` as
    /// `auth_policy_reloads_total{result="ok"}` or `{result="error"}`, and
    /// logged (an error at `error` with the file's line and column). The
    /// server stays ready throughout.
    ///
    /// # Errors
    ///
    /// [`PolicyReloadError`] if there is no policy file, or it cannot be
    /// read or parsed: the policy in force stays.
    pub fn reload_policy(&self) -> Result<(), PolicyReloadError> {
        let result = self.0.policy.reload();
        match &result {
            Ok(generation) => {
                // After the swap: a grant remembered from here on is worked
                // out under the new policy.
                self.0.verifier.forget_remembered();
                self.0.metrics.policy_reloaded(true);
                tracing::info!(
                    file = %self.0.policy.file().map(|p| p.display().to_string()).unwrap_or_default(),
                    generation,
                    "policy reloaded; remembered grants dropped"
                );
            }
            Err(PolicyReloadError::NoPolicyFile) => {
                tracing::warn!("policy reload asked for, but AUTH_POLICY_FILE is not set");
            }
            Err(PolicyReloadError::Parse { path, source }) => {
                self.0.metrics.policy_reloaded(false);
                tracing::error!(
                    file = %path.display(),
                    line = source.line,
                    column = source.column,
                    error = %source.message,
                    "policy reload failed: the file does not parse; the old policy stays"
                );
            }
            Err(err @ PolicyReloadError::Read { path, .. }) => {
                self.0.metrics.policy_reloaded(false);
                tracing::error!(
                    file = %path.display(),
                    error = %err,
                    "policy reload failed; the old policy stays"
                );
            }
        }
        result.map(|_| ())
    }

    /// The policy generation in force (one atomic load).
    pub(crate) fn policy_generation(&self) -> u64 {
        self.0.policy.generation()
    }

    /// The policy in force, with its generation.
    pub(crate) fn policy(&self) -> Arc<Snapshot> {
        self.0.policy.snapshot()
    }

    /// Whether `AUTH_POLICY_FILE` holds something other than what was last
    /// read (the `AUTH_POLICY_RELOAD` poller's question).
    pub(crate) fn policy_changed_on_disk(&self) -> bool {
        self.0.policy.changed_on_disk()
    }

    /// Whether the server can issue credentials (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.0.jwks.as_ref().is_none_or(|jwks| jwks.is_loaded())
    }

    /// Completes once the server can issue credentials: at once with an app
    /// JWT secret; with a JWKS, when the first fetch has succeeded, which
    /// needs [`serve`](crate::serve) running. The binary prints its ready
    /// line then.
    pub async fn ready(&self) {
        if let Some(jwks) = &self.0.jwks {
            jwks.wait_loaded().await;
        }
    }

    pub(crate) fn verifier(&self) -> &AppJwtVerifier {
        &self.0.verifier
    }

    /// Signs Ably JWTs with `ABLY_API_KEY`.
    pub(crate) fn signer(&self) -> &JwtSigner {
        &self.0.signer
    }

    pub(crate) fn jwks(&self) -> Option<&Arc<JwksCache>> {
        self.0.jwks.as_ref()
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.0.http
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The revocations this instance made in the last second or so.
    pub(crate) fn recent_revocations(&self) -> &RecentRevocations {
        &self.0.recent_revocations
    }

    /// Applies the per-user limit to `client_id`.
    pub(crate) fn check_user_rate(&self, client_id: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.0.user_limiter else {
            return Ok(());
        };
        limiter
            .check(client_id, Instant::now())
            .map_err(|retry_after| ApiError::RateLimited {
                scope: "per user",
                retry_after,
            })
    }

    /// Whether a per-IP limit is set.
    pub(crate) fn limits_ips(&self) -> bool {
        self.0.ip_limiter.is_some()
    }

    /// Applies the per-IP limit to `ip`: per IPv4 address, per IPv6 /64
    /// ([`IpKey`]).
    pub(crate) fn check_ip_rate(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = &self.0.ip_limiter else {
            return Ok(());
        };
        limiter
            .check(&IpKey::of(ip), Instant::now())
            .map_err(|retry_after| ApiError::RateLimited {
                scope: "per IP",
                retry_after,
            })
    }
}

/// Shows the configuration (secrets redacted) and readiness.
impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.0.config)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}
