//! `fm_hashmap_t`: the C face of `RemHashMap` with fixed-size byte keys and values.
//!
//! The map is `RemHashMap<Vec<u8>, Vec<u8>>` (the objects crate encodes byte vectors as
//! themselves), so no size-class dispatch is needed: the handle records the two sizes and
//! every call checks them. The map is shared by design (`&self` operations, its own locks and
//! write-through index on the server), so calls on one handle run concurrently.

use std::ffi::{c_int, c_void};
use std::sync::Arc;

use fm::objects::RemHashMap;
use fm::{Error, Result};

use crate::abi::*;
use crate::boundary::{bytes_in, bytes_out, ffi_call, out_ref, write_opt};
use crate::erased::MAX_ELEM_SIZE;
use crate::registry::{self, HandleKind};
use crate::runtime::{lease, Lease};

/// The object behind an `fm_hashmap_t`.
pub(crate) struct HashMapObj {
    // Declared first: dropped before the lease.
    map: RemHashMap<Vec<u8>, Vec<u8>>,
    key_size: usize,
    value_size: usize,
    _lease: Lease,
}

impl HandleKind for HashMapObj {
    const C_TYPE: &'static str = "fm_hashmap_t";
}

impl HashMapObj {
    fn get(h: *const fm_hashmap_t) -> Result<Arc<HashMapObj>> {
        registry::get::<HashMapObj>(h as usize, "m")
    }

    fn check(&self, arg: &str, got: usize, want: usize) -> Result<()> {
        if got != want {
            return Err(Error::invalid(format!(
                "`{arg}` is {got} but this fm_hashmap_t was created with {want}"
            )));
        }
        Ok(())
    }
}

fn check_size(arg: &str, size: usize) -> Result<()> {
    if size == 0 || size > MAX_ELEM_SIZE {
        return Err(Error::invalid(format!(
            "`{arg}` {size} is outside 1..={MAX_ELEM_SIZE}"
        )));
    }
    Ok(())
}

/// Creates an empty hash map.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_hashmap_create(
    rt: *mut fm_runtime_t,
    key_size: usize,
    value_size: usize,
    cache_bytes: u64,
    out: *mut *mut fm_hashmap_t,
) -> fm_status_t {
    ffi_call("fm_hashmap_create", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        check_size("key_size", key_size)?;
        check_size("value_size", value_size)?;
        let cache = usize::try_from(cache_bytes).map_err(|_| {
            Error::invalid(format!("`cache_bytes` {cache_bytes} does not fit size_t"))
        })?;
        let lease = lease(rt, "rt", HashMapObj::C_TYPE)?;
        let map = lease.session().far().hash_map::<Vec<u8>, Vec<u8>>(cache)?;
        let h = registry::insert(Arc::new(HashMapObj {
            map,
            key_size,
            value_size,
            _lease: lease,
        }))?;
        *out = h as *mut fm_hashmap_t;
        Ok(())
    })
}

/// Destroys a hash map handle (NULL: no-op).
///
/// # Safety
/// None beyond the handle contract.
#[no_mangle]
pub unsafe extern "C" fn fm_hashmap_destroy(m: *mut fm_hashmap_t) -> fm_status_t {
    ffi_call("fm_hashmap_destroy", || {
        if !m.is_null() {
            drop(registry::remove::<HashMapObj>(m as usize, "m")?);
        }
        Ok(())
    })
}

/// The number of entries (one round trip).
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_hashmap_len(m: *mut fm_hashmap_t, out: *mut u64) -> fm_status_t {
    ffi_call("fm_hashmap_len", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        *out = HashMapObj::get(m)?.map.len()?;
        Ok(())
    })
}

/// Inserts or replaces `key` → `value`.
///
/// # Safety
/// `key`/`value` are NULL or valid for reads of `key_size`/`value_size` bytes; `inserted_new`
/// is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_hashmap_put(
    m: *mut fm_hashmap_t,
    key: *const c_void,
    key_size: usize,
    value: *const c_void,
    value_size: usize,
    inserted_new: *mut c_int,
) -> fm_status_t {
    ffi_call("fm_hashmap_put", || {
        let obj = HashMapObj::get(m)?;
        obj.check("key_size", key_size, obj.key_size)?;
        obj.check("value_size", value_size, obj.value_size)?;
        // SAFETY: the caller's promises on `key` and `value`.
        let (key, value) = unsafe {
            (
                bytes_in(key, key_size, "key")?.to_vec(),
                bytes_in(value, value_size, "value")?.to_vec(),
            )
        };
        let new = obj.map.put(&key, &value)?;
        // SAFETY: the caller's promise on `inserted_new`.
        unsafe { write_opt(inserted_new, c_int::from(new)) };
        Ok(())
    })
}

/// Looks up `key`, copying its value to `out`.
///
/// # Safety
/// `key` is NULL or valid for reads of `key_size` bytes; `out` is NULL or valid for writes of
/// `value_size` bytes; `found` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_hashmap_get(
    m: *mut fm_hashmap_t,
    key: *const c_void,
    key_size: usize,
    out: *mut c_void,
    value_size: usize,
    found: *mut c_int,
) -> fm_status_t {
    ffi_call("fm_hashmap_get", || {
        let obj = HashMapObj::get(m)?;
        obj.check("key_size", key_size, obj.key_size)?;
        obj.check("value_size", value_size, obj.value_size)?;
        // SAFETY: the caller's promises on `key`, `out` and `found`.
        let (key, out, found) = unsafe {
            (
                bytes_in(key, key_size, "key")?.to_vec(),
                bytes_out(out, value_size, "out")?,
                out_ref(found, "found")?,
            )
        };
        match obj.map.get(&key)? {
            Some(v) if v.len() == value_size => {
                out.copy_from_slice(&v);
                *found = 1;
            }
            Some(v) => {
                return Err(Error::internal(format!(
                    "the server returned a {}-byte value for a map of {value_size}-byte values",
                    v.len()
                )))
            }
            None => *found = 0,
        }
        Ok(())
    })
}

/// Removes `key`.
///
/// # Safety
/// `key` is NULL or valid for reads of `key_size` bytes; `removed` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_hashmap_remove(
    m: *mut fm_hashmap_t,
    key: *const c_void,
    key_size: usize,
    removed: *mut c_int,
) -> fm_status_t {
    ffi_call("fm_hashmap_remove", || {
        let obj = HashMapObj::get(m)?;
        obj.check("key_size", key_size, obj.key_size)?;
        // SAFETY: the caller's promise on `key`.
        let key = unsafe { bytes_in(key, key_size, "key") }?.to_vec();
        let was = obj.map.remove(&key)?;
        // SAFETY: the caller's promise on `removed`.
        unsafe { write_opt(removed, c_int::from(was)) };
        Ok(())
    })
}
