//! App JWTs verified against a JWKS served on port 0 from keys in
//! `tests/fixtures`: the three algorithms, rotation, the unknown-`kid`
//! refetch limit, algorithm confusion, and readiness (the ready line waits
//! for the first fetch, which is retried with backoff).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth_server::{AppAuth, AppJwtRules, AppState, Config};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};
use url::Url;

use crate::binary::command;
use crate::helpers::*;
use crate::logs::Capture;

const RSA_1: &str = include_str!("../fixtures/rsa-1.pem");
const RSA_1_PUBLIC: &str = include_str!("../fixtures/rsa-1.pub.pem");
const RSA_2: &str = include_str!("../fixtures/rsa-2.pem");
const EC: &str = include_str!("../fixtures/ec-p256.pem");
const ED: &str = include_str!("../fixtures/ed25519.pem");

fn rsa(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

/// The public JWK of `key`, with `kid` and `alg` set.
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

/// A JWKS endpoint whose keys (or failure) and timing the test controls.
#[derive(Clone)]
struct Idp {
    keys: Arc<Mutex<Option<JwkSet>>>,
    /// How many requests have arrived.
    fetches: Arc<watch::Sender<usize>>,
    /// While `false`, answers wait (an IdP that answers late).
    released: Arc<watch::Sender<bool>>,
}

impl Default for Idp {
    fn default() -> Self {
        Self {
            keys: Arc::default(),
            fetches: Arc::new(watch::Sender::new(0)),
            released: Arc::new(watch::Sender::new(true)),
        }
    }
}

impl Idp {
    fn publish(&self, keys: Vec<Jwk>) {
        *self.keys.lock().unwrap() = Some(JwkSet { keys });
    }

    fn fetches(&self) -> usize {
        *self.fetches.borrow()
    }

    /// Waits until at least `count` requests have arrived.
    async fn wait_for_fetches(&self, count: usize) {
        let mut fetches = self.fetches.subscribe();
        within(fetches.wait_for(|n| *n >= count)).await.unwrap();
    }

    /// Holds every answer until [`Idp::release`].
    fn hold(&self) {
        self.released.send_replace(false);
    }

    fn release(&self) {
        self.released.send_replace(true);
    }
}

async fn serve_jwks(State(idp): State<Idp>) -> Response {
    idp.fetches.send_modify(|n| *n += 1);
    let mut released = idp.released.subscribe();
    let _ = released.wait_for(|released| *released).await;
    match &*idp.keys.lock().unwrap() {
        Some(set) => axum::Json(set.clone()).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn start_idp(idp: &Idp) -> Url {
    let app = Router::new()
        .route("/.well-known/jwks.json", get(serve_jwks))
        .with_state(idp.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Url::parse(&url).unwrap()
}

/// The issuer and audience every JWKS configuration must pin.
const ISSUER: &str = "https://idp.example/";
const AUDIENCE: &str = "ably-auth";

fn jwks_config(url: Url) -> Config {
    let app_auth = AppAuth::Jwks(url);
    Config {
        app_jwt: AppJwtRules {
            issuer: Some(ISSUER.to_owned()),
            audience: vec![AUDIENCE.to_owned()],
            ..AppJwtRules::defaults_for(&app_auth)
        },
        app_auth,
        ..config()
    }
}

async fn ready_app(config: Config) -> TestApp {
    let app = spawn_app(config).await;
    eventually_async("/readyz to answer 200", || async {
        app.get("/readyz", None).await.status() == 200
    })
    .await;
    app
}

/// An app JWT from the configured issuer for the configured audience.
fn token(alg: Algorithm, kid: &str, key: &EncodingKey, sub: &str) -> String {
    let claims = user_claims(sub, &json!({"iss": ISSUER, "aud": AUDIENCE}));
    sign(alg, Some(kid), key, &claims)
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_against_the_jwks() {
    let idp = Idp::default();
    let (rsa_key, ec_key, ed_key) = (
        rsa(RSA_1),
        EncodingKey::from_ec_pem(EC.as_bytes()).unwrap(),
        EncodingKey::from_ed_pem(ED.as_bytes()).unwrap(),
    );
    idp.publish(vec![
        jwk(&rsa_key, Algorithm::RS256, "rsa"),
        jwk(&ec_key, Algorithm::ES256, "ec"),
        jwk(&ed_key, Algorithm::EdDSA, "ed"),
    ]);
    let app = ready_app(jwks_config(start_idp(&idp).await)).await;

    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa", &rsa_key),
        (Algorithm::ES256, "ec", &ec_key),
        (Algorithm::EdDSA, "ed", &ed_key),
    ] {
        let response = app
            .get("/api/ably-jwt", Some(&token(alg, kid, key, "alice")))
            .await;

        assert_eq!(response.status(), 200, "{alg:?}");
    }
    assert_eq!(idp.fetches(), 1, "known kids need no refetch");
    let metrics = within(app.get("/metrics", None).await.text())
        .await
        .unwrap();
    assert!(
        metrics.contains("auth_jwks_fetches_total{result=\"ok\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("auth_jwks_fetches_total{result=\"error\"} 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("auth_jwks_keys 3\n"), "{metrics}");
}

#[tokio::test]
async fn algorithms_outside_the_configured_list_are_refused_even_with_a_valid_key() {
    let idp = Idp::default();
    let ec_key = EncodingKey::from_ec_pem(EC.as_bytes()).unwrap();
    idp.publish(vec![jwk(&ec_key, Algorithm::ES256, "ec")]);
    let mut config = jwks_config(start_idp(&idp).await);
    config.app_jwt.algorithms = vec![Algorithm::RS256];
    let app = ready_app(config).await;

    let response = app
        .get(
            "/api/ably-jwt",
            Some(&token(Algorithm::ES256, "ec", &ec_key, "alice")),
        )
        .await;

    assert_ably_error(response, 401, 40101, "algorithm ES256 is not accepted").await;
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_rsa_public_key_is_refused() {
    let idp = Idp::default();
    idp.publish(vec![jwk(&rsa(RSA_1), Algorithm::RS256, "k1")]);
    let app = ready_app(jwks_config(start_idp(&idp).await)).await;
    // The classic confusion attack: the public key (which anyone can get)
    // used as an HMAC secret.
    let forged = token(
        Algorithm::HS256,
        "k1",
        &EncodingKey::from_secret(RSA_1_PUBLIC.as_bytes()).unwrap(),
        "mallory",
    );

    let response = app.get("/api/ably-jwt", Some(&forged)).await;

    assert_ably_error(response, 401, 40101, "algorithm HS256 is not accepted").await;
}

#[test]
fn hmac_algorithms_cannot_be_configured_with_a_jwks() {
    let mut config = jwks_config(Url::parse("http://127.0.0.1:9/jwks").unwrap());
    config.app_jwt.algorithms = vec![Algorithm::RS256, Algorithm::HS256];

    let err = AppState::new(config).unwrap_err();

    assert_eq!(err.name, "AUTH_JWT_ALGORITHMS");
}

/// Firebase, multi-tenant Auth0 or Cognito sign every tenant's tokens with
/// the same keys: only `iss` and `aud` say whose app a token is for.
#[tokio::test]
async fn a_token_minted_in_another_tenant_of_a_shared_jwks_cannot_get_credentials() {
    let idp = Idp::default();
    let key = rsa(RSA_1);
    idp.publish(vec![jwk(&key, Algorithm::RS256, "k1")]);
    let url = start_idp(&idp).await;
    let mut unpinned = jwks_config(url.clone());
    unpinned.app_jwt.issuer = None;
    unpinned.app_jwt.audience = Vec::new();
    let app = ready_app(jwks_config(url)).await;
    let attackers = sign(
        Algorithm::RS256,
        Some("k1"),
        &key,
        &user_claims(
            "alice",
            &json!({"iss": "https://idp.example/attacker-project", "aud": "attacker-project"}),
        ),
    );

    let refused = AppState::new(unpinned).unwrap_err();
    let response = app.get("/api/ably-jwt", Some(&attackers)).await;

    assert_eq!(refused.name, "AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE");
    assert_ably_error(response, 401, 40101, "issuer").await;
}

#[tokio::test]
async fn a_shared_jwks_stops_the_binary_unless_issuer_and_audience_are_pinned() {
    let why = "required with AUTH_JWKS_URL (its keys may also sign other tenants' tokens, \
               which only iss and aud tell apart)";
    for (extra, missing) in [
        (vec![], "AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE"),
        (vec![("AUTH_JWT_ISSUER", ISSUER)], "AUTH_JWT_AUDIENCE"),
        (vec![("AUTH_JWT_AUDIENCE", AUDIENCE)], "AUTH_JWT_ISSUER"),
    ] {
        let mut command = command();
        command
            .env("ABLY_API_KEY", ABLY_KEY)
            .env("AUTH_JWKS_URL", "http://127.0.0.1:9/jwks")
            .env("AUTH_BIND", "127.0.0.1:0");
        for (name, value) in extra {
            command.env(name, value);
        }

        let output = within(command.output()).await.unwrap();

        assert_eq!(output.status.code(), Some(1), "{missing}");
        assert_eq!(
            String::from_utf8(output.stderr).unwrap(),
            format!("auth-server: configuration: {missing}: {why}\n")
        );
        assert!(output.stdout.is_empty());
    }
}

#[tokio::test]
async fn a_key_signed_with_one_key_but_naming_another_kid_is_refused() {
    let idp = Idp::default();
    idp.publish(vec![jwk(&rsa(RSA_1), Algorithm::RS256, "k1")]);
    let app = ready_app(jwks_config(start_idp(&idp).await)).await;

    let response = app
        .get(
            "/api/ably-jwt",
            Some(&token(Algorithm::RS256, "k1", &rsa(RSA_2), "mallory")),
        )
        .await;

    assert_ably_error(response, 401, 40101, "signature does not verify").await;
}

#[tokio::test]
async fn rotation_is_picked_up_on_an_unknown_kid_and_refetches_are_rate_limited() {
    let idp = Idp::default();
    let (key_1, key_2) = (rsa(RSA_1), rsa(RSA_2));
    idp.publish(vec![jwk(&key_1, Algorithm::RS256, "k1")]);
    let app = ready_app(jwks_config(start_idp(&idp).await)).await;
    assert_eq!(idp.fetches(), 1);

    // The IdP rotates: k2 appears. The first k2 token triggers a refetch.
    idp.publish(vec![
        jwk(&key_1, Algorithm::RS256, "k1"),
        jwk(&key_2, Algorithm::RS256, "k2"),
    ]);
    let rotated = app
        .get(
            "/api/ably-jwt",
            Some(&token(Algorithm::RS256, "k2", &key_2, "alice")),
        )
        .await;
    assert_eq!(rotated.status(), 200);
    assert_eq!(idp.fetches(), 2);

    // Made-up kids within the cooldown do not reach the IdP again.
    for kid in ["k3", "k4", "k5"] {
        let response = app
            .get(
                "/api/ably-jwt",
                Some(&token(Algorithm::RS256, kid, &key_2, "mallory")),
            )
            .await;
        assert_ably_error(response, 401, 40101, "not in the identity provider's JWKS").await;
    }
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test]
async fn the_periodic_refresh_drops_keys_the_idp_retired() {
    let idp = Idp::default();
    let (key_1, key_2) = (rsa(RSA_1), rsa(RSA_2));
    idp.publish(vec![jwk(&key_1, Algorithm::RS256, "k1")]);
    let app = ready_app(Config {
        jwks_refresh_interval: Duration::from_millis(50),
        ..jwks_config(start_idp(&idp).await)
    })
    .await;
    let old = token(Algorithm::RS256, "k1", &key_1, "alice");
    assert_eq!(app.get("/api/ably-jwt", Some(&old)).await.status(), 200);

    idp.publish(vec![jwk(&key_2, Algorithm::RS256, "k2")]);
    let seen = idp.fetches();
    eventually_async("two more JWKS fetches", || async {
        idp.fetches() >= seen + 2
    })
    .await;

    let response = app.get("/api/ably-jwt", Some(&old)).await;
    assert_ably_error(response, 401, 40101, "not in the identity provider's JWKS").await;
    let new = token(Algorithm::RS256, "k2", &key_2, "alice");
    assert_eq!(app.get("/api/ably-jwt", Some(&new)).await.status(), 200);
}

#[tokio::test]
async fn until_the_jwks_is_fetched_readyz_and_token_endpoints_are_503() {
    let idp = Idp::default(); // answers 500 until keys are published
    let app = spawn_app(jwks_config(start_idp(&idp).await)).await;
    eventually_async("a JWKS fetch", || async { idp.fetches() >= 1 }).await;
    let key = rsa(RSA_1);

    let ready = app.get("/readyz", None).await;
    let response = app
        .get(
            "/api/ably-jwt",
            Some(&token(Algorithm::RS256, "k1", &key, "alice")),
        )
        .await;

    assert_ably_error(ready, 503, 50000, "not ready").await;
    assert_ably_error(response, 503, 50000, "not available yet").await;
    let metrics = within(app.get("/metrics", None).await.text())
        .await
        .unwrap();
    assert!(
        metrics.contains("auth_jwks_fetches_total{result=\"ok\"} 0\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("auth_jwks_fetches_total{result=\"error\"} 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("auth_jwks_keys 0\n"), "{metrics}");
}

#[tokio::test]
async fn a_remembered_verification_never_outlives_the_tokens_exp() {
    let idp = Idp::default();
    let key = rsa(RSA_1);
    idp.publish(vec![jwk(&key, Algorithm::RS256, "k1")]);
    let mut config = jwks_config(start_idp(&idp).await);
    config.app_jwt.leeway = Duration::ZERO;
    // What is checked is the memory of verified tokens, not the credential's
    // lifetime: a token with a second left must still get one.
    config.ttl_within_app_token = false;
    let app = ready_app(config).await;
    let exp = now_secs() + 1;
    let short_lived = sign(
        Algorithm::RS256,
        Some("k1"),
        &key,
        &json!({"sub": "alice", "exp": exp, "iss": ISSUER, "aud": AUDIENCE}),
    );
    assert_eq!(
        app.get("/api/ably-jwt", Some(&short_lived)).await.status(),
        200
    );
    assert_eq!(
        app.get("/api/ably-jwt", Some(&short_lived)).await.status(),
        200
    );

    // Real time has to pass here: the server reads the system clock.
    eventually_async("the token to expire", || async { now_secs() > exp }).await;
    let response = app.get("/api/ably-jwt", Some(&short_lived)).await;

    assert_ably_error(response, 401, 40101, "expired").await;
}

#[tokio::test]
async fn a_failed_first_fetch_is_retried_with_backoff_until_the_server_is_ready() {
    let idp = Idp::default(); // answers 500 until keys are published
    let key = rsa(RSA_1);
    let config = Config {
        jwks_retry_backoff: Duration::from_millis(10),
        ..jwks_config(start_idp(&idp).await)
    };
    let state = AppState::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(auth_server::serve(listener, state.clone(), async {
        stopped.await.ok();
    }));
    let app = TestApp {
        addr,
        client: reqwest::Client::new(),
        _shutdown,
    };

    // Two failures: the second is the first retry.
    idp.wait_for_fetches(2).await;
    assert!(!state.is_ready());
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_ably_error(app.get("/readyz", None).await, 503, 50000, "not ready").await;
    idp.publish(vec![jwk(&key, Algorithm::RS256, "k1")]);
    within(state.ready()).await;

    assert_eq!(app.get("/readyz", None).await.status(), 200);
    let response = app
        .get(
            "/api/ably-jwt",
            Some(&token(Algorithm::RS256, "k1", &key, "alice")),
        )
        .await;
    assert_eq!(response.status(), 200);
}

/// A port that was free a moment ago, for a binary that must be reached
/// before it prints its address.
fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn with_a_jwks_the_binary_prints_its_ready_line_only_after_the_first_fetch() {
    let idp = Idp::default();
    let key = rsa(RSA_1);
    idp.publish(vec![jwk(&key, Algorithm::RS256, "k1")]);
    idp.hold();
    let url = start_idp(&idp).await;
    let addr = free_port();
    let mut child = command()
        .env("ABLY_API_KEY", ABLY_KEY)
        .env("AUTH_JWKS_URL", url.as_str())
        .env("AUTH_JWT_ISSUER", ISSUER)
        .env("AUTH_JWT_AUDIENCE", AUDIENCE)
        .env("AUTH_BIND", addr.to_string())
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            lines_tx.send(line).ok();
        }
    });
    let app = TestApp {
        addr,
        client: reqwest::Client::new(),
        _shutdown: oneshot::channel().0,
    };

    // The server listens and has asked the IdP, which has not answered.
    idp.wait_for_fetches(1).await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_ably_error(app.get("/readyz", None).await, 503, 50000, "not ready").await;
    assert!(
        lines.try_recv().is_err(),
        "the ready line came before the JWKS was fetched"
    );
    idp.release();
    let line = within(lines.recv()).await.unwrap();

    assert_eq!(line, format!("auth-server listening on http://{addr}"));
    assert_eq!(app.get("/readyz", None).await.status(), 200);
    let response = app
        .get(
            "/api/ably-jwt",
            Some(&token(Algorithm::RS256, "k1", &key, "alice")),
        )
        .await;
    assert_eq!(response.status(), 200);
    child.kill().await.unwrap();
}

/// Runs `body` with every log line at TRACE level captured; returns the
/// lines. The runtime must be current-thread, so that the server's tasks log
/// on this thread.
async fn captured_logs<F: std::future::Future<Output = ()>>(body: F) -> String {
    let capture = Capture::default();
    let guard = capture.trace();
    body.await;
    drop(guard);
    capture.text()
}

/// Waits until the captured log holds `text`.
async fn log_shows(capture: &Capture, text: &str) {
    eventually_async("the log line", || async { capture.text().contains(text) }).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_jwks_url_password_or_query_never_reaches_the_logs_or_debug_output() {
    let capture = Capture::default();
    let _guard = capture.trace();
    let idp = Idp::default(); // answers 500 until keys are published
    let mut url = start_idp(&idp).await;
    url.set_username("jwks-user").unwrap();
    url.set_password(Some("hunter2-password")).unwrap();
    url.set_query(Some("api_key=query-secret"));
    let unreachable = Url::parse(
        "http://other-user:unreachable-pass@127.0.0.1:9/jwks?token=unreachable-query#frag-secret",
    )
    .unwrap();
    let config = Config {
        jwks_retry_backoff: Duration::from_millis(10),
        ..jwks_config(url)
    };
    let debug = format!("{config:?}");
    let app = spawn_app(config).await;
    let _unreachable_app = spawn_app(Config {
        jwks_retry_backoff: Duration::from_millis(10),
        ..jwks_config(unreachable.clone())
    })
    .await;
    let state_debug = format!("{:?}", AppState::new(jwks_config(unreachable)).unwrap());

    // Failures first (WARN lines naming the URL), then a success (INFO).
    log_shows(&capture, "JWKS fetch failed").await;
    log_shows(&capture, "cannot reach the JWKS URL").await;
    let key = rsa(RSA_1);
    idp.publish(vec![jwk(&key, Algorithm::RS256, "k1")]);
    log_shows(&capture, "JWKS loaded").await;
    // And an unknown kid's refetch.
    let unknown = token(Algorithm::RS256, "k9", &key, "alice");
    assert_eq!(app.get("/api/ably-jwt", Some(&unknown)).await.status(), 401);
    drop(app);

    let logs = capture.text();
    for secret in [
        "jwks-user",
        "hunter2-password",
        "query-secret",
        "other-user",
        "unreachable-pass",
        "unreachable-query",
        "frag-secret",
    ] {
        for (what, text) in [("logs", &logs), ("Debug", &debug), ("Debug", &state_debug)] {
            assert!(!text.contains(secret), "{secret:?} in the {what}:\n{text}");
        }
    }
    assert!(
        logs.contains("url=http://[REDACTED]@127.0.0.1:")
            && logs.contains("/.well-known/jwks.json?[REDACTED]"),
        "the capture shows the redacted URL:\n{logs}"
    );
    assert!(
        debug.contains(r#"Jwks("http://[REDACTED]@127.0.0.1:"#),
        "{debug}"
    );
    assert!(
        state_debug.contains(r#"Jwks("http://[REDACTED]@127.0.0.1:9/jwks?[REDACTED]#[REDACTED]")"#),
        "{state_debug}"
    );
}

/// A JWKS URL whose every answer is a redirect to `to`; counts requests.
async fn start_redirector(to: Url) -> (Url, watch::Receiver<usize>) {
    let (hits_tx, hits) = watch::channel(0_usize);
    let hits_tx = Arc::new(hits_tx);
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let (hits_tx, to) = (Arc::clone(&hits_tx), to.clone());
            async move {
                hits_tx.send_modify(|n| *n += 1);
                (
                    StatusCode::FOUND,
                    [(axum::http::header::LOCATION, to.to_string())],
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (Url::parse(&url).unwrap(), hits)
}

#[tokio::test(flavor = "current_thread")]
async fn a_redirect_from_the_jwks_url_cannot_point_the_server_at_an_attackers_keys() {
    let attacker = Idp::default();
    let attackers_key = rsa(RSA_2);
    attacker.publish(vec![jwk(&attackers_key, Algorithm::RS256, "k1")]);
    let mut attacker_url = start_idp(&attacker).await;
    attacker_url.set_query(Some("sig=location-secret"));
    let (url, mut hits) = start_redirector(attacker_url).await;
    let forged = token(Algorithm::RS256, "k1", &attackers_key, "alice");

    let logs = captured_logs(async {
        let app = spawn_app(Config {
            jwks_retry_backoff: Duration::from_millis(10),
            ..jwks_config(url)
        })
        .await;
        // Two refused redirects: the first fetch and its retry.
        within(hits.wait_for(|n| *n >= 2)).await.unwrap();

        assert_eq!(attacker.fetches(), 0, "the redirect was followed");
        assert_ably_error(app.get("/readyz", None).await, 503, 50000, "not ready").await;
        let response = app.get("/api/ably-jwt", Some(&forged)).await;
        assert_ably_error(response, 503, 50000, "not available yet").await;
    })
    .await;

    assert!(
        logs.contains("the JWKS URL answered 302 Found, a redirect to http://127.0.0.1:")
            && logs.contains(
                "/.well-known/jwks.json?[REDACTED]; redirects are not followed: \
                 set AUTH_JWKS_URL to the key set's own URL"
            ),
        "{logs}"
    );
    assert!(!logs.contains("location-secret"), "{logs}");
}

#[test]
fn a_plain_http_jwks_url_off_loopback_is_warned_about_at_start_up() {
    let build = |url: &str| {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(capture.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            AppState::new(jwks_config(Url::parse(url).unwrap())).unwrap();
        });
        capture.text()
    };
    let warning = "AUTH_JWKS_URL is plain http:// to a host that is not loopback: \
                   anyone on the path can swap the keys and sign app tokens for any user; \
                   use https://";

    let remote = build("http://user:pw@idp.example/.well-known/jwks.json?k=v");
    let remote_ip = build("http://192.0.2.7/jwks");

    assert!(remote.contains(" WARN "), "{remote}");
    assert!(remote.contains(warning), "{remote}");
    assert!(
        remote.contains("url=http://[REDACTED]@idp.example/.well-known/jwks.json?[REDACTED]"),
        "{remote}"
    );
    assert!(remote_ip.contains(warning), "{remote_ip}");
    for quiet in [
        "https://idp.example/.well-known/jwks.json",
        "http://127.0.0.1:8081/jwks",
        "http://127.8.9.10/jwks",
        "http://[::1]:8081/jwks",
        "http://localhost:8081/jwks",
    ] {
        assert_eq!(build(quiet), "", "{quiet}");
    }
}
