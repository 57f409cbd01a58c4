//! Blocking primitives for green threads: [`Mutex`], [`Condvar`], MPMC [`channel`]s,
//! [`WaitGroup`] and [`Barrier`].
//!
//! Every primitive blocks by parking through [`crate::park`] and nothing else (never
//! `std::thread::park`, a `std` condvar wait or a sleep in a blocking path). On a green thread
//! that parks only the green thread: its worker goes on running others (AIFM §4: green threads
//! hide far-memory latency only if a blocked one never blocks its worker). Outside the runtime
//! (a C++ main thread, Python's thread) the same calls block the OS thread, so one primitive
//! works across both worlds, e.g. a channel between a green thread and a plain thread.
//!
//! ```
//! use std::sync::Arc;
//! use farmem_sched::sync::{bounded, Mutex};
//! use farmem_sched::{spawn, Runtime};
//!
//! let rt = Runtime::builder().workers(1).build()?;
//! let total = rt.block_on(|| {
//!     let sum = Arc::new(Mutex::new(0u64));
//!     let (tx, rx) = bounded(4);
//!     let consumer = { let sum = sum.clone(); spawn(move || for v in &rx { *sum.lock() += v }) };
//!     for v in 1..=100u64 {
//!         tx.send(v).expect("the consumer is alive"); // parks this green thread when full
//!     }
//!     drop(tx); // disconnects: the consumer's loop ends
//!     consumer.join().expect("consumer finished");
//!     let total = *sum.lock();
//!     total
//! });
//! assert_eq!(total, 5050);
//! # Ok::<(), farmem_sched::Error>(())
//! ```
//!
//! Shared pieces:
//! - `waiter`: the wait-queue node (one parked thread and its outcome) every primitive uses.
//! - `shim`: the atomics, internal lock, `Arc` and park calls, swapped for loom's under
//!   `--cfg loom` so the hand-written protocols are model-checked (`loom_*` test modules,
//!   `RUSTFLAGS="--cfg loom" cargo test -p farmem-sched --release --lib loom`).
//!
//! Internal locks (`std::sync::Mutex`) guard a few instructions of queue bookkeeping and are
//! never held across a park.

mod barrier;
pub mod channel;
mod condvar;
mod mutex;
mod shim;
mod wait_group;
mod waiter;

#[cfg(all(test, loom))]
mod loom_tests;

pub use barrier::{Barrier, BarrierWaitResult};
pub use channel::{bounded, unbounded, Receiver, Sender};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{Mutex, MutexGuard};
pub use wait_group::WaitGroup;
