//! The subscription's decisions, apart from its I/O
//! (`docs/protocol.md#the-sse-client-algorithm`): after a failure, renew the
//! token, retry after a delay, skip a message that never decodes, or give
//! up; before a connection, whether the resume point is still good and what
//! to resume from; and when to renew a token ahead of its expiry.
//!
//! Nothing here reads a clock, sleeps or sends a request: the current time
//! and a random number for jitter are arguments, and the answer is a value
//! the driver acts on. So every rule is tested by calling it, as the SSE
//! parser is, without a server and without waiting.

use std::time::Duration;

use tokio::time::Instant;

use crate::ably::Rewind;
use crate::error::Error;
use crate::sse::ReconnectOptions;

/// A token with less life left than this is not renewed early, so that an
/// issuer of nearly expired tokens cannot cause a loop of stream switches.
pub(crate) const MIN_EARLY_RENEWAL: Duration = Duration::from_millis(500);

/// Ably keeps two minutes of messages for a rewind
/// (`docs/protocol.md#stream-parameters`).
pub(crate) const MAX_REWIND_SECS: u64 = 120;

/// A message that fails to decode this many times in a row, resuming from
/// the same point, never will: the subscription then skips it
/// (`docs/protocol.md#delta-bases` [I]).
pub(crate) const MAX_DECODE_FAILURES: u32 = 3;

/// The client settings the decisions read.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Whether the auth source can hand out a new token (an auth URL or a
    /// callback; not a fixed token or a key).
    pub(crate) can_renew: bool,
    /// Token errors in a row answered with a new token before giving up.
    pub(crate) max_token_renewals: u32,
    /// Backoff and the retry limit.
    pub(crate) reconnect: ReconnectOptions,
    /// How long after a disconnection a resume is still attempted.
    pub(crate) resume_window: Duration,
    /// How long before a known expiry a token is renewed.
    pub(crate) renew_before: Duration,
}

/// What follows a stream that failed, or could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A token error: fetch a new token, then reconnect after `delay`,
    /// resuming.
    Renew {
        /// Zero for the first renewal in a row.
        delay: Duration,
    },
    /// Reconnect with the same credential after `delay`, resuming.
    Retry {
        /// The backoff delay.
        delay: Duration,
    },
    /// The same message failed to decode too often from the same point:
    /// reconnect after `delay` without a resume point or backlog, and tell
    /// the application continuity is lost.
    Skip {
        /// The backoff delay.
        delay: Duration,
    },
    /// End the subscription with the error.
    GiveUp,
    /// End the subscription with
    /// [`Error::RetriesExhausted`](crate::Error::RetriesExhausted).
    Exhausted {
        /// Connections failed in a row.
        attempts: u32,
    },
}

/// Where the next stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResumeFrom<'a> {
    /// No parameter: live messages only.
    Nothing,
    /// `lastEvent=<cursor>`.
    LastEvent(&'a str),
    /// The application's `rewind`, on a fresh start.
    Rewind(&'a Rewind),
    /// `rewind=<n>s`: connected before, nothing delivered yet, so no
    /// cursor; everything since the first stream opened (repeats are
    /// dropped by message id).
    SecondsSinceConnected(u64),
}

/// The subscription's counters and the rules that read them.
#[derive(Debug)]
pub(crate) struct Policy {
    settings: Settings,
    /// Failed or fruitless connections in a row (not token errors).
    failures: u32,
    /// Token errors in a row with no message in between.
    token_errors: u32,
    /// When the current outage began.
    disconnected_since: Option<Instant>,
    /// When the first stream of this run opened: with no cursor yet, a
    /// reconnection rewinds to it so that nothing published since is lost.
    connected_at: Option<Instant>,
    /// Decode failures in a row, all resuming from `decode_failed_at`.
    decode_failures: u32,
    decode_failed_at: Option<String>,
    /// The next stream starts without `lastEvent` or `rewind`: continuity
    /// was given up to skip a message that cannot be decoded.
    skip_backlog: bool,
}

impl Policy {
    pub(crate) fn new(settings: Settings) -> Self {
        Self {
            settings,
            failures: 0,
            token_errors: 0,
            disconnected_since: None,
            connected_at: None,
            decode_failures: 0,
            decode_failed_at: None,
            skip_backlog: false,
        }
    }

    /// Connections failed in a row (for `Debug`).
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Token errors in a row (for `Debug`).
    pub(crate) fn token_errors(&self) -> u32 {
        self.token_errors
    }

    /// A stream failed with `err` at `now`, the last delivered message
    /// being `cursor`; `random` is in `[0, 1)`, for jitter.
    ///
    /// - Token errors (40140–40149, 40141 "token revoked" included): a new
    ///   token, at once the first time in a row, then with backoff; after
    ///   `max_token_renewals` in a row, or when the token cannot be renewed,
    ///   give up with the error.
    /// - Retryable errors and messages that do not decode: backoff, until
    ///   `max_retries` in a row; the third decode failure from the same
    ///   resume point skips the message instead of resuming.
    /// - Anything else gives up.
    pub(crate) fn on_failure(
        &mut self,
        err: &Error,
        cursor: Option<&str>,
        now: Instant,
        random: f64,
    ) -> Decision {
        self.disconnected_since.get_or_insert(now);
        let decode_error = matches!(err, Error::Decode(_));
        let mut skip = false;
        if decode_error {
            if self.decode_failures == 0 || self.decode_failed_at.as_deref() != cursor {
                self.decode_failures = 0;
                self.decode_failed_at = cursor.map(str::to_owned);
            }
            self.decode_failures += 1;
            if self.decode_failures >= MAX_DECODE_FAILURES {
                // Resuming from here replays the same message, which will
                // not decode: give up the resume point rather than loop or
                // deliver it wrong.
                self.decode_failures = 0;
                self.skip_backlog = true;
                skip = true;
            }
        }
        if err.is_token_error() {
            self.token_errors = self.token_errors.saturating_add(1);
            if !self.settings.can_renew || self.token_errors > self.settings.max_token_renewals {
                return Decision::GiveUp;
            }
            // The first renewal reconnects at once (as ably-js does); a
            // token rejected again waits like any other failure.
            let delay = if self.token_errors == 1 {
                Duration::ZERO
            } else {
                self.backoff(random)
            };
            return Decision::Renew { delay };
        }
        if !(err.is_retryable() || decode_error) {
            return Decision::GiveUp;
        }
        self.failures = self.failures.saturating_add(1);
        if let Some(max) = self.settings.reconnect.max_retries
            && self.failures > max
        {
            return Decision::Exhausted {
                attempts: self.failures,
            };
        }
        let delay = self.backoff(random);
        if skip {
            self.connected_at = None;
            Decision::Skip { delay }
        } else {
            Decision::Retry { delay }
        }
    }

    /// A message was delivered: the stream works, every count starts over.
    pub(crate) fn on_message(&mut self) {
        self.failures = 0;
        self.token_errors = 0;
        self.decode_failures = 0;
    }

    /// A heartbeat arrived: the token is accepted.
    pub(crate) fn on_heartbeat(&mut self) {
        self.token_errors = 0;
    }

    /// A stream opened at `now`.
    pub(crate) fn on_open(&mut self, now: Instant) {
        self.disconnected_since = None;
        self.skip_backlog = false;
        self.connected_at.get_or_insert(now);
    }

    /// Before a connection at `now`: whether the outage has outlasted the
    /// resume window while there is a resume point (`has_cursor`, or a first
    /// stream to rewind to). If so Ably has forgotten the connection: the
    /// resume point is dropped here, and the caller drops its cursor and
    /// tells the application continuity is lost.
    pub(crate) fn resume_expired(&mut self, has_cursor: bool, now: Instant) -> bool {
        let Some(since) = self.disconnected_since else {
            return false;
        };
        if !(has_cursor || self.connected_at.is_some())
            || now.saturating_duration_since(since) <= self.settings.resume_window
        {
            return false;
        }
        self.connected_at = None;
        // A new outage, measured from the fresh start.
        self.disconnected_since = Some(now);
        true
    }

    /// Whether the next connection needs a new credential: there is none,
    /// or the one held expired (at `expires_at`) and can be replaced.
    pub(crate) fn needs_credential(
        &self,
        held: bool,
        expires_at: Option<Instant>,
        now: Instant,
    ) -> bool {
        let expired = expires_at.is_some_and(|at| at <= now);
        !held || (expired && self.settings.can_renew)
    }

    /// What the next stream resumes from, at `now`: nothing after a skip;
    /// else the cursor; else the application's rewind; else, when a stream
    /// opened before but delivered nothing, the seconds since then (rounded
    /// up, at most Ably's two minutes).
    pub(crate) fn resume_from<'a>(
        &self,
        cursor: Option<&'a str>,
        rewind: Option<&'a Rewind>,
        now: Instant,
    ) -> ResumeFrom<'a> {
        if self.skip_backlog {
            // Starting fresh past a message that cannot be decoded: no
            // backlog, which would hold it again.
            return ResumeFrom::Nothing;
        }
        match (cursor, rewind, self.connected_at) {
            (Some(cursor), _, _) => ResumeFrom::LastEvent(cursor),
            (None, Some(rewind), _) => ResumeFrom::Rewind(rewind),
            (None, None, Some(since)) => {
                let secs = now.saturating_duration_since(since).as_secs() + 1;
                ResumeFrom::SecondsSinceConnected(secs.min(MAX_REWIND_SECS))
            }
            (None, None, None) => ResumeFrom::Nothing,
        }
    }

    /// When to renew, at `now`, a token that expires at `expires_at`:
    /// `renew_before` ahead of it, but never more than half its remaining
    /// life ahead. `None` when the expiry is unknown, the token cannot be
    /// renewed, or it has less than [`MIN_EARLY_RENEWAL`] left (then the
    /// server's rejection, and the renewal cap, take over).
    pub(crate) fn renew_at(&self, expires_at: Option<Instant>, now: Instant) -> Option<Instant> {
        if !self.settings.can_renew {
            return None;
        }
        let left = expires_at?.checked_duration_since(now)?;
        if left < MIN_EARLY_RENEWAL {
            return None;
        }
        let margin = self.settings.renew_before.min(left / 2);
        Some(now + (left - margin))
    }

    fn backoff(&self, random: f64) -> Duration {
        let reconnect = &self.settings.reconnect;
        reconnect.delay(
            reconnect.initial_delay,
            self.failures.max(self.token_errors).saturating_sub(1),
            random,
        )
    }
}

#[cfg(test)]
mod tests;
