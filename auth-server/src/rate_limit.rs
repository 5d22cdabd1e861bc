//! Token-bucket rate limits per key (a verified clientId, a client IP).
//!
//! Each key has a bucket of `count` tokens that refills at `count` per
//! period, so a client may burst one period's worth and then sustain the
//! rate. Limits are per server instance.
//!
//! Memory is bounded: at most `max_keys` buckets are kept. A full bucket is
//! the same as no bucket, so when the map is full the full ones are swept
//! out; if it is still full (a flood of distinct keys), requests from *new*
//! keys pass unlimited until room frees up. Failing open keeps real users
//! served during such a flood; the per-IP limit in front of verification
//! still protects the CPU from each address.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// Buckets kept per limiter before sweeping.
pub(crate) const DEFAULT_MAX_KEYS: usize = 100_000;

/// A token-bucket limiter over keys of type `K`.
#[derive(Debug)]
pub(crate) struct RateLimiter<K> {
    capacity: f64,
    per_second: f64,
    max_keys: usize,
    state: Mutex<State<K>>,
}

#[derive(Debug)]
struct State<K> {
    buckets: HashMap<K, Bucket>,
    last_sweep: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// A limiter allowing `limit`, keeping at most `max_keys` buckets.
    pub(crate) fn new(limit: RateLimit, max_keys: usize) -> Self {
        let capacity = f64::from(limit.count);
        Self {
            capacity,
            per_second: capacity / limit.period.as_secs_f64(),
            max_keys,
            state: Mutex::new(State {
                buckets: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    /// Takes one token for `key` at `now`.
    ///
    /// # Errors
    ///
    /// How long until a token will be available, if none is now.
    pub(crate) fn check<Q>(&self, key: &Q, now: Instant) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = state.buckets.get_mut(key) {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.capacity);
            bucket.updated = now;
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                return Ok(());
            }
            let wait = (1.0 - bucket.tokens) / self.per_second;
            return Err(Duration::from_secs_f64(wait));
        }
        if state.buckets.len() >= self.max_keys {
            self.sweep(&mut state, now);
            if state.buckets.len() >= self.max_keys {
                return Ok(()); // fail open, see the module docs
            }
        }
        state.buckets.insert(
            key.to_owned(),
            Bucket {
                tokens: self.capacity - 1.0,
                updated: now,
            },
        );
        Ok(())
    }

    /// Drops buckets that have refilled completely, at most once a second.
    fn sweep(&self, state: &mut State<K>, now: Instant) {
        if state
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        state.last_sweep = Some(now);
        let (capacity, per_second) = (self.capacity, self.per_second);
        state.buckets.retain(|_, bucket| {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            bucket.tokens + elapsed * per_second < capacity
        });
    }

    /// How many buckets are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().unwrap().buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_second(count: u32) -> RateLimit {
        RateLimit {
            count,
            period: Duration::from_secs(1),
        }
    }

    #[test]
    fn allows_a_burst_of_one_period_then_refuses_with_the_wait() {
        let limiter = RateLimiter::new(per_second(3), 10);
        let t0 = Instant::now();

        for _ in 0..3 {
            assert_eq!(limiter.check(&"alice", t0), Ok(()));
        }
        let wait = limiter.check(&"alice", t0).unwrap_err();

        assert!(
            wait > Duration::from_millis(330) && wait <= Duration::from_millis(334),
            "{wait:?}"
        );
        assert_eq!(limiter.check(&"bob", t0), Ok(()), "keys are independent");
    }

    #[test]
    fn refills_at_the_configured_rate() {
        let limiter = RateLimiter::new(
            RateLimit {
                count: 2,
                period: Duration::from_secs(60),
            },
            10,
        );
        let t0 = Instant::now();
        limiter.check(&1, t0).unwrap();
        limiter.check(&1, t0).unwrap();

        assert!(limiter.check(&1, t0 + Duration::from_secs(29)).is_err());
        assert_eq!(limiter.check(&1, t0 + Duration::from_secs(30)), Ok(()));
        assert!(limiter.check(&1, t0 + Duration::from_secs(30)).is_err());
    }

    #[test]
    fn memory_is_bounded_by_sweeping_full_buckets() {
        let limiter = RateLimiter::new(per_second(1), 2);
        let t0 = Instant::now();
        limiter.check(&1, t0).unwrap();
        limiter.check(&2, t0).unwrap();

        // Full map, nothing refilled yet: a new key passes untracked.
        assert_eq!(limiter.check(&3, t0), Ok(()));
        assert_eq!(limiter.len(), 2);
        // Once the old buckets have refilled, they are swept to make room.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(limiter.check(&3, later), Ok(()));
        assert_eq!(limiter.len(), 1);
        assert!(limiter.check(&3, later).is_err());
    }
}
