//! The wait-queue node every blocking primitive parks on.
//!
//! A [`Waiter`] is created by the thread that is about to block, pushed (as an `Arc`) into the
//! primitive's wait queue under that primitive's internal lock, and then the thread parks until
//! the node's state leaves [`WAITING`]. A waker pops the node under the same internal lock, stores
//! the outcome into `state` with `Release` and only then unparks the owner. So:
//!
//! ```text
//!   state:  WAITING ──waker──▶ NOTIFIED | HANDED_OFF | (primitive-specific token)
//!            │                  (written once per wait, by the one waker that popped the node)
//!            └─owner: reset() back to WAITING before it re-queues the same node
//! ```
//!
//! Ownership: only the thread that popped the node from a queue may `notify` it; only the owner
//! may `reset` it, and only while it is in no queue. Because the owner re-checks `state` after
//! every return from park, spurious wake-ups (allowed by the park contract) and a stale token
//! left by an earlier notify are harmless.

use std::time::{Duration, Instant};

use super::shim::{self, AtomicU8, Ordering, Unparker};

/// The node is queued (or about to be) and nobody has woken it yet.
pub(crate) const WAITING: u8 = 0;
/// A waker popped the node and woke it; the owner re-tries whatever it waited for.
pub(crate) const NOTIFIED: u8 = 1;
/// A waker popped the node and passed it ownership of a resource (the mutex handoff).
pub(crate) const HANDED_OFF: u8 = 2;

/// One parked thread of execution in a wait queue.
#[derive(Debug)]
pub(crate) struct Waiter {
    state: AtomicU8,
    unparker: Unparker,
}

impl Waiter {
    /// A node for the calling thread of execution, in state [`WAITING`].
    pub(crate) fn new() -> Waiter {
        Waiter {
            state: AtomicU8::new(WAITING),
            unparker: Unparker::current(),
        }
    }

    /// Sets the outcome and wakes the owner. Called once per wait by the waker that popped it.
    pub(crate) fn notify(&self, outcome: u8) {
        debug_assert_ne!(outcome, WAITING);
        // Release: whatever the waker did before (published data, a handed-off lock) is visible
        // to the owner once it sees `outcome` with Acquire.
        self.state.store(outcome, Ordering::Release);
        self.unparker.unpark();
    }

    /// The current outcome ([`WAITING`] if nobody has woken the node yet).
    pub(crate) fn outcome(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Back to [`WAITING`] before the owner re-queues this node. Owner only, node in no queue.
    pub(crate) fn reset(&self) {
        self.state.store(WAITING, Ordering::Relaxed);
    }

    /// Parks until a waker sets an outcome, and returns it.
    pub(crate) fn wait(&self) -> u8 {
        loop {
            let s = self.outcome();
            if s != WAITING {
                return s;
            }
            shim::park();
        }
    }

    /// Parks until a waker sets an outcome or `deadline` passes; the outcome, or [`WAITING`] on
    /// timeout. On timeout the node may still be queued: the caller must remove it under the
    /// primitive's lock and re-check the outcome there (a waker may have won the race).
    pub(crate) fn wait_until(&self, deadline: Instant) -> u8 {
        loop {
            let s = self.outcome();
            if s != WAITING {
                return s;
            }
            let now = Instant::now();
            if now >= deadline {
                return WAITING;
            }
            shim::park_timeout(deadline - now);
        }
    }
}

/// `now + timeout`, saturating far in the future instead of overflowing on huge timeouts.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365 * 30))
}
