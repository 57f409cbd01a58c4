//! `RemHashMap`: a concurrent far-memory hash map whose authoritative index lives on the memory
//! server, with a bounded CLOCK cache of hot entries on this side.
//!
//! # Where things are
//!
//! ```text
//!   client                                            memory server
//!   RemHashMap ── shards[key_hash >> 32 % n] ─┐       data structure `ds`
//!     Mutex<CacheShard>  (cache.rs)            │      ├─ bucket objects (key_hash | 1<<63)
//!       entries: fixed slots or byte ring      │      └─ meta object (entry count)
//!       sketch, epoch, writes_in_flight        │ miss: (`hash_index`, farmem_server::hash_index)
//!   MissCombiner (combine.rs) ─ get-many ──────┴────▶ get / put / remove / len / get-many
//! ```
//!
//! - **Server-side index** (AIFM's remote agent, OSDI'20 §4.4): `get`, `put`, `remove` and `len`
//!   are one `compute("hash_index", ..)` round trip each; the server looks the key up in its own
//!   hash table (the store's per-structure `HashMap`, which grows by itself: resizing is the
//!   server's business and never blocks a client's cache). A local miss never walks remote
//!   buckets.
//! - **Write-through**: a `put` or `remove` returns once the server has applied it, so the server
//!   is always authoritative and a dropped cache entry is never a lost write (no dirty bits, no
//!   write-back on eviction). Writes are rare in the workloads this map is for (lookup-heavy
//!   indexes); a write costs one round trip either way.
//! - **Bounded CLOCK cache** (second-chance, as AIFM's hot/cold bit; layout in `cache.rs`): each
//!   shard holds entries up to `cache_bytes / n` (n = 1..64 shards, a power of two, about one
//!   per 16 KiB). Keys and
//!   values of fixed size ([`MapBytes::FIXED_LEN`]: every `Pod` type) live in fixed-size slots
//!   of one array found through an open-addressing table, charged their real bytes (key and
//!   value rounded up to whole words, plus the table and a reference bit each); byte strings
//!   are charged `2·key + value + ENTRY_OVERHEAD_BYTES`. A hit in the fixed-size store takes
//!   no lock and, for a hot entry, stores nothing (a seqlock over atomics; `cache.rs`), and hits
//!   are counted per worker, so two workers reading the same hot entries share its lines
//!   instead of bouncing a lock's line between them; a miss in the fixed-size store takes no
//!   lock either (it reads the shard's epoch, an atomic); fills and writes take the shard's
//!   lock. A hit sets the entry's reference bit (if clear); an insert into a full shard
//!   sweeps the hand, clearing bits until an unreferenced victim comes up, and the newcomer
//!   takes the victim's slot.
//!   **Admission** (TinyLFU): a per-shard count-min sketch of recent accesses (lookups sampled
//!   one in two; charged to the bound) keeps a new entry out when the victim is accessed at
//!   least as often, so one-off keys do not flush hot ones. Shards too small to pay for a sketch (an eighth of the shard) are
//!   plain CLOCK. We use this rather than objects in the local log because entries are tiny (a
//!   log object per entry would carry a header and pointer word each, and the evacuator's
//!   per-region scan buys nothing for a cache that can simply drop clean entries).
//! - **The bound is the map's own**, separate from the [`FarMemory`] instance's local budget
//!   (`Config::local_bytes`, which bounds the local log of the object containers): a map's cache
//!   lives on the heap, beside the log, so the process's far-memory footprint is the local
//!   budget plus every map's `cache_bytes`. Size the two together (the benchmark gives the cache
//!   the whole "local memory" share). Every byte the cache holds is charged, so
//!   [`HashCacheStats::bytes`] never passes `cache_bytes`.
//! - **Coalesced misses on a sender thread** (flat combining; `combine.rs`): a miss queues its
//!   key and parks its green thread; the map's sender thread (an OS thread, so it waits for the
//!   server without holding a green thread) sends everything queued as one `get-many` round
//!   trip, hands each waiter its answer and unparks them all at once (one fence per worker for
//!   the batch, `Unparker::unpark_all`), then fills the cache with the values found (one
//!   thread filling from values still in its own cache, off the waiters' path), and takes the
//!   next batch at once if misses arrived meanwhile. Many green threads share each trip, which
//!   is what bounds throughput on a loopback link: a round trip's syscalls and thread wake-ups
//!   cost far more than one more key in the frame. The sender runs only while the map misses:
//!   the first miss starts it and it exits after `combine::SENDER_IDLE_EXIT` (100 ms) without
//!   one, so a process with many maps holds a thread only for those missing now.
//! - **Dropping the last handle drops the data**: the map sends `clear`, which removes its
//!   objects on the server and frees their bytes, from its last sender on the way out or from a
//!   short-lived thread when none is running (asynchronously: `drop` never waits for a round
//!   trip).
//!
//! # Keeping the cache coherent with concurrent writers
//!
//! Each shard has an `epoch` (an atomic, changed only under the shard's lock, so a miss can read
//! it without the lock) and a count of `writes_in_flight`. A writer, under the shard lock,
//! drops the key, bumps `epoch` and increments `writes_in_flight`; after the server answered it
//! bumps `epoch` again and decrements. A reader that missed reads `epoch` (acquire, after it saw
//! the miss) before its round trip; the sender fills the cache with the value only if, under the
//! lock, `epoch` is unchanged and no write is in flight: then no write
//! to the shard overlapped its round trip, so the value it read is still the server's. A writer
//! fills the cache with its own value only if it was the only write in flight and no other write
//! started after it (then its write is the last one the server applied to the key). So a cached
//! entry is never older than the server's value at any time after the write that replaced it
//! returned.

mod cache;
mod combine;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_utils::CachePadded;
use farmem_error::{Error, ErrorKind, Result};
use farmem_net::hash::{
    decode_flag, decode_get_many, decode_len, key_hash, HashOp, HASH_INDEX_FUNCTION,
};

use crate::backend::Backend;
use crate::memory::FarMemory;
use crate::pod::Pod;
use crate::pointer::MAX_DS_ID;

pub use cache::ENTRY_OVERHEAD_BYTES;
use cache::{CacheShard, Peek, ShardReader, PEEK_BYTES};
use combine::{BatchAnswers, Found, MissCombiner};

/// Threads that send a map's miss batches (each has at most one batch out). One: on a loopback
/// link the trips' CPU, not their latency, bounds throughput, and a second sender halved the
/// keys per trip and lost throughput (`farmem-bench hashtable`, 25%: ratio 0.084 vs 0.115).
const MISS_SENDERS: usize = 1;

/// Lock-free reads of a fixed store that met a writer before a lookup takes the shard's lock.
const PEEK_TRIES: usize = 2;

/// Hit and miss counters for worker lanes (worker `w` counts in `w % HIT_LANES`; OS threads in
/// one more).
const HIT_LANES: usize = 16;

/// At most this many cache shards; a small cache gets fewer, so each can still hold entries.
const MAX_CACHE_SHARDS: usize = 64;

/// One cache shard per this many bytes of cache, up to [`MAX_CACHE_SHARDS`].
const BYTES_PER_SHARD: usize = 16 << 10;

/// Map data-structure ids live above the containers' ids (`MAX_DS_ID`), so the two never meet;
/// they are never reused within a process because a dropped map's entries are cleared on the
/// server asynchronously (a reused id could still see old entries).
static NEXT_MAP_DS: AtomicU32 = AtomicU32::new(MAX_DS_ID as u32 + 1);

/// Keys and values a [`RemHashMap`] can hold: anything with a canonical byte form.
/// Implemented for every [`Pod`] type (its bytes), `Vec<u8>` and `String`.
pub trait MapBytes: Sized + Send + Sync + 'static {
    /// The bytes stored on the server (and hashed, for keys).
    fn map_bytes(&self) -> &[u8];
    /// Rebuilds a value from its bytes; a wrong size or encoding is `InvalidArgument`.
    fn from_map_bytes(bytes: &[u8]) -> Result<Self>;
    /// `Some(n)` when every value of the type is `n` bytes (then the cache keeps the entries
    /// in fixed-size slots, charging their real bytes); `None` for variable-size types.
    const FIXED_LEN: Option<usize> = None;
}

impl<T: Pod> MapBytes for T {
    const FIXED_LEN: Option<usize> = Some(std::mem::size_of::<T>());

    fn map_bytes(&self) -> &[u8] {
        // SAFETY: (1) `self` is a valid `T` borrowed for the returned lifetime; (2) `Pod` types
        // are plain data copied bytewise by every container, so all `size_of::<T>()` bytes are
        // initialized (the `Pod` contract excludes padding-carrying layouts in practice: it is
        // implemented for primitives and arrays of them).
        unsafe {
            std::slice::from_raw_parts((self as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
    }

    fn from_map_bytes(bytes: &[u8]) -> Result<T> {
        if bytes.len() != std::mem::size_of::<T>() {
            return Err(Error::invalid(format!(
                "hash map entry has {} bytes but its type {} has {}: was the map written with \
                 another value type?",
                bytes.len(),
                std::any::type_name::<T>(),
                std::mem::size_of::<T>()
            )));
        }
        // SAFETY: `bytes` holds exactly `size_of::<T>()` bytes and every bit pattern is a valid
        // `T` (`Pod`); `read_unaligned` needs no alignment.
        Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
    }
}

impl MapBytes for Vec<u8> {
    fn map_bytes(&self) -> &[u8] {
        self
    }

    fn from_map_bytes(bytes: &[u8]) -> Result<Vec<u8>> {
        Ok(bytes.to_vec())
    }
}

impl MapBytes for String {
    fn map_bytes(&self) -> &[u8] {
        self.as_bytes()
    }

    fn from_map_bytes(bytes: &[u8]) -> Result<String> {
        String::from_utf8(bytes.to_vec())
            .map_err(|e| Error::invalid(format!("hash map entry is not UTF-8: {e}")))
    }
}

/// What the local cache of a [`RemHashMap`] did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashCacheStats {
    /// Lookups answered locally.
    pub hits: u64,
    /// Lookups that went to the server.
    pub misses: u64,
    /// `get-many` round trips that carried those misses (misses / batches = keys per trip).
    pub miss_batches: u64,
    /// Nanoseconds those round trips took, summed (÷ `miss_batches` = the mean trip).
    pub miss_trip_nanos: u64,
    /// Entries cached now.
    pub entries: u64,
    /// Bytes charged against the cache bound now (entries, and for fixed-size entries the
    /// slot table; the admission sketch): at most the bound.
    pub bytes: u64,
}

struct MapShared {
    backend: Arc<dyn Backend>,
    combiner: Arc<MissCombiner>,
    ds: u16,
    /// Shared with the miss sender, which fills it.
    cache: Arc<Cache>,
    /// Lookups answered locally, one counter per worker lane (OS threads share the last), so
    /// a hit writes no line another core writes.
    hits: Box<[CachePadded<AtomicU64>]>,
    /// Lookups that went to the server, counted like `hits`.
    misses: Box<[CachePadded<AtomicU64>]>,
}

/// The local cache: its shards, and per shard what a lookup uses without the shard's lock.
struct Cache {
    shards: Box<[Mutex<CacheShard>]>,
    /// The sketch, the fixed store, the epoch.
    readers: Box<[ShardReader]>,
}

impl Cache {
    /// The shard `hash` belongs to.
    fn index(&self, hash: u64) -> usize {
        (hash >> 32) as usize & (self.shards.len() - 1)
    }

    fn shard(&self, hash: u64) -> Result<MutexGuard<'_, CacheShard>> {
        self.shards[self.index(hash)]
            .lock()
            .map_err(|_| Error::internal("hash map cache shard lock poisoned"))
    }

    /// Caches the values a miss batch found, each only if no write to its shard overlapped its
    /// round trip: the epoch is the one its miss saw and no write is in flight (module note).
    fn fill(&self, found: &[Found<'_>]) {
        for f in found {
            let i = self.index(f.hash);
            // A poisoned shard is left alone: its lookups fail anyway.
            let Ok(mut shard) = self.shards[i].lock() else {
                continue;
            };
            if self.readers[i].epoch.load(Ordering::Relaxed) == f.epoch
                && shard.writes_in_flight == 0
            {
                shard.insert(f.key, f.value, f.hash);
            }
        }
    }
}

/// Adds one to this thread's lane of `lanes` (workers by index, OS threads in the last).
fn count_in_lane(lanes: &[CachePadded<AtomicU64>]) {
    let lane = farmem_sched::worker_id().map_or(HIT_LANES, |w| w % HIT_LANES);
    lanes[lane].fetch_add(1, Ordering::Relaxed);
}

/// A concurrent far-memory hash map from `K` to `V` (see the module note): the index on the
/// memory server, hot entries in a bounded local CLOCK cache, writes through. Cloning gives
/// another handle to the same map (share it with green threads). Lookups that miss park only
/// their green thread (the map's sender thread does the round trip); `put`, `remove` and `len`
/// call the backend from the caller, which on a green thread parks only that green thread too.
pub struct RemHashMap<K, V> {
    shared: Arc<MapShared>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for RemHashMap<K, V> {
    fn clone(&self) -> Self {
        RemHashMap {
            shared: self.shared.clone(),
            _types: PhantomData,
        }
    }
}

impl<K: MapBytes, V: MapBytes> RemHashMap<K, V> {
    /// An empty map on `backend`'s server with a local cache of at most `cache_bytes`
    /// (0: no cache) and a sender thread for its misses while it has them (module note). One
    /// round trip checks that the
    /// server runs the hash index: a backend without remote functions fails with `Unsupported`,
    /// a server without `hash_index` with `NotFound`.
    pub fn new(backend: Arc<dyn Backend>, cache_bytes: usize) -> Result<RemHashMap<K, V>> {
        let ds = NEXT_MAP_DS.fetch_add(1, Ordering::Relaxed);
        let ds = u16::try_from(ds).map_err(|_| {
            Error::new(
                ErrorKind::OutOfLocalMemory,
                format!(
                    "this process has created {} hash maps, all map ids are used: reuse maps \
                     instead of creating new ones",
                    u32::from(u16::MAX) - MAX_DS_ID as u32
                ),
            )
        })?;
        // A power of two, so picking a shard is a mask, not a division (on every lookup).
        let shards = prev_power_of_two((cache_bytes / BYTES_PER_SHARD).clamp(1, MAX_CACHE_SHARDS));
        let per_shard = cache_bytes / shards;
        let fixed = K::FIXED_LEN.zip(V::FIXED_LEN);
        let shards: Box<[CacheShard]> = (0..shards)
            .map(|_| CacheShard::new(per_shard, fixed))
            .collect();
        let lanes = || (0..=HIT_LANES).map(|_| CachePadded::default()).collect();
        let map = RemHashMap {
            shared: Arc::new(MapShared {
                backend,
                combiner: Arc::new(MissCombiner::default()),
                ds,
                cache: Arc::new(Cache {
                    readers: shards.iter().map(CacheShard::reader).collect(),
                    shards: shards.into_vec().into_iter().map(Mutex::new).collect(),
                }),
                hits: lanes(),
                misses: lanes(),
            }),
            _types: PhantomData,
        };
        map.len()?;
        let backend = map.shared.backend.clone();
        let send = move |keys: &[&[u8]]| -> Result<BatchAnswers> {
            let keys = keys.to_vec();
            let n = keys.len();
            let body = remote(&*backend, ds, HashOp::GetMany { keys })?;
            let base = body.as_ptr() as usize;
            let spans = decode_get_many(&body, n)?
                .into_iter()
                .map(|v| {
                    v.map(|v| {
                        let start = v.as_ptr() as usize - base;
                        start..start + v.len()
                    })
                })
                .collect();
            Ok(BatchAnswers {
                body: Arc::new(body),
                spans,
            })
        };
        let cache = map.shared.cache.clone();
        let fill = move |found: &[Found<'_>]| cache.fill(found);
        // Once the last handle is gone nothing can reach the entries (map ids are not reused):
        // the sender's farewell drops them on the server.
        let backend = map.shared.backend.clone();
        let farewell = move || {
            // Nobody is left to report an error to; a server that is gone has dropped them.
            let _ = remote(&*backend, ds, HashOp::Clear);
        };
        map.shared.combiner.start(
            MISS_SENDERS,
            &format!("farmem-map{ds}-miss"),
            Arc::new(send),
            Arc::new(fill),
            Box::new(farewell),
        )?;
        Ok(map)
    }

    fn remote(&self, op: HashOp<'_>) -> Result<Vec<u8>> {
        remote(&*self.shared.backend, self.shared.ds, op)
    }

    /// The value of `key`, from the cache or with one round trip to the server.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let kb = key.map_bytes();
        let hash = key_hash(kb);
        let cache = &*self.shared.cache;
        let reader = &cache.readers[cache.index(hash)];
        reader.prefetch(hash);
        reader.sketch.record(hash);
        // A fixed store answers hits without the lock (cache.rs); a miss it saw consistently
        // needs no second look under the lock.
        let mut look_again = true;
        if let Some(store) = &reader.fixed {
            let mut entry = [0u8; PEEK_BYTES];
            for _ in 0..PEEK_TRIES {
                match store.peek(kb, hash, &mut entry) {
                    Peek::Hit => {
                        count_in_lane(&self.shared.hits);
                        return V::from_map_bytes(store.value_of(&entry)).map(Some);
                    }
                    Peek::Miss => {
                        look_again = false;
                        break;
                    }
                    Peek::Retry => std::hint::spin_loop(),
                }
            }
        }
        // The epoch before the round trip (module note), read after the miss was seen; the
        // sender fills the cache with the value if the epoch is unchanged then.
        let seen_epoch = if look_again {
            let mut shard = cache.shard(hash)?;
            if let Some(v) = shard.lookup_with(kb, hash, V::from_map_bytes) {
                drop(shard);
                count_in_lane(&self.shared.hits);
                return v.map(Some);
            }
            reader.epoch.load(Ordering::Relaxed)
        } else {
            reader.epoch.load(Ordering::Acquire)
        };
        count_in_lane(&self.shared.misses);
        match self.shared.combiner.fetch(kb, hash, seen_epoch)? {
            Some(answer) => V::from_map_bytes(answer.bytes()).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `key` is in the map.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Runs a write of `key` on the server with the cache protocol of the module note; `fill` is
    /// the value to cache afterwards (for a put).
    fn write(&self, key: &[u8], op: HashOp<'_>, fill: Option<&[u8]>) -> Result<bool> {
        let hash = key_hash(key);
        let cache = &*self.shared.cache;
        let epoch = &cache.readers[cache.index(hash)].epoch;
        let my_epoch = {
            let mut shard = cache.shard(hash)?;
            shard.remove(key, hash);
            shard.sketch.touch(hash);
            shard.writes_in_flight += 1;
            // Under the lock, so the bumps of one shard are serialised; released to the
            // misses that read it without the lock.
            epoch.fetch_add(1, Ordering::Release) + 1
        };
        let result = self.remote(op);
        {
            let mut shard = cache.shard(hash)?;
            if let (Ok(_), Some(v)) = (&result, fill) {
                if shard.writes_in_flight == 1 && epoch.load(Ordering::Relaxed) == my_epoch {
                    shard.insert(key, v, hash);
                }
            }
            epoch.fetch_add(1, Ordering::Release);
            shard.writes_in_flight -= 1;
        }
        decode_flag(&result?)
    }

    /// Inserts or replaces `key` → `value` on the server (write-through); returns whether the
    /// key is new. A full server is `OutOfFarMemory` and changes nothing.
    pub fn put(&self, key: &K, value: &V) -> Result<bool> {
        let (kb, vb) = (key.map_bytes(), value.map_bytes());
        self.write(kb, HashOp::Put { key: kb, value: vb }, Some(vb))
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&self, key: &K) -> Result<bool> {
        let kb = key.map_bytes();
        self.write(kb, HashOp::Remove { key: kb }, None)
    }

    /// Entries in the map (one round trip: the server keeps the count).
    pub fn len(&self) -> Result<u64> {
        decode_len(&self.remote(HashOp::Len)?)
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Counters and the size of the local cache.
    pub fn cache_stats(&self) -> HashCacheStats {
        let mut s = HashCacheStats {
            miss_batches: self.shared.combiner.batches(),
            miss_trip_nanos: self.shared.combiner.trip_nanos(),
            ..HashCacheStats::default()
        };
        let sum = |lanes: &[CachePadded<AtomicU64>]| -> u64 {
            lanes.iter().map(|h| h.load(Ordering::Relaxed)).sum()
        };
        s.hits = sum(&self.shared.hits);
        s.misses = sum(&self.shared.misses);
        for shard in self.shared.cache.shards.iter() {
            if let Ok(sh) = shard.lock() {
                s.entries += sh.len() as u64;
                s.bytes += sh.bytes() as u64;
            }
        }
        s
    }
}

/// The largest power of two not above `n` (`n >= 1`).
fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

fn remote(backend: &dyn Backend, ds: u16, op: HashOp<'_>) -> Result<Vec<u8>> {
    let body = op.encode_body()?;
    backend
        .compute(ds, HASH_INDEX_FUNCTION, &body)
        .map_err(|e| e.with_context(format!("hash map {ds}")))
}

impl Drop for MapShared {
    fn drop(&mut self) {
        self.combiner.close();
    }
}

impl<K, V> std::fmt::Debug for RemHashMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemHashMap")
            .field("ds", &self.shared.ds)
            .finish()
    }
}

impl FarMemory {
    /// A far-memory hash map on this instance's backend (which must run remote functions: a
    /// [`TcpBackend`](crate::TcpBackend) to a `farmem-server`), caching at most `cache_bytes`
    /// of hot entries locally. The cache is on the heap, in addition to this instance's local
    /// budget (`Config::local_bytes`), not carved out of it: size the two together. See
    /// [`RemHashMap`].
    pub fn hash_map<K: MapBytes, V: MapBytes>(
        &self,
        cache_bytes: usize,
    ) -> Result<RemHashMap<K, V>> {
        RemHashMap::new(self.backend().clone(), cache_bytes)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn pod_and_byte_codecs() {
        assert_eq!(u64::from_map_bytes(7u64.map_bytes()).unwrap(), 7);
        assert_eq!(
            <[u32; 3]>::from_map_bytes([1u32, 2, 3].map_bytes()).unwrap(),
            [1, 2, 3]
        );
        assert_eq!(
            u64::from_map_bytes(&[1, 2]).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(String::from_map_bytes(b"hi").unwrap(), "hi");
        assert!(String::from_map_bytes(&[0xff]).is_err());
        assert_eq!(Vec::<u8>::from_map_bytes(b"ab").unwrap(), b"ab".to_vec());
        assert_eq!(<[u64; 8]>::FIXED_LEN, Some(64));
        let powers: Vec<usize> = [1, 2, 3, 63, 64, 65].map(prev_power_of_two).to_vec();
        assert_eq!(powers, vec![1, 2, 2, 32, 64, 64]);
        assert_eq!(String::FIXED_LEN, None);
    }
}
