//! Container flush (before a remote-agent call): every dirty local chunk is written to the
//! backend and stays cached, clean; a chunk never written is written as zeros; a flush racing
//! the evacuator (local memory a few percent of the data) never leaves far memory behind the
//! container.

use std::sync::Arc;
use std::time::Duration;

use farmem_objects::{Backend, Config, FarMemory, InProcessBackend, RemVec};

fn config(local_regions: usize) -> Config {
    Config::builder()
        .local_bytes(local_regions * (16 << 10))
        .region_bytes(16 << 10)
        .chunk_bytes(1024)
        .prefetch_depth(0)
        .reserve_far_on_grow(false)
        .alloc_wait(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn instance(local_regions: usize) -> (FarMemory, Arc<InProcessBackend>) {
    let backend = Arc::new(InProcessBackend::new(1 << 30));
    let fm = FarMemory::new(config(local_regions), backend.clone()).unwrap();
    (fm, backend)
}

/// Every chunk of `v` as far memory holds it, against `model`.
fn assert_far_matches(backend: &InProcessBackend, v: &RemVec<u64>, model: &[u64]) {
    let per = v.chunk_len();
    let mut buf = vec![0u8; per * 8];
    for c in 0..v.num_chunks() {
        backend
            .read(v.ds_id(), c as u32, &mut buf)
            .unwrap_or_else(|e| panic!("chunk {c} is not in far memory: {e}"));
        let end = model.len().min((c + 1) * per);
        for (i, want) in model[c * per..end].iter().enumerate() {
            let got = u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap());
            assert_eq!(got, *want, "element {} of chunk {c}", c * per + i);
        }
    }
}

#[test]
fn flush_writes_dirty_chunks_back_and_keeps_them_cached_and_clean() {
    let (fm, backend) = instance(64);
    let mut v = fm.vec::<u64>().unwrap();
    let model: Vec<u64> = (0..1000).map(|i| i * 3 + 1).collect();
    let mut s = fm.scope();
    v.extend_from_slice(&model, &mut s).unwrap();
    drop(s);
    assert_eq!(
        backend.used_bytes(),
        0,
        "nothing evicted yet: far memory is empty"
    );
    let chunks = v.num_chunks();
    assert_eq!(v.resident_chunks(), chunks);
    assert_eq!(v.flush().unwrap(), chunks);
    assert_far_matches(&backend, &v, &model);
    assert_eq!(v.resident_chunks(), chunks, "flushed chunks stay cached");
    assert_eq!(v.flush().unwrap(), 0, "flushed chunks are clean");
    assert_eq!(fm.metrics().misses, 0, "a flush fetches nothing");

    // One write dirties one chunk again.
    let mut model = model;
    let s = fm.scope();
    v.set(517, 99, &s).unwrap();
    drop(s);
    model[517] = 99;
    assert_eq!(v.flush().unwrap(), 1);
    assert_far_matches(&backend, &v, &model);
}

#[test]
fn chunks_never_written_are_flushed_as_zeros() {
    let (fm, backend) = instance(64);
    let a = fm.array::<u64>(500).unwrap();
    assert_eq!(
        backend.used_bytes(),
        0,
        "fresh chunks take capacity at write-back"
    );
    assert_eq!(a.resident_chunks(), 0);
    assert_eq!(a.flush().unwrap(), a.num_chunks());
    let mut buf = vec![1u8; a.chunk_len() * 8];
    for c in 0..a.num_chunks() {
        backend.read(a.ds_id(), c as u32, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0), "chunk {c}");
    }
    assert_eq!(
        a.flush().unwrap(),
        0,
        "written once, they are no longer fresh"
    );
}

#[test]
fn flush_racing_the_evacuator_leaves_far_memory_current() {
    // 8 regions of 16 KiB against 400 KiB of data: the evacuator works all along.
    let (fm, backend) = instance(8);
    let n = 50_000usize;
    let mut v = fm.vec::<u64>().unwrap();
    let mut model: Vec<u64> = (0..n as u64).collect();
    let mut s = fm.scope();
    v.extend_from_slice(&model, &mut s).unwrap();
    drop(s);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20u64 {
        {
            let s = fm.scope();
            for _ in 0..300 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed % n as u64) as usize;
                model[i] = round << 32 | i as u64;
                v.set(i, model[i], &s).unwrap();
            }
        }
        v.flush().unwrap();
        assert_far_matches(&backend, &v, &model);
    }
    assert!(fm.metrics().bytes_written_back > 0);
    assert!(fm.take_error().is_none());
}
