//! `fm_list_t`: the C face of `RemList` (a double-ended list with insert and remove anywhere).

use std::ffi::{c_int, c_void};

use crate::abi::*;
use crate::boundary::{bytes_in, bytes_out, ffi_call, out_ref};
use crate::container::ContainerObj;
use crate::erased::{self, ErasedList};
use crate::registry::HandleKind;

/// The object behind an `fm_list_t`.
pub(crate) type ListObj = ContainerObj<dyn ErasedList>;
impl HandleKind for ListObj {
    const C_TYPE: &'static str = "fm_list_t";
}

/// Which end a push or pop works on.
#[derive(Clone, Copy)]
enum End {
    Front,
    Back,
}

/// Creates an empty list.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_list_create(
    rt: *mut fm_runtime_t,
    elem_size: usize,
    out: *mut *mut fm_list_t,
) -> fm_status_t {
    ffi_call("fm_list_create", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        let h = ListObj::create(rt, elem_size, |session| {
            erased::list(session.far(), elem_size)
        })?;
        *out = h as *mut fm_list_t;
        Ok(())
    })
}

/// Destroys a list (NULL: no-op).
///
/// # Safety
/// None beyond the handle contract.
#[no_mangle]
pub unsafe extern "C" fn fm_list_destroy(l: *mut fm_list_t) -> fm_status_t {
    ffi_call("fm_list_destroy", || ListObj::destroy(l as usize, "l"))
}

/// The list's length.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_list_len(l: *const fm_list_t, out: *mut usize) -> fm_status_t {
    ffi_call("fm_list_len", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        *out = ListObj::get(l as usize, "l")?.lock().len();
        Ok(())
    })
}

/// # Safety
/// `value` is NULL or valid for reads of `elem_size` bytes.
unsafe fn push(
    name: &'static str,
    end: End,
    l: *mut fm_list_t,
    s: *mut fm_scope_t,
    value: *const c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call(name, || {
        let obj = ListObj::get(l as usize, "l")?;
        obj.scoped(s, elem_size, |list, scope| {
            // SAFETY: the caller's promise on `value`.
            let value = unsafe { bytes_in(value, elem_size, "value") }?;
            match end {
                End::Front => list.push_front(value, scope),
                End::Back => list.push_back(value, scope),
            }
        })
    })
}

/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes; `popped` is NULL or valid for writes.
unsafe fn pop(
    name: &'static str,
    end: End,
    l: *mut fm_list_t,
    s: *mut fm_scope_t,
    out: *mut c_void,
    elem_size: usize,
    popped: *mut c_int,
) -> fm_status_t {
    ffi_call(name, || {
        let obj = ListObj::get(l as usize, "l")?;
        obj.scoped(s, elem_size, |list, scope| {
            // SAFETY: the caller's promises on `out` and `popped`.
            let (out, popped) = unsafe {
                (
                    bytes_out(out, elem_size, "out")?,
                    out_ref(popped, "popped")?,
                )
            };
            let got = match end {
                End::Front => list.pop_front(out, scope)?,
                End::Back => list.pop_back(out, scope)?,
            };
            *popped = c_int::from(got);
            Ok(())
        })
    })
}

/// Appends `value` at the back.
///
/// # Safety
/// `value` is NULL or valid for reads of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_list_push_back(
    l: *mut fm_list_t,
    s: *mut fm_scope_t,
    value: *const c_void,
    elem_size: usize,
) -> fm_status_t {
    // SAFETY: the caller's promise, passed on.
    unsafe { push("fm_list_push_back", End::Back, l, s, value, elem_size) }
}

/// Prepends `value` at the front.
///
/// # Safety
/// `value` is NULL or valid for reads of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_list_push_front(
    l: *mut fm_list_t,
    s: *mut fm_scope_t,
    value: *const c_void,
    elem_size: usize,
) -> fm_status_t {
    // SAFETY: the caller's promise, passed on.
    unsafe { push("fm_list_push_front", End::Front, l, s, value, elem_size) }
}

/// Removes the back element into `out`.
///
/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes; `popped` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_list_pop_back(
    l: *mut fm_list_t,
    s: *mut fm_scope_t,
    out: *mut c_void,
    elem_size: usize,
    popped: *mut c_int,
) -> fm_status_t {
    // SAFETY: the caller's promises, passed on.
    unsafe { pop("fm_list_pop_back", End::Back, l, s, out, elem_size, popped) }
}

/// Removes the front element into `out`.
///
/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes; `popped` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_list_pop_front(
    l: *mut fm_list_t,
    s: *mut fm_scope_t,
    out: *mut c_void,
    elem_size: usize,
    popped: *mut c_int,
) -> fm_status_t {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        pop(
            "fm_list_pop_front",
            End::Front,
            l,
            s,
            out,
            elem_size,
            popped,
        )
    }
}

/// Copies element `index` to `out`.
///
/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_list_get(
    l: *mut fm_list_t,
    s: *mut fm_scope_t,
    index: usize,
    out: *mut c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_list_get", || {
        let obj = ListObj::get(l as usize, "l")?;
        obj.scoped(s, elem_size, |list, scope| {
            // SAFETY: the caller's promise on `out`.
            let out = unsafe { bytes_out(out, elem_size, "out") }?;
            list.get(index, out, scope)
        })
    })
}

/// Inserts `value` as element `index`.
///
/// # Safety
/// `value` is NULL or valid for reads of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_list_insert(
    l: *mut fm_list_t,
    s: *mut fm_scope_t,
    index: usize,
    value: *const c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_list_insert", || {
        let obj = ListObj::get(l as usize, "l")?;
        obj.scoped(s, elem_size, |list, scope| {
            // SAFETY: the caller's promise on `value`.
            let value = unsafe { bytes_in(value, elem_size, "value") }?;
            list.insert(index, value, scope)
        })
    })
}

/// Removes element `index`, copying it to `out` (NULL: discarded).
///
/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_list_remove(
    l: *mut fm_list_t,
    s: *mut fm_scope_t,
    index: usize,
    out: *mut c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_list_remove", || {
        let obj = ListObj::get(l as usize, "l")?;
        obj.scoped(s, elem_size, |list, scope| {
            let mut discard = Vec::new();
            let out = if out.is_null() {
                discard.resize(elem_size, 0);
                &mut discard[..]
            } else {
                // SAFETY: the caller's promise on `out`.
                unsafe { bytes_out(out, elem_size, "out") }?
            };
            list.remove(index, out, scope)
        })
    })
}
