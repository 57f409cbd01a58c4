//! When no stack can be mapped, the green thread is not started and its handle reports
//! `OutOfLocalMemory` with the remedy, instead of a panic or UB. (Alone in its own test binary
//! because it lowers the process's address-space limit.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use farmem_sched::{ErrorKind, Runtime};

fn vm_size_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

fn set_as_limit(bytes: u64) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is a valid rlimit to write into.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut old) }, 0);
    let new = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: old.rlim_max,
    };
    // SAFETY: `new` is a valid rlimit; lowering the soft limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &new) }, 0);
    old
}

#[test]
fn unmappable_stack_is_an_out_of_local_memory_error() {
    let rt = Runtime::builder()
        .workers(1)
        .stack_size(16 << 20)
        .stack_pool(0)
        .build()
        .unwrap();
    // Warm up the worker (its first stack, allocator arenas) before limiting.
    rt.block_on(|| ());
    let old = set_as_limit(vm_size_bytes() + (256 << 20));
    let release = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    let mut failure = None;
    for _ in 0..64 {
        let r = release.clone();
        let started = Arc::new(AtomicBool::new(false));
        let s = started.clone();
        let h = rt.spawn(move || {
            s.store(true, Ordering::Release);
            while !r.load(Ordering::Acquire) {
                farmem_sched::sleep(std::time::Duration::from_millis(1));
            }
        });
        // Wait until it runs (it holds its stack) or could not start, before the next one.
        let t0 = std::time::Instant::now();
        while !started.load(Ordering::Acquire) && !h.is_finished() {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(30),
                "never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if h.is_finished() {
            failure = Some(h.join().unwrap_err());
            break;
        }
        handles.push(h);
    }
    release.store(true, Ordering::Release);
    for h in handles {
        h.join().unwrap();
    }
    // SAFETY: restoring the limit read above.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &old) };
    let e = failure.expect("16 MiB stacks never exhausted a 256 MiB address-space allowance");
    assert_eq!(e.error().kind(), ErrorKind::OutOfLocalMemory, "{e}");
    assert!(e.error().context().contains("vm.max_map_count"), "{e}");
    // The runtime is still usable afterwards.
    assert_eq!(rt.block_on(|| 3), 3);
}
