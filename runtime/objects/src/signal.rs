//! `Signal`: a generation-counted wake-up for the runtime's own waits (the evacuator waiting for
//! memory pressure, the prefetch thread waiting for requests, a mutator waiting for a chunk in
//! flight to land).
//!
//! A waiter reads [`Signal::generation`] *before* it checks its condition and passes that value
//! to [`Signal::wait_since`], which returns at once if any notify came after the read. So a
//! notify between the check and the wait is never lost (a condition variable whose generation
//! is read inside the wait misses it, which is why the prefetch thread used to wait in 2 ms
//! slices).
//!
//! A notify with nobody waiting is one RMW and one load, no lock and no system call: waiters
//! register (their `farmem_sched` unparker, so a green thread parks only itself) under a mutex
//! and publish their number in `waiting`. The argument is Dekker's, on sequentially consistent
//! operations: the waiter stores `waiting` and then loads the generation; the notifier bumps the
//! generation and then loads `waiting`. In the one total order of these four operations, either
//! the waiter's load sees the bump (it does not park) or the notifier's load sees the waiter (it
//! takes the mutex and unparks every registered waiter).
//!
//! Wake-ups may be spurious (an unpark meant for an earlier wait); `wait_since` loops until the
//! generation moves or the timeout passes, and callers re-check their condition anyway.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use farmem_sched::park::{self, Unparker};

/// A generation-counted wake-up signal (module note).
#[derive(Default)]
pub(crate) struct Signal {
    generation: AtomicU64,
    /// The number of registered waiters (the length of `waiters`, written under its lock).
    waiting: AtomicUsize,
    /// Registered waiters, each under the ticket it removes itself by.
    waiters: Mutex<Vec<(u64, Unparker)>>,
    next_ticket: AtomicU64,
}

impl Signal {
    /// The generation now: read it before checking the condition waited for.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(SeqCst)
    }

    /// Bumps the generation and wakes every waiter; without waiters, no lock is taken.
    #[inline]
    pub(crate) fn notify(&self) {
        self.generation.fetch_add(1, SeqCst);
        if self.waiting.load(SeqCst) != 0 {
            self.wake_all();
        }
    }

    #[cold]
    fn wake_all(&self) {
        let woken = {
            let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            self.waiting.store(0, SeqCst);
            std::mem::take(&mut *w)
        };
        for (_, u) in woken {
            u.unpark();
        }
    }

    /// Waits until the generation is no longer `seen` (a notify came after `seen` was read) or
    /// `timeout` has passed. Parks only the calling green thread when called on one.
    pub(crate) fn wait_since(&self, seen: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let ticket = self.next_ticket.fetch_add(1, SeqCst);
        let me = park::current_unparker();
        loop {
            {
                let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
                if !w.iter().any(|(t, _)| *t == ticket) {
                    w.push((ticket, me.clone()));
                }
                self.waiting.store(w.len(), SeqCst);
            }
            if self.generation.load(SeqCst) != seen {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            park::park_timeout(deadline - now);
            if self.generation.load(SeqCst) != seen {
                break;
            }
        }
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|(t, _)| *t != ticket);
        self.waiting.store(w.len(), SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_notify_before_the_wait_is_not_lost() {
        let s = Signal::default();
        let seen = s.generation();
        s.notify();
        // A lost notify would park for the hour.
        s.wait_since(seen, Duration::from_secs(3600));
        assert_ne!(s.generation(), seen);
    }

    #[test]
    fn a_notify_from_another_thread_wakes_the_waiter_and_unregisters_it() {
        let s = Arc::new(Signal::default());
        let seen = s.generation();
        let n = s.clone();
        let h = std::thread::spawn(move || {
            // Wait until the main thread has registered, then notify.
            while n.waiting.load(SeqCst) == 0 {
                std::thread::yield_now();
            }
            n.notify();
        });
        s.wait_since(seen, Duration::from_secs(3600));
        h.join().unwrap();
        assert_eq!(s.waiting.load(SeqCst), 0);
        assert!(s.waiters.lock().unwrap().is_empty());
    }

    #[test]
    fn a_timed_out_wait_leaves_no_waiter_behind() {
        let s = Signal::default();
        let seen = s.generation();
        s.wait_since(seen, Duration::from_millis(1));
        assert_eq!(s.generation(), seen);
        assert_eq!(s.waiting.load(SeqCst), 0);
        assert!(s.waiters.lock().unwrap().is_empty());
    }
}
