//! The per-connection watchdog: one timer, driven by the connection's
//! [`Phase`], polled on the connection's own task right after hyper's
//! connection future.
//!
//! - [`Phase::Busy`]: no deadline.
//! - [`Phase::Reading`]: the header-read timeout, from the moment the phase
//!   began (the accept, or the first byte after the last response).
//! - [`Phase::Idle`]: the idle timeout, from the end of the last response.
//!
//! The timer is only ever armed at most one header-read timeout ahead of
//! the moment it is armed (an idle connection is looked at again every
//! header-read timeout until its idle deadline). So when a request head
//! begins, the timer already fires no later than its deadline and only
//! needs moving later, which tokio does without taking the timer wheel's
//! lock: the common keep-alive request costs two clock reads and no lock.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::Limits;
use crate::conn::{ConnState, Phase};

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No complete request head within the header-read timeout.
    HeaderRead(Duration),
    /// Idle for the idle timeout.
    Idle(Duration),
}

impl fmt::Display for Expired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expired::HeaderRead(limit) => {
                write!(f, "no complete request head within {limit:?}")
            }
            Expired::Idle(limit) => write!(f, "idle for {limit:?}"),
        }
    }
}

/// Runs `connection` until it completes, or until the watchdog expires; then
/// drops it, which closes the socket (unless hyper has upgraded it).
pub(crate) async fn watch<F: Future>(
    connection: F,
    state: &ConnState,
    limits: Limits,
) -> Result<F::Output, Expired> {
    let mut connection = pin!(connection);
    let now = Instant::now();
    let mut timer = pin!(tokio::time::sleep_until(now + limits.header_read_timeout));
    let mut dog = Dog {
        limits,
        seen: state.phase(),
        deadline: Some(now + limits.header_read_timeout),
        armed: true,
    };
    poll_fn(|cx| {
        if let Poll::Ready(output) = connection.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        dog.check(cx, state, timer.as_mut()).map(Err)
    })
    .await
}

/// The watchdog's memory between polls.
#[derive(Debug)]
struct Dog {
    limits: Limits,
    /// The phase last seen; a change restarts the clock.
    seen: Phase,
    /// When the connection is to be closed, unless its phase changes first;
    /// `None` while busy.
    deadline: Option<Instant>,
    /// Whether the timer is set (an elapsed timer is ready at every poll).
    armed: bool,
}

impl Dog {
    fn check(
        &mut self,
        cx: &mut Context<'_>,
        state: &ConnState,
        mut timer: Pin<&mut Sleep>,
    ) -> Poll<Expired> {
        state.register(cx);
        let phase = state.phase();
        if phase != self.seen {
            self.seen = phase;
            self.deadline = match phase {
                // Left armed: if it fires while busy, it is simply disarmed.
                Phase::Busy => None,
                Phase::Reading(_) | Phase::Idle(_) => {
                    let now = Instant::now();
                    let deadline = now + self.limit(phase);
                    self.arm(timer.as_mut(), now, deadline);
                    Some(deadline)
                }
            };
        }
        while self.armed && timer.as_mut().poll(cx).is_ready() {
            self.armed = false;
            if let Some(deadline) = self.deadline {
                let now = Instant::now();
                if now >= deadline {
                    return Poll::Ready(match phase {
                        Phase::Idle(_) => Expired::Idle(self.limits.idle_timeout),
                        Phase::Busy | Phase::Reading(_) => {
                            Expired::HeaderRead(self.limits.header_read_timeout)
                        }
                    });
                }
                self.arm(timer.as_mut(), now, deadline);
            }
        }
        Poll::Pending
    }

    /// The timeout of a phase that has one.
    fn limit(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Idle(_) => self.limits.idle_timeout,
            Phase::Busy | Phase::Reading(_) => self.limits.header_read_timeout,
        }
    }

    /// Sets the timer for `deadline`, or one header-read timeout from `now`
    /// if that is sooner (see the module docs).
    fn arm(&mut self, timer: Pin<&mut Sleep>, now: Instant, deadline: Instant) {
        timer.reset(deadline.min(now + self.limits.header_read_timeout));
        self.armed = true;
    }
}
