//! Loom model checks of the hand-written protocols: the mutex's LOCKED/HAS_WAITERS word with
//! barging and handoff, the condvar's enqueue-before-unlock rule, the channel's wake-ups and
//! disconnection, the wait group and the barrier. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p farmem-sched --release --lib loom`.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use super::{bounded, Barrier, Condvar, Mutex, WaitGroup};

/// Exhaustive up to a few preemptions: three-party cases are intractable unbounded, and the
/// bugs these protocols can have (a lost wake-up, a double owner) need only two or three.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// Mutual exclusion and no lost unlock: the protected counter and an "inside" probe.
#[test]
fn loom_mutex_excludes_and_wakes() {
    model(|| {
        let m = Arc::new(Mutex::new(0usize));
        let inside = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (m, inside) = (m.clone(), inside.clone());
                thread::spawn(move || {
                    let mut g = m.lock();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    *g += 1;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        {
            let mut g = m.lock();
            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
            *g += 1;
            inside.fetch_sub(1, Ordering::SeqCst);
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*m.lock(), 3);
        assert!(!m.is_locked());
    });
}

/// A waiter that re-locks twice exercises the lost-race re-queue and the handoff.
#[test]
fn loom_mutex_relock_handoff() {
    model(|| {
        let m = Arc::new(Mutex::new(Vec::new()));
        let m2 = m.clone();
        let t = thread::spawn(move || {
            for i in 0..2 {
                m2.lock().push(i);
            }
        });
        for i in 10..12 {
            m.lock().push(i);
        }
        t.join().unwrap();
        let mut v = m.lock().clone();
        v.sort_unstable();
        assert_eq!(v, vec![0, 1, 10, 11]);
    });
}

/// A notify after the predicate change is never lost.
#[test]
fn loom_condvar_no_lost_wakeup() {
    model(|| {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let p2 = pair.clone();
        let t = thread::spawn(move || {
            *p2.0.lock() = true;
            p2.1.notify_one();
        });
        let g = pair.1.wait_while(pair.0.lock(), |ready| !*ready);
        assert!(*g);
        drop(g);
        t.join().unwrap();
    });
}

/// Bounded(1): the sender parks on full, the receiver wakes it; then disconnection ends recv.
#[test]
fn loom_channel_bounded_wakes_and_disconnects() {
    model(|| {
        let (tx, rx) = bounded::<u32>(1);
        let t = thread::spawn(move || {
            tx.send(1).unwrap();
            tx.send(2).unwrap();
        });
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        assert!(rx.recv().is_err());
        t.join().unwrap();
    });
}

/// Dropping the receiver wakes a sender parked on a full channel with its message back.
#[test]
fn loom_channel_receiver_drop_wakes_sender() {
    model(|| {
        let (tx, rx) = bounded::<u32>(1);
        tx.send(1).unwrap();
        let t = thread::spawn(move || tx.send(2).map_err(|e| e.into_inner()));
        drop(rx);
        assert_eq!(t.join().unwrap(), Err(2));
    });
}

/// The waiter returns only after both `done` calls.
#[test]
fn loom_wait_group() {
    model(|| {
        let wg = WaitGroup::new();
        let finished = Arc::new(AtomicUsize::new(0));
        wg.add(2);
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (wg, finished) = (wg.clone(), finished.clone());
                thread::spawn(move || {
                    finished.fetch_add(1, Ordering::SeqCst);
                    wg.done();
                })
            })
            .collect();
        wg.wait();
        assert_eq!(finished.load(Ordering::SeqCst), 2);
        for h in hs {
            h.join().unwrap();
        }
    });
}

/// Two generations of a two-party barrier: one leader each, nobody passes early.
#[test]
fn loom_barrier_generations() {
    model(|| {
        let b = Arc::new(Barrier::new(2));
        let arrived = Arc::new(AtomicUsize::new(0));
        let (b2, a2) = (b.clone(), arrived.clone());
        let t = thread::spawn(move || {
            let mut leaders = 0;
            for gen in 0..2 {
                a2.fetch_add(1, Ordering::SeqCst);
                let r = b2.wait();
                assert!(a2.load(Ordering::SeqCst) >= 2 * (gen + 1));
                leaders += usize::from(r.is_leader());
            }
            leaders
        });
        let mut leaders = 0;
        for gen in 0..2 {
            arrived.fetch_add(1, Ordering::SeqCst);
            let r = b.wait();
            assert_eq!(r.generation(), gen as u64);
            assert!(arrived.load(Ordering::SeqCst) >= 2 * (gen + 1));
            leaders += usize::from(r.is_leader());
        }
        assert_eq!(leaders + t.join().unwrap(), 2);
    });
}
