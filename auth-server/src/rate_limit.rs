//! Token-bucket rate limits per key (a verified clientId, a client address
//! as [`IpKey`](crate::client_ip::IpKey): IPv4 per address, IPv6 per /64).
//!
//! Each key has a bucket of `count` tokens that refills at `count` per
//! period, so a client may burst one period's worth and then sustain the
//! rate. Limits are per server instance.
//!
//! Memory is bounded: at most `max_keys` buckets are kept. When a new key
//! finds the map full, [`RateLimiter`] makes room for a tenth of it at once:
//! first by dropping buckets that have refilled (a full bucket is the same as
//! none), then, if that is not enough, the stalest ones (least recently
//! used). A flood of distinct keys therefore never switches the limit off:
//! every key, new ones included, is always tracked. What a flood can do is
//! push out idle clients' buckets, which only hands those clients a fresh
//! burst; an attacker with more keys than `max_keys` (more than 100,000 IPv4
//! addresses or IPv6 /64s) gets one burst per key per cycle through them.
//!
//! The cost stays off the hot path: a request from a known key is one hash
//! lookup under the lock, as before; making room walks the map (O(n)) but
//! frees n/10 slots, so it runs at most once per n/10 new keys.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// Buckets kept per limiter before making room.
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
            self.make_room(&mut state.buckets, now);
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

    /// Shrinks a full map by a tenth (at least one bucket): first the
    /// buckets that have refilled completely, then the stalest ones, oldest
    /// `updated` first (see the module docs).
    fn make_room(&self, buckets: &mut HashMap<K, Bucket>, now: Instant) {
        let keep = self.max_keys.saturating_sub((self.max_keys / 10).max(1));
        let (capacity, per_second) = (self.capacity, self.per_second);
        buckets.retain(|_, bucket| {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            bucket.tokens + elapsed * per_second < capacity
        });
        if buckets.len() <= keep {
            return;
        }
        let excess = buckets.len() - keep;
        let mut times: Vec<Instant> = buckets.values().map(|bucket| bucket.updated).collect();
        let (_, &mut cutoff, _) = times.select_nth_unstable(excess - 1);
        // Every bucket older than the cutoff goes, then as many at it as
        // are still needed (under a flood, many share one instant).
        let mut at_cutoff = excess - times.iter().filter(|&&at| at < cutoff).count();
        buckets.retain(|_, bucket| {
            if bucket.updated < cutoff {
                false
            } else if bucket.updated == cutoff && at_cutoff > 0 {
                at_cutoff -= 1;
                false
            } else {
                true
            }
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
    fn memory_is_bounded_by_dropping_refilled_buckets_first() {
        let limiter = RateLimiter::new(per_second(1), 3);
        let t0 = Instant::now();
        limiter.check(&1, t0).unwrap();
        limiter.check(&2, t0 + Duration::from_secs(2)).unwrap();
        limiter.check(&3, t0 + Duration::from_secs(2)).unwrap();

        // Key 1 has refilled by then: it is the one dropped.
        let later = t0 + Duration::from_millis(2500);
        assert_eq!(limiter.check(&4, later), Ok(()));

        assert_eq!(limiter.len(), 3);
        assert!(limiter.check(&2, later).is_err(), "2 is still tracked");
        assert!(limiter.check(&4, later).is_err(), "and so is the new key");
    }

    #[test]
    fn a_flood_of_new_keys_cannot_switch_the_limit_off() {
        let limiter = RateLimiter::new(per_second(1), 10);
        let t0 = Instant::now();
        for key in 0..10 {
            limiter.check(&key, t0).unwrap();
        }

        // The map is full and nothing has refilled: a new key is still
        // tracked (and so limited), room being made by evicting the stalest.
        assert_eq!(limiter.check(&10, t0), Ok(()));
        assert!(limiter.check(&10, t0).is_err(), "the new key is limited");
        for key in 11..1_000 {
            assert_eq!(limiter.check(&key, t0), Ok(()));
            assert!(limiter.check(&key, t0).is_err(), "key {key} is limited");
        }
        assert!(limiter.len() <= 10);
    }

    #[test]
    fn when_full_the_stalest_buckets_are_evicted_first() {
        let limiter = RateLimiter::new(per_second(1), 10);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // Keys 0..10 used at 0..9 ms; then key 0 again, so 1 is the stalest.
        for key in 0..10 {
            limiter.check(&key, at(key)).unwrap();
        }
        assert!(limiter.check(&0, at(10)).is_err());

        assert_eq!(limiter.check(&10, at(11)), Ok(()));

        assert_eq!(limiter.len(), 10, "one bucket (a tenth) made room");
        // The others are still limited; key 1 was evicted and starts afresh.
        for key in [0, 2, 9, 10] {
            assert!(limiter.check(&key, at(12)).is_err(), "key {key}");
        }
        assert_eq!(limiter.check(&1, at(12)), Ok(()));
    }
}
