//! The channel registry: a retention ring per channel, the streams attached to
//! it, and the global sequence that orders everything.
//!
//! Every stored message gets the next number of one global sequence, under
//! one lock that also covers fan-out. So every stream receives its messages
//! in sequence order, whatever channels it spans, and a resume cursor is a
//! single number: "everything after message N"
//! (`docs/protocol.md#continuity-and-resume`).
//!
//! Memory is bounded twice over: each channel keeps at most
//! `retention_count` messages for at most `retention`, and each stream owes
//! at most `lag_limit` messages. What a stream owes is everything it has yet
//! to send: the backlog of a resume or rewind still to go, plus the live
//! messages queued for it. A message that arrives while a stream already
//! owes `lag_limit` cuts the stream off (it may resume with `lastEvent` while
//! retention allows) rather than being buffered without limit.
//!
//! A backlog is what retention holds for the stream's channels, so it may
//! itself exceed `lag_limit` (several channels, or a `retention_count` above
//! the lag limit). Such a stream is not cut for it: it sends its backlog,
//! and is cut only if a live message arrives before it is back under the
//! limit. Each resume then starts further on, so a client reading as fast
//! as it can always catches up, and no stream ever holds more than its
//! backlog (at most `retention_count` per channel) or `lag_limit` messages.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use shared::Message;
use shared::message::MessageAction;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::delta::{DeltaBase, DeltaMessage};
use crate::state::Settings;
use crate::stats::ChannelStats;

/// How many stored messages pass between sweeps of every channel.
const SWEEP_EVERY: u64 = 1024;

/// Counters for one channel, shared with the messages stored on it so that
/// streams can count deliveries without the registry lock.
#[derive(Debug)]
pub(crate) struct ChannelCounters {
    /// The channel's name.
    pub(crate) name: Arc<str>,
    /// Messages stored.
    pub(crate) published: AtomicU64,
    /// Message events written to streams.
    pub(crate) delivered: AtomicU64,
}

/// A message as the mock keeps it.
#[derive(Debug)]
pub(crate) struct StoredMessage {
    /// Its place in the global sequence (from 1).
    pub(crate) seq: u64,
    /// When the mock stored it (mock clock, ms): drives retention and
    /// time-based rewind.
    pub(crate) received_ms: u64,
    /// The serial returned by the publish.
    pub(crate) serial: String,
    /// The SSE event id: an opaque resume cursor, `<instance>:<seq>`.
    pub(crate) cursor: String,
    /// The channel it was published on.
    pub(crate) channel: Arc<ChannelCounters>,
    /// The wire message (no `channel` field; envelopes add it).
    pub(crate) message: Message,
    sse_frame: OnceLock<Bytes>,
    plain_frame: OnceLock<Bytes>,
    /// The realtime MESSAGE frame, JSON and msgpack, built once and shared
    /// by every connection that gets the message in full.
    realtime_frames: [OnceLock<Option<Bytes>>; 2],
    delta_base: OnceLock<Option<DeltaBase>>,
    /// The last delta computed for this message, and the base id it is from.
    delta_cache: Mutex<Option<(String, Option<Arc<DeltaMessage>>)>>,
}

impl StoredMessage {
    /// The message as an SSE envelope: with `channel` set, and without the
    /// `serial`, `action` and `version` of newer protocol versions, which
    /// SSE's version 1.2 envelope does not carry.
    pub(crate) fn envelope(&self) -> Message {
        let mut message = self.message.clone();
        message.channel = Some(self.channel.name.to_string());
        message.serial = None;
        message.action = None;
        message.version = None;
        message
    }

    /// The enveloped SSE event, built once and shared by every stream.
    pub(crate) fn sse_frame(&self) -> Bytes {
        self.sse_frame
            .get_or_init(|| crate::frame::sse_message(&self.cursor, &json(&self.envelope())))
            .clone()
    }

    /// The enveloped plain-stream line, built once and shared.
    pub(crate) fn plain_frame(&self) -> Bytes {
        self.plain_frame
            .get_or_init(|| crate::frame::plain_message(&self.cursor, &json(&self.envelope())))
            .clone()
    }
}

impl StoredMessage {
    /// The realtime MESSAGE frame carrying this message in full (TR4: the
    /// channel, the message's cursor as `channelSerial`), encoded in
    /// `format` once and shared by every connection; `None` if it cannot be
    /// encoded.
    pub(crate) fn realtime_frame(&self, format: shared::protocol::Format) -> Option<Bytes> {
        use shared::protocol::{Action, Format, ProtocolMessage};
        let slot = match format {
            Format::Json => &self.realtime_frames[0],
            Format::Msgpack => &self.realtime_frames[1],
        };
        slot.get_or_init(|| {
            let mut frame = ProtocolMessage::new(Action::MESSAGE);
            frame.channel = Some(self.channel.name.to_string());
            frame.channel_serial = Some(self.cursor.clone());
            frame.messages = Some(vec![self.message.clone()]);
            format.encode(&frame).ok().map(Bytes::from)
        })
        .clone()
    }

    /// What a delta to or from this message works with
    /// (`docs/protocol.md#delta-bases`), computed once.
    pub(crate) fn delta_base(&self) -> Option<&DeltaBase> {
        self.delta_base
            .get_or_init(|| crate::delta::delta_base(&self.message))
            .as_ref()
    }

    /// This message as a delta against `base_payload` (message `base_id`),
    /// or `None` when the full message is smaller. Streams that share a base
    /// share the result.
    pub(crate) fn delta_from(
        &self,
        base_id: &str,
        base_payload: &[u8],
        target: &DeltaBase,
    ) -> Option<Arc<DeltaMessage>> {
        let mut cache = self
            .delta_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((cached_base, delta)) = &*cache
            && cached_base == base_id
        {
            return delta.clone();
        }
        let delta = crate::delta::encode(self, base_id, base_payload, target);
        *cache = Some((base_id.to_owned(), delta.clone()));
        delta
    }
}

fn json(message: &Message) -> String {
    serde_json::to_string(message).expect("a Message always serialises")
}

/// Where a stream starts on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartAt {
    /// Live messages only.
    Fresh,
    /// Everything after global sequence number `seq` (a `lastEvent` resume),
    /// if retention still covers it; otherwise fresh.
    After(u64),
    /// The last `count` retained messages.
    RewindCount(usize),
    /// Retained messages received at or after `since_ms`, the last `limit`
    /// of them.
    RewindSince {
        /// Mock-clock ms.
        since_ms: u64,
        /// At most this many.
        limit: usize,
    },
}

/// How many messages a stream owes: its backlog still to send plus its
/// queued live messages. Shared by the stream and its subscriber entries.
#[derive(Debug, Clone)]
pub(crate) struct Owed(Arc<AtomicUsize>);

impl Owed {
    fn new(count: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(count)))
    }

    /// How many messages are owed now.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// The stream sent one of them (backlog or live).
    pub(crate) fn paid(&self) {
        // Never below zero: every count is added before its message can be
        // taken (the backlog at attach, a live one before it is queued).
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    fn owe_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A stream's place in a channel's subscriber list.
#[derive(Debug)]
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<StoredMessage>>,
    lagged: Arc<AtomicBool>,
    owed: Owed,
}

#[derive(Debug)]
struct Channel {
    counters: Arc<ChannelCounters>,
    ring: VecDeque<Arc<StoredMessage>>,
    /// Retained messages by id, for idempotent publishing.
    ids: HashMap<String, Arc<StoredMessage>>,
    subscribers: Vec<Subscriber>,
    /// Realtime connections (member ids) attached with the publish mode.
    publishers: HashSet<u64>,
    /// The sequence number of the newest message dropped from the ring
    /// (0 when none was): a resume from before it has a gap.
    evicted_through: u64,
}

impl Channel {
    fn new(name: &str) -> Self {
        Self {
            counters: Arc::new(ChannelCounters {
                name: Arc::from(name),
                published: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
            }),
            ring: VecDeque::new(),
            ids: HashMap::new(),
            subscribers: Vec::new(),
            publishers: HashSet::new(),
            evicted_through: 0,
        }
    }

    /// The channel `name` in `channels`, created if it is new, with
    /// retention applied as of `now_ms`: what every operation on a channel
    /// starts from.
    fn live<'a>(
        channels: &'a mut HashMap<String, Channel>,
        name: &str,
        settings: &Settings,
        now_ms: u64,
    ) -> &'a mut Channel {
        let channel = channels
            .entry(name.to_owned())
            .or_insert_with(|| Channel::new(name));
        channel.evict(settings, now_ms);
        channel
    }

    /// Whether the channel holds nothing: no message, no stream, no
    /// attached publisher. Such a channel can be forgotten.
    fn is_idle(&self) -> bool {
        self.ring.is_empty() && self.subscribers.is_empty() && self.publishers.is_empty()
    }

    /// Adds `subscriber` unless a subscriber with its id is already here.
    fn subscribe(&mut self, subscriber: Subscriber) {
        if !self.subscribers.iter().any(|s| s.id == subscriber.id) {
            self.subscribers.push(subscriber);
        }
    }

    /// Drops messages past the count cap or older than the retention time.
    fn evict(&mut self, settings: &Settings, now_ms: u64) {
        let retention = u64::try_from(settings.retention.as_millis()).unwrap_or(u64::MAX);
        let oldest_kept = now_ms.saturating_sub(retention);
        while let Some(front) = self.ring.front() {
            if self.ring.len() <= settings.retention_count && front.received_ms >= oldest_kept {
                break;
            }
            let front = self.ring.pop_front().expect("front exists");
            self.evicted_through = front.seq;
            if let Some(id) = &front.message.id
                && self
                    .ids
                    .get(id)
                    .is_some_and(|kept| Arc::ptr_eq(kept, &front))
            {
                self.ids.remove(id);
            }
        }
    }

    /// The messages a stream starting at `start` is owed.
    fn backlog(&self, start: StartAt) -> Vec<Arc<StoredMessage>> {
        match start {
            StartAt::Fresh => Vec::new(),
            StartAt::After(seq) if self.evicted_through > seq => Vec::new(),
            StartAt::After(seq) => self.ring.iter().filter(|m| m.seq > seq).cloned().collect(),
            StartAt::RewindCount(count) => {
                let skip = self.ring.len().saturating_sub(count);
                self.ring.iter().skip(skip).cloned().collect()
            }
            StartAt::RewindSince { since_ms, limit } => {
                let recent: Vec<_> = self
                    .ring
                    .iter()
                    .filter(|m| m.received_ms >= since_ms)
                    .cloned()
                    .collect();
                let skip = recent.len().saturating_sub(limit);
                recent.into_iter().skip(skip).collect()
            }
        }
    }
}

/// Who is on a channel (`docs/protocol.md#channel-status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Occupancy {
    /// SSE streams and realtime connections attached.
    pub(crate) connections: u64,
    /// Realtime connections attached with the publish mode.
    pub(crate) publishers: u64,
    /// SSE streams and realtime connections receiving its messages.
    pub(crate) subscribers: u64,
    /// Whether anyone is attached or messages are retained.
    pub(crate) active: bool,
}

/// What [`Registry::attach`] hands a new stream.
#[derive(Debug)]
pub(crate) struct Attachment {
    /// The stream's id in the subscriber lists.
    pub(crate) subscriber: u64,
    /// Live messages, in sequence order.
    pub(crate) rx: mpsc::Receiver<Arc<StoredMessage>>,
    /// Set when the stream came to owe more than `lag_limit` messages and
    /// was cut off.
    pub(crate) lagged: Arc<AtomicBool>,
    /// Messages owed before the live ones, in sequence order.
    pub(crate) backlog: VecDeque<Arc<StoredMessage>>,
    /// The backlog's length plus the live messages queued; the stream calls
    /// [`Owed::paid`] for each message it takes from either.
    pub(crate) owed: Owed,
}

/// A subscriber that joins channels one at a time and keeps one queue for
/// all of them: a realtime connection, which attaches channel by channel.
#[derive(Debug)]
pub(crate) struct Member {
    /// Its id in the subscriber lists.
    pub(crate) id: u64,
    tx: mpsc::Sender<Arc<StoredMessage>>,
    /// Set when it came to owe more than `lag_limit` messages; it is then
    /// dropped from every channel's list.
    pub(crate) lagged: Arc<AtomicBool>,
    /// Backlogs still to send plus live messages queued.
    pub(crate) owed: Owed,
}

/// Every channel, and the global sequence.
#[derive(Debug)]
pub(crate) struct Registry {
    instance: String,
    channels: HashMap<String, Channel>,
    last_seq: u64,
    next_subscriber: u64,
    published: u64,
}

impl Registry {
    /// An empty registry whose cursors carry `instance`.
    pub(crate) fn new(instance: String) -> Self {
        Self {
            instance,
            channels: HashMap::new(),
            last_seq: 0,
            next_subscriber: 0,
            published: 0,
        }
    }

    /// Messages stored since start.
    pub(crate) fn published(&self) -> u64 {
        self.published
    }

    /// The sequence number a `lastEvent` cursor names, if it is one of ours;
    /// `None` for anything else (another run's cursor, garbage, a number not
    /// yet reached).
    pub(crate) fn parse_cursor(&self, cursor: &str) -> Option<u64> {
        let (instance, seq) = cursor.split_once(':')?;
        let seq: u64 = seq.parse().ok()?;
        (instance == self.instance && seq <= self.last_seq).then_some(seq)
    }

    /// Stores `messages` (already in wire form, with ids) on `channel` and
    /// hands each to the channel's streams. A message whose id is already
    /// retained on the channel is not stored again: the earlier copy is
    /// returned in its place (idempotent publishing,
    /// `docs/protocol.md#publishing`).
    pub(crate) fn publish(
        &mut self,
        settings: &Settings,
        channel: &str,
        messages: Vec<Message>,
        now_ms: u64,
    ) -> Vec<Arc<StoredMessage>> {
        let entry = Channel::live(&mut self.channels, channel, settings, now_ms);
        let mut stored = Vec::with_capacity(messages.len());
        for message in messages {
            if let Some(earlier) = message.id.as_ref().and_then(|id| entry.ids.get(id)) {
                stored.push(Arc::clone(earlier));
                continue;
            }
            self.last_seq += 1;
            self.published += 1;
            let seq = self.last_seq;
            let serial = format!("{now_ms:013}-{seq:09}@{}", self.instance);
            // Every message is a new one (`message.create`, 0) with the
            // serial its publish answered: history and realtime deliver
            // both (TM2r, TM2j).
            let mut message = message;
            message.serial = Some(serial);
            message.action = Some(MessageAction::CREATE);
            let stored_message =
                Self::append(settings, entry, &self.instance, seq, now_ms, message);
            if let Some(id) = &stored_message.message.id {
                entry.ids.insert(id.clone(), Arc::clone(&stored_message));
            }
            stored.push(stored_message);
        }
        entry.evict(settings, now_ms);
        let before = self.published - stored.len() as u64;
        if before / SWEEP_EVERY != self.published / SWEEP_EVERY {
            self.sweep(settings, now_ms);
        }
        stored
    }

    /// Records a new version of the message `serial` on `channel`
    /// (`docs/protocol.md#message-operations`): `build` makes it from the
    /// latest version and the new version's serial. The version is stored
    /// after everything else on the channel and handed to its streams like
    /// a publish. `Ok(None)` when retention holds no message with that
    /// serial; `build`'s error (nothing stored) when it refuses.
    pub(crate) fn add_version<E>(
        &mut self,
        settings: &Settings,
        channel: &str,
        serial: &str,
        now_ms: u64,
        build: impl FnOnce(&Message, &str) -> Result<Message, E>,
    ) -> Result<Option<Arc<StoredMessage>>, E> {
        let entry = Channel::live(&mut self.channels, channel, settings, now_ms);
        let latest = entry
            .ring
            .iter()
            .rev()
            .find(|m| m.message.serial.as_deref() == Some(serial));
        let Some(latest) = latest else {
            return Ok(None);
        };
        let seq = self.last_seq + 1;
        let version_serial = format!("{now_ms:013}-{seq:09}@{}", self.instance);
        let message = build(&latest.message, &version_serial)?;
        self.last_seq = seq;
        self.published += 1;
        let stored = Self::append(settings, entry, &self.instance, seq, now_ms, message);
        entry.evict(settings, now_ms);
        Ok(Some(stored))
    }

    /// Every retained version of the message `serial` on `channel`, oldest
    /// first (the first is the publish itself).
    pub(crate) fn versions(
        &mut self,
        settings: &Settings,
        channel: &str,
        serial: &str,
        now_ms: u64,
    ) -> Vec<Arc<StoredMessage>> {
        let mut retained = self.retained(settings, channel, now_ms);
        retained.retain(|m| m.message.serial.as_deref() == Some(serial));
        retained
    }

    /// Stores `message` (serial and action already set) on `entry` as
    /// global sequence number `seq` and hands it to the channel's streams.
    fn append(
        settings: &Settings,
        entry: &mut Channel,
        instance: &str,
        seq: u64,
        now_ms: u64,
        message: Message,
    ) -> Arc<StoredMessage> {
        let stored_message = Arc::new(StoredMessage {
            seq,
            received_ms: now_ms,
            serial: message.serial.clone().unwrap_or_default(),
            cursor: format!("{instance}:{seq}"),
            channel: Arc::clone(&entry.counters),
            message,
            sse_frame: OnceLock::new(),
            plain_frame: OnceLock::new(),
            realtime_frames: [OnceLock::new(), OnceLock::new()],
            delta_base: OnceLock::new(),
            delta_cache: Mutex::new(None),
        });
        entry.counters.published.fetch_add(1, Ordering::Relaxed);
        entry.ring.push_back(Arc::clone(&stored_message));
        entry.subscribers.retain(|subscriber| {
            // This message would put the stream more than `lag_limit`
            // behind, counting the backlog it has not sent yet.
            if subscriber.owed.get() >= settings.lag_limit {
                subscriber.lagged.store(true, Ordering::Relaxed);
                return false;
            }
            subscriber.owed.owe_one();
            match subscriber.tx.try_send(Arc::clone(&stored_message)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    subscriber.lagged.store(true, Ordering::Relaxed);
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        stored_message
    }

    /// The retained copies of `messages` (by id) on `channel`, in order;
    /// `None` when retention no longer holds every one of them.
    pub(crate) fn find(
        &mut self,
        settings: &Settings,
        channel: &str,
        messages: &[Message],
        now_ms: u64,
    ) -> Option<Vec<Arc<StoredMessage>>> {
        let entry = self.channels.get_mut(channel)?;
        entry.evict(settings, now_ms);
        messages
            .iter()
            .map(|message| {
                message
                    .id
                    .as_ref()
                    .and_then(|id| entry.ids.get(id))
                    .cloned()
            })
            .collect()
    }

    /// Applies retention to every channel and forgets those left with
    /// neither streams nor messages, so channels nobody touches again do not
    /// keep their messages past retention.
    fn sweep(&mut self, settings: &Settings, now_ms: u64) {
        self.channels.retain(|_, entry| {
            entry.evict(settings, now_ms);
            entry.subscribers.retain(|s| !s.tx.is_closed());
            !entry.is_idle()
        });
    }

    /// The retained messages of `channel`, oldest first.
    pub(crate) fn retained(
        &mut self,
        settings: &Settings,
        channel: &str,
        now_ms: u64,
    ) -> Vec<Arc<StoredMessage>> {
        self.channels
            .get_mut(channel)
            .map_or_else(Vec::new, |entry| {
                entry.evict(settings, now_ms);
                entry.ring.iter().cloned().collect()
            })
    }

    /// Subscribes a new stream to `channels`, each with its start point, and
    /// collects its backlog, atomically: nothing published afterwards is
    /// missed and nothing in the backlog is delivered twice.
    pub(crate) fn attach(
        &mut self,
        settings: &Settings,
        channels: &[(String, StartAt)],
        now_ms: u64,
    ) -> Attachment {
        self.next_subscriber += 1;
        let subscriber = self.next_subscriber;
        // The owed count keeps the live queue within `lag_limit`; the
        // channel's own bound is only a second line.
        let (tx, rx) = mpsc::channel(settings.lag_limit.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let mut backlog = Vec::new();
        for (name, start) in channels {
            let entry = Channel::live(&mut self.channels, name, settings, now_ms);
            backlog.extend(entry.backlog(*start));
        }
        backlog.sort_by_key(|m| m.seq);
        backlog.dedup_by_key(|m| m.seq);
        // Counted before the stream is subscribed anywhere, so the first
        // live message already sees the backlog.
        let owed = Owed::new(backlog.len());
        for (name, _) in channels {
            let entry = self.channels.get_mut(name).expect("created above");
            entry.subscribe(Subscriber {
                id: subscriber,
                tx: tx.clone(),
                lagged: Arc::clone(&lagged),
                owed: owed.clone(),
            });
        }
        Attachment {
            subscriber,
            rx,
            lagged,
            backlog: backlog.into(),
            owed,
        }
    }

    /// The current end of the global sequence as a cursor, `<instance>:<n>`:
    /// what a realtime `channelSerial` is, so that a re-attach naming it
    /// continues from there ([`Registry::parse_cursor`]).
    pub(crate) fn position(&self) -> String {
        format!("{}:{}", self.instance, self.last_seq)
    }

    /// Whether `channel` still holds everything published on it after
    /// global sequence number `seq`: a resume from there has no gap.
    pub(crate) fn continuous(&self, channel: &str, seq: u64) -> bool {
        self.channels
            .get(channel)
            .is_none_or(|entry| entry.evicted_through <= seq)
    }

    /// A new member that belongs to no channel yet, and its queue.
    pub(crate) fn member(
        &mut self,
        settings: &Settings,
    ) -> (Member, mpsc::Receiver<Arc<StoredMessage>>) {
        self.next_subscriber += 1;
        let (tx, rx) = mpsc::channel(settings.lag_limit.max(1));
        let member = Member {
            id: self.next_subscriber,
            tx,
            lagged: Arc::new(AtomicBool::new(false)),
            owed: Owed::new(0),
        };
        (member, rx)
    }

    /// Adds `member` to `channel` (if not there already) from `start`, and
    /// returns the backlog it is owed there, atomically as
    /// [`Registry::attach`] does.
    pub(crate) fn join(
        &mut self,
        settings: &Settings,
        member: &Member,
        channel: &str,
        start: StartAt,
        now_ms: u64,
    ) -> Vec<Arc<StoredMessage>> {
        let entry = Channel::live(&mut self.channels, channel, settings, now_ms);
        let backlog = entry.backlog(start);
        for _ in &backlog {
            member.owed.owe_one();
        }
        entry.subscribe(Subscriber {
            id: member.id,
            tx: member.tx.clone(),
            lagged: Arc::clone(&member.lagged),
            owed: member.owed.clone(),
        });
        backlog
    }

    /// Removes stream `subscriber` from `channels`, forgetting channels left
    /// with neither streams nor messages.
    pub(crate) fn detach(&mut self, subscriber: u64, channels: &[String]) {
        for name in channels {
            if let Some(entry) = self.channels.get_mut(name) {
                entry.subscribers.retain(|s| s.id != subscriber);
                entry.publishers.remove(&subscriber);
                if entry.is_idle() {
                    self.channels.remove(name);
                }
            }
        }
    }

    /// Records whether realtime connection `member` is attached to
    /// `channel` with the publish mode (for occupancy); [`Registry::detach`]
    /// forgets it.
    pub(crate) fn set_publisher(
        &mut self,
        settings: &Settings,
        member: u64,
        channel: &str,
        publishes: bool,
        now_ms: u64,
    ) {
        if publishes {
            Channel::live(&mut self.channels, channel, settings, now_ms)
                .publishers
                .insert(member);
        } else if let Some(entry) = self.channels.get_mut(channel) {
            entry.publishers.remove(&member);
        }
    }

    /// `channel`'s occupancy as of `now_ms`: who is attached, and whether
    /// it is active (anyone attached, or messages retained).
    pub(crate) fn occupancy(
        &mut self,
        settings: &Settings,
        channel: &str,
        now_ms: u64,
    ) -> Occupancy {
        let Some(entry) = self.channels.get_mut(channel) else {
            return Occupancy::default();
        };
        entry.evict(settings, now_ms);
        entry.subscribers.retain(|s| !s.tx.is_closed());
        let subscriber_ids: HashSet<u64> = entry.subscribers.iter().map(|s| s.id).collect();
        Occupancy {
            connections: subscriber_ids.union(&entry.publishers).count() as u64,
            publishers: entry.publishers.len() as u64,
            subscribers: subscriber_ids.len() as u64,
            active: !entry.is_idle(),
        }
    }

    /// Per-channel counters, after applying retention.
    pub(crate) fn channel_stats(
        &mut self,
        settings: &Settings,
        now_ms: u64,
    ) -> BTreeMap<String, ChannelStats> {
        self.sweep(settings, now_ms);
        self.channels
            .iter()
            .map(|(name, entry)| {
                let stats = ChannelStats {
                    published: entry.counters.published.load(Ordering::Relaxed),
                    delivered: entry.counters.delivered.load(Ordering::Relaxed),
                    retained: entry.ring.len() as u64,
                    subscribers: entry.subscribers.len() as u64,
                    ..ChannelStats::default()
                };
                (name.clone(), stats)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{
        DEFAULT_AUTH_LEAD, DEFAULT_CONNECTION_STATE_TTL, DEFAULT_KEEPALIVE, DEFAULT_LAG_LIMIT,
        DEFAULT_MAX_IDLE_INTERVAL, DEFAULT_REMAIN_PRESENT_FOR, DEFAULT_REQUEST_TIMEOUT,
        DEFAULT_RETENTION, DEFAULT_RETENTION_COUNT,
    };
    use crate::state::Settings;

    /// The settings a mock gets when the builder is not told otherwise.
    fn defaults() -> Settings {
        Settings {
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
        }
    }

    fn publish_all(registry: &mut Registry, settings: &Settings, channel: &str, texts: &[String]) {
        for text in texts {
            registry.publish(settings, channel, vec![message(text)], 0);
        }
    }

    fn texts(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|i| format!("{prefix}{i}")).collect()
    }

    fn data_of(messages: impl IntoIterator<Item = Arc<StoredMessage>>) -> Vec<String> {
        messages
            .into_iter()
            .map(|m| {
                m.message
                    .data
                    .as_ref()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    fn lagged(stream: &Attachment) -> bool {
        stream.lagged.load(Ordering::Relaxed)
    }

    #[test]
    fn a_live_stream_is_cut_by_the_message_that_puts_it_over_the_default_lag_limit() {
        let settings = defaults();
        assert_eq!(settings.lag_limit, 10_000);
        let mut registry = Registry::new("test".into());
        let mut stream = registry.attach(&settings, &[("c".into(), StartAt::Fresh)], 0);

        publish_all(&mut registry, &settings, "c", &texts("m", 10_000));
        let full = (lagged(&stream), stream.owed.get(), stream.rx.len());
        // The stream sends one: room for exactly one more.
        let first = stream.rx.try_recv().unwrap();
        stream.owed.paid();
        publish_all(&mut registry, &settings, "c", &texts("late", 1));
        let after_one = lagged(&stream);
        publish_all(&mut registry, &settings, "c", &texts("over", 1));

        assert_eq!(full, (false, 10_000, 10_000));
        assert_eq!(data_of([first]), ["m0"]);
        assert!(!after_one);
        assert!(lagged(&stream));
        assert_eq!(registry.channels["c"].subscribers.len(), 0);
    }

    #[test]
    fn a_resumed_streams_backlog_counts_towards_the_default_lag_limit() {
        let settings = defaults();
        assert!(settings.retention_count >= 10_000);
        let mut registry = Registry::new("test".into());
        let seen = registry.publish(&settings, "c", vec![message("seen")], 0)[0].seq;
        let missed = texts("missed", 10_000);
        publish_all(&mut registry, &settings, "c", &missed);

        let mut stream = registry.attach(&settings, &[("c".into(), StartAt::After(seen))], 0);
        let owed_at_attach = stream.owed.get();
        // The stream sends one message of its backlog: room for one live.
        stream.backlog.pop_front();
        stream.owed.paid();
        publish_all(&mut registry, &settings, "c", &texts("live", 1));
        let after_one = lagged(&stream);
        publish_all(&mut registry, &settings, "c", &texts("over", 1));

        assert_eq!(owed_at_attach, 10_000);
        assert_eq!(stream.backlog.len(), 9_999);
        assert_eq!(data_of(stream.backlog.iter().cloned()), missed[1..]);
        assert!(!after_one);
        assert!(lagged(&stream));
    }

    #[test]
    fn a_backlog_over_the_lag_limit_is_owed_in_full_and_any_live_message_cuts() {
        let settings = defaults();
        let mut registry = Registry::new("test".into());
        publish_all(&mut registry, &settings, "a", &texts("a", 10_000));
        publish_all(&mut registry, &settings, "b", &texts("b", 10_000));

        let stream = registry.attach(
            &settings,
            &[
                ("a".into(), StartAt::After(0)),
                ("b".into(), StartAt::After(0)),
            ],
            0,
        );
        let at_attach = (lagged(&stream), stream.owed.get());
        publish_all(&mut registry, &settings, "b", &texts("live", 1));

        assert_eq!(at_attach, (false, 20_000));
        assert_eq!(stream.backlog.len(), 20_000);
        assert!(lagged(&stream));
    }

    fn message(text: &str) -> Message {
        let mut message = Message::default();
        message.id = Some(format!("{text}:0"));
        message.data = Some(text.into());
        message
    }

    #[test]
    fn channels_nobody_touches_are_swept_once_retention_passes() {
        let settings = defaults();
        let mut registry = Registry::new("test".into());
        registry.publish(&settings, "once", vec![message("a")], 0);

        // Later traffic elsewhere, past retention: the sweep drops "once".
        for i in 0..SWEEP_EVERY {
            registry.publish(&settings, "busy", vec![message(&i.to_string())], 200_000);
        }

        assert!(!registry.channels.contains_key("once"));
        assert!(registry.channels.contains_key("busy"));
    }

    #[test]
    fn a_cursor_is_ours_only_with_our_instance_and_a_reached_number() {
        let settings = defaults();
        let mut registry = Registry::new("inst".into());
        let stored = registry.publish(&settings, "c", vec![message("a")], 0);

        assert_eq!(registry.parse_cursor(&stored[0].cursor), Some(1));
        assert_eq!(registry.parse_cursor("inst:2"), None);
        assert_eq!(registry.parse_cursor("other:1"), None);
        assert_eq!(registry.parse_cursor("inst"), None);
    }
}
