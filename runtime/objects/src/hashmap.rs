//! `RemHashMap`: a concurrent far-memory hash map whose authoritative index lives on the memory
//! server, with a bounded CLOCK cache of hot entries on this side.
//!
//! # Where things are
//!
//! ```text
//!   client                                            memory server
//!   RemHashMap ── shards[key_hash % n] ───┐           data structure `ds`
//!     Mutex<CacheShard>                    │ miss:     ├─ bucket objects (key_hash | 1<<63)
//!       index: key → slot                  │ one       └─ meta object (entry count)
//!       slots: CLOCK ring {key, value, ref}│ compute   (`hash_index`, farmem_server::hash_index)
//!       epoch, writes_in_flight            └─────────▶ get / put / remove / len
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
//! - **Bounded CLOCK cache** (second-chance, as AIFM's hot/cold bit): each shard holds entries up
//!   to `cache_bytes / n` (n = 1..64 shards, one per 16 KiB), charging `2·key + value + ENTRY_OVERHEAD_BYTES` per entry (the
//!   key is stored in the index and in the ring). A hit sets the entry's reference bit; an
//!   insert that would pass the bound sweeps the hand, clearing bits until an unreferenced
//!   victim comes up. **Admission** (TinyLFU): a per-shard count-min sketch of recent accesses
//!   (4 bytes per cacheable entry, charged to the bound) keeps a new entry out when the victim
//!   is accessed at least as often, so one-off keys do not flush hot ones (on Zipf lookups this
//!   raised the hit rate at 25% local from 0.69 to 0.73). Shards too small to pay for a sketch
//!   are plain CLOCK. We use this rather than objects in the local log because entries are
//!   variable-sized and tiny (a log object per entry would carry a header and pointer word each,
//!   and the evacuator's per-region scan buys nothing for a cache that can simply drop clean
//!   entries). The bound is the map's own: size it inside the instance's local budget
//!   (the benchmark gives the cache the whole "local memory" share).
//!
//! - **Coalesced misses** (flat combining): concurrent misses of one map queue up; the first
//!   becomes the *leader* and sends everything queued as one `get-many` round trip, hands each
//!   waiter its answer and unparks it, and repeats while misses keep arriving (at most
//!   `COMBINE_ROUNDS` batches, then it makes the oldest waiter the leader and returns). Each
//!   miss still costs one round trip of latency, but many green threads share it, which is what
//!   bounds throughput on a loopback link (a round trip's syscalls and thread hops cost far
//!   more than one more key in the frame).
//!
//! # Keeping the cache coherent with concurrent writers
//!
//! Each shard has an `epoch` and a count of `writes_in_flight`. A writer, under the shard lock,
//! drops the key, bumps `epoch` and increments `writes_in_flight`; after the server answered it
//! bumps `epoch` again and decrements. A reader that missed remembers `epoch` before its round
//! trip and fills the cache only if `epoch` is unchanged and no write is in flight: then no write
//! to the shard overlapped its round trip, so the value it read is still the server's. A writer
//! fills the cache with its own value only if it was the only write in flight and no other write
//! started after it (then its write is the last one the server applied to the key). So a cached
//! entry is never older than the server's value at any time after the write that replaced it
//! returned.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use farmem_error::{Error, ErrorKind, Result};
use farmem_net::hash::{
    decode_flag, decode_get_many, decode_len, key_hash, HashOp, HASH_INDEX_FUNCTION,
};
use farmem_sched::park::{current_unparker, park_timeout, Unparker};

use crate::backend::Backend;
use crate::memory::FarMemory;
use crate::pod::Pod;
use crate::pointer::MAX_DS_ID;

/// Bytes charged per cached entry on top of its key (twice) and value: index slot, ring slot
/// and two allocation headers.
pub const ENTRY_OVERHEAD_BYTES: usize = 64;

/// At most this many cache shards; a small cache gets fewer, so each can still hold entries.
const MAX_CACHE_SHARDS: usize = 64;

/// One cache shard per this many bytes of cache, up to [`MAX_CACHE_SHARDS`].
const BYTES_PER_SHARD: usize = 16 << 10;

/// Map data-structure ids live above the containers' ids (`MAX_DS_ID`), so the two never meet;
/// they are never reused within a process because a remote function cannot delete a map's
/// buckets (a reused id would see the old entries).
static NEXT_MAP_DS: AtomicU32 = AtomicU32::new(MAX_DS_ID as u32 + 1);

/// Keys and values a [`RemHashMap`] can hold: anything with a canonical byte form.
/// Implemented for every [`Pod`] type (its bytes), `Vec<u8>` and `String`.
pub trait MapBytes: Sized + Send + Sync + 'static {
    /// The bytes stored on the server (and hashed, for keys).
    fn map_bytes(&self) -> &[u8];
    /// Rebuilds a value from its bytes; a wrong size or encoding is `InvalidArgument`.
    fn from_map_bytes(bytes: &[u8]) -> Result<Self>;
}

impl<T: Pod> MapBytes for T {
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

struct Slot {
    key: Box<[u8]>,
    value: Box<[u8]>,
    referenced: bool,
}

/// Approximate access counts for cache admission (TinyLFU, Einziger et al., TOS'17): a
/// count-min sketch of four rows of 4-bit-range byte counters, all halved every `10 × width`
/// increments so old popularity fades.
struct FrequencySketch {
    counters: Vec<u8>,
    mask: usize,
    adds: usize,
}

impl FrequencySketch {
    /// A sketch sized for about `entries` cached entries (none when `entries` is 0).
    fn new(entries: usize) -> FrequencySketch {
        let width = if entries == 0 {
            0
        } else {
            entries.next_power_of_two().max(16)
        };
        FrequencySketch {
            counters: vec![0; 4 * width],
            mask: width.saturating_sub(1),
            adds: 0,
        }
    }

    fn bytes(&self) -> usize {
        self.counters.len()
    }

    fn enabled(&self) -> bool {
        !self.counters.is_empty()
    }

    fn slot(&self, hash: u64, row: usize) -> usize {
        row * (self.mask + 1) + (hash.rotate_left(16 * row as u32) as usize & self.mask)
    }

    fn touch(&mut self, hash: u64) {
        if self.counters.is_empty() {
            return;
        }
        for row in 0..4 {
            let i = self.slot(hash, row);
            if self.counters[i] < 15 {
                self.counters[i] += 1;
            }
        }
        self.adds += 1;
        if self.adds >= 10 * (self.mask + 1) {
            for c in &mut self.counters {
                *c /= 2;
            }
            self.adds /= 2;
        }
    }

    fn estimate(&self, hash: u64) -> u8 {
        if self.counters.is_empty() {
            return 0;
        }
        (0..4)
            .map(|row| self.counters[self.slot(hash, row)])
            .min()
            .unwrap_or(0)
    }
}

/// One shard of the CLOCK cache plus its coherence counters (see the module note).
struct CacheShard {
    index: HashMap<Box<[u8]>, usize>,
    ring: Vec<Slot>,
    hand: usize,
    /// Bytes charged by the entries (the sketch's bytes come off `capacity` up front).
    bytes: usize,
    capacity: usize,
    sketch: FrequencySketch,
    epoch: u64,
    writes_in_flight: u32,
}

fn cost(key: &[u8], value: &[u8]) -> usize {
    2 * key.len() + value.len() + ENTRY_OVERHEAD_BYTES
}

impl CacheShard {
    /// A shard of `capacity` bytes, sketch included.
    fn new(capacity: usize) -> CacheShard {
        let entries = capacity / (ENTRY_OVERHEAD_BYTES + 16);
        let mut sketch = FrequencySketch::new(entries);
        if sketch.bytes() * 8 > capacity {
            // Too small to pay for admission: plain CLOCK.
            sketch = FrequencySketch::new(0);
        }
        CacheShard {
            index: HashMap::with_capacity(entries),
            ring: Vec::with_capacity(entries),
            hand: 0,
            bytes: 0,
            capacity: capacity - sketch.bytes(),
            sketch,
            epoch: 0,
            writes_in_flight: 0,
        }
    }

    /// Counts an access to `key` (hash `hash`) and returns its cached value.
    fn lookup(&mut self, key: &[u8], hash: u64) -> Option<&[u8]> {
        self.sketch.touch(hash);
        let i = *self.index.get(key)?;
        let slot = &mut self.ring[i];
        slot.referenced = true;
        Some(&slot.value)
    }

    fn remove_slot(&mut self, i: usize) {
        let slot = self.ring.swap_remove(i);
        self.bytes -= cost(&slot.key, &slot.value);
        self.index.remove(&slot.key);
        if let Some(moved) = self.ring.get(i) {
            if let Some(at) = self.index.get_mut(&moved.key) {
                *at = i;
            }
        }
        if self.hand >= self.ring.len() {
            self.hand = 0;
        }
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(&i) = self.index.get(key) {
            self.remove_slot(i);
        }
    }

    /// Caches `key` → `value` if it fits and, when something must go, if the sketch says
    /// `key` is accessed more often than the CLOCK victim (TinyLFU admission); returns whether
    /// it was cached.
    fn insert(&mut self, key: &[u8], value: &[u8], hash: u64) -> bool {
        self.remove(key);
        let c = cost(key, value);
        if c > self.capacity {
            return false;
        }
        let freq = self.sketch.estimate(hash);
        // Second chance: clear reference bits until an unreferenced entry comes under the hand.
        while self.bytes + c > self.capacity && !self.ring.is_empty() {
            let slot = &mut self.ring[self.hand];
            if slot.referenced {
                slot.referenced = false;
                self.hand = (self.hand + 1) % self.ring.len();
            } else {
                if self.sketch.enabled() && freq <= self.sketch.estimate(key_hash(&slot.key)) {
                    return false;
                }
                self.remove_slot(self.hand);
            }
        }
        let key: Box<[u8]> = key.into();
        self.index.insert(key.clone(), self.ring.len());
        self.ring.push(Slot {
            key,
            value: value.into(),
            referenced: false,
        });
        self.bytes += c;
        true
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
    /// Entries cached now.
    pub entries: u64,
    /// Bytes charged by the cached entries now (at most the cache bound).
    pub bytes: u64,
}

/// Most keys in one `get-many` batch.
const COMBINE_BATCH_KEYS: usize = 128;
/// Most key bytes in one batch (keeps frames small).
const COMBINE_BATCH_BYTES: usize = 256 << 10;
/// Batches a leader sends before handing the lead to the oldest waiter.
const COMBINE_ROUNDS: usize = 8;
/// How long a waiting miss parks between checks (a lost wake-up costs at most this).
const COMBINE_TICK: std::time::Duration = std::time::Duration::from_millis(5);

enum MissState {
    Waiting,
    /// This waiter is the leader now (handed over by the previous one).
    Lead,
    Done(Result<Option<Vec<u8>>>),
}

/// One queued miss: its key, where its answer lands, and who to wake.
struct Miss {
    key: Box<[u8]>,
    state: Mutex<MissState>,
    waker: Unparker,
}

impl Miss {
    fn set(&self, state: MissState) {
        // A poisoned lock still holds a valid `MissState`: overwrite it.
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
        self.waker.unpark();
    }

    fn take(&self) -> MissState {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *st {
            MissState::Waiting => MissState::Waiting,
            _ => std::mem::replace(&mut *st, MissState::Waiting),
        }
    }
}

#[derive(Default)]
struct Combiner {
    leader_active: bool,
    queue: VecDeque<Arc<Miss>>,
}

struct MapShared {
    backend: Arc<dyn Backend>,
    combiner: Mutex<Combiner>,
    ds: u16,
    shards: Box<[Mutex<CacheShard>]>,
    hits: AtomicU64,
    misses: AtomicU64,
    miss_batches: AtomicU64,
}

/// A concurrent far-memory hash map from `K` to `V` (see the module note): the index on the
/// memory server, hot entries in a bounded local CLOCK cache, writes through. Cloning gives
/// another handle to the same map (share it with green threads; over a `TcpBackend`, turn on
/// `TcpBackendConfig::green_relay` so a round trip parks only its green thread).
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
    /// (0: no cache). One round trip checks that the server runs the hash index: a backend
    /// without remote functions fails with `Unsupported`, a server without `hash_index` with
    /// `NotFound`.
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
        let shards = (cache_bytes / BYTES_PER_SHARD).clamp(1, MAX_CACHE_SHARDS);
        let per_shard = cache_bytes / shards;
        let map = RemHashMap {
            shared: Arc::new(MapShared {
                backend,
                combiner: Mutex::new(Combiner::default()),
                ds,
                shards: (0..shards)
                    .map(|_| Mutex::new(CacheShard::new(per_shard)))
                    .collect(),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                miss_batches: AtomicU64::new(0),
            }),
            _types: PhantomData,
        };
        map.len()?;
        Ok(map)
    }

    fn shard(&self, hash: u64) -> Result<MutexGuard<'_, CacheShard>> {
        let shards = &self.shared.shards;
        shards[(hash >> 32) as usize % shards.len()]
            .lock()
            .map_err(|_| Error::internal("hash map cache shard lock poisoned"))
    }

    fn remote(&self, op: HashOp<'_>) -> Result<Vec<u8>> {
        let body = op.encode_body()?;
        self.shared
            .backend
            .compute(self.shared.ds, HASH_INDEX_FUNCTION, &body)
            .map_err(|e| e.with_context(format!("hash map {}", self.shared.ds)))
    }

    /// The value of `key`, from the cache or with one round trip to the server.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let kb = key.map_bytes();
        let hash = key_hash(kb);
        let seen_epoch = {
            let mut shard = self.shard(hash)?;
            if let Some(v) = shard.lookup(kb, hash) {
                self.shared.hits.fetch_add(1, Ordering::Relaxed);
                return V::from_map_bytes(v).map(Some);
            }
            shard.epoch
        };
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
        let Some(vb) = self.fetch_miss(kb)? else {
            return Ok(None);
        };
        let value = V::from_map_bytes(&vb)?;
        let mut shard = self.shard(hash)?;
        if shard.epoch == seen_epoch && shard.writes_in_flight == 0 {
            shard.insert(kb, &vb, hash);
        }
        Ok(Some(value))
    }

    fn combiner(&self) -> MutexGuard<'_, Combiner> {
        // Every critical section leaves the queue valid: recover a poisoned lock.
        self.shared
            .combiner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Looks `key` up on the server, sharing the round trip with concurrent misses (see the
    /// module note).
    fn fetch_miss(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let me = Arc::new(Miss {
            key: key.into(),
            state: Mutex::new(MissState::Waiting),
            waker: current_unparker(),
        });
        let lead = {
            let mut c = self.combiner();
            c.queue.push_back(me.clone());
            !std::mem::replace(&mut c.leader_active, true)
        };
        if !lead {
            loop {
                match me.take() {
                    MissState::Done(r) => return r,
                    MissState::Lead => break,
                    MissState::Waiting => {
                        park_timeout(COMBINE_TICK);
                    }
                }
            }
        }
        self.lead();
        match me.take() {
            MissState::Done(r) => r,
            _ => Err(Error::internal(
                "hash map miss combiner: the leader's own miss was not answered",
            )),
        }
    }

    /// Sends queued misses in batches until the queue is empty or `COMBINE_ROUNDS` batches
    /// went out, then hands the lead on (or gives it up when nothing is queued).
    fn lead(&self) {
        for _ in 0..COMBINE_ROUNDS {
            let batch: Vec<Arc<Miss>> = {
                let mut c = self.combiner();
                if c.queue.is_empty() {
                    c.leader_active = false;
                    return;
                }
                let mut bytes = 0;
                let mut n = 0;
                for m in c.queue.iter().take(COMBINE_BATCH_KEYS) {
                    if n > 0 && bytes + m.key.len() > COMBINE_BATCH_BYTES {
                        break;
                    }
                    bytes += m.key.len();
                    n += 1;
                }
                c.queue.drain(..n).collect()
            };
            self.shared.miss_batches.fetch_add(1, Ordering::Relaxed);
            let keys: Vec<&[u8]> = batch.iter().map(|m| &*m.key).collect();
            let answers = self.remote(HashOp::GetMany { keys }).and_then(|r| {
                Ok(decode_get_many(&r, batch.len())?
                    .into_iter()
                    .map(|v| v.map(<[u8]>::to_vec))
                    .collect::<Vec<_>>())
            });
            match answers {
                Ok(values) => {
                    for (m, v) in batch.iter().zip(values) {
                        m.set(MissState::Done(Ok(v)));
                    }
                }
                Err(e) => {
                    for m in &batch {
                        m.set(MissState::Done(Err(e.clone())));
                    }
                }
            }
        }
        let mut c = self.combiner();
        match c.queue.front() {
            Some(next) => next.set(MissState::Lead),
            None => c.leader_active = false,
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
        let my_epoch = {
            let mut shard = self.shard(hash)?;
            shard.remove(key);
            shard.sketch.touch(hash);
            shard.epoch += 1;
            shard.writes_in_flight += 1;
            shard.epoch
        };
        let result = self.remote(op);
        {
            let mut shard = self.shard(hash)?;
            if let (Ok(_), Some(v)) = (&result, fill) {
                if shard.writes_in_flight == 1 && shard.epoch == my_epoch {
                    shard.insert(key, v, hash);
                }
            }
            shard.epoch += 1;
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
            hits: self.shared.hits.load(Ordering::Relaxed),
            misses: self.shared.misses.load(Ordering::Relaxed),
            miss_batches: self.shared.miss_batches.load(Ordering::Relaxed),
            ..HashCacheStats::default()
        };
        for shard in self.shared.shards.iter() {
            if let Ok(sh) = shard.lock() {
                s.entries += sh.ring.len() as u64;
                s.bytes += sh.bytes as u64;
            }
        }
        s
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
    /// of hot entries locally. See [`RemHashMap`].
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
    fn clock_evicts_unreferenced_first_and_respects_the_bound() {
        let mut s = CacheShard::new(3 * cost(&[0; 8], &[0; 8]));
        for k in 0u64..3 {
            assert!(s.insert(&k.to_le_bytes(), &[k as u8; 8], k));
        }
        assert_eq!(s.ring.len(), 3);
        // Touch 0 and 2: the next insert must evict 1.
        assert!(!s.sketch.enabled(), "a 3-entry shard is plain CLOCK");
        assert!(s.lookup(&0u64.to_le_bytes(), 0).is_some());
        assert!(s.lookup(&2u64.to_le_bytes(), 2).is_some());
        assert!(s.insert(&9u64.to_le_bytes(), &[9; 8], 9));
        assert!(s.lookup(&1u64.to_le_bytes(), 1).is_none());
        assert_eq!(s.lookup(&9u64.to_le_bytes(), 9), Some(&[9u8; 8][..]));
        assert!(s.bytes <= s.capacity);
        // Replacing keeps one entry per key; an entry larger than the shard is not cached.
        s.insert(&9u64.to_le_bytes(), &[8; 8], 9);
        assert_eq!(s.ring.len(), 3);
        assert!(!s.insert(b"huge", &vec![0; s.capacity], 77));
        assert!(s.lookup(b"huge", 77).is_none());
        for (i, slot) in s.ring.iter().enumerate() {
            assert_eq!(s.index[&slot.key], i);
        }
        let total: usize = s.ring.iter().map(|e| cost(&e.key, &e.value)).sum();
        assert_eq!(total, s.bytes);
    }

    #[test]
    fn admission_keeps_frequent_entries_against_one_off_keys() {
        let entry = cost(&[0; 8], &[0; 8]);
        let mut s = CacheShard::new(200 * entry);
        assert!(s.sketch.enabled());
        let key = |k: u64| (k.to_le_bytes(), key_hash(&k.to_le_bytes()));
        // Fill with hot keys, each looked up several times.
        for k in 0..1000u64 {
            let (kb, h) = key(k);
            for _ in 0..4 {
                let _ = s.lookup(&kb, h);
            }
            s.insert(&kb, &[1; 8], h);
        }
        let hot: Vec<u64> = (0..1000)
            .filter(|&k| s.index.contains_key(&key(k).0[..]))
            .collect();
        assert!(!hot.is_empty());
        // A scan of one-off keys (seen once each) must not flush the hot entries.
        for k in 10_000..12_000u64 {
            let (kb, h) = key(k);
            let _ = s.lookup(&kb, h);
            s.insert(&kb, &[2; 8], h);
        }
        let kept = hot
            .iter()
            .filter(|&&k| s.index.contains_key(&key(k).0[..]))
            .count();
        assert!(kept * 2 > hot.len(), "kept {kept} of {}", hot.len());
        assert!(s.bytes <= s.capacity);
        assert_eq!(
            s.sketch.bytes() + s.capacity,
            200 * entry,
            "the sketch is charged to the bound"
        );
    }

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
    }
}
