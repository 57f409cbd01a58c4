//! The one seam between the blocking primitives and the things loom must see.
//!
//! Every atomic, internal lock, `Arc` and park/unpark call in `crate::sync` goes through this
//! module, so `RUSTFLAGS="--cfg loom"` swaps them for loom's model-checked versions (the tokio
//! and crossbeam convention). In a normal build they are `std`'s atomics and `std::sync::Mutex`
//! and the runtime's [`crate::park`], which blocks only the green thread when called on one.
//!
//! Under loom, park with a timeout degrades to a plain park: loom has no clock, so loom tests
//! never exercise the timeout paths (the integration tests do).

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex as InnerLock, MutexGuard as InnerGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex as InnerLock, MutexGuard as InnerGuard};

use std::time::Duration;

/// Wakes one parked thread of execution.
#[derive(Clone, Debug)]
pub(crate) struct Unparker {
    #[cfg(not(loom))]
    inner: crate::park::Unparker,
    #[cfg(loom)]
    inner: loom::thread::Thread,
}

impl Unparker {
    /// The unparker of the calling green or OS thread.
    pub(crate) fn current() -> Unparker {
        #[cfg(not(loom))]
        let inner = crate::park::current_unparker();
        #[cfg(loom)]
        let inner = loom::thread::current();
        Unparker { inner }
    }

    /// Makes the caller's park token available.
    pub(crate) fn unpark(&self) {
        self.inner.unpark();
    }
}

/// Parks the calling thread of execution (spurious wake-ups allowed).
pub(crate) fn park() {
    #[cfg(not(loom))]
    crate::park::park();
    #[cfg(loom)]
    loom::thread::park();
}

/// Parks with a timeout; `false` only when the timeout passed.
pub(crate) fn park_timeout(timeout: Duration) -> bool {
    #[cfg(not(loom))]
    return crate::park::park_timeout(timeout);
    #[cfg(loom)]
    {
        let _ = timeout;
        loom::thread::park();
        true
    }
}

/// Takes an internal lock. Internal locks guard a few instructions and are never held across a
/// park, so a panic while one is held cannot leave the data half-updated in a way that matters:
/// poisoning is ignored.
pub(crate) fn lock<T>(lock: &InnerLock<T>) -> InnerGuard<'_, T> {
    match lock.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A hint that the caller is spinning (a no-op-ish pause; under loom a yield so the model
/// checker explores the other threads).
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
