//! The sleep/wake handshake between an idle worker and the threads that give it work.
//!
//! A worker with nothing to run sleeps in its reactor (`Poller::wait`) until its next timer or a
//! notification. The handshake that makes this free of lost wake-ups is Dekker's:
//!
//! ```text
//!   worker i                              waker (any thread)
//!   sleeping[i] = true   (SeqCst)         push work to a queue i can see
//!   fence(SeqCst)                         fence(SeqCst)
//!   re-check every queue it can see       if sleeping[i] { notify poller i }
//!   if empty: Poller::wait
//! ```
//!
//! With both fences, either the worker sees the work or the waker sees the flag; a notification
//! sent before the worker reaches `wait` is kept by the poller (an eventfd), so `wait` returns at
//! once. Wakers therefore pay one fence and one load on the fast path and a syscall only when the
//! target is asleep (Shenango's "only wake parked cores" rule).

use crate::atomic::{fence, AtomicBool, AtomicUsize, Ordering};

/// Which workers are asleep (see the module note).
#[derive(Debug)]
pub(crate) struct Idle {
    sleeping: Box<[AtomicBool]>,
    num_sleeping: AtomicUsize,
}

impl Idle {
    /// State for `workers` workers, all awake.
    pub(crate) fn new(workers: usize) -> Idle {
        Idle {
            sleeping: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            num_sleeping: AtomicUsize::new(0),
        }
    }

    /// Worker `i` is about to sleep. Afterwards it must re-check its queues before waiting.
    pub(crate) fn announce_sleep(&self, i: usize) {
        self.sleeping[i].store(true, Ordering::SeqCst);
        self.num_sleeping.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Worker `i` is awake again.
    pub(crate) fn end_sleep(&self, i: usize) {
        if self.sleeping[i].swap(false, Ordering::SeqCst) {
            self.num_sleeping.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// After pushing work only worker `i` may run: whether `i` must be notified.
    pub(crate) fn needs_notify(&self, i: usize) -> bool {
        fence(Ordering::SeqCst);
        self.sleeping[i].load(Ordering::SeqCst)
    }

    /// After pushing work any worker may run (or steal): a sleeping worker to notify, if any.
    pub(crate) fn sleeper(&self) -> Option<usize> {
        fence(Ordering::SeqCst);
        if self.num_sleeping.load(Ordering::SeqCst) == 0 {
            return None;
        }
        (0..self.sleeping.len()).find(|&i| self.sleeping[i].load(Ordering::SeqCst))
    }
}

#[cfg(all(test, loom))]
mod loom_idle {
    use super::*;
    use loom::sync::Arc;

    /// Work pushed for a worker that is going to sleep is either seen by its re-check or the
    /// waker notifies it: the worker never sleeps past queued work.
    #[test]
    fn loom_no_sleep_past_work() {
        loom::model(|| {
            let idle = Arc::new(Idle::new(1));
            let work = Arc::new(AtomicBool::new(false));
            let (i2, w2) = (idle.clone(), work.clone());
            let waker = loom::thread::spawn(move || {
                w2.store(true, Ordering::Release);
                i2.needs_notify(0)
            });
            idle.announce_sleep(0);
            let saw_work = work.load(Ordering::Acquire);
            let notified = waker.join().unwrap();
            assert!(saw_work || notified, "lost wake-up");
            idle.end_sleep(0);
        });
    }

    /// The same for stealable work announced through `sleeper`.
    #[test]
    fn loom_sleeper_is_found() {
        loom::model(|| {
            let idle = Arc::new(Idle::new(2));
            let work = Arc::new(AtomicBool::new(false));
            let (i2, w2) = (idle.clone(), work.clone());
            let waker = loom::thread::spawn(move || {
                w2.store(true, Ordering::Release);
                i2.sleeper()
            });
            idle.announce_sleep(1);
            let saw_work = work.load(Ordering::Acquire);
            let found = waker.join().unwrap();
            assert!(saw_work || found == Some(1), "lost wake-up");
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_announce_and_end() {
        let idle = Idle::new(3);
        assert_eq!(idle.sleeper(), None);
        idle.announce_sleep(2);
        assert!(idle.needs_notify(2));
        assert!(!idle.needs_notify(0));
        assert_eq!(idle.sleeper(), Some(2));
        idle.end_sleep(2);
        idle.end_sleep(2);
        assert_eq!(idle.sleeper(), None);
    }
}
