//! Misuse of handles, scopes and buffers: each is `FM_INVALID_ARGUMENT` with a message naming
//! the function and the problem, never undefined behaviour.

use std::ffi::{c_int, c_void};

use super::*;
use crate::registry;
use crate::scope::ScopeObj;

const LOCAL: u64 = 256 << 10;

fn p<T>(v: &T) -> *const c_void {
    (v as *const T).cast()
}

fn pm<T>(v: &mut T) -> *mut c_void {
    (v as *mut T).cast()
}

#[test]
fn objects_null_stale_forged_and_wrong_type_handles_are_errors() {
    let rt = Rt::new(LOCAL);
    let s = scope(&rt);
    let mut v = 0u64;
    // SAFETY: (whole block) every pointer argument is valid or NULL; handles are any value.
    unsafe {
        let e = fails(
            fm_array_get(std::ptr::null_mut(), s, 0, pm(&mut v), 8),
            FM_INVALID_ARGUMENT,
            "`a` is NULL",
        );
        assert!(e.starts_with("invalid argument: fm_array_get: "), "{e}");
        let mut len = 0;
        fails(
            fm_vector_len(std::ptr::null(), &mut len),
            FM_INVALID_ARGUMENT,
            "`v` is NULL",
        );
        fails(
            fm_list_len(std::ptr::null(), &mut len),
            FM_INVALID_ARGUMENT,
            "`l` is NULL",
        );
        fails(
            fm_stack_len(std::ptr::null(), &mut len),
            FM_INVALID_ARGUMENT,
            "`s` is NULL",
        );
        fails(
            fm_queue_len(std::ptr::null(), &mut len),
            FM_INVALID_ARGUMENT,
            "`q` is NULL",
        );
        let mut n = 0u64;
        fails(
            fm_hashmap_len(std::ptr::null_mut(), &mut n),
            FM_INVALID_ARGUMENT,
            "`m` is NULL",
        );
        fails(
            fm_dataframe_rows(std::ptr::null(), &mut n),
            FM_INVALID_ARGUMENT,
            "`df` is NULL",
        );
        fails(
            fm_scope_renew(std::ptr::null_mut()),
            FM_INVALID_ARGUMENT,
            "`scope` is NULL",
        );
        fails(
            fm_task_join(std::ptr::null_mut(), std::ptr::null_mut()),
            FM_INVALID_ARGUMENT,
            "NULL",
        );
        let mut a = std::ptr::null_mut();
        fails(
            fm_array_create(std::ptr::null_mut(), 8, 10, &mut a),
            FM_INVALID_ARGUMENT,
            "`rt` is NULL",
        );
        // Every destroy accepts NULL.
        ok(fm_array_destroy(std::ptr::null_mut()));
        ok(fm_vector_destroy(std::ptr::null_mut()));
        ok(fm_list_destroy(std::ptr::null_mut()));
        ok(fm_stack_destroy(std::ptr::null_mut()));
        ok(fm_queue_destroy(std::ptr::null_mut()));
        ok(fm_hashmap_destroy(std::ptr::null_mut()));
        ok(fm_dataframe_destroy(std::ptr::null_mut()));
        ok(fm_runtime_destroy(std::ptr::null_mut()));

        // Destroyed and destroyed twice.
        ok(fm_array_create(rt.0, 8, 10, &mut a));
        ok(fm_array_destroy(a));
        fails(
            fm_array_destroy(a),
            FM_INVALID_ARGUMENT,
            "stale fm_array_t handle",
        );
        fails(
            fm_array_get(a, s, 0, pm(&mut v), 8),
            FM_INVALID_ARGUMENT,
            "stale fm_array_t",
        );

        // Forged.
        let forged = 0x0dea_dbee_usize as *mut fm_array_t;
        fails(
            fm_array_get(forged, s, 0, pm(&mut v), 8),
            FM_INVALID_ARGUMENT,
            "not a farmem handle",
        );

        // Wrong type: a vector handle passed as an array, a container passed as a scope, a
        // scope passed as a runtime.
        let mut vec = std::ptr::null_mut();
        ok(fm_vector_create(rt.0, 8, &mut vec));
        fails(
            fm_array_get(vec.cast(), s, 0, pm(&mut v), 8),
            FM_INVALID_ARGUMENT,
            "is an fm_vector_t handle, not an fm_array_t",
        );
        fails(
            fm_vector_push(vec, vec.cast(), p(&v), 8),
            FM_INVALID_ARGUMENT,
            "not an fm_scope_t",
        );
        fails(
            fm_vector_create(s.cast(), 8, &mut vec),
            FM_INVALID_ARGUMENT,
            "is an fm_scope_t handle, not an fm_runtime_t",
        );
        ok(fm_vector_destroy(vec));
    }
    end(s);
}

#[test]
fn objects_sizes_ranges_and_out_pointers_are_checked() {
    let rt = Rt::new(LOCAL);
    let s = scope(&rt);
    // SAFETY: (whole block) every pointer argument is valid or NULL; handles are any value.
    unsafe {
        let mut a = std::ptr::null_mut();
        fails(
            fm_array_create(rt.0, 0, 10, &mut a),
            FM_INVALID_ARGUMENT,
            "elem_size 0",
        );
        fails(
            fm_array_create(rt.0, 4097, 10, &mut a),
            FM_INVALID_ARGUMENT,
            "elem_size 4097",
        );
        fails(
            fm_array_create(rt.0, 8, 10, std::ptr::null_mut()),
            FM_INVALID_ARGUMENT,
            "`out` is NULL",
        );
        fails(
            fm_array_create(rt.0, 8, usize::MAX / 4, &mut a),
            FM_INVALID_ARGUMENT,
            "overflows the address space",
        );
        fails(
            fm_array_create(rt.0, 8, 1 << 30, &mut a),
            FM_OUT_OF_FAR_MEMORY,
            "more than the embedded server's far_bytes",
        );
        ok(fm_array_create(rt.0, 8, 10, &mut a));
        let mut v = 0u64;
        fails(
            fm_array_get(a, s, 0, pm(&mut v), 4),
            FM_INVALID_ARGUMENT,
            "`elem_size` is 4 but this fm_array_t holds elements of 8 bytes",
        );
        fails(
            fm_array_get(a, s, 10, pm(&mut v), 8),
            FM_INVALID_ARGUMENT,
            "index 10 out of bounds",
        );
        fails(
            fm_array_set(a, s, 99, p(&v), 8),
            FM_INVALID_ARGUMENT,
            "out of bounds",
        );
        fails(
            fm_array_get(a, s, 0, std::ptr::null_mut(), 8),
            FM_INVALID_ARGUMENT,
            "`out` is NULL",
        );
        fails(
            fm_array_set(a, s, 0, std::ptr::null(), 8),
            FM_INVALID_ARGUMENT,
            "`value` is NULL",
        );
        let mut buf = [0u64; 4];
        fails(
            fm_array_read(a, s, 8, 4, buf.as_mut_ptr().cast(), 8),
            FM_INVALID_ARGUMENT,
            "out of bounds for an array of length 10",
        );
        fails(
            fm_array_write(a, s, usize::MAX, 2, buf.as_ptr().cast(), 8),
            FM_INVALID_ARGUMENT,
            "out of bounds",
        );
        fails(
            fm_array_read(a, s, 0, usize::MAX, buf.as_mut_ptr().cast(), 8),
            FM_INVALID_ARGUMENT,
            "overflow",
        );
        let mut len = 0;
        fails(
            fm_array_len(a, std::ptr::null_mut()),
            FM_INVALID_ARGUMENT,
            "`out` is NULL",
        );
        ok(fm_array_len(a, &mut len));
        ok(fm_array_destroy(a));

        let mut l = std::ptr::null_mut();
        ok(fm_list_create(rt.0, 4, &mut l));
        let x = 1u32;
        fails(
            fm_list_insert(l, s, 1, p(&x), 4),
            FM_INVALID_ARGUMENT,
            "index 1 out of bounds",
        );
        let mut popped: c_int = 0;
        fails(
            fm_list_pop_back(l, s, pm(&mut v), 4, std::ptr::null_mut()),
            FM_INVALID_ARGUMENT,
            "`popped` is NULL",
        );
        ok(fm_list_pop_back(l, s, pm(&mut v), 4, &mut popped));
        assert_eq!(popped, 0);
        ok(fm_list_destroy(l));

        let mut st = std::ptr::null_mut();
        ok(fm_stack_create(rt.0, 8, &mut st));
        fails(
            fm_stack_push(st, p(&v), 16),
            FM_INVALID_ARGUMENT,
            "holds elements of 8 bytes",
        );
        ok(fm_stack_destroy(st));

        let mut m = std::ptr::null_mut();
        fails(
            fm_hashmap_create(rt.0, 0, 8, 0, &mut m),
            FM_INVALID_ARGUMENT,
            "`key_size` 0",
        );
        ok(fm_hashmap_create(rt.0, 8, 8, 0, &mut m));
        let mut found: c_int = 0;
        fails(
            fm_hashmap_get(m, p(&v), 8, pm(&mut v), 4, &mut found),
            FM_INVALID_ARGUMENT,
            "`value_size` is 4 but this fm_hashmap_t was created with 8",
        );
        fails(
            fm_hashmap_remove(m, p(&v), 2, std::ptr::null_mut()),
            FM_INVALID_ARGUMENT,
            "`key_size` is 2",
        );
        ok(fm_hashmap_destroy(m));
    }
    end(s);
}

#[test]
fn objects_scope_after_end_from_another_thread_or_runtime_is_refused() {
    let rt = Rt::new(LOCAL);
    // SAFETY: (whole block) every pointer argument is valid or NULL; handles are any value.
    unsafe {
        let mut a = std::ptr::null_mut();
        ok(fm_array_create(rt.0, 8, 16, &mut a));
        let mut v = 0u64;

        let s = scope(&rt);
        end(s);
        fails(
            fm_array_get(a, s, 0, pm(&mut v), 8),
            FM_INVALID_ARGUMENT,
            "stale fm_scope_t",
        );
        fails(fm_scope_renew(s), FM_INVALID_ARGUMENT, "stale fm_scope_t");
        fails(fm_scope_end(s), FM_INVALID_ARGUMENT, "stale fm_scope_t");

        // Another OS thread may neither use nor end it; the scope stays valid here.
        let s = scope(&rt);
        let (sh, ah) = (s as usize, a as usize);
        let msgs = std::thread::spawn(move || {
            let mut v = 0u64;
            // (Inside the outer unsafe block: live handles, a valid out-pointer.)
            let get = fm_array_get(ah as *mut _, sh as *mut _, 0, pm(&mut v), 8);
            let get = (get, last_error());
            let end = fm_scope_end(sh as *mut _);
            (get, (end, last_error()))
        })
        .join()
        .unwrap();
        for (status, msg) in [msgs.0, msgs.1] {
            assert_eq!(status, FM_INVALID_ARGUMENT);
            assert!(msg.contains("was opened on thread"), "{msg}");
        }
        ok(fm_array_get(a, s, 0, pm(&mut v), 8));

        // A scope of another runtime does not protect this runtime's chunks.
        let other = Rt::new(LOCAL);
        let so = scope(&other);
        fails(
            fm_array_get(a, so, 0, pm(&mut v), 8),
            FM_INVALID_ARGUMENT,
            "belongs to another runtime",
        );
        end(so);
        drop(other);

        // A scope in use by a call (another green thread of this worker) is refused, not
        // deadlocked on.
        let obj = registry::get::<ScopeObj>(s as usize, "s").unwrap();
        let nested = obj.use_scope(None, |_| Ok(fm_scope_renew(s))).unwrap();
        fails(nested, FM_INVALID_ARGUMENT, "in use by another call");
        drop(obj);
        end(s);
        ok(fm_array_destroy(a));
    }
}

#[test]
fn objects_runtime_destroy_waits_for_every_handle_and_names_them() {
    let rt = Rt::new(LOCAL);
    // SAFETY: (whole block) every pointer argument is valid or NULL; handles are any value.
    unsafe {
        let (mut a, mut b, mut q) = (
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        ok(fm_array_create(rt.0, 8, 16, &mut a));
        ok(fm_array_create(rt.0, 8, 16, &mut b));
        ok(fm_queue_create(rt.0, 8, &mut q));
        let s = scope(&rt);
        fails(
            fm_runtime_destroy(rt.0),
            FM_INVALID_ARGUMENT,
            "4 handles or calls still use this runtime (2 fm_array_t, 1 fm_queue_t, 1 fm_scope_t)",
        );
        // Still usable after the refusal.
        let v = 42u64;
        ok(fm_array_set(a, s, 3, p(&v), 8));
        ok(fm_array_destroy(a));
        ok(fm_array_destroy(b));
        ok(fm_queue_destroy(q));
        fails(
            fm_runtime_destroy(rt.0),
            FM_INVALID_ARGUMENT,
            "(1 fm_scope_t)",
        );
        end(s);
    }
    // `Rt::drop` destroys it now, and checks FM_OK.
    let h = rt.0;
    drop(rt);
    // SAFETY: any handle value is allowed.
    fails(
        unsafe { fm_runtime_destroy(h) },
        FM_INVALID_ARGUMENT,
        "stale fm_runtime_t handle",
    );
}

#[test]
fn objects_config_and_metrics_struct_sizes_are_checked() {
    // SAFETY: (whole block) valid pointers.
    unsafe {
        let mut cfg = std::mem::zeroed::<fm_config_t>();
        let mut rt = std::ptr::null_mut();
        fails(
            fm_runtime_create(&cfg, &mut rt),
            FM_INVALID_ARGUMENT,
            "call fm_config_init",
        );
        fm_config_init(&mut cfg);
        assert_eq!(cfg.struct_size, std::mem::size_of::<fm_config_t>());
        cfg.local_bytes = 1000;
        fails(
            fm_runtime_create(&cfg, &mut rt),
            FM_INVALID_ARGUMENT,
            "local_bytes",
        );
        cfg.local_bytes = LOCAL;
        cfg.chunk_bytes = 3000;
        fails(
            fm_runtime_create(&cfg, &mut rt),
            FM_INVALID_ARGUMENT,
            "chunk_bytes",
        );
        cfg.chunk_bytes = 0;
        cfg.server = c"127.0.0.1:1".as_ptr();
        fails(
            fm_runtime_create(&cfg, &mut rt),
            FM_INVALID_ARGUMENT,
            "token",
        );
        assert!(rt.is_null(), "no handle on failure");
    }
    let rt = Rt::new(LOCAL);
    // SAFETY: valid pointers.
    unsafe {
        let mut m = fm_metrics_t {
            struct_size: 8,
            ..fm_metrics_t::default()
        };
        fails(
            fm_runtime_metrics(rt.0, &mut m),
            FM_INVALID_ARGUMENT,
            "out->struct_size is 8",
        );
        m.struct_size = 0;
        ok(fm_runtime_metrics(rt.0, &mut m));
        assert_eq!(m.struct_size, std::mem::size_of::<fm_metrics_t>());
        fails(
            fm_runtime_metrics(rt.0, std::ptr::null_mut()),
            FM_INVALID_ARGUMENT,
            "`out` is NULL",
        );
    }
}
