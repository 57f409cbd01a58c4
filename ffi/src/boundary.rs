//! The panic boundary every exported function runs in, the thread-local last-error message, and
//! the checked readers of C arguments (out-pointers, byte buffers, strings).
//!
//! A C caller sees a status code and, for a failure, `fm_last_error()`: the error's kind, the
//! exported function's name, and the callee's message (`"invalid argument: fm_array_get: index
//! 10 out of bounds for a RemArray of length 10"`). A Rust panic never crosses into C (that would
//! abort the process, or worse with C frames in between): [`ffi_call`] catches it and reports
//! `FM_PANICKED` with the panic message (rustls-ffi's `ffi_panic_boundary!`, one helper here).
//!
//! The message lives in a thread-local `CString` that is replaced only by the next failing call
//! on the same OS thread, so the pointer `fm_last_error` returns stays valid until then.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use fm::{Error, ErrorKind, Result};

use crate::abi::{fm_status_t, FM_OK, FM_PANICKED};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error (interior NULs are replaced, never lost).
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // A thread being torn down has no slot left; its message has no reader either.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

/// This thread's last error message (a pointer valid until the next failure on this thread).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// The message of a panic payload (`&str` or `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Runs the body of the exported function `name`: `Ok` is `FM_OK`; an error records its message
/// (prefixed with `name`) and returns its kind's code; a panic is caught and is `FM_PANICKED`.
pub(crate) fn ffi_call(name: &'static str, body: impl FnOnce() -> Result<()>) -> fm_status_t {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => FM_OK,
        Ok(Err(e)) => {
            let e = e.with_context(name);
            set_last_error(&e.to_string());
            e.kind().code()
        }
        Err(payload) => {
            let e = Error::new(
                ErrorKind::Panicked,
                format!("{name}: panicked: {}", panic_message(&*payload)),
            );
            set_last_error(&e.to_string());
            FM_PANICKED
        }
    }
}

/// Runs a getter body (no status to return) inside the panic boundary; a panic yields `fallback`.
pub(crate) fn ffi_getter<T>(name: &'static str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&format!("panicked: {name}: {}", panic_message(&*payload)));
            fallback
        }
    }
}

/// `what` is NULL: the error every checked reader returns.
pub(crate) fn null_arg(what: &str) -> Error {
    Error::invalid(format!("`{what}` is NULL"))
}

/// The out-parameter `p` as a reference.
///
/// # Safety
/// `p` is NULL or valid for writes of a `T` for the returned lifetime, with no other reference
/// to it alive.
pub(crate) unsafe fn out_ref<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: the caller promises a non-NULL `p` is valid and unaliased.
    unsafe { p.as_mut() }.ok_or_else(|| null_arg(what))
}

/// Writes `v` through the optional out-parameter `p` (NULL: discarded).
///
/// # Safety
/// `p` is NULL or valid for writes of a `T`.
pub(crate) unsafe fn write_opt<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: non-NULL, and the caller promises it is valid for writes.
        unsafe { p.write(v) };
    }
}

/// `len` input bytes at `p`.
///
/// # Safety
/// `p` is NULL or valid for reads of `len` bytes that no one writes meanwhile.
pub(crate) unsafe fn bytes_in<'a>(p: *const c_void, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null_arg(what));
    }
    // SAFETY: non-NULL and, by the caller's promise, valid for reads of `len` bytes.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// `len` output bytes at `p`.
///
/// # Safety
/// `p` is NULL or valid for writes of `len` bytes with no other reference to them alive.
pub(crate) unsafe fn bytes_out<'a>(p: *mut c_void, len: usize, what: &str) -> Result<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(null_arg(what));
    }
    // SAFETY: non-NULL and, by the caller's promise, valid and unaliased for `len` bytes.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) })
}

/// The NUL-terminated UTF-8 string at `p`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays unchanged for the lifetime.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(null_arg(what));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's promise.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|e| Error::invalid(format!("`{what}` is not valid UTF-8 ({e})")))
}

/// `n * size` without overflow, for byte lengths of element runs.
pub(crate) fn byte_len(n: usize, size: usize, what: &str) -> Result<usize> {
    n.checked_mul(size).ok_or_else(|| {
        Error::invalid(format!(
            "`{what}`: {n} elements of {size} bytes overflow the address space"
        ))
    })
}
