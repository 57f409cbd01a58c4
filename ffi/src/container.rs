//! The object behind every container handle, and the checks each element call makes.
//!
//! ```text
//!   ContainerObj<C> { inner: sched Mutex<Box<C>>,  // C = dyn ErasedArray, dyn ErasedVec, ...
//!                     elem_size, far: Arc<FarMemory>, _lease: Lease }
//! ```
//!
//! - `inner` is dropped first (field order), so a container's far-memory objects are released
//!   while its runtime is still guaranteed to run (the lease ends last).
//! - Calls on one container are serialised by a farmem-sched mutex: it parks a green thread
//!   (its worker runs others, e.g. the holder, which may itself be parked on a fetch) and
//!   blocks a plain OS thread. A std mutex would deadlock two green threads of one worker.
//! - Every element call checks `elem_size` against the container's before touching a byte, and
//!   a scoped call checks the scope (thread, busy, same far memory; `scope.rs`).

use std::sync::Arc;

use fm::objects::{DerefScope, FarMemory};
use fm::sched::sync::{Mutex, MutexGuard};
use fm::{Error, Result, Session};

use crate::abi::fm_runtime_t;
use crate::abi::fm_scope_t;
use crate::registry::{self, HandleKind};
use crate::runtime::{lease, Lease};
use crate::scope::with_scope;

/// A container of `elem_size`-byte elements (see the module note).
pub(crate) struct ContainerObj<C: ?Sized> {
    // Declared first: dropped before the lease.
    inner: Mutex<Box<C>>,
    elem_size: usize,
    far: Arc<FarMemory>,
    _lease: Lease,
}

impl<C: ?Sized> ContainerObj<C>
where
    ContainerObj<C>: HandleKind,
{
    /// Makes a container on runtime `rt` with `make` and registers it; returns the handle.
    pub(crate) fn create(
        rt: *const fm_runtime_t,
        elem_size: usize,
        make: impl FnOnce(&Session) -> Result<Box<C>>,
    ) -> Result<usize> {
        let lease = lease(rt, "rt", Self::C_TYPE)?;
        let far = lease.session().far().clone();
        let inner = make(lease.session())?;
        registry::insert(Arc::new(ContainerObj {
            inner: Mutex::new(inner),
            elem_size,
            far,
            _lease: lease,
        }))
    }

    /// The container of handle `h` (parameter `arg`).
    pub(crate) fn get(h: usize, arg: &str) -> Result<Arc<ContainerObj<C>>> {
        registry::get::<ContainerObj<C>>(h, arg)
    }

    /// Unregisters handle `h`; NULL is a no-op. The container is freed when the last call
    /// using it returns.
    pub(crate) fn destroy(h: usize, arg: &str) -> Result<()> {
        if h != 0 {
            drop(registry::remove::<ContainerObj<C>>(h, arg)?);
        }
        Ok(())
    }

    /// Checks a call's `elem_size` (parameter `arg`) against the container's.
    pub(crate) fn check_size(&self, elem_size: usize, arg: &str) -> Result<()> {
        if elem_size != self.elem_size {
            return Err(Error::invalid(format!(
                "`{arg}` is {elem_size} but this {} holds elements of {} bytes",
                Self::C_TYPE,
                self.elem_size
            )));
        }
        Ok(())
    }

    /// The locked container.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Box<C>> {
        self.inner.lock()
    }

    /// Runs `f` with the locked container and the scope `s`, after the size and scope checks.
    pub(crate) fn scoped<R>(
        &self,
        s: *mut fm_scope_t,
        elem_size: usize,
        f: impl FnOnce(&mut C, &mut DerefScope<'static>) -> Result<R>,
    ) -> Result<R> {
        self.check_size(elem_size, "elem_size")?;
        with_scope(s, &self.far, |scope| {
            let mut inner = self.lock();
            f(&mut inner, scope)
        })
    }
}
