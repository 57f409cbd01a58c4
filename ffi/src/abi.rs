//! The C-visible types and constants of `include/farmem.h`, spelled exactly as C spells them.
//!
//! The names are C's on purpose: the drift test (`drift.rs`) compiles bindgen's reading of the
//! header against these items by name, so a struct field, a constant or a typedef that differs
//! between the header and this file fails the test build. Opaque handle types are zero-sized
//! `#[repr(C)]` structs that are never instantiated: a handle is a registry token cast to a
//! pointer, never dereferenced (see `registry.rs`).

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

/// A status code: [`FM_OK`] or an `ErrorKind` discriminant.
pub type fm_status_t = u32;

/// Success.
pub const FM_OK: u32 = 0;
/// `ErrorKind::InvalidArgument`.
pub const FM_INVALID_ARGUMENT: u32 = 1;
/// `ErrorKind::OutOfLocalMemory`.
pub const FM_OUT_OF_LOCAL_MEMORY: u32 = 2;
/// `ErrorKind::OutOfFarMemory`.
pub const FM_OUT_OF_FAR_MEMORY: u32 = 3;
/// `ErrorKind::OutOfDeviceMemory`.
pub const FM_OUT_OF_DEVICE_MEMORY: u32 = 4;
/// `ErrorKind::Unsupported`.
pub const FM_UNSUPPORTED: u32 = 5;
/// `ErrorKind::Io`.
pub const FM_IO: u32 = 6;
/// `ErrorKind::Protocol`.
pub const FM_PROTOCOL: u32 = 7;
/// `ErrorKind::Auth`.
pub const FM_AUTH: u32 = 8;
/// `ErrorKind::ServerError`.
pub const FM_SERVER_ERROR: u32 = 9;
/// `ErrorKind::Disconnected`.
pub const FM_DISCONNECTED: u32 = 10;
/// `ErrorKind::Timeout`.
pub const FM_TIMEOUT: u32 = 11;
/// `ErrorKind::NotFound`.
pub const FM_NOT_FOUND: u32 = 12;
/// `ErrorKind::Closed`.
pub const FM_CLOSED: u32 = 13;
/// `ErrorKind::Panicked`.
pub const FM_PANICKED: u32 = 14;
/// `ErrorKind::Parse`.
pub const FM_PARSE: u32 = 15;
/// `ErrorKind::Internal`.
pub const FM_INTERNAL: u32 = 16;
/// The version of the C ABI this library implements.
pub const FM_ABI_VERSION: u32 = 1;
/// The largest element, key or value size, bytes.
pub const FM_ELEM_SIZE_MAX: u32 = 4096;

macro_rules! opaque_handles {
    ($($(#[$doc:meta])* $name:ident => $alias:ident;)*) => { $(
        $(#[$doc])*
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
        $(#[$doc])*
        pub type $alias = $name;
    )* };
}

opaque_handles! {
    /// A runtime handle (`fm_runtime_t *`).
    fm_runtime => fm_runtime_t;
    /// A green-thread task handle (`fm_task_t *`).
    fm_task => fm_task_t;
    /// A dereference-scope handle (`fm_scope_t *`).
    fm_scope => fm_scope_t;
    /// A far-memory array handle (`fm_array_t *`).
    fm_array => fm_array_t;
    /// A far-memory vector handle (`fm_vector_t *`).
    fm_vector => fm_vector_t;
    /// A far-memory list handle (`fm_list_t *`).
    fm_list => fm_list_t;
    /// A far-memory stack handle (`fm_stack_t *`).
    fm_stack => fm_stack_t;
    /// A far-memory queue handle (`fm_queue_t *`).
    fm_queue => fm_queue_t;
    /// A far-memory hash-map handle (`fm_hashmap_t *`).
    fm_hashmap => fm_hashmap_t;
    /// A far-memory DataFrame handle (`fm_dataframe_t *`).
    fm_dataframe => fm_dataframe_t;
}

/// `fm_config_t`: how to start a runtime (zero fields mean defaults).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct fm_config {
    /// `sizeof(fm_config_t)` as the caller compiled it.
    pub struct_size: usize,
    /// Local memory budget, bytes.
    pub local_bytes: u64,
    /// Embedded server capacity, bytes.
    pub far_bytes: u64,
    /// `host:port` of a memory server, or a comma-separated list of them (far memory is spread
    /// over them), or NULL for the embedded server.
    pub server: *const c_char,
    /// The servers' cluster token, or NULL; without `server` it becomes the embedded server's
    /// token (so other runtimes can share that server).
    pub token: *const c_char,
    /// TCP connections to the server.
    pub connections: u32,
    /// Worker OS threads.
    pub workers: u32,
    /// Far-memory chunk size, bytes.
    pub chunk_bytes: u64,
    // ---- appended in the second version (read only when `struct_size` covers them) ----
    /// How long a write waits for the evacuator before `FM_OUT_OF_LOCAL_MEMORY`, ms.
    pub alloc_wait_ms: u64,
    /// Evacuator threads.
    pub evacuator_threads: u32,
}
/// `fm_config_t`.
pub type fm_config_t = fm_config;

/// `fm_task_fn`: a green thread's body.
pub type fm_task_fn = Option<unsafe extern "C" fn(arg: *mut c_void) -> c_int>;

/// `fm_metrics_t`: a snapshot of far-memory counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct fm_metrics {
    /// In: the caller's `sizeof(fm_metrics_t)` (0 = this one); out: bytes written.
    pub struct_size: usize,
    /// Local memory in use (regions not free), bytes.
    pub local_bytes_used: u64,
    /// The local budget, bytes.
    pub local_bytes_budget: u64,
    /// Bytes read from the memory server.
    pub bytes_fetched: u64,
    /// Bytes written to the memory server.
    pub bytes_written_back: u64,
    /// Dereferences that had to fetch.
    pub misses: u64,
    /// Dereferences served locally.
    pub hits: u64,
    /// Chunks prefetched.
    pub prefetches_issued: u64,
    /// Regions the evacuator freed.
    pub evacuations: u64,
}
/// `fm_metrics_t`.
pub type fm_metrics_t = fm_metrics;

/// `fm_count_pair_t`: one histogram bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct fm_count_pair {
    /// The bucket's key.
    pub key: u64,
    /// Rows in it.
    pub count: u64,
}
/// `fm_count_pair_t`.
pub type fm_count_pair_t = fm_count_pair;

/// `fm_key_median_t`: one group's median.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct fm_key_median {
    /// The group key.
    pub key: u64,
    /// Its median.
    pub median: f64,
}
/// `fm_key_median_t`.
pub type fm_key_median_t = fm_key_median;

/// `fm_duration_stats_t`: taxi step 4.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct fm_duration_stats {
    /// Longest trip, seconds.
    pub max: i64,
    /// Shortest trip, seconds.
    pub min: i64,
    /// Mean trip, seconds.
    pub mean: f64,
    /// 0 for an empty frame.
    pub has_values: c_int,
}
/// `fm_duration_stats_t`.
pub type fm_duration_stats_t = fm_duration_stats;

/// `fm_store_and_forward_t`: taxi step 5.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct fm_store_and_forward {
    /// Rows in the frame.
    pub rows: u64,
    /// Rows with flag N.
    pub n_rows: u64,
    /// `n_rows / rows`.
    pub n_share: f64,
}
/// `fm_store_and_forward_t`.
pub type fm_store_and_forward_t = fm_store_and_forward;

/// `fm_pickup_row_t`: one row of taxi step 7's preview.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct fm_pickup_row {
    /// Pickup time, seconds since the epoch.
    pub pickup: i64,
    /// Hour of day, 0..=23.
    pub hour: u8,
    /// Day of week, 0 = Sunday.
    pub day: u8,
    /// Month, 1..=12.
    pub month: u8,
}
/// `fm_pickup_row_t`.
pub type fm_pickup_row_t = fm_pickup_row;
