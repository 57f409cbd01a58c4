//! The blocking primitives on green threads: contention among many green threads on few
//! workers, and the property that matters most, that blocking parks only the green thread.
//! With ONE worker, any primitive that blocked the worker instead would deadlock these tests
//! (the green thread that would release it could never run). Also green <-> OS-thread traffic
//! through the same primitive. Behaviour only, never durations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use farmem_sched::sync::channel::{RecvError, RecvTimeoutError};
use farmem_sched::sync::{bounded, unbounded, Barrier, Condvar, Mutex, WaitGroup};
use farmem_sched::{spawn, yield_now, Runtime};

fn scale(n: usize) -> usize {
    if std::env::var_os("FARMEM_STRESS").is_some() {
        n * 10
    } else {
        n
    }
}

fn runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .stack_size(64 * 1024)
        .build()
        .expect("start a farmem runtime")
}

#[test]
fn mutex_counter_many_green_threads() {
    for workers in [1, 2] {
        let rt = runtime(workers);
        let total = rt.block_on(move || {
            let threads = 32;
            let per_thread = scale(1_000);
            let m = Arc::new(Mutex::new(0usize));
            let inside = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let (m, inside) = (m.clone(), inside.clone());
                    spawn(move || {
                        for i in 0..per_thread {
                            let mut g = m.lock();
                            assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0, "two holders");
                            // Switch away while holding the lock now and then, so others
                            // park on it (on one worker too).
                            if (i + t) % 16 == 0 {
                                yield_now();
                            }
                            *g += 1;
                            inside.fetch_sub(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().expect("green thread finished");
            }
            let total = *m.lock();
            assert_eq!(total, threads * per_thread);
            total
        });
        assert!(total > 0);
    }
}

#[test]
fn mutex_blocks_only_the_green_thread() {
    // One worker: B parks on the lock A holds; A keeps running (it yields, sends, unlocks).
    let rt = runtime(1);
    let order = rt.block_on(|| {
        let m = Arc::new(Mutex::new(Vec::new()));
        let guard_taken = Arc::new(AtomicBool::new(false));
        let a = {
            let (m, taken) = (m.clone(), guard_taken.clone());
            spawn(move || {
                let mut g = m.lock();
                taken.store(true, Ordering::SeqCst);
                for _ in 0..10 {
                    yield_now();
                }
                g.push("a");
            })
        };
        while !guard_taken.load(Ordering::SeqCst) {
            yield_now();
        }
        let b = {
            let m = m.clone();
            spawn(move || m.lock().push("b"))
        };
        a.join().expect("a");
        b.join().expect("b");
        let v = m.lock().clone();
        v
    });
    assert_eq!(order, vec!["a", "b"]);
}

#[test]
fn mutex_shared_between_green_and_os_threads() {
    let rt = runtime(2);
    let m = Arc::new(Mutex::new(0usize));
    let per = scale(5_000);
    let green = {
        let m = m.clone();
        rt.spawn(move || {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let m = m.clone();
                    spawn(move || {
                        for _ in 0..per {
                            *m.lock() += 1;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().expect("green");
            }
        })
    };
    let os: Vec<_> = (0..2)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..per {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    green.join().expect("green side");
    for t in os {
        t.join().expect("os side");
    }
    assert_eq!(*m.lock(), 6 * per);
}

#[test]
fn condvar_among_green_threads() {
    let rt = runtime(1);
    rt.block_on(|| {
        let pair = Arc::new((Mutex::new(0usize), Condvar::new()));
        // Turn-taking ring of 4 green threads on one worker: each waits for its turn.
        let n = 4;
        let rounds = scale(200);
        let hs: Vec<_> = (0..n)
            .map(|me| {
                let pair = pair.clone();
                spawn(move || {
                    let (m, cv) = &*pair;
                    for r in 0..rounds {
                        let mut g = cv.wait_while(m.lock(), |turn| *turn != r * n + me);
                        *g += 1;
                        drop(g);
                        cv.notify_all();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("ring member");
        }
        assert_eq!(*pair.0.lock(), n * rounds);

        // A timed wait that nobody notifies times out, and the worker keeps running others.
        let (m, cv) = &*pair;
        let (_g, r) = cv.wait_timeout(m.lock(), Duration::from_millis(5));
        assert!(r.timed_out());
    });
}

#[test]
fn channel_mpmc_green_exact_multiset() {
    for (workers, capacity) in [(1, Some(1)), (2, Some(8)), (2, None)] {
        let rt = runtime(workers);
        rt.block_on(move || {
            let (producers, consumers, per) = (8, 4, scale(2_000));
            let (tx, rx) = match capacity {
                Some(c) => bounded::<(usize, usize)>(c),
                None => unbounded(),
            };
            let ps: Vec<_> = (0..producers)
                .map(|p| {
                    let tx = tx.clone();
                    spawn(move || {
                        for i in 0..per {
                            tx.send((p, i)).expect("receivers alive");
                        }
                    })
                })
                .collect();
            drop(tx);
            let cs: Vec<_> = (0..consumers)
                .map(|_| {
                    let rx = rx.clone();
                    spawn(move || {
                        let mut seen = HashMap::new();
                        for m in &rx {
                            *seen.entry(m).or_insert(0usize) += 1;
                        }
                        seen
                    })
                })
                .collect();
            drop(rx);
            for p in ps {
                p.join().expect("producer");
            }
            let mut all: HashMap<(usize, usize), usize> = HashMap::new();
            for c in cs {
                for (k, v) in c.join().expect("consumer") {
                    *all.entry(k).or_default() += v;
                }
            }
            assert_eq!(all.len(), producers * per, "capacity {capacity:?}");
            assert!(all.values().all(|&n| n == 1), "a message was duplicated");
        });
    }
}

#[test]
fn channel_between_green_and_os_thread() {
    let rt = runtime(1);
    let (to_green, green_rx) = bounded::<u32>(1);
    let (to_os, os_rx) = bounded::<u32>(1);
    let n = scale(1_000) as u32;
    let echo = rt.spawn(move || {
        for v in &green_rx {
            to_os.send(v + 1).expect("os side alive");
        }
    });
    for i in 0..n {
        to_green.send(i).expect("green side alive");
        assert_eq!(os_rx.recv(), Ok(i + 1));
    }
    drop(to_green);
    echo.join().expect("echo green thread");
    assert_eq!(os_rx.recv(), Err(RecvError), "green sender dropped on exit");
}

#[test]
fn timed_waits_park_only_the_green_thread() {
    // One worker: while `waiter` sits in recv_timeout, `runner` must make progress.
    let rt = runtime(1);
    let progressed = rt.block_on(|| {
        let waiting = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (_tx, rx) = unbounded::<()>();
        let waiter = {
            let (waiting, done) = (waiting.clone(), done.clone());
            spawn(move || {
                waiting.store(true, Ordering::SeqCst);
                let r = rx.recv_timeout(Duration::from_millis(20));
                done.store(true, Ordering::SeqCst);
                r
            })
        };
        let runner = {
            let (waiting, done) = (waiting.clone(), done.clone());
            spawn(move || {
                let mut during = 0usize;
                while !done.load(Ordering::SeqCst) {
                    if waiting.load(Ordering::SeqCst) {
                        during += 1;
                    }
                    yield_now();
                }
                during
            })
        };
        assert_eq!(
            waiter.join().expect("waiter"),
            Err(RecvTimeoutError::Timeout)
        );
        runner.join().expect("runner")
    });
    assert!(progressed > 0, "the worker was blocked during a timed wait");
}

#[test]
fn wait_group_and_barrier_on_one_worker() {
    let rt = runtime(1);
    rt.block_on(|| {
        let parties = 8;
        let generations = scale(20);
        let barrier = Arc::new(Barrier::new(parties));
        let wg = WaitGroup::new();
        let arrived = Arc::new(AtomicUsize::new(0));
        let leaders = Arc::new(AtomicUsize::new(0));
        wg.add(parties);
        for _ in 0..parties {
            let (b, wg, arrived, leaders) = (
                barrier.clone(),
                wg.clone(),
                arrived.clone(),
                leaders.clone(),
            );
            // Detached: the wait group is how we learn they finished.
            drop(spawn(move || {
                for gen in 0..generations {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let r = b.wait();
                    assert_eq!(r.generation(), gen as u64);
                    assert!(arrived.load(Ordering::SeqCst) >= parties * (gen + 1));
                    if r.is_leader() {
                        leaders.fetch_add(1, Ordering::SeqCst);
                    }
                }
                wg.done();
            }));
        }
        wg.wait();
        assert_eq!(wg.count(), 0);
        assert_eq!(leaders.load(Ordering::SeqCst), generations);
        assert_eq!(arrived.load(Ordering::SeqCst), parties * generations);
    });
}
