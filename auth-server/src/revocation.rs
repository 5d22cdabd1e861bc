//! Revocations this instance made through `POST /api/revoke`, remembered
//! for a moment so that the JWTs it mints next are not revoked with them.
//!
//! Ably refuses a credential issued before a revocation's `issuedBefore`
//! (RSA17; `docs/protocol.md#token-revocation`). A token from
//! `requestToken` carries Ably's own issue time in milliseconds, later than
//! the revocation, so it passes. But a JWT's `iat` is whole seconds: one
//! minted in the same second as the revocation counts as issued before it,
//! and is refused with 40141 as soon as it is used, which would cut off the
//! very renewal that lets a user come back under a new policy. So for a
//! clientId or revocation key revoked here, [`RecentRevocations::not_before`]
//! names the first whole second Ably will accept, and the JWT endpoint waits
//! for it (at most [`MAX_WAIT`]) before signing.
//!
//! Per instance: another instance behind the same load balancer does not
//! know of the revocation and may mint a JWT in that second, which Ably
//! refuses; the client's next renewal then gets one that passes.
//!
//! The check on every mint is one atomic load while no revocation is
//! recent; the map is looked at only in the second after one. At most
//! [`MAX_REMEMBERED`] targets are kept; past that, every mint waits out
//! the newest revocation's second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest a mint waits for a revocation's second to pass.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(1);

/// At most this many recently revoked targets are remembered.
pub(crate) const MAX_REMEMBERED: usize = 10_000;

/// What a revocation named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetKind {
    /// Every credential with this clientId.
    ClientId,
    /// Every JWT with this `x-ably-revocation-key`.
    RevocationKey,
}

impl TargetKind {
    /// The name Ably's targets and `/api/revoke`'s body use.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TargetKind::ClientId => "clientId",
            TargetKind::RevocationKey => "revocationKey",
        }
    }
}

/// Recent revocations: target → the first millisecond (a whole second) from
/// which a JWT minted for it passes.
#[derive(Debug, Default)]
pub(crate) struct RecentRevocations {
    /// The latest `not_before` of any entry: a mint at or after it needs no
    /// look-up.
    latest: AtomicU64,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    client_ids: HashMap<String, u64>,
    revocation_keys: HashMap<String, u64>,
    /// Set when the map was full: every mint waits until then.
    everyone: u64,
}

impl RecentRevocations {
    /// Remembers that Ably revoked `value` (of `kind`) for credentials issued
    /// before `issued_before_ms`.
    pub(crate) fn record(&self, kind: TargetKind, value: &str, issued_before_ms: u64, now_ms: u64) {
        // The first whole second whose `iat` is not before `issuedBefore`.
        let not_before = issued_before_ms.div_ceil(1000).saturating_mul(1000);
        if not_before <= now_ms {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.client_ids.len() + entries.revocation_keys.len() >= MAX_REMEMBERED {
            entries.client_ids.retain(|_, until| *until > now_ms);
            entries.revocation_keys.retain(|_, until| *until > now_ms);
        }
        if entries.client_ids.len() + entries.revocation_keys.len() >= MAX_REMEMBERED {
            entries.everyone = entries.everyone.max(not_before);
        } else {
            let map = match kind {
                TargetKind::ClientId => &mut entries.client_ids,
                TargetKind::RevocationKey => &mut entries.revocation_keys,
            };
            let until = map.entry(value.to_owned()).or_default();
            *until = (*until).max(not_before);
        }
        self.latest.fetch_max(not_before, Ordering::Release);
    }

    /// The millisecond before which a JWT for `client_id` (with
    /// `revocation_key`) must not be issued, if that is after `now_ms`.
    pub(crate) fn not_before(
        &self,
        client_id: &str,
        revocation_key: Option<&str>,
        now_ms: u64,
    ) -> Option<u64> {
        if now_ms >= self.latest.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let by_client = entries.client_ids.get(client_id).copied().unwrap_or(0);
        let by_key = revocation_key
            .and_then(|key| entries.revocation_keys.get(key).copied())
            .unwrap_or(0);
        let until = by_client.max(by_key).max(entries.everyone);
        (until > now_ms).then_some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_target_waits_for_the_next_whole_second_and_others_do_not() {
        let recent = RecentRevocations::default();

        recent.record(
            TargetKind::ClientId,
            "alice",
            1_700_000_000_250,
            1_700_000_000_260,
        );
        recent.record(
            TargetKind::RevocationKey,
            "s1",
            1_700_000_001_000,
            1_700_000_000_900,
        );

        assert_eq!(
            recent.not_before("alice", None, 1_700_000_000_300),
            Some(1_700_000_001_000)
        );
        assert_eq!(recent.not_before("alice", None, 1_700_000_001_000), None);
        assert_eq!(recent.not_before("bob", None, 1_700_000_000_300), None);
        assert_eq!(
            recent.not_before("bob", Some("s1"), 1_700_000_000_950),
            Some(1_700_000_001_000),
            "an iat of …000 s would still be before an issuedBefore of …001 000 ms"
        );
        assert_eq!(
            recent.not_before("bob", Some("s2"), 1_700_000_000_950),
            None
        );
    }

    #[test]
    fn a_full_map_makes_every_mint_wait() {
        let recent = RecentRevocations::default();
        for i in 0..MAX_REMEMBERED {
            recent.record(TargetKind::ClientId, &format!("c{i}"), 5_500, 5_000);
        }

        recent.record(TargetKind::ClientId, "late", 5_600, 5_100);

        assert_eq!(recent.not_before("anyone", None, 5_200), Some(6_000));
        assert_eq!(recent.not_before("anyone", None, 6_000), None);
    }
}
