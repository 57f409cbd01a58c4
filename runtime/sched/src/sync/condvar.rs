//! A condition variable that parks green threads and works with [`super::Mutex`].
//!
//! Design: a FIFO queue of [`Waiter`] nodes under an internal lock.
//!
//! - `wait` enqueues its node *before* releasing the mutex. A notifier that changes the
//!   predicate must hold the mutex to do so, so it runs after the enqueue and cannot miss the
//!   waiter (no lost wake-up). Then the waiter parks until its node is notified, and re-locks.
//! - `notify_one` pops the head node and notifies it; `notify_all` takes the whole queue. A
//!   popped node is never in the queue again, so each notification wakes a distinct waiter.
//! - `wait_timeout`: when the deadline passes, the waiter removes its node under the internal
//!   lock. If the node is gone, a notifier popped it concurrently: the wait reports "notified",
//!   so a `notify_one` is never swallowed by a timed-out waiter.
//!
//! As with every condition variable, wake-ups may be spurious from the caller's point of view
//! (another thread may have consumed the state change): use [`Condvar::wait_while`] or loop.
//! A condvar should be used with one mutex at a time; it does not check this.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::mutex::MutexGuard;
use super::shim::{self, Arc, InnerLock};
use super::waiter::{deadline_after, Waiter, NOTIFIED, WAITING};

/// Whether a timed wait on a [`Condvar`] returned because its timeout passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// `true` when the wait ended because the timeout passed rather than by a notification.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// A condition variable: green threads wait on it for a predicate over a [`super::Mutex`]'s data.
pub struct Condvar {
    waiters: InnerLock<VecDeque<Arc<Waiter>>>,
}

impl Condvar {
    /// A condition variable with no waiters.
    pub fn new() -> Condvar {
        Condvar {
            waiters: InnerLock::new(VecDeque::new()),
        }
    }

    /// Releases `guard`'s mutex, parks until notified, re-locks and returns the guard.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let node = Arc::new(Waiter::new());
        shim::lock(&self.waiters).push_back(node.clone());
        let mutex = MutexGuard::unlock_and_forget(guard);
        node.wait();
        mutex.lock()
    }

    /// Waits while `condition` holds on the protected data; returns with it false and locked.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, T> {
        while condition(&mut *guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// [`Condvar::wait`] with a timeout; the result says whether the timeout passed.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        self.wait_until(guard, deadline_after(timeout))
    }

    /// [`Condvar::wait_while`] with a timeout: returns when `condition` is false (result not
    /// timed out) or when the timeout passed with it still true (result timed out).
    pub fn wait_timeout_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let deadline = deadline_after(timeout);
        while condition(&mut *guard) {
            let (g, result) = self.wait_until(guard, deadline);
            guard = g;
            if result.timed_out() {
                let still = condition(&mut *guard);
                return (guard, WaitTimeoutResult(still));
            }
        }
        (guard, WaitTimeoutResult(false))
    }

    fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Instant,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let node = Arc::new(Waiter::new());
        shim::lock(&self.waiters).push_back(node.clone());
        let mutex = MutexGuard::unlock_and_forget(guard);
        let mut timed_out = false;
        if node.wait_until(deadline) == WAITING {
            let mut queue = shim::lock(&self.waiters);
            if let Some(pos) = queue.iter().position(|w| Arc::ptr_eq(w, &node)) {
                queue.remove(pos);
                timed_out = true;
            }
            // Not found: a notifier popped us at the deadline; count it as a notification.
        }
        (mutex.lock(), WaitTimeoutResult(timed_out))
    }

    /// Wakes one waiter (the longest waiting); returns whether there was one.
    pub fn notify_one(&self) -> bool {
        let head = shim::lock(&self.waiters).pop_front();
        match head {
            Some(w) => {
                w.notify(NOTIFIED);
                true
            }
            None => false,
        }
    }

    /// Wakes every current waiter; returns how many.
    pub fn notify_all(&self) -> usize {
        let all = std::mem::take(&mut *shim::lock(&self.waiters));
        let n = all.len();
        for w in all {
            w.notify(NOTIFIED);
        }
        n
    }
}

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar")
            .field("waiters", &shim::lock(&self.waiters).len())
            .finish()
    }
}
