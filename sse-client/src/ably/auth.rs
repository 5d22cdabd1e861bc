//! Credentials: where tokens come from, read exactly as ably-js reads them
//! (`docs/protocol.md#the-ably-js-token-contract`;
//! `docs/real-clients.md#authcallback-and-authurl`).
//!
//! - This module: the token source, [`Auth`] and what it is made of, and
//!   the [`Credential`] each connection uses.
//! - `reply`: reading replies and error responses, with no I/O.
//! - `fetch`: the auth URL and `requestToken` requests.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use shared::{ApiKey, TokenDetails, TokenParams, TokenRequest};
use tokio::time::Instant;

use self::fetch::{fetch_auth_url, request_token};
use self::reply::{check_token_string, deadline};
use crate::error::{Error, Result};
use crate::sse::connection::within;

mod fetch;
mod reply;

pub(crate) use self::fetch::error_from_response;

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
                let expires_at = shared::jwt::decode_unverified_exp(&token).and_then(|secs| {
                    deadline(Duration::from_secs(secs), SystemTime::now(), Instant::now())
                });
                return Ok(Credential::Token { token, expires_at });
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
            expires_at: (details.expires > 0)
                .then(|| {
                    deadline(
                        Duration::from_millis(details.expires),
                        SystemTime::now(),
                        Instant::now(),
                    )
                })
                .flatten(),
            token: details.token,
        })
    }
}

/// A credential for one connection.
#[derive(Clone)]
pub(crate) enum Credential {
    /// HTTP Basic with the API key.
    Basic(ApiKey),
    /// `accessToken=`, and when it expires, if known: on tokio's clock,
    /// converted from the wall time the token states when it arrived.
    Token {
        token: String,
        expires_at: Option<Instant>,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic(key) => f.debug_tuple("Basic").field(key).finish(),
            Credential::Token { expires_at, .. } => f
                .debug_struct("Token")
                .field("token", &"[REDACTED]")
                .field("expires_at", expires_at)
                .finish(),
        }
    }
}

impl Credential {
    /// When the token expires, if known, on tokio's clock.
    pub(crate) fn expires_at(&self) -> Option<Instant> {
        match self {
            Credential::Basic(_) => None,
            Credential::Token { expires_at, .. } => *expires_at,
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
            expires_at: None,
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
}
