//! A mock per test, a reqwest client, an SSE frame reader, and credential
//! helpers.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use mock_ably::MockAbly;
use serde_json::Value;
use shared::jwt::{AblyJwtClaims, encode_jwt};
use shared::token::{TokenParams, TokenRequest};
use shared::{ApiKey, ErrorResponse};

/// The waits every suite shares.
pub(crate) use test_support::{eventually, patience, within};

/// The key every test mock accepts (unless a test adds others).
pub(crate) const KEY: &str = "testApp.testKey:test-secret";
/// Its name.
pub(crate) const KEY_NAME: &str = "testApp.testKey";

/// A short wait used to show that something does *not* arrive.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// A started mock with a client.
#[derive(Debug)]
pub(crate) struct TestMock {
    pub(crate) mock: MockAbly,
    pub(crate) client: reqwest::Client,
}

/// A mock with [`KEY`] and the default settings.
pub(crate) async fn spawn() -> TestMock {
    with(MockAbly::builder().key(KEY)).await
}

/// A mock from a builder.
pub(crate) async fn with(builder: mock_ably::MockAblyBuilder) -> TestMock {
    TestMock {
        mock: builder.start().await,
        client: reqwest::Client::new(),
    }
}

impl TestMock {
    /// `base_url` + `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.mock.base_url())
    }

    /// GET `path` with no credentials.
    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        within(self.client.get(self.url(path)).send())
            .await
            .unwrap()
    }

    /// Opens `/sse?v=1.2&{query}` and returns the response.
    pub(crate) async fn sse_response(&self, query: &str) -> reqwest::Response {
        self.get(&format!("/sse?v=1.2&{query}")).await
    }

    /// Opens `/sse?v=1.2&{query}` with [`KEY`], expecting 200.
    pub(crate) async fn sse(&self, query: &str) -> Frames {
        let response = self
            .sse_response(&format!("key={}&{query}", enc(KEY)))
            .await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        Frames::new(response)
    }

    /// POSTs `body` as JSON to `/channels/{channel}/messages` with [`KEY`].
    pub(crate) async fn publish(&self, channel: &str, body: Value) -> reqwest::Response {
        within(
            self.client
                .post(self.url(&format!("/channels/{}/messages", enc(channel))))
                .basic_auth(KEY_NAME, Some("test-secret"))
                .json(&body)
                .send(),
        )
        .await
        .unwrap()
    }

    /// POSTs `body` to `/keys/{key_name}/requestToken` with no credentials.
    pub(crate) async fn request_token(&self, key_name: &str, body: &Value) -> reqwest::Response {
        within(
            self.client
                .post(self.url(&format!("/keys/{key_name}/requestToken")))
                .json(body)
                .send(),
        )
        .await
        .unwrap()
    }
}

/// Percent-encodes a query or path component.
pub(crate) fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Asserts that `response` is Ably's error envelope with `code` and
/// `status`, with the exact headers ably-js needs.
pub(crate) async fn assert_error(
    response: reqwest::Response,
    status: u16,
    code: u32,
) -> shared::ErrorInfo {
    assert_eq!(response.status(), status, "status");
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-ably-errorcode"], code.to_string().as_str());
    assert!(headers.contains_key("x-ably-errormessage"));
    let body: ErrorResponse = response.json().await.expect("an error envelope");
    assert_eq!(body.error.code, code, "{}", body.error.message);
    assert_eq!(body.error.status_code, status);
    assert_eq!(
        body.error.href.as_deref(),
        Some(format!("https://help.ably.io/error/{code}").as_str())
    );
    body.error
}

/// One event of a stream, as the bytes were split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The raw text of the event, without its final blank line.
    pub(crate) raw: String,
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    /// `data` lines joined with `\n`; `None` when there was no `data` line.
    pub(crate) data: Option<String>,
    /// Only a comment (`:keepalive`).
    pub(crate) comment: bool,
}

impl Frame {
    /// The data as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).expect("JSON data")
    }
}

/// What reading the next frame gave.
#[derive(Debug)]
pub(crate) enum Next {
    Frame(Frame),
    /// The body ended cleanly.
    End,
    /// The body failed mid-way (the connection was cut).
    Cut,
}

/// Splits an SSE body (or a plain JSON-lines body, with `lines`) into frames.
pub(crate) struct Frames {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    buf: Vec<u8>,
    lines: bool,
}

impl std::fmt::Debug for Frames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frames")
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl Frames {
    /// SSE framing.
    pub(crate) fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buf: Vec::new(),
            lines: false,
        }
    }

    /// Plain `/event-stream` framing: one JSON object (or empty line) per line.
    pub(crate) fn lines(response: reqwest::Response) -> Self {
        Self {
            lines: true,
            ..Self::new(response)
        }
    }

    /// The next frame, the end, or a cut, within the tests' [`patience`].
    pub(crate) async fn next(&mut self) -> Next {
        within(self.read()).await
    }

    /// The next frame within `wait`, or `None` if nothing complete came.
    pub(crate) async fn within(&mut self, wait: Duration) -> Option<Next> {
        tokio::time::timeout(wait, self.read()).await.ok()
    }

    /// The next frame; panics on end or cut.
    pub(crate) async fn frame(&mut self) -> Frame {
        match self.next().await {
            Next::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame that is not a keepalive comment.
    pub(crate) async fn event(&mut self) -> Frame {
        loop {
            let frame = self.frame().await;
            if !frame.comment {
                return frame;
            }
        }
    }

    /// The next `message` event's data as JSON.
    pub(crate) async fn message(&mut self) -> Value {
        let frame = self.event().await;
        assert_eq!(frame.event.as_deref(), Some("message"), "{frame:?}");
        frame.json()
    }

    /// Reads events until the stream ends or is cut; returns what came and how it ended.
    pub(crate) async fn rest(&mut self) -> (Vec<Frame>, Next) {
        let mut frames = Vec::new();
        loop {
            match self.next().await {
                Next::Frame(frame) => frames.push(frame),
                end => return (frames, end),
            }
        }
    }

    async fn read(&mut self) -> Next {
        loop {
            let separator: &[u8] = if self.lines { b"\n" } else { b"\n\n" };
            if let Some(at) = find(&self.buf, separator) {
                let raw: Vec<u8> = self.buf.drain(..at + separator.len()).collect();
                let raw = String::from_utf8(raw[..at].to_vec()).expect("UTF-8 stream");
                return Next::Frame(if self.lines {
                    parse_line(raw)
                } else {
                    parse_sse(&raw)
                });
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(_)) => return Next::Cut,
                None if self.buf.is_empty() => return Next::End,
                None => return Next::Cut,
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_sse(raw: &str) -> Frame {
    let mut frame = Frame {
        raw: raw.to_owned(),
        id: None,
        event: None,
        data: None,
        comment: true,
    };
    for line in raw.split('\n') {
        if line.starts_with(':') {
            continue;
        }
        frame.comment = false;
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "id" => frame.id = Some(value),
            "event" => frame.event = Some(value),
            "data" => {
                frame.data = Some(match frame.data.take() {
                    Some(earlier) => format!("{earlier}\n{value}"),
                    None => value,
                });
            }
            other => panic!("unexpected SSE field {other:?} in {raw:?}"),
        }
    }
    frame
}

fn parse_line(raw: String) -> Frame {
    if raw.is_empty() {
        return Frame {
            raw,
            id: None,
            event: None,
            data: None,
            comment: true,
        };
    }
    let value: Value = serde_json::from_str(&raw).expect("a JSON line");
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Frame {
        id: value.get("id").and_then(text),
        event: value.get("event").and_then(text),
        data: value.get("data").map(|d| match d {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        comment: false,
        raw,
    }
}

/// The test key, parsed.
pub(crate) fn api_key() -> ApiKey {
    ApiKey::parse(KEY).unwrap()
}

/// A JWT signed with [`KEY`], valid from now for `ttl_secs`, with `capability`
/// and `client_id`.
pub(crate) fn jwt(
    mock: &MockAbly,
    capability: &str,
    client_id: Option<&str>,
    ttl_secs: u64,
) -> String {
    let now = mock.now_ms() / 1000;
    let mut claims = AblyJwtClaims::new(now, now + ttl_secs, capability);
    claims.client_id = client_id.map(str::to_owned);
    encode_jwt(&api_key(), &claims).unwrap()
}

/// A TokenRequest signed with [`KEY`] at the mock's current time.
pub(crate) fn token_request(mock: &MockAbly, params: TokenParams) -> TokenRequest {
    TokenRequest::new_signed(&api_key(), params, mock.now_ms()).unwrap()
}

/// Base64 of `text`, as ably-js sends Bearer tokens.
pub(crate) fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
