//! Shared server state: settings, the clock, the channel registry, credential
//! bookkeeping, fault rules and the control signal open streams watch.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use shared::{ApiKey, Capability};
use tokio::sync::watch;

use crate::apps::Provisioner;
use crate::auth::AuthState;
use crate::channel::Registry;
use crate::clock::Clock;
use crate::faults::{FailNext, Faults};
use crate::presence::PresenceRegistry;
use crate::realtime::Connections;
use crate::revocation::Revocations;
use crate::stats::Stats;

/// An API key the mock accepts, with the capability it grants.
#[derive(Debug, Clone)]
pub(crate) struct KeyEntry {
    /// The key (name and secret).
    pub(crate) key: ApiKey,
    /// What the key may do; tokens and JWTs get at most this.
    pub(crate) capability: Capability,
    /// Whether its tokens and JWTs can be revoked (`revokeTokens`).
    pub(crate) revocable: bool,
}

/// The builder's settings, fixed for the life of the server.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The accepted keys, in the order given.
    pub(crate) keys: Vec<KeyEntry>,
    /// How long messages are kept for history, resume and rewind.
    pub(crate) retention: Duration,
    /// How many messages each channel keeps at most.
    pub(crate) retention_count: usize,
    /// The idle time after which a stream gets a keepalive.
    pub(crate) keepalive: Duration,
    /// How far behind a stream may fall before it is disconnected.
    pub(crate) lag_limit: usize,
    /// Realtime: the `maxIdleInterval` announced on CONNECTED; a HEARTBEAT
    /// goes out after half of it without another frame.
    pub(crate) max_idle_interval: Duration,
    /// Realtime: how long a dropped connection stays resumable
    /// (`connectionStateTtl`).
    pub(crate) connection_state_ttl: Duration,
    /// Realtime: how long before a credential expires the connection is
    /// sent AUTH (none for a credential with less life left).
    pub(crate) auth_lead: Duration,
    /// Realtime: how long the members of a connection lost without CLOSE
    /// stay present, unless it resumes first (a client's `remainPresentFor`
    /// overrides it).
    pub(crate) remain_present_for: Duration,
    /// How long one request may take, its body included, before it is
    /// answered 50003 (503).
    pub(crate) request_timeout: Duration,
}

/// What open streams watch for: every change of a counter is an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Control {
    /// Bumped by `drop_streams`: every stream and realtime connection
    /// closes abruptly.
    pub(crate) drops: u64,
    /// Bumped by `expire_credentials`: streams and realtime connections on a
    /// token or JWT get 40142.
    pub(crate) expiries: u64,
    /// Bumped by `force_auth`: realtime connections on a token or JWT get
    /// an AUTH request.
    pub(crate) force_auth: u64,
    /// Bumped when a revocation is made and when one applies: streams and
    /// connections check their credential again.
    pub(crate) revocations: u64,
    /// Bumped when the clock moves: streams recompute their expiry timers.
    pub(crate) clock: u64,
    /// Set when the handle is dropped: every stream closes.
    pub(crate) shutdown: bool,
}

/// Cheap-to-clone handle on the server state.
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<Inner>);

impl AppState {
    pub(crate) fn new(settings: Settings, provisioner: Option<Provisioner>) -> Self {
        let (control, _) = watch::channel(Control::default());
        // A random id for this server, part of every resume cursor, so that
        // a cursor from another run is unknown rather than misread.
        let instance = random_id(6);
        Self(Arc::new(Inner {
            registry: Mutex::new(Registry::new(instance)),
            settings,
            clock: Clock::default(),
            auth: Mutex::new(AuthState::default()),
            faults: Mutex::new(Faults::default()),
            control,
            open_streams: AtomicU64::new(0),
            connections: Mutex::new(Connections::default()),
            presence: Mutex::new(PresenceRegistry::default()),
            revocations: Mutex::new(Revocations::default()),
            attached_channels: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            panics: Mutex::new(Vec::new()),
            provisioner,
        }))
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The state proper.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) settings: Settings,
    pub(crate) clock: Clock,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) auth: Mutex<AuthState>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) control: watch::Sender<Control>,
    pub(crate) open_streams: AtomicU64,
    /// Realtime connections, open and resumable.
    pub(crate) connections: Mutex<Connections>,
    /// Every channel's presence set.
    pub(crate) presence: Mutex<PresenceRegistry>,
    /// Token revocations made with `revokeTokens`.
    pub(crate) revocations: Mutex<Revocations>,
    /// Channels attached on open realtime connections, summed.
    pub(crate) attached_channels: AtomicU64,
    pub(crate) delivered: AtomicU64,
    /// Messages of handler panics, reported when the handle drops.
    pub(crate) panics: Mutex<Vec<String>>,
    /// The test apps this mock made (`POST /apps`); `None` on an app's own
    /// server or with `max_apps(0)`.
    pub(crate) provisioner: Option<Provisioner>,
}

impl Inner {
    /// Closes every open stream abruptly.
    pub(crate) fn drop_streams(&self) {
        self.control.send_modify(|c| c.drops += 1);
    }

    /// Expires every token and JWT accepted or issued so far.
    pub(crate) fn expire_credentials(&self) {
        let now = self.clock.now_ms();
        lock(&self.auth).expire_all(now);
        self.control.send_modify(|c| c.expiries += 1);
    }

    /// Moves the clock forward (at most to [`MAX_CLOCK_OFFSET`](crate::MAX_CLOCK_OFFSET))
    /// and tells streams to re-check expiry.
    pub(crate) fn advance_clock(&self, by: Duration) {
        self.clock.advance(by);
        self.control.send_modify(|c| c.clock += 1);
    }

    /// Moves the clock forward by `by_ms` unless that goes past
    /// [`MAX_CLOCK_OFFSET`](crate::MAX_CLOCK_OFFSET), and tells streams.
    ///
    /// # Errors
    ///
    /// How far ahead the clock already is, in ms; nothing moved.
    pub(crate) fn try_advance_clock_ms(&self, by_ms: u64) -> Result<(), u64> {
        self.clock.try_advance_ms(by_ms)?;
        self.control.send_modify(|c| c.clock += 1);
        Ok(())
    }

    /// Tells open streams and connections to check their credential against
    /// the revocations, now and again once `margin` has passed (when a
    /// revocation made now applies).
    pub(crate) fn revocations_changed(&self, margin: Duration) {
        self.control.send_modify(|c| c.revocations += 1);
        if margin.is_zero() {
            return;
        }
        let control = self.control.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(margin).await;
                control.send_modify(|c| c.revocations += 1);
            });
        }
    }

    /// Sends AUTH to every realtime connection on a token or JWT.
    pub(crate) fn force_auth(&self) {
        self.control.send_modify(|c| c.force_auth += 1);
    }

    /// Queues a request-failure rule.
    pub(crate) fn fail_next(&self, rule: FailNext) {
        lock(&self.faults).push(rule);
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> Stats {
        let now = self.clock.now_ms();
        let mut channels = lock(&self.registry).channel_stats(&self.settings, now);
        {
            let presence = lock(&self.presence);
            for name in presence.channel_names() {
                let counts = presence.counts(name);
                let stats = channels.entry(name.to_owned()).or_default();
                stats.presence_members = counts.members as u64;
                stats.presence_subscribers = counts.subscribers as u64;
            }
        }
        Stats {
            open_streams: self.open_streams.load(Ordering::Relaxed),
            open_connections: lock(&self.connections).open(),
            attached_channels: self.attached_channels.load(Ordering::Relaxed),
            published: lock(&self.registry).published(),
            delivered: self.delivered.load(Ordering::Relaxed),
            channels,
        }
    }
}

/// Locks `mutex`, ignoring poisoning: a panicking handler is reported on
/// drop, and the data it guards stays usable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `bytes` random bytes as unpadded base64url: an id with no `.`, `:` or `/`.
pub(crate) fn random_id(bytes: usize) -> String {
    let mut buf = vec![0_u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    URL_SAFE_NO_PAD.encode(buf)
}
