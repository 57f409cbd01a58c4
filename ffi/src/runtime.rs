//! `fm_runtime_t`: one [`Session`] (workers, far memory, embedded server) per handle, and the
//! leases that keep it from being destroyed while anything uses it.
//!
//! # Who may destroy a runtime, and when
//!
//! Every container, scope, dataframe and unjoined task made from a runtime, and every call in
//! flight that works on it (`fm_runtime_run`, `fm_runtime_metrics`, ...), holds a [`Lease`]: an
//! `Arc` of the runtime object plus one count in its `users` table, taken **under the registry
//! lock** (`registry::with`). `fm_runtime_destroy` removes the handle only if that table is empty,
//! also under the registry lock (`registry::remove_if`), so no lease can be taken between the
//! check and the removal. A destroy that finds users fails with `FM_INVALID_ARGUMENT` naming
//! them ("2 fm_array_t, 1 fm_scope_t") and leaves the runtime usable; after a successful one the
//! destroy holds the only `Arc` and closes the session on its own thread, returning the first
//! background error far memory reported.
//!
//! So a container can never outlive its runtime's session, and destroying a runtime never
//! waits for, or pulls memory from under, a container (the alternative, containers keeping the
//! session alive, would make `fm_runtime_destroy` return while workers and the server still
//! run, surprising a C program that then exits or unloads the library).

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};
use std::sync::{Arc, Mutex};

use fm::{Error, ErrorKind, Result, Session, SessionConfig};

use crate::abi::*;
use crate::boundary::{c_str, ffi_call, ffi_getter, last_error_ptr, out_ref};
use crate::registry::{self, HandleKind};

/// The object behind an `fm_runtime_t`.
pub(crate) struct RuntimeObj {
    session: Session,
    /// Live leases by what holds them (`"fm_array_t"`, `"call in flight"`).
    users: Mutex<BTreeMap<&'static str, usize>>,
}

impl HandleKind for RuntimeObj {
    const C_TYPE: &'static str = "fm_runtime_t";
}

impl RuntimeObj {
    fn users(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, usize>> {
        // Counter updates are single map operations: nothing to repair after a panic.
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One use of a runtime (see the module note); dropping it ends the use.
pub(crate) struct Lease {
    rt: Arc<RuntimeObj>,
    holder: &'static str,
}

impl Lease {
    /// The runtime's session.
    pub(crate) fn session(&self) -> &Session {
        &self.rt.session
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut users = self.rt.users();
        if let Some(n) = users.get_mut(self.holder) {
            *n -= 1;
            if *n == 0 {
                users.remove(self.holder);
            }
        }
    }
}

/// What a call in flight holds its lease as.
pub(crate) const CALL_IN_FLIGHT: &str = "call in flight";

/// A lease on the runtime `rt` (parameter `arg`) held as `holder`.
pub(crate) fn lease(rt: *const fm_runtime_t, arg: &str, holder: &'static str) -> Result<Lease> {
    registry::with(rt as usize, arg, |obj: &Arc<RuntimeObj>| {
        *obj.users().entry(holder).or_insert(0) += 1;
        Ok(Lease {
            rt: obj.clone(),
            holder,
        })
    })
}

fn default_config() -> fm_config_t {
    fm_config {
        struct_size: std::mem::size_of::<fm_config_t>(),
        local_bytes: 0,
        far_bytes: 0,
        server: std::ptr::null(),
        token: std::ptr::null(),
        connections: 0,
        workers: 0,
        chunk_bytes: 0,
        alloc_wait_ms: 0,
        evacuator_threads: 0,
    }
}

/// Bytes of the first version of `fm_config_t` (up to and including `chunk_bytes`): the
/// smallest `struct_size` a caller may pass.
pub(crate) const CONFIG_V1_SIZE: usize = std::mem::offset_of!(fm_config, alloc_wait_ms);

/// The config a caller's `fm_config_t` of `cfg->struct_size` bytes describes.
///
/// # Why `struct_size`
///
/// A program compiled against an older header passes a shorter struct (its `sizeof`); the
/// fields it does not have are read as 0 (the defaults), never past its end. A newer, longer
/// struct is read up to this version's size (its extra fields are ignored).
///
/// # Safety
/// `cfg` is non-NULL, and `cfg->struct_size` bytes from it are readable.
unsafe fn read_config(cfg: *const fm_config_t) -> Result<fm_config_t> {
    // SAFETY: non-NULL; `struct_size` is the first field of every version, so readable.
    let size = unsafe { (*cfg).struct_size };
    if size < CONFIG_V1_SIZE {
        return Err(Error::invalid(format!(
            "cfg->struct_size is {size}, smaller than the first fm_config_t ({CONFIG_V1_SIZE} \
             bytes); call fm_config_init(&cfg) before setting fields"
        )));
    }
    let mut out = default_config();
    let n = size.min(std::mem::size_of::<fm_config_t>());
    // SAFETY: (1) `n <= struct_size` bytes of `cfg` are readable (caller's promise); (2) `out`
    // is a live `fm_config_t` of `size_of::<fm_config_t>() >= n` bytes; (3) every field is an
    // integer or a raw pointer, so any bytes are a valid value; (4) the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            cfg.cast::<u8>(),
            (&mut out as *mut fm_config_t).cast::<u8>(),
            n,
        )
    };
    // A field the caller's struct ends inside of was copied in part: it keeps its default.
    if n < std::mem::offset_of!(fm_config, alloc_wait_ms) + std::mem::size_of::<u64>() {
        out.alloc_wait_ms = 0;
    }
    if n < std::mem::offset_of!(fm_config, evacuator_threads) + std::mem::size_of::<u32>() {
        out.evacuator_threads = 0;
    }
    out.struct_size = std::mem::size_of::<fm_config_t>();
    Ok(out)
}

fn to_usize(v: u64, field: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| {
        Error::invalid(format!(
            "cfg->{field} = {v} does not fit this platform's size_t"
        ))
    })
}

/// The session config a C config asks for.
///
/// # Safety
/// `cfg.server` and `cfg.token` are NULL or NUL-terminated strings.
unsafe fn session_config(cfg: &fm_config_t) -> Result<SessionConfig> {
    let d = SessionConfig::default();
    // `server` is a comma-separated list of `host:port`: several spread far memory over them.
    let servers = if cfg.server.is_null() {
        Vec::new()
    } else {
        // SAFETY: non-NULL, NUL-terminated by the caller's promise.
        SessionConfig::servers_from_list(unsafe { c_str(cfg.server, "cfg->server") }?)
    };
    let token = if cfg.token.is_null() {
        None
    } else {
        // SAFETY: as above.
        Some(unsafe { CStr::from_ptr(cfg.token) }.to_bytes().to_vec())
    };
    Ok(SessionConfig {
        local_bytes: match cfg.local_bytes {
            0 => d.local_bytes,
            n => to_usize(n, "local_bytes")?,
        },
        far_bytes: match cfg.far_bytes {
            0 => d.far_bytes,
            n => n,
        },
        servers,
        token,
        connections: match cfg.connections {
            0 => d.connections,
            n => n as usize,
        },
        workers: cfg.workers as usize,
        chunk_bytes: to_usize(cfg.chunk_bytes, "chunk_bytes")?,
        evacuator_threads: match cfg.evacuator_threads {
            0 => d.evacuator_threads,
            n => n as usize,
        },
        alloc_wait: match cfg.alloc_wait_ms {
            0 => d.alloc_wait,
            ms => std::time::Duration::from_millis(ms),
        },
    })
}

/// The ABI version (`FM_ABI_VERSION`).
#[no_mangle]
pub extern "C" fn fm_abi_version() -> u32 {
    FM_ABI_VERSION
}

/// The static name of `status`.
#[no_mangle]
pub extern "C" fn fm_status_str(status: fm_status_t) -> *const c_char {
    ffi_getter("fm_status_str", c"FM_UNKNOWN".as_ptr(), || {
        let name: &'static CStr = match status {
            FM_OK => c"FM_OK",
            FM_INVALID_ARGUMENT => c"FM_INVALID_ARGUMENT",
            FM_OUT_OF_LOCAL_MEMORY => c"FM_OUT_OF_LOCAL_MEMORY",
            FM_OUT_OF_FAR_MEMORY => c"FM_OUT_OF_FAR_MEMORY",
            FM_OUT_OF_DEVICE_MEMORY => c"FM_OUT_OF_DEVICE_MEMORY",
            FM_UNSUPPORTED => c"FM_UNSUPPORTED",
            FM_IO => c"FM_IO",
            FM_PROTOCOL => c"FM_PROTOCOL",
            FM_AUTH => c"FM_AUTH",
            FM_SERVER_ERROR => c"FM_SERVER_ERROR",
            FM_DISCONNECTED => c"FM_DISCONNECTED",
            FM_TIMEOUT => c"FM_TIMEOUT",
            FM_NOT_FOUND => c"FM_NOT_FOUND",
            FM_CLOSED => c"FM_CLOSED",
            FM_PANICKED => c"FM_PANICKED",
            FM_PARSE => c"FM_PARSE",
            FM_INTERNAL => c"FM_INTERNAL",
            _ => c"FM_UNKNOWN",
        };
        name.as_ptr()
    })
}

/// The last failure's message on this thread.
#[no_mangle]
pub extern "C" fn fm_last_error() -> *const c_char {
    ffi_getter("fm_last_error", c"".as_ptr(), last_error_ptr)
}

/// Fills `*cfg` with the defaults.
///
/// # Safety
/// `cfg` is NULL or valid for writes of an `fm_config_t`.
#[no_mangle]
pub unsafe extern "C" fn fm_config_init(cfg: *mut fm_config_t) {
    if !cfg.is_null() {
        // SAFETY: non-NULL and valid for writes by the caller's promise.
        unsafe { cfg.write(default_config()) };
    }
}

/// Starts a runtime.
///
/// # Safety
/// `cfg` is NULL or points to an initialised `fm_config_t` of at least `cfg->struct_size`
/// bytes whose strings are NULL or NUL-terminated; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fm_runtime_create(
    cfg: *const fm_config_t,
    out: *mut *mut fm_runtime_t,
) -> fm_status_t {
    ffi_call("fm_runtime_create", || {
        // SAFETY: the caller's promise on `out`.
        let out = unsafe { out_ref(out, "out") }?;
        let cfg = if cfg.is_null() {
            default_config()
        } else {
            // SAFETY: non-NULL; the caller promises `cfg->struct_size` readable bytes.
            unsafe { read_config(cfg) }?
        };
        // SAFETY: the caller's promise on the strings.
        let config = unsafe { session_config(&cfg) }?;
        let session = Session::start(config)?;
        let handle = registry::insert(Arc::new(RuntimeObj {
            session,
            users: Mutex::new(BTreeMap::new()),
        }))?;
        *out = handle as *mut fm_runtime_t;
        Ok(())
    })
}

/// Stops a runtime (see the module note for when it refuses).
///
/// # Safety
/// None beyond the handle contract: `rt` is any value.
#[no_mangle]
pub unsafe extern "C" fn fm_runtime_destroy(rt: *mut fm_runtime_t) -> fm_status_t {
    ffi_call("fm_runtime_destroy", || {
        if rt.is_null() {
            return Ok(());
        }
        if fm::sched::in_green_thread() {
            return Err(Error::invalid(
                "called from a green thread; destroy a runtime from an OS thread, after \
                 fm_runtime_run has returned",
            ));
        }
        let obj = registry::remove_if(rt as usize, "rt", |obj: &RuntimeObj| {
            let users = obj.users();
            if users.is_empty() {
                return Ok(());
            }
            let total: usize = users.values().sum();
            let list: Vec<String> = users.iter().map(|(k, n)| format!("{n} {k}")).collect();
            Err(Error::invalid(format!(
                "{total} handles or calls still use this runtime ({}); destroy or join them \
                 first (the runtime is still usable)",
                list.join(", ")
            )))
        })?;
        match Arc::try_unwrap(obj) {
            Ok(obj) => obj.session.close(),
            // Unreachable by the lease protocol: every other Arc is a lease, and there were none.
            Err(_) => Err(Error::new(
                ErrorKind::Internal,
                "the runtime was still referenced after its last lease ended",
            )),
        }
    })
}

/// A snapshot of the runtime's far-memory counters.
///
/// # Safety
/// `out` is NULL or valid for reads and writes of `out->struct_size` bytes (at least its
/// `struct_size` field).
#[no_mangle]
pub unsafe extern "C" fn fm_runtime_metrics(
    rt: *mut fm_runtime_t,
    out: *mut fm_metrics_t,
) -> fm_status_t {
    ffi_call("fm_runtime_metrics", || {
        if out.is_null() {
            return Err(crate::boundary::null_arg("out"));
        }
        let ours = std::mem::size_of::<fm_metrics_t>();
        // SAFETY: non-NULL; its first field is readable in every version of the struct.
        let size = match unsafe { (*out).struct_size } {
            0 => ours,
            n => n,
        };
        if size < ours {
            return Err(Error::invalid(format!(
                "out->struct_size is {size}, smaller than fm_metrics_t ({ours} bytes); set it \
                 to sizeof(fm_metrics_t)"
            )));
        }
        let lease = lease(rt, "rt", CALL_IN_FLIGHT)?;
        let far = lease.session().far();
        let m = far.metrics();
        let region = far.config().region_bytes as u64;
        let metrics = fm_metrics {
            struct_size: ours,
            local_bytes_used: m.total_regions.saturating_sub(m.free_regions) * region,
            local_bytes_budget: far.config().local_bytes as u64,
            bytes_fetched: m.bytes_fetched,
            bytes_written_back: m.bytes_written_back,
            misses: m.misses,
            hits: m.hits,
            prefetches_issued: m.prefetches_issued,
            evacuations: m.evacuated_regions,
        };
        // SAFETY: non-NULL and at least `ours` bytes long (checked above).
        unsafe { out.write(metrics) };
        Ok(())
    })
}
