//! The channel registry: a retention ring per channel, the streams attached to
//! it, and the global sequence that orders everything.
//!
//! Every stored message gets the next number of one global sequence, under
//! one lock that also covers fan-out. So every stream receives its messages
//! in sequence order, whatever channels it spans, and a resume cursor is a
//! single number: "everything after message N" (`ABLY-PROTOCOL.md` §1.6).
//!
//! Memory is bounded twice over: each channel keeps at most
//! `retention_count` messages for at most `retention`, and each stream has a
//! queue of at most `lag_limit` messages; a stream whose queue is full is cut
//! off (and may resume with `lastEvent` while retention allows) rather than
//! buffered without limit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use shared::Message;
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
    delta_base: OnceLock<Option<DeltaBase>>,
    /// The last delta computed for this message, and the base id it is from.
    delta_cache: Mutex<Option<(String, Option<Arc<DeltaMessage>>)>>,
}

impl StoredMessage {
    /// The message as an SSE envelope: with `channel` set.
    pub(crate) fn envelope(&self) -> Message {
        let mut message = self.message.clone();
        message.channel = Some(self.channel.name.to_string());
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
    /// What a delta to or from this message works with (§7.2.3), computed
    /// once.
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

/// A stream's place in a channel's subscriber list.
#[derive(Debug)]
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<StoredMessage>>,
    lagged: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Channel {
    counters: Arc<ChannelCounters>,
    ring: VecDeque<Arc<StoredMessage>>,
    /// Retained messages by id, for idempotent publishing.
    ids: HashMap<String, Arc<StoredMessage>>,
    subscribers: Vec<Subscriber>,
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
            evicted_through: 0,
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

/// What [`Registry::attach`] hands a new stream.
#[derive(Debug)]
pub(crate) struct Attachment {
    /// The stream's id in the subscriber lists.
    pub(crate) subscriber: u64,
    /// Live messages, in sequence order.
    pub(crate) rx: mpsc::Receiver<Arc<StoredMessage>>,
    /// Set when the queue overflowed and the stream was cut off.
    pub(crate) lagged: Arc<AtomicBool>,
    /// Messages owed before the live ones, in sequence order.
    pub(crate) backlog: VecDeque<Arc<StoredMessage>>,
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
    /// returned in its place (idempotent publishing, §6.2).
    pub(crate) fn publish(
        &mut self,
        settings: &Settings,
        channel: &str,
        messages: Vec<Message>,
        now_ms: u64,
    ) -> Vec<Arc<StoredMessage>> {
        let entry = self
            .channels
            .entry(channel.to_owned())
            .or_insert_with(|| Channel::new(channel));
        entry.evict(settings, now_ms);
        let mut stored = Vec::with_capacity(messages.len());
        for message in messages {
            if let Some(earlier) = message.id.as_ref().and_then(|id| entry.ids.get(id)) {
                stored.push(Arc::clone(earlier));
                continue;
            }
            self.last_seq += 1;
            self.published += 1;
            let seq = self.last_seq;
            let stored_message = Arc::new(StoredMessage {
                seq,
                received_ms: now_ms,
                serial: format!("{now_ms:013}-{seq:09}@{}", self.instance),
                cursor: format!("{}:{seq}", self.instance),
                channel: Arc::clone(&entry.counters),
                message,
                sse_frame: OnceLock::new(),
                plain_frame: OnceLock::new(),
                delta_base: OnceLock::new(),
                delta_cache: Mutex::new(None),
            });
            entry.counters.published.fetch_add(1, Ordering::Relaxed);
            if let Some(id) = &stored_message.message.id {
                entry.ids.insert(id.clone(), Arc::clone(&stored_message));
            }
            entry.ring.push_back(Arc::clone(&stored_message));
            entry.subscribers.retain(|subscriber| {
                match subscriber.tx.try_send(Arc::clone(&stored_message)) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => {
                        subscriber.lagged.store(true, Ordering::Relaxed);
                        false
                    }
                    Err(TrySendError::Closed(_)) => false,
                }
            });
            stored.push(stored_message);
        }
        entry.evict(settings, now_ms);
        let before = self.published - stored.len() as u64;
        if before / SWEEP_EVERY != self.published / SWEEP_EVERY {
            self.sweep(settings, now_ms);
        }
        stored
    }

    /// Applies retention to every channel and forgets those left with
    /// neither streams nor messages, so channels nobody touches again do not
    /// keep their messages past retention.
    fn sweep(&mut self, settings: &Settings, now_ms: u64) {
        self.channels.retain(|_, entry| {
            entry.evict(settings, now_ms);
            entry.subscribers.retain(|s| !s.tx.is_closed());
            !(entry.ring.is_empty() && entry.subscribers.is_empty())
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
        let (tx, rx) = mpsc::channel(settings.lag_limit.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let mut backlog = Vec::new();
        for (name, start) in channels {
            let entry = self
                .channels
                .entry(name.clone())
                .or_insert_with(|| Channel::new(name));
            entry.evict(settings, now_ms);
            backlog.extend(entry.backlog(*start));
            if !entry.subscribers.iter().any(|s| s.id == subscriber) {
                entry.subscribers.push(Subscriber {
                    id: subscriber,
                    tx: tx.clone(),
                    lagged: Arc::clone(&lagged),
                });
            }
        }
        backlog.sort_by_key(|m| m.seq);
        backlog.dedup_by_key(|m| m.seq);
        Attachment {
            subscriber,
            rx,
            lagged,
            backlog: backlog.into(),
        }
    }

    /// Removes stream `subscriber` from `channels`, forgetting channels left
    /// with neither streams nor messages.
    pub(crate) fn detach(&mut self, subscriber: u64, channels: &[String]) {
        for name in channels {
            if let Some(entry) = self.channels.get_mut(name) {
                entry.subscribers.retain(|s| s.id != subscriber);
                if entry.subscribers.is_empty() && entry.ring.is_empty() {
                    self.channels.remove(name);
                }
            }
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
                };
                (name.clone(), stats)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::state::Settings;

    fn settings() -> Settings {
        Settings {
            keys: Vec::new(),
            retention: Duration::from_secs(120),
            retention_count: 10_000,
            keepalive: Duration::from_secs(15),
            lag_limit: 10_000,
        }
    }

    fn message(text: &str) -> Message {
        let mut message = Message::default();
        message.id = Some(format!("{text}:0"));
        message.data = Some(text.into());
        message
    }

    #[test]
    fn channels_nobody_touches_are_swept_once_retention_passes() {
        let settings = settings();
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
        let settings = settings();
        let mut registry = Registry::new("inst".into());
        let stored = registry.publish(&settings, "c", vec![message("a")], 0);

        assert_eq!(registry.parse_cursor(&stored[0].cursor), Some(1));
        assert_eq!(registry.parse_cursor("inst:2"), None);
        assert_eq!(registry.parse_cursor("other:1"), None);
        assert_eq!(registry.parse_cursor("inst"), None);
    }
}
