//! `fm_config_t` versioning: the version-2 knobs reach the session, and a caller built against
//! the first, shorter struct keeps working without the library reading past its end.

use std::time::Duration;

use super::*;
use crate::runtime::{lease, CONFIG_V1_SIZE};

const LOCAL: u64 = 256 << 10;

/// The session config of a live runtime.
fn session_config_of(rt: *mut fm_runtime_t) -> fm::SessionConfig {
    let lease = lease(rt, "rt", "test").unwrap();
    lease.session().config().clone()
}

fn defaults() -> fm_config_t {
    let mut cfg = std::mem::MaybeUninit::<fm_config_t>::uninit();
    // SAFETY: fm_config_init writes the whole struct.
    unsafe {
        fm_config_init(cfg.as_mut_ptr());
        cfg.assume_init()
    }
}

/// Creates a runtime from `cfg` as given (its `struct_size` included).
///
/// # Safety
/// `cfg` is valid for reads of `cfg->struct_size` bytes.
unsafe fn create(cfg: *const fm_config_t) -> Result<Rt, (fm_status_t, String)> {
    let mut rt = std::ptr::null_mut();
    // SAFETY: the caller's promise on `cfg`; a valid out-pointer.
    match unsafe { fm_runtime_create(cfg, &mut rt) } {
        FM_OK => Ok(Rt(rt)),
        st => Err((st, last_error())),
    }
}

#[test]
fn runtime_config_alloc_wait_and_evacuator_threads_reach_the_session() {
    let mut cfg = defaults();
    assert_eq!((cfg.alloc_wait_ms, cfg.evacuator_threads), (0, 0));
    cfg.local_bytes = LOCAL;
    cfg.far_bytes = 64 << 20;
    cfg.workers = 1;
    // SAFETY: a whole struct of this version.
    let rt = unsafe { create(&cfg) }.unwrap();
    let got = session_config_of(rt.0);
    let want = fm::SessionConfig::default();
    assert_eq!(got.alloc_wait, want.alloc_wait, "0 takes the default");
    assert_eq!(got.alloc_wait, Duration::from_secs(2));
    assert_eq!(got.evacuator_threads, want.evacuator_threads);
    drop(rt);

    cfg.alloc_wait_ms = 5_000;
    cfg.evacuator_threads = 2;
    // SAFETY: as above.
    let rt = unsafe { create(&cfg) }.unwrap();
    let got = session_config_of(rt.0);
    assert_eq!(got.alloc_wait, Duration::from_millis(5_000));
    assert_eq!(got.evacuator_threads, 2);
    drop(rt);

    cfg.evacuator_threads = 65;
    // SAFETY: as above.
    let (st, msg) = unsafe { create(&cfg) }
        .err()
        .expect("65 evacuator threads were accepted");
    assert_eq!(st, FM_INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("evacuator_threads 65"), "{msg}");
}

/// The first version of `fm_config_t`, as an old header declared it.
#[repr(C)]
#[derive(Clone, Copy)]
struct ConfigV1 {
    struct_size: usize,
    local_bytes: u64,
    far_bytes: u64,
    server: *const std::ffi::c_char,
    token: *const std::ffi::c_char,
    connections: u32,
    workers: u32,
    chunk_bytes: u64,
}

/// An old caller's struct followed by bytes that would be absurd as version-2 fields.
#[repr(C)]
struct OldCallerMemory {
    cfg: ConfigV1,
    after: [u8; 32],
}

#[test]
fn runtime_config_of_the_first_version_is_read_only_up_to_its_size() {
    assert_eq!(std::mem::size_of::<ConfigV1>(), CONFIG_V1_SIZE);
    assert!(CONFIG_V1_SIZE < std::mem::size_of::<fm_config_t>());
    let old = OldCallerMemory {
        cfg: ConfigV1 {
            struct_size: std::mem::size_of::<ConfigV1>(),
            local_bytes: LOCAL,
            far_bytes: 64 << 20,
            server: std::ptr::null(),
            token: std::ptr::null(),
            connections: 0,
            workers: 1,
            chunk_bytes: 0,
        },
        // Read as alloc_wait_ms and evacuator_threads these would be ~584 million years and
        // 4 billion threads (rejected): the runtime must not see them.
        after: [0xff; 32],
    };
    // SAFETY: `struct_size` bytes (and more) are readable.
    let rt = unsafe { create((&old as *const OldCallerMemory).cast()) }.unwrap();
    let got = session_config_of(rt.0);
    assert_eq!(got.local_bytes, LOCAL as usize);
    assert_eq!(got.workers, 1);
    assert_eq!(got.alloc_wait, fm::SessionConfig::default().alloc_wait);
    assert_eq!(got.evacuator_threads, 1);
    drop(rt);

    // The same bytes with a version-2 size do reach the new fields (so the test above could
    // fail): 0xff.. threads are rejected.
    let mut bigger = OldCallerMemory {
        cfg: old.cfg,
        after: [0xff; 32],
    };
    bigger.cfg.struct_size = std::mem::size_of::<fm_config_t>();
    // SAFETY: `size_of::<fm_config_t>()` bytes are readable (the struct plus 32 bytes).
    let (st, msg) = unsafe { create((&bigger as *const OldCallerMemory).cast()) }
        .err()
        .expect("the version-2 fields were not read");
    assert_eq!(st, FM_INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("evacuator_threads"), "{msg}");

    // A size that ends inside alloc_wait_ms reads it as the default, not half of it.
    bigger.cfg.struct_size = CONFIG_V1_SIZE + 4;
    // SAFETY: as above.
    let rt = unsafe { create((&bigger as *const OldCallerMemory).cast()) }.unwrap();
    let got = session_config_of(rt.0);
    assert_eq!(got.alloc_wait, fm::SessionConfig::default().alloc_wait);
    assert_eq!(got.evacuator_threads, 1);
    drop(rt);

    // Below the first version: refused.
    bigger.cfg.struct_size = CONFIG_V1_SIZE - 8;
    // SAFETY: as above.
    let (st, msg) = unsafe { create((&bigger as *const OldCallerMemory).cast()) }
        .err()
        .expect("a struct shorter than version 1 was accepted");
    assert_eq!(st, FM_INVALID_ARGUMENT);
    assert!(
        msg.contains(&format!("cfg->struct_size is {}", CONFIG_V1_SIZE - 8)),
        "{msg}"
    );
}
