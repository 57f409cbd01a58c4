//! New chunks start fresh: creating them takes far capacity at once (one batch), their first
//! dereference makes their zeros locally with nothing fetched, and the evacuator writes them
//! back like any dirty object.

use std::sync::Arc;
use std::time::Duration;

use farmem_objects::{Backend, Config, ErrorKind, FarMemory, InProcessBackend};

fn config(local_regions: usize) -> Config {
    Config::builder()
        .local_bytes(local_regions * (16 << 10))
        .region_bytes(16 << 10)
        .chunk_bytes(1024)
        .alloc_shards(1)
        .prefetch_depth(0)
        .alloc_wait(Duration::from_millis(200))
        .build()
        .unwrap()
}

fn instance(local_regions: usize, far_bytes: u64) -> (FarMemory, Arc<InProcessBackend>) {
    let backend = Arc::new(InProcessBackend::new(far_bytes));
    let fm = FarMemory::new(config(local_regions), backend.clone()).unwrap();
    (fm, backend)
}

#[test]
fn reserved_chunks_take_capacity_now_and_are_never_fetched_before_their_first_write() {
    let (fm, backend) = instance(64, 64 << 20);
    let mut v = fm.vec::<u64>().unwrap();
    v.reserve(10_000).unwrap();
    assert_eq!(v.len(), 0, "reserving does not change the length");
    let chunks = 10_000usize.div_ceil(v.chunk_len()) as u64;
    assert_eq!(
        backend.used_bytes(),
        chunks * 1024,
        "capacity is taken when reserving"
    );
    let mut s = fm.scope();
    let src: Vec<u64> = (0..10_000u64).map(|i| i * 3 + 1).collect();
    v.extend_from_slice(&src, &mut s).unwrap();
    assert_eq!(
        backend.used_bytes(),
        chunks * 1024,
        "the extend needed no new chunk"
    );
    let m = fm.metrics();
    assert_eq!(
        (m.misses, m.bytes_fetched),
        (0, 0),
        "nothing fetched: {m:?}"
    );
    assert_eq!(v.to_vec(&mut s).unwrap(), src);
}

#[test]
fn fresh_chunks_are_written_back_when_evicted_and_read_back_intact() {
    // 8 regions of 16 KiB against 320 KiB of chunks: most are evicted while being filled.
    let (fm, _backend) = instance(8, 64 << 20);
    let mut a = fm.array::<u64>(40_000).unwrap();
    let mut s = fm.scope();
    let src: Vec<u64> = (0..40_000u64).map(|i| i ^ 0x5a5a).collect();
    a.write_slice(0, &src, &mut s).unwrap();
    assert_eq!(a.to_vec(&mut s).unwrap(), src);
    let m = fm.metrics();
    assert!(
        m.bytes_written_back > 0 && m.misses > 0,
        "evicted chunks went out and came back: {m:?}"
    );
    assert!(fm.take_error().is_none());
}

#[test]
fn untouched_fresh_chunks_read_as_zeros_cached_or_not() {
    let (fm, _backend) = instance(16, 64 << 20);
    let a = fm.array::<u32>(5_000).unwrap();
    let s = fm.scope();
    assert_eq!(*a.get_nocache(4_999, &s).unwrap(), 0);
    assert_eq!(*a.get(17, &s).unwrap(), 0);
    assert!(a.chunk(3, &s).unwrap().iter().all(|&x| x == 0));
    let m = fm.metrics();
    assert_eq!((m.misses, m.bytes_fetched), (0, 0), "{m:?}");
    assert_eq!(m.uncached_reads, 1, "{m:?}");
}

#[test]
fn a_reservation_that_does_not_fit_is_out_of_far_memory_and_takes_nothing() {
    let (fm, backend) = instance(16, 20 * 1024);
    let mut v = fm.vec::<u64>().unwrap();
    v.reserve(128 * 10).unwrap();
    assert_eq!(backend.used_bytes(), 10 * 1024);
    let e = v.reserve(128 * 21).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfFarMemory, "{e}");
    assert_eq!(
        backend.used_bytes(),
        10 * 1024,
        "chunks created before the failure were removed again"
    );
    // The vector still works within what it holds.
    let s = fm.scope();
    for i in 0..128 * 10 {
        v.push(i, &s).unwrap();
    }
    assert_eq!(*v.get(128 * 10 - 1, &s).unwrap(), 128 * 10 - 1);
    assert_eq!(backend.used_bytes(), 10 * 1024);
}

#[test]
fn create_zeroed_stores_zeros_that_a_read_returns() {
    let b = InProcessBackend::new(1 << 20);
    b.create_zeroed(3, 10..14, 64).unwrap();
    assert_eq!(b.used_bytes(), 4 * 64);
    let mut buf = [9u8; 64];
    b.read(3, 13, &mut buf).unwrap();
    assert_eq!(buf, [0u8; 64]);
    assert_eq!(
        b.read(3, 14, &mut buf).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn deferred_reservation_reports_a_full_backend_when_write_backs_fail() {
    let backend = Arc::new(InProcessBackend::new(16 * 1024));
    let cfg = Config::builder()
        .local_bytes(8 * (16 << 10))
        .region_bytes(16 << 10)
        .chunk_bytes(1024)
        .alloc_shards(1)
        .prefetch_depth(0)
        .alloc_wait(Duration::from_millis(100))
        .grace_timeout(Duration::from_millis(20))
        .reserve_far_on_grow(false)
        .build()
        .unwrap();
    let fm = FarMemory::new(cfg, backend.clone()).unwrap();
    // 400 KiB of chunks against 16 KiB of far memory: creating them asks the backend nothing.
    let mut a = fm.array::<u64>(128 * 400).unwrap();
    assert_eq!(backend.used_bytes(), 0);
    let mut s = fm.scope();
    let src = vec![7u64; 128 * 400];
    let e = a.write_slice(0, &src, &mut s).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfFarMemory, "{e}");
    assert!(e.context().contains("capacity"), "says what to do: {e}");
    let latched = fm.take_error().expect("the failed write-back is reported");
    assert_eq!(latched.kind(), ErrorKind::OutOfFarMemory, "{latched}");
    assert!(backend.used_bytes() <= 16 * 1024);
}
