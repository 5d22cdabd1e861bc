//! The mock's clock: wall time plus an offset that tests can move forward.
//!
//! Everything time-dependent in the mock (token and JWT expiry, TokenRequest
//! timestamps, retention, `rewind=10s`, history `start`/`end`) reads
//! [`Clock::now_ms`], so [`MockAbly::advance_clock`](crate::MockAbly::advance_clock)
//! makes a one-hour token expire without a one-hour test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch, shifted by an offset that
/// only grows.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset_ms: AtomicU64,
}

impl Clock {
    /// The mock's current time, in ms since the Unix epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        wall.saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves the clock forward by `by`.
    pub(crate) fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(by, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward_by_at_least_the_offset() {
        let clock = Clock::default();
        let before = clock.now_ms();

        clock.advance(Duration::from_secs(3600));

        assert!(clock.now_ms() >= before + 3_600_000);
    }
}
