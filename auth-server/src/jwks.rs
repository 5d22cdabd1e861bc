//! The identity provider's JSON Web Key Set (`AUTH_JWKS_URL`), fetched and
//! cached.
//!
//! Keys are fetched at start-up, every `jwks_refresh_interval` (10 minutes)
//! after that, and when a token names a `kid` the cache does not know (the
//! IdP rotated its keys). Unknown-`kid` refetches are rate-limited to one per
//! `jwks_unknown_kid_cooldown` (10 s), so a flood of tokens with made-up
//! `kid`s cannot hammer the IdP; the start-up and periodic fetches do not
//! count towards that limit. A failed start-up or periodic fetch is retried
//! after `jwks_retry_backoff` (1 s), doubling up to [`MAX_RETRY_BACKOFF`].
//!
//! Until the first fetch succeeds the server is not ready: `/readyz` and the
//! token endpoints answer 503, and [`JwksCache::wait_loaded`] (behind
//! `AppState::ready`, which the binary waits on before its ready line) has
//! not completed.
//!
//! Only public keys meant for signing are kept: `oct` (shared-secret) keys
//! and keys marked `"use": "enc"` are ignored, so a JWKS can never hand us an
//! HMAC secret.
//!
//! Redirects are not followed (the client is built with none, see
//! [`client_builder`]): a 3xx answer is a failed fetch, logged as such, so
//! whoever can make the IdP's host answer a redirect cannot point us at a
//! key set of their own. The URL is only ever logged through
//! [`RedactedUrl`], without its credentials or query, and reqwest's errors
//! are stripped of it.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::StatusCode;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use url::Url;

use crate::config::RedactedUrl;
use crate::error::ApiError;

/// The largest JWKS document we read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest wait between two retries of a failed fetch.
pub(crate) const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(60);

/// A verification key from the JWKS.
#[derive(Debug)]
pub(crate) struct JwkKey {
    /// The key.
    pub(crate) key: DecodingKey,
    /// The JWK's `alg`, when it names one: tokens must then use exactly it.
    pub(crate) alg: Option<Algorithm>,
}

/// Where the unknown-`kid` cooldown reads the time: tokio's clock, or in
/// unit tests one they move by hand, so the cooldown is tested without
/// waiting for it.
struct Clock(Box<dyn Fn() -> Instant + Send + Sync>);

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// The HTTP client settings for JWKS fetches: never follow a redirect.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// Whether `url` is `http://` to a host other than loopback, where anyone on
/// the path could swap the keys (and so sign tokens as any user).
pub(crate) fn is_plain_http_off_loopback(url: &Url) -> bool {
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        Some(url::Host::Domain(name)) => !name.eq_ignore_ascii_case("localhost"),
        None => true,
    }
}

/// The cached key set and how it is kept fresh.
pub(crate) struct JwksCache {
    url: Url,
    client: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, Arc<JwkKey>>>>,
    /// Serialises fetches; holds when the last unknown-`kid` fetch started.
    last_unknown_kid_fetch: Mutex<Option<Instant>>,
    cooldown: Duration,
    /// The clock the cooldown is measured with.
    clock: Clock,
    loaded: AtomicBool,
    /// Turns `true` with the first successful fetch, for [`JwksCache::wait_loaded`].
    loaded_tx: watch::Sender<bool>,
    fetched: AtomicU64,
    failed: AtomicU64,
}

/// The URL without its credentials or query, and whether keys are loaded.
impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &format_args!("{}", RedactedUrl(&self.url)))
            .field("loaded", &self.is_loaded())
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// An empty cache for the JWKS at `url`; call [`JwksCache::refresh`] to
    /// fill it. `client` should come from [`client_builder`] (no redirects).
    pub(crate) fn new(url: Url, client: reqwest::Client, cooldown: Duration) -> Self {
        Self {
            url,
            client,
            keys: RwLock::new(Arc::new(HashMap::new())),
            last_unknown_kid_fetch: Mutex::new(None),
            cooldown,
            clock: Clock(Box::new(Instant::now)),
            loaded: AtomicBool::new(false),
            loaded_tx: watch::Sender::new(false),
            fetched: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Whether a fetch has ever succeeded (for `/readyz`).
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Completes once a fetch has succeeded.
    pub(crate) async fn wait_loaded(&self) {
        let mut loaded = self.loaded_tx.subscribe();
        // `self` holds the sender, so the channel cannot close while we wait.
        let _ = loaded.wait_for(|loaded| *loaded).await;
    }

    /// Fetches the set now and then every `interval`, forever; after a
    /// failure, retries after `backoff`, doubling up to [`MAX_RETRY_BACKOFF`]
    /// (and at most `interval`). Run it as a task; abort it to stop.
    pub(crate) async fn keep_fresh(&self, interval: Duration, backoff: Duration) {
        let max_backoff = MAX_RETRY_BACKOFF.min(interval);
        let mut next_backoff = backoff.min(max_backoff);
        loop {
            let wait = match self.refresh().await {
                Ok(()) => {
                    next_backoff = backoff.min(max_backoff);
                    interval
                }
                Err(err) => {
                    let wait = next_backoff;
                    next_backoff = (next_backoff * 2).min(max_backoff);
                    if self.is_loaded() {
                        tracing::warn!(
                            error = format!("{err:#}"),
                            url = %RedactedUrl(&self.url),
                            retry_in = ?wait,
                            "JWKS refresh failed; keeping the cached keys"
                        );
                    } else {
                        tracing::warn!(
                            error = format!("{err:#}"),
                            url = %RedactedUrl(&self.url),
                            retry_in = ?wait,
                            "JWKS fetch failed; not ready until it succeeds \
                             (/readyz and the token endpoints answer 503)"
                        );
                    }
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The key `kid`, refetching the set once if it is unknown and the
    /// cooldown allows.
    ///
    /// # Errors
    ///
    /// [`ApiError::InvalidCredentials`] if the key is not in the set even
    /// after that; [`ApiError::Unavailable`] if the set has never been
    /// fetched and cannot be now.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<JwkKey>, ApiError> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        {
            let mut last = self.last_unknown_kid_fetch.lock().await;
            // Another request may have refetched while this one waited.
            if let Some(key) = self.cached(kid) {
                return Ok(key);
            }
            let now = (self.clock.0)();
            let cooling = last.is_some_and(|at| now.saturating_duration_since(at) < self.cooldown);
            if !cooling {
                *last = Some(now);
                tracing::info!(kid, "unknown kid: refetching the JWKS");
                if let Err(err) = self.fetch().await {
                    tracing::warn!(error = format!("{err:#}"), url = %RedactedUrl(&self.url), "JWKS fetch failed");
                }
            }
        }
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        if !self.is_loaded() {
            return Err(ApiError::Unavailable {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: shared::codes::INTERNAL_ERROR,
                message: "the identity provider's keys (JWKS) are not available yet".to_owned(),
            });
        }
        Err(ApiError::InvalidCredentials(
            "signing key (kid) is not in the identity provider's JWKS".to_owned(),
        ))
    }

    /// Fetches the set now, outside the unknown-`kid` rate limit (start-up
    /// and periodic refresh).
    ///
    /// # Errors
    ///
    /// The fetch or parse failure; the cached keys are kept.
    pub(crate) async fn refresh(&self) -> anyhow::Result<()> {
        let _serialised = self.last_unknown_kid_fetch.lock().await;
        self.fetch().await
    }

    /// Whether `kid` still names exactly `key` (not a refetched or rotated one).
    pub(crate) fn is_current(&self, kid: &str, key: &Arc<JwkKey>) -> bool {
        self.cached(kid)
            .is_some_and(|current| Arc::ptr_eq(&current, key))
    }

    fn cached(&self, kid: &str) -> Option<Arc<JwkKey>> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.get(kid).cloned()
    }

    /// Prometheus lines: fetches by result and the number of cached keys.
    pub(crate) fn render_metrics(&self) -> String {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).len();
        format!(
            "# HELP auth_jwks_fetches_total JWKS fetches, by result.\n\
             # TYPE auth_jwks_fetches_total counter\n\
             auth_jwks_fetches_total{{result=\"ok\"}} {}\n\
             auth_jwks_fetches_total{{result=\"error\"}} {}\n\
             # HELP auth_jwks_keys Signing keys in the cached JWKS.\n\
             # TYPE auth_jwks_keys gauge\n\
             auth_jwks_keys {keys}\n",
            self.fetched.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Fetches and installs the key set, counting the outcome. Callers hold
    /// `last_unknown_kid_fetch`.
    async fn fetch(&self) -> anyhow::Result<()> {
        let result = self.fetch_once().await;
        let counter = if result.is_ok() {
            &self.fetched
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn fetch_once(&self) -> anyhow::Result<()> {
        let mut response = self
            .client
            .get(self.url.clone())
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            // reqwest's message names the URL, credentials and all.
            .map_err(reqwest::Error::without_url)
            .context("cannot reach the JWKS URL")?;
        let status = response.status();
        if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|location| location.to_str().ok())
                .and_then(|location| self.url.join(location).ok());
            match to {
                Some(to) => bail!(
                    "the JWKS URL answered {status}, a redirect to {}; redirects are not \
                     followed: set AUTH_JWKS_URL to the key set's own URL",
                    RedactedUrl(&to)
                ),
                None => bail!(
                    "the JWKS URL answered {status}, a redirect; redirects are not followed: \
                     set AUTH_JWKS_URL to the key set's own URL"
                ),
            }
        }
        if !status.is_success() {
            bail!("the JWKS URL answered {status}");
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(reqwest::Error::without_url)
            .context("reading the JWKS")?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                bail!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).context("the JWKS is not valid JSON")?;
        let keys = usable_keys(&set);
        if keys.is_empty() {
            bail!("the JWKS has no usable signing key with a kid");
        }
        tracing::info!(keys = keys.len(), url = %RedactedUrl(&self.url), "JWKS loaded");
        *self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keys);
        self.loaded.store(true, Ordering::Release);
        self.loaded_tx
            .send_if_modified(|loaded| !std::mem::replace(loaded, true));
        Ok(())
    }
}

/// The signing keys of `set` that we can use, by `kid`.
fn usable_keys(set: &JwkSet) -> HashMap<String, Arc<JwkKey>> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            tracing::debug!("skipping a JWK without kid");
            continue;
        };
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            tracing::warn!(
                kid,
                "skipping a shared-secret (oct) JWK: never trusted from a URL"
            );
            continue;
        }
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(alg) => match Algorithm::from_str(&alg.to_string()) {
                Ok(alg) => Some(alg),
                Err(_) => {
                    tracing::debug!(kid, %alg, "skipping a JWK with an unsupported alg");
                    continue;
                }
            },
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid.clone(), Arc::new(JwkKey { key, alg }));
            }
            Err(err) => tracing::warn!(kid, error = %err, "skipping an unreadable JWK"),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use axum::Router;
    use axum::extract::State;
    use axum::routing::get;
    use jsonwebtoken::EncodingKey;
    use jsonwebtoken::jwk::Jwk;

    use super::*;

    /// A JWKS endpoint on port 0 serving what the test puts in `keys`.
    #[derive(Clone, Default)]
    struct Idp {
        keys: Arc<std::sync::Mutex<Vec<Jwk>>>,
        fetches: Arc<AtomicUsize>,
    }

    impl Idp {
        fn publish(&self, kids: &[&str]) {
            let pem = include_str!("../tests/fixtures/rsa-1.pem");
            let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
            *self.keys.lock().unwrap() = kids
                .iter()
                .map(|kid| {
                    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
                    jwk.common.key_id = Some((*kid).to_owned());
                    jwk
                })
                .collect();
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }

        async fn start(&self) -> Url {
            let app = Router::new()
                .route(
                    "/jwks",
                    get(|State(idp): State<Idp>| async move {
                        idp.fetches.fetch_add(1, Ordering::SeqCst);
                        let keys = idp.keys.lock().unwrap().clone();
                        axum::Json(JwkSet { keys })
                    }),
                )
                .with_state(self.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwks", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            Url::parse(&url).unwrap()
        }
    }

    /// Asks `cache` for `kid`, failing the test if it takes over 10 s.
    async fn key(cache: &JwksCache, kid: &str) -> Result<Arc<JwkKey>, ApiError> {
        tokio::time::timeout(Duration::from_secs(10), cache.key(kid))
            .await
            .expect("timed out")
    }

    #[tokio::test]
    async fn an_unknown_kid_may_refetch_again_once_the_cooldown_has_passed() {
        let idp = Idp::default();
        idp.publish(&["k1"]);
        let url = idp.start().await;
        let start = Instant::now();
        let now = Arc::new(std::sync::Mutex::new(start));
        let client = client_builder().build().unwrap();
        let mut cache = JwksCache::new(url, client, Duration::from_secs(10));
        let clock = Arc::clone(&now);
        cache.clock = Clock(Box::new(move || *clock.lock().unwrap()));
        let set_time = |offset: Duration| *now.lock().unwrap() = start + offset;
        cache.refresh().await.unwrap();

        // The start-up fetch does not count: the first unknown kid refetches.
        assert!(key(&cache, "k2").await.is_err());
        assert_eq!(idp.fetches(), 2);
        // Then nothing reaches the IdP until the cooldown has passed.
        idp.publish(&["k1", "k2"]);
        set_time(Duration::from_millis(9_999));
        assert!(matches!(
            key(&cache, "k2").await,
            Err(ApiError::InvalidCredentials(_))
        ));
        assert_eq!(idp.fetches(), 2);
        set_time(Duration::from_secs(10));
        assert!(key(&cache, "k2").await.is_ok(), "the rotated key is found");
        assert_eq!(idp.fetches(), 3);
        // A known kid needs no fetch; the next unknown one waits again.
        assert!(key(&cache, "k2").await.is_ok());
        assert!(key(&cache, "k3").await.is_err());
        assert_eq!(idp.fetches(), 3);
        set_time(Duration::from_secs(20));
        assert!(key(&cache, "k3").await.is_err());
        assert_eq!(idp.fetches(), 4);
    }
}
