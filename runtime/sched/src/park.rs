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
//! - [`park_timeout`] is [`park`] with a deadline; it returns whether it was unparked (`true`)
//!   or timed out (`false`). On a green thread the timeout is a worker timer, never a blocked
//!   worker.
//! - Spurious wake-ups are allowed: callers re-check their condition in a loop, like with
//!   `std::thread::park`.
//!
//! This first version implements the OS-thread half only; the scheduler core replaces the
//! bodies with the green-thread-aware version without changing the signatures.

use std::time::Duration;

/// A handle that wakes one parked thread of execution (green or OS). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Unparker {
    thread: std::thread::Thread,
}

impl Unparker {
    /// Makes the token available and wakes the thread if it is parked.
    pub fn unpark(&self) {
        self.thread.unpark();
    }
}

/// The [`Unparker`] of the calling thread of execution.
pub fn current_unparker() -> Unparker {
    Unparker {
        thread: std::thread::current(),
    }
}

/// Blocks the calling thread of execution until its token is available (see the module note).
pub fn park() {
    std::thread::park();
}

/// Like [`park`] with a timeout; `true` if woken by a token, `false` if the timeout passed.
/// (Spurious wake-ups may report `true`; callers re-check their condition.)
pub fn park_timeout(timeout: Duration) -> bool {
    let start = std::time::Instant::now();
    std::thread::park_timeout(timeout);
    start.elapsed() < timeout
}
