//! Every container round trip through the C functions, with most of the data remote (a 256 KiB
//! local budget under megabytes of elements), checked against std collections.

use std::collections::VecDeque;
use std::ffi::{c_int, c_void};

use super::*;

const LOCAL: u64 = 256 << 10;

fn p<T>(v: &T) -> *const c_void {
    (v as *const T).cast()
}

fn pm<T>(v: &mut T) -> *mut c_void {
    (v as *mut T).cast()
}

/// An element of an odd size (12 bytes: slot class 16) that spells its index.
fn odd(i: usize) -> [u8; 12] {
    let mut e = [0u8; 12];
    e[..8].copy_from_slice(&(i as u64 * 2654435761).to_le_bytes());
    e[8..].copy_from_slice(&(i as u32).to_le_bytes());
    e
}

#[test]
fn objects_array_of_u64_round_trips_mostly_remote() {
    let rt = Rt::new(LOCAL);
    let n = 256 * 1024; // 2 MiB of elements through a 256 KiB budget
    let mut a = std::ptr::null_mut();
    // SAFETY: (this block) valid handles, out-pointers and buffers of the
    // sizes passed.
    unsafe {
        ok(fm_array_create(rt.0, 8, n, &mut a));
        let mut len = 0;
        ok(fm_array_len(a, &mut len));
        assert_eq!(len, n);
        let s = scope(&rt);
        for i in 0..n {
            let v = (i as u64) * 3 + 1;
            ok(fm_array_set(a, s, i, p(&v), 8));
            if i % 1024 == 0 {
                ok(fm_scope_renew(s));
            }
        }
        let mut sum = 0u64;
        for i in (0..n).step_by(7) {
            let mut v = 0u64;
            ok(fm_array_get(a, s, i, pm(&mut v), 8));
            assert_eq!(v, (i as u64) * 3 + 1, "element {i}");
            sum += v;
            if i % 1024 == 0 {
                ok(fm_scope_renew(s));
            }
        }
        assert!(sum > 0);
        // Bulk: overwrite a range crossing many chunks, read it all back.
        let src: Vec<u64> = (0..20_000u64).map(|i| i ^ 0xabcdef).collect();
        ok(fm_array_write(
            a,
            s,
            1000,
            src.len(),
            src.as_ptr().cast(),
            8,
        ));
        let mut back = vec![0u64; n];
        ok(fm_array_read(a, s, 0, n, back.as_mut_ptr().cast(), 8));
        for (i, v) in back.iter().enumerate() {
            let want = if (1000..21_000).contains(&i) {
                src[i - 1000]
            } else {
                (i as u64) * 3 + 1
            };
            assert_eq!(*v, want, "element {i}");
        }
        end(s);
        ok(fm_array_destroy(a));
    }
    let m = rt.metrics();
    assert!(m.bytes_written_back > 0, "nothing was evacuated: {m:?}");
    assert!(
        m.bytes_fetched > 0 && m.misses > 0,
        "nothing was fetched: {m:?}"
    );
    assert_eq!(m.local_bytes_budget, LOCAL);
    assert!(m.local_bytes_used <= LOCAL, "{m:?}");
}

#[test]
fn objects_odd_and_largest_element_sizes_keep_their_bytes() {
    let rt = Rt::new(LOCAL);
    // SAFETY: valid handles, out-pointers and buffers of the sizes passed.
    unsafe {
        let s = scope(&rt);
        // 12-byte elements in 16-byte slots.
        let n = 40_000;
        let mut a = std::ptr::null_mut();
        ok(fm_array_create(rt.0, 12, n, &mut a));
        let src: Vec<[u8; 12]> = (0..n).map(odd).collect();
        ok(fm_array_write(a, s, 0, n, src.as_ptr().cast(), 12));
        for i in (0..n).step_by(13) {
            let mut e = [0xffu8; 12];
            ok(fm_array_get(a, s, i, pm(&mut e), 12));
            assert_eq!(e, odd(i));
        }
        let mut back = vec![[0u8; 12]; n];
        ok(fm_array_read(a, s, 0, n, back.as_mut_ptr().cast(), 12));
        assert!(back == src);
        ok(fm_array_destroy(a));
        // 4096-byte elements (the largest): a page each, 200 pages through the budget.
        let mut v = std::ptr::null_mut();
        ok(fm_vector_create(rt.0, 4096, &mut v));
        for i in 0..200u8 {
            let page = [i; 4096];
            ok(fm_vector_push(v, s, p(&page), 4096));
            ok(fm_scope_renew(s));
        }
        for i in (0..200u8).rev() {
            let mut page = [0u8; 4096];
            ok(fm_vector_get(v, s, usize::from(i), pm(&mut page), 4096));
            assert!(page.iter().all(|&b| b == i), "page {i}");
            ok(fm_scope_renew(s));
        }
        ok(fm_vector_destroy(v));
        end(s);
    }
}

#[test]
fn objects_vector_push_pop_get_set_match_a_vec() {
    let rt = Rt::new(LOCAL);
    type Elem = [u64; 3]; // 24 bytes
    let mut model: Vec<Elem> = Vec::new();
    // SAFETY: valid handles, out-pointers and buffers of the sizes passed.
    unsafe {
        let s = scope(&rt);
        let mut v = std::ptr::null_mut();
        ok(fm_vector_create(rt.0, 24, &mut v));
        for i in 0..60_000u64 {
            let e: Elem = [i, i * i, !i];
            ok(fm_vector_push(v, s, p(&e), 24));
            model.push(e);
            if i % 512 == 0 {
                ok(fm_scope_renew(s));
            }
        }
        for i in (0..model.len()).step_by(97) {
            let e: Elem = [7, 7, i as u64];
            ok(fm_vector_set(v, s, i, p(&e), 24));
            model[i] = e;
        }
        let mut len = 0;
        ok(fm_vector_len(v, &mut len));
        assert_eq!(len, model.len());
        for (i, want) in model.iter().enumerate().step_by(31) {
            let mut e: Elem = [0; 3];
            ok(fm_vector_get(v, s, i, pm(&mut e), 24));
            assert_eq!(&e, want, "element {i}");
            if i % 1024 == 0 {
                ok(fm_scope_renew(s));
            }
        }
        for _ in 0..1000 {
            let mut e: Elem = [0; 3];
            let mut popped: c_int = 0;
            ok(fm_vector_pop(v, s, pm(&mut e), 24, &mut popped));
            assert_eq!(popped, 1);
            assert_eq!(Some(e), model.pop());
        }
        ok(fm_vector_destroy(v));
        // Popping an empty vector reports it and leaves `out` alone.
        ok(fm_vector_create(rt.0, 24, &mut v));
        let mut e: Elem = [9; 3];
        let mut popped: c_int = 5;
        ok(fm_vector_pop(v, s, pm(&mut e), 24, &mut popped));
        assert_eq!((popped, e), (0, [9; 3]));
        ok(fm_vector_destroy(v));
        end(s);
    }
}

#[test]
fn objects_list_matches_a_vecdeque_under_mixed_operations() {
    let rt = Rt::new(LOCAL);
    let mut model: VecDeque<u32> = VecDeque::new();
    // SAFETY: valid handles, out-pointers and buffers of the sizes passed.
    unsafe {
        let s = scope(&rt);
        let mut l = std::ptr::null_mut();
        ok(fm_list_create(rt.0, 4, &mut l));
        // A simple LCG drives the operations (reproducible, no dependency).
        let mut x: u64 = 12345;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u32
        };
        for step in 0..60_000u32 {
            let r = next();
            let mut out = 0u32;
            let mut popped: c_int = 0;
            match r % 8 {
                0..=2 => {
                    ok(fm_list_push_back(l, s, p(&step), 4));
                    model.push_back(step);
                }
                3 | 4 => {
                    ok(fm_list_push_front(l, s, p(&step), 4));
                    model.push_front(step);
                }
                5 => {
                    ok(fm_list_pop_front(l, s, pm(&mut out), 4, &mut popped));
                    assert_eq!((popped == 1).then_some(out), model.pop_front());
                }
                6 => {
                    ok(fm_list_pop_back(l, s, pm(&mut out), 4, &mut popped));
                    assert_eq!((popped == 1).then_some(out), model.pop_back());
                }
                _ if step % 50 == 7 && !model.is_empty() => {
                    // Insert and remove in the middle (a walk of the local index each).
                    let i = next() as usize % (model.len() + 1);
                    ok(fm_list_insert(l, s, i, p(&step), 4));
                    model.insert(i, step);
                    let j = next() as usize % model.len();
                    ok(fm_list_remove(l, s, j, pm(&mut out), 4));
                    assert_eq!(Some(out), model.remove(j));
                }
                _ if !model.is_empty() => {
                    let i = next() as usize % model.len();
                    ok(fm_list_get(l, s, i, pm(&mut out), 4));
                    assert_eq!(out, model[i]);
                }
                _ => {}
            }
            if step % 512 == 0 {
                ok(fm_scope_renew(s));
            }
        }
        let mut len = 0;
        ok(fm_list_len(l, &mut len));
        assert_eq!(len, model.len());
        // Removing with out = NULL discards the element.
        if !model.is_empty() {
            ok(fm_list_remove(l, s, 0, std::ptr::null_mut(), 4));
            model.pop_front();
        }
        for (i, want) in model.iter().enumerate() {
            let mut out = 0u32;
            ok(fm_list_get(l, s, i, pm(&mut out), 4));
            assert_eq!(out, *want, "element {i}");
            if i % 512 == 0 {
                ok(fm_scope_renew(s));
            }
        }
        ok(fm_list_destroy(l));
        end(s);
    }
}

#[test]
fn objects_stack_is_lifo_and_queue_is_fifo_across_threads() {
    let rt = Rt::new(LOCAL);
    // SAFETY: valid handles, out-pointers and buffers of the sizes passed.
    unsafe {
        let mut st = std::ptr::null_mut();
        ok(fm_stack_create(rt.0, 8, &mut st));
        let n = 50_000u64;
        for i in 0..n {
            ok(fm_stack_push(st, p(&i), 8));
        }
        let (mut top, mut found) = (0u64, 0 as c_int);
        ok(fm_stack_peek(st, pm(&mut top), 8, &mut found));
        assert_eq!((found, top), (1, n - 1));
        for i in (0..n).rev() {
            let (mut v, mut popped) = (0u64, 0 as c_int);
            ok(fm_stack_pop(st, pm(&mut v), 8, &mut popped));
            assert_eq!((popped, v), (1, i));
        }
        let mut popped: c_int = 1;
        ok(fm_stack_pop(st, pm(&mut top), 8, &mut popped));
        assert_eq!(popped, 0);
        ok(fm_stack_peek(st, pm(&mut top), 8, &mut found));
        assert_eq!(found, 0);
        ok(fm_stack_destroy(st));

        // Two producer threads, one consumer: every element arrives once, each producer's in
        // order.
        let mut q = std::ptr::null_mut();
        ok(fm_queue_create(rt.0, 16, &mut q));
        let qh = q as usize;
        let per = 20_000u64;
        let producers: Vec<_> = (0..2u64)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..per {
                        let e = [t, i];
                        // (Inside the outer unsafe block: a live queue handle, a 16-byte element.)
                        ok(fm_queue_push(qh as *mut fm_queue_t, p(&e), 16));
                    }
                })
            })
            .collect();
        let mut next = [0u64; 2];
        let mut got = 0;
        while got < 2 * per {
            let (mut e, mut popped) = ([0u64; 2], 0 as c_int);
            ok(fm_queue_pop(q, pm(&mut e), 16, &mut popped));
            if popped == 0 {
                std::thread::yield_now();
                continue;
            }
            assert_eq!(e[1], next[e[0] as usize], "producer {} out of order", e[0]);
            next[e[0] as usize] += 1;
            got += 1;
        }
        for t in producers {
            t.join().unwrap();
        }
        let mut len = 99;
        ok(fm_queue_len(q, &mut len));
        assert_eq!(len, 0);
        let e = [5u64, 6];
        ok(fm_queue_push(q, p(&e), 16));
        let (mut peeked, mut found) = ([0u64; 2], 0 as c_int);
        ok(fm_queue_peek(q, pm(&mut peeked), 16, &mut found));
        assert_eq!((found, peeked), (1, e));
        ok(fm_queue_destroy(q));
    }
}

#[test]
fn objects_hashmap_put_get_remove_len() {
    let rt = Rt::new(LOCAL);
    // SAFETY: valid handles, out-pointers and buffers of the sizes passed.
    unsafe {
        let mut m = std::ptr::null_mut();
        ok(fm_hashmap_create(rt.0, 16, 32, 4096, &mut m));
        let key = |i: u64| [i, !i];
        let val = |i: u64| [i; 4];
        for i in 0..3000u64 {
            let mut new: c_int = 0;
            ok(fm_hashmap_put(m, p(&key(i)), 16, p(&val(i)), 32, &mut new));
            assert_eq!(new, 1);
        }
        let mut new: c_int = 1;
        ok(fm_hashmap_put(m, p(&key(5)), 16, p(&val(55)), 32, &mut new));
        assert_eq!(new, 0, "replacing is not inserting");
        let mut len = 0u64;
        ok(fm_hashmap_len(m, &mut len));
        assert_eq!(len, 3000);
        for i in (0..3000u64).step_by(7) {
            let (mut v, mut found) = ([0u64; 4], 0 as c_int);
            ok(fm_hashmap_get(
                m,
                p(&key(i)),
                16,
                pm(&mut v),
                32,
                &mut found,
            ));
            assert_eq!(found, 1);
            assert_eq!(v, if i == 5 { val(55) } else { val(i) });
        }
        let mut removed: c_int = 0;
        ok(fm_hashmap_remove(m, p(&key(10)), 16, &mut removed));
        assert_eq!(removed, 1);
        ok(fm_hashmap_remove(m, p(&key(10)), 16, &mut removed));
        assert_eq!(removed, 0);
        let (mut v, mut found) = ([7u64; 4], 1 as c_int);
        ok(fm_hashmap_get(
            m,
            p(&key(10)),
            16,
            pm(&mut v),
            32,
            &mut found,
        ));
        assert_eq!((found, v), (0, [7; 4]));
        // Optional out-parameters may be NULL.
        ok(fm_hashmap_put(
            m,
            p(&key(10)),
            16,
            p(&val(1)),
            32,
            std::ptr::null_mut(),
        ));
        ok(fm_hashmap_remove(m, p(&key(10)), 16, std::ptr::null_mut()));
        ok(fm_hashmap_destroy(m));
    }
}
