//! Unit tests that call the exported `extern "C"` functions directly, as C would.
//!
//! Files by subsystem: `objects_*` (scopes and containers), `runtime_*` (runtime lifetime,
//! green threads, metrics, the panic boundary), `dataframe_*` (the taxi steps).

use std::ffi::CStr;

use crate::*;

mod dataframe_taxi;
mod objects_containers;
mod objects_misuse;
mod runtime_config;
mod runtime_tasks;

/// This thread's last error message.
pub(crate) fn last_error() -> String {
    // SAFETY: fm_last_error returns a NUL-terminated string valid until the next failure here.
    unsafe { CStr::from_ptr(fm_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Asserts `FM_OK`, showing the message otherwise.
#[track_caller]
pub(crate) fn ok(status: fm_status_t) {
    assert_eq!(status, FM_OK, "expected FM_OK: {}", last_error());
}

/// Asserts the call failed with `want` and a message containing `needle`; returns the message.
#[track_caller]
pub(crate) fn fails(status: fm_status_t, want: fm_status_t, needle: &str) -> String {
    let msg = last_error();
    assert_eq!(status, want, "status (message: {msg})");
    assert!(
        msg.contains(needle),
        "message {msg:?} should contain {needle:?}"
    );
    msg
}

/// A runtime destroyed (and checked) on drop.
pub(crate) struct Rt(pub(crate) *mut fm_runtime_t);

impl Rt {
    /// A runtime with `local_bytes` of local memory, a 256 MiB embedded server, 2 workers.
    pub(crate) fn new(local_bytes: u64) -> Rt {
        let mut cfg = std::mem::MaybeUninit::<fm_config_t>::uninit();
        // SAFETY: fm_config_init writes the whole struct.
        let mut cfg = unsafe {
            fm_config_init(cfg.as_mut_ptr());
            cfg.assume_init()
        };
        cfg.local_bytes = local_bytes;
        cfg.far_bytes = 256 << 20;
        cfg.workers = 2;
        let mut rt = std::ptr::null_mut();
        // SAFETY: valid config and out-pointer.
        ok(unsafe { fm_runtime_create(&cfg, &mut rt) });
        Rt(rt)
    }

    /// The far-memory counters.
    pub(crate) fn metrics(&self) -> fm_metrics_t {
        let mut m = fm_metrics_t {
            struct_size: std::mem::size_of::<fm_metrics_t>(),
            ..fm_metrics_t::default()
        };
        // SAFETY: a valid out-pointer.
        ok(unsafe { fm_runtime_metrics(self.0, &mut m) });
        m
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        // SAFETY: any handle value is allowed.
        let status = unsafe { fm_runtime_destroy(self.0) };
        if !std::thread::panicking() {
            ok(status);
        }
    }
}

/// A scope on `rt`, opened on the calling thread.
pub(crate) fn scope(rt: &Rt) -> *mut fm_scope_t {
    let mut s = std::ptr::null_mut();
    // SAFETY: a valid out-pointer.
    ok(unsafe { fm_scope_begin(rt.0, &mut s) });
    s
}

/// Ends scope `s`.
pub(crate) fn end(s: *mut fm_scope_t) {
    // SAFETY: any handle value is allowed.
    ok(unsafe { fm_scope_end(s) });
}

/// A path in the temp directory unique to this process and `name`.
pub(crate) fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("farmem-ffi-{}-{name}", std::process::id()))
}
