//! Scheduler core: block_on, spawn/join, panics, park/unpark across green and OS threads,
//! sleeps and timers, work stealing, cooperative preemption and shutdown.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use farmem_sched::park::{self, Unparker};
use farmem_sched::{ErrorKind, Runtime};

/// Runs `f` on a helper thread and fails the test (instead of hanging) if it takes too long.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within 60 s (hang)"),
    }
}

fn rt(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

#[test]
fn block_on_returns_the_value_and_runs_on_a_green_thread() {
    let rt = rt(2);
    let (v, green, worker) = rt.block_on(|| {
        (
            6 * 7,
            farmem_sched::in_green_thread(),
            farmem_sched::worker_id(),
        )
    });
    assert_eq!(v, 42);
    assert!(green);
    assert!(worker.is_some_and(|w| w < 2));
    assert!(!farmem_sched::in_green_thread());
    assert_eq!(farmem_sched::worker_id(), None);
}

#[test]
fn block_on_reraises_a_panic_and_the_worker_survives() {
    let rt = rt(1);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(|| -> u32 { panic!("boom in block_on") })
    }));
    let payload = caught.expect_err("the panic must reach the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in block_on"));
    assert_eq!(
        rt.block_on(|| 5),
        5,
        "the only worker still runs green threads"
    );
}

#[test]
fn join_reports_panics_with_their_message() {
    let rt = rt(1);
    let h = rt.spawn(|| -> () { panic!("green boom {}", 7) });
    let err = h.join().unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.error().kind(), ErrorKind::Panicked);
    assert!(err.to_string().contains("green boom 7"), "{err}");
    let e: farmem_sched::Error = err.into();
    assert_eq!(e.kind(), ErrorKind::Panicked);
    // Joined from a green thread too, and the worker keeps going.
    let inner = rt.block_on(|| {
        let h = farmem_sched::spawn(|| -> u8 { panic!("inner") });
        h.join().unwrap_err().is_panic()
    });
    assert!(inner);
    assert_eq!(rt.block_on(|| 1 + 1), 2);
}

#[test]
fn spawn_from_green_threads_and_join_them() {
    let rt = rt(2);
    let total = rt.block_on(|| {
        let handles: Vec<_> = (0..200u64)
            .map(|i| {
                farmem_sched::spawn(move || {
                    // Nested spawn two levels deep.
                    let h = farmem_sched::spawn(move || i * 2);
                    farmem_sched::yield_now();
                    h.join().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(total, (0..200u64).map(|i| i * 2).sum::<u64>());
}

#[test]
fn spawn_outside_a_runtime_is_a_clear_error() {
    let err = farmem_sched::try_spawn(|| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.context().contains("Runtime::spawn"), "{err}");
    let p = std::panic::catch_unwind(|| farmem_sched::spawn(|| ()));
    assert!(p.is_err());
}

#[test]
fn join_from_an_os_thread_waits_for_a_sleeping_green_thread() {
    let rt = rt(2);
    let h = rt.spawn(|| {
        farmem_sched::sleep(Duration::from_millis(20));
        "done"
    });
    assert_eq!(h.join().unwrap(), "done");
}

#[test]
fn os_thread_unparks_a_green_thread() {
    let rt = rt(1);
    let slot: Arc<Mutex<Option<Unparker>>> = Arc::new(Mutex::new(None));
    let flag = Arc::new(AtomicBool::new(false));
    let (s, f) = (slot.clone(), flag.clone());
    let h = rt.spawn(move || {
        *s.lock().unwrap() = Some(park::current_unparker());
        let mut parks = 0;
        while !f.load(Ordering::Acquire) {
            park::park();
            parks += 1;
        }
        parks
    });
    let unparker = loop {
        if let Some(u) = slot.lock().unwrap().clone() {
            break u;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(unparker.is_green());
    std::thread::sleep(Duration::from_millis(10));
    flag.store(true, Ordering::Release);
    unparker.unpark();
    let parks = bounded("green thread woken by an OS thread", move || {
        h.join().unwrap()
    });
    assert!(parks >= 1);
}

#[test]
fn green_thread_unparks_an_os_thread() {
    let rt = rt(1);
    let flag = Arc::new(AtomicBool::new(false));
    let me = park::current_unparker();
    assert!(!me.is_green());
    let f = flag.clone();
    let _h = rt.spawn(move || {
        farmem_sched::sleep(Duration::from_millis(10));
        f.store(true, Ordering::Release);
        me.unpark();
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !flag.load(Ordering::Acquire) {
        park::park_timeout(Duration::from_secs(1));
        assert!(Instant::now() < deadline, "never woken");
    }
}

/// One `unpark_all` from an OS thread wakes green threads of every worker of two runtimes
/// (their workers asleep in between) and an OS thread, round after round; the parks have no
/// timeout, so a lost wake-up hangs and fails the bound.
#[test]
fn unpark_all_wakes_green_threads_of_every_worker_and_os_threads() {
    const ROUNDS: usize = 200;
    const PER_RUNTIME: usize = 8;
    bounded("rounds of unpark_all", || {
        let runtimes = [rt(2), rt(2)];
        let generation = Arc::new(AtomicUsize::new(0));
        let acks = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel::<Unparker>();
        let waiter = |generation: Arc<AtomicUsize>, acks: Arc<AtomicUsize>| {
            move || {
                for round in 1..=ROUNDS {
                    while generation.load(Ordering::Acquire) < round {
                        park::park();
                    }
                    acks.fetch_add(1, Ordering::AcqRel);
                }
            }
        };
        let mut green = Vec::new();
        for rt in &runtimes {
            for _ in 0..PER_RUNTIME {
                let (tx, body) = (tx.clone(), waiter(generation.clone(), acks.clone()));
                green.push(rt.spawn(move || {
                    tx.send(park::current_unparker()).unwrap();
                    body()
                }));
            }
        }
        let (g, a, t) = (generation.clone(), acks.clone(), tx.clone());
        let os = std::thread::spawn(move || {
            t.send(park::current_unparker()).unwrap();
            waiter(g, a)()
        });
        let waiters = 2 * PER_RUNTIME + 1;
        let unparkers: Vec<Unparker> = rx.iter().take(waiters).collect();
        assert_eq!(unparkers.len(), waiters);
        assert_eq!(
            unparkers.iter().filter(|u| u.is_green()).count(),
            2 * PER_RUNTIME
        );
        for round in 1..=ROUNDS {
            generation.store(round, Ordering::Release);
            Unparker::unpark_all(unparkers.iter().cloned());
            while acks.load(Ordering::Acquire) < round * waiters {
                std::thread::yield_now();
            }
        }
        for h in green {
            h.join().unwrap();
        }
        os.join().unwrap();
    });
}

#[test]
fn green_threads_on_different_workers_wake_each_other() {
    let rt = rt(2);
    let rounds = 2000;
    let n = bounded("ping-pong across workers", move || {
        rt.block_on(move || {
            let turn = Arc::new(AtomicUsize::new(0));
            let slots: Arc<Mutex<[Option<Unparker>; 2]>> = Arc::new(Mutex::new([None, None]));
            let players: Vec<_> = (0..2)
                .map(|me| {
                    let (turn, slots) = (turn.clone(), slots.clone());
                    farmem_sched::spawn(move || {
                        slots.lock().unwrap()[me] = Some(park::current_unparker());
                        for _ in 0..rounds {
                            // Plain park: a lost wake-up hangs here (and fails the bound).
                            while turn.load(Ordering::Acquire) % 2 != me {
                                park::park();
                            }
                            turn.fetch_add(1, Ordering::AcqRel);
                            let other = slots.lock().unwrap()[1 - me].clone();
                            if let Some(u) = other {
                                u.unpark();
                            }
                        }
                    })
                })
                .collect();
            for p in players {
                p.join().unwrap();
            }
            turn.load(Ordering::Acquire)
        })
    });
    assert_eq!(n, 2 * rounds);
}

#[test]
fn park_timeout_reports_timeout_and_token() {
    let rt = rt(1);
    rt.block_on(|| {
        assert!(
            !park::park_timeout(Duration::from_millis(5)),
            "nobody unparked"
        );
        park::current_unparker().unpark();
        park::current_unparker().unpark();
        assert!(
            park::park_timeout(Duration::from_secs(10)),
            "the token was pending"
        );
        // The two unparks coalesced into one token.
        assert!(!park::park_timeout(Duration::from_millis(5)));
        // A token given by another green thread while we are parked.
        let me = park::current_unparker();
        let _h = farmem_sched::spawn(move || me.unpark());
        let t0 = Instant::now();
        while !park::park_timeout(Duration::from_secs(30)) {
            assert!(t0.elapsed() < Duration::from_secs(30));
        }
    });
}

#[test]
fn sleeps_end_in_deadline_order() {
    let rt = rt(1);
    let order = rt.block_on(|| {
        let order = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = [90u64, 30, 60]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                farmem_sched::spawn(move || {
                    farmem_sched::sleep(Duration::from_millis(ms));
                    order.lock().unwrap().push(ms);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let v = order.lock().unwrap().clone();
        v
    });
    assert_eq!(order, vec![30, 60, 90]);
}

#[test]
fn many_sleepers_never_wake_early_and_all_finish() {
    let rt = rt(2);
    // FARMEM_STRESS=1 runs 50k sleepers instead of 2k.
    let n: u64 = if std::env::var_os("FARMEM_STRESS").is_some() {
        50_000
    } else {
        2_000
    };
    let early = rt.block_on(move || {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                farmem_sched::spawn(move || {
                    let d = Duration::from_micros((i * 7919) % 30_000);
                    let t0 = Instant::now();
                    farmem_sched::sleep(d);
                    t0.elapsed() < d
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&early| early)
            .count()
    });
    assert_eq!(early, 0, "a sleep returned before its duration");
}

#[test]
fn block_on_from_several_os_threads_at_once() {
    let rt = Arc::new(rt(2));
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                (0..20u64)
                    .map(|i| {
                        rt.block_on(move || {
                            let h = farmem_sched::spawn(move || t * 1000 + i);
                            farmem_sched::sleep(Duration::from_micros(100));
                            h.join().unwrap()
                        })
                    })
                    .sum::<u64>()
            })
        })
        .collect();
    for (t, th) in threads.into_iter().enumerate() {
        let t = t as u64;
        assert_eq!(
            th.join().unwrap(),
            (0..20).map(|i| t * 1000 + i).sum::<u64>()
        );
    }
}

/// A worker with nothing to run sleeps, and `Runtime::stats` counts it: while the only green
/// thread sleeps on a timer, its worker sleeps too. The total never passes what the workers
/// could have slept since the runtime was built.
#[test]
fn stats_count_the_workers_sleeps() {
    let t0 = Instant::now();
    let rt = rt(2);
    rt.block_on(|| farmem_sched::sleep(Duration::from_millis(20)));
    let stats = rt.stats();
    assert!(stats.sleeps >= 1, "{stats:?}");
    assert!(stats.asleep > Duration::ZERO, "{stats:?}");
    assert!(stats.asleep <= 2 * t0.elapsed(), "{stats:?}");
}

#[test]
fn idle_workers_steal_unstarted_green_threads() {
    let rt = rt(2);
    let (spawner_worker, ids) = bounded("work stealing", move || {
        rt.block_on(|| {
            let me = farmem_sched::worker_id().unwrap();
            let done = Arc::new(AtomicUsize::new(0));
            let ids = Arc::new(Mutex::new(HashSet::new()));
            let _handles: Vec<_> = (0..8)
                .map(|_| {
                    let (done, ids) = (done.clone(), ids.clone());
                    farmem_sched::spawn(move || {
                        ids.lock()
                            .unwrap()
                            .insert(farmem_sched::worker_id().unwrap());
                        done.fetch_add(1, Ordering::AcqRel);
                    })
                })
                .collect();
            // Hold this worker without yielding: the 8 green threads sit in its queue and can
            // only run if the other worker steals them.
            let t0 = Instant::now();
            while done.load(Ordering::Acquire) < 8 {
                std::hint::spin_loop();
                assert!(t0.elapsed() < Duration::from_secs(30), "nothing was stolen");
            }
            let ids = ids.lock().unwrap().clone();
            (me, ids)
        })
    });
    assert!(
        !ids.contains(&spawner_worker),
        "ran on the busy worker: {ids:?}"
    );
    assert_eq!(ids.len(), 1);
}

/// A burst of green threads spawned from outside lands evenly on the workers. Each one yields,
/// records its worker (the one it started on: pinning), then yields until all have recorded,
/// so a worker that started one is never idle again before the end. Only an idle worker steals,
/// one inbox task per steal, so each worker steals at most once and runs at least its dealt
/// half minus one, whatever the timing. With one shared queue, the first worker to wake took
/// (nearly) all of them.
#[test]
fn outside_spawns_are_spread_over_the_workers() {
    const N: usize = 64;
    let rt = rt(2);
    let per_worker = bounded("outside spawn placement", move || {
        let recorded = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..N)
            .map(|_| {
                let recorded = recorded.clone();
                rt.spawn(move || {
                    farmem_sched::yield_now();
                    let me = farmem_sched::worker_id();
                    recorded.fetch_add(1, Ordering::AcqRel);
                    while recorded.load(Ordering::Acquire) < N {
                        farmem_sched::yield_now();
                    }
                    me
                })
            })
            .collect();
        let mut per_worker = [0usize; 2];
        for h in handles {
            let w = h.join().unwrap().expect("a green thread knows its worker");
            per_worker[w] += 1;
        }
        per_worker
    });
    assert!(
        per_worker.iter().all(|&n| n >= N / 2 - 1),
        "{N} outside spawns ran {per_worker:?} per worker"
    );
}

/// An outside spawn dealt to a worker held by a green thread that never yields is still run:
/// the other worker, idle, steals it from that worker's inbox — also while it holds a green
/// thread of its own that is blocked (sleeping here, as one waiting on far memory would be).
#[test]
fn an_outside_spawn_dealt_to_a_held_worker_is_stolen() {
    let rt = rt(2);
    let ran = bounded("inbox stealing", move || {
        let done = Arc::new(AtomicUsize::new(0));
        // Dealt round robin: the sleeper to one inbox, the spinner to the other, then one
        // task to each; the one behind the spinner runs only if the sleeper's worker steals it.
        let d = done.clone();
        let sleeper = rt.spawn(move || {
            while d.load(Ordering::Acquire) < 2 {
                farmem_sched::sleep(Duration::from_millis(1));
            }
        });
        let d = done.clone();
        let spinner = rt.spawn(move || {
            let t0 = Instant::now();
            while d.load(Ordering::Acquire) < 2 {
                std::hint::spin_loop();
                assert!(t0.elapsed() < Duration::from_secs(30), "nothing was stolen");
            }
        });
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let done = done.clone();
                rt.spawn(move || {
                    done.fetch_add(1, Ordering::AcqRel);
                })
            })
            .collect();
        spinner.join().unwrap();
        sleeper.join().unwrap();
        handles.into_iter().filter_map(|h| h.join().ok()).count()
    });
    assert_eq!(ran, 2);
}

#[test]
fn maybe_yield_lets_a_sleeper_run_on_a_single_worker() {
    let rt = Runtime::builder()
        .workers(1)
        .time_slice(Duration::from_micros(200))
        .build()
        .unwrap();
    let yields = bounded("cooperative preemption", move || {
        rt.block_on(|| {
            let woke = Arc::new(AtomicBool::new(false));
            let w = woke.clone();
            let sleeper = farmem_sched::spawn(move || {
                farmem_sched::sleep(Duration::from_millis(5));
                w.store(true, Ordering::Release);
            });
            // Only returns if the scheduler runs the sleeper while we spin; without the
            // time-slice yield this loop never ends (the bound above turns that into a failure).
            let mut yields = 0u64;
            while !woke.load(Ordering::Acquire) {
                if farmem_sched::maybe_yield() {
                    yields += 1;
                }
            }
            sleeper.join().unwrap();
            yields
        })
    });
    assert!(yields >= 1);
}

#[test]
fn maybe_yield_and_yield_now_are_harmless_on_os_threads() {
    assert!(!farmem_sched::maybe_yield());
    farmem_sched::yield_now();
    farmem_sched::sleep(Duration::from_millis(1));
}

#[test]
fn dropping_the_runtime_reports_closed_to_blocked_green_threads() {
    let rt = rt(2);
    let parked = rt.spawn(|| loop {
        park::park();
    });
    let sleeping = rt.spawn(|| farmem_sched::sleep(Duration::from_secs(3600)));
    // Let both start and block.
    std::thread::sleep(Duration::from_millis(50));
    bounded("runtime drop", move || drop(rt));
    let e = parked.join().unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::Closed, "{e}");
    assert!(!e.is_panic());
    assert_eq!(
        sleeping.join().unwrap_err().error().kind(),
        ErrorKind::Closed
    );
}

#[test]
fn builder_rejects_bad_configuration() {
    let e = Runtime::builder().workers(0).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.context().contains("workers = 0"), "{e}");
    let e = Runtime::builder().stack_size(100).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.context().contains("stack_size = 100"), "{e}");
}

#[test]
fn deep_recursion_fits_a_configured_stack() {
    fn depth(n: u64) -> u64 {
        let pad = [n as u8; 512];
        if n == 0 {
            return 0;
        }
        let below = depth(n - 1);
        // Keep the 512-byte frame alive across the recursive call.
        std::hint::black_box(&pad);
        1 + below
    }
    let rt = Runtime::builder()
        .workers(1)
        .stack_size(8 << 20)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(|| depth(5000)), 5000);
}

#[test]
fn yield_now_round_robins_green_threads_on_one_worker() {
    let rt = rt(1);
    let trace = rt.block_on(|| {
        let trace = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..3)
            .map(|id| {
                let trace = trace.clone();
                farmem_sched::spawn(move || {
                    for _ in 0..4 {
                        trace.lock().unwrap().push(id);
                        farmem_sched::yield_now();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let t = trace.lock().unwrap().clone();
        t
    });
    // The ready queue is FIFO: each yield lets every other runnable green thread go once.
    assert_eq!(trace, [0, 1, 2].repeat(4));
}

/// Stackful: a green thread suspends inside a C library call (libc `qsort` calling back into
/// Rust) and resumes there, while another green thread runs on the same worker.
#[test]
fn green_threads_suspend_inside_c_callbacks() {
    static TRACE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    // Elements are `who << 16 | value`: the comparator learns which sort called it.
    extern "C" fn compare(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
        // SAFETY: qsort passes pointers to two elements of the u32 array it sorts.
        let (a, b) = unsafe { (*(a as *const u32), *(b as *const u32)) };
        TRACE.lock().unwrap().push(a >> 16);
        // Suspend in the middle of qsort: only possible with a real stack per green thread.
        farmem_sched::yield_now();
        (a & 0xffff).cmp(&(b & 0xffff)) as libc::c_int
    }
    let rt = rt(1);
    let sorted = rt.block_on(|| {
        let sorts: Vec<_> = (1..=2u32)
            .map(|who| {
                farmem_sched::spawn(move || {
                    let mut v: Vec<u32> =
                        (0..64u32).map(|i| (who << 16) | ((i * 37) % 64)).collect();
                    // SAFETY: `v` is a valid array of `v.len()` u32 elements and `compare`
                    // orders two u32s.
                    unsafe {
                        libc::qsort(v.as_mut_ptr().cast(), v.len(), 4, Some(compare));
                    }
                    v.iter().map(|x| x & 0xffff).eq(0..64)
                })
            })
            .collect();
        sorts.into_iter().all(|h| h.join().unwrap())
    });
    assert!(sorted);
    let trace = TRACE.lock().unwrap().clone();
    let switches = trace.windows(2).filter(|p| p[0] != p[1]).count();
    assert!(
        switches > 10,
        "the two sorts did not interleave: {switches} switches"
    );
}
