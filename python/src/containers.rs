//! What every container binding shares: the [`Held`] handle that ties a far-memory container to
//! its runtime, the locking rule that keeps it from deadlocking with the GIL, and Python's index
//! arithmetic.
//!
//! # Ownership and the close protocol
//!
//! ```text
//!   Python object (Array, Vector, ...)
//!     Held { rt: Py<Runtime>, slot: Arc<Slot> } ──┐
//!   Runtime.owned: Weak<Slot> ─────────────────────┤
//!                                   Slot: Mutex<Option<C>>   C = far memory handle + container
//! ```
//!
//! The container lives in the slot; the runtime keeps a `Weak` to it and empties it on
//! `close()` (the container's remote objects are freed while the server is still up); every
//! later call finds `None` and raises `farmem.Closed`. Dropping the Python object drops the
//! slot and so the container.
//!
//! # Locking (why never a deadlock with the GIL)
//!
//! A container is used from whatever Python thread calls it, through its slot's mutex. Long
//! work (bulk copies, scans) runs with the GIL released while the mutex is held. So the one rule
//! is: never *block* on a slot mutex while attached to the interpreter. [`Held::with`] uses
//! PyO3's `lock_py_attached`, which tries the lock and, if it is taken, detaches before waiting;
//! `Runtime.close()` takes slot locks detached. A thread holding a slot lock may then always
//! re-attach: nobody holds the GIL while waiting for that lock.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use pyo3::exceptions::{PyIndexError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::PySlice;

use crate::errors::closed;
use crate::runtime::{PyRuntime, Release};

/// The mutex that holds a container until its runtime closes, and who holds it.
pub(crate) struct Slot<C> {
    data: Mutex<Option<C>>,
    /// The thread holding `data`'s lock inside [`Held::with`] (its [`thread_tag`]), 0 if none.
    holder: AtomicUsize,
    /// Set by `release`; a holder that sees it on its way out empties the slot itself.
    released: AtomicBool,
}

impl<C> Slot<C> {
    fn take_data(&self) -> Option<C> {
        self.data.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl<C: Send> Release for Slot<C> {
    fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        if self.holder.load(Ordering::SeqCst) == thread_tag() {
            // `close()` was called from Python code that this very thread runs inside `with`
            // (a value's `__index__`, say): taking the lock would deadlock; the holder empties
            // the slot when it returns.
            return;
        }
        // Dropped outside the lock: freeing a container's remote objects takes round trips.
        drop(self.take_data());
    }
}

/// A number that identifies the calling thread while it lives (the address of a thread-local).
fn thread_tag() -> usize {
    thread_local!(static TAG: u8 = const { 0 });
    TAG.with(|t| t as *const u8 as usize)
}

/// Marks a slot as held by the calling thread until dropped (also when `f` panics).
struct Holding<'a>(&'a AtomicUsize);

impl<'a> Holding<'a> {
    fn enter(holder: &'a AtomicUsize, me: usize) -> Holding<'a> {
        holder.store(me, Ordering::SeqCst);
        Holding(holder)
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

/// A container of type `C` made from a runtime (see the module note).
pub(crate) struct Held<C: Send + 'static> {
    rt: Py<PyRuntime>,
    slot: Arc<Slot<C>>,
    what: &'static str,
}

impl<C: Send + 'static> Drop for Held<C> {
    fn drop(&mut self) {
        // The last handle frees the container, and with it its remote objects (a round trip
        // each for a large container): do that with the GIL released. The lock is free or about
        // to be: only a `close()` releasing this slot can hold it, briefly and never waiting on
        // the GIL.
        if Arc::strong_count(&self.slot) != 1 {
            return;
        }
        if let Some(container) = self.slot.take_data() {
            // Without an interpreter to detach from (shutting down), the closure is dropped
            // unrun, and the container with it.
            let _ = Python::try_attach(move |py| py.detach(move || drop(container)));
        }
    }
}

impl<C: Send + 'static> Held<C> {
    /// Puts `c` in a fresh slot and registers the slot with `rt` (which must be open).
    pub(crate) fn new(rt: &Bound<'_, PyRuntime>, c: C, what: &'static str) -> PyResult<Held<C>> {
        let slot = Arc::new(Slot {
            data: Mutex::new(Some(c)),
            holder: AtomicUsize::new(0),
            released: AtomicBool::new(false),
        });
        let weak: Weak<dyn Release> = Arc::downgrade(&slot) as Weak<dyn Release>;
        rt.get().own(weak)?;
        Ok(Held {
            rt: rt.clone().unbind(),
            slot,
            what,
        })
    }

    /// Runs `f` on the container under its lock; `farmem.Closed` once the runtime closed.
    /// A re-entrant call (Python code run by `f`, such as a value's `__index__`, using the same
    /// container) is a `RuntimeError`, not a deadlock.
    pub(crate) fn with<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut C) -> PyResult<R>,
    ) -> PyResult<R> {
        let me = thread_tag();
        if self.slot.holder.load(Ordering::SeqCst) == me {
            return Err(PyRuntimeError::new_err(format!(
                "{} was used re-entrantly (from Python code it was calling back, such as a \
                 value's __index__); use it after that call returns",
                self.what
            )));
        }
        let mut guard = self
            .slot
            .data
            .lock_py_attached(py)
            .unwrap_or_else(|p| p.into_inner());
        if self.slot.released.load(Ordering::SeqCst) {
            let taken = guard.take();
            drop(guard);
            drop(taken);
            return Err(closed(self.what));
        }
        let r = {
            let _holding = Holding::enter(&self.slot.holder, me);
            match guard.as_mut() {
                Some(c) => f(c),
                None => Err(closed(self.what)),
            }
        };
        // A `close()` from inside `f` left the container to us (see `release`).
        let taken = if self.slot.released.load(Ordering::SeqCst) {
            guard.take()
        } else {
            None
        };
        drop(guard);
        drop(taken);
        r
    }

    /// Another handle to the same container (for iterators).
    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Held<C> {
        Held {
            rt: self.rt.clone_ref(py),
            slot: self.slot.clone(),
            what: self.what,
        }
    }

    /// The runtime this container was made from.
    pub(crate) fn runtime(&self) -> &Py<PyRuntime> {
        &self.rt
    }
}

/// Python's index `i` into a sequence of `len`: negative counts from the end; out of range is
/// `IndexError` (as for `list`).
pub(crate) fn norm_index(what: &str, i: isize, len: usize) -> PyResult<usize> {
    let len_i = isize::try_from(len).unwrap_or(isize::MAX);
    let j = if i < 0 { i + len_i } else { i };
    if j < 0 || j >= len_i {
        return Err(PyIndexError::new_err(format!(
            "{what} index {i} out of range for length {len}"
        )));
    }
    Ok(j as usize)
}

/// What a subscript selects: one element or a slice's positions.
pub(crate) enum Subscript {
    /// One element (already normalised).
    One(usize),
    /// `start`, `step` and count of a slice (already clamped by `slice.indices`).
    Range {
        start: isize,
        step: isize,
        len: usize,
    },
}

impl Subscript {
    /// Reads `key` (an int-like or a slice) against a sequence of `len`.
    pub(crate) fn parse(what: &str, key: &Bound<'_, PyAny>, len: usize) -> PyResult<Subscript> {
        if let Ok(s) = key.cast::<PySlice>() {
            let len_i = isize::try_from(len).unwrap_or(isize::MAX);
            let ind = s.indices(len_i)?;
            return Ok(Subscript::Range {
                start: ind.start,
                step: ind.step,
                len: ind.slicelength,
            });
        }
        let i: isize = key.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what} indices must be integers or slices, not {}",
                key.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        Ok(Subscript::One(norm_index(what, i, len)?))
    }
}

/// The positions a slice selects, in order.
pub(crate) fn slice_positions(start: isize, step: isize, len: usize) -> Vec<usize> {
    (0..len as isize)
        .map(|k| (start + k * step) as usize)
        .collect()
}

/// The state of a block-at-a-time iterator (List, Array and Vector iterators share it): the next
/// position to read and the values already copied out of far memory.
#[derive(Default)]
pub(crate) struct BlockCursor {
    pos: usize,
    buffered: std::collections::VecDeque<Py<PyAny>>,
}

impl BlockCursor {
    /// The next value: from the buffer, or from the block `read(pos)` copies out (empty at the
    /// end of the container).
    pub(crate) fn next(
        &mut self,
        read: impl FnOnce(usize) -> PyResult<Vec<Py<PyAny>>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        if self.buffered.is_empty() {
            let block = read(self.pos)?;
            self.pos += block.len();
            self.buffered.extend(block);
        }
        Ok(self.buffered.pop_front())
    }
}
