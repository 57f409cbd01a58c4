//! `fm_array_t` and `fm_vector_t`: the C face of `RemArray` and `RemVec` (element bytes copied
//! in and out; see `erased.rs` for the representation and `container.rs` for the checks).

use std::ffi::{c_int, c_void};

use fm::{Error, ErrorKind, Result, Session};

use crate::abi::*;
use crate::boundary::{byte_len, bytes_in, bytes_out, ffi_call, out_ref};
use crate::container::ContainerObj;
use crate::erased::{self, ErasedArray, ErasedVec};
use crate::registry::HandleKind;

/// The object behind an `fm_array_t`.
pub(crate) type ArrayObj = ContainerObj<dyn ErasedArray>;
impl HandleKind for ArrayObj {
    const C_TYPE: &'static str = "fm_array_t";
}

/// The object behind an `fm_vector_t`.
pub(crate) type VectorObj = ContainerObj<dyn ErasedVec>;
impl HandleKind for VectorObj {
    const C_TYPE: &'static str = "fm_vector_t";
}

/// Refuses an array that cannot fit before asking far memory for it: its chunk table is
/// allocated up front, so an absurd `len` would otherwise cost a huge local allocation first.
fn check_fits(session: &Session, elem_size: usize, len: usize) -> Result<()> {
    let slot = erased::slot_size(elem_size)?;
    let bytes = len
        .checked_mul(slot)
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| {
            Error::invalid(format!(
                "an array of {len} elements of {elem_size} bytes overflows the address space"
            ))
        })?;
    let config = session.config();
    if config.servers.is_empty() && bytes as u64 > config.far_bytes {
        return Err(Error::new(
            ErrorKind::OutOfFarMemory,
            format!(
                "an array of {len} elements of {elem_size} bytes needs {bytes} bytes, more than \
                 the embedded server's far_bytes ({}); raise far_bytes",
                config.far_bytes
            ),
        ));
    }
    Ok(())
}

/// Creates a zeroed array.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_array_create(
    rt: *mut fm_runtime_t,
    elem_size: usize,
    len: usize,
    out: *mut *mut fm_array_t,
) -> fm_status_t {
    ffi_call("fm_array_create", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        let h = ArrayObj::create(rt, elem_size, |session| {
            check_fits(session, elem_size, len)?;
            erased::array(session.far(), elem_size, len)
        })?;
        *out = h as *mut fm_array_t;
        Ok(())
    })
}

/// Destroys an array (NULL: no-op).
///
/// # Safety
/// None beyond the handle contract.
#[no_mangle]
pub unsafe extern "C" fn fm_array_destroy(a: *mut fm_array_t) -> fm_status_t {
    ffi_call("fm_array_destroy", || ArrayObj::destroy(a as usize, "a"))
}

/// The array's length.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_array_len(a: *const fm_array_t, out: *mut usize) -> fm_status_t {
    ffi_call("fm_array_len", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        *out = ArrayObj::get(a as usize, "a")?.lock().len();
        Ok(())
    })
}

/// Copies element `index` to `out`.
///
/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_array_get(
    a: *mut fm_array_t,
    s: *mut fm_scope_t,
    index: usize,
    out: *mut c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_array_get", || {
        let obj = ArrayObj::get(a as usize, "a")?;
        obj.scoped(s, elem_size, |arr, scope| {
            // SAFETY: the caller's promise on `out`.
            let out = unsafe { bytes_out(out, elem_size, "out") }?;
            arr.get(index, out, scope)
        })
    })
}

/// Sets element `index` from `value`.
///
/// # Safety
/// `value` is NULL or valid for reads of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_array_set(
    a: *mut fm_array_t,
    s: *mut fm_scope_t,
    index: usize,
    value: *const c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_array_set", || {
        let obj = ArrayObj::get(a as usize, "a")?;
        obj.scoped(s, elem_size, |arr, scope| {
            // SAFETY: the caller's promise on `value`.
            let value = unsafe { bytes_in(value, elem_size, "value") }?;
            arr.set(index, value, scope)
        })
    })
}

/// Copies `count` elements from `start` to `out`.
///
/// # Safety
/// `out` is NULL or valid for writes of `count * elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_array_read(
    a: *mut fm_array_t,
    s: *mut fm_scope_t,
    start: usize,
    count: usize,
    out: *mut c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_array_read", || {
        let obj = ArrayObj::get(a as usize, "a")?;
        obj.scoped(s, elem_size, |arr, scope| {
            let bytes = byte_len(count, elem_size, "count")?;
            // SAFETY: the caller's promise on `out`.
            let out = unsafe { bytes_out(out, bytes, "out") }?;
            arr.read(start, elem_size, out, scope)
        })
    })
}

/// Copies `count` elements from `src` into the array from `start`.
///
/// # Safety
/// `src` is NULL or valid for reads of `count * elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_array_write(
    a: *mut fm_array_t,
    s: *mut fm_scope_t,
    start: usize,
    count: usize,
    src: *const c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_array_write", || {
        let obj = ArrayObj::get(a as usize, "a")?;
        obj.scoped(s, elem_size, |arr, scope| {
            let bytes = byte_len(count, elem_size, "count")?;
            // SAFETY: the caller's promise on `src`.
            let src = unsafe { bytes_in(src, bytes, "src") }?;
            arr.write(start, elem_size, src, scope)
        })
    })
}

/// Creates an empty vector.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_vector_create(
    rt: *mut fm_runtime_t,
    elem_size: usize,
    out: *mut *mut fm_vector_t,
) -> fm_status_t {
    ffi_call("fm_vector_create", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        let h = VectorObj::create(rt, elem_size, |session| {
            erased::vec(session.far(), elem_size)
        })?;
        *out = h as *mut fm_vector_t;
        Ok(())
    })
}

/// Destroys a vector (NULL: no-op).
///
/// # Safety
/// None beyond the handle contract.
#[no_mangle]
pub unsafe extern "C" fn fm_vector_destroy(v: *mut fm_vector_t) -> fm_status_t {
    ffi_call("fm_vector_destroy", || VectorObj::destroy(v as usize, "v"))
}

/// The vector's length.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_vector_len(v: *const fm_vector_t, out: *mut usize) -> fm_status_t {
    ffi_call("fm_vector_len", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        *out = VectorObj::get(v as usize, "v")?.lock().len();
        Ok(())
    })
}

/// Appends `value`.
///
/// # Safety
/// `value` is NULL or valid for reads of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_vector_push(
    v: *mut fm_vector_t,
    s: *mut fm_scope_t,
    value: *const c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_vector_push", || {
        let obj = VectorObj::get(v as usize, "v")?;
        obj.scoped(s, elem_size, |vec, scope| {
            // SAFETY: the caller's promise on `value`.
            let value = unsafe { bytes_in(value, elem_size, "value") }?;
            vec.push(value, scope)
        })
    })
}

/// Removes the last element into `out`; `*popped` says whether there was one.
///
/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes; `popped` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_vector_pop(
    v: *mut fm_vector_t,
    s: *mut fm_scope_t,
    out: *mut c_void,
    elem_size: usize,
    popped: *mut c_int,
) -> fm_status_t {
    ffi_call("fm_vector_pop", || {
        let obj = VectorObj::get(v as usize, "v")?;
        obj.scoped(s, elem_size, |vec, scope| {
            // SAFETY: the caller's promises on `out` and `popped`.
            let (out, popped) = unsafe {
                (
                    bytes_out(out, elem_size, "out")?,
                    out_ref(popped, "popped")?,
                )
            };
            *popped = c_int::from(vec.pop(out, scope)?);
            Ok(())
        })
    })
}

/// Copies element `index` to `out`.
///
/// # Safety
/// `out` is NULL or valid for writes of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_vector_get(
    v: *mut fm_vector_t,
    s: *mut fm_scope_t,
    index: usize,
    out: *mut c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_vector_get", || {
        let obj = VectorObj::get(v as usize, "v")?;
        obj.scoped(s, elem_size, |vec, scope| {
            // SAFETY: the caller's promise on `out`.
            let out = unsafe { bytes_out(out, elem_size, "out") }?;
            vec.get(index, out, scope)
        })
    })
}

/// Sets element `index` from `value`.
///
/// # Safety
/// `value` is NULL or valid for reads of `elem_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn fm_vector_set(
    v: *mut fm_vector_t,
    s: *mut fm_scope_t,
    index: usize,
    value: *const c_void,
    elem_size: usize,
) -> fm_status_t {
    ffi_call("fm_vector_set", || {
        let obj = VectorObj::get(v as usize, "v")?;
        obj.scoped(s, elem_size, |vec, scope| {
            // SAFETY: the caller's promise on `value`.
            let value = unsafe { bytes_in(value, elem_size, "value") }?;
            vec.set(index, value, scope)
        })
    })
}
