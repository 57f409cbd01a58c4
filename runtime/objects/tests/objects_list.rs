//! `RemList` and `RemStack` against `VecDeque`/`Vec` under random operations (push/pop at both
//! ends, cursor walks with inserts and erasures, indexed access, full iteration both ways) with
//! local memory at about 4% of the data, so the evacuator runs all the time; and the error
//! paths. Set `FARMEM_STRESS=1` for a longer run.

use std::collections::VecDeque;

use farmem_objects::{Config, ErrorKind, FarMemory, RemList};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Elements filled before the random operations: 512 KiB of `u64`.
const INITIAL: usize = 64 * 1024;

fn ops() -> usize {
    if std::env::var_os("FARMEM_STRESS").is_some() {
        200_000
    } else {
        20_000
    }
}

/// 6 regions of 4 KiB: 24 KiB local, about 4.5% of the list.
fn small_local(prefetch_depth: usize) -> Config {
    Config::builder()
        .local_bytes(6 * 4096)
        .region_bytes(4096)
        .chunk_bytes(512) // 64 u64 per chunk: many chunks, many splits
        .alloc_shards(1)
        .prefetch_depth(prefetch_depth)
        .build()
        .unwrap()
}

fn check_all(list: &RemList<u64>, model: &VecDeque<u64>, fm: &FarMemory, what: &str) {
    assert_eq!(list.len(), model.len(), "{what}: len");
    assert_eq!(list.is_empty(), model.is_empty());
    let mut s = fm.scope();
    let got = list.to_vec(&mut s).unwrap();
    assert!(
        got.iter().eq(model.iter()),
        "{what}: for_each_chunk order differs"
    );
    drop(s);
    let mut n = 0;
    for (v, m) in list.iter().zip(model.iter()) {
        assert_eq!(v.unwrap(), *m, "{what}: iter element {n}");
        n += 1;
    }
    assert_eq!(n, model.len(), "{what}: iter length");
    assert_eq!(list.iter().count(), model.len());
}

fn differential(prefetch_depth: usize, seed: u64) {
    let fm = FarMemory::in_process(small_local(prefetch_depth), 256 << 20).unwrap();
    let mut list = fm.list::<u64>().unwrap();
    let mut model: VecDeque<u64> = VecDeque::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut scope = fm.scope();
    for i in 0..INITIAL as u64 {
        if i % 2 == 0 {
            list.push_back(i, &scope).unwrap();
            model.push_back(i);
        } else {
            list.push_front(i, &scope).unwrap();
            model.push_front(i);
        }
        if i % 64 == 0 {
            scope.renew();
        }
    }
    drop(scope);
    check_all(&list, &model, &fm, "after fill");
    let mut scope = fm.scope();
    let mut next = 1u64 << 40;
    for op in 0..ops() {
        if op % 4 == 0 {
            scope.renew();
        }
        next += 1;
        match rng.gen_range(0..100) {
            0..=14 => {
                list.push_back(next, &scope).unwrap();
                model.push_back(next);
            }
            15..=29 => {
                list.push_front(next, &scope).unwrap();
                model.push_front(next);
            }
            30..=39 => assert_eq!(list.pop_back(&scope).unwrap(), model.pop_back(), "op {op}"),
            40..=49 => assert_eq!(
                list.pop_front(&scope).unwrap(),
                model.pop_front(),
                "op {op}"
            ),
            50..=59 if !model.is_empty() => {
                let i = rng.gen_range(0..model.len());
                assert_eq!(*list.get(i, &scope).unwrap(), model[i], "get({i}) op {op}");
                assert_eq!(list.front(&scope).unwrap().copied(), model.front().copied());
                assert_eq!(list.back(&scope).unwrap().copied(), model.back().copied());
            }
            60..=69 => {
                let i = rng.gen_range(0..=model.len());
                list.insert(i, next, &mut scope).unwrap();
                model.insert(i, next);
            }
            70..=76 if !model.is_empty() => {
                let i = rng.gen_range(0..model.len());
                assert_eq!(
                    list.remove(i, &mut scope).unwrap(),
                    model.remove(i).unwrap(),
                    "op {op}"
                );
            }
            77..=98 => {
                // A cursor walk: a run of edits at one place (splits and merges of chunks).
                let mut i = rng.gen_range(0..=model.len());
                let mut c = list.cursor_mut(i).unwrap();
                for _ in 0..rng.gen_range(1..40) {
                    next += 1;
                    assert_eq!(c.index(), i);
                    assert_eq!(c.current(&scope).unwrap().copied(), model.get(i).copied());
                    match rng.gen_range(0..10) {
                        0..=2 => {
                            c.insert_before(next, &mut scope).unwrap();
                            model.insert(i, next);
                            i += 1;
                        }
                        3..=4 => {
                            assert_eq!(c.remove_current(&mut scope).unwrap(), model.remove(i));
                        }
                        5 if i < model.len() => {
                            c.set_current(next, &scope).unwrap();
                            model[i] = next;
                        }
                        6..=7 => {
                            let moved = c.move_next();
                            assert_eq!(moved, i < model.len());
                            if moved {
                                i += 1;
                            }
                        }
                        _ => {
                            let moved = c.move_prev();
                            assert_eq!(moved, i > 0);
                            if moved {
                                i -= 1;
                            }
                        }
                    }
                    assert_eq!(c.is_at_end(), i == model.len());
                }
            }
            _ if op % 10 == 0 => {
                drop(scope);
                check_all(&list, &model, &fm, &format!("op {op}"));
                scope = fm.scope();
            }
            _ => {}
        }
    }
    drop(scope);
    check_all(&list, &model, &fm, "end");
    // The data far exceeded local memory: chunks went to far memory and came back.
    let m = fm.metrics();
    assert!(m.misses > 0, "no chunk was ever fetched: {m:?}");
    assert!(fm.take_error().is_none());
    // Drain from both ends.
    let s = fm.scope();
    while !model.is_empty() {
        assert_eq!(list.pop_front(&s).unwrap(), model.pop_front());
        assert_eq!(list.pop_back(&s).unwrap(), model.pop_back());
    }
    assert!(list.is_empty());
    assert_eq!(list.num_chunks(), 0);
    assert_eq!(list.pop_back(&s).unwrap(), None);
}

#[test]
fn list_matches_vecdeque_with_read_ahead() {
    differential(8, 0x11a7);
}

#[test]
fn list_matches_vecdeque_without_prefetch() {
    differential(0, 0x5eed);
}

#[test]
fn clear_reuses_chunks_and_iter_reads_ahead() {
    let fm = FarMemory::in_process(small_local(16), 64 << 20).unwrap();
    let mut list = fm.list::<[u32; 2]>().unwrap();
    let s = fm.scope();
    for i in 0..20_000u32 {
        list.push_back([i, !i], &s).unwrap();
    }
    drop(s);
    let chunks = list.num_chunks();
    assert_eq!(chunks, 20_000usize.div_ceil(list.chunk_len()));
    // Most chunks are remote now (160 KiB of data, 24 KiB local): iteration reads them ahead,
    // uncached, and leaves them remote.
    let before = fm.metrics();
    let sum: u64 = list.iter().map(|v| u64::from(v.unwrap()[0])).sum();
    assert_eq!(sum, (0..20_000u64).sum::<u64>());
    let mut s = fm.scope();
    let mut n = 0u64;
    list.for_each(&mut s, |v| {
        assert_eq!(v[1], !v[0]);
        n += 1;
    })
    .unwrap();
    drop(s);
    assert_eq!(n, 20_000);
    let after = fm.metrics();
    let read_ahead = after.uncached_reads - before.uncached_reads;
    assert!(
        read_ahead as usize > chunks,
        "two scans read only {read_ahead} of 2x{chunks} chunks ahead"
    );
    // Every read-ahead chunk counts as a used prefetch; the object layer's own stride prefetcher
    // may add a few more (chunks it brought in that the scans then hit), never fewer.
    assert!(
        after.prefetches_used - before.prefetches_used >= read_ahead,
        "{} prefetches used for {read_ahead} chunks read ahead",
        after.prefetches_used - before.prefetches_used
    );
    // Remote chunks are read ahead uncached, so they stay remote. A chunk that was local when a
    // scan planned its read and was evacuated before the read goes through the slow path (a
    // miss); the evacuator runs concurrently, so a few such races are allowed, never a cached
    // scan (which would miss on most of the chunks — 85% are remote — in each of the two scans).
    let misses = after.misses - before.misses;
    assert!(
        (misses as usize) * 4 <= chunks,
        "{misses} of 2x{chunks} chunks were fetched into local memory"
    );
    list.clear();
    assert!(list.is_empty());
    assert_eq!(list.iter().count(), 0);
    let s = fm.scope();
    for i in 0..20_000u32 {
        list.push_front([i, i], &s).unwrap();
    }
    assert_eq!(list.num_chunks(), chunks, "cleared chunks are reused");
    assert_eq!(*list.front(&s).unwrap().unwrap(), [19_999, 19_999]);
    assert_eq!(*list.back(&s).unwrap().unwrap(), [0, 0]);
}

#[test]
fn stack_matches_vec() {
    let fm = FarMemory::in_process(small_local(4), 64 << 20).unwrap();
    let mut st = fm.stack::<u64>().unwrap();
    let mut model = Vec::new();
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..30_000u64 {
        if rng.gen_bool(0.6) {
            st.push(i).unwrap();
            model.push(i);
        } else {
            assert_eq!(st.pop().unwrap(), model.pop());
        }
        assert_eq!(st.peek().unwrap(), model.last().copied());
        assert_eq!(st.len(), model.len());
    }
    st.clear();
    assert!(st.is_empty());
    assert_eq!(st.pop().unwrap(), None);
}

#[test]
fn out_of_far_memory_is_an_error_and_leaves_the_list_intact() {
    let fm = FarMemory::in_process(small_local(0), 16 * 512).unwrap();
    let mut list = fm.list::<u64>().unwrap();
    let mut scope = fm.scope();
    let mut n = 0u64;
    let err = loop {
        let r = if n % 2 == 0 {
            list.push_back(n, &scope)
        } else {
            list.push_front(n, &scope)
        };
        match r {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 100_000, "the backend never filled up");
    };
    assert_eq!(err.kind(), ErrorKind::OutOfFarMemory, "{err}");
    assert_eq!(
        list.len() as u64,
        n,
        "a failed push leaves the length alone"
    );
    // A middle insert into a full chunk needs a split, hence a new chunk: also an error.
    let e = list.insert(list.len() / 2, 7, &mut scope).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfFarMemory, "{e}");
    assert_eq!(list.len() as u64, n);
    let mut all = list.to_vec(&mut scope).unwrap();
    all.sort_unstable();
    assert!(
        all.iter().copied().eq(0..n),
        "contents survive the failures"
    );
    // The stack and the queue report it the same way.
    let mut st = fm.stack::<u64>().unwrap();
    assert_eq!(st.push(1).unwrap_err().kind(), ErrorKind::OutOfFarMemory);
    let q = fm.queue::<u64>().unwrap();
    assert_eq!(q.push(1).unwrap_err().kind(), ErrorKind::OutOfFarMemory);
    assert!(q.is_empty());
}

#[test]
fn bad_indices_are_invalid_argument_errors() {
    let fm = FarMemory::in_process(small_local(0), 1 << 20).unwrap();
    let mut list = fm.list::<u32>().unwrap();
    let mut s = fm.scope();
    assert_eq!(
        list.get(0, &s).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        list.remove(0, &mut s).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let e = list.insert(1, 5, &mut s).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.context().contains("index 1"), "{e}");
    assert!(list.cursor_mut(1).is_err());
    list.insert(0, 5, &mut s).unwrap();
    let mut c = list.cursor_mut(1).unwrap();
    assert!(c.is_at_end());
    assert_eq!(c.remove_current(&mut s).unwrap(), None);
    assert_eq!(
        c.set_current(1, &s).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert!(!c.move_next());
    assert!(c.move_prev());
    assert_eq!(c.current(&s).unwrap().copied(), Some(5));
    // Elements too big for a region are refused at creation.
    let e = fm.list::<[u64; 2048]>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn erasing_most_elements_merges_sparse_chunks() {
    let fm = FarMemory::in_process(small_local(0), 64 << 20).unwrap();
    let mut list = fm.list::<u64>().unwrap();
    let mut model: VecDeque<u64> = VecDeque::new();
    let mut scope = fm.scope();
    let cap = list.chunk_len();
    for i in 0..(40 * cap) as u64 {
        list.push_back(i, &scope).unwrap();
        model.push_back(i);
    }
    assert_eq!(list.num_chunks(), 40);
    // Keep every fourth element: each chunk drops to a quarter, neighbours merge.
    let mut c = list.cursor_front_mut();
    let mut kept = VecDeque::new();
    let mut i = 0u64;
    while !c.is_at_end() {
        if i % 4 == 0 {
            kept.push_back(*c.current(&scope).unwrap().unwrap());
            c.move_next();
        } else {
            assert_eq!(c.remove_current(&mut scope).unwrap(), Some(i));
        }
        i += 1;
    }
    assert!(
        list.num_chunks() <= 25,
        "{} chunks left for {} elements",
        list.num_chunks(),
        list.len()
    );
    model.retain(|v| v % 4 == 0);
    assert_eq!(kept, model);
    assert!(list.to_vec(&mut scope).unwrap().iter().eq(model.iter()));
    // And the list still grows and shrinks correctly afterwards.
    list.insert(3, 99, &mut scope).unwrap();
    model.insert(3, 99);
    assert_eq!(
        list.remove(10, &mut scope).unwrap(),
        model.remove(10).unwrap()
    );
    drop(scope);
    check_all(&list, &model, &fm, "after merges");
}

#[test]
fn many_threads_scan_one_list_while_the_evacuator_runs() {
    let fm = std::sync::Arc::new(FarMemory::in_process(small_local(8), 64 << 20).unwrap());
    let mut list = fm.list::<u64>().unwrap();
    let mut s = fm.scope();
    for i in 0..INITIAL as u64 {
        list.push_front(i, &s).unwrap();
        if i % 64 == 0 {
            s.renew();
        }
    }
    drop(s);
    let list = std::sync::Arc::new(list);
    let want: u64 = (0..INITIAL as u64).sum();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (fm, list) = (fm.clone(), list.clone());
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let mut s = fm.scope();
                    let mut sum = 0;
                    let mut expect = INITIAL as u64;
                    list.for_each(&mut s, |&v| {
                        expect -= 1;
                        assert_eq!(v, expect, "thread {t}: order");
                        sum += v;
                    })
                    .unwrap();
                    assert_eq!(sum, want, "thread {t}: for_each sum");
                    drop(s);
                    let sum: u64 = list.iter().map(|v| v.unwrap()).sum();
                    assert_eq!(sum, want, "thread {t}: iter sum");
                    // Random reads in between keep chunks moving in and out of local memory.
                    let s = fm.scope();
                    for k in 0..64 {
                        let i = (k * 997 + t * 31) % INITIAL;
                        assert_eq!(*list.get(i, &s).unwrap(), (INITIAL - 1 - i) as u64);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(fm.take_error().is_none());
}
