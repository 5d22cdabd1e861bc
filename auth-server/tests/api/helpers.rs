//! `TestApp`: an auth server on port 0 with typed helpers, and app-JWT
//! minting for the tests.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_server::{AppAuth, AppState, Config};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::ApiKey;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The Ably key the server signs with.
pub(crate) const ABLY_KEY: &str = "appA.keyA:ably-key-secret-value";
/// The app's own JWT secret.
pub(crate) const APP_SECRET: &str = "app-jwt-secret-for-tests";
/// How long any single await in a test may take.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

pub(crate) fn ably_key() -> ApiKey {
    ABLY_KEY.parse().unwrap()
}

/// A config with the HS256 app secret, and rate limits off so tests do not
/// trip over them unless they mean to.
pub(crate) fn config() -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        rate_limit_per_user: None,
        rate_limit_per_ip: None,
        ..Config::new(ably_key(), AppAuth::Secret(SecretString::from(APP_SECRET)))
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 app JWT with exactly these claims.
pub(crate) fn app_token(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(APP_SECRET.as_bytes()).unwrap(),
        claims,
    )
}

/// A valid app JWT for `sub` with `extra` claims merged in.
pub(crate) fn user_token(sub: &str, extra: &Value) -> String {
    app_token(&user_claims(sub, extra))
}

pub(crate) fn user_claims(sub: &str, extra: &Value) -> Value {
    let now = now_secs();
    let mut claims = json!({"sub": sub, "iat": now, "exp": now + 300});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

pub(crate) fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// A running server and a client for it; dropping it shuts the server down.
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) _shutdown: oneshot::Sender<()>,
}

pub(crate) async fn spawn_app(config: Config) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(config).expect("test config is valid");
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(auth_server::serve(listener, state, async {
        stopped.await.ok();
    }));
    TestApp {
        addr,
        client: reqwest::Client::new(),
        _shutdown: shutdown,
    }
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path` with `Authorization: Bearer token`.
    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        within(request.send()).await.unwrap()
    }

    /// POST a form body.
    pub(crate) async fn post_form(
        &self,
        path: &str,
        token: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .form(form);
        within(request.send()).await.unwrap()
    }

    /// POST a JSON body.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::Response {
        let request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body);
        within(request.send()).await.unwrap()
    }
}

/// `future`, failing the test if it takes longer than [`PATIENCE`].
pub(crate) async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("timed out")
}

/// Asserts an Ably error response: status, code, exact content type, the
/// `X-Ably-*` headers, and a message containing `message_part`; returns the
/// error object.
pub(crate) async fn assert_ably_error(
    response: reqwest::Response,
    status: u16,
    code: u32,
    message_part: &str,
) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-ably-errorcode"], code.to_string().as_str());
    let body: Value = within(response.json()).await.unwrap();
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert_eq!(error["statusCode"], status, "{body}");
    assert_eq!(error["href"], format!("https://help.ably.io/error/{code}"));
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(message_part),
        "{message:?} lacks {message_part:?}"
    );
    assert_eq!(headers["x-ably-errormessage"], message);
    error.clone()
}

/// Waits until `check` returns true, polling every 10 ms; fails the test
/// after [`PATIENCE`].
pub(crate) async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
