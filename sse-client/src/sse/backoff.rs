//! Reconnection delays: the server's reconnection time, doubled per failure
//! in a row, capped and jittered. Pure functions of their inputs, so they are
//! tested without sleeping.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// How a stream reconnects. Every field has a documented default.
///
/// ```
/// use std::time::Duration;
/// use sse_client::sse::ReconnectOptions;
///
/// let options = ReconnectOptions::default()
///     .initial_delay(Duration::from_millis(500))
///     .max_retries(Some(10));
/// assert_eq!(options.max_delay, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconnectOptions {
    /// The reconnection time until the server sends `retry:`. Default 1 s.
    pub initial_delay: Duration,
    /// The longest delay backoff grows to. Default 30 s.
    pub max_delay: Duration,
    /// The shortest reconnection time a server's `retry:` may set, so that
    /// `retry: 0` cannot cause a reconnect storm. Default 100 ms; set it to
    /// zero to honour any value.
    pub retry_floor: Duration,
    /// Whether each delay is drawn at random from its upper half, so that
    /// many clients dropped at once do not all return at once. Default on.
    pub jitter: bool,
    /// How many connections may fail in a row (fail to open, or end without
    /// delivering an event) before the stream gives up with
    /// [`Error::RetriesExhausted`](crate::Error::RetriesExhausted). Default
    /// `None`: never give up.
    pub max_retries: Option<u32>,
    /// Whether 5xx and 429 responses are retried. Default off: the standard
    /// fails the connection on any status but 200.
    pub retry_server_errors: bool,
}

impl Default for ReconnectOptions {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            retry_floor: Duration::from_millis(100),
            jitter: true,
            max_retries: None,
            retry_server_errors: false,
        }
    }
}

impl ReconnectOptions {
    /// Sets [`ReconnectOptions::initial_delay`].
    #[must_use]
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets [`ReconnectOptions::max_delay`].
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets [`ReconnectOptions::retry_floor`].
    #[must_use]
    pub fn retry_floor(mut self, floor: Duration) -> Self {
        self.retry_floor = floor;
        self
    }

    /// Sets [`ReconnectOptions::jitter`].
    #[must_use]
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`ReconnectOptions::max_retries`].
    #[must_use]
    pub fn max_retries(mut self, max_retries: Option<u32>) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets [`ReconnectOptions::retry_server_errors`].
    #[must_use]
    pub fn retry_server_errors(mut self, retry: bool) -> Self {
        self.retry_server_errors = retry;
        self
    }

    /// The reconnection time a server's `retry:` value sets: the value, but
    /// no less than [`ReconnectOptions::retry_floor`].
    pub fn reconnection_time(&self, server_retry: Duration) -> Duration {
        server_retry.max(self.retry_floor)
    }

    /// The delay before the next connection, given the current reconnection
    /// time, how many connections have failed in a row since the last one
    /// that delivered an event, and a random number in `[0, 1)` for jitter.
    ///
    /// The delay is `reconnection_time × 2^failures`, capped at
    /// [`ReconnectOptions::max_delay`] (but never below the reconnection time
    /// itself, which the server chose), then, with jitter, scaled into its
    /// upper half.
    pub fn delay(&self, reconnection_time: Duration, failures: u32, random: f64) -> Duration {
        let factor = 2_u32.saturating_pow(failures.min(31));
        let grown = reconnection_time.saturating_mul(factor);
        let capped = grown.min(self.max_delay.max(reconnection_time));
        if self.jitter {
            capped.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
        } else {
            capped
        }
    }
}

/// A small, fast source of jitter: xorshift64* seeded from the process's
/// random hasher keys. Not for cryptography.
#[derive(Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Self {
        Self(RandomState::new().hash_one(0x5EED_u64) | 1)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn sample(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delay_doubles_per_failure_up_to_the_cap() {
        let options = ReconnectOptions::default()
            .jitter(false)
            .max_delay(ms(1000));

        let delays: Vec<Duration> = (0..6).map(|n| options.delay(ms(100), n, 0.0)).collect();

        assert_eq!(
            delays,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
    }

    #[test]
    fn a_server_reconnection_time_above_the_cap_is_honoured() {
        let options = ReconnectOptions::default()
            .jitter(false)
            .max_delay(ms(1000));

        assert_eq!(options.delay(ms(5000), 3, 0.0), ms(5000));
    }

    #[test]
    fn jitter_keeps_the_delay_in_its_upper_half() {
        let options = ReconnectOptions::default();

        assert_eq!(options.delay(ms(1000), 0, 0.0), ms(500));
        assert_eq!(options.delay(ms(1000), 0, 0.5), ms(750));
        assert!(options.delay(ms(1000), 0, 0.999_999) <= ms(1000));
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let options = ReconnectOptions::default().jitter(false);

        assert_eq!(options.delay(ms(1000), u32::MAX, 0.0), options.max_delay);
    }

    #[test]
    fn the_floor_applies_to_server_retry_values_and_may_be_zero() {
        let options = ReconnectOptions::default();

        assert_eq!(options.reconnection_time(ms(0)), ms(100));
        assert_eq!(options.reconnection_time(ms(300)), ms(300));
        let zero = options.retry_floor(Duration::ZERO).jitter(false);
        assert_eq!(zero.delay(zero.reconnection_time(ms(0)), 5, 0.3), ms(0));
    }

    #[test]
    fn jitter_samples_stay_in_range() {
        let mut jitter = Jitter::new();

        for _ in 0..10_000 {
            let sample = jitter.sample();
            assert!((0.0..1.0).contains(&sample), "{sample}");
        }
    }
}
