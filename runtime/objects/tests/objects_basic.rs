//! Element access, scopes, metrics, the don't-cache hint and the prefetcher on one thread.

use std::time::Duration;

use farmem_objects::{Config, ErrorKind, FarMemory};

fn small(local_regions: usize, prefetch_depth: usize) -> FarMemory {
    let cfg = Config::builder()
        .local_bytes(local_regions * (16 << 10))
        .region_bytes(16 << 10)
        .chunk_bytes(1024)
        .alloc_shards(2)
        .prefetch_depth(prefetch_depth)
        .build()
        .unwrap();
    FarMemory::in_process(cfg, 256 << 20).unwrap()
}

#[test]
fn set_get_round_trip_and_bounds() {
    let fm = small(16, 0);
    let mut a = fm.array::<u64>(5000).unwrap();
    assert_eq!(a.len(), 5000);
    assert_eq!(a.chunk_len(), 128);
    assert_eq!(a.num_chunks(), 40);
    let s = fm.scope();
    assert_eq!(*a.get(4999, &s).unwrap(), 0, "arrays start zeroed");
    for i in (0..5000).step_by(7) {
        a.set(i, i as u64 * 3, &s).unwrap();
    }
    *a.get_mut(1, &s).unwrap() += 41;
    for i in (0..5000).step_by(7) {
        assert_eq!(*a.get(i, &s).unwrap(), i as u64 * 3);
    }
    assert_eq!(*a.get(1, &s).unwrap(), 41);
    let e = a.get(5000, &s).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.context().contains("5000"), "{e}");
    assert_eq!(
        a.set(9999, 1, &s).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        a.chunk(40, &s).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(a.chunk(39, &s).unwrap().len(), 5000 - 39 * 128);
}

#[test]
fn writes_survive_eviction_and_refetch() {
    // 8 regions of 16 KiB = 128 KiB local; the array is 2 MiB.
    let fm = small(8, 0);
    let n = 256 * 1024;
    let mut a = fm.array::<u64>(n).unwrap();
    let mut s = fm.scope();
    let src: Vec<u64> = (0..n as u64).map(|i| i.wrapping_mul(0x9e37_79b9)).collect();
    a.write_slice(0, &src, &mut s).unwrap();
    assert_eq!(a.to_vec(&mut s).unwrap(), src);
    drop(s);
    let m = fm.metrics();
    assert!(m.evacuated_regions > 0, "{m:?}");
    assert!(
        m.bytes_written_back > 0,
        "dirty chunks were written back: {m:?}"
    );
    assert!(m.misses > 0 && m.bytes_fetched > 0, "{m:?}");
    assert!(fm.take_error().is_none());
}

#[test]
fn scopes_nest_and_count_hits() {
    let fm = small(16, 0);
    let mut a = fm.array::<u32>(100).unwrap();
    assert!(!farmem_objects::in_scope());
    {
        let outer = fm.scope();
        assert_eq!(outer.depth(), 1);
        a.set(3, 9, &outer).unwrap();
        {
            let inner = fm.scope();
            assert_eq!(inner.depth(), 2);
            assert_eq!(*a.get(3, &inner).unwrap(), 9);
            assert_eq!(*a.get(3, &inner).unwrap(), 9);
        }
        assert_eq!(outer.depth(), 1);
        assert!(farmem_objects::in_scope());
    }
    assert!(!farmem_objects::in_scope());
    let m = fm.metrics();
    // The chunk is new: its first dereference makes it locally, with nothing fetched.
    assert_eq!((m.misses, m.bytes_fetched), (0, 0), "{m:?}");
    assert!(m.hits >= 2, "{m:?}");
}

#[test]
fn renew_lets_a_long_scope_release_memory() {
    let fm = small(8, 0);
    let a = fm.array::<u64>(128 * 1024).unwrap();
    let mut s = fm.scope();
    let mut sum = 0u64;
    // for_each_chunk renews between chunks; without that the scan would pin all memory.
    a.for_each_chunk(&mut s, |_, c| sum += c.iter().sum::<u64>())
        .unwrap();
    assert_eq!(sum, 0);
    let m = fm.metrics();
    assert!(m.evacuated_regions > 0, "{m:?}");
    assert_eq!(m.uncached_reads, 0, "renewing kept the scan cached: {m:?}");
}

#[test]
fn vec_push_pop_extend() {
    let fm = small(8, 0);
    let mut v = fm.vec::<[u16; 3]>().unwrap();
    let mut s = fm.scope();
    assert!(v.is_empty());
    for i in 0..3000u16 {
        v.push([i, i ^ 7, i.wrapping_mul(3)], &s).unwrap();
    }
    let more: Vec<[u16; 3]> = (0..5000u16).map(|i| [i, 1, 2]).collect();
    v.extend_from_slice(&more, &mut s).unwrap();
    assert_eq!(v.len(), 8000);
    assert_eq!(
        *v.get(2999, &s).unwrap(),
        [2999, 2999 ^ 7, 2999u16.wrapping_mul(3)]
    );
    assert_eq!(*v.get(3000 + 4999, &s).unwrap(), [4999, 1, 2]);
    assert_eq!(v.pop(&s).unwrap(), Some([4999, 1, 2]));
    assert_eq!(v.len(), 7999);
    let all = v.to_vec(&mut s).unwrap();
    assert_eq!(all.len(), 7999);
    assert_eq!(all[10], [10, 10 ^ 7, 30]);
}

#[test]
fn nocache_reads_do_not_fill_local_memory() {
    let fm = small(16, 0);
    let a = fm.array::<u64>(64 * 1024).unwrap();
    let free_before = fm.metrics().free_regions;
    let mut s = fm.scope();
    let mut n = 0usize;
    a.for_each_chunk_nocache(&mut s, |_, c| n += c.len())
        .unwrap();
    assert_eq!(*a.get_nocache(5, &s).unwrap(), 0);
    drop(s);
    assert_eq!(n, 64 * 1024);
    let m = fm.metrics();
    assert_eq!(m.uncached_reads, 512 + 1, "{m:?}");
    assert_eq!(m.free_regions, free_before, "no region was taken: {m:?}");
}

#[test]
fn stride_prefetcher_reads_ahead_of_a_scan() {
    let fm = small(32, 8);
    let a = fm.array::<u64>(256 * 1024).unwrap();
    for _ in 0..20 {
        let mut s = fm.scope();
        a.for_each_chunk(&mut s, |_, _| {}).unwrap();
        drop(s);
        let m = fm.metrics();
        if m.prefetches_issued > 0 && m.prefetches_used > 0 {
            return;
        }
    }
    panic!("no prefetch was issued and used: {:?}", fm.metrics());
}

#[test]
fn evacuator_settles_above_the_low_watermark() {
    let fm = small(16, 0);
    let a = fm.array::<u64>(64 * 1024).unwrap();
    let mut s = fm.scope();
    a.for_each_chunk(&mut s, |_, _| {}).unwrap();
    drop(s);
    let low = (16.0 * fm.config().low_watermark).ceil() as usize;
    assert!(
        fm.wait_free_regions(low, Duration::from_secs(10)),
        "{:?}",
        fm.metrics()
    );
}
