//! Green threads for farmem: stackful coroutines on M:N workers, with per-worker timers and an
//! fd reactor, so that a green thread waiting for far memory (or a lock, or a socket) gives its
//! core to others (AIFM hides remote-fetch latency with Shenango's green threads the same way).
//!
//! Design in one screen (each module's note has the details):
//!
//! - **Stackful** ([`corosensei`]): a green thread has its own stack, so C/C++ code called from
//!   it can block inside a callback into Rust, which `async` cannot do. Stacks are guarded,
//!   mapped on first run and pooled per worker (`stack`, including the `vm.max_map_count`
//!   story: 2 mappings per live stack, a clear `OutOfLocalMemory` error when the kernel limit is
//!   hit).
//! - **M:N** (`worker`): one worker OS thread per core by default, each with a local ready
//!   queue; idle workers steal *unstarted* green threads only. A started green thread is pinned
//!   to its worker, because thread-locals and `!Send` stack values would break if it resumed on
//!   another OS thread.
//! - **Blocking** ([`park`], `green`): the park/unpark contract `sync` builds on; `green` is
//!   the green-thread side of every blocking call (one wake source wins, tagged by a wait
//!   sequence); `park_state` holds the
//!   token protocol and `idle` the worker sleep/wake handshake, both model-checked with loom
//!   (`RUSTFLAGS="--cfg loom" cargo test -p farmem-sched --release --lib loom`).
//! - **Timers and I/O** (`timer`, [`reactor`], [`tcp`]): per-worker timer heaps and epoll
//!   pollers; [`sleep`], [`park::park_timeout`], [`reactor::wait_readable`] park only the green
//!   thread; an idle worker sleeps in its poller until its next timer or a wake-up.
//! - **Cooperation**: [`maybe_yield`] is the preemption point for CPU-bound green threads
//!   (time slice checked by the clock every 32 calls); timers and wake-ups are processed at
//!   every switch.
//!
//! Rust thread-locals read by green-thread code are the worker OS thread's: shared by all green
//! threads of that worker, and stable across a suspension (pinning).
//!
//! Every function here also works on a plain OS thread: it then blocks the OS thread
//! (`sleep`, `park`, waits) or does nothing (`yield_now` yields the OS thread).

#![deny(unsafe_op_in_unsafe_fn)]

mod atomic;
mod green;
mod idle;
pub mod park;
mod park_state;
pub mod reactor;
mod runtime;
mod stack;
pub mod sync;
mod task;
pub mod tcp;
mod timer;
mod worker;

use std::time::Duration;

pub use farmem_error::{Error, ErrorKind, Result};
pub use runtime::{spawn, try_spawn, Builder, Runtime, RuntimeStats};
pub use stack::max_map_count;
pub use task::{JoinError, JoinHandle};

/// Lets other green threads on this worker run; on an OS thread, yields the OS thread.
pub fn yield_now() {
    if !green::green_yield() {
        std::thread::yield_now();
    }
}

/// Suspends the calling green thread for `duration` (a timer on its worker; the worker runs
/// other green threads meanwhile). On an OS thread, sleeps the OS thread.
pub fn sleep(duration: Duration) {
    if !green::green_sleep(duration) {
        std::thread::sleep(duration);
    }
}

/// The cooperative preemption point: call it in long CPU-bound loops. It yields (returning
/// `true`) once the calling green thread has run longer than the runtime's time slice; it is a
/// counter increment on most calls. Does nothing on an OS thread.
#[inline]
pub fn maybe_yield() -> bool {
    green::green_maybe_yield()
}

/// Whether the caller runs on a farmem green thread.
pub fn in_green_thread() -> bool {
    green::in_green()
}

/// The index (`0..workers`) of the worker the caller runs on, or `None` on other threads.
pub fn worker_id() -> Option<usize> {
    green::worker_index()
}
