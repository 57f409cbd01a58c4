//! `fm_stack_t` and `fm_queue_t`: the C face of `RemStack` and `RemQueue`. Both move elements
//! by value and open their own short scope per operation, so these calls take no `fm_scope_t`.

use std::ffi::{c_int, c_void};

use crate::abi::*;
use crate::boundary::{bytes_in, bytes_out, ffi_call, out_ref};
use crate::container::ContainerObj;
use crate::erased::{self, ErasedQueue, ErasedStack};
use crate::registry::HandleKind;

/// The object behind an `fm_stack_t`.
pub(crate) type StackObj = ContainerObj<dyn ErasedStack>;
impl HandleKind for StackObj {
    const C_TYPE: &'static str = "fm_stack_t";
}

/// The object behind an `fm_queue_t`.
pub(crate) type QueueObj = ContainerObj<dyn ErasedQueue>;
impl HandleKind for QueueObj {
    const C_TYPE: &'static str = "fm_queue_t";
}

/// Creates an empty stack.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_stack_create(
    rt: *mut fm_runtime_t,
    elem_size: usize,
    out: *mut *mut fm_stack_t,
) -> fm_status_t {
    ffi_call("fm_stack_create", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        let h = StackObj::create(rt, elem_size, |session| {
            erased::stack(session.far(), elem_size)
        })?;
        *out = h as *mut fm_stack_t;
        Ok(())
    })
}

/// Destroys a stack (NULL: no-op).
///
/// # Safety
/// None beyond the handle contract.
#[no_mangle]
pub unsafe extern "C" fn fm_stack_destroy(s: *mut fm_stack_t) -> fm_status_t {
    ffi_call("fm_stack_destroy", || StackObj::destroy(s as usize, "s"))
}

/// The stack's length.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_stack_len(s: *const fm_stack_t, out: *mut usize) -> fm_status_t {
    ffi_call("fm_stack_len", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        *out = StackObj::get(s as usize, "s")?.lock().len();
        Ok(())
    })
}

/// Pushes `value`.
///
/// # Safety
/// `value` is NULL or valid for reads of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_stack_push(
    s: *mut fm_stack_t,
    value: *const c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_stack_push", || {
        let obj = StackObj::get(s as usize, "s")?;
        obj.check_size(elem_size, "elem_size")?;
        // SAFETY: the caller's promise on `value`.
        let value = unsafe { bytes_in(value, elem_size, "value") }?;
        let mut stack = obj.lock();
        stack.push(value)
    })
}

/// Pops the top into `out`; `*popped` says whether there was one.
///
/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes; `popped` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_stack_pop(
    s: *mut fm_stack_t,
    out: *mut c_void,
    elem_size: usize,
    popped: *mut c_int,
) -> fm_status_t {
    ffi_call("fm_stack_pop", || {
        let obj = StackObj::get(s as usize, "s")?;
        obj.check_size(elem_size, "elem_size")?;
        // SAFETY: the caller's promises on `out` and `popped`.
        let (out, popped) = unsafe {
            (
                bytes_out(out, elem_size, "out")?,
                out_ref(popped, "popped")?,
            )
        };
        let mut stack = obj.lock();
        *popped = c_int::from(stack.pop(out)?);
        Ok(())
    })
}

/// Copies the top to `out` without removing it; `*found` says whether there was one.
///
/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes; `found` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_stack_peek(
    s: *mut fm_stack_t,
    out: *mut c_void,
    elem_size: usize,
    found: *mut c_int,
) -> fm_status_t {
    ffi_call("fm_stack_peek", || {
        let obj = StackObj::get(s as usize, "s")?;
        obj.check_size(elem_size, "elem_size")?;
        // SAFETY: the caller's promises on `out` and `found`.
        let (out, found) = unsafe { (bytes_out(out, elem_size, "out")?, out_ref(found, "found")?) };
        let stack = obj.lock();
        *found = c_int::from(stack.peek(out)?);
        Ok(())
    })
}

/// Creates an empty queue.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_queue_create(
    rt: *mut fm_runtime_t,
    elem_size: usize,
    out: *mut *mut fm_queue_t,
) -> fm_status_t {
    ffi_call("fm_queue_create", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        let h = QueueObj::create(rt, elem_size, |session| {
            erased::queue(session.far(), elem_size)
        })?;
        *out = h as *mut fm_queue_t;
        Ok(())
    })
}

/// Destroys a queue (NULL: no-op).
///
/// # Safety
/// None beyond the handle contract.
#[no_mangle]
pub unsafe extern "C" fn fm_queue_destroy(q: *mut fm_queue_t) -> fm_status_t {
    ffi_call("fm_queue_destroy", || QueueObj::destroy(q as usize, "q"))
}

/// The queue's length.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_queue_len(q: *const fm_queue_t, out: *mut usize) -> fm_status_t {
    ffi_call("fm_queue_len", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        *out = QueueObj::get(q as usize, "q")?.lock().len();
        Ok(())
    })
}

/// Appends `value` at the tail.
///
/// # Safety
/// `value` is NULL or valid for reads of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_queue_push(
    q: *mut fm_queue_t,
    value: *const c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_queue_push", || {
        let obj = QueueObj::get(q as usize, "q")?;
        obj.check_size(elem_size, "elem_size")?;
        // SAFETY: the caller's promise on `value`.
        let value = unsafe { bytes_in(value, elem_size, "value") }?;
        let queue = obj.lock();
        queue.push(value)
    })
}

/// Pops the head into `out`; `*popped` says whether there was one.
///
/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes; `popped` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_queue_pop(
    q: *mut fm_queue_t,
    out: *mut c_void,
    elem_size: usize,
    popped: *mut c_int,
) -> fm_status_t {
    ffi_call("fm_queue_pop", || {
        let obj = QueueObj::get(q as usize, "q")?;
        obj.check_size(elem_size, "elem_size")?;
        // SAFETY: the caller's promises on `out` and `popped`.
        let (out, popped) = unsafe {
            (
                bytes_out(out, elem_size, "out")?,
                out_ref(popped, "popped")?,
            )
        };
        let queue = obj.lock();
        *popped = c_int::from(queue.pop(out)?);
        Ok(())
    })
}

/// Copies the head to `out` without removing it; `*found` says whether there was one.
///
/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes; `found` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_queue_peek(
    q: *mut fm_queue_t,
    out: *mut c_void,
    elem_size: usize,
    found: *mut c_int,
) -> fm_status_t {
    ffi_call("fm_queue_peek", || {
        let obj = QueueObj::get(q as usize, "q")?;
        obj.check_size(elem_size, "elem_size")?;
        // SAFETY: the caller's promises on `out` and `found`.
        let (out, found) = unsafe { (bytes_out(out, elem_size, "out")?, out_ref(found, "found")?) };
        let queue = obj.lock();
        *found = c_int::from(queue.peek(out)?);
        Ok(())
    })
}
