//! The registry of realtime connections by `connectionKey`: the open ones,
//! and the dropped ones that stay resumable for `connectionStateTtl`
//! (RTN15, CD2f).
//!
//! Memory is bounded: open connections by the listener's connection cap,
//! resumable ones by [`MAX_RESUMABLE`], past which the ones nearest their
//! end are forgotten first.

use std::collections::HashMap;

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

#[derive(Debug)]
struct Slot {
    entry: Entry,
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
    /// How many connections a socket serves right now.
    pub(crate) fn open(&self) -> u64 {
        self.open
    }

    /// Registers a new open connection under `key`.
    pub(crate) fn insert(&mut self, key: String, entry: Entry) {
        self.open += 1;
        let old = self.slots.insert(
            key,
            Slot {
                entry,
                resumable_until_ms: None,
            },
        );
        // Keys are random; a collision would only lose a resumable entry.
        if let Some(old) = old {
            self.forget(&old);
        }
    }

    /// Takes over the dropped connection `key` for a resume by a client
    /// acting as `client_id`: its entry, now open again. `None` when the key
    /// is unknown, expired, still served by another socket, or the
    /// connection's clientId is another (it then stays resumable for its
    /// own client).
    pub(crate) fn resume(
        &mut self,
        key: &str,
        client_id: Option<&str>,
        now_ms: u64,
    ) -> Option<Entry> {
        let slot = self.slots.get_mut(key)?;
        let until = slot.resumable_until_ms?;
        if slot.entry.client_id.as_deref() != client_id {
            return None;
        }
        if now_ms >= until {
            if let Some(slot) = self.slots.remove(key) {
                self.forget(&slot);
            }
            return None;
        }
        slot.resumable_until_ms = None;
        self.resumable -= 1;
        self.open += 1;
        Some(slot.entry.clone())
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
            connections.resume("a!k", Some("alice"), 0).is_none(),
            "still open"
        );

        let mut left = entry("a");
        left.next_serial = 3;
        connections.closed("a!k", left.clone(), Some(1_000));

        assert_eq!(connections.open(), 0);
        assert!(connections.resume("a!k", Some("mallory"), 999).is_none());
        assert!(connections.resume("a!k", None, 999).is_none());
        assert_eq!(connections.open(), 0, "nothing taken over");
        assert_eq!(
            connections.resume("a!k", Some("alice"), 999),
            Some(left.clone())
        );
        assert_eq!(connections.open(), 1);
        assert!(
            connections.resume("a!k", Some("alice"), 999).is_none(),
            "taken"
        );
        connections.closed("a!k", left, Some(2_000));
        assert!(
            connections.resume("a!k", Some("alice"), 2_000).is_none(),
            "expired"
        );
        assert!(
            connections.resume("a!k", Some("alice"), 0).is_none(),
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
        assert!(connections.resume("a!k", Some("alice"), 0).is_none());
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
        assert!(connections.resume("c0!k", Some("alice"), 0).is_none());
        assert!(connections.resume("c1!k", Some("alice"), 0).is_some());
        assert!(
            connections
                .resume(&format!("c{MAX_RESUMABLE}!k"), Some("alice"), 0)
                .is_some()
        );
    }
}
