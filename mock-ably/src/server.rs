//! [`MockAbly`], the handle on a running mock, and its builder.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use shared::token::{DEFAULT_TTL_MS, TokenDetails, TokenParams};
use shared::{ApiKey, Capability, Message};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::apps::{DEFAULT_MAX_APPS, Provisioner};
use crate::auth::issue_token;
use crate::faults::FailNext;
use crate::keys::KeySpec;
use crate::publish;
use crate::routes::router;
use crate::state::{AppState, KeyEntry, Settings, lock};
use crate::stats::Stats;

/// The key the mock accepts when it is given none: `mockApp.devKey:mock-ably-dev-secret`.
///
/// It is public on purpose: it only ever unlocks a mock on your own machine.
/// Like any key given without a capability, it gets Ably's default,
/// [`DEFAULT_KEY_CAPABILITY`](crate::DEFAULT_KEY_CAPABILITY) (`{"*":["*"]}`: every ordinary channel, no
/// `[meta]` ones).
pub const DEV_KEY: &str = "mockApp.devKey:mock-ably-dev-secret";

/// How long messages are kept for history, resume and rewind unless
/// [`MockAblyBuilder::retention`] says otherwise: Ably's two minutes
/// (`docs/protocol.md#continuity-and-resume`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(120);

/// How many messages each channel keeps at most, by default.
pub const DEFAULT_RETENTION_COUNT: usize = 10_000;

/// The keepalive interval of an idle stream, by default.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);

/// How many messages a stream may fall behind (backlog yet to send
/// included) before it is disconnected, by default.
pub const DEFAULT_LAG_LIMIT: usize = 10_000;

/// The `maxIdleInterval` a realtime connection is told on CONNECTED, by
/// default (CD2h); it gets a HEARTBEAT after half of it without a frame.
pub const DEFAULT_MAX_IDLE_INTERVAL: Duration = Duration::from_secs(15);

/// How long before a credential expires a realtime connection is sent AUTH,
/// by default (none for a credential with less life left).
pub const DEFAULT_AUTH_LEAD: Duration = Duration::from_secs(30);

/// How long the members of a realtime connection lost without CLOSE stay
/// present, by default: 15 s, as Ably documents for abrupt disconnections.
pub const DEFAULT_REMAIN_PRESENT_FOR: Duration = Duration::from_secs(15);

/// How long one request may take, its body's arrival included, by default:
/// 10 s, as auth-server's `AUTH_REQUEST_TIMEOUT`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a dropped realtime connection stays resumable, by default:
/// Ably's `connectionStateTtl` of two minutes (CD2f).
pub const DEFAULT_CONNECTION_STATE_TTL: Duration = Duration::from_secs(120);

/// Configures and starts a [`MockAbly`]. Made by [`MockAbly::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct MockAblyBuilder {
    keys: Vec<KeyEntry>,
    retention: Duration,
    retention_count: usize,
    keepalive: Duration,
    lag_limit: usize,
    max_idle_interval: Duration,
    connection_state_ttl: Duration,
    auth_lead: Duration,
    remain_present_for: Duration,
    request_timeout: Duration,
    limits: serve::Limits,
    listener: Option<std::net::TcpListener>,
    /// Live apps `POST /apps` may hold; 0 for none (an app's own server).
    max_apps: usize,
}

impl Default for MockAblyBuilder {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            retention: DEFAULT_RETENTION,
            retention_count: DEFAULT_RETENTION_COUNT,
            keepalive: DEFAULT_KEEPALIVE,
            lag_limit: DEFAULT_LAG_LIMIT,
            max_idle_interval: DEFAULT_MAX_IDLE_INTERVAL,
            connection_state_ttl: DEFAULT_CONNECTION_STATE_TTL,
            auth_lead: DEFAULT_AUTH_LEAD,
            remain_present_for: DEFAULT_REMAIN_PRESENT_FOR,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            limits: serve::Limits::default(),
            listener: None,
            max_apps: DEFAULT_MAX_APPS,
        }
    }
}

impl MockAblyBuilder {
    /// Accepts the API key `appId.keyId:secret`, optionally followed by
    /// `=` and its capability as JSON
    /// (`app.key:secret={"chat:*":["subscribe"]}`, see [`KeySpec`]); without
    /// one it gets Ably's default, [`DEFAULT_KEY_CAPABILITY`](crate::DEFAULT_KEY_CAPABILITY)
    /// (`{"*":["*"]}`, which does not cover `[meta]` channels). Call it again
    /// for more keys. With no key at all, the mock accepts [`DEV_KEY`].
    ///
    /// # Panics
    ///
    /// If `key` is not a valid key or its capability is invalid (the message
    /// names the key, never the secret). [`KeySpec::parse`] and
    /// [`MockAblyBuilder::key_spec`] check without panicking.
    pub fn key(self, key: &str) -> Self {
        let spec = KeySpec::parse(key).unwrap_or_else(|err| panic!("mock-ably: {err}"));
        self.key_spec(spec)
    }

    /// Accepts `key` (`appId.keyId:secret`) with only `capability` (JSON text
    /// such as `{"chat:*":["subscribe"]}`): tokens and JWTs signed with it get
    /// at most that (`docs/protocol.md#capability-intersection`).
    ///
    /// # Panics
    ///
    /// If `key` or `capability` is invalid.
    pub fn key_with_capability(self, key: &str, capability: &str) -> Self {
        let key = ApiKey::parse(key).unwrap_or_else(|err| panic!("mock-ably: {err}"));
        let spec = KeySpec::with_capability(key, capability)
            .unwrap_or_else(|err| panic!("mock-ably: {err}"));
        self.key_spec(spec)
    }

    /// Accepts a key parsed with [`KeySpec::parse`].
    pub fn key_spec(mut self, spec: KeySpec) -> Self {
        let (key, capability) = spec.into_parts();
        self.keys.push(KeyEntry {
            key,
            capability,
            revocable: true,
        });
        self
    }

    /// How long messages are kept for history, `lastEvent` resume and
    /// `rewind` (default [`DEFAULT_RETENTION`], two minutes).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How many messages each channel keeps at most (default
    /// [`DEFAULT_RETENTION_COUNT`]). Lower it to test resuming from a cursor
    /// that retention no longer covers.
    pub fn retention_count(mut self, count: usize) -> Self {
        self.retention_count = count;
        self
    }

    /// How long a stream may stay silent before it gets a `:keepalive` (or
    /// a heartbeat): one goes out one interval after the stream's last frame,
    /// message or keepalive (default [`DEFAULT_KEEPALIVE`], 15 s).
    pub fn keepalive(mut self, keepalive: Duration) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// How many unsent messages a stream may owe, its backlog from a resume
    /// or rewind included, before a new message disconnects it (default
    /// [`DEFAULT_LAG_LIMIT`]).
    pub fn lag_limit(mut self, limit: usize) -> Self {
        self.lag_limit = limit.max(1);
        self
    }

    /// The `maxIdleInterval` realtime connections are told on CONNECTED
    /// (default [`DEFAULT_MAX_IDLE_INTERVAL`], 15 s). A connection gets a
    /// HEARTBEAT frame and a WebSocket ping once it has been sent nothing for
    /// half of it, and is dropped (resumable) when nothing, not even a pong,
    /// has arrived from the client for twice it. At least 2 ms.
    pub fn max_idle_interval(mut self, interval: Duration) -> Self {
        self.max_idle_interval = interval.max(Duration::from_millis(2));
        self
    }

    /// How long a realtime connection that was dropped (not closed) stays
    /// resumable, announced as `connectionStateTtl` (default
    /// [`DEFAULT_CONNECTION_STATE_TTL`], two minutes).
    pub fn connection_state_ttl(mut self, ttl: Duration) -> Self {
        self.connection_state_ttl = ttl;
        self
    }

    /// How long the presence members of a realtime connection lost without
    /// CLOSE stay present before the mock makes them leave, unless the
    /// connection resumes first (default [`DEFAULT_REMAIN_PRESENT_FOR`],
    /// 15 s). A client's `remainPresentFor` parameter overrides it for its
    /// connection.
    pub fn remain_present_for(mut self, window: Duration) -> Self {
        self.remain_present_for = window;
        self
    }

    /// How long before a token or JWT expires a realtime connection using it
    /// is sent AUTH, asking the client to renew (default
    /// [`DEFAULT_AUTH_LEAD`], 30 s). A credential with no more than this
    /// left gets no AUTH: it just expires (DISCONNECTED 40142).
    pub fn auth_lead(mut self, lead: Duration) -> Self {
        self.auth_lead = lead;
        self
    }

    /// How long one request may take, its body's arrival included, before it
    /// is answered 503 with code 50003 (default 10 s). A stream or a
    /// realtime connection is not cut: its response has begun.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a connection may take to send a complete request head, from
    /// the accept or from the first byte of a later request, before it is
    /// closed (default 10 s).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// How long a keep-alive connection may sit idle between requests
    /// before it is closed (default 60 s). An open stream is never idle,
    /// however long it stays silent.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// How many connections are served at once (default 10,000, lowered to
    /// fit the open-files limit); one more gets a 503 with code 50000 and is
    /// closed.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = max.max(1);
        self
    }

    /// How many test apps `POST /apps` may hold at once (default
    /// [`DEFAULT_MAX_APPS`], 100); one more is refused with 429/42910 until
    /// `DELETE /apps/{id}` frees a place. 0 turns provisioning off: `/apps`
    /// answers 404/40400.
    pub fn max_apps(mut self, max: usize) -> Self {
        self.max_apps = max;
        self
    }

    /// An app's own mock (`POST /apps`): `settings` (the creating mock's,
    /// with the app's keys), its connection limits, on `listener`, making no
    /// apps of its own.
    pub(crate) fn for_app(
        settings: Settings,
        limits: serve::Limits,
        listener: std::net::TcpListener,
    ) -> Self {
        Self {
            keys: settings.keys,
            retention: settings.retention,
            retention_count: settings.retention_count,
            keepalive: settings.keepalive,
            lag_limit: settings.lag_limit,
            max_idle_interval: settings.max_idle_interval,
            connection_state_ttl: settings.connection_state_ttl,
            auth_lead: settings.auth_lead,
            remain_present_for: settings.remain_present_for,
            request_timeout: settings.request_timeout,
            limits,
            listener: Some(listener),
            max_apps: 0,
        }
    }

    /// Serves on `listener` instead of binding `127.0.0.1:0`.
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Binds (unless given a listener), starts serving on the current tokio
    /// runtime, and returns the handle. The mock is ready when this returns.
    ///
    /// # Panics
    ///
    /// If `127.0.0.1:0` cannot be bound or the given listener cannot be used.
    pub async fn start(self) -> MockAbly {
        let listener = match self.listener {
            Some(listener) => {
                listener
                    .set_nonblocking(true)
                    .expect("mock-ably: cannot make the listener non-blocking");
                TcpListener::from_std(listener).expect("mock-ably: cannot use the listener")
            }
            None => TcpListener::bind("127.0.0.1:0")
                .await
                .expect("mock-ably: cannot bind 127.0.0.1:0"),
        };
        let addr = listener
            .local_addr()
            .expect("mock-ably: the listener has no local address");
        let mut keys = self.keys;
        if keys.is_empty() {
            let (key, capability) = KeySpec::parse(DEV_KEY)
                .expect("DEV_KEY is a valid key")
                .into_parts();
            keys.push(KeyEntry {
                key,
                capability,
                revocable: true,
            });
        }
        let provisioner =
            (self.max_apps > 0).then(|| Provisioner::new(addr.ip(), self.max_apps, self.limits));
        let state = AppState::new(
            Settings {
                keys,
                retention: self.retention,
                retention_count: self.retention_count,
                keepalive: self.keepalive,
                lag_limit: self.lag_limit,
                max_idle_interval: self.max_idle_interval,
                connection_state_ttl: self.connection_state_ttl,
                auth_lead: self.auth_lead,
                remain_present_for: self.remain_present_for,
                request_timeout: self.request_timeout,
            },
            provisioner,
        );
        let app = router(state.clone());
        let (shutdown, signal) = oneshot::channel::<()>();
        let limits = self.limits;
        // serve sets TCP_NODELAY: small SSE frames must not wait for Nagle's
        // algorithm.
        tokio::spawn(serve::serve(listener, app, limits, async {
            let _ = signal.await;
        }));
        tracing::debug!(%addr, "mock-ably started");
        MockAbly {
            base_url: format!("http://{addr}"),
            addr,
            state,
            shutdown: Some(shutdown),
        }
    }
}

/// A running mock Ably. Dropping it closes every stream and stops the server.
///
/// ```no_run
/// # async fn run() {
/// use mock_ably::MockAbly;
///
/// let mock = MockAbly::builder().key("app.key:secret").start().await;
/// let url = format!("{}/sse?v=1.2&channels=chat&key=app.key:secret", mock.base_url());
/// // ... open `url` with a client, then:
/// mock.publish_data("chat", "greeting", "hello");
/// mock.drop_streams(); // the client should resume with lastEvent
/// # }
/// ```
#[derive(Debug)]
pub struct MockAbly {
    state: AppState,
    addr: SocketAddr,
    base_url: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl MockAbly {
    /// A builder: add keys, tune retention and timers, then
    /// [`start`](MockAblyBuilder::start).
    pub fn builder() -> MockAblyBuilder {
        MockAblyBuilder::default()
    }

    /// `http://127.0.0.1:PORT`, with no trailing slash: the base for REST and
    /// streams alike.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server state (for the app provisioner to fill an app's presence).
    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }

    /// The first key the mock accepts (the first given, or [`DEV_KEY`]).
    pub fn key(&self) -> &ApiKey {
        &self.state.settings.keys[0].key
    }

    /// Publishes `message` on `channel` as a REST publish would (encoding
    /// object data as `json`, assigning an id and timestamp when absent),
    /// with no credential checks. Returns the message id.
    ///
    /// # Panics
    ///
    /// If the channel name or the message is invalid (the message says why).
    pub fn publish(&self, channel: &str, message: Message) -> String {
        self.try_publish(channel, vec![message])
            .unwrap_or_else(|err| panic!("mock-ably: cannot publish on {channel:?}: {err}"))
            .remove(0)
    }

    /// Publishes a message named `name` (empty for none) whose data is
    /// `data`: a string is sent as text, an object or array as JSON.
    /// Returns the message id.
    ///
    /// # Panics
    ///
    /// As [`MockAbly::publish`], and for data that is a number or boolean.
    pub fn publish_data(&self, channel: &str, name: &str, data: impl Into<Value>) -> String {
        let mut message = Message::default();
        message.name = (!name.is_empty()).then(|| name.to_owned());
        message.data = Some(data.into());
        self.publish(channel, message)
    }

    /// Publishes several messages at once, as one REST request with an
    /// array body would, and returns their ids.
    ///
    /// # Errors
    ///
    /// The Ably error a REST publish would get for an invalid channel name
    /// (40010), data (40013) or size (40009).
    pub fn try_publish(
        &self,
        channel: &str,
        messages: Vec<Message>,
    ) -> Result<Vec<String>, shared::ErrorInfo> {
        crate::params::validate_channel_name(channel).map_err(|e| e.0)?;
        let prepared =
            publish::prepare(messages, None, self.state.clock.now_ms()).map_err(|e| e.0)?;
        let stored = publish::store(&self.state, channel, prepared);
        Ok(stored
            .iter()
            .map(|m| m.message.id.clone().unwrap_or_default())
            .collect())
    }

    /// Issues an opaque token from the first key, as `requestToken` would:
    /// `params.capability` is intersected with the key's (all of it when
    /// `None`), `params.ttl` defaults to one hour.
    ///
    /// # Panics
    ///
    /// If the capability is invalid or shares nothing with the key's.
    pub fn issue_token(&self, params: TokenParams) -> TokenDetails {
        let entry = &self.state.settings.keys[0];
        let requested = params
            .capability
            .as_deref()
            .map_or_else(Capability::all, |text| {
                Capability::parse(text).unwrap_or_else(|err| panic!("mock-ably: {err}"))
            });
        let capability = requested
            .intersect(&entry.capability)
            .unwrap_or_else(|err| panic!("mock-ably: {err}"));
        issue_token(
            &self.state,
            entry,
            capability,
            params.client_id,
            params.ttl.unwrap_or(DEFAULT_TTL_MS),
        )
    }

    /// Cuts every open stream mid-body, with no error event, as a network
    /// failure would. Clients should reconnect with `lastEvent`.
    pub fn drop_streams(&self) {
        self.state.drop_streams();
    }

    /// Expires every token and JWT the mock has accepted or issued so far:
    /// open streams using one get an `error` event with 40142 and close, and
    /// later requests with one get 40142. Credentials first presented
    /// afterwards are honoured; API keys are unaffected.
    pub fn expire_credentials(&self) {
        self.state.expire_credentials();
    }

    /// Sends AUTH to every realtime connection using a token or JWT: ably-js
    /// fetches a new token and sends it back with AUTH (RTN22).
    pub fn force_auth(&self) {
        self.state.force_auth();
    }

    /// Makes the next requests fail with an injected error; see [`FailNext`].
    pub fn fail_next(&self, rule: FailNext) {
        self.state.fail_next(rule);
    }

    /// Counters: open streams, messages published and delivered, per channel.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Moves the mock's clock forward by `by`: tokens and JWTs expire
    /// (streams get 40142 at once when theirs does), TokenRequest timestamps
    /// age, retention drops old messages. Real time keeps running too. The
    /// clock stops at [`MAX_CLOCK_OFFSET`](crate::MAX_CLOCK_OFFSET) ahead of
    /// real time: it never wraps around, so it never goes backwards.
    pub fn advance_clock(&self, by: Duration) {
        self.state.advance_clock(by);
    }

    /// The mock's current time, in ms since the Unix epoch (what `GET /time`
    /// answers).
    pub fn now_ms(&self) -> u64 {
        self.state.clock.now_ms()
    }
}

impl Drop for MockAbly {
    fn drop(&mut self) {
        self.state.control.send_modify(|c| c.shutdown = true);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let panics = std::mem::take(&mut *lock(&self.state.panics));
        if !panics.is_empty() && !std::thread::panicking() {
            panic!(
                "mock-ably: a request handler panicked: {}",
                panics.join("; ")
            );
        }
    }
}
