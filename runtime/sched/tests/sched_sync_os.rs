//! The blocking primitives under contention from plain OS threads (outside the runtime, where
//! `park` blocks the OS thread). Behaviour only: timeouts are checked for their outcome, never
//! for how long they took. `FARMEM_STRESS=1` multiplies the iteration counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use farmem_sched::sync::channel::{
    RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError,
};
use farmem_sched::sync::{bounded, unbounded, Barrier, Condvar, Mutex, WaitGroup};
use farmem_sched::ErrorKind;

fn scale(n: usize) -> usize {
    if std::env::var_os("FARMEM_STRESS").is_some() {
        n * 10
    } else {
        n
    }
}

#[test]
fn mutex_counter_8_threads() {
    let threads = 8;
    let per_thread = scale(10_000);
    let m = Arc::new(Mutex::new(0u64));
    let inside = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (m, inside) = (m.clone(), inside.clone());
            thread::spawn(move || {
                for _ in 0..per_thread {
                    let mut g = m.lock();
                    assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0, "two holders");
                    *g += 1;
                    inside.fetch_sub(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*m.lock(), (threads * per_thread) as u64);
    assert!(!m.is_locked());
}

#[test]
fn mutex_try_lock_get_mut_into_inner() {
    let mut m = Mutex::new(vec![1]);
    {
        let g = m.lock();
        assert!(m.try_lock().is_none(), "try_lock must fail while held");
        assert!(m.is_locked());
        drop(g);
    }
    m.try_lock().expect("free mutex").push(2);
    m.get_mut().push(3);
    assert_eq!(format!("{m:?}"), "Mutex { data: [1, 2, 3], .. }");
    assert_eq!(m.into_inner(), vec![1, 2, 3]);
}

#[test]
fn mutex_released_by_panic_in_holder() {
    let m = Arc::new(Mutex::new(1));
    let m2 = m.clone();
    let r = thread::spawn(move || {
        let _g = m2.lock();
        panic!("holder panics");
    })
    .join();
    assert!(r.is_err());
    assert_eq!(*m.lock(), 1, "no poisoning: the lock is free again");
}

#[test]
fn mutex_no_waiter_starves() {
    // A thread that re-locks in a tight loop must not starve a thread blocked in lock():
    // the blocked one gets the lock handed off after losing one race.
    let m = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    let hog = {
        let (m, stop) = (m.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                *m.lock() += 1;
            }
        })
    };
    for _ in 0..scale(200) {
        *m.lock() += 1;
    }
    stop.store(true, Ordering::Relaxed);
    hog.join().unwrap();
}

#[test]
fn condvar_wakes_waiters_one_and_all() {
    let pair = Arc::new((Mutex::new(0usize), Condvar::new()));
    let waiters = 6;
    let woke = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..waiters)
        .map(|_| {
            let (pair, woke) = (pair.clone(), woke.clone());
            thread::spawn(move || {
                let (m, cv) = &*pair;
                let g = cv.wait_while(m.lock(), |gen| *gen == 0);
                let gen = *g;
                drop(g);
                woke.fetch_add(1, Ordering::SeqCst);
                gen
            })
        })
        .collect();
    // Let all of them block, then change the predicate and wake them all.
    let (m, cv) = &*pair;
    while format!("{cv:?}") != format!("Condvar {{ waiters: {waiters} }}") {
        thread::yield_now();
    }
    assert_eq!(
        woke.load(Ordering::SeqCst),
        0,
        "woke before the predicate changed"
    );
    *m.lock() = 1;
    assert_eq!(cv.notify_all(), waiters);
    for h in hs {
        assert_eq!(h.join().unwrap(), 1);
    }
    assert!(!cv.notify_one(), "nobody left to wake");
}

#[test]
fn condvar_notify_one_ping_pong() {
    // Two threads take turns through one mutex + condvar: each notify_one must reach the other.
    let rounds = scale(2_000);
    let pair = Arc::new((Mutex::new(0usize), Condvar::new()));
    let p2 = pair.clone();
    let t = thread::spawn(move || {
        let (m, cv) = &*p2;
        for i in 0..rounds {
            let mut g = cv.wait_while(m.lock(), |turn| *turn != 2 * i + 1);
            *g += 1;
            cv.notify_one();
        }
    });
    let (m, cv) = &*pair;
    for i in 0..rounds {
        let mut g = cv.wait_while(m.lock(), |turn| *turn != 2 * i);
        *g += 1;
        cv.notify_one();
    }
    t.join().unwrap();
    assert_eq!(*m.lock(), 2 * rounds);
}

#[test]
fn condvar_timeouts() {
    let m = Mutex::new(false);
    let cv = Condvar::new();
    let (g, r) = cv.wait_timeout(m.lock(), Duration::from_millis(5));
    assert!(r.timed_out());
    let (g, r) = cv.wait_timeout_while(g, Duration::from_millis(5), |ready| !*ready);
    assert!(r.timed_out());
    drop(g);
    assert!(!cv.notify_one(), "a timed-out waiter leaves the queue");

    // A predicate that is already false returns at once, not timed out.
    let (g, r) = cv.wait_timeout_while(m.lock(), Duration::from_secs(60), |ready| *ready);
    assert!(!r.timed_out());
    drop(g);

    // A notification before the timeout: not timed out.
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let p2 = pair.clone();
    let t = thread::spawn(move || {
        let (m, cv) = &*p2;
        cv.wait_timeout_while(m.lock(), Duration::from_secs(60), |ready| !*ready)
            .1
            .timed_out()
    });
    *pair.0.lock() = true;
    pair.1.notify_all();
    assert!(!t.join().unwrap());
}

/// `producers` x `per_producer` distinct values through `chan`, `consumers` receivers: the
/// received multiset equals the sent one exactly.
fn mpmc_exact_multiset(capacity: Option<usize>, producers: usize, consumers: usize) {
    let per_producer = scale(5_000);
    let (tx, rx) = match capacity {
        Some(c) => bounded::<(usize, usize)>(c),
        None => unbounded(),
    };
    let ps: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..per_producer {
                    tx.send((p, i)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let cs: Vec<_> = (0..consumers)
        .map(|_| {
            let rx = rx.clone();
            thread::spawn(move || {
                let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
                let mut last = vec![None::<usize>; producers];
                for (p, i) in rx.iter() {
                    // FIFO per producer as seen by any one consumer.
                    assert!(last[p].map_or(true, |l| l < i), "out of order from {p}");
                    last[p] = Some(i);
                    *seen.entry((p, i)).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    drop(rx);
    for p in ps {
        p.join().unwrap();
    }
    let mut all: HashMap<(usize, usize), usize> = HashMap::new();
    for c in cs {
        for (k, v) in c.join().unwrap() {
            *all.entry(k).or_default() += v;
        }
    }
    assert_eq!(all.len(), producers * per_producer);
    assert!(all.values().all(|&n| n == 1), "a message was duplicated");
}

#[test]
fn channel_bounded_mpmc_exact() {
    mpmc_exact_multiset(Some(4), 4, 4);
}

#[test]
fn channel_bounded_capacity_one_mpmc_exact() {
    mpmc_exact_multiset(Some(1), 3, 3);
}

#[test]
fn channel_unbounded_mpmc_exact() {
    mpmc_exact_multiset(None, 4, 2);
}

#[test]
fn channel_try_and_capacity() {
    let (tx, rx) = bounded::<u8>(2);
    assert_eq!(tx.capacity(), Some(2));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    assert_eq!((tx.len(), rx.len(), rx.is_empty()), (2, 2, false));
    assert_eq!(rx.try_recv(), Ok(1));
    tx.try_send(3).unwrap();
    assert_eq!(rx.iter().take(2).collect::<Vec<_>>(), vec![2, 3]);
    assert!(tx.is_empty());
    let (tx0, _rx0) = bounded::<u8>(0);
    assert_eq!(tx0.capacity(), Some(1), "capacity 0 is treated as 1");
    let (txu, _rxu) = unbounded::<u8>();
    assert_eq!(txu.capacity(), None);
}

#[test]
fn channel_disconnection_is_a_clear_error() {
    // All senders gone: queued messages drain first, then a clear error.
    let (tx, rx) = unbounded::<u32>();
    let tx2 = tx.clone();
    tx.send(7).unwrap();
    drop(tx);
    assert!(!rx.is_disconnected(), "one sender is left");
    drop(tx2);
    assert!(rx.is_disconnected());
    assert_eq!(rx.recv(), Ok(7));
    assert_eq!(rx.recv(), Err(RecvError));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(60)),
        Err(RecvTimeoutError::Disconnected)
    );
    let e: farmem_sched::Error = RecvError.into();
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert!(
        e.to_string().contains("senders have all been dropped"),
        "{e}"
    );

    // All receivers gone: the message comes back, queued messages are dropped.
    let (tx, rx) = bounded::<Arc<()>>(4);
    let token = Arc::new(());
    tx.send(token.clone()).unwrap();
    let rx2 = rx.clone();
    drop(rx);
    assert!(!tx.is_disconnected());
    drop(rx2);
    assert!(tx.is_disconnected());
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "queued message dropped with the last receiver"
    );
    let err = tx.send(token.clone()).unwrap_err();
    assert!(Arc::ptr_eq(&err.into_inner(), &token));
    assert!(matches!(
        tx.try_send(Arc::new(())),
        Err(TrySendError::Disconnected(_))
    ));
    let e: farmem_sched::Error = tx.send(Arc::new(())).unwrap_err().into();
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert!(
        e.to_string().contains("receivers have all been dropped"),
        "{e}"
    );
}

#[test]
fn channel_disconnection_wakes_blocked_threads() {
    // A receiver parked on an empty channel wakes with an error when the last sender drops.
    let (tx, rx) = unbounded::<u32>();
    let t = thread::spawn(move || rx.recv());
    thread::sleep(Duration::from_millis(10));
    drop(tx);
    assert_eq!(t.join().unwrap(), Err(RecvError));

    // A sender parked on a full channel wakes with its message when the last receiver drops.
    let (tx, rx) = bounded::<u32>(1);
    tx.send(1).unwrap();
    let t = thread::spawn(move || tx.send(2).map_err(|e| e.into_inner()));
    thread::sleep(Duration::from_millis(10));
    drop(rx);
    assert_eq!(t.join().unwrap(), Err(2));
}

#[test]
fn channel_timeouts() {
    let (tx, rx) = bounded::<u32>(1);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(5)),
        Err(RecvTimeoutError::Timeout)
    );
    tx.send(1).unwrap();
    assert!(matches!(
        tx.send_timeout(2, Duration::from_millis(5)),
        Err(SendTimeoutError::Timeout(2))
    ));
    let e: farmem_sched::Error = RecvTimeoutError::Timeout.into();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    // A timed-out waiter leaves no stale node: later traffic flows normally.
    assert_eq!(rx.recv_timeout(Duration::from_millis(5)), Ok(1));
    let t = thread::spawn(move || rx.recv_timeout(Duration::from_secs(60)));
    tx.send_timeout(3, Duration::from_secs(60)).unwrap();
    assert_eq!(t.join().unwrap(), Ok(3));
}

#[test]
fn channel_timeouts_race_with_traffic() {
    // Many short timeouts racing with sends: every message is received exactly once.
    let n = scale(2_000) as u32;
    let (tx, rx) = bounded::<u32>(2);
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match rx.recv_timeout(Duration::from_micros(50)) {
                        Ok(v) => got.push(v),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return got,
                    }
                }
            })
        })
        .collect();
    drop(rx);
    for i in 0..n {
        if i % 64 == 0 {
            thread::yield_now();
        }
        tx.send(i).unwrap();
    }
    drop(tx);
    let mut all: Vec<u32> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
}

#[test]
fn wait_group_waits_for_all() {
    let wg = WaitGroup::new();
    assert!(wg.wait_timeout(Duration::ZERO), "empty group is done");
    wg.wait();
    let done = Arc::new(AtomicUsize::new(0));
    let n = 8;
    wg.add(n);
    assert_eq!(wg.count(), n);
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let (wg, done) = (wg.clone(), done.clone());
            thread::spawn(move || {
                done.fetch_add(1, Ordering::SeqCst);
                wg.done();
            })
        })
        .collect();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (wg, done) = (wg.clone(), done.clone());
            thread::spawn(move || {
                wg.wait();
                done.load(Ordering::SeqCst)
            })
        })
        .collect();
    wg.wait();
    assert_eq!(done.load(Ordering::SeqCst), n);
    for w in waiters {
        assert_eq!(w.join().unwrap(), n);
    }
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(wg.count(), 0);
    assert_eq!(format!("{wg:?}"), "WaitGroup { count: 0 }");
}

#[test]
fn wait_group_timeout_and_misuse() {
    let wg = WaitGroup::default();
    wg.add(1);
    assert!(!wg.wait_timeout(Duration::from_millis(5)));
    wg.done();
    assert!(wg.wait_timeout(Duration::from_millis(5)));
    let r = std::panic::catch_unwind(|| wg.done());
    assert!(r.is_err(), "done without add must panic");
}

#[test]
fn barrier_generations() {
    let parties = 5;
    let generations = scale(50);
    let b = Arc::new(Barrier::new(parties));
    assert_eq!(b.parties(), parties);
    let arrived = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..parties)
        .map(|_| {
            let (b, arrived) = (b.clone(), arrived.clone());
            thread::spawn(move || {
                let mut leaders = 0;
                for gen in 0..generations {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let r = b.wait();
                    assert_eq!(r.generation(), gen as u64);
                    // Nobody passes generation `gen` before all `parties` arrived in it.
                    assert!(arrived.load(Ordering::SeqCst) >= parties * (gen + 1));
                    leaders += usize::from(r.is_leader());
                }
                leaders
            })
        })
        .collect();
    let leaders: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(leaders, generations, "exactly one leader per generation");
    let single = Barrier::new(0);
    assert!(single.wait().is_leader(), "a 0-party barrier never blocks");
}
