//! Park and unpark: the one blocking mechanism every farmem primitive is built on.
//!
//! CONTRACT (shared by the scheduler core and `sync`; keep these signatures):
//!
//! - [`park`] blocks the *current* thread of execution until its token is available, then
//!   consumes the token. On a green thread it blocks only that green thread (its worker runs
//!   others); on a plain OS thread (outside the runtime) it blocks the OS thread.
//! - [`Unparker::unpark`] makes the token available (at most one token: repeated unparks before a
//!   park coalesce) and wakes the parked thread. Callable from any thread, including a network
//!   reactor or another worker.
//! - [`Unparker::unpark_all`] is `unpark` of many at once: every green thread is queued
//!   before any sleeping worker is woken, so the batch pays one fence per worker.
//! - [`park_timeout`] is [`park`] with a deadline; it returns whether it was unparked (`true`)
//!   or timed out (`false`). On a green thread the timeout is a worker timer, never a blocked
//!   worker.
//! - Spurious wake-ups are allowed: callers re-check their condition in a loop, like with
//!   `std::thread::park`.
//!
//! Implementation: on an OS thread these are `std::thread::park`/`unpark`. On a green thread
//! the token is the green thread's `ParkState` (see `park_state`): `park` moves it to `PARKED`
//! and switches to the worker; `unpark` sets `NOTIFIED` and, if it saw `PARKED`, queues the
//! green thread on its owner worker (directly on that worker's ready queue when called from it,
//! else on its remote queue plus a poller notification if the worker sleeps). `park_timeout`
//! adds an entry to the worker's timer heap. Memory written before `unpark` is visible after
//! the matching `park` returns.
//!
//! While a runtime shuts down and force-unwinds a suspended green thread, `park` called from its
//! destructors returns at once (a spurious wake-up), since nothing can resume it any more.

use std::sync::Arc;
use std::time::Duration;

use crate::green;
use crate::task::Task;

#[derive(Clone)]
enum Target {
    Os(std::thread::Thread),
    Green(Arc<Task>),
}

/// A handle that wakes one parked thread of execution (green or OS). Cheap to clone.
#[derive(Clone)]
pub struct Unparker {
    target: Target,
}

impl std::fmt::Debug for Unparker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Os(t) => f.debug_tuple("Unparker::Os").field(&t.id()).finish(),
            Target::Green(t) => f.debug_tuple("Unparker::Green").field(t).finish(),
        }
    }
}

impl Unparker {
    /// Makes the token available and wakes the thread if it is parked.
    pub fn unpark(&self) {
        match &self.target {
            Target::Os(t) => t.unpark(),
            Target::Green(task) => {
                if task.park.unpark() {
                    green::schedule_woken(task.clone());
                }
            }
        }
    }

    /// Unparks every thread of `unparkers` (as [`Unparker::unpark`] each, consuming them).
    /// Green threads are queued first and their sleeping workers woken after, once each, so a
    /// batch of wake-ups costs one memory fence per worker instead of one per green thread.
    pub fn unpark_all(unparkers: impl IntoIterator<Item = Unparker>) {
        let mut notify = green::Notify::default();
        for u in unparkers {
            match u.target {
                Target::Os(t) => t.unpark(),
                Target::Green(task) => {
                    if task.park.unpark() {
                        green::queue_woken(task, &mut notify);
                    }
                }
            }
        }
        notify.send();
    }

    /// Whether this unparks a green thread (rather than an OS thread).
    pub fn is_green(&self) -> bool {
        matches!(self.target, Target::Green(_))
    }
}

/// The [`Unparker`] of the calling thread of execution.
pub fn current_unparker() -> Unparker {
    let target = match green::current_green() {
        Some(task) => Target::Green(task),
        None => Target::Os(std::thread::current()),
    };
    Unparker { target }
}

/// Blocks the calling thread of execution until its token is available (see the module note).
pub fn park() {
    if !green::green_park() {
        std::thread::park();
    }
}

/// Like [`park`] with a timeout; `true` if woken by a token, `false` if the timeout passed.
/// (Spurious wake-ups may report `true`; callers re-check their condition.)
pub fn park_timeout(timeout: Duration) -> bool {
    if let Some(woken) = green::green_park_timeout(timeout) {
        return woken;
    }
    let start = std::time::Instant::now();
    std::thread::park_timeout(timeout);
    start.elapsed() < timeout
}
