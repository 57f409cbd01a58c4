//! Counters of one far-memory instance and the [`Metrics`] snapshot the API hands out.
//!
//! Counters are relaxed atomics bumped on slow paths only; hits are counted in the scope (a
//! plain `Cell`) and added here once when the scope ends or renews, so the fast path touches no
//! shared cache line. Each counter has a cache line of its own: the threads of a scan bump
//! different ones per chunk (the mutator `prefetches_used`, the lander `prefetches_issued` and
//! `bytes_fetched`, the evacuator `objects_dropped`), and packed together those bumps bounced
//! one line between three cores for every chunk.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// Live counters (internal).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub hits: CachePadded<AtomicU64>,
    pub misses: CachePadded<AtomicU64>,
    pub bytes_fetched: CachePadded<AtomicU64>,
    pub bytes_written_back: CachePadded<AtomicU64>,
    pub evacuated_regions: CachePadded<AtomicU64>,
    pub objects_moved: CachePadded<AtomicU64>,
    pub objects_dropped: CachePadded<AtomicU64>,
    pub evacuation_conflicts: CachePadded<AtomicU64>,
    pub prefetches_issued: CachePadded<AtomicU64>,
    pub prefetches_used: CachePadded<AtomicU64>,
    pub uncached_reads: CachePadded<AtomicU64>,
    pub write_throughs: CachePadded<AtomicU64>,
    pub writeback_errors: CachePadded<AtomicU64>,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, v: u64) {
        c.fetch_add(v, Relaxed);
    }
}

/// A snapshot of a far-memory instance's counters ([`FarMemory::metrics`](crate::FarMemory::metrics)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Dereferences served from local memory (counted when their scope ends or renews).
    pub hits: u64,
    /// Dereferences that had to fetch (or read uncached) from the backend.
    pub misses: u64,
    /// Bytes read from the backend (misses and prefetches).
    pub bytes_fetched: u64,
    /// Bytes the evacuator (or write-through `set`) wrote to the backend.
    pub bytes_written_back: u64,
    /// Regions the evacuator freed.
    pub evacuated_regions: u64,
    /// Hot objects the evacuator copied to a fresh region.
    pub objects_moved: u64,
    /// Cold objects the evacuator turned remote (after writing back the dirty ones).
    pub objects_dropped: u64,
    /// Objects a mutator took back from the evacuator (the mutator won the CAS).
    pub evacuation_conflicts: u64,
    /// Chunks the stride prefetcher fetched ahead.
    pub prefetches_issued: u64,
    /// Prefetched chunks that were then used.
    pub prefetches_used: u64,
    /// Reads served without caching (don't-cache hint, or no local memory left).
    pub uncached_reads: u64,
    /// `set`s written straight through to the backend for want of local memory.
    pub write_throughs: u64,
    /// Evacuator write-backs that failed (the object stayed local and dirty).
    pub writeback_errors: u64,
    /// Regions free now.
    pub free_regions: u64,
    /// Regions in the local log.
    pub total_regions: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self, free_regions: u64, total_regions: u64) -> Metrics {
        Metrics {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            bytes_fetched: self.bytes_fetched.load(Relaxed),
            bytes_written_back: self.bytes_written_back.load(Relaxed),
            evacuated_regions: self.evacuated_regions.load(Relaxed),
            objects_moved: self.objects_moved.load(Relaxed),
            objects_dropped: self.objects_dropped.load(Relaxed),
            evacuation_conflicts: self.evacuation_conflicts.load(Relaxed),
            prefetches_issued: self.prefetches_issued.load(Relaxed),
            prefetches_used: self.prefetches_used.load(Relaxed),
            uncached_reads: self.uncached_reads.load(Relaxed),
            write_throughs: self.write_throughs.load(Relaxed),
            writeback_errors: self.writeback_errors.load(Relaxed),
            free_regions,
            total_regions,
        }
    }
}
