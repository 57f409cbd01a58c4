//! The local log: the local-memory budget as fixed-size regions, a free list, a queue of sealed
//! regions for the evacuator, and sharded open regions for bump allocation (AIFM §4.3).
//!
//! Ownership: a region is *free* (on the free list), *open* (in one slot of `open`; threads bump
//! its cursor), *sealed* (full, on the sealed queue, objects live in it) or *claimed* (popped by
//! one evacuator). Only the evacuator frees a region, and only after the grace period of its
//! claimed objects. Mutator threads are spread over `alloc_shards` open slots (a per-thread shard
//! index), so with no more threads than shards each thread bumps its own region; beyond that,
//! threads share a region through the atomic cursor. Evacuator threads have slots of their own.
//!
//! Mutators may take a free region only while more than the hard floor is free; the evacuator may
//! dip into that reserve to copy hot objects.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;
use farmem_error::{Error, ErrorKind, Result};

use crate::config::Config;
use crate::pointer::{LocalAddr, RemoteId};
use crate::region::{ObjectHeader, Region, Reserve, END_OF_REGION, HEADER_BYTES};
use crate::signal::Signal;

const NO_REGION: u32 = u32::MAX;

/// A fresh allocation: header written (back-pointer 0), pending until [`LocalLog::finish`].
pub(crate) struct Allocation {
    pub region: u32,
    pub header: *const ObjectHeader,
    pub data: *mut u8,
}

/// The local log of one far-memory instance.
pub(crate) struct LocalLog {
    base: *mut u8,
    layout: Layout,
    pub region_bytes: usize,
    regions: Box<[Region]>,
    free: Mutex<Vec<u32>>,
    free_count: AtomicUsize,
    sealed: Mutex<VecDeque<u32>>,
    open: Box<[CachePadded<AtomicU32>]>,
    pub mutator_slots: usize,
    pub floor_regions: usize,
    pub low_regions: usize,
    pub high_regions: usize,
    pub evac_signal: Signal,
}

// SAFETY: `base` is an allocation owned by the log for its whole life; concurrent access to its
// bytes follows the region protocol (module note), and every other field is Sync.
unsafe impl Send for LocalLog {}
// SAFETY: as above.
unsafe impl Sync for LocalLog {}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
}

impl LocalLog {
    pub(crate) fn new(cfg: &Config) -> Result<LocalLog> {
        let n = cfg.regions();
        let bytes = n * cfg.region_bytes;
        let layout = Layout::from_size_align(bytes, 4096)
            .map_err(|e| Error::invalid(format!("local memory of {bytes} bytes: {e}")))?;
        // SAFETY: the layout has a non-zero size (config validation: at least 4 regions).
        let base = unsafe { alloc_zeroed(layout) };
        if base.is_null() {
            return Err(Error::new(
                ErrorKind::OutOfLocalMemory,
                format!("could not allocate {bytes} bytes of local memory; lower local_bytes"),
            ));
        }
        LocalAddr::new(base as usize + bytes - 8)?;
        let frac = |f: f64| ((n as f64 * f).ceil() as usize).clamp(1, n);
        Ok(LocalLog {
            base,
            layout,
            region_bytes: cfg.region_bytes,
            regions: (0..n).map(|_| Region::new_free(cfg.region_bytes)).collect(),
            free: Mutex::new((0..n as u32).rev().collect()),
            free_count: AtomicUsize::new(n),
            sealed: Mutex::new(VecDeque::new()),
            open: (0..cfg.alloc_shards + cfg.evacuator_threads + 1)
                .map(|_| CachePadded::new(AtomicU32::new(NO_REGION)))
                .collect(),
            mutator_slots: cfg.alloc_shards,
            floor_regions: frac(cfg.hard_floor),
            low_regions: frac(cfg.low_watermark),
            high_regions: frac(cfg.high_watermark),
            evac_signal: Signal::default(),
        })
    }

    /// Number of regions.
    pub(crate) fn regions(&self) -> usize {
        self.regions.len()
    }

    /// Free regions now.
    pub(crate) fn free_regions(&self) -> usize {
        self.free_count.load(Ordering::Acquire)
    }

    /// The calling mutator thread's open slot.
    pub(crate) fn mutator_slot(&self) -> usize {
        SHARD.with(|s| *s) % self.mutator_slots
    }

    /// The first slot of evacuator thread `i` (the prefetch thread uses the last slot).
    pub(crate) fn evacuator_slot(&self, i: usize) -> usize {
        self.mutator_slots + i
    }

    /// The prefetch issuer's slot (used under `Inner::issuer`: by the prefetch thread, or by a
    /// mutator issuing its own refill).
    pub(crate) fn prefetch_slot(&self) -> usize {
        self.open.len() - 1
    }

    pub(crate) fn region_base(&self, r: u32) -> *mut u8 {
        // SAFETY: `r < regions()`, so the offset is inside the allocation.
        unsafe { self.base.add(r as usize * self.region_bytes) }
    }

    pub(crate) fn region(&self, r: u32) -> &Region {
        &self.regions[r as usize]
    }

    fn take_free(&self, may_use_reserve: bool) -> Option<u32> {
        let (r, left) = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            if !may_use_reserve && free.len() <= self.floor_regions {
                return None;
            }
            let r = free.pop()?;
            // Kept equal to the list length, under its lock.
            self.free_count.store(free.len(), Ordering::Release);
            (r, free.len())
        };
        self.regions[r as usize].open();
        if left < self.low_regions {
            self.evac_signal.notify();
        }
        Some(r)
    }

    /// Returns an evacuated region to the free list.
    pub(crate) fn free_region(&self, r: u32) {
        self.regions[r as usize].close_free(self.region_bytes);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.push(r);
        self.free_count.store(free.len(), Ordering::Release);
    }

    /// Pops the oldest sealed region for evacuation.
    pub(crate) fn pop_sealed(&self) -> Option<u32> {
        self.sealed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// Puts a region back at the tail of the sealed queue (it could not be freed yet).
    pub(crate) fn requeue(&self, r: u32) {
        self.sealed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(r);
    }

    /// Sealed regions waiting for the evacuator.
    pub(crate) fn sealed_len(&self) -> usize {
        self.sealed.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Bump-allocates an object of identity `id` in `slot`'s open region; `None` when no region
    /// can be had (below the hard floor unless `may_use_reserve`). The header is written with a
    /// zero back-pointer; call [`finish`](Self::finish) once the data and word are published.
    pub(crate) fn alloc(
        &self,
        slot: usize,
        id: RemoteId,
        may_use_reserve: bool,
    ) -> Option<Allocation> {
        let need = HEADER_BYTES + id.size();
        let open = &self.open[slot];
        loop {
            let mut r = open.load(Ordering::Acquire);
            if r == NO_REGION {
                let fresh = self.take_free(may_use_reserve)?;
                match open.compare_exchange(NO_REGION, fresh, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => r = fresh,
                    Err(other) => {
                        self.free_region(fresh);
                        r = other;
                    }
                }
            }
            let region = &self.regions[r as usize];
            match region.reserve(need, self.region_bytes) {
                Reserve::At(off) => {
                    let base = self.region_base(r);
                    // SAFETY: `off + need <= region_bytes` (reservation succeeded), the offset is
                    // 8-aligned, and this reservation is ours alone.
                    let header = unsafe { &*base.add(off).cast::<ObjectHeader>() };
                    header.backptr.store(0, Ordering::Relaxed);
                    header.id.store(id.bits(), Ordering::Release);
                    return Some(Allocation {
                        region: r,
                        header,
                        // SAFETY: the data follows the header in the reservation.
                        data: unsafe { base.add(off + HEADER_BYTES) },
                    });
                }
                Reserve::Full { sealer, old } => {
                    if sealer {
                        if old + HEADER_BYTES <= self.region_bytes {
                            // SAFETY: `old + 16 <= region_bytes`; nobody else owns bytes at or
                            // beyond `old` (every later reservation failed).
                            let h =
                                unsafe { &*self.region_base(r).add(old).cast::<ObjectHeader>() };
                            h.backptr.store(0, Ordering::Relaxed);
                            h.id.store(END_OF_REGION, Ordering::Release);
                        }
                        self.requeue(r);
                    }
                    region.finish();
                    let _ =
                        open.compare_exchange(r, NO_REGION, Ordering::AcqRel, Ordering::Acquire);
                }
            }
        }
    }

    /// Ends an allocation (see [`alloc`](Self::alloc)).
    pub(crate) fn finish(&self, a: &Allocation) {
        self.regions[a.region as usize].finish();
    }
}

impl Drop for LocalLog {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the log is dropped last by `Inner`, after
        // the evacuator and prefetch threads have been joined and every container is gone.
        unsafe { dealloc(self.base, self.layout) };
    }
}
