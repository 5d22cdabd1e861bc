//! The Ably client: configuration shared by every subscription.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::auth::Auth;
use super::rewind::Rewind;
use super::subscription::Subscription;
use crate::error::{Error, Result};
use crate::sse::{DEFAULT_HEADERS_TIMEOUT, Limits, ReconnectOptions};

/// Ably's production endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://main.realtime.ably.net";

/// How long Ably keeps a connection's state for a resume
/// (`docs/protocol.md#continuity-and-resume`).
pub const RESUME_WINDOW: Duration = Duration::from_secs(120);

/// The default limit on each step of getting a credential (auth URL,
/// `requestToken`, auth callback): 10 s, as ably-js's `authCallback`
/// timeout and `httpRequestTimeout`.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// What every subscription of a [`Client`] shares.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) endpoint: Url,
    pub(crate) auth: Auth,
    pub(crate) reconnect: ReconnectOptions,
    pub(crate) headers_timeout: Option<Duration>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) auth_timeout: Option<Duration>,
    pub(crate) limits: Limits,
    pub(crate) resume_window: Duration,
    pub(crate) max_token_renewals: u32,
    pub(crate) renew_before: Duration,
    pub(crate) recent_ids: usize,
}

/// Subscribes to Ably channels over SSE. Cheap to clone; build one and reuse
/// it.
#[derive(Clone)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) config: Arc<Config>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder with every default.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Subscribes to the channels in `options`. Nothing is sent until the
    /// subscription is first polled. Options that
    /// [`SubscribeOptions::validate`] refuses make the subscription yield
    /// that [`Error::Config`] as its only item, before any request.
    pub fn subscribe(&self, options: SubscribeOptions) -> Subscription {
        Subscription::new(self.clone(), options)
    }
}

/// Builds a [`Client`]. Every setter's doc gives its default.
pub struct ClientBuilder {
    endpoint: String,
    auth: Option<Auth>,
    reconnect: ReconnectOptions,
    headers_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    auth_timeout: Option<Duration>,
    limits: Limits,
    resume_window: Duration,
    max_token_renewals: u32,
    renew_before: Duration,
    recent_ids: usize,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            auth: None,
            reconnect: ReconnectOptions::default(),
            headers_timeout: Some(DEFAULT_HEADERS_TIMEOUT),
            read_timeout: Some(Duration::from_secs(60)),
            auth_timeout: Some(DEFAULT_AUTH_TIMEOUT),
            limits: Limits::default(),
            resume_window: RESUME_WINDOW,
            max_token_renewals: 3,
            renew_before: Duration::from_secs(30),
            recent_ids: 10_000,
            http: None,
        }
    }
}

impl ClientBuilder {
    /// The Ably endpoint serving `/sse` and `/keys/…/requestToken`. Default
    /// [`DEFAULT_ENDPOINT`].
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// Where credentials come from. Required.
    #[must_use]
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Backoff for network errors and 5xx: `initial_delay`, `max_delay`,
    /// `jitter` and `max_retries` apply (Ably's `retry:` is not used, and
    /// which errors are retried is Ably's rule, not `retry_server_errors`).
    /// Default [`ReconnectOptions::default`]; keep `max_delay` well inside
    /// the two-minute resume window.
    #[must_use]
    pub fn reconnect(mut self, options: ReconnectOptions) -> Self {
        self.reconnect = options;
        self
    }

    /// The longest wait for the response to a stream request (its headers,
    /// and the body of an error response) before the attempt fails with
    /// [`Error::HeadersTimeout`] and is retried. It does not limit an open
    /// stream: that is [`ClientBuilder::read_timeout`]. Default
    /// [`DEFAULT_HEADERS_TIMEOUT`] (10 s, ably-js's `httpRequestTimeout`);
    /// `None` waits forever.
    #[must_use]
    pub fn headers_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.headers_timeout = timeout;
        self
    }

    /// The longest wait for each step of getting a credential: the auth URL
    /// request (reply included), the `requestToken` exchange, the auth
    /// callback. A step that takes longer fails with [`Error::AuthTimeout`],
    /// which is retried. Default [`DEFAULT_AUTH_TIMEOUT`] (10 s, as ably-js
    /// waits for an `authCallback`); `None` waits forever.
    #[must_use]
    pub fn auth_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// The longest silence on an open stream before it is treated as dead.
    /// Default 60 s (Ably sends keepalives far more often).
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

    /// How long after a disconnection a resume with `lastEvent` is still
    /// attempted; past it the subscription reports
    /// [`StateChange::ContinuityLost`](super::StateChange::ContinuityLost)
    /// and starts fresh. Default [`RESUME_WINDOW`] (two minutes).
    #[must_use]
    pub fn resume_window(mut self, window: Duration) -> Self {
        self.resume_window = window;
        self
    }

    /// How many token errors in a row, with no message in between, are
    /// answered with a new token before giving up (a wrong signing secret
    /// would otherwise loop forever). Default 3.
    #[must_use]
    pub fn max_token_renewals(mut self, renewals: u32) -> Self {
        self.max_token_renewals = renewals;
        self
    }

    /// How long before a known expiry (JWT `exp`, TokenDetails `expires`) the
    /// token is renewed and the stream switched. Default 30 s, and never more
    /// than half the token's remaining life.
    #[must_use]
    pub fn renew_before(mut self, margin: Duration) -> Self {
        self.renew_before = margin;
        self
    }

    /// How many recent message ids are remembered to drop duplicates across
    /// reconnections. Default 10 000.
    #[must_use]
    pub fn recent_ids(mut self, count: usize) -> Self {
        self.recent_ids = count;
        self
    }

    /// The reqwest client to use. It must have no total timeout. Default: a
    /// 10 s connect timeout.
    #[must_use]
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if no auth was given, the endpoint is not an
    /// `http`/`https` URL, or the HTTP client cannot be built.
    pub fn build(self) -> Result<Client> {
        let auth = self.auth.ok_or_else(|| {
            Error::Config("no auth: give an auth URL, callback, token or key".into())
        })?;
        let endpoint = Url::parse(&self.endpoint)
            .map_err(|err| Error::Config(format!("invalid endpoint {:?}: {err}", self.endpoint)))?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.cannot_be_a_base() {
            return Err(Error::Config(format!(
                "endpoint must be an http or https URL, got {:?}",
                self.endpoint
            )));
        }
        let http = match self.http {
            Some(http) => http,
            None => crate::sse::default_client()?,
        };
        Ok(Client {
            http,
            config: Arc::new(Config {
                endpoint,
                auth,
                reconnect: self.reconnect,
                headers_timeout: self.headers_timeout,
                read_timeout: self.read_timeout,
                auth_timeout: self.auth_timeout,
                limits: self.limits,
                resume_window: self.resume_window,
                max_token_renewals: self.max_token_renewals,
                renew_before: self.renew_before,
                recent_ids: self.recent_ids,
            }),
        })
    }
}

/// What to subscribe to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    pub(crate) channels: Vec<String>,
    pub(crate) rewind: Option<Rewind>,
    pub(crate) delta: bool,
    pub(crate) enveloped: bool,
    pub(crate) heartbeats: bool,
    pub(crate) last_event: Option<String>,
}

impl SubscribeOptions {
    /// One or more channels. A name may carry a qualifier, such as
    /// `[?rewind=1]news` or `[?delta=vcdiff]scores`
    /// (`docs/protocol.md#channel-qualifiers`), or be a metachannel such as
    /// `[meta]stats:minute`.
    pub fn new<I, S>(channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            channels: channels.into_iter().map(Into::into).collect(),
            rewind: None,
            delta: false,
            enveloped: true,
            heartbeats: false,
            last_event: None,
        }
    }

    /// Backlog on a fresh start: a count of messages
    /// ([`Rewind::Messages`], or a `u32`) or a time span
    /// ([`Rewind::Duration`], or a `Duration`). Ignored while resuming.
    /// Default none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sse_client::ably::{Rewind, SubscribeOptions};
    ///
    /// let last_ten = SubscribeOptions::new(["chat:lobby"]).rewind(10);
    /// let last_two_minutes = SubscribeOptions::new(["chat:lobby"]).rewind(Duration::from_secs(120));
    /// let from_text = SubscribeOptions::new(["chat:lobby"]).rewind("2m".parse::<Rewind>()?);
    /// assert_eq!(last_two_minutes, from_text);
    /// # let _ = last_ten;
    /// # Ok::<(), sse_client::ably::ParseRewindError>(())
    /// ```
    #[must_use]
    pub fn rewind(mut self, rewind: impl Into<Rewind>) -> Self {
        self.rewind = Some(rewind.into());
        self
    }

    /// Ask for vcdiff deltas (`delta=vcdiff`). Default off. With
    /// unenveloped messages, only on a single channel (see
    /// [`SubscribeOptions::validate`]).
    #[must_use]
    pub fn delta(mut self, delta: bool) -> Self {
        self.delta = delta;
        self
    }

    /// Messages wrapped in their envelope (the default) or bare payloads
    /// (`enveloped=false`).
    #[must_use]
    pub fn enveloped(mut self, enveloped: bool) -> Self {
        self.enveloped = enveloped;
        self
    }

    /// Ask for explicit heartbeat events (`heartbeats=true`). Default off.
    #[must_use]
    pub fn heartbeats(mut self, heartbeats: bool) -> Self {
        self.heartbeats = heartbeats;
        self
    }

    /// Resume after this SSE event id (`lastEvent`), e.g. one saved from
    /// [`ChannelMessage::event_id`](super::ChannelMessage::event_id).
    #[must_use]
    pub fn last_event(mut self, id: impl Into<String>) -> Self {
        self.last_event = Some(id.into()).filter(|id| !id.is_empty());
        self
    }

    /// Checks that the options can work safely.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for deltas (`delta(true)` or a `[?delta=…]`
    /// qualifier) with unenveloped messages on more than one channel: an
    /// unenveloped frame does not say which channel it comes from, so a
    /// delta could be applied to another channel's payload and deliver
    /// wrong data. Use enveloped messages, or one subscription per channel.
    pub fn validate(&self) -> Result<()> {
        if !self.enveloped && self.channels.len() > 1 && self.wants_deltas() {
            return Err(Error::Config(
                "deltas with unenveloped messages need a single channel: an unenveloped message \
                 does not name its channel, so a delta could apply to another channel's payload"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether deltas are asked for: on every channel, or on one by a
    /// `[?delta=…]` qualifier (`docs/protocol.md#channel-qualifiers`).
    pub(crate) fn wants_deltas(&self) -> bool {
        self.delta
            || self.channels.iter().any(|name| {
                name.strip_prefix('[')
                    .and_then(|rest| rest.split_once(']'))
                    .is_some_and(|(qualifier, _)| qualifier.contains("delta="))
            })
    }

    /// The channel every message comes from, when there is only one: its
    /// name without a `[?…]` qualifier.
    pub(crate) fn only_channel(&self) -> Option<String> {
        match self.channels.as_slice() {
            [one] => Some(
                match one.strip_prefix("[?") {
                    Some(rest) => rest.split_once(']').map_or(one.as_str(), |(_, name)| name),
                    None => one,
                }
                .to_owned(),
            ),
            _ => None,
        }
    }

    /// The `channels` value and, when a name contains a comma, the
    /// `separator` that keeps the names apart
    /// (`docs/protocol.md#channel-lists-and-separators`).
    pub(crate) fn channels_param(&self) -> (String, Option<&'static str>) {
        if !self.channels.iter().any(|name| name.contains(',')) {
            return (self.channels.join(","), None);
        }
        let separator = ["|", ";", "~", "^", "\u{1}"]
            .into_iter()
            .find(|sep| !self.channels.iter().any(|name| name.contains(sep)))
            .unwrap_or("\u{1}");
        (self.channels.join(separator), Some(separator))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_only_channel_loses_its_qualifier() {
        assert_eq!(
            SubscribeOptions::new(["[?rewind=1]news"])
                .only_channel()
                .as_deref(),
            Some("news")
        );
        assert_eq!(
            SubscribeOptions::new(["[meta]log"])
                .only_channel()
                .as_deref(),
            Some("[meta]log")
        );
        assert_eq!(SubscribeOptions::new(["a", "b"]).only_channel(), None);
    }

    #[test]
    fn names_with_commas_get_a_separator() {
        assert_eq!(
            SubscribeOptions::new(["a", "b"]).channels_param(),
            ("a,b".to_owned(), None)
        );
        assert_eq!(
            SubscribeOptions::new(["fo,o", "ba,r"]).channels_param(),
            ("fo,o|ba,r".to_owned(), Some("|"))
        );
    }

    #[test]
    fn unenveloped_deltas_are_refused_on_more_than_one_channel() {
        let refused = [
            SubscribeOptions::new(["a", "b"])
                .enveloped(false)
                .delta(true),
            SubscribeOptions::new(["[?delta=vcdiff]a", "b"]).enveloped(false),
            SubscribeOptions::new(["a", "[meta?delta=vcdiff]b"]).enveloped(false),
        ];
        for options in refused {
            assert!(
                matches!(options.validate(), Err(Error::Config(_))),
                "{options:?}"
            );
        }
        let fine = [
            SubscribeOptions::new(["a"]).enveloped(false).delta(true),
            SubscribeOptions::new(["[?delta=vcdiff]a"]).enveloped(false),
            SubscribeOptions::new(["a", "b"]).delta(true),
            SubscribeOptions::new(["a", "b"]).enveloped(false),
            SubscribeOptions::new(["[?rewind=1]a", "b"]).enveloped(false),
        ];
        for options in fine {
            assert!(options.validate().is_ok(), "{options:?}");
        }
    }

    #[test]
    fn build_needs_auth_and_an_http_endpoint() {
        assert!(matches!(Client::builder().build(), Err(Error::Config(_))));
        let bad = Client::builder()
            .auth(Auth::token("t"))
            .endpoint("mailto:x@example.com")
            .build();
        assert!(matches!(bad, Err(Error::Config(_))));
    }
}
