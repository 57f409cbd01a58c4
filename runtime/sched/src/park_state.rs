//! The parker state machine of one green thread: the token of the park contract.
//!
//! ```text
//!            unpark (any thread)              begin_park (owner)
//!   EMPTY ────────────────────────▶ NOTIFIED      EMPTY ──────▶ PARKED ── suspend
//!     ▲  ◀──── try_take_token / finish_park ──┘                   │
//!     │                                                           │ unpark: swap → NOTIFIED,
//!     └──── cancel_park (owner's timer, park_timeout) ◀──────────┘   the unparker schedules it
//! ```
//!
//! - Only the green thread itself (on its owner worker) moves the state out of `NOTIFIED` or into
//!   `PARKED`; any thread may move it to `NOTIFIED` (`unpark`).
//! - Whoever moves the state *out of* `PARKED` schedules the green thread, exactly once: an
//!   unparker that saw `PARKED` (its swap returned it), or the owner worker's timer whose
//!   `cancel_park` CAS won. The other party sees `NOTIFIED`/`EMPTY` and does nothing, so a green
//!   thread is never queued twice and a wake-up is never lost.
//! - Because a started green thread is pinned to its worker (see the crate note), an unparker may
//!   queue it between `begin_park` and the actual switch: the worker cannot pop it before the
//!   green thread has suspended, since the worker is the thread running it.
//! - `unpark` is a release and `finish_park`/`try_take_token` acquire, so what the unparker wrote
//!   before `unpark` is visible after `park` returns (the guarantee `std::thread::park` gives).

use crate::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const NOTIFIED: u8 = 1;
const PARKED: u8 = 2;

/// The token state of one green thread (see the module note).
#[derive(Debug)]
pub(crate) struct ParkState(AtomicU8);

impl ParkState {
    /// A state with no token.
    pub(crate) fn new() -> ParkState {
        ParkState(AtomicU8::new(EMPTY))
    }

    /// Owner: consumes a pending token without blocking; `true` if there was one.
    pub(crate) fn try_take_token(&self) -> bool {
        self.0
            .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Owner, right before suspending: `EMPTY → PARKED`. Returns `false` (and consumes the token)
    /// when a token was already there, in which case the caller must not suspend.
    pub(crate) fn begin_park(&self) -> bool {
        match self
            .0
            .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(_) => {
                // Only NOTIFIED is possible here (PARKED is only ever set by the owner itself).
                self.0.store(EMPTY, Ordering::Relaxed);
                false
            }
        }
    }

    /// Any thread: makes the token available. `true` when the green thread was parked, in which
    /// case the caller now owns the duty to schedule it.
    pub(crate) fn unpark(&self) -> bool {
        self.0.swap(NOTIFIED, Ordering::AcqRel) == PARKED
    }

    /// Owner worker's timer (park with timeout): `PARKED → EMPTY`. `true` when the timer won and
    /// must schedule the green thread; `false` when an unparker already did.
    pub(crate) fn cancel_park(&self) -> bool {
        self.0
            .compare_exchange(PARKED, EMPTY, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Owner, after being resumed from a park: consumes the token if there is one; `true` when
    /// woken by a token, `false` when only the timer woke it.
    pub(crate) fn finish_park(&self) -> bool {
        self.0.swap(EMPTY, Ordering::Acquire) == NOTIFIED
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn token_coalesces_and_is_consumed_once() {
        let s = ParkState::new();
        assert!(!s.try_take_token());
        assert!(!s.unpark());
        assert!(!s.unpark());
        assert!(s.try_take_token());
        assert!(!s.try_take_token());
    }

    #[test]
    fn parked_state_is_scheduled_by_exactly_one_party() {
        let s = ParkState::new();
        assert!(s.begin_park());
        assert!(s.unpark(), "the unparker of a parked thread schedules it");
        assert!(!s.cancel_park(), "the timer loses after an unpark");
        assert!(s.finish_park());

        assert!(s.begin_park());
        assert!(s.cancel_park(), "the timer wins when nobody unparked");
        assert!(!s.unpark(), "a later unpark only leaves a token");
        assert!(s.finish_park(), "the token is not lost");
        assert!(!s.begin_park() || s.cancel_park());
    }

    #[test]
    fn begin_park_consumes_a_pending_token() {
        let s = ParkState::new();
        s.unpark();
        assert!(!s.begin_park());
        assert!(!s.try_take_token());
    }
}

#[cfg(all(test, loom))]
mod loom_park_state {
    use super::*;
    use loom::sync::atomic::{AtomicBool, AtomicUsize};
    use loom::sync::Arc;

    /// A parking owner and a concurrent unparker: the owner is scheduled exactly when it
    /// suspended, and it always observes the unparker's write once its park returns.
    #[test]
    fn loom_no_lost_wakeup() {
        loom::model(|| {
            let state = Arc::new(ParkState::new());
            let data = Arc::new(AtomicUsize::new(0));
            let scheduled = Arc::new(AtomicBool::new(false));
            let (s2, d2, sc2) = (state.clone(), data.clone(), scheduled.clone());
            let unparker = loom::thread::spawn(move || {
                d2.store(1, Ordering::Relaxed);
                if s2.unpark() {
                    sc2.store(true, Ordering::Release);
                }
            });
            if state.begin_park() {
                // Suspended: only a scheduling unparker can resume us.
                while !scheduled.load(Ordering::Acquire) {
                    loom::thread::yield_now();
                }
                assert!(state.finish_park());
            }
            assert_eq!(data.load(Ordering::Relaxed), 1);
            unparker.join().unwrap();
        });
    }

    /// park_timeout: the owner's timer and an unparker race for a parked thread; exactly one
    /// schedules it and the token is never lost.
    #[test]
    fn loom_timer_and_unpark_race() {
        loom::model(|| {
            let state = Arc::new(ParkState::new());
            assert!(state.begin_park());
            let s2 = state.clone();
            let unparker = loom::thread::spawn(move || s2.unpark());
            let timer_won = state.cancel_park();
            let unparker_won = unparker.join().unwrap();
            assert!(timer_won ^ unparker_won, "exactly one party schedules");
            assert!(state.finish_park(), "the unpark token survives the timer");
        });
    }
}
