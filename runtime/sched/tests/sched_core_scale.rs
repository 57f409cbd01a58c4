//! 100k green threads alive at once.
//!
//! Each live green thread holds a guarded stack, i.e. two memory mappings, so 100k of them need
//! `vm.max_map_count` above 200k (the kernel default is 65530). The test raises it to 262144
//! when it is lower and the file is writable (CI runs as root), and otherwise skips with the
//! reason printed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use farmem_sched::park::{self, Unparker};
use farmem_sched::Runtime;

const WANTED_MAP_COUNT: u64 = 262_144;

fn ensure_map_count(needed: u64) -> Result<(), String> {
    let current = farmem_sched::max_map_count().ok_or("cannot read vm.max_map_count")?;
    if current >= needed {
        return Ok(());
    }
    std::fs::write("/proc/sys/vm/max_map_count", WANTED_MAP_COUNT.to_string()).map_err(|e| {
        format!(
            "vm.max_map_count is {current}, {needed} needed, and raising it failed ({e}); run \
             `sysctl -w vm.max_map_count={WANTED_MAP_COUNT}` as root"
        )
    })?;
    match farmem_sched::max_map_count() {
        Some(now) if now >= needed => Ok(()),
        other => Err(format!(
            "vm.max_map_count is still {other:?} after raising it"
        )),
    }
}

fn rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[test]
fn hundred_thousand_concurrent_green_threads() {
    let n: usize = 100_000;
    if let Err(reason) = ensure_map_count(2 * n as u64 + 20_000) {
        eprintln!("SKIPPED hundred_thousand_concurrent_green_threads: {reason}");
        return;
    }
    let rt = Runtime::builder()
        .workers(2)
        .stack_size(64 * 1024)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let started = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(AtomicBool::new(false));
        let unparkers: Arc<Mutex<Vec<Unparker>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (started, release, unparkers) =
                    (started.clone(), release.clone(), unparkers.clone());
                rt.spawn(move || {
                    unparkers.lock().unwrap().push(park::current_unparker());
                    started.fetch_add(1, Ordering::AcqRel);
                    // Nobody returns before all n have started: they are alive at once.
                    while !release.load(Ordering::Acquire) {
                        park::park();
                    }
                    i
                })
            })
            .collect();
        let t0 = Instant::now();
        while started.load(Ordering::Acquire) < n {
            std::thread::sleep(Duration::from_millis(5));
            if t0.elapsed() > Duration::from_secs(50) {
                break;
            }
        }
        let alive = started.load(Ordering::Acquire);
        let rss = rss_mib();
        release.store(true, Ordering::Release);
        for u in unparkers.lock().unwrap().iter() {
            u.unpark();
        }
        let mut sum = 0usize;
        let mut failures = Vec::new();
        for h in handles {
            match h.join() {
                Ok(i) => sum += i,
                Err(e) => failures.push(e.to_string()),
            }
        }
        let _ = tx.send((alive, rss, sum, failures));
    });
    let (alive, rss, sum, failures) = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("100k green threads did not finish within 90 s");
    eprintln!("100k concurrent green threads: resident {rss:?} MiB while all were parked");
    assert!(
        failures.is_empty(),
        "{} failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(alive, n, "all green threads were alive at the same time");
    assert_eq!(sum, n * (n - 1) / 2);
}
