//! A green thread's task: what the run queues hold, and the `JoinHandle` that waits for it.
//!
//! ```text
//!   Arc<Task> ──┬─ park: ParkState        atomic; any thread (unpark)
//!               ├─ owner: worker index     set once, when the green thread first runs
//!               ├─ shared: Arc<Shared>     the runtime, to reach the owner's remote queue
//!               ├─ wait_seq, wake, yielder, slot: Cells, owner worker thread only
//!               ├─ entry:     UnsafeCell<Option<Box<dyn TaskEntry>>>  until first run
//!               └─ coroutine: UnsafeCell<Option<Coroutine>>           from first run
//! ```
//!
//! Ownership rule (the reason `Task` may be `Send + Sync`): a task is in at most one run queue
//! at a time, and only the thread that popped it ("holds the run permission") touches `entry`
//! and `coroutine`. Before its first run a task may move between workers (stealing); from its
//! first run on it is pinned to `owner`, and every `Cell` field is touched only on that worker's
//! thread (by the green thread itself, or by that worker's timer and reactor). Other threads
//! only call `park.unpark()` and push the task to the owner's remote queue.
//!
//! The worker also keeps every started task in its registry (`slot`) until it finishes, so a
//! suspended coroutine is only ever dropped (force-unwound) by its own worker, at shutdown.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, Yielder};
use farmem_error::{Error, ErrorKind};

use crate::park::{self, Unparker};
use crate::park_state::ParkState;
use crate::runtime::Shared;

/// What a green thread tells its worker when it switches back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// Runnable: put it back at the end of the ready queue.
    Yield,
    /// Blocked: whoever wakes it (unparker, timer, reactor) queues it again.
    Block,
}

/// Why a blocked green thread was resumed (for waits with a timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Not woken yet.
    Pending,
    /// The awaited event happened (timer of a sleep, fd readiness).
    Ready,
    /// The timeout of the wait passed.
    Timeout,
}

pub(crate) type GreenYielder = Yielder<(), Suspend>;
pub(crate) type GreenCoroutine = Coroutine<(), Suspend, (), DefaultStack>;

/// The type-erased body of a green thread.
pub(crate) trait TaskEntry: Send {
    /// Runs the body on the green thread and publishes its result.
    fn run(self: Box<Self>);
    /// The green thread could not be started (no stack): publishes `err`.
    fn fail(self: Box<Self>, err: Error);
}

/// One green thread (see the module note).
pub(crate) struct Task {
    pub(crate) park: ParkState,
    pub(crate) owner: AtomicUsize,
    pub(crate) shared: Arc<Shared>,
    /// Identifies the current timed or fd wait; wake sources carrying an older number are stale.
    pub(crate) wait_seq: Cell<u64>,
    pub(crate) wake: Cell<Wake>,
    pub(crate) yielder: Cell<*const GreenYielder>,
    pub(crate) slot: Cell<usize>,
    entry: UnsafeCell<Option<Box<dyn TaskEntry>>>,
    coroutine: UnsafeCell<Option<GreenCoroutine>>,
}

// SAFETY: the non-Sync fields (`Cell`s, `UnsafeCell`s, the raw yielder pointer and the
// coroutine) are only touched by the thread holding the run permission or, once started, by the
// owner worker's thread (module note); the fields other threads touch are atomics or `Arc`s.
unsafe impl Send for Task {}
// SAFETY: as for `Send`.
unsafe impl Sync for Task {}

impl Task {
    /// A task that will run `entry` on `shared`'s workers.
    pub(crate) fn new(shared: Arc<Shared>, entry: Box<dyn TaskEntry>) -> Arc<Task> {
        Arc::new(Task {
            park: ParkState::new(),
            owner: AtomicUsize::new(usize::MAX),
            shared,
            wait_seq: Cell::new(0),
            wake: Cell::new(Wake::Pending),
            yielder: Cell::new(std::ptr::null()),
            slot: Cell::new(usize::MAX),
            entry: UnsafeCell::new(Some(entry)),
            coroutine: UnsafeCell::new(None),
        })
    }

    /// Takes the body of a task that has not run yet.
    ///
    /// # Safety
    /// The caller holds the run permission of this task (module note).
    pub(crate) unsafe fn take_entry(&self) -> Option<Box<dyn TaskEntry>> {
        // SAFETY: the caller holds the run permission, so nobody else accesses `entry`.
        unsafe { (*self.entry.get()).take() }
    }

    /// The coroutine slot.
    ///
    /// # Safety
    /// The caller is the owner worker (or holds the run permission of an unstarted task), and
    /// no other reference to the slot is alive; the green thread never touches it.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn coroutine(&self) -> &mut Option<GreenCoroutine> {
        // SAFETY: guaranteed exclusive by the caller.
        unsafe { &mut *self.coroutine.get() }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // A started task is held by its worker's registry until it finished or was unwound at
        // shutdown, so a live coroutine here means a bug; leaking it is the safe choice (its
        // stack must not be unwound on whatever thread drops the last reference).
        if let Some(c) = self.coroutine.get_mut().take() {
            if !c.done() {
                std::mem::forget(c);
            }
        }
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Why a green thread produced no value: it panicked, could not start, or the runtime shut down
/// first. Converts into an [`Error`] (kind [`ErrorKind::Panicked`] for a panic).
pub struct JoinError {
    error: Error,
    payload: Option<Box<dyn Any + Send>>,
}

impl JoinError {
    fn panicked(payload: Box<dyn Any + Send>) -> JoinError {
        let msg = panic_message(&*payload);
        JoinError {
            error: Error::new(ErrorKind::Panicked, format!("green thread panicked: {msg}")),
            payload: Some(payload),
        }
    }

    fn failed(error: Error) -> JoinError {
        JoinError {
            error,
            payload: None,
        }
    }

    /// Whether the green thread panicked.
    pub fn is_panic(&self) -> bool {
        self.payload.is_some()
    }

    /// The error (kind `Panicked` with the panic message, `OutOfLocalMemory` when no stack
    /// could be mapped, `Closed` when the runtime shut down before the green thread finished).
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The panic payload, to re-raise with `std::panic::resume_unwind`.
    pub fn into_panic(self) -> Option<Box<dyn Any + Send>> {
        self.payload
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinError")
            .field("error", &self.error)
            .field("is_panic", &self.is_panic())
            .finish()
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for Error {
    fn from(e: JoinError) -> Error {
        e.error
    }
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

struct SlotState<T> {
    result: Option<Result<T, JoinError>>,
    waiter: Option<Unparker>,
}

/// Where a green thread's result waits for its `JoinHandle`.
struct JoinSlot<T> {
    state: Mutex<SlotState<T>>,
}

impl<T> JoinSlot<T> {
    fn lock(&self) -> MutexGuard<'_, SlotState<T>> {
        // The lock is never held across user code, so poisoning cannot leave bad state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn complete(&self, result: Result<T, JoinError>) {
        let waiter = {
            let mut s = self.lock();
            if s.result.is_some() {
                return;
            }
            s.result = Some(result);
            s.waiter.take()
        };
        if let Some(w) = waiter {
            w.unpark();
        }
    }
}

/// Completes the slot with `Closed` if the body is dropped before it finished (runtime
/// shutdown), including when a suspended green thread is force-unwound.
struct CompletionGuard<T> {
    slot: Option<Arc<JoinSlot<T>>>,
}

impl<T> Drop for CompletionGuard<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.complete(Err(JoinError::failed(Error::new(
                ErrorKind::Closed,
                "the farmem runtime shut down before the green thread finished",
            ))));
        }
    }
}

struct Entry<F, T> {
    f: F,
    guard: CompletionGuard<T>,
}

impl<F, T> TaskEntry for Entry<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn run(self: Box<Self>) {
        let Entry { f, mut guard } = *self;
        let result = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => Ok(v),
            Err(payload) => {
                if crate::green::is_unwinding() {
                    // corosensei's forced unwind at shutdown must reach its root.
                    resume_unwind(payload);
                }
                Err(JoinError::panicked(payload))
            }
        };
        if let Some(slot) = guard.slot.take() {
            slot.complete(result);
        }
    }

    fn fail(self: Box<Self>, err: Error) {
        let mut guard = self.guard;
        if let Some(slot) = guard.slot.take() {
            slot.complete(Err(JoinError::failed(err)));
        }
    }
}

/// Builds the type-erased body of a green thread running `f`, and the handle to its result.
pub(crate) fn entry<F, T>(f: F) -> (Box<dyn TaskEntry>, JoinHandle<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let slot = Arc::new(JoinSlot {
        state: Mutex::new(SlotState {
            result: None,
            waiter: None,
        }),
    });
    let entry = Box::new(Entry {
        f,
        guard: CompletionGuard {
            slot: Some(slot.clone()),
        },
    });
    (entry, JoinHandle { slot })
}

/// Waits for a green thread's result. Dropping it detaches the green thread.
pub struct JoinHandle<T> {
    slot: Arc<JoinSlot<T>>,
}

impl<T> JoinHandle<T> {
    /// Waits until the green thread finished and returns its value, or why there is none.
    ///
    /// From a green thread this parks only the green thread; from an OS thread it blocks the
    /// OS thread.
    pub fn join(self) -> Result<T, JoinError> {
        loop {
            {
                let mut s = self.slot.lock();
                if let Some(r) = s.result.take() {
                    return r;
                }
                s.waiter = Some(park::current_unparker());
            }
            park::park();
        }
    }

    /// Whether the green thread has finished (its result is ready).
    pub fn is_finished(&self) -> bool {
        self.slot.lock().result.is_some()
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
