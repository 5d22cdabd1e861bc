//! `TestApp`: an auth server on port 0 with typed helpers, and app-JWT
//! minting for the tests.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use auth_server::{AppAuth, AppState, Config};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::ApiKey;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The waits every suite shares.
pub(crate) use test_support::{eventually_async, read_response, read_until_closed, within};

/// The Ably key the server signs with: [`ABLY_KEY_NAME`]:[`ABLY_KEY_SECRET`].
pub(crate) const ABLY_KEY: &str = "appA.keyA:ably-key-secret-value";
pub(crate) const ABLY_KEY_NAME: &str = "appA.keyA";
pub(crate) const ABLY_KEY_SECRET: &str = "ably-key-secret-value";
/// The app's own JWT secret.
pub(crate) const APP_SECRET: &str = "app-jwt-secret-for-tests";

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

/// The claims of a valid app token for `sub`, with `extra` merged in. It
/// lives two days, longer than any Ably credential (24 h at most), so the
/// lifetimes tests check are not cut to the app token's `exp`
/// (`AUTH_TTL_WITHIN_APP_TOKEN`) unless a test sets its own `exp`.
pub(crate) fn user_claims(sub: &str, extra: &Value) -> Value {
    let now = now_secs();
    let mut claims = json!({"sub": sub, "iat": now, "exp": now + 2 * 86_400});
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

/// An issued Ably JWT as an independent check sees it (see [`verified_jwt`]).
#[derive(Debug)]
pub(crate) struct IssuedJwt {
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    /// `x-ably-capability`.
    pub(crate) capability: String,
    /// `x-ably-clientId`.
    pub(crate) client_id: String,
    pub(crate) jti: String,
}

/// Checks an issued Ably JWT without the `shared` code that minted it
/// (`docs/protocol.md#ably-jwts`): jsonwebtoken itself, HS256 pinned, keyed
/// with the UTF-8 bytes of the key secret, `exp` required and not passed; the
/// header exactly `{"alg":"HS256","kid":<key name>,"typ":"JWT"}`; exactly the
/// claims `iat`, `exp`, `x-ably-capability` (a string holding a JSON object),
/// `x-ably-clientId` and `jti` (32 hex digits), with `iat` now.
pub(crate) fn verified_jwt(jwt: &str) -> IssuedJwt {
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let key = jsonwebtoken::DecodingKey::from_secret(ABLY_KEY_SECRET.as_bytes()).unwrap();
    let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(jwt, &key, &validation)
        .unwrap_or_else(|err| panic!("not a valid Ably JWT ({err}): {jwt}"));
    let header_segment = jwt.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            header_segment,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header,
        json!({"alg": "HS256", "kid": ABLY_KEY_NAME, "typ": "JWT"})
    );
    let claims = data.claims;
    let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["exp", "iat", "jti", "x-ably-capability", "x-ably-clientId"],
        "{claims:?}"
    );
    let number = |name: &str| claims[name].as_u64().unwrap_or_else(|| panic!("{name}"));
    let text = |name: &str| {
        claims[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} is not a string"))
            .to_owned()
    };
    let issued = IssuedJwt {
        iat: number("iat"),
        exp: number("exp"),
        capability: text("x-ably-capability"),
        client_id: text("x-ably-clientId"),
        jti: text("jti"),
    };
    let now = now_secs();
    assert!(
        issued.iat <= now && issued.iat + 5 >= now,
        "iat {}",
        issued.iat
    );
    assert!(issued.exp > issued.iat);
    assert!(
        serde_json::from_str::<Value>(&issued.capability).is_ok_and(|c| c.is_object()),
        "{}",
        issued.capability
    );
    assert!(
        issued.jti.len() == 32 && issued.jti.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        issued.jti
    );
    issued
}

/// The MAC of a TokenRequest (given as its JSON) computed by hand from
/// `docs/protocol.md#the-tokenrequest-mac`, not with `shared`: `keyName`,
/// `ttl`, `capability`, `clientId`, `timestamp` and `nonce`, each followed by
/// `\n` (absent ones as empty text), HMAC-SHA256 keyed with the secret,
/// standard base64 with padding.
pub(crate) fn mac_by_hand(secret: &str, request: &Value) -> String {
    use hmac::{KeyInit as _, Mac as _};

    let mut text = String::new();
    for name in [
        "keyName",
        "ttl",
        "capability",
        "clientId",
        "timestamp",
        "nonce",
    ] {
        match &request[name] {
            Value::Null => {}
            Value::String(value) => text.push_str(value),
            Value::Number(value) => text.push_str(&value.to_string()),
            other => panic!("{name} is {other}"),
        }
        text.push('\n');
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        mac.finalize().into_bytes(),
    )
}

/// Checks a TokenRequest as JSON independently of `shared`: exactly the
/// fields of `docs/protocol.md#token-requests` for a signed request, and the
/// MAC recomputed by hand.
pub(crate) fn assert_signed_token_request(request: &Value) {
    let mut names: Vec<&str> = request
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "capability",
            "clientId",
            "keyName",
            "mac",
            "nonce",
            "timestamp",
            "ttl"
        ],
        "{request}"
    );
    assert_eq!(
        request["mac"].as_str().unwrap(),
        mac_by_hand(ABLY_KEY_SECRET, request),
        "{request}"
    );
}

#[test]
fn the_mac_by_hand_reproduces_the_protocols_worked_examples() {
    // `docs/protocol.md#the-tokenrequest-mac`.
    let full = json!({
        "keyName": "xVLyHw.mDYnFA", "ttl": 3_600_000, "capability": "{\"*\":[\"subscribe\"]}",
        "clientId": "user-1", "timestamp": 1_700_000_000_000_u64, "nonce": "0123456789abcdef",
    });
    let bare = json!({
        "keyName": "xVLyHw.mDYnFA", "timestamp": 1_700_000_000_000_u64, "nonce": "0123456789abcdef",
    });

    assert_eq!(
        mac_by_hand("s3cr3t", &full),
        "Owfcylx5b+3ucKFmMl+hvjbnTsE9QiU1UH7kF+gooaU="
    );
    assert_eq!(
        mac_by_hand("s3cr3t", &bare),
        "F+bhmlt9V/OW5HC+xRJSwqKJ/wXwtU7TYNxaWBLK7uc="
    );
}

/// The `Accept` header ably-js's `authUrl` sends, which gets TokenDetails
/// JSON from `/api/ably-token`.
pub(crate) const AUTH_URL_ACCEPT: &str = "application/json, text/plain";

/// A running server and a client for it; dropping it shuts the server down.
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) _shutdown: oneshot::Sender<()>,
}

pub(crate) async fn spawn_app(config: Config) -> TestApp {
    spawn_app_with_state(config).await.0
}

/// [`spawn_app`], and the server's state (for what a signal would do, such
/// as [`AppState::reload_policy`]).
pub(crate) async fn spawn_app_with_state(config: Config) -> (TestApp, AppState) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(config).expect("test config is valid");
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(auth_server::serve(listener, state.clone(), async {
        stopped.await.ok();
    }));
    let app = TestApp {
        addr,
        client: reqwest::Client::new(),
        _shutdown: shutdown,
    };
    (app, state)
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

    /// GET `path` with `Authorization: Bearer token` and `Accept: accept`.
    pub(crate) async fn get_accepting(
        &self,
        path: &str,
        token: &str,
        accept: &str,
    ) -> reqwest::Response {
        let request = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, accept);
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
