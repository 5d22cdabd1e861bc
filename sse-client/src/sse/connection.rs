//! One HTTP request for an event stream: what to send, and reading the body
//! with an idle timeout.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::error::{Error, Result};

/// The request for one connection attempt: method, URL, headers and body.
///
/// The stream adds `Accept: text/event-stream` and `Cache-Control: no-cache`
/// unless they are set here, and `Last-Event-ID` when the last event ID is
/// not empty.
#[derive(Clone)]
pub struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
}

/// Shows the URL without its query, which may carry a token.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        url.set_query(None);
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &url.as_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.as_ref().map(Bytes::len))
            .finish()
    }
}

impl Request {
    /// A `GET` of `url`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `url` does not parse or is not `http`/`https`.
    pub fn get(url: &str) -> Result<Self> {
        let url = Url::parse(url).map_err(|err| Error::Config(format!("invalid URL: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "expected an http or https URL, got a {}: URL",
                url.scheme()
            )));
        }
        Ok(Self::new(Method::GET, url))
    }

    /// A request with any method (`POST`, `REPORT`…) to a parsed URL.
    pub fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// Adds a header.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the name or value is not valid HTTP.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::Config(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| Error::Config(format!("invalid value for header {name}")))?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Replaces the headers.
    #[must_use]
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the body, sent again on every attempt.
    #[must_use]
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

/// Runs `future` for at most `limit` (`None`: no limit), failing with
/// `timed_out(limit)` when it takes longer.
pub(crate) async fn within<T>(
    limit: Option<Duration>,
    timed_out: fn(Duration) -> Error,
    future: impl Future<Output = Result<T>>,
) -> Result<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future)
            .await
            .map_err(|_| timed_out(limit))?,
        None => future.await,
    }
}

/// Sends `request` with the event-stream headers, returning the response
/// whatever its status.
pub(crate) async fn send(
    client: &reqwest::Client,
    request: &Request,
    last_event_id: &str,
) -> Result<reqwest::Response> {
    let mut headers = request.headers.clone();
    headers
        .entry(ACCEPT)
        .or_insert(HeaderValue::from_static("text/event-stream"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
    if !last_event_id.is_empty() {
        // Raw UTF-8, as browsers send it.
        match HeaderValue::from_bytes(last_event_id.as_bytes()) {
            Ok(value) => {
                headers.insert("last-event-id", value);
            }
            Err(_) => tracing::warn!("last event ID is not a valid header value; not sent"),
        }
    }
    let mut builder = client
        .request(request.method.clone(), request.url.clone())
        .headers(headers);
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    builder.send().await.map_err(Error::transport)
}

/// Whether a `Content-Type` is `text/event-stream`, parameters allowed.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or_default().trim())
        .is_some_and(|essence| essence.eq_ignore_ascii_case("text/event-stream"))
}

/// The `Content-Type` as text, for error messages.
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// A response body read chunk by chunk, failing when it goes quiet.
pub(crate) struct Body {
    chunks: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    read_timeout: Option<Duration>,
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl Body {
    pub(crate) fn new(response: reqwest::Response, read_timeout: Option<Duration>) -> Self {
        Self {
            chunks: Box::pin(response.bytes_stream()),
            read_timeout,
        }
    }

    /// The next chunk; `Ok(None)` when the server closed the stream. Cancel
    /// safe: dropping the future loses no bytes.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let next = match self.read_timeout {
            Some(limit) => tokio::time::timeout(limit, self.chunks.next())
                .await
                .map_err(|_| Error::ReadTimeout(limit))?,
            None => self.chunks.next().await,
        };
        next.transpose().map_err(Error::transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn event_stream_types_allow_parameters_and_any_case() {
        for ok in [
            "text/event-stream",
            "text/event-stream;",
            "text/event-stream; charset=utf-8",
            "text/event-stream;charset=windows-1252",
            "Text/Event-Stream",
        ] {
            assert!(is_event_stream(&with_type(ok)), "{ok}");
        }
        for bad in ["text/x-bogus", "text/plain", "text/event-streams", ""] {
            assert!(!is_event_stream(&with_type(bad)), "{bad}");
        }
        assert!(!is_event_stream(&HeaderMap::new()));
    }

    #[test]
    fn debug_hides_the_query() {
        let request = Request::get("http://127.0.0.1/sse?accessToken=secret").unwrap();

        let text = format!("{request:?}");

        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("http://127.0.0.1/sse"), "{text}");
    }

    #[test]
    fn bad_urls_and_headers_are_config_errors() {
        assert!(matches!(Request::get("not a url"), Err(Error::Config(_))));
        for other in ["ftp://127.0.0.1/", "file:///etc/passwd", "mailto:a@b.c"] {
            let err = Request::get(other).unwrap_err();
            assert!(
                matches!(&err, Error::Config(text) if text.starts_with("expected an http or https URL")),
                "{other}: {err:?}"
            );
        }
        assert!(Request::get("HTTPS://127.0.0.1/").is_ok());
        let request = Request::get("http://127.0.0.1/").unwrap();
        assert!(matches!(
            request.clone().header("bad name", "v"),
            Err(Error::Config(_))
        ));
        assert!(matches!(request.header("x", "a\nb"), Err(Error::Config(_))));
    }
}
