//! `fm_scope_t`: a [`DerefScope`] held across C calls.
//!
//! A `DerefScope<'fm>` borrows its `FarMemory` and is `!Send`: it counts on the scope slot of
//! the OS thread that opened it. C can hold neither a borrow nor a thread affinity, so the
//! handle's object owns what the scope needs and checks what the compiler checked:
//!
//! ```text
//!   ScopeObj { thread: ThreadId,                          // the opening OS thread
//!              far: Arc<FarMemory>,                       // what the scope borrows
//!              state: Mutex<Option<OwnedScope>>,          // None once ended
//!              _lease: Lease }                            // keeps the runtime alive
//!   OwnedScope { scope: DerefScope<'static>, _far: Arc<FarMemory> }   // scope drops first
//! ```
//!
//! - Lifetime: the `'static` is a lie told once, in [`open`]: the scope really borrows the
//!   `FarMemory` inside the `Arc` stored next to it, whose heap address never moves and which
//!   outlives the scope (field order drops the scope first).
//! - Thread: every use (renew, end, and each container call) first compares the calling
//!   thread with `thread` (`ThreadId`s are never reused), and a mismatch is
//!   `FM_INVALID_ARGUMENT`. A scope therefore runs only on its thread; the `Send` that the
//!   global registry needs is asserted on that basis. A scope whose handle dies elsewhere (never
//!   ended) is leaked, not dropped: a leaked scope keeps its counter up, which the evacuator
//!   survives by giving its claims back after its grace timeout (objects' `scope.rs`).
//! - One call at a time: `state` is only ever `try_lock`ed. Green threads of one worker share
//!   its OS thread, so two of them could otherwise interleave on one scope; the second gets
//!   `FM_INVALID_ARGUMENT` ("in use by another call") instead of a deadlock.
//! - Instance: a container call checks that the scope is of the container's far memory: a scope
//!   of another instance would not hold off the evacuator that moves the container's chunks.

use std::sync::{Arc, Mutex, TryLockError};
use std::thread::ThreadId;

use fm::objects::{DerefScope, FarMemory};
use fm::{Error, Result};

use crate::abi::*;
use crate::boundary::{ffi_call, out_ref};
use crate::registry::{self, HandleKind};
use crate::runtime::{lease, Lease};

/// A scope with the far memory it borrows (see the module note for the lifetime).
pub(crate) struct OwnedScope {
    // Declared first: dropped before `_far`.
    scope: DerefScope<'static>,
    _far: Arc<FarMemory>,
}

// SAFETY: an `OwnedScope` is touched only on the thread that opened it: every access goes
// through `ScopeObj::use_scope`, which checks the thread first, and `ScopeObj::drop` leaks it
// on any other thread. It is moved between threads only as inert bytes inside the registry.
unsafe impl Send for OwnedScope {}

/// The object behind an `fm_scope_t`.
pub(crate) struct ScopeObj {
    thread: ThreadId,
    far: Arc<FarMemory>,
    state: Mutex<Option<OwnedScope>>,
    _lease: Lease,
}

impl HandleKind for ScopeObj {
    const C_TYPE: &'static str = "fm_scope_t";
}

impl Drop for ScopeObj {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = state.take() {
            if this_thread() == self.thread {
                drop(open);
            } else {
                // Dropping it here would touch another thread's scope slot (module note).
                std::mem::forget(open);
            }
        }
    }
}

thread_local! {
    /// This OS thread's id, cached: `thread::current()` clones a reference-counted handle.
    static THREAD_ID: ThreadId = std::thread::current().id();
}

/// The calling OS thread's id.
fn this_thread() -> ThreadId {
    THREAD_ID
        .try_with(|id| *id)
        .unwrap_or_else(|_| std::thread::current().id())
}

/// Opens a scope on `far` for the calling thread.
fn open(far: &Arc<FarMemory>) -> OwnedScope {
    let far = far.clone();
    let scope = far.scope();
    // SAFETY: `scope` borrows the `FarMemory` in `far`'s heap allocation, which does not move
    // when the `Arc` pointer is moved into `OwnedScope` and lives as long as that `Arc`, which
    // is dropped after the scope (field order). Nothing else observes the lifetime.
    let scope = unsafe { std::mem::transmute::<DerefScope<'_>, DerefScope<'static>>(scope) };
    OwnedScope { scope, _far: far }
}

impl ScopeObj {
    /// Runs `f` with the open scope, after the thread, busy and instance checks of the module
    /// note (`far`: the instance the caller's container lives in, if any).
    pub(crate) fn use_scope<R>(
        &self,
        far: Option<&Arc<FarMemory>>,
        f: impl FnOnce(&mut Option<OwnedScope>) -> Result<R>,
    ) -> Result<R> {
        let here = this_thread();
        if here != self.thread {
            return Err(Error::invalid(format!(
                "scope `s` was opened on thread {:?} and used from {:?}; a scope belongs to \
                 the (green) thread that opened it",
                self.thread, here
            )));
        }
        if let Some(far) = far {
            if !Arc::ptr_eq(far, &self.far) {
                return Err(Error::invalid(
                    "scope `s` belongs to another runtime than the container; open it on the \
                     container's runtime",
                ));
            }
        }
        let mut guard = match self.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(Error::invalid(
                    "scope `s` is in use by another call (another green thread of this \
                     worker?); use one scope per green thread",
                ))
            }
        };
        f(&mut guard)
    }
}

/// Runs `f` with the scope of handle `s`, checked for use with a container of `far`.
pub(crate) fn with_scope<R>(
    s: *mut fm_scope_t,
    far: &Arc<FarMemory>,
    f: impl FnOnce(&mut DerefScope<'static>) -> Result<R>,
) -> Result<R> {
    let obj = registry::get::<ScopeObj>(s as usize, "s")?;
    obj.use_scope(Some(far), |open| match open {
        Some(o) => f(&mut o.scope),
        None => Err(Error::invalid("scope `s` has ended")),
    })
}

/// Opens a scope.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_scope_begin(
    rt: *mut fm_runtime_t,
    out: *mut *mut fm_scope_t,
) -> fm_status_t {
    ffi_call("fm_scope_begin", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        let lease = lease(rt, "rt", ScopeObj::C_TYPE)?;
        let far = lease.session().far().clone();
        let obj = ScopeObj {
            thread: this_thread(),
            state: Mutex::new(Some(open(&far))),
            far,
            _lease: lease,
        };
        *out = registry::insert(Arc::new(obj))? as *mut fm_scope_t;
        Ok(())
    })
}

/// Renews a scope (lets the evacuator move what it dereferenced).
///
/// # Safety
/// None beyond the handle contract.
#[no_mangle]
pub unsafe extern "C" fn fm_scope_renew(scope: *mut fm_scope_t) -> fm_status_t {
    ffi_call("fm_scope_renew", || {
        let obj = registry::get::<ScopeObj>(scope as usize, "scope")?;
        obj.use_scope(None, |open| match open {
            Some(o) => {
                o.scope.renew();
                Ok(())
            }
            None => Err(Error::invalid("scope `scope` has ended")),
        })
    })
}

/// Ends a scope and frees its handle.
///
/// # Safety
/// None beyond the handle contract.
#[no_mangle]
pub unsafe extern "C" fn fm_scope_end(scope: *mut fm_scope_t) -> fm_status_t {
    ffi_call("fm_scope_end", || {
        let obj = registry::get::<ScopeObj>(scope as usize, "scope")?;
        // Check thread and busy state first, so a refused end leaves the handle valid.
        obj.use_scope(None, |_| Ok(()))?;
        let obj = registry::remove::<ScopeObj>(scope as usize, "scope")?;
        // Ends the scope here, on its thread (checked above); `Drop` would leak it elsewhere.
        obj.use_scope(None, |open| {
            drop(open.take());
            Ok(())
        })
    })
}
