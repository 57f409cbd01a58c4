//! Green threads from C, the panic boundary, status names and the last-error message.

use std::ffi::{c_int, c_void, CStr};

use super::*;
use crate::boundary::ffi_call;
use crate::tasks::{join_task, spawn_closure};

const LOCAL: u64 = 256 << 10;

/// What C tasks below share: the runtime and an array to fill.
struct Job {
    rt: *mut fm_runtime_t,
    a: *mut fm_array_t,
    from: usize,
    to: usize,
}

/// A C task: fills `a[from..to]` with `i * i` in its own scope, returns the count written, or
/// -1 on failure.
unsafe extern "C" fn fill(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is a `Job` the spawner keeps alive until the task is joined.
    let job = unsafe { &*(arg as *const Job) };
    let mut s = std::ptr::null_mut();
    // SAFETY: valid handles and pointers (this and the calls below).
    if unsafe { fm_scope_begin(job.rt, &mut s) } != FM_OK {
        return -1;
    }
    for i in job.from..job.to {
        let v = (i * i) as u64;
        // SAFETY: as above.
        if unsafe { fm_array_set(job.a, s, i, (&v as *const u64).cast(), 8) } != FM_OK {
            return -1;
        }
        if i % 256 == 0 {
            fm_yield();
        }
    }
    // SAFETY: as above.
    if unsafe { fm_scope_end(s) } != FM_OK {
        return -1;
    }
    (job.to - job.from) as c_int
}

/// A C task that spawns four `fill` tasks on its own runtime (rt = NULL), joins them and
/// returns the sum of their results.
unsafe extern "C" fn fan_out(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is a `Job` covering the whole array, alive until fm_runtime_run returns.
    let whole = unsafe { &*(arg as *const Job) };
    let quarter = (whole.to - whole.from) / 4;
    let jobs: Vec<Job> = (0..4)
        .map(|k| Job {
            rt: whole.rt,
            a: whole.a,
            from: whole.from + k * quarter,
            to: whole.from + (k + 1) * quarter,
        })
        .collect();
    let mut tasks = Vec::new();
    for job in &jobs {
        let mut t = std::ptr::null_mut();
        // SAFETY: `job` outlives the join below.
        let st = unsafe {
            fm_spawn(
                std::ptr::null_mut(),
                Some(fill),
                (job as *const Job).cast_mut().cast(),
                &mut t,
            )
        };
        if st != FM_OK {
            return -1;
        }
        tasks.push(t);
    }
    // Sleeping parks only this green thread.
    if fm_sleep_us(100) != FM_OK {
        return -1;
    }
    let mut total = 0;
    for t in tasks {
        let mut r: c_int = 0;
        // SAFETY: a task handle from fm_spawn, joined once.
        if unsafe { fm_task_join(t, &mut r) } != FM_OK || r < 0 {
            return -1;
        }
        total += r;
    }
    total
}

unsafe extern "C" fn answer(arg: *mut c_void) -> c_int {
    42 + arg as usize as c_int
}

unsafe extern "C" fn destroy_from_green_thread(arg: *mut c_void) -> c_int {
    // SAFETY: any handle value is allowed.
    let st = unsafe { fm_runtime_destroy(arg.cast()) };
    let msg = last_error();
    c_int::from(st == FM_INVALID_ARGUMENT && msg.contains("from a green thread"))
}

#[test]
fn runtime_green_threads_run_spawn_and_join_c_tasks() {
    let rt = Rt::new(LOCAL);
    let n = 64 * 1024;
    let mut a = std::ptr::null_mut();
    // SAFETY: (whole block) valid handles and pointers; every `Job` outlives its tasks.
    unsafe {
        ok(fm_array_create(rt.0, 8, n, &mut a));
        let whole = Job {
            rt: rt.0,
            a,
            from: 0,
            to: n,
        };
        let mut result: c_int = 0;
        ok(fm_runtime_run(
            rt.0,
            Some(fan_out),
            (&whole as *const Job).cast_mut().cast(),
            &mut result,
        ));
        assert_eq!(result, n as c_int);
        // Tasks spawned from an OS thread on an explicit runtime.
        let job = Job {
            rt: rt.0,
            a,
            from: 0,
            to: 1000,
        };
        let mut t = std::ptr::null_mut();
        ok(fm_spawn(
            rt.0,
            Some(fill),
            (&job as *const Job).cast_mut().cast(),
            &mut t,
        ));
        ok(fm_task_join(t, &mut result));
        assert_eq!(result, 1000);
        fails(
            fm_task_join(t, &mut result),
            FM_INVALID_ARGUMENT,
            "stale fm_task_t handle",
        );
        // The array holds what the green threads wrote.
        let s = scope(&rt);
        let mut back = vec![0u64; n];
        ok(fm_array_read(a, s, 0, n, back.as_mut_ptr().cast(), 8));
        end(s);
        assert!(back.iter().enumerate().all(|(i, &v)| v == (i * i) as u64));
        ok(fm_array_destroy(a));
        // Result pointer may be NULL; arguments pass through.
        ok(fm_runtime_run(
            rt.0,
            Some(answer),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        ));
        ok(fm_runtime_run(
            rt.0,
            Some(answer),
            8usize as *mut c_void,
            &mut result,
        ));
        assert_eq!(result, 50);
        // Misuse.
        fails(
            fm_runtime_run(rt.0, None, std::ptr::null_mut(), &mut result),
            FM_INVALID_ARGUMENT,
            "`fn` is NULL",
        );
        fails(
            fm_spawn(
                std::ptr::null_mut(),
                Some(answer),
                std::ptr::null_mut(),
                &mut t,
            ),
            FM_INVALID_ARGUMENT,
            "not a farmem green thread",
        );
        ok(fm_runtime_run(
            rt.0,
            Some(destroy_from_green_thread),
            rt.0.cast(),
            &mut result,
        ));
        assert_eq!(result, 1, "destroy from a green thread must be refused");
        ok(fm_sleep_us(10));
        fm_yield();
    }
}

#[test]
fn runtime_unjoined_tasks_hold_the_runtime_and_panics_reach_join() {
    let rt = Rt::new(LOCAL);
    // SAFETY: (whole block) valid handles and pointers.
    unsafe {
        // A Rust-side panic in a task (a C function cannot panic) is FM_PANICKED at join.
        let t = spawn_closure(rt.0, || panic!("task exploded")).unwrap() as *mut fm_task_t;
        fails(
            fm_runtime_destroy(rt.0),
            FM_INVALID_ARGUMENT,
            "(1 fm_task_t)",
        );
        let mut r: c_int = 0;
        fails(fm_task_join(t, &mut r), FM_PANICKED, "task exploded");
        // The join consumed the handle even though it failed.
        assert!(join_task(t).is_err());
        let t = spawn_closure(rt.0, || 7).unwrap() as *mut fm_task_t;
        ok(fm_task_join(t, &mut r));
        assert_eq!(r, 7);
    }
}

#[test]
fn runtime_panic_boundary_turns_panics_into_fm_panicked() {
    let st = ffi_call("fm_test_call", || panic!("boom {}", 7));
    let msg = fails(st, FM_PANICKED, "fm_test_call: panicked: boom 7");
    assert!(msg.starts_with("panicked: "), "{msg}");
    // The message stays until the next failure on this thread; a success leaves it.
    ok(ffi_call("fm_test_ok", || Ok(())));
    assert_eq!(last_error(), msg);
    // A failure elsewhere does not touch this thread's message.
    std::thread::spawn(|| ffi_call("x", || Err(fm::Error::invalid("other thread"))))
        .join()
        .unwrap();
    assert_eq!(last_error(), msg);
}

#[test]
fn runtime_status_names_and_abi_version() {
    let name = |s| {
        // SAFETY: fm_status_str returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(fm_status_str(s)) }
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(name(FM_OK), "FM_OK");
    assert_eq!(name(FM_OUT_OF_FAR_MEMORY), "FM_OUT_OF_FAR_MEMORY");
    assert_eq!(name(9999), "FM_UNKNOWN");
    // Every ErrorKind has its own name, and the codes agree with farmem_error.
    for kind in fm::ErrorKind::ALL {
        let n = name(kind.code());
        assert!(n.starts_with("FM_") && n != "FM_UNKNOWN", "{kind:?} -> {n}");
        let words: String = kind.as_str().to_uppercase().replace([' ', '/'], "_");
        let expected = match kind {
            fm::ErrorKind::Io => "FM_IO".to_string(),
            fm::ErrorKind::Protocol => "FM_PROTOCOL".to_string(),
            fm::ErrorKind::Auth => "FM_AUTH".to_string(),
            fm::ErrorKind::Timeout => "FM_TIMEOUT".to_string(),
            fm::ErrorKind::Parse => "FM_PARSE".to_string(),
            fm::ErrorKind::Internal => "FM_INTERNAL".to_string(),
            fm::ErrorKind::ServerError => "FM_SERVER_ERROR".to_string(),
            fm::ErrorKind::Panicked => "FM_PANICKED".to_string(),
            _ => format!("FM_{words}"),
        };
        assert_eq!(n, expected, "{kind:?}");
    }
    assert_eq!(fm_abi_version(), FM_ABI_VERSION);
}

#[test]
fn runtime_destroy_racing_with_creators_never_frees_a_live_container() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let rt = Rt::new(LOCAL);
    let rth = rt.0 as usize;
    let progress = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let progress = progress.clone();
            std::thread::spawn(move || {
                for i in 0..100_000u64 {
                    let mut a = std::ptr::null_mut();
                    // SAFETY: (whole block) a runtime handle that may be destroyed meanwhile
                    // (any value is allowed), valid out-pointers and values.
                    unsafe {
                        let st = fm_array_create(rth as *mut fm_runtime_t, 8, 64, &mut a);
                        if st != FM_OK {
                            // Only a destroyed runtime may refuse.
                            let msg = last_error();
                            assert!(msg.contains("stale fm_runtime_t"), "thread {t}: {msg}");
                            return;
                        }
                        // A container that exists keeps its runtime: using it must work.
                        let mut s = std::ptr::null_mut();
                        ok(fm_scope_begin(rth as *mut fm_runtime_t, &mut s));
                        ok(fm_array_set(
                            a,
                            s,
                            (i % 64) as usize,
                            (&i as *const u64).cast(),
                            8,
                        ));
                        ok(fm_scope_end(s));
                        ok(fm_array_destroy(a));
                    }
                    progress.fetch_add(1, Ordering::Relaxed);
                    // Gaps between uses, so that the destroyer finds one soon.
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
                panic!("thread {t}: the runtime was never destroyed");
            })
        })
        .collect();
    // Once they are all busy, keep trying to destroy it: it succeeds only between their uses.
    while progress.load(Ordering::Relaxed) < 300 {
        std::thread::yield_now();
    }
    loop {
        // SAFETY: any handle value is allowed.
        let st = unsafe { fm_runtime_destroy(rt.0) };
        if st == FM_OK {
            break;
        }
        assert_eq!(st, FM_INVALID_ARGUMENT, "{}", last_error());
        assert!(
            last_error().contains("still use this runtime"),
            "{}",
            last_error()
        );
        std::thread::yield_now();
    }
    for w in workers {
        w.join().unwrap();
    }
    // Already destroyed: forget the guard instead of destroying twice.
    std::mem::forget(rt);
}
