//! `fm_dataframe_t` and the nine taxi steps (AIFM §6.2) over far-memory columns.
//!
//! A frame is `DataFrame<FarStorage>` on its runtime's far memory, behind a farmem-sched mutex
//! (steps 4, 6 and 7 add columns, so every step takes the frame exclusively). Steps run on the
//! calling thread, as `farmem-demo` runs them. Variable-length results follow one protocol
//! ([`write_list`]): `*len` is always set to the number of entries; `out = NULL, cap = 0` asks
//! for it; a short `cap` is `FM_INVALID_ARGUMENT` naming the size needed.

use std::ffi::{c_char, c_int};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use fm::dataframe::taxi::{self, PICKUP_DAY, PICKUP_MONTH};
use fm::dataframe::{load_csv, DataFrame, FarStorage, LoadOptions, Schema};
use fm::sched::sync::Mutex;
use fm::{Error, Result};

use crate::abi::*;
use crate::boundary::{c_str, ffi_call, out_ref, write_opt};
use crate::registry::{self, HandleKind};
use crate::runtime::{lease, Lease};

/// The object behind an `fm_dataframe_t`.
pub(crate) struct DataFrameObj {
    // Declared first: dropped before the lease.
    df: Mutex<DataFrame<FarStorage>>,
    _lease: Lease,
}

impl HandleKind for DataFrameObj {
    const C_TYPE: &'static str = "fm_dataframe_t";
}

fn frame(df: *const fm_dataframe_t) -> Result<Arc<DataFrameObj>> {
    registry::get::<DataFrameObj>(df as usize, "df")
}

/// Copies `items` to `out[..cap]` by the protocol of the module note.
///
/// # Safety
/// `out` is NULL or valid for writes of `cap` `T`s; `len` is NULL or valid for writes.
unsafe fn write_list<T: Copy>(items: &[T], out: *mut T, cap: usize, len: *mut usize) -> Result<()> {
    // SAFETY: the caller's promise on `len`.
    let len = unsafe { out_ref(len, "len") }?;
    *len = items.len();
    if out.is_null() {
        if cap == 0 {
            return Ok(());
        }
        return Err(Error::invalid(format!(
            "`out` is NULL but `cap` is {cap}; pass out = NULL with cap = 0 to ask for the size"
        )));
    }
    if cap < items.len() {
        return Err(Error::invalid(format!(
            "the result has {} entries but `cap` is {cap}; pass cap >= {} (*len is set to it)",
            items.len(),
            items.len()
        )));
    }
    // SAFETY: `out` is valid for `cap >= items.len()` writes (caller's promise, checked above).
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), out, items.len()) };
    Ok(())
}

fn pairs(counts: &[(u8, u64)]) -> Vec<fm_count_pair_t> {
    counts
        .iter()
        .map(|&(key, count)| fm_count_pair {
            key: u64::from(key),
            count,
        })
        .collect()
}

/// Runs all nine steps on `df`, writing what `taxi::run_all` writes to `out`.
pub(crate) fn run_all_to(df: *mut fm_dataframe_t, out: &mut dyn Write) -> Result<()> {
    let obj = frame(df)?;
    let mut frame = obj.df.lock();
    taxi::run_all(&mut frame, out).map(|_| ())
}

/// Loads a taxi CSV into far-memory columns.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_dataframe_load_taxi_csv(
    rt: *mut fm_runtime_t,
    path: *const c_char,
    out: *mut *mut fm_dataframe_t,
) -> fm_status_t {
    ffi_call("fm_dataframe_load_taxi_csv", || {
        // SAFETY: the caller's promises on `out` and `path`.
        let (out, path) = unsafe { (out_ref(out, "out")?, c_str(path, "path")?) };
        let lease = lease(rt, "rt", DataFrameObj::C_TYPE)?;
        let opts = LoadOptions {
            threads: 0,
            skip_bad_rows: false,
            progress: None,
        };
        let (df, _report) = load_csv(
            Path::new(path),
            &Schema::taxi(),
            &lease.session().storage(),
            opts,
        )?;
        let h = registry::insert(Arc::new(DataFrameObj {
            df: Mutex::new(df),
            _lease: lease,
        }))?;
        *out = h as *mut fm_dataframe_t;
        Ok(())
    })
}

/// Writes a seeded generated taxi CSV.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fm_taxi_generate(
    path: *const c_char,
    rows: u64,
    seed: u64,
) -> fm_status_t {
    ffi_call("fm_taxi_generate", || {
        // SAFETY: the caller's promise on `path`.
        let path = unsafe { c_str(path, "path") }?;
        fm::dataframe::generate(Path::new(path), rows, seed, None).map(|_| ())
    })
}

/// Destroys a dataframe (NULL: no-op).
///
/// # Safety
/// None beyond the handle contract.
#[no_mangle]
pub unsafe extern "C" fn fm_dataframe_destroy(df: *mut fm_dataframe_t) -> fm_status_t {
    ffi_call("fm_dataframe_destroy", || {
        if !df.is_null() {
            drop(registry::remove::<DataFrameObj>(df as usize, "df")?);
        }
        Ok(())
    })
}

/// Rows of the frame.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_dataframe_rows(
    df: *const fm_dataframe_t,
    out: *mut u64,
) -> fm_status_t {
    ffi_call("fm_dataframe_rows", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        *out = frame(df)?.df.lock().rows() as u64;
        Ok(())
    })
}

/// Columns of the frame.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_dataframe_column_count(
    df: *const fm_dataframe_t,
    out: *mut usize,
) -> fm_status_t {
    ffi_call("fm_dataframe_column_count", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        *out = frame(df)?.df.lock().column_names().len();
        Ok(())
    })
}

/// Column `i`'s name into `buf`.
///
/// # Safety
/// `buf` is NULL or valid for writes of `cap` bytes; `needed` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_dataframe_column_name(
    df: *const fm_dataframe_t,
    i: usize,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> fm_status_t {
    ffi_call("fm_dataframe_column_name", || {
        let obj = frame(df)?;
        let frame = obj.df.lock();
        let names = frame.column_names();
        let name = names.get(i).ok_or_else(|| {
            Error::invalid(format!(
                "column index {i} is out of range: the frame has {} columns",
                names.len()
            ))
        })?;
        // SAFETY: the caller's promise on `needed`.
        unsafe { write_opt(needed, name.len() + 1) };
        if buf.is_null() {
            if cap == 0 {
                return Ok(());
            }
            return Err(crate::boundary::null_arg("buf"));
        }
        if cap == 0 {
            return Ok(());
        }
        let n = name.len().min(cap - 1);
        // SAFETY: `buf` is valid for `cap > n` bytes (caller's promise).
        unsafe {
            std::ptr::copy_nonoverlapping(name.as_ptr(), buf.cast::<u8>(), n);
            buf.add(n).write(0);
        }
        Ok(())
    })
}

/// Step 1.
///
/// # Safety
/// `count` and `len` are NULL or valid for writes; `unique` is NULL or valid for `cap` writes.
#[no_mangle]
pub unsafe extern "C" fn fm_taxi_vendor_summary(
    df: *mut fm_dataframe_t,
    count: *mut u64,
    unique: *mut i64,
    cap: usize,
    len: *mut usize,
) -> fm_status_t {
    ffi_call("fm_taxi_vendor_summary", || {
        // SAFETY: the caller's promise on `count`.
        let count = unsafe { out_ref(count, "count") }?;
        let obj = frame(df)?;
        let r = taxi::vendor_summary(&obj.df.lock())?;
        *count = r.count as u64;
        // SAFETY: the caller's promises on `unique` and `len`.
        unsafe { write_list(&r.unique, unique, cap, len) }
    })
}

/// Steps 2 and 3.
///
/// # Safety
/// `out` is NULL or valid for `cap` writes; `len` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_taxi_passenger_histogram(
    df: *mut fm_dataframe_t,
    vendor: i64,
    out: *mut fm_count_pair_t,
    cap: usize,
    len: *mut usize,
) -> fm_status_t {
    ffi_call("fm_taxi_passenger_histogram", || {
        let obj = frame(df)?;
        let r = taxi::passenger_histogram(&obj.df.lock(), vendor)?;
        // SAFETY: the caller's promises on `out` and `len`.
        unsafe { write_list(&pairs(&r.counts), out, cap, len) }
    })
}

/// Step 4.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_taxi_trip_duration(
    df: *mut fm_dataframe_t,
    out: *mut fm_duration_stats_t,
) -> fm_status_t {
    ffi_call("fm_taxi_trip_duration", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        let obj = frame(df)?;
        let r = taxi::trip_duration(&mut obj.df.lock())?;
        *out = match (r.max, r.min, r.mean) {
            (Some(max), Some(min), Some(mean)) => fm_duration_stats {
                max,
                min,
                mean,
                has_values: 1,
            },
            _ => fm_duration_stats::default(),
        };
        Ok(())
    })
}

/// Step 5.
///
/// # Safety
/// `out` and `len` are NULL or valid for writes; `y_vendors` is NULL or valid for `cap` writes.
#[no_mangle]
pub unsafe extern "C" fn fm_taxi_store_and_forward(
    df: *mut fm_dataframe_t,
    out: *mut fm_store_and_forward_t,
    y_vendors: *mut i64,
    cap: usize,
    len: *mut usize,
) -> fm_status_t {
    ffi_call("fm_taxi_store_and_forward", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        let obj = frame(df)?;
        let r = taxi::store_and_forward(&obj.df.lock())?;
        *out = fm_store_and_forward {
            rows: r.rows as u64,
            n_rows: r.n_rows as u64,
            n_share: r.n_share,
        };
        // SAFETY: the caller's promises on `y_vendors` and `len`.
        unsafe { write_list(&r.y_vendors, y_vendors, cap, len) }
    })
}

/// Step 6.
///
/// # Safety
/// `over_100km` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_taxi_long_trips(
    df: *mut fm_dataframe_t,
    over_100km: *mut u64,
) -> fm_status_t {
    ffi_call("fm_taxi_long_trips", || {
        // SAFETY: the caller's promise on `over_100km`.
        let out = unsafe { out_ref(over_100km, "over_100km") }?;
        let obj = frame(df)?;
        *out = taxi::long_trips(&mut obj.df.lock())?.over_100km as u64;
        Ok(())
    })
}

/// Step 7 (one histogram: `which` = 0 hours, 1 days, 2 months).
///
/// # Safety
/// `out` is NULL or valid for `cap` writes; `len` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_taxi_pickup_time_parts(
    df: *mut fm_dataframe_t,
    which: c_int,
    out: *mut fm_count_pair_t,
    cap: usize,
    len: *mut usize,
) -> fm_status_t {
    ffi_call("fm_taxi_pickup_time_parts", || {
        if !(0..=2).contains(&which) {
            return Err(Error::invalid(format!(
                "`which` is {which}; pass 0 (hours), 1 (days) or 2 (months)"
            )));
        }
        let obj = frame(df)?;
        let r = taxi::pickup_time_parts(&mut obj.df.lock())?;
        let counts = match which {
            0 => &r.hours,
            1 => &r.days,
            _ => &r.months,
        };
        // SAFETY: the caller's promises on `out` and `len`.
        unsafe { write_list(&pairs(counts), out, cap, len) }
    })
}

/// Step 7's preview: its first (up to 10) rows.
///
/// # Safety
/// `out` is NULL or valid for `cap` writes; `len` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_taxi_pickup_preview(
    df: *mut fm_dataframe_t,
    out: *mut fm_pickup_row_t,
    cap: usize,
    len: *mut usize,
) -> fm_status_t {
    ffi_call("fm_taxi_pickup_preview", || {
        let obj = frame(df)?;
        let r = taxi::pickup_time_parts(&mut obj.df.lock())?;
        let rows: Vec<fm_pickup_row_t> = r
            .first_rows
            .iter()
            .map(|row| fm_pickup_row {
                pickup: row.pickup,
                hour: row.hour,
                day: row.day,
                month: row.month,
            })
            .collect();
        // SAFETY: the caller's promises on `out` and `len`.
        unsafe { write_list(&rows, out, cap, len) }
    })
}

/// Steps 8 and 9.
///
/// # Safety
/// `key` is NULL or a NUL-terminated string; `out` is NULL or valid for `cap` writes; `len` is
/// NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_taxi_median_duration_by(
    df: *mut fm_dataframe_t,
    key: *const c_char,
    out: *mut fm_key_median_t,
    cap: usize,
    len: *mut usize,
) -> fm_status_t {
    ffi_call("fm_taxi_median_duration_by", || {
        // SAFETY: the caller's promise on `key`.
        let key = match unsafe { c_str(key, "key") }? {
            k if k == PICKUP_DAY => PICKUP_DAY,
            k if k == PICKUP_MONTH => PICKUP_MONTH,
            other => {
                return Err(Error::invalid(format!(
                    "`key` is {other:?}; pass \"{PICKUP_DAY}\" or \"{PICKUP_MONTH}\""
                )))
            }
        };
        let obj = frame(df)?;
        let r = taxi::median_duration_by(&obj.df.lock(), key)?;
        let medians: Vec<fm_key_median_t> = r
            .medians
            .iter()
            .map(|&(k, median)| fm_key_median {
                key: u64::from(k),
                median,
            })
            .collect();
        // SAFETY: the caller's promises on `out` and `len`.
        unsafe { write_list(&medians, out, cap, len) }
    })
}

extern "C" {
    /// C stdio's `fflush`; NULL flushes every output stream.
    fn fflush(stream: *mut std::ffi::c_void) -> c_int;
}

/// All nine steps, printed to stdout as `farmem-demo` prints them.
///
/// # Safety
/// None beyond the handle contract.
#[no_mangle]
pub unsafe extern "C" fn fm_taxi_run_all(df: *mut fm_dataframe_t) -> fm_status_t {
    ffi_call("fm_taxi_run_all", || {
        // What C printed before this call comes first: C stdio and Rust's stdout buffer apart.
        // SAFETY: fflush(NULL) is defined by C (flushes all output streams) and touches no Rust
        // state.
        unsafe { fflush(std::ptr::null_mut()) };
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        run_all_to(df, &mut lock)?;
        lock.flush()
            .map_err(|e| Error::io("flushing the taxi report to stdout", e))
    })
}
