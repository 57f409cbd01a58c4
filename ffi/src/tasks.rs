//! Green threads for C: `fm_runtime_run`, `fm_spawn`, `fm_task_join`, `fm_yield`, `fm_sleep_us`.
//!
//! A C task is a function pointer and a `void *` argument. Neither is `Send` in Rust's eyes;
//! [`CTask`] asserts it on the C caller's behalf (the header states the promise: `arg` may be
//! used from a worker thread and lives until the task ends). The task body is the C call and
//! nothing else, so a Rust panic cannot start inside C; one can only come from the Rust side of
//! the task (which [`spawn_closure`] shares with tests) and reaches `fm_task_join` as
//! `FM_PANICKED`. A green thread is pinned to its worker once started (farmem-sched), so C code
//! in it may keep thread-local state and open scopes that stay on one OS thread.

use std::ffi::{c_int, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fm::sched::JoinHandle;
use fm::{Error, Result};

use crate::abi::*;
use crate::boundary::{ffi_call, ffi_getter, out_ref, write_opt};
use crate::registry::{self, HandleKind};
use crate::runtime::{lease, Lease, CALL_IN_FLIGHT};

/// A C function and its argument, to run on a worker thread.
struct CTask {
    f: unsafe extern "C" fn(*mut c_void) -> c_int,
    arg: *mut c_void,
}

// SAFETY: the C caller promises (farmem/core.h, fm_runtime_run and fm_spawn) that `f` may be
// called with `arg` from another OS thread and that `arg` stays valid until the task returns;
// Rust never dereferences `arg` itself.
unsafe impl Send for CTask {}

impl CTask {
    fn new(f: fm_task_fn) -> Result<impl FnOnce(*mut c_void) -> CTask> {
        let f = f.ok_or_else(|| crate::boundary::null_arg("fn"))?;
        Ok(move |arg| CTask { f, arg })
    }

    fn run(self) -> c_int {
        // SAFETY: the C caller's promise (see the `Send` impl): `f` is a valid function taking
        // `arg`.
        unsafe { (self.f)(self.arg) }
    }
}

/// The object behind an `fm_task_t`: the join handle (taken by the one join) and, for tasks
/// started on an explicit runtime, the lease that keeps it alive until then.
pub(crate) struct TaskObj {
    join: Mutex<Option<JoinHandle<c_int>>>,
    _lease: Option<Lease>,
}

impl HandleKind for TaskObj {
    const C_TYPE: &'static str = "fm_task_t";
}

/// Runs `body` as a green thread of `rt` and waits for it (the Rust core of `fm_runtime_run`).
pub(crate) fn run_closure(
    rt: *const fm_runtime_t,
    body: impl FnOnce() -> c_int + Send + 'static,
) -> Result<c_int> {
    let lease = lease(rt, "rt", CALL_IN_FLIGHT)?;
    let r = lease.session().runtime().try_block_on(body);
    r.map_err(Error::from)
}

/// Starts `body` as a green thread (on `rt`, or on the caller's runtime when `rt` is NULL) and
/// registers its handle (the Rust core of `fm_spawn`).
pub(crate) fn spawn_closure(
    rt: *const fm_runtime_t,
    body: impl FnOnce() -> c_int + Send + 'static,
) -> Result<usize> {
    let (join, lease) = if rt.is_null() {
        let join = fm::sched::try_spawn(body).map_err(|_| {
            Error::invalid(
                "`rt` is NULL and the caller is not a farmem green thread; pass the runtime \
                 to start the task on",
            )
        })?;
        (join, None)
    } else {
        let lease = lease(rt, "rt", TaskObj::C_TYPE)?;
        (lease.session().runtime().spawn(body), Some(lease))
    };
    registry::insert(Arc::new(TaskObj {
        join: Mutex::new(Some(join)),
        _lease: lease,
    }))
}

/// Waits for the task `task` (consuming its handle) and returns its result.
pub(crate) fn join_task(task: *mut fm_task_t) -> Result<c_int> {
    let obj = registry::remove::<TaskObj>(task as usize, "task")?;
    let join = obj
        .join
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| Error::internal("a task handle was joined twice"))?;
    join.join().map_err(Error::from)
}

/// Runs `f(arg)` as a green thread and waits for it.
///
/// # Safety
/// `f` is a valid function; `arg` satisfies its contract from a worker OS thread until it
/// returns; `result` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_runtime_run(
    rt: *mut fm_runtime_t,
    f: fm_task_fn,
    arg: *mut c_void,
    result: *mut c_int,
) -> fm_status_t {
    ffi_call("fm_runtime_run", || {
        let task = CTask::new(f)?(arg);
        let r = run_closure(rt, move || task.run())?;
        // SAFETY: the caller's promise on `result`.
        unsafe { write_opt(result, r) };
        Ok(())
    })
}

/// Starts `f(arg)` as a green thread.
///
/// # Safety
/// As [`fm_runtime_run`]; `arg` stays valid until the task returns; `out` is NULL or valid for
/// writes.
#[no_mangle]
pub unsafe extern "C" fn fm_spawn(
    rt: *mut fm_runtime_t,
    f: fm_task_fn,
    arg: *mut c_void,
    out: *mut *mut fm_task_t,
) -> fm_status_t {
    ffi_call("fm_spawn", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        let task = CTask::new(f)?(arg);
        *out = spawn_closure(rt, move || task.run())? as *mut fm_task_t;
        Ok(())
    })
}

/// Waits for a task and consumes its handle.
///
/// # Safety
/// `result` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_task_join(task: *mut fm_task_t, result: *mut c_int) -> fm_status_t {
    ffi_call("fm_task_join", || {
        let r = join_task(task)?;
        // SAFETY: the caller's promise on `result`.
        unsafe { write_opt(result, r) };
        Ok(())
    })
}

/// Lets other green threads of this worker run.
#[no_mangle]
pub extern "C" fn fm_yield() {
    ffi_getter("fm_yield", (), fm::sched::yield_now)
}

/// Suspends the caller for `micros` microseconds.
#[no_mangle]
pub extern "C" fn fm_sleep_us(micros: u64) -> fm_status_t {
    ffi_call("fm_sleep_us", || {
        fm::sched::sleep(Duration::from_micros(micros));
        Ok(())
    })
}
