//! Presence (RTP, TP): who is present on each channel, and which realtime
//! connections hear about it.
//!
//! A member is one clientId on one connection (RTP2: ably-js keys its
//! presence map by `clientId:connectionId`). The set lives here, apart from
//! the message store, and is shared by every realtime connection and REST
//! (`GET /channels/{name}/presence`).
//!
//! - [`PresenceRegistry::apply`] takes an ENTER, UPDATE or LEAVE already
//!   checked and stamped by the connection, with Ably's semantics (an enter
//!   while present is an update, an update while absent is an enter, a leave
//!   while absent changes nothing and is not broadcast, RTP8, RTP9, RTP10),
//!   and fans the result out.
//! - Fan-out goes to every connection listening on the channel with
//!   PRESENCE_SUBSCRIBE, and always to the member's own connection (RTP17a),
//!   which needs to see its own enter.
//! - [`PresenceRegistry::listen`] registers a connection on ATTACH and gives
//!   the members to SYNC, atomically: nothing happens between the snapshot
//!   and the subscription, so a client misses no change and sees none twice.
//! - [`PresenceRegistry::leave_connection`] makes the leaves the server owes
//!   (a DETACH, a CLOSE, a connection lost for longer than
//!   `remainPresentFor`): each carries a fresh id that does not start with
//!   the connectionId and a current timestamp, so ably-js treats it as
//!   synthesized and newer than the member's last message (RTP2b1).
//!
//! Every change made is also kept for presence history (RSP4,
//! `GET /channels/{name}/presence/history`): the last [`HISTORY_PER_CHANNEL`]
//! changes of each channel, on at most [`HISTORY_CHANNELS`] channels (the
//! channel whose history was last written longest ago is forgotten first).
//!
//! Memory is bounded: at most [`MAX_MEMBERS`] members on one channel (the
//! next enter is refused with 91003), and each connection's queue holds at
//! most `lag_limit` events, past which the connection is dropped, resumable,
//! as a lagging stream is.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use shared::codes;
use shared::protocol::{PresenceAction, PresenceMessage};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::error::{ApiError, ApiResult};
use crate::state::random_id;

/// At most this many members on one channel.
pub(crate) const MAX_MEMBERS: usize = 20_000;

/// Presence history keeps this many changes per channel.
pub(crate) const HISTORY_PER_CHANNEL: usize = 1000;

/// Presence history is kept for at most this many channels.
pub(crate) const HISTORY_CHANNELS: usize = 1000;

/// Members per SYNC frame (ably-js reads any number; Ably pages at 100).
pub(crate) const SYNC_PAGE: usize = 100;

/// A presence change on a channel, as fanned out.
#[derive(Debug)]
pub(crate) struct PresenceEvent {
    /// The channel's name.
    pub(crate) channel: Arc<str>,
    /// The change, stamped.
    pub(crate) message: PresenceMessage,
}

/// A realtime connection's place on a channel's presence.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    /// The connection's `connectionId`: its own members' changes reach it
    /// whatever its modes.
    pub(crate) connection_id: Arc<str>,
    /// Attached with PRESENCE_SUBSCRIBE: every change reaches it.
    pub(crate) subscribes: bool,
    /// The connection's presence queue.
    pub(crate) tx: mpsc::Sender<Arc<PresenceEvent>>,
    /// Set when the queue is full: the connection drops itself.
    pub(crate) lagged: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct PresenceChannel {
    /// The members by (clientId, connectionId), each as its last change.
    members: BTreeMap<(String, String), PresenceMessage>,
    /// Listening connections, by their registry member id.
    listeners: HashMap<u64, Listener>,
}

impl PresenceChannel {
    fn fan_out(&mut self, event: &Arc<PresenceEvent>) {
        let own = event.message.connection_id.as_deref();
        for listener in self.listeners.values() {
            if !listener.subscribes && own != Some(&*listener.connection_id) {
                continue;
            }
            match listener.tx.try_send(Arc::clone(event)) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => listener.lagged.store(true, Ordering::Relaxed),
            }
        }
    }
}

/// Counts for a channel's occupancy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PresenceCounts {
    /// Members present.
    pub(crate) members: usize,
    /// Connections with at least one member present.
    pub(crate) connections: usize,
    /// Connections attached with PRESENCE_SUBSCRIBE.
    pub(crate) subscribers: usize,
}

/// Every channel's presence set and listeners.
#[derive(Debug, Default)]
pub(crate) struct PresenceRegistry {
    channels: HashMap<String, PresenceChannel>,
    /// connectionId → the channels it has members on.
    by_connection: HashMap<String, HashSet<String>>,
    /// Each channel's last changes, oldest first, with a write counter:
    /// the channel written least recently is evicted first.
    history: HashMap<String, (u64, VecDeque<PresenceMessage>)>,
    /// Bumped on every history write.
    history_writes: u64,
}

impl PresenceRegistry {
    /// Registers connection `id` on `channel` (again, replacing an earlier
    /// registration), and returns the members to SYNC it, each as PRESENT
    /// with its original id (empty when it does not subscribe).
    pub(crate) fn listen(
        &mut self,
        channel: &str,
        id: u64,
        listener: Listener,
    ) -> Vec<PresenceMessage> {
        let subscribes = listener.subscribes;
        let entry = self.channels.entry(channel.to_owned()).or_default();
        entry.listeners.insert(id, listener);
        if !subscribes {
            return Vec::new();
        }
        entry.members.values().map(present).collect()
    }

    /// Connection `id` no longer listens on `channel`.
    pub(crate) fn unlisten(&mut self, channel: &str, id: u64) {
        if let Some(entry) = self.channels.get_mut(channel) {
            entry.listeners.remove(&id);
            if entry.listeners.is_empty() && entry.members.is_empty() {
                self.channels.remove(channel);
            }
        }
    }

    /// Applies an ENTER, UPDATE or LEAVE stamped with its member's clientId,
    /// connectionId, id and timestamp, and fans out what changed.
    ///
    /// # Errors
    ///
    /// 91003 when the channel already has [`MAX_MEMBERS`] members; 40000 for
    /// another action or a message without clientId or connectionId.
    pub(crate) fn apply(&mut self, channel: &str, mut message: PresenceMessage) -> ApiResult<()> {
        let (Some(client_id), Some(connection_id)) =
            (message.client_id.clone(), message.connection_id.clone())
        else {
            return Err(ApiError::new(
                codes::BAD_REQUEST,
                "A presence message needs a clientId and a connectionId",
            ));
        };
        let key = (client_id, connection_id);
        let entry = self.channels.entry(channel.to_owned()).or_default();
        let present = entry.members.contains_key(&key);
        match message.action {
            Some(PresenceAction::ENTER | PresenceAction::UPDATE) => {
                if !present && entry.members.len() >= MAX_MEMBERS {
                    if entry.listeners.is_empty() && entry.members.is_empty() {
                        self.channels.remove(channel);
                    }
                    return Err(ApiError::new(
                        codes::PRESENCE_MEMBER_LIMIT,
                        format!(
                            "Unable to enter presence channel: at most {MAX_MEMBERS} members; channel = {channel}"
                        ),
                    ));
                }
                // An enter while present is an update, an update while
                // absent an enter (RTP8, RTP9).
                message.action = Some(if present {
                    PresenceAction::UPDATE
                } else {
                    PresenceAction::ENTER
                });
                entry.members.insert(key.clone(), message.clone());
                self.by_connection
                    .entry(key.1)
                    .or_default()
                    .insert(channel.to_owned());
            }
            Some(PresenceAction::LEAVE) => {
                // A leave while absent changes nothing (RTP10).
                let Some(member) = entry.members.remove(&key) else {
                    return Ok(());
                };
                if message.data.is_none() {
                    message.data = member.data;
                    message.encoding = member.encoding;
                }
                self.forget(channel, &key.1);
            }
            other => {
                return Err(ApiError::new(
                    codes::BAD_REQUEST,
                    format!("Unexpected presence action {other:?}"),
                ));
            }
        }
        self.record(channel, &message);
        let event = Arc::new(PresenceEvent {
            channel: Arc::from(channel),
            message,
        });
        if let Some(entry) = self.channels.get_mut(channel) {
            entry.fan_out(&event);
        }
        Ok(())
    }

    /// Every member of `connection_id` leaves `channel` (or every channel),
    /// with leaves the server makes: a fresh id not starting with the
    /// connectionId and `now_ms` as their timestamp (RTP2b1).
    pub(crate) fn leave_connection(
        &mut self,
        connection_id: &str,
        channel: Option<&str>,
        now_ms: u64,
    ) {
        let channels: Vec<String> = match channel {
            Some(channel) => self
                .by_connection
                .get(connection_id)
                .filter(|channels| channels.contains(channel))
                .map(|_| vec![channel.to_owned()])
                .unwrap_or_default(),
            None => self
                .by_connection
                .get(connection_id)
                .map(|channels| channels.iter().cloned().collect())
                .unwrap_or_default(),
        };
        for name in channels {
            let mut leaves = Vec::new();
            let Some(entry) = self.channels.get_mut(&name) else {
                continue;
            };
            let leaving: Vec<(String, String)> = entry
                .members
                .keys()
                .filter(|(_, connection)| connection == connection_id)
                .cloned()
                .collect();
            let channel_name: Arc<str> = Arc::from(name.as_str());
            for key in leaving {
                let Some(member) = entry.members.remove(&key) else {
                    continue;
                };
                let mut leave = member;
                leave.action = Some(PresenceAction::LEAVE);
                leave.id = Some(format!("{}:0:0", random_id(9)));
                leave.timestamp = Some(now_ms);
                leaves.push(leave.clone());
                let event = Arc::new(PresenceEvent {
                    channel: Arc::clone(&channel_name),
                    message: leave,
                });
                entry.fan_out(&event);
            }
            for leave in &leaves {
                self.record(&name, leave);
            }
            self.forget(&name, connection_id);
        }
    }

    /// Keeps `message` in `channel`'s presence history.
    fn record(&mut self, channel: &str, message: &PresenceMessage) {
        self.history_writes += 1;
        let writes = self.history_writes;
        if !self.history.contains_key(channel) && self.history.len() >= HISTORY_CHANNELS {
            let oldest = self
                .history
                .iter()
                .min_by_key(|(_, (written, _))| *written)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                self.history.remove(&oldest);
            }
        }
        let (written, changes) = self.history.entry(channel.to_owned()).or_default();
        *written = writes;
        if changes.len() >= HISTORY_PER_CHANNEL {
            changes.pop_front();
        }
        changes.push_back(message.clone());
    }

    /// `channel`'s presence history, oldest first.
    pub(crate) fn history(&self, channel: &str) -> Vec<PresenceMessage> {
        self.history
            .get(channel)
            .map(|(_, changes)| changes.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `connection_id` has a member present anywhere.
    pub(crate) fn has_members(&self, connection_id: &str) -> bool {
        self.by_connection.contains_key(connection_id)
    }

    /// The members of `channel`, as PRESENT, ordered by clientId then
    /// connectionId.
    pub(crate) fn members(&self, channel: &str) -> Vec<PresenceMessage> {
        self.channels
            .get(channel)
            .map(|entry| entry.members.values().map(present).collect())
            .unwrap_or_default()
    }

    /// The channels with members or listeners.
    pub(crate) fn channel_names(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    /// The presence side of `channel`'s occupancy.
    pub(crate) fn counts(&self, channel: &str) -> PresenceCounts {
        let Some(entry) = self.channels.get(channel) else {
            return PresenceCounts::default();
        };
        let connections: HashSet<&str> = entry.members.keys().map(|(_, c)| c.as_str()).collect();
        PresenceCounts {
            members: entry.members.len(),
            connections: connections.len(),
            subscribers: entry.listeners.values().filter(|l| l.subscribes).count(),
        }
    }

    /// Drops `connection_id`'s index entry for `channel` when it has no
    /// member left there, and the channel when nothing is left on it.
    fn forget(&mut self, channel: &str, connection_id: &str) {
        let Some(entry) = self.channels.get(channel) else {
            return;
        };
        let still = entry.members.keys().any(|(_, c)| c == connection_id);
        let empty = entry.members.is_empty() && entry.listeners.is_empty();
        if !still && let Some(channels) = self.by_connection.get_mut(connection_id) {
            channels.remove(channel);
            if channels.is_empty() {
                self.by_connection.remove(connection_id);
            }
        }
        if empty {
            self.channels.remove(channel);
        }
    }
}

/// `member` as a SYNC or REST listing gives it: PRESENT, the rest as it
/// last changed (its id included).
fn present(member: &PresenceMessage) -> PresenceMessage {
    let mut present = member.clone();
    present.action = Some(PresenceAction::PRESENT);
    present
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(
        connection: &str,
        subscribes: bool,
    ) -> (Listener, mpsc::Receiver<Arc<PresenceEvent>>) {
        let (tx, rx) = mpsc::channel(16);
        let listener = Listener {
            connection_id: Arc::from(connection),
            subscribes,
            tx,
            lagged: Arc::new(AtomicBool::new(false)),
        };
        (listener, rx)
    }

    fn change(action: PresenceAction, client: &str, connection: &str, id: &str) -> PresenceMessage {
        let mut message = PresenceMessage::default();
        message.action = Some(action);
        message.client_id = Some(client.to_owned());
        message.connection_id = Some(connection.to_owned());
        message.id = Some(id.to_owned());
        message.timestamp = Some(1);
        message
    }

    fn actions(rx: &mut mpsc::Receiver<Arc<PresenceEvent>>) -> Vec<(PresenceAction, String)> {
        let mut seen = Vec::new();
        while let Ok(event) = rx.try_recv() {
            seen.push((
                event.message.action.unwrap(),
                event.message.client_id.clone().unwrap(),
            ));
        }
        seen
    }

    #[test]
    fn enter_update_and_leave_follow_ablys_semantics() {
        let mut registry = PresenceRegistry::default();
        let (watcher, mut watched) = listener("w", true);
        assert!(registry.listen("c", 1, watcher).is_empty());

        registry
            .apply("c", change(PresenceAction::UPDATE, "a", "ca", "ca:0:0"))
            .unwrap();
        registry
            .apply("c", change(PresenceAction::ENTER, "a", "ca", "ca:1:0"))
            .unwrap();
        registry
            .apply("c", change(PresenceAction::LEAVE, "b", "cb", "cb:0:0"))
            .unwrap();
        registry
            .apply("c", change(PresenceAction::LEAVE, "a", "ca", "ca:2:0"))
            .unwrap();

        assert_eq!(
            actions(&mut watched),
            [
                (PresenceAction::ENTER, "a".to_owned()),
                (PresenceAction::UPDATE, "a".to_owned()),
                (PresenceAction::LEAVE, "a".to_owned()),
            ]
        );
        assert!(registry.members("c").is_empty());
        assert!(registry.by_connection.is_empty());
    }

    #[test]
    fn a_connection_without_presence_subscribe_hears_only_its_own_members() {
        let mut registry = PresenceRegistry::default();
        let (own, mut own_rx) = listener("ca", false);
        registry.listen("c", 1, own);
        registry
            .apply("c", change(PresenceAction::ENTER, "b", "cb", "cb:0:0"))
            .unwrap();
        registry
            .apply("c", change(PresenceAction::ENTER, "a", "ca", "ca:0:0"))
            .unwrap();

        assert_eq!(
            actions(&mut own_rx),
            [(PresenceAction::ENTER, "a".to_owned())]
        );
    }

    #[test]
    fn a_sync_gives_members_as_present_with_their_original_ids() {
        let mut registry = PresenceRegistry::default();
        registry
            .apply("c", change(PresenceAction::ENTER, "a", "ca", "ca:0:0"))
            .unwrap();
        let (late, _rx) = listener("cl", true);

        let sync = registry.listen("c", 2, late);

        assert_eq!(sync.len(), 1);
        assert_eq!(sync[0].action, Some(PresenceAction::PRESENT));
        assert_eq!(sync[0].id.as_deref(), Some("ca:0:0"));
        let (quiet, _rx) = listener("cq", false);
        assert!(registry.listen("c", 3, quiet).is_empty());
    }

    #[test]
    fn leaving_a_connection_synthesizes_leaves_that_do_not_look_like_its_own() {
        let mut registry = PresenceRegistry::default();
        let (watcher, mut watched) = listener("w", true);
        registry.listen("c", 1, watcher);
        let (other, _rx) = listener("w2", true);
        registry.listen("d", 2, other);
        for channel in ["c", "d"] {
            let mut enter = change(PresenceAction::ENTER, "a", "ca", "ca:0:0");
            enter.data = Some(serde_json::json!("profile"));
            registry.apply(channel, enter).unwrap();
        }
        actions(&mut watched);

        registry.leave_connection("ca", Some("c"), 99);
        let event = watched.try_recv().unwrap();
        assert_eq!(event.message.action, Some(PresenceAction::LEAVE));
        assert_eq!(event.message.timestamp, Some(99));
        assert_eq!(event.message.data, Some(serde_json::json!("profile")));
        assert!(!event.message.id.as_deref().unwrap().starts_with("ca"));
        assert_eq!(registry.members("d").len(), 1, "only the channel named");

        registry.leave_connection("ca", None, 100);
        assert!(registry.members("d").is_empty());
        assert!(registry.by_connection.is_empty());
    }

    #[test]
    fn members_per_channel_are_bounded() {
        let mut registry = PresenceRegistry::default();
        for i in 0..MAX_MEMBERS {
            let connection = format!("c{i}");
            registry
                .apply("big", change(PresenceAction::ENTER, "a", &connection, "x"))
                .unwrap();
        }
        let refused = registry
            .apply("big", change(PresenceAction::ENTER, "a", "one-more", "x"))
            .unwrap_err();
        assert_eq!(refused.0.code, 91003);
        registry
            .apply("big", change(PresenceAction::UPDATE, "a", "c0", "y"))
            .expect("a member already present may still update");
    }

    #[test]
    fn a_full_queue_marks_the_listener_lagged() {
        let mut registry = PresenceRegistry::default();
        let (tx, _rx) = mpsc::channel(1);
        let lagged = Arc::new(AtomicBool::new(false));
        registry.listen(
            "c",
            1,
            Listener {
                connection_id: Arc::from("w"),
                subscribes: true,
                tx,
                lagged: Arc::clone(&lagged),
            },
        );
        for i in 0..2 {
            registry
                .apply(
                    "c",
                    change(PresenceAction::ENTER, &format!("m{i}"), "cm", "x"),
                )
                .unwrap();
        }
        assert!(lagged.load(Ordering::Relaxed));
    }
}
