//! The registry of realtime connections by `connectionKey`: the open ones,
//! and the dropped ones that stay resumable for `connectionStateTtl`
//! (RTN15, CD2f).
//!
//! Memory is bounded: open connections by the listener's connection cap,
//! resumable ones by [`MAX_RESUMABLE`], past which the ones nearest their
//! end are forgotten first.
//!
//! A resume of a connection whose socket still looks open (the client saw
//! it fail first, the server has not yet) takes the connection over, as
//! Ably does (RTN15): the old socket is told through its [`Handover`] to
//! end, resumable, and the resume proceeds once it has.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

/// At most this many dropped connections are remembered for a resume.
pub(crate) const MAX_RESUMABLE: usize = 10_000;

/// What a resume needs to know about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The `connectionId` a resume keeps.
    pub(crate) connection_id: String,
    /// The clientId the connection acted as; a resume must act as the same.
    pub(crate) client_id: Option<String>,
    /// The next `msgSerial` the connection expected from its client: kept
    /// across a resume (RTN15c6), for the slices that handle publishes.
    pub(crate) next_serial: u64,
}

/// How a resume asks the socket still serving a connection to let go.
#[derive(Debug, Default)]
pub(crate) struct Handover {
    /// Notified when a resume wants the connection: its socket ends.
    pub(crate) takeover: Notify,
    /// Notified when the socket has ended and the connection can be taken.
    pub(crate) released: Notify,
}

/// What [`Connections::resume`] found.
#[derive(Debug)]
pub(crate) enum Resume {
    /// The connection, now open again, and the handover for its new socket.
    Resumed(Entry, Arc<Handover>),
    /// A socket still serves the connection: ask it to let go through this
    /// handover, wait for its release, then try again.
    Busy(Arc<Handover>),
    /// Unknown, expired, or another clientId's.
    Refused,
}

#[derive(Debug)]
struct Slot {
    entry: Entry,
    /// The handover of the socket serving the connection (a new one for each
    /// socket, so a stale request cannot end the next one).
    handover: Arc<Handover>,
    /// `None` while a socket serves the connection; otherwise the mock-clock
    /// time (ms) until which it may be resumed.
    resumable_until_ms: Option<u64>,
}

/// Open and resumable connections.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: u64,
    resumable: usize,
    slots: HashMap<String, Slot>,
}

impl Connections {
    /// The `connectionId` of the open or resumable connection whose
    /// `connectionKey` is `key`.
    pub(crate) fn connection_id(&self, key: &str) -> Option<String> {
        self.slots
            .get(key)
            .map(|slot| slot.entry.connection_id.clone())
    }

    /// How many connections a socket serves right now.
    pub(crate) fn open(&self) -> u64 {
        self.open
    }

    /// Registers a new open connection under `key`; the handover its socket
    /// watches.
    pub(crate) fn insert(&mut self, key: String, entry: Entry) -> Arc<Handover> {
        self.open += 1;
        let handover = Arc::new(Handover::default());
        let old = self.slots.insert(
            key,
            Slot {
                entry,
                handover: Arc::clone(&handover),
                resumable_until_ms: None,
            },
        );
        // Keys are random; a collision would only lose a resumable entry.
        if let Some(old) = old {
            self.forget(&old);
        }
        handover
    }

    /// Resumes the connection `key` for a client acting as `client_id`:
    /// its entry, now open again, when it was dropped less than
    /// `connectionStateTtl` ago; [`Resume::Busy`] while a socket still
    /// serves it; [`Resume::Refused`] when the key is unknown, expired, or
    /// the connection's clientId is another (it then stays as it was for its
    /// own client).
    pub(crate) fn resume(&mut self, key: &str, client_id: Option<&str>, now_ms: u64) -> Resume {
        let Some(slot) = self.slots.get_mut(key) else {
            return Resume::Refused;
        };
        if slot.entry.client_id.as_deref() != client_id {
            return Resume::Refused;
        }
        let Some(until) = slot.resumable_until_ms else {
            return Resume::Busy(Arc::clone(&slot.handover));
        };
        if now_ms >= until {
            if let Some(slot) = self.slots.remove(key) {
                self.forget(&slot);
            }
            return Resume::Refused;
        }
        slot.resumable_until_ms = None;
        slot.handover = Arc::new(Handover::default());
        self.resumable -= 1;
        self.open += 1;
        Resume::Resumed(slot.entry.clone(), Arc::clone(&slot.handover))
    }

    /// The socket serving `key` is gone: with `resumable`, the connection
    /// (as `entry` now stands) may be resumed until `until_ms`; otherwise
    /// (CLOSE, a fatal error) it is forgotten.
    pub(crate) fn closed(&mut self, key: &str, entry: Entry, resumable: Option<u64>) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.resumable_until_ms.is_some() {
            return;
        }
        self.open = self.open.saturating_sub(1);
        // A resume waiting to take the connection over may go ahead.
        slot.handover.released.notify_one();
        match resumable {
            Some(until_ms) => {
                slot.entry = entry;
                slot.resumable_until_ms = Some(until_ms);
                self.resumable += 1;
                if self.resumable > MAX_RESUMABLE {
                    self.evict();
                }
            }
            None => {
                self.slots.remove(key);
            }
        }
    }

    /// Whether the connection `key` is still away since the socket with
    /// `handover` ended: no other socket has resumed it since (it is still
    /// resumable with that handover), or it is gone altogether.
    pub(crate) fn away(&self, key: &str, handover: &Arc<Handover>) -> bool {
        self.slots.get(key).is_none_or(|slot| {
            slot.resumable_until_ms.is_some() && Arc::ptr_eq(&slot.handover, handover)
        })
    }

    /// How many dropped connections are remembered.
    #[cfg(test)]
    fn resumable(&self) -> usize {
        self.resumable
    }

    fn forget(&mut self, slot: &Slot) {
        if slot.resumable_until_ms.is_some() {
            self.resumable -= 1;
        } else {
            self.open = self.open.saturating_sub(1);
        }
    }

    /// Forgets the resumable connection nearest its end (expired ones
    /// first, as they are nearest).
    fn evict(&mut self) {
        let oldest = self
            .slots
            .iter()
            .filter_map(|(key, slot)| slot.resumable_until_ms.map(|until| (until, key)))
            .min()
            .map(|(_, key)| key.clone());
        if let Some(key) = oldest
            && let Some(slot) = self.slots.remove(&key)
        {
            self.forget(&slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Resume {
        fn entry(self) -> Option<Entry> {
            match self {
                Resume::Resumed(entry, _) => Some(entry),
                Resume::Busy(_) | Resume::Refused => None,
            }
        }

        fn is_busy(&self) -> bool {
            matches!(self, Resume::Busy(_))
        }
    }

    fn entry(id: &str) -> Entry {
        Entry {
            connection_id: id.to_owned(),
            client_id: Some("alice".to_owned()),
            next_serial: 0,
        }
    }

    #[test]
    fn a_dropped_connection_resumes_once_until_its_ttl() {
        let mut connections = Connections::default();
        connections.insert("a!k".into(), entry("a"));
        assert!(
            connections.resume("a!k", Some("alice"), 0).is_busy(),
            "still open"
        );
        assert!(
            !connections.resume("a!k", Some("mallory"), 0).is_busy(),
            "another client cannot even ask for it"
        );

        let mut left = entry("a");
        left.next_serial = 3;
        connections.closed("a!k", left.clone(), Some(1_000));

        assert_eq!(connections.open(), 0);
        assert!(
            connections
                .resume("a!k", Some("mallory"), 999)
                .entry()
                .is_none()
        );
        assert!(connections.resume("a!k", None, 999).entry().is_none());
        assert_eq!(connections.open(), 0, "nothing taken over");
        assert_eq!(
            connections.resume("a!k", Some("alice"), 999).entry(),
            Some(left.clone())
        );
        assert_eq!(connections.open(), 1);
        assert!(
            connections.resume("a!k", Some("alice"), 999).is_busy(),
            "taken"
        );
        connections.closed("a!k", left, Some(2_000));
        assert!(
            connections
                .resume("a!k", Some("alice"), 2_000)
                .entry()
                .is_none(),
            "expired"
        );
        assert!(
            connections
                .resume("a!k", Some("alice"), 0)
                .entry()
                .is_none(),
            "forgotten"
        );
        assert_eq!(connections.resumable(), 0);
    }

    #[test]
    fn a_closed_connection_is_forgotten() {
        let mut connections = Connections::default();
        connections.insert("a!k".into(), entry("a"));

        connections.closed("a!k", entry("a"), None);

        assert_eq!(connections.open(), 0);
        assert!(
            connections
                .resume("a!k", Some("alice"), 0)
                .entry()
                .is_none()
        );
    }

    #[test]
    fn resumable_connections_are_capped_nearest_end_first() {
        let mut connections = Connections::default();
        for i in 0..=MAX_RESUMABLE {
            let key = format!("c{i}!k");
            connections.insert(key.clone(), entry(&format!("c{i}")));
            // c0 has the earliest end, so it goes when the cap is passed.
            connections.closed(&key, entry(&format!("c{i}")), Some(10_000 + i as u64));
        }

        assert_eq!(connections.resumable(), MAX_RESUMABLE);
        assert!(
            connections
                .resume("c0!k", Some("alice"), 0)
                .entry()
                .is_none()
        );
        assert!(
            connections
                .resume("c1!k", Some("alice"), 0)
                .entry()
                .is_some()
        );
        assert!(
            connections
                .resume(&format!("c{MAX_RESUMABLE}!k"), Some("alice"), 0)
                .entry()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_takeover_waits_for_the_old_socket_to_let_go() {
        let mut connections = Connections::default();
        let handover = connections.insert("a!k".into(), entry("a"));
        let Resume::Busy(asked) = connections.resume("a!k", Some("alice"), 0) else {
            panic!("a resume of an open connection asks for a takeover");
        };
        assert!(Arc::ptr_eq(&asked, &handover));

        asked.takeover.notify_one();
        handover.takeover.notified().await;
        let mut left = entry("a");
        left.next_serial = 7;
        connections.closed("a!k", left.clone(), Some(1_000));
        asked.released.notified().await;

        let Resume::Resumed(taken, next) = connections.resume("a!k", Some("alice"), 0) else {
            panic!("released, so resumed");
        };
        assert_eq!(taken, left);
        assert!(
            !Arc::ptr_eq(&next, &handover),
            "a fresh handover per socket"
        );
        assert_eq!(connections.open(), 1);
    }
}
