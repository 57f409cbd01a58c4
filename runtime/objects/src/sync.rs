//! The atomics of the scope/evacuator handshake, behind one door so loom can replace them.
//!
//! Under `--cfg loom` the pointer word and the scope slot use loom's atomics (and the slot's
//! grace-period gate loom's mutex and condition variable) and the `loom_*` models explore every
//! interleaving of the handshake; the normal build uses `std`. Only the two types of the
//! handshake (the [`PointerWord`](crate::pointer::PointerWord) and the scope slot) go through
//! here: the other counters (metrics, region cursors) carry no cross-location
//! ordering argument and use `std` directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex};

/// A spin-then-yield pause for the short waits on a busy word (the evacuator moving an object, a
/// write-through or flush in progress); a fetch in flight and a grace period block instead
/// (`Inner::landed`, `ScopeSlot`'s gate). It yields and sleeps through `farmem_sched`, so on a green thread it lets the other
/// green threads of its worker run: the fetch it waits for may be one of them, parked on I/O.
pub(crate) fn backoff(round: u32) {
    #[cfg(loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if round < 64 {
            std::hint::spin_loop();
        } else if round < 4096 {
            farmem_sched::yield_now();
        } else {
            farmem_sched::sleep(std::time::Duration::from_micros(50));
        }
    }
}
