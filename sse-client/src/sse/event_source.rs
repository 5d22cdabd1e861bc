//! The reconnecting stream: browser `EventSource` semantics over reqwest,
//! with a per-attempt request hook.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;

use super::backoff::{Jitter, ReconnectOptions};
use super::connection::{self, Body, Request};
use super::parser::{Event, Frame, Limits, Parser};
use crate::error::{Error, Result};

/// What the request hook is told before each connection attempt.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Attempt {
    /// 1 for the first connection, then one more for each attempt.
    pub number: u32,
    /// The last event ID (empty when there is none). The stream sends it as
    /// `Last-Event-ID` itself; it is here for hooks that resume another way,
    /// such as Ably's `lastEvent` query parameter.
    pub last_event_id: String,
    /// Why the previous connection failed or ended; `None` on the first
    /// attempt and after [`EventSource::restart`].
    pub previous_error: Option<Arc<Error>>,
}

/// What the stream yields, besides a final [`Error`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Item {
    /// A connection opened: 200 with `text/event-stream`. Carries the
    /// response headers.
    Open(HeaderMap),
    /// An event.
    Event(Event),
    /// A comment line, such as a keepalive.
    Comment(String),
    /// The connection failed or ended; the stream reconnects after `delay`.
    Reconnecting {
        /// What went wrong.
        error: Arc<Error>,
        /// How long the stream waits before the next attempt.
        delay: Duration,
    },
}

type Hook = Box<dyn FnMut(Attempt) -> BoxFuture<'static, Result<Request>> + Send>;

/// Builds an [`EventSource`].
pub struct EventSourceBuilder {
    client: Option<reqwest::Client>,
    hook: Hook,
    reconnect: ReconnectOptions,
    headers_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    limits: Limits,
    last_event_id: String,
}

impl fmt::Debug for EventSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSourceBuilder")
            .field("reconnect", &self.reconnect)
            .field("headers_timeout", &self.headers_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The default read timeout: five minutes without a byte means the
/// connection is dead.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The default headers timeout: a server that has not answered a request
/// within 10 s (ably-js's `httpRequestTimeout`) is treated as down.
pub const DEFAULT_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);

impl EventSourceBuilder {
    /// The reqwest client to use. Default: one with a 10 s connect timeout
    /// and no total timeout. A client with a total `timeout` would cut
    /// healthy streams; use [`EventSourceBuilder::read_timeout`] instead.
    #[must_use]
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// How to reconnect. Default [`ReconnectOptions::default`].
    #[must_use]
    pub fn reconnect(mut self, options: ReconnectOptions) -> Self {
        self.reconnect = options;
        self
    }

    /// The longest wait for the response headers of each attempt, from
    /// when the request is sent; a server that accepts the connection and
    /// stalls fails the attempt with [`Error::HeadersTimeout`], which is
    /// retried. It does not limit the body: that is
    /// [`EventSourceBuilder::read_timeout`]. Default
    /// [`DEFAULT_HEADERS_TIMEOUT`]; `None` waits forever.
    #[must_use]
    pub fn headers_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.headers_timeout = timeout;
        self
    }

    /// The longest wait for the next bytes of an open stream before it is
    /// treated as dead and reconnected. Default [`DEFAULT_READ_TIMEOUT`];
    /// `None` waits forever. There is never a total-request timeout.
    #[must_use]
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Caps on line and event size. Default [`Limits::default`].
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The last event ID to start from, sent as `Last-Event-ID` on the first
    /// request. Default empty (not sent).
    #[must_use]
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// Builds the stream. Nothing is sent until it is first polled.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the default reqwest client cannot be built (no
    /// TLS backend).
    pub fn build(self) -> Result<EventSource> {
        let client = match self.client {
            Some(client) => client,
            None => default_client()?,
        };
        let mut parser = Parser::new(self.limits);
        parser.set_last_event_id(self.last_event_id);
        Ok(EventSource {
            client,
            hook: self.hook,
            reconnection_time: self.reconnect.initial_delay,
            reconnect: self.reconnect,
            headers_timeout: self.headers_timeout,
            read_timeout: self.read_timeout,
            parser,
            state: State::Connecting,
            attempts: 0,
            failures: 0,
            delivered: false,
            previous_error: None,
            fatal: None,
            jitter: Jitter::new(),
        })
    }
}

/// The reqwest client used when none is given: a connect timeout, no total
/// timeout, redirects followed (up to 10).
pub(crate) fn default_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|err| Error::Config(format!("cannot build HTTP client: {err}")))
}

enum State {
    Connecting,
    Waiting(Pin<Box<tokio::time::Sleep>>),
    Open(Body),
    Closed,
}

/// A reconnecting event stream with browser `EventSource` semantics.
///
/// - `retry:` sets the reconnection time (no lower than
///   [`ReconnectOptions::retry_floor`]); failures in a row double it, up to
///   [`ReconnectOptions::max_delay`], with jitter. The count resets only
///   after a connection that delivered an event.
/// - The last event ID carries over every reconnection and is sent as
///   `Last-Event-ID` only when it is not empty.
/// - A network error, a headers or read timeout, or the body ending
///   reconnects. Any status but 200 (204 is how a server says stop), or a
///   content type other than `text/event-stream`, ends the stream, unless
///   [`ReconnectOptions::retry_server_errors`] retries 5xx and 429.
/// - Redirects are followed; every reconnection starts from the hook again,
///   so it goes to the original URL.
///
/// Read it with [`EventSource::next`] or as a [`Stream`] via
/// [`EventSource::into_stream`]. An `Err` is always the last item. Dropping
/// the stream cancels whatever is in flight.
///
/// ```no_run
/// use sse_client::sse::{EventSource, Item, Request};
///
/// # async fn run() -> sse_client::Result<()> {
/// let mut events = EventSource::get("http://127.0.0.1:8080/events")?.build()?;
/// while let Some(item) = events.next().await {
///     if let Item::Event(event) = item? {
///         println!("{}: {}", event.event_type(), event.data());
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct EventSource {
    client: reqwest::Client,
    hook: Hook,
    reconnect: ReconnectOptions,
    headers_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    reconnection_time: Duration,
    parser: Parser,
    state: State,
    attempts: u32,
    /// Connections in a row that failed or delivered nothing.
    failures: u32,
    /// Whether the open connection has delivered an event.
    delivered: bool,
    previous_error: Option<Arc<Error>>,
    /// The error that ends the stream once the queued events are out.
    fatal: Option<Error>,
    jitter: Jitter,
}

impl fmt::Debug for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Connecting => "connecting",
            State::Waiting(_) => "waiting",
            State::Open(_) => "open",
            State::Closed => "closed",
        };
        f.debug_struct("EventSource")
            .field("state", &state)
            .field("last_event_id", &self.parser.last_event_id())
            .field("reconnection_time", &self.reconnection_time)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl EventSource {
    /// A stream of `GET url`, the same request on every attempt.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `url` does not parse or is not `http`/`https`.
    pub fn get(url: &str) -> Result<EventSourceBuilder> {
        let request = Request::get(url)?;
        Ok(Self::with_request(request))
    }

    /// A stream that sends `request` on every attempt.
    pub fn with_request(request: Request) -> EventSourceBuilder {
        Self::with_hook(move |_| {
            let request = request.clone();
            async move { Ok(request) }
        })
    }

    /// A stream that asks `hook` for the request before every attempt. The
    /// hook sees the attempt number, the last event ID and the previous error,
    /// so it can refresh a token or change the URL. An error from the hook
    /// fails the attempt: retryable errors are retried like any other.
    ///
    /// ```no_run
    /// use sse_client::sse::{EventSource, Request};
    ///
    /// # async fn fresh_token() -> String { String::new() }
    /// # fn run() -> sse_client::Result<()> {
    /// let events = EventSource::with_hook(|attempt| async move {
    ///     // attempt.last_event_id and attempt.previous_error are here too.
    ///     let token = fresh_token().await;
    ///     Request::get("http://127.0.0.1:8080/events")?
    ///         .header("Authorization", &format!("Bearer {token}"))
    /// })
    /// .build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_hook<F, Fut>(mut hook: F) -> EventSourceBuilder
    where
        F: FnMut(Attempt) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Request>> + Send + 'static,
    {
        EventSourceBuilder {
            client: None,
            hook: Box::new(move |attempt| Box::pin(hook(attempt))),
            reconnect: ReconnectOptions::default(),
            headers_timeout: Some(DEFAULT_HEADERS_TIMEOUT),
            read_timeout: Some(DEFAULT_READ_TIMEOUT),
            limits: Limits::default(),
            last_event_id: String::new(),
        }
    }

    /// The last event ID: what the next reconnection sends.
    pub fn last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }

    /// The current reconnection time: the initial delay, or the server's
    /// latest `retry:`.
    pub fn reconnection_time(&self) -> Duration {
        self.reconnection_time
    }

    /// Drops the current connection (or wait) and connects again at once,
    /// keeping the last event ID.
    pub fn restart(&mut self) {
        if matches!(self.state, State::Closed) {
            return;
        }
        if matches!(self.state, State::Open(_)) && self.delivered {
            self.failures = 0;
        }
        self.delivered = false;
        self.parser.reset();
        self.previous_error = None;
        self.state = State::Connecting;
    }

    /// Closes the stream: no more requests, no more items.
    pub fn close(&mut self) {
        self.state = State::Closed;
        self.fatal = None;
        self.parser.reset();
        while self.parser.next_frame().is_some() {}
    }

    /// The stream as a [`Stream`]. Dropping it cancels everything in flight.
    pub fn into_stream(self) -> impl Stream<Item = Result<Item>> + Send + Unpin {
        Box::pin(futures_util::stream::unfold(
            self,
            |mut source| async move {
                let item = source.next().await?;
                Some((item, source))
            },
        ))
    }

    /// The next item; `None` once the stream has ended. An `Err` is always
    /// followed by `None`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, no event
    /// is lost or repeated. Events are handed out from the parser's queue
    /// with no `.await` in between, bytes read go straight into the parser,
    /// and a backoff wait keeps its deadline. A connection being opened (the
    /// hook's future, or a request awaiting its response) is abandoned and
    /// made again by the next call, with the same `Last-Event-ID` and the
    /// next [`Attempt::number`]; the read timeout starts over at each call.
    pub async fn next(&mut self) -> Option<Result<Item>> {
        loop {
            if let Some(frame) = self.parser.next_frame() {
                match frame {
                    Frame::Event(event) => {
                        self.delivered = true;
                        return Some(Ok(Item::Event(event)));
                    }
                    Frame::Comment(text) => return Some(Ok(Item::Comment(text))),
                    Frame::Retry(time) => {
                        self.reconnection_time = self.reconnect.reconnection_time(time);
                        continue;
                    }
                }
            }
            match &mut self.state {
                State::Closed => return self.fatal.take().map(Err),
                State::Waiting(sleep) => {
                    sleep.as_mut().await;
                    self.state = State::Connecting;
                }
                State::Connecting => match self.connect().await {
                    Ok((headers, body)) => {
                        self.state = State::Open(body);
                        return Some(Ok(Item::Open(headers)));
                    }
                    Err(err) => return Some(self.fail(err)),
                },
                State::Open(body) => match body.chunk().await {
                    Ok(Some(chunk)) => {
                        if let Err(err) = self.parser.feed(&chunk) {
                            // A broken stream is not read further; the events
                            // before the offending line still go out first.
                            self.state = State::Closed;
                            self.fatal = Some(err);
                        }
                    }
                    Ok(None) => return Some(self.fail(Error::StreamEnded)),
                    Err(err) => return Some(self.fail(err)),
                },
            }
        }
    }

    async fn connect(&mut self) -> Result<(HeaderMap, Body)> {
        self.attempts = self.attempts.saturating_add(1);
        let attempt = Attempt {
            number: self.attempts,
            last_event_id: self.parser.last_event_id().to_owned(),
            previous_error: self.previous_error.clone(),
        };
        let request = (self.hook)(attempt).await?;
        let response = connection::within(
            self.headers_timeout,
            Error::HeadersTimeout,
            connection::send(&self.client, &request, self.parser.last_event_id()),
        )
        .await?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(Error::Status { status });
        }
        if !connection::is_event_stream(response.headers()) {
            return Err(Error::ContentType(connection::content_type(
                response.headers(),
            )));
        }
        self.parser.reset();
        self.delivered = false;
        let headers = response.headers().clone();
        Ok((headers, Body::new(response, self.read_timeout)))
    }

    /// Counts a failed or finished connection.
    fn end_connection(&mut self) {
        if matches!(self.state, State::Open(_)) && self.delivered {
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
        }
        self.delivered = false;
        self.parser.reset();
    }

    /// Handles a failure: schedules a reconnection, or ends the stream.
    fn fail(&mut self, err: Error) -> Result<Item> {
        self.end_connection();
        let retry = match &err {
            Error::Status { .. } => self.reconnect.retry_server_errors && err.is_retryable(),
            _ => err.is_retryable(),
        };
        if !retry {
            self.state = State::Closed;
            return Err(err);
        }
        if let Some(max) = self.reconnect.max_retries
            && self.failures > max
        {
            self.state = State::Closed;
            return Err(Error::RetriesExhausted {
                attempts: self.failures,
                last: Box::new(err),
            });
        }
        // The first reconnection after a good connection waits the plain
        // reconnection time; each failure in a row doubles it.
        let delay = self.reconnect.delay(
            self.reconnection_time,
            self.failures.saturating_sub(1),
            self.jitter.sample(),
        );
        let error = Arc::new(err);
        self.previous_error = Some(Arc::clone(&error));
        self.state = State::Waiting(Box::pin(tokio::time::sleep(delay)));
        Ok(Item::Reconnecting { error, delay })
    }
}
