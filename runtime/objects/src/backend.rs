//! Where remote objects live: the [`Backend`] trait and the in-process backend.
//!
//! A backend stores objects keyed by (data-structure id, object id). The object layer calls it
//! synchronously on a miss (`read`), from the evacuator (`write`, `write_batch`), when a container
//! goes away (`remove`), and from the prefetch issuer through the asynchronous hook
//! ([`Backend::issue_read`] returns a [`PendingRead`] to wait on later, and
//! [`Backend::issue_read_batch`] one per object of a run sent as one request), which is the shape
//! a pipelined network client fits: issue many requests, then collect the responses by id.
//!
//! [`InProcessBackend`] is a sharded concurrent map with a byte capacity; a write that would grow
//! it past the capacity fails with `ErrorKind::OutOfFarMemory`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use farmem_error::{Error, ErrorKind, Result};

/// One read of a batch: the object and the buffer its bytes land in.
pub struct ReadRequest<'a> {
    /// Data-structure id.
    pub ds: u16,
    /// Object id.
    pub obj: u32,
    /// Destination; its length is the object size.
    pub buf: &'a mut [u8],
}

/// One write of a batch.
pub struct WriteRequest<'a> {
    /// Data-structure id.
    pub ds: u16,
    /// Object id.
    pub obj: u32,
    /// The object's bytes.
    pub data: &'a [u8],
}

/// A read issued with [`Backend::issue_read`] whose bytes are collected with
/// [`PendingRead::wait`].
pub struct PendingRead(Handle);

enum Handle {
    One(Box<dyn PendingReadInner>),
    /// Object `index` of a batch shared by its objects' handles: no allocation per object (a
    /// scan's prefetcher makes one handle per 4 KiB chunk).
    OfBatch(Arc<dyn PendingBatchInner>, usize),
}

/// What a backend implements behind a [`PendingRead`].
pub trait PendingReadInner: Send {
    /// Blocks (parks) until the response is in, then copies it into `buf`.
    fn wait(self: Box<Self>, buf: &mut [u8]) -> Result<()>;
}

/// What a backend implements behind the [`PendingRead`]s of one batch read
/// ([`PendingRead::of_batch`]).
pub trait PendingBatchInner: Send + Sync {
    /// Blocks (parks) until the batch's response is in, then copies object `index` into `buf`.
    /// Called at most once per index.
    fn wait_one(&self, index: usize, buf: &mut [u8]) -> Result<()>;
}

impl PendingRead {
    /// Wraps a backend's in-flight read.
    pub fn new(inner: Box<dyn PendingReadInner>) -> PendingRead {
        PendingRead(Handle::One(inner))
    }

    /// The handle of object `index` of an in-flight batch read.
    pub fn of_batch(batch: Arc<dyn PendingBatchInner>, index: usize) -> PendingRead {
        PendingRead(Handle::OfBatch(batch, index))
    }

    /// A read whose bytes are already here.
    pub fn ready(bytes: Vec<u8>) -> PendingRead {
        PendingRead(Handle::One(Box::new(Ready(bytes))))
    }

    /// Waits for the response and copies it into `buf` (whose length is the object size).
    pub fn wait(self, buf: &mut [u8]) -> Result<()> {
        match self.0 {
            Handle::One(inner) => inner.wait(buf),
            Handle::OfBatch(batch, index) => batch.wait_one(index, buf),
        }
    }
}

struct Ready(Vec<u8>);

impl PendingReadInner for Ready {
    fn wait(self: Box<Self>, buf: &mut [u8]) -> Result<()> {
        if self.0.len() != buf.len() {
            return Err(Error::internal(format!(
                "prefetched object has {} bytes, expected {}",
                self.0.len(),
                buf.len()
            )));
        }
        buf.copy_from_slice(&self.0);
        Ok(())
    }
}

/// Far memory as the object layer sees it. Implementations must be thread-safe; every call may
/// block the calling thread of execution (a green thread parks, see `farmem_sched::park`).
pub trait Backend: Send + Sync + 'static {
    /// Reads object (`ds`, `obj`) into `buf`; its length is the object size.
    /// `NotFound` if the object was never written.
    fn read(&self, ds: u16, obj: u32, buf: &mut [u8]) -> Result<()>;

    /// Writes (creates or replaces) object (`ds`, `obj`). `OutOfFarMemory` when it does not fit.
    fn write(&self, ds: u16, obj: u32, data: &[u8]) -> Result<()>;

    /// Removes object (`ds`, `obj`); removing a missing object is not an error.
    fn remove(&self, ds: u16, obj: u32) -> Result<()>;

    /// Reads many objects; the default issues them one by one. A pipelined client sends them all
    /// before waiting.
    fn read_batch(&self, reqs: &mut [ReadRequest<'_>]) -> Result<()> {
        for r in reqs.iter_mut() {
            self.read(r.ds, r.obj, r.buf)?;
        }
        Ok(())
    }

    /// Writes many objects; the default writes them one by one.
    fn write_batch(&self, reqs: &[WriteRequest<'_>]) -> Result<()> {
        for r in reqs {
            self.write(r.ds, r.obj, r.data)?;
        }
        Ok(())
    }

    /// Creates objects `objs` of data structure `ds`, each `len` bytes of zeros, taking their
    /// far capacity now: `OutOfFarMemory` when they do not fit, so a container reports a full
    /// backend when it grows rather than when it is evicted. A read of one of them returns zeros.
    /// The object layer never reads them back before writing them (their pointer words start
    /// fresh), so a backend that can count capacity without storing the zeros may override this.
    /// The default writes the zeros as one [`write_batch`](Self::write_batch), which a pipelined
    /// client sends in a few frames instead of one round trip per object.
    fn create_zeroed(&self, ds: u16, objs: std::ops::Range<u32>, len: usize) -> Result<()> {
        let zeros = vec![0u8; len];
        let reqs: Vec<WriteRequest<'_>> = objs
            .map(|obj| WriteRequest {
                ds,
                obj,
                data: &zeros,
            })
            .collect();
        self.write_batch(&reqs)
    }

    /// Starts reading `len` bytes of object (`ds`, `obj`) and returns a handle to wait on later
    /// (the prefetcher's hook). The default reads synchronously and returns a ready handle.
    fn issue_read(&self, ds: u16, obj: u32, len: usize) -> Result<PendingRead> {
        let mut v = vec![0u8; len];
        self.read(ds, obj, &mut v)?;
        Ok(PendingRead::ready(v))
    }

    /// Starts reading several objects of data structure `ds`, each given as (`obj`, `len`), and
    /// returns one handle per object in the same order (the batch prefetcher's hook). A pipelined
    /// client sends them as one batch-read frame and lands them together, so a scan pays one
    /// request's overhead per batch instead of per chunk. The default issues them one by one
    /// with [`Backend::issue_read`]; on an error none of the returned handles exists.
    fn issue_read_batch(&self, ds: u16, reads: &[(u32, usize)]) -> Result<Vec<PendingRead>> {
        reads
            .iter()
            .map(|&(obj, len)| self.issue_read(ds, obj, len))
            .collect()
    }

    /// Runs the memory server's remote function `function` next to data structure `ds` (AIFM's
    /// remote agent): the function receives the server's id for `ds` (u64 little-endian)
    /// followed by `args`, and the structure is created on the server first if it does not
    /// exist yet. The default (a backend without a remote agent) fails with
    /// `ErrorKind::Unsupported`.
    fn compute(&self, ds: u16, function: &str, args: &[u8]) -> Result<Vec<u8>> {
        let _ = args;
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "this backend runs no remote functions (asked for {function:?} on data structure \
                 {ds}): use a TcpBackend to a farmem-server"
            ),
        ))
    }
    /// Runs the memory server's remote function `function` next to data structure `ds` and the
    /// data structures `with`, for a call that names several (the remote agent's `Map` and
    /// `Pairwise` write one column from others). They must be on one server: the function
    /// receives the number of structures (`1 + with.len()`, one byte), the server's ids of `ds`
    /// and of each of `with` in order (u64 little-endian each), then `args`. Every structure is
    /// created on the server first if it does not exist yet. Fails with `Unsupported` where
    /// they cannot be together on one server, or (the default) without a remote agent.
    fn compute_with(&self, ds: u16, with: &[u16], function: &str, args: &[u8]) -> Result<Vec<u8>> {
        let _ = args;
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "this backend runs no remote functions over several data structures (asked for \
                 {function:?} on {ds} with {with:?})"
            ),
        ))
    }
}

const SHARDS: usize = 64;

type ShardMap = HashMap<(u16, u32), Box<[u8]>>;
type Shard = Mutex<ShardMap>;

/// An in-process backend: a sharded concurrent map of (ds, obj) → bytes with a byte capacity.
pub struct InProcessBackend {
    shards: Box<[Shard]>,
    used: AtomicU64,
    capacity: u64,
}

impl InProcessBackend {
    /// A backend that holds at most `capacity_bytes` of object data.
    pub fn new(capacity_bytes: u64) -> InProcessBackend {
        InProcessBackend {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            used: AtomicU64::new(0),
            capacity: capacity_bytes,
        }
    }

    /// Bytes of object data stored now.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity
    }

    fn shard(&self, ds: u16, obj: u32) -> Result<std::sync::MutexGuard<'_, ShardMap>> {
        let h = (u64::from(obj).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(ds)) >> 58;
        self.shards[h as usize % SHARDS]
            .lock()
            .map_err(|_| Error::internal("in-process backend shard lock poisoned"))
    }

    /// Reserves `grow` more bytes against the capacity.
    fn charge(&self, grow: u64, ds: u16, obj: u32) -> Result<()> {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let next = cur.saturating_add(grow);
            if next > self.capacity {
                return Err(Error::new(
                    ErrorKind::OutOfFarMemory,
                    format!(
                        "in-process backend full writing object ({ds}, {obj}): {cur} of {} bytes used, {grow} more needed; give the backend more capacity",
                        self.capacity
                    ),
                ));
            }
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(a) => cur = a,
            }
        }
    }
}

impl Backend for InProcessBackend {
    fn read(&self, ds: u16, obj: u32, buf: &mut [u8]) -> Result<()> {
        let shard = self.shard(ds, obj)?;
        match shard.get(&(ds, obj)) {
            Some(data) if data.len() == buf.len() => {
                buf.copy_from_slice(data);
                Ok(())
            }
            Some(data) => Err(Error::invalid(format!(
                "object ({ds}, {obj}) has {} bytes, read asked for {}",
                data.len(),
                buf.len()
            ))),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("object ({ds}, {obj}) was never written to the in-process backend"),
            )),
        }
    }

    fn write(&self, ds: u16, obj: u32, data: &[u8]) -> Result<()> {
        let mut shard = self.shard(ds, obj)?;
        match shard.get_mut(&(ds, obj)) {
            Some(old) if old.len() == data.len() => {
                old.copy_from_slice(data);
                Ok(())
            }
            Some(old) => {
                let (o, n) = (old.len() as u64, data.len() as u64);
                if n > o {
                    self.charge(n - o, ds, obj)?;
                } else {
                    self.used.fetch_sub(o - n, Ordering::Relaxed);
                }
                *old = data.into();
                Ok(())
            }
            None => {
                self.charge(data.len() as u64, ds, obj)?;
                shard.insert((ds, obj), data.into());
                Ok(())
            }
        }
    }

    fn remove(&self, ds: u16, obj: u32) -> Result<()> {
        if let Some(old) = self.shard(ds, obj)?.remove(&(ds, obj)) {
            self.used.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn capacity_yields_out_of_far_memory_and_remove_frees() {
        let b = InProcessBackend::new(100);
        b.write(1, 1, &[7u8; 64]).unwrap();
        let e = b.write(1, 2, &[0u8; 64]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfFarMemory);
        assert!(e.context().contains("100 bytes"), "{e}");
        b.write(1, 1, &[9u8; 64]).unwrap(); // overwrite in place needs no room
        let mut buf = [0u8; 64];
        b.read(1, 1, &mut buf).unwrap();
        assert_eq!(buf, [9u8; 64]);
        b.remove(1, 1).unwrap();
        assert_eq!(b.used_bytes(), 0);
        b.write(1, 2, &[0u8; 64]).unwrap();
        assert_eq!(
            b.read(1, 1, &mut buf).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let p = b.issue_read(1, 2, 64).unwrap();
        buf = [1u8; 64];
        p.wait(&mut buf).unwrap();
        assert_eq!(buf, [0u8; 64]);
        b.write(1, 3, &[3u8; 32]).unwrap();
        let batch = b.issue_read_batch(1, &[(3, 32), (2, 64)]).unwrap();
        assert_eq!(batch.len(), 2);
        let (mut small, mut big) = ([9u8; 32], [9u8; 64]);
        let mut it = batch.into_iter();
        it.next().unwrap().wait(&mut small).unwrap();
        it.next().unwrap().wait(&mut big).unwrap();
        assert_eq!(
            (small, big),
            ([3u8; 32], [0u8; 64]),
            "batch answers come in request order"
        );
        assert_eq!(
            b.issue_read_batch(1, &[(2, 64), (1, 64)])
                .err()
                .map(|e| e.kind()),
            Some(ErrorKind::NotFound),
            "a missing object fails the batch"
        );
    }
}
