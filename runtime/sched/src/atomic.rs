//! The atomics of the hand-written protocols (the parker state machine in `park_state` and the
//! worker sleep/wake handshake in `idle`), swappable for loom's under `--cfg loom`.
//!
//! Only those two protocols go through this shim: they are the places where a lost wake-up
//! would hang a green thread, so they are the ones loom model-checks (tokio and crossbeam keep
//! the same split). Everything else uses `std` atomics directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU8, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU8, AtomicUsize, Ordering};
