//! The mock's clock: wall time plus an offset that tests can move forward.
//!
//! Everything time-dependent in the mock (token and JWT expiry, TokenRequest
//! timestamps, retention, `rewind=10s`, history `start`/`end`) reads
//! [`Clock::now_ms`], so [`MockAbly::advance_clock`](crate::MockAbly::advance_clock)
//! makes a one-hour token expire without a one-hour test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far ahead of wall time the mock's clock may be moved, in all: 100
/// years (of 365 days). Enough for any token or retention test, and it keeps
/// every time the mock writes far below 2^53 ms, so JSON readers that use
/// doubles (JavaScript) read them exactly. `/_mock/advance-clock` refuses a
/// step past it with 40003; [`MockAbly::advance_clock`](crate::MockAbly::advance_clock)
/// stops at it.
pub const MAX_CLOCK_OFFSET: Duration = Duration::from_secs(100 * 365 * 86_400);

/// [`MAX_CLOCK_OFFSET`] in ms.
const MAX_OFFSET_MS: u64 = MAX_CLOCK_OFFSET.as_secs() * 1000;

/// Wall-clock milliseconds since the Unix epoch, shifted by an offset that
/// only grows, up to [`MAX_CLOCK_OFFSET`]: it never wraps, so the clock
/// never goes backwards.
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

    /// Moves the clock forward by `by`, stopping at [`MAX_CLOCK_OFFSET`].
    pub(crate) fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        // The closure always returns `Some`, so this cannot fail.
        let _ = self
            .offset_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |offset| {
                Some(offset.saturating_add(by).min(MAX_OFFSET_MS))
            });
    }

    /// Moves the clock forward by `by_ms` if that keeps it within
    /// [`MAX_CLOCK_OFFSET`]; otherwise leaves it.
    ///
    /// # Errors
    ///
    /// How far ahead (in ms) the clock already is, when `by_ms` would take
    /// it past the bound.
    pub(crate) fn try_advance_ms(&self, by_ms: u64) -> Result<(), u64> {
        self.offset_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |offset| {
                offset
                    .checked_add(by_ms)
                    .filter(|&offset| offset <= MAX_OFFSET_MS)
            })
            .map(drop)
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

    #[test]
    fn advancing_by_u64_max_then_2_cannot_wrap_the_clock_backwards() {
        let clock = Clock::default();
        let before = clock.now_ms();

        clock.advance(Duration::from_millis(u64::MAX));
        let far = clock.now_ms();
        clock.advance(Duration::from_millis(2));
        let after = clock.now_ms();

        assert!(far >= before + MAX_OFFSET_MS, "{far}");
        assert!(after >= far, "went backwards: {far} then {after}");
        assert_eq!(clock.try_advance_ms(1), Err(MAX_OFFSET_MS));
        assert!(clock.now_ms() >= after);
    }

    #[test]
    fn a_step_past_the_bound_is_refused_and_moves_nothing() {
        let clock = Clock::default();

        assert_eq!(clock.try_advance_ms(MAX_OFFSET_MS - 10), Ok(()));
        assert_eq!(clock.try_advance_ms(11), Err(MAX_OFFSET_MS - 10));
        assert_eq!(clock.try_advance_ms(u64::MAX), Err(MAX_OFFSET_MS - 10));
        assert_eq!(clock.try_advance_ms(10), Ok(()));
        assert_eq!(clock.offset_ms.load(Ordering::Relaxed), MAX_OFFSET_MS);
    }
}
