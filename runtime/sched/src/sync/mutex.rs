//! A mutual-exclusion lock that parks green threads, not workers.
//!
//! Design (after parking_lot's word lock, with a FIFO wait queue and one handoff rule):
//!
//! ```text
//!   state: AtomicUsize      bit 0 LOCKED        bit 1 HAS_WAITERS
//!   waiters: InnerLock<VecDeque<QueuedWaiter>>  (internal lock, held for a few instructions)
//! ```
//!
//! - Fast path: `lock` is one CAS `LOCKED` clear → set; `unlock` is one CAS `LOCKED` → `0`,
//!   which fails whenever `HAS_WAITERS` is set and sends the unlocker down the slow path.
//! - Slow path of `lock`: spin a few times while nobody is queued (a critical section is often
//!   shorter than a park), then, *under the queue lock*, either take the lock (it was released
//!   meanwhile) or set `HAS_WAITERS` and enqueue a [`Waiter`], and park through `crate::park`
//!   (only the green thread blocks; its worker runs others).
//! - `HAS_WAITERS` is set and cleared only under the queue lock, so it is set exactly when the
//!   queue is non-empty, and an unlocker that sees it clear cannot miss a queued waiter.
//! - Slow path of `unlock`: pop the head waiter. Normally release the lock and wake the head,
//!   which then competes with newcomers (barging keeps throughput high). A head that already
//!   lost such a race once is re-queued at the *front* and marked, and the next unlock *hands
//!   the lock off* to it directly: `LOCKED` stays set and the waiter's outcome is `HANDED_OFF`.
//!   So a waiter waits at most for those queued ahead of it plus one barging newcomer per
//!   position: no starvation ("eventual fairness", parking_lot; strict handoff would make every
//!   unlock a context switch).
//! - Writes made under the lock reach the next owner through `Release` on unlock / `Acquire`
//!   on lock, or, on handoff, through the waiter's `Release` outcome store / `Acquire` load.
//!
//! There is no poisoning: a panic while the lock is held releases it (the guard drops).

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use super::shim::{self, Arc, AtomicUsize, InnerLock, Ordering};
use super::waiter::{Waiter, HANDED_OFF};

const LOCKED: usize = 1;
const HAS_WAITERS: usize = 2;

/// Spins before parking while nobody is queued. Small: on a green thread the holder may be a
/// green thread of the same worker, which cannot run while we spin.
#[cfg(not(loom))]
const SPIN_LIMIT: u32 = 32;
#[cfg(loom)]
const SPIN_LIMIT: u32 = 1;

#[derive(Debug)]
struct QueuedWaiter {
    waiter: Arc<Waiter>,
    /// Woken once already and lost the race to a barging locker: gets the next handoff.
    lost_race: bool,
}

/// A mutual-exclusion lock protecting a `T`; blocking in [`Mutex::lock`] parks only the calling
/// green thread (or the OS thread, outside the runtime).
pub struct Mutex<T: ?Sized> {
    state: AtomicUsize,
    waiters: InnerLock<VecDeque<QueuedWaiter>>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time, possibly on another thread, so
// `T: Send` is what moving access between threads needs (same bounds as `std::sync::Mutex`).
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: as above: shared `&Mutex<T>` only gives exclusive access to `T` through the lock.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// Proof of holding a [`Mutex`]: derefs to the protected value; unlocks when dropped.
///
/// Unlike `std`'s guard it may move to another thread (`Send` when `T: Send`): a green thread
/// that holds it may be resumed on another worker, and nothing in the lock is tied to a thread.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    /// `&mut T`'s auto traits: `Send` iff `T: Send`, `Sync` iff `T: Sync`.
    _marker: PhantomData<&'a mut T>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `value`.
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            state: AtomicUsize::new(0),
            waiters: InnerLock::new(VecDeque::new()),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, parking the calling green thread while another holder has it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if self
            .state
            .compare_exchange_weak(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        self.guard()
    }

    /// Locks if nobody holds the lock right now, without blocking.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let mut s = self.state.load(Ordering::Relaxed);
        while s & LOCKED == 0 {
            match self.state.compare_exchange_weak(
                s,
                s | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.guard()),
                Err(now) => s = now,
            }
        }
        None
    }

    /// Whether some thread holds the lock right now (a racy snapshot, for diagnostics).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & LOCKED != 0
    }

    /// Mutable access without locking: `&mut self` proves nobody else can hold the lock.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn guard(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            mutex: self,
            _marker: PhantomData,
        }
    }

    #[cold]
    fn lock_slow(&self) {
        let mut spins = 0;
        let mut waiter: Option<Arc<Waiter>> = None;
        let mut lost_race = false;
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & LOCKED == 0 {
                if self
                    .state
                    .compare_exchange_weak(s, s | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if spins < SPIN_LIMIT && s & HAS_WAITERS == 0 {
                spins += 1;
                shim::spin_hint();
                continue;
            }
            let node = waiter
                .get_or_insert_with(|| Arc::new(Waiter::new()))
                .clone();
            {
                let mut queue = shim::lock(&self.waiters);
                // Under the queue lock: take the lock if it was released, else announce a waiter.
                loop {
                    let s = self.state.load(Ordering::Relaxed);
                    if s & LOCKED == 0 {
                        if self
                            .state
                            .compare_exchange_weak(
                                s,
                                s | LOCKED,
                                Ordering::Acquire,
                                Ordering::Relaxed,
                            )
                            .is_ok()
                        {
                            return;
                        }
                    } else if self
                        .state
                        .compare_exchange_weak(
                            s,
                            s | HAS_WAITERS,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        break;
                    }
                }
                node.reset();
                let entry = QueuedWaiter {
                    waiter: node.clone(),
                    lost_race,
                };
                if lost_race {
                    queue.push_front(entry);
                } else {
                    queue.push_back(entry);
                }
            }
            if node.wait() == HANDED_OFF {
                return;
            }
            // Woken with the lock released: compete once more; if we lose we get the handoff.
            lost_race = true;
        }
    }

    /// Releases the lock. Caller must hold it (the guard's drop, or the condvar on its behalf).
    fn unlock(&self) {
        if self
            .state
            .compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_slow();
        }
    }

    #[cold]
    fn unlock_slow(&self) {
        let mut queue = shim::lock(&self.waiters);
        let Some(head) = queue.pop_front() else {
            // HAS_WAITERS is only set with a non-empty queue; stay correct even if not.
            self.state
                .fetch_and(!(LOCKED | HAS_WAITERS), Ordering::Release);
            return;
        };
        let rest = if queue.is_empty() { 0 } else { HAS_WAITERS };
        // Plain stores are enough: while LOCKED is set and we hold the queue lock, no other
        // thread can change `state` (lockers CAS only a clear LOCKED; HAS_WAITERS changes only
        // under the queue lock).
        if head.lost_race {
            self.state.store(LOCKED | rest, Ordering::Relaxed);
            drop(queue);
            head.waiter.notify(HANDED_OFF);
        } else {
            self.state.store(rest, Ordering::Release);
            drop(queue);
            head.waiter.notify(super::waiter::NOTIFIED);
        }
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// Releases the lock without running the guard's drop; the condvar re-locks and rebuilds it.
    pub(crate) fn unlock_and_forget(guard: MutexGuard<'a, T>) -> &'a Mutex<T> {
        let mutex = guard.mutex;
        std::mem::forget(guard);
        mutex.unlock();
        mutex
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread of execution holds the lock, so no
        // `&mut T` exists elsewhere.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively and `&mut self` makes this the only
        // borrow through it.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Mutex<T> {
        Mutex::new(value)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
    use std::sync::Arc as StdArc;

    use super::*;
    use crate::{spawn, yield_now, Runtime};

    /// On one worker the interleaving is deterministic: a woken waiter that loses the race to
    /// a barging re-lock is re-queued at the front, and the next unlock hands it the lock
    /// directly (the lock stays held although the waiter has not run yet).
    #[test]
    fn loser_of_a_barging_race_gets_the_handoff() {
        let rt = Runtime::builder()
            .workers(1)
            .stack_size(64 * 1024)
            .build()
            .expect("runtime");
        let log = rt.block_on(|| {
            let m = StdArc::new(Mutex::new(Vec::new()));
            let b_started = StdArc::new(AtomicBool::new(false));
            let mut g = m.lock();
            let b = {
                let (m, started) = (m.clone(), b_started.clone());
                spawn(move || {
                    started.store(true, StdOrdering::SeqCst);
                    m.lock().push("b");
                })
            };
            // B runs until it parks in lock() without yielding, so once it has started it is
            // queued.
            while !b_started.load(StdOrdering::SeqCst) {
                yield_now();
            }
            assert_eq!(shim::lock(&m.waiters).len(), 1, "b is queued");
            g.push("a1");
            drop(g); // wakes b without handoff: b has not lost a race yet
            let mut g = m.lock(); // barge in before b runs
            let lost = || shim::lock(&m.waiters).front().map(|w| w.lost_race);
            while lost() != Some(true) {
                yield_now(); // b runs, finds the lock taken, re-queues at the front
            }
            g.push("a2");
            drop(g); // hands the lock to b
            assert!(
                m.try_lock().is_none(),
                "the lock was handed to b, not released"
            );
            b.join().expect("b");
            let v = m.lock().clone();
            v
        });
        assert_eq!(log, vec!["a1", "a2", "b"]);
    }
}
