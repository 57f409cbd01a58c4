//! A wait group: wait until a set of tasks has finished (Go's `sync.WaitGroup`).
//!
//! Design: a count of unfinished tasks and a list of parked waiters under one internal lock.
//! `add(n)` raises the count, `done()` lowers it by one; the `done()` that brings it to zero
//! takes the waiter list and wakes every waiter (after releasing the lock). `wait()` returns at
//! once when the count is zero, else enqueues a [`Waiter`] and parks. Each waiter list belongs to
//! one "round" (count > 0 until it hits zero), and a node is woken only by the `done()` that
//! ended its round, so a waiter never needs to re-check after a notification: the round it
//! waited for is over even if a later `add` has started a new one.
//!
//! A `WaitGroup` is a cheap handle (`Clone` shares the same group), so it can be moved into
//! each green thread.

use std::fmt;
use std::time::Duration;

use super::shim::{self, Arc, InnerLock};
use super::waiter::{deadline_after, Waiter, NOTIFIED, WAITING};

struct State {
    count: usize,
    waiters: Vec<Arc<Waiter>>,
}

/// Waits for a number of tasks to call [`WaitGroup::done`]. Clones share one group.
#[derive(Clone)]
pub struct WaitGroup {
    state: Arc<InnerLock<State>>,
}

impl WaitGroup {
    /// A group with nothing to wait for (count 0).
    pub fn new() -> WaitGroup {
        WaitGroup {
            state: Arc::new(InnerLock::new(State {
                count: 0,
                waiters: Vec::new(),
            })),
        }
    }

    /// Adds `n` unfinished tasks.
    pub fn add(&self, n: usize) {
        let mut st = shim::lock(&self.state);
        st.count = st.count.saturating_add(n);
    }

    /// Marks one task finished; the last one wakes every waiter.
    ///
    /// # Panics
    /// When the count is already zero: more `done` than `add` is a bug in the caller (Go panics
    /// the same way), and silently ignoring it would release waiters too early.
    pub fn done(&self) {
        let mut st = shim::lock(&self.state);
        assert!(
            st.count > 0,
            "WaitGroup::done called more often than add: the count is already 0"
        );
        st.count -= 1;
        if st.count > 0 {
            return;
        }
        let waiters = std::mem::take(&mut st.waiters);
        drop(st);
        for w in waiters {
            w.notify(NOTIFIED);
        }
    }

    /// The number of unfinished tasks right now (a snapshot).
    pub fn count(&self) -> usize {
        shim::lock(&self.state).count
    }

    /// Parks until the count reaches zero (returns at once if it is zero).
    pub fn wait(&self) {
        let mut st = shim::lock(&self.state);
        if st.count == 0 {
            return;
        }
        let node = Arc::new(Waiter::new());
        st.waiters.push(node.clone());
        drop(st);
        node.wait();
    }

    /// Like [`WaitGroup::wait`] for at most `timeout`; `true` if the count reached zero.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = deadline_after(timeout);
        let mut st = shim::lock(&self.state);
        if st.count == 0 {
            return true;
        }
        let node = Arc::new(Waiter::new());
        st.waiters.push(node.clone());
        drop(st);
        if node.wait_until(deadline) != WAITING {
            return true;
        }
        let mut st = shim::lock(&self.state);
        match st.waiters.iter().position(|w| Arc::ptr_eq(w, &node)) {
            Some(pos) => {
                st.waiters.swap_remove(pos);
                false
            }
            // Not queued any more: the last `done` took the list at the deadline.
            None => true,
        }
    }
}

impl Default for WaitGroup {
    fn default() -> WaitGroup {
        WaitGroup::new()
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.count())
            .finish()
    }
}
