//! Far memory over several memory servers: a [`Backend`] that places each data structure on one
//! of several backends (one [`TcpBackend`](crate::TcpBackend) per `farmem-server`, usually).
//!
//! # Placement
//!
//! The unit of placement is the **data structure** (`ds`), not the object: a container's
//! objects, its prefetch batches (`issue_read_batch` names one `ds`) and its remote-agent
//! [`compute`](Backend::compute) calls all go to one server, so a remote function runs next to
//! all of its data (AIFM's remote agent) and a batch of one container is one request.
//!
//! A `ds` is placed the first time something is stored for it (a write, a batch write, or a
//! `compute`, which creates the structure on the server), by **power of two choices**
//! (Infiniswap NSDI'17 §4.2, after Mitzenmacher): draw two distinct servers at random and take
//! the one this client has placed fewer bytes on. Bytes are counted per server as this client
//! writes them (object writes, and `compute` argument bytes); nothing is subtracted on removal,
//! since a remove does not say how large the object was, so the count measures the write load
//! each server got rather than its occupancy.
//!
//! ```text
//!   placement: [AtomicU8; 65536]   ds → server index, UNPLACED (255) until first stored
//!   placed:    [AtomicU64; n]      bytes written per server (the choice's load signal)
//!   placing:   [sched Mutex; 16]   striped by ds; held only while a ds is being placed
//! ```
//!
//! # Invariant: a data structure never moves
//!
//! Once `placement[ds]` holds a server it never changes for the life of this backend, so every
//! later read, write, remove and compute of `ds` reaches the server that holds its objects.
//! The read path is one `Acquire` load of `placement[ds]`, no lock. The slot is published only
//! after the placing operation succeeded, under the stripe lock of `ds`; a second thread that
//! wants to place the same `ds` waits on that lock (a farmem_sched mutex: a green thread parks,
//! its worker runs others) and then finds it placed. An operation that only reads (`read`,
//! `read_batch`, `issue_read*`) on an unplaced `ds` answers `NotFound` (nothing was ever
//! stored for it, exactly as a single server would answer); `remove` of one is a no-op.
//!
//! A `ds` id that the object layer reuses after a container is dropped keeps its server: the
//! old container removed its objects there, and the new one simply lives on the same server.
//!
//! # A server that cannot take a new data structure
//!
//! When the placing operation fails on the first choice with `OutOfFarMemory` (that server is
//! full) or `Disconnected` (that server is gone), it is retried once on the other choice, and
//! the `ds` is placed there if it succeeds. This is safe because the `ds` was not published yet:
//! nobody else has stored anything for it on the first choice. What the failed attempt may
//! leave behind on the first server is at most an empty structure (a `TcpBackend` creates the
//! structure before writing; a failed `compute` may have created it). A batch write places each
//! new `ds` with its first object alone, so the retry never leaves partial batches behind.
//! Other errors are returned as they are and leave the `ds` unplaced.
//!
//! # Failures of one server
//!
//! Nothing fails over: a server that dies takes its data structures with it (their calls fail
//! with the server's `Disconnected`), while data structures on other servers keep working. Lost
//! far memory is lost data (see `tcp_backend`); replication is the layer above's decision.
//!
//! # Batches
//!
//! `read_batch` and `write_batch` may span data structures and so servers: a batch whose
//! requests all map to one server goes through unchanged; otherwise it is split into one
//! sub-batch per server, sent server after server.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use farmem_error::{Error, ErrorKind, Result};
use farmem_sched::sync::Mutex;

use crate::backend::{Backend, PendingRead, ReadRequest, WriteRequest};

/// The placement-table value of a `ds` that is not on any server yet.
const UNPLACED: u8 = u8::MAX;

/// Most servers one [`ShardedBackend`] spreads over (server indices are `u8`, one value is
/// the "unplaced" mark).
pub const MAX_SHARDED_SERVERS: usize = UNPLACED as usize;

/// Stripes of the placement lock (a `ds` uses stripe `ds % PLACING_STRIPES`).
const PLACING_STRIPES: usize = 16;

/// A [`Backend`] over several backends, one per memory server, placing each data structure on
/// one of them by power of two choices (see the module note).
pub struct ShardedBackend {
    servers: Vec<Arc<dyn Backend>>,
    placement: Box<[AtomicU8]>,
    placed: Box<[AtomicU64]>,
    placing: Box<[Mutex<()>]>,
    rng: AtomicU64,
}

impl ShardedBackend {
    /// Spreads data structures over `servers` (1 to [`MAX_SHARDED_SERVERS`] backends), with
    /// random choices seeded from the clock.
    pub fn new(servers: Vec<Arc<dyn Backend>>) -> Result<ShardedBackend> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        ShardedBackend::with_seed(servers, seed)
    }

    /// As [`new`](Self::new), with the random choices drawn from `seed` (reproducible
    /// placements for a single-threaded sequence of calls).
    pub fn with_seed(servers: Vec<Arc<dyn Backend>>, seed: u64) -> Result<ShardedBackend> {
        if servers.is_empty() {
            return Err(Error::invalid(
                "a sharded backend over 0 servers: give it at least one backend",
            ));
        }
        if servers.len() > MAX_SHARDED_SERVERS {
            return Err(Error::invalid(format!(
                "a sharded backend over {} servers: at most {MAX_SHARDED_SERVERS} are supported",
                servers.len()
            )));
        }
        Ok(ShardedBackend {
            placed: servers.iter().map(|_| AtomicU64::new(0)).collect(),
            servers,
            placement: (0..1usize << 16).map(|_| AtomicU8::new(UNPLACED)).collect(),
            placing: (0..PLACING_STRIPES).map(|_| Mutex::new(())).collect(),
            rng: AtomicU64::new(seed),
        })
    }

    /// The backends, in the order given.
    pub fn servers(&self) -> &[Arc<dyn Backend>] {
        &self.servers
    }

    /// The index (into [`servers`](Self::servers)) of the server holding data structure `ds`,
    /// `None` while nothing was stored for it.
    pub fn server_of(&self, ds: u16) -> Option<usize> {
        match self.placement[usize::from(ds)].load(Ordering::Acquire) {
            UNPLACED => None,
            s => Some(usize::from(s)),
        }
    }

    /// Bytes this client has written to each server (the load power of two choices compares).
    pub fn placed_bytes(&self) -> Vec<u64> {
        self.placed
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// The next random number (splitmix64 over an atomic counter: no lock, any thread).
    fn random(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Two choices, the less loaded first: (preferred, fallback). With one server both are it.
    fn choices(&self) -> (usize, usize) {
        let n = self.servers.len();
        if n == 1 {
            return (0, 0);
        }
        let r = self.random();
        let a = (r % n as u64) as usize;
        let b = (a + 1 + ((r >> 32) % (n as u64 - 1)) as usize) % n;
        let load = |i: usize| self.placed[i].load(Ordering::Relaxed);
        if load(b) < load(a) {
            (b, a)
        } else {
            (a, b)
        }
    }

    fn charge(&self, server: usize, bytes: usize) {
        self.placed[server].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Runs `op` on the server of `ds`, placing `ds` first if it is not placed yet (the op is
    /// then the placing operation; see the module note for the retry on the other choice).
    fn on_server_placing<T>(
        &self,
        ds: u16,
        op: impl Fn(usize, &dyn Backend) -> Result<T>,
    ) -> Result<T> {
        if let Some(s) = self.server_of(ds) {
            return op(s, &*self.servers[s]);
        }
        let _placing = self.placing[usize::from(ds) % PLACING_STRIPES].lock();
        // Placed by someone else while we waited for the stripe?
        if let Some(s) = self.server_of(ds) {
            return op(s, &*self.servers[s]);
        }
        let (first, second) = self.choices();
        let (server, value) = match op(first, &*self.servers[first]) {
            Ok(v) => (first, v),
            Err(e)
                if second != first
                    && matches!(
                        e.kind(),
                        ErrorKind::OutOfFarMemory | ErrorKind::Disconnected
                    ) =>
            {
                let v = op(second, &*self.servers[second]).map_err(|e2| {
                    e2.with_context(format!(
                        "placing data structure {ds} on server {second} after server {first} \
                         could not take it ({e})"
                    ))
                })?;
                (second, v)
            }
            Err(e) => return Err(e),
        };
        // `server` < MAX_SHARDED_SERVERS (checked at construction), so it fits and is not UNPLACED.
        self.placement[usize::from(ds)].store(server as u8, Ordering::Release);
        Ok(value)
    }

    /// The server of `ds` for an operation that only reads, or `NotFound` when unplaced.
    fn placed_or_not_found(&self, ds: u16, obj: u32) -> Result<usize> {
        self.server_of(ds).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "object ({ds}, {obj}) was never written: data structure {ds} is on none of \
                     the {} servers",
                    self.servers.len()
                ),
            )
        })
    }

    /// The server every `ds` of a batch is placed on, if they all are on one.
    fn single_server(&self, mut ds: impl Iterator<Item = u16>) -> Option<usize> {
        let first = self.server_of(ds.next()?)?;
        ds.all(|d| self.server_of(d) == Some(first))
            .then_some(first)
    }
}

impl Backend for ShardedBackend {
    fn read(&self, ds: u16, obj: u32, buf: &mut [u8]) -> Result<()> {
        let s = self.placed_or_not_found(ds, obj)?;
        self.servers[s].read(ds, obj, buf)
    }

    fn write(&self, ds: u16, obj: u32, data: &[u8]) -> Result<()> {
        self.on_server_placing(ds, |s, server| {
            server.write(ds, obj, data)?;
            self.charge(s, data.len());
            Ok(())
        })
    }

    fn remove(&self, ds: u16, obj: u32) -> Result<()> {
        match self.server_of(ds) {
            Some(s) => self.servers[s].remove(ds, obj),
            None => Ok(()),
        }
    }

    fn read_batch(&self, reqs: &mut [ReadRequest<'_>]) -> Result<()> {
        if let Some(s) = self.single_server(reqs.iter().map(|r| r.ds)) {
            return self.servers[s].read_batch(reqs);
        }
        let mut per_server: Vec<Vec<ReadRequest<'_>>> =
            self.servers.iter().map(|_| Vec::new()).collect();
        for r in reqs.iter_mut() {
            let s = self.placed_or_not_found(r.ds, r.obj)?;
            per_server[s].push(ReadRequest {
                ds: r.ds,
                obj: r.obj,
                buf: &mut *r.buf,
            });
        }
        for (s, mut sub) in per_server.into_iter().enumerate() {
            if !sub.is_empty() {
                self.servers[s].read_batch(&mut sub)?;
            }
        }
        Ok(())
    }

    fn write_batch(&self, reqs: &[WriteRequest<'_>]) -> Result<()> {
        // Place every new ds with its first object alone (see the module note), then send the
        // rest per server.
        let mut placed_now = vec![false; reqs.len()];
        for (i, r) in reqs.iter().enumerate() {
            if self.server_of(r.ds).is_none() {
                self.write(r.ds, r.obj, r.data)?;
                placed_now[i] = true;
            }
        }
        let rest = reqs.iter().zip(&placed_now).filter(|(_, &p)| !p);
        if !placed_now.contains(&true) {
            if let Some(s) = self.single_server(reqs.iter().map(|r| r.ds)) {
                self.servers[s].write_batch(reqs)?;
                self.charge(s, reqs.iter().map(|r| r.data.len()).sum());
                return Ok(());
            }
        }
        let mut per_server: Vec<Vec<WriteRequest<'_>>> =
            self.servers.iter().map(|_| Vec::new()).collect();
        for (r, _) in rest {
            let s = self.server_of(r.ds).ok_or_else(|| {
                Error::internal(format!("data structure {} lost its placement", r.ds))
            })?;
            per_server[s].push(WriteRequest {
                ds: r.ds,
                obj: r.obj,
                data: r.data,
            });
        }
        for (s, sub) in per_server.iter().enumerate() {
            if !sub.is_empty() {
                self.servers[s].write_batch(sub)?;
                self.charge(s, sub.iter().map(|r| r.data.len()).sum());
            }
        }
        Ok(())
    }

    fn issue_read(&self, ds: u16, obj: u32, len: usize) -> Result<PendingRead> {
        let s = self.placed_or_not_found(ds, obj)?;
        self.servers[s].issue_read(ds, obj, len)
    }

    fn issue_read_batch(&self, ds: u16, reads: &[(u32, usize)]) -> Result<Vec<PendingRead>> {
        let Some(&(obj, _)) = reads.first() else {
            return Ok(Vec::new());
        };
        let s = self.placed_or_not_found(ds, obj)?;
        self.servers[s].issue_read_batch(ds, reads)
    }

    fn compute(&self, ds: u16, function: &str, args: &[u8]) -> Result<Vec<u8>> {
        self.on_server_placing(ds, |s, server| {
            let out = server.compute(ds, function, args)?;
            self.charge(s, args.len());
            Ok(out)
        })
    }

    /// `ds` must hold data already (be placed); each of `with` not placed yet is placed on
    /// `ds`'s server by this call (under its stripe lock, published once the call succeeded),
    /// and one placed on another server makes the call `Unsupported` (a remote function reaches
    /// only its own server's data).
    fn compute_with(&self, ds: u16, with: &[u16], function: &str, args: &[u8]) -> Result<Vec<u8>> {
        let s = self.placed_or_not_found(ds, 0)?;
        let mut stripes: Vec<usize> = with
            .iter()
            .filter(|&&w| self.server_of(w).is_none())
            .map(|&w| usize::from(w) % PLACING_STRIPES)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        // Ascending stripe order: two such calls cannot wait for each other.
        let _held: Vec<_> = stripes.iter().map(|&i| self.placing[i].lock()).collect();
        if let Some(&w) = with
            .iter()
            .find(|&&w| self.server_of(w).is_some_and(|x| x != s))
        {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "remote function {function}: data structure {w} is on server {:?} and {ds} on \
                     server {s}; a call over several must find them on one",
                    self.server_of(w)
                ),
            ));
        }
        let out = self.servers[s].compute_with(ds, with, function, args)?;
        self.charge(s, args.len());
        for &w in with {
            if self.server_of(w).is_none() {
                // `s` < MAX_SHARDED_SERVERS (checked at construction).
                self.placement[usize::from(w)].store(s as u8, Ordering::Release);
            }
        }
        Ok(out)
    }
}

impl std::fmt::Debug for ShardedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedBackend")
            .field("servers", &self.servers.len())
            .field("placed_bytes", &self.placed_bytes())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::InProcessBackend;

    fn over(capacities: &[u64]) -> (Vec<Arc<InProcessBackend>>, ShardedBackend) {
        let inner: Vec<Arc<InProcessBackend>> = capacities
            .iter()
            .map(|&c| Arc::new(InProcessBackend::new(c)))
            .collect();
        let dyns = inner
            .iter()
            .map(|b| b.clone() as Arc<dyn Backend>)
            .collect();
        (inner, ShardedBackend::with_seed(dyns, 42).unwrap())
    }

    #[test]
    fn rejects_zero_and_too_many_servers() {
        assert_eq!(
            ShardedBackend::new(Vec::new()).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let many: Vec<Arc<dyn Backend>> = (0..=MAX_SHARDED_SERVERS)
            .map(|_| Arc::new(InProcessBackend::new(1)) as Arc<dyn Backend>)
            .collect();
        let e = ShardedBackend::new(many).unwrap_err();
        assert!(e.to_string().contains("256 servers"), "{e}");
    }

    #[test]
    fn a_ds_stays_on_one_server_and_unplaced_reads_are_not_found() {
        let (inner, b) = over(&[1 << 20, 1 << 20, 1 << 20]);
        let mut buf = [0u8; 8];
        assert_eq!(
            b.read(7, 0, &mut buf).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert!(b.issue_read(7, 0, 8).is_err());
        b.remove(7, 0).unwrap();
        assert_eq!(b.server_of(7), None);
        for obj in 0..50u32 {
            b.write(7, obj, &obj.to_le_bytes().repeat(2)).unwrap();
        }
        let s = b.server_of(7).unwrap();
        assert_eq!(
            inner[s].used_bytes(),
            50 * 8,
            "all of ds 7 is on server {s}"
        );
        for obj in 0..50u32 {
            b.read(7, obj, &mut buf).unwrap();
            assert_eq!(buf, *obj.to_le_bytes().repeat(2));
        }
        // Ids above the containers' range (hash maps) and the very last id are handled too.
        b.write(u16::MAX, 1, &[1; 8]).unwrap();
        b.read(u16::MAX, 1, &mut buf).unwrap();
        assert_eq!(buf, [1; 8]);
        assert_eq!(b.placed_bytes().iter().sum::<u64>(), 51 * 8);
    }

    #[test]
    fn a_full_first_choice_places_on_the_other() {
        // Server 0 takes nothing: every ds whose first choice is 0 lands on the other one.
        let (inner, b) = over(&[0, 1 << 20]);
        for ds in 0..20u16 {
            b.write(ds, 0, &[ds as u8; 16]).unwrap();
            assert_eq!(b.server_of(ds), Some(1));
        }
        assert_eq!(inner[1].used_bytes(), 20 * 16);
        // Once placed, a full server is the ds's own problem: no move.
        let (inner, b) = over(&[64, 64]);
        b.write(1, 0, &[0; 64]).unwrap();
        let s = b.server_of(1).unwrap();
        let e = b.write(1, 1, &[0; 64]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfFarMemory);
        assert_eq!(b.server_of(1), Some(s));
        assert_eq!(inner[1 - s].used_bytes(), 0);
        // Both full: the error says so and the ds stays unplaced.
        b.write(2, 0, &[0; 64]).unwrap();
        let e = b.write(3, 0, &[0; 64]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfFarMemory);
        assert!(e.to_string().contains("placing data structure 3"), "{e}");
        assert_eq!(b.server_of(3), None);
    }

    #[test]
    fn batches_split_per_server_and_come_back_in_order() {
        let (inner, b) = over(&[1 << 20, 1 << 20, 1 << 20]);
        let data: Vec<Vec<u8>> = (0..60u32).map(|i| vec![i as u8; 32]).collect();
        let writes: Vec<WriteRequest<'_>> = data
            .iter()
            .enumerate()
            .map(|(i, d)| WriteRequest {
                ds: (i % 12) as u16,
                obj: i as u32,
                data: d,
            })
            .collect();
        b.write_batch(&writes).unwrap();
        b.write_batch(&writes).unwrap(); // all placed now: the split path
        assert!(
            inner.iter().all(|s| s.used_bytes() > 0),
            "12 data structures reach all 3 servers"
        );
        let mut bufs = vec![[0u8; 32]; 60];
        let mut reads: Vec<ReadRequest<'_>> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, buf)| ReadRequest {
                ds: (i % 12) as u16,
                obj: i as u32,
                buf,
            })
            .collect();
        b.read_batch(&mut reads).unwrap();
        for (i, buf) in bufs.iter().enumerate() {
            assert_eq!(buf, &[i as u8; 32], "object {i}");
        }
        let got = b.issue_read_batch(0, &[(0, 32), (12, 32)]).unwrap();
        let mut one = [0u8; 32];
        let mut it = got.into_iter();
        it.next().unwrap().wait(&mut one).unwrap();
        assert_eq!(one, [0; 32]);
        it.next().unwrap().wait(&mut one).unwrap();
        assert_eq!(one, [12; 32]);
        assert_eq!(
            b.compute(0, "f", &[]).unwrap_err().kind(),
            ErrorKind::Unsupported,
            "compute goes to the ds's server, which runs no functions here"
        );
    }
}
