//! Out of local memory, out of far memory and bad arguments are `Error`s with clear kinds.

use std::time::Duration;

use farmem_objects::{Config, ErrorKind, FarMemory};

fn cfg(regions: usize) -> Config {
    Config::builder()
        .local_bytes(regions * (16 << 10))
        .region_bytes(16 << 10)
        .chunk_bytes(1024)
        .alloc_shards(1)
        .prefetch_depth(0)
        .alloc_wait(Duration::from_millis(30))
        .grace_timeout(Duration::from_millis(10))
        .build()
        .unwrap()
}

#[test]
fn out_of_far_memory_on_create_and_push() {
    let fm = FarMemory::in_process(cfg(8), 10 * 1024).unwrap();
    let e = fm.array::<u64>(100_000).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfFarMemory);
    assert!(e.context().contains("capacity"), "{e}");
    let mut v = fm.vec::<u64>().unwrap();
    let s = fm.scope();
    let mut pushed = 0;
    let err = loop {
        match v.push(pushed, &s) {
            Ok(()) => pushed += 1,
            Err(e) => break e,
        }
        assert!(pushed < 100_000, "the backend never filled up");
    };
    assert_eq!(err.kind(), ErrorKind::OutOfFarMemory);
    assert_eq!(
        v.len() as u64,
        pushed,
        "a failed push leaves the length alone"
    );
    assert_eq!(*v.get(pushed as usize - 1, &s).unwrap(), pushed - 1);
}

#[test]
fn a_scope_that_pins_all_local_memory_gets_out_of_local_memory_on_get_mut() {
    let fm = FarMemory::in_process(cfg(4), 64 << 20).unwrap();
    let mut a = fm.array::<u64>(128 * 200).unwrap();
    let s = fm.scope();
    // Dereference (and so pin) chunk after chunk in one scope without renewing.
    let mut failure = None;
    for c in 0..200 {
        match a.get_mut(c * 128, &s) {
            Ok(x) => *x = c as u64 + 1,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let e = failure.expect("4 regions of 16 KiB cannot hold 200 KiB pinned by one scope");
    assert_eq!(e.kind(), ErrorKind::OutOfLocalMemory);
    assert!(
        e.context().contains("renew"),
        "message says what to do: {e}"
    );
    // In the same pinned state, reads still work (uncached) and `set` writes through.
    assert_eq!(*a.get(199 * 128, &s).unwrap(), 0);
    a.set(199 * 128 + 5, 77, &s).unwrap();
    assert_eq!(*a.get(199 * 128 + 5, &s).unwrap(), 77);
    let m = fm.metrics();
    assert!(m.uncached_reads > 0 && m.write_throughs > 0, "{m:?}");
    drop(s);
    // Once the scope ends, everything is readable and nothing was lost.
    let s = fm.scope();
    for c in 0..200 {
        let v = *a.get(c * 128, &s).unwrap();
        assert!(v == c as u64 + 1 || v == 0, "chunk {c}: {v}");
    }
    assert_eq!(*a.get(199 * 128 + 5, &s).unwrap(), 77);
}

#[test]
fn bad_configuration_and_element_types_are_invalid_arguments() {
    let e = Config::builder().local_bytes(1000).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = Config::builder()
        .region_bytes(4096)
        .chunk_bytes(4096)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let fm = FarMemory::in_process(cfg(8), 1 << 20).unwrap();
    // Objects must fit half a 16 KiB region with their header: 6 KiB elements do, 9 KiB do not.
    assert!(fm.array::<[u64; 768]>(4).is_ok());
    let e = fm.array::<[u64; 1152]>(4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = fm.array::<[u8; 0]>(4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

/// An in-process backend whose writes of one object fail (a server that rejects it).
struct RejectsOneObject {
    inner: farmem_objects::InProcessBackend,
    rejected: std::sync::atomic::AtomicU32,
}

impl farmem_objects::Backend for RejectsOneObject {
    fn read(&self, ds: u16, obj: u32, buf: &mut [u8]) -> farmem_objects::Result<()> {
        self.inner.read(ds, obj, buf)
    }

    fn write(&self, ds: u16, obj: u32, data: &[u8]) -> farmem_objects::Result<()> {
        if obj == self.rejected.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(farmem_objects::Error::new(
                ErrorKind::Io,
                format!("test backend rejects object {obj}"),
            ));
        }
        self.inner.write(ds, obj, data)
    }

    fn remove(&self, ds: u16, obj: u32) -> farmem_objects::Result<()> {
        self.inner.remove(ds, obj)
    }
}

#[test]
fn a_failed_write_back_keeps_only_that_object_local_and_loses_nothing() {
    let backend = std::sync::Arc::new(RejectsOneObject {
        inner: farmem_objects::InProcessBackend::new(64 << 20),
        rejected: std::sync::atomic::AtomicU32::new(u32::MAX),
    });
    let fm = FarMemory::new(cfg(8), backend.clone()).unwrap();
    let mut a = fm.array::<u64>(128 * 400).unwrap();
    // Chunk 3's write-backs fail from now on (its creation went through).
    backend
        .rejected
        .store(3, std::sync::atomic::Ordering::Relaxed);
    let mut s = fm.scope();
    let src: Vec<u64> = (0..128 * 400).map(|i| i * 7 + 1).collect();
    a.write_slice(0, &src, &mut s).unwrap();
    assert_eq!(a.to_vec(&mut s).unwrap(), src, "nothing lost");
    let m = fm.metrics();
    assert!(m.writeback_errors > 0, "{m:?}");
    assert!(
        m.bytes_written_back >= 50 * 1024,
        "the other chunks were written back: {m:?}"
    );
    let e = fm.take_error().expect("the failure is reported");
    assert!(e.context().contains("object 3"), "{e}");
}
