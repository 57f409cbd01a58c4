//! `RemQueue` shared by many green threads of a `farmem_sched::Runtime`: producers and consumers
//! at once, local memory far below the queue's size, an exact multiset check of what went in
//! against what came out, and per-producer FIFO order as each consumer saw it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use farmem_objects::{Config, FarMemory, RemQueue};

const PRODUCERS: u64 = 8;
const CONSUMERS: usize = 8;

fn per_producer() -> u64 {
    if std::env::var_os("FARMEM_STRESS").is_some() {
        50_000
    } else {
        5_000
    }
}

fn item(producer: u64, seq: u64) -> u64 {
    (producer << 32) | seq
}

fn run_queue(workers: usize, batch: bool) {
    let config = Config::builder()
        .local_bytes(8 * 8192) // 64 KiB against 320 KiB of items
        .region_bytes(8192)
        .chunk_bytes(512)
        .alloc_shards(2)
        .prefetch_depth(4)
        .build()
        .unwrap();
    let fm = Arc::new(FarMemory::in_process(config, 256 << 20).unwrap());
    let q: Arc<RemQueue<u64>> = Arc::new(fm.queue().unwrap());
    let per = per_producer();
    let total = (PRODUCERS * per) as usize;
    let consumed = Arc::new(AtomicUsize::new(0));
    // Consumers start once half the items are in: the queue then outgrows local memory, so
    // chunks are evicted and fetched back while producers and consumers run at once.
    let pushed = Arc::new(AtomicUsize::new(0));
    let rt = farmem_sched::Runtime::builder()
        .workers(workers)
        .build()
        .unwrap();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (q, pushed) = (q.clone(), pushed.clone());
            rt.spawn(move || {
                let mut seq = 0;
                while seq < per {
                    if batch && seq % 3 == 0 && seq + 16 <= per {
                        let vs: Vec<u64> = (seq..seq + 16).map(|s| item(p, s)).collect();
                        q.push_all(&vs).unwrap();
                        seq += 16;
                        pushed.fetch_add(16, Ordering::AcqRel);
                    } else {
                        q.push(item(p, seq)).unwrap();
                        seq += 1;
                        pushed.fetch_add(1, Ordering::AcqRel);
                    }
                    if seq % 7 == 0 {
                        farmem_sched::yield_now();
                    }
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|c| {
            let (q, consumed, pushed) = (q.clone(), consumed.clone(), pushed.clone());
            rt.spawn(move || {
                while pushed.load(Ordering::Acquire) < total / 2 {
                    farmem_sched::yield_now();
                }
                let mut got = Vec::new();
                while consumed.load(Ordering::Acquire) < total {
                    let before = got.len();
                    if batch && c % 2 == 0 {
                        q.pop_into(32, &mut got).unwrap();
                    } else if let Some(v) = q.pop().unwrap() {
                        got.push(v);
                    }
                    let n = got.len() - before;
                    if n == 0 {
                        farmem_sched::yield_now();
                    } else {
                        consumed.fetch_add(n, Ordering::AcqRel);
                    }
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut all = Vec::with_capacity(total);
    for c in consumers {
        let got = c.join().unwrap();
        // FIFO: one consumer sees each producer's items in the order they were pushed.
        let mut last = vec![None; PRODUCERS as usize];
        for &v in &got {
            let (p, s) = ((v >> 32) as usize, v & 0xffff_ffff);
            if let Some(l) = last[p] {
                assert!(l < s, "producer {p}: {s} after {l}");
            }
            last[p] = Some(s);
        }
        all.extend(got);
    }
    assert!(q.is_empty());
    assert_eq!(q.pop().unwrap(), None);
    // Exactly the multiset that went in: every item once.
    all.sort_unstable();
    let want: Vec<u64> = (0..PRODUCERS)
        .flat_map(|p| (0..per).map(move |s| item(p, s)))
        .collect();
    assert_eq!(all.len(), want.len(), "items lost or duplicated");
    assert!(
        all == want,
        "the multiset of popped items differs from the pushed one"
    );
    // New chunks are made locally (never fetched), so a miss needs a chunk that was evicted
    // first; either way the evacuator must have worked for the test to mean anything.
    let m = fm.metrics();
    assert!(
        m.evacuated_regions > 0,
        "local memory was never short, the queue stayed local: {m:?}"
    );
    assert!(fm.take_error().is_none());
}

#[test]
fn queue_many_green_producers_and_consumers_two_workers() {
    run_queue(2, false);
}

#[test]
fn queue_batches_from_green_threads_on_one_worker() {
    run_queue(1, true);
}

#[test]
fn queue_is_fifo_and_peek_sees_the_head() {
    let config = Config::builder()
        .local_bytes(8 * 8192)
        .region_bytes(8192)
        .chunk_bytes(512)
        .build()
        .unwrap();
    let fm = FarMemory::in_process(config, 64 << 20).unwrap();
    let q = fm.queue::<u32>().unwrap();
    assert_eq!(q.peek().unwrap(), None);
    for i in 0..50_000 {
        q.push(i).unwrap();
    }
    assert_eq!(q.len(), 50_000);
    for i in 0..50_000 {
        assert_eq!(q.peek().unwrap(), Some(i));
        assert_eq!(q.pop().unwrap(), Some(i));
    }
    q.push(3).unwrap();
    q.clear();
    assert!(q.is_empty());
    assert!(format!("{q:?}").contains("RemQueue"));
}
