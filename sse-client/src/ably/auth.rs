//! Credentials: where tokens come from, read exactly as ably-js reads them
//! (`docs/protocol.md#the-ably-js-token-contract`;
//! `docs/real-clients.md#authcallback-and-authurl`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use secrecy::ExposeSecret;
use shared::error_info::{ERROR_CODE_HEADER, ERROR_MESSAGE_HEADER};
use shared::{ApiKey, ErrorInfo, ErrorResponse, TokenDetails, TokenParams, TokenRequest, codes};

use crate::error::{Error, Result};
use crate::sse::connection::within;

/// ably-js refuses token strings longer than this (`MAX_TOKEN_LENGTH`).
const MAX_TOKEN_LEN: usize = 1 << 17;

/// The most of an error body read when a request fails.
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;

/// What an auth URL or callback hands back
/// (`docs/protocol.md#what-an-auth-source-may-return`): a token string (an Ably
/// token or an Ably JWT), TokenDetails, or a TokenRequest to exchange at `POST
/// {endpoint}/keys/{keyName}/requestToken`.
#[derive(Clone)]
#[non_exhaustive]
pub enum TokenReply {
    /// An Ably token or Ably JWT, used as it is.
    Token(String),
    /// An issued token with its expiry.
    Details(TokenDetails),
    /// A signed TokenRequest; the client exchanges it for a token.
    Request(TokenRequest),
}

impl fmt::Debug for TokenReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenReply::Token(_) => f.write_str("Token([REDACTED])"),
            TokenReply::Details(details) => f.debug_tuple("Details").field(details).finish(),
            TokenReply::Request(request) => f
                .debug_struct("Request")
                .field("key_name", &request.key_name)
                .finish_non_exhaustive(),
        }
    }
}

/// GET or POST for an auth URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// Parameters go in the query string (the default).
    #[default]
    Get,
    /// Parameters go form-encoded in the body.
    Post,
}

/// An auth URL, as ably-js's `authUrl`, `authMethod`, `authHeaders` and
/// `authParams`.
#[derive(Clone)]
pub struct AuthUrl {
    url: Url,
    method: AuthMethod,
    headers: HeaderMap,
    params: Vec<(String, String)>,
}

/// Shows the URL without its query and the header names without values.
impl fmt::Debug for AuthUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        url.set_query(None);
        f.debug_struct("AuthUrl")
            .field("url", &url.as_str())
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field(
                "params",
                &self.params.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl AuthUrl {
    /// An auth URL fetched with GET.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `url` does not parse.
    pub fn new(url: &str) -> Result<Self> {
        let url =
            Url::parse(url).map_err(|err| Error::Config(format!("invalid auth URL: {err}")))?;
        Ok(Self {
            url,
            method: AuthMethod::Get,
            headers: HeaderMap::new(),
            params: Vec::new(),
        })
    }

    /// GET (default) or POST.
    #[must_use]
    pub fn method(mut self, method: AuthMethod) -> Self {
        self.method = method;
        self
    }

    /// Adds a header, such as the user's own `Authorization`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the name or value is not valid HTTP.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::Config(format!("invalid header name {name:?}")))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| Error::Config(format!("invalid value for header {name}")))?;
        value.set_sensitive(true);
        self.headers.append(name, value);
        Ok(self)
    }

    /// Adds a parameter: to the query for GET, to the form body for POST. A
    /// parameter replaces one of the same name in the URL's own query (for
    /// GET) or added before, as ably-js's `authParams` do
    /// (`docs/protocol.md#authurl-requests`).
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }
}

type Callback = Arc<dyn Fn(TokenParams) -> BoxFuture<'static, Result<TokenReply>> + Send + Sync>;

#[derive(Clone)]
enum Source {
    Key(ApiKey),
    Token(String),
    Url(AuthUrl),
    Callback(Callback),
}

/// Where the client's credentials come from.
///
/// ```
/// use sse_client::ably::{Auth, AuthMethod, AuthUrl};
///
/// let auth = Auth::auth_url(
///     AuthUrl::new("https://example.com/api/ably-jwt")?
///         .method(AuthMethod::Post)
///         .header("Authorization", "Bearer user-session")?
///         .param("room", "r1"),
/// );
/// assert!(auth.can_renew());
/// # Ok::<(), sse_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Auth(Source);

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Key(key) => f.debug_tuple("Auth::Key").field(key).finish(),
            Source::Token(_) => f.write_str("Auth::Token([REDACTED])"),
            Source::Url(url) => f.debug_tuple("Auth::Url").field(url).finish(),
            Source::Callback(_) => f.write_str("Auth::Callback"),
        }
    }
}

impl Auth {
    /// An API key, sent as HTTP Basic auth (for servers: the key is a
    /// long-lived secret).
    ///
    /// ```
    /// use sse_client::ably::{ApiKey, Auth};
    ///
    /// let auth = Auth::key(ApiKey::parse("xVLyHw.mDYnFA:s3cr3t")?);
    /// assert!(!auth.can_renew());
    /// # Ok::<(), sse_client::wire::Error>(())
    /// ```
    pub fn key(key: ApiKey) -> Self {
        Self(Source::Key(key))
    }

    /// A fixed token or Ably JWT. It cannot be renewed: a token error ends
    /// the subscription.
    pub fn token(token: impl Into<String>) -> Self {
        Self(Source::Token(token.into()))
    }

    /// Tokens fetched from an auth URL, whose reply is read by its
    /// `Content-Type` as ably-js does.
    pub fn auth_url(url: AuthUrl) -> Self {
        Self(Source::Url(url))
    }

    /// Tokens from an async callback, called for every new token.
    ///
    /// ```
    /// use sse_client::ably::{Auth, TokenParams, TokenReply};
    ///
    /// let auth = Auth::callback(|_params: TokenParams| async {
    ///     // Ask your own server for an Ably JWT here.
    ///     Ok(TokenReply::Token("eyJhbGciOi…".to_owned()))
    /// });
    /// assert!(auth.can_renew());
    /// ```
    pub fn callback<F, Fut>(callback: F) -> Self
    where
        F: Fn(TokenParams) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<TokenReply>> + Send + 'static,
    {
        Self(Source::Callback(Arc::new(move |params| {
            Box::pin(callback(params))
        })))
    }

    /// Whether a new token can be fetched when the current one is rejected.
    pub fn can_renew(&self) -> bool {
        matches!(self.0, Source::Url(_) | Source::Callback(_))
    }

    /// Gets a credential for the next connection. Each step (the auth URL,
    /// the callback, the `requestToken` exchange) gets at most `timeout`.
    pub(crate) async fn credential(
        &self,
        http: &reqwest::Client,
        endpoint: &Url,
        timeout: Option<Duration>,
    ) -> Result<Credential> {
        let reply = match &self.0 {
            Source::Key(key) => return Ok(Credential::Basic(key.clone())),
            Source::Token(token) => TokenReply::Token(token.clone()),
            Source::Url(url) => {
                within(timeout, Error::AuthTimeout, fetch_auth_url(http, url)).await?
            }
            Source::Callback(callback) => {
                let reply = within(
                    timeout,
                    Error::AuthTimeout,
                    callback(TokenParams::default()),
                )
                .await?;
                if let TokenReply::Token(token) = &reply {
                    // A callback's string is checked as ably-js checks it
                    // (`docs/protocol.md#what-an-auth-source-may-return`): one
                    // starting with `{` is TokenDetails or a TokenRequest
                    // JSON-encoded by mistake.
                    check_token_string(token, false)?;
                }
                reply
            }
        };
        let details = match reply {
            TokenReply::Token(token) => {
                check_token_string(&token, true)?;
                let expires = shared::jwt::decode_unverified_exp(&token)
                    .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
                return Ok(Credential::Token { token, expires });
            }
            TokenReply::Details(details) => details,
            TokenReply::Request(request) => {
                within(
                    timeout,
                    Error::AuthTimeout,
                    request_token(http, endpoint, &request),
                )
                .await?
            }
        };
        Ok(Credential::Token {
            expires: (details.expires > 0)
                .then(|| UNIX_EPOCH + Duration::from_millis(details.expires)),
            token: details.token,
        })
    }
}

/// A credential for one connection.
#[derive(Clone)]
pub(crate) enum Credential {
    /// HTTP Basic with the API key.
    Basic(ApiKey),
    /// `accessToken=`, and when it expires, if known.
    Token {
        token: String,
        expires: Option<SystemTime>,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic(key) => f.debug_tuple("Basic").field(key).finish(),
            Credential::Token { expires, .. } => f
                .debug_struct("Token")
                .field("token", &"[REDACTED]")
                .field("expires", expires)
                .finish(),
        }
    }
}

impl Credential {
    /// When the token expires, if known.
    pub(crate) fn expires(&self) -> Option<SystemTime> {
        match self {
            Credential::Basic(_) => None,
            Credential::Token { expires, .. } => *expires,
        }
    }

    /// The `Authorization` header value for Basic auth.
    pub(crate) fn basic_header(key: &ApiKey) -> HeaderValue {
        use base64::Engine as _;
        let raw = format!("{}:{}", key.key_name(), key.secret().expose_secret());
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
            .expect("base64 is a valid header value");
        value.set_sensitive(true);
        value
    }
}

/// ably-js's checks on a token string
/// (`docs/protocol.md#what-an-auth-source-may-return`).
fn check_token_string(token: &str, json_allowed: bool) -> Result<()> {
    let problem = if token.is_empty() {
        "token string is empty"
    } else if token.len() > MAX_TOKEN_LEN {
        "token string is longer than 131072 characters"
    } else if token == "null" || token == "undefined" {
        "token string is null or undefined"
    } else if token.starts_with('{') && !json_allowed {
        "Token was double-encoded"
    } else {
        return Ok(());
    };
    Err(auth_failed(problem))
}

fn auth_failed(message: impl Into<String>) -> Error {
    Error::Ably(ErrorInfo::new(codes::AUTH_CALLBACK_FAILED, 401, message))
}

/// GETs or POSTs the auth URL and reads the reply by its `Content-Type`
/// (`docs/protocol.md#authurl-responses`).
async fn fetch_auth_url(http: &reqwest::Client, auth: &AuthUrl) -> Result<TokenReply> {
    let mut url = auth.url.clone();
    let mut request = match auth.method {
        AuthMethod::Get => {
            if !auth.params.is_empty() {
                let own: Vec<(String, String)> = url.query_pairs().into_owned().collect();
                let query = merge_params(own.iter().chain(&auth.params));
                url.set_query(None);
                url.query_pairs_mut().extend_pairs(&query);
            }
            http.request(Method::GET, url)
        }
        // The URL keeps its own query; the parameters go in the body.
        AuthMethod::Post => http
            .request(Method::POST, url)
            .form(&merge_params(&auth.params)),
    };
    request = request
        .headers(auth.headers.clone())
        .header(ACCEPT, "application/json, text/plain");
    let response = request.send().await.map_err(Error::transport)?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase());
    if status >= 300 {
        return Err(auth_url_error(response).await);
    }
    let body = read_limited(response, MAX_TOKEN_LEN + 1024).await?;
    let Some(content_type) = content_type else {
        return Err(auth_failed(
            "authUrl response is missing a Content-Type header",
        ));
    };
    if content_type.contains("application/json") {
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|err| auth_failed(format!("authUrl returned invalid JSON: {err}")))?;
        return token_reply_from_json(value);
    }
    let is_jwt = content_type.contains("application/jwt");
    if is_jwt || content_type.contains("text/plain") {
        let token = String::from_utf8(body.to_vec())
            .map_err(|_| auth_failed("authUrl returned a token that is not UTF-8"))?;
        let token = token.trim().to_owned();
        check_token_string(&token, is_jwt)?;
        return Ok(TokenReply::Token(token));
    }
    Err(auth_failed(format!(
        "authUrl returned an unsupported Content-Type {content_type:?}"
    )))
}

/// The error an auth URL answered with (`docs/protocol.md#authurl-responses`):
/// its `{"error": …}` envelope only when the `Content-Type` is exactly
/// `application/json`, as ably-js reads it; else the `X-Ably-ErrorCode` header;
/// else 40170 (5xx: the status × 100, retried) naming the status.
async fn auth_url_error(response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let exactly_json = headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"application/json"));
    let body = if exactly_json {
        read_limited(response, MAX_ERROR_BODY)
            .await
            .unwrap_or_default()
    } else {
        bytes::Bytes::new()
    };
    let info = reported_error(status, &headers, &body).unwrap_or_else(|| {
        fallback_error(
            status,
            codes::AUTH_CALLBACK_FAILED,
            format!("authUrl responded with HTTP {status}"),
        )
    });
    Error::Ably(info)
}

/// Parameters mixed as ably-js mixes objects
/// (`docs/protocol.md#authurl-requests`, RSA8c1c): on a name clash the later
/// value wins, in the place of the first.
fn merge_params<'a>(
    params: impl IntoIterator<Item = &'a (String, String)>,
) -> Vec<(&'a str, &'a str)> {
    let mut merged: Vec<(&str, &str)> = Vec::new();
    for (name, value) in params {
        match merged.iter_mut().find(|(seen, _)| seen == name) {
            Some(slot) => slot.1 = value,
            None => merged.push((name, value)),
        }
    }
    merged
}

/// Classifies a JSON reply as ably-js does
/// (`docs/protocol.md#what-an-auth-source-may-return`,
/// `docs/protocol.md#authurl-responses`): a JSON string is a token string
/// (checked like one, `{` refused since the type is not `application/jwt`), an
/// object is TokenDetails (has `issued`) or a TokenRequest (has `keyName`).
fn token_reply_from_json(value: serde_json::Value) -> Result<TokenReply> {
    if let serde_json::Value::String(token) = value {
        check_token_string(&token, false)?;
        return Ok(TokenReply::Token(token));
    }
    let Some(object) = value.as_object() else {
        return Err(auth_failed(
            "authUrl returned JSON that is neither a string nor an object",
        ));
    };
    if object.contains_key("issued") {
        let details = serde_json::from_value(value)
            .map_err(|err| auth_failed(format!("invalid TokenDetails: {err}")))?;
        Ok(TokenReply::Details(details))
    } else if object.contains_key("keyName") {
        let request = serde_json::from_value(value)
            .map_err(|err| auth_failed(format!("invalid TokenRequest: {err}")))?;
        Ok(TokenReply::Request(request))
    } else {
        Err(auth_failed(
            "authUrl returned JSON that is neither TokenDetails nor a TokenRequest",
        ))
    }
}

/// Exchanges a TokenRequest at `POST {endpoint}/keys/{keyName}/requestToken`
/// (`docs/protocol.md#exchanging-a-tokenrequest`): no Authorization, the MAC
/// authenticates it; any 2xx is success.
async fn request_token(
    http: &reqwest::Client,
    endpoint: &Url,
    request: &TokenRequest,
) -> Result<TokenDetails> {
    let mut url = endpoint.clone();
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| Error::Config("endpoint cannot be a base URL".into()))?;
        segments
            .pop_if_empty()
            .extend(["keys", &request.key_name, "requestToken"]);
    }
    let response = http
        .post(url)
        .header(ACCEPT, "application/json")
        .json(request)
        .send()
        .await
        .map_err(Error::transport)?;
    if !response.status().is_success() {
        return Err(error_from_response(response, codes::AUTH_CALLBACK_FAILED).await);
    }
    let body = read_limited(response, MAX_ERROR_BODY).await?;
    serde_json::from_slice(&body)
        .map_err(|err| auth_failed(format!("requestToken returned invalid TokenDetails: {err}")))
}

/// Reads at most `limit` bytes of a body.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(Error::transport)? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body.freeze())
}

/// The Ably error an HTTP error response carries
/// (`docs/protocol.md#the-error-envelope`,
/// `docs/protocol.md#authurl-responses`): the `{"error": …}` envelope, else the
/// `X-Ably-ErrorCode` header, else one made up from the status (`fallback_code`
/// for 4xx, the status × 100 for 5xx, so that they stay retryable).
pub(crate) async fn error_from_response(response: reqwest::Response, fallback_code: u32) -> Error {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_limited(response, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    Error::Ably(error_info_from_parts(
        status,
        &headers,
        &body,
        fallback_code,
    ))
}

pub(crate) fn error_info_from_parts(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    fallback_code: u32,
) -> ErrorInfo {
    reported_error(status, headers, body)
        .unwrap_or_else(|| fallback_error(status, fallback_code, format!("HTTP {status}")))
}

/// The error a response reports itself: the `{"error": …}` envelope in
/// `body`, else the `X-Ably-ErrorCode` header.
fn reported_error(status: u16, headers: &HeaderMap, body: &[u8]) -> Option<ErrorInfo> {
    if let Ok(envelope) = serde_json::from_slice::<ErrorResponse>(body) {
        return Some(envelope.error);
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let code = header(ERROR_CODE_HEADER).and_then(|code| code.trim().parse().ok())?;
    let message = header(ERROR_MESSAGE_HEADER).unwrap_or_else(|| format!("HTTP {status}"));
    Some(ErrorInfo::new(code, status, message))
}

/// An error made up from the status: `fallback_code` for 4xx, the status ×
/// 100 for 5xx, so that they stay retryable.
fn fallback_error(status: u16, fallback_code: u32, message: String) -> ErrorInfo {
    let code = if status >= 500 {
        u32::from(status) * 100
    } else {
        fallback_code
    };
    ErrorInfo::new(code, status, message)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_tokens() {
        let auth = Auth::token("secret-token");
        let credential = Credential::Token {
            token: "secret-token".into(),
            expires: None,
        };
        let reply = TokenReply::Token("secret-token".into());

        for text in [
            format!("{auth:?}"),
            format!("{credential:?}"),
            format!("{reply:?}"),
        ] {
            assert!(!text.contains("secret-token"), "{text}");
        }
    }

    #[test]
    fn auth_url_debug_hides_query_and_header_values() {
        let url = AuthUrl::new("http://127.0.0.1/auth?session=s3cr3t")
            .unwrap()
            .header("Authorization", "Bearer hunter2")
            .unwrap()
            .param("room", "r1");

        let text = format!("{url:?}");

        assert!(
            !text.contains("s3cr3t") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn token_strings_are_checked_like_ably_js() {
        for bad in ["", "null", "undefined"] {
            assert!(check_token_string(bad, false).is_err(), "{bad:?}");
        }
        let err = check_token_string(r#"{"keyName":"a.b"}"#, false).unwrap_err();
        assert_eq!(err.error_info().map(|info| info.code), Some(40170));
        assert!(check_token_string(r#"{"jwt":1}"#, true).is_ok());
        assert!(check_token_string(&"x".repeat(MAX_TOKEN_LEN + 1), false).is_err());
    }

    #[test]
    fn json_replies_are_told_apart_by_issued_and_key_name() {
        let details = serde_json::json!({"token": "t", "issued": 1, "expires": 2});
        let request = serde_json::json!({"keyName": "a.b", "timestamp": 1, "nonce": "0123456789abcdef", "mac": "m"});

        assert!(matches!(
            token_reply_from_json(details),
            Ok(TokenReply::Details(_))
        ));
        assert!(matches!(
            token_reply_from_json(request),
            Ok(TokenReply::Request(_))
        ));
        assert!(token_reply_from_json(serde_json::json!({"other": 1})).is_err());
        assert!(token_reply_from_json(serde_json::json!(42)).is_err());
        assert!(token_reply_from_json(serde_json::json!(null)).is_err());
    }

    #[test]
    fn errors_come_from_the_envelope_then_the_header_then_the_status() {
        let mut headers = HeaderMap::new();
        let envelope = br#"{"error":{"code":40142,"statusCode":401,"message":"expired"}}"#;

        assert_eq!(
            error_info_from_parts(401, &headers, envelope, 1).code,
            40142
        );
        headers.insert("x-ably-errorcode", HeaderValue::from_static("40144"));
        assert_eq!(
            error_info_from_parts(401, &headers, b"not json", 1).code,
            40144
        );
        assert_eq!(
            error_info_from_parts(503, &HeaderMap::new(), b"", 1).code,
            50300
        );
        assert_eq!(
            error_info_from_parts(404, &HeaderMap::new(), b"", 40400).code,
            40400
        );
    }
}
